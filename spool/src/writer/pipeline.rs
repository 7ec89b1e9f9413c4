//! Appending a batch of entries, sealed on a second core.
//!
//! Sealing an entry (§6.2.1: its key from HKDF, then ChaCha20-Poly1305)
//! costs about as much as everything else the writer does for it, and the
//! chain needs each record whole before the next. The associated data
//! leaves `prev` out, so an entry can be sealed before the record before
//! it is final: the writer encodes a chunk of entries with their sequence
//! numbers and a placeholder `prev`, a sealing thread seals the chunk while
//! the writer chains the one before, and the writer then fills in `prev`
//! and chains it ([`Spool::seal_frame`]) exactly as it chains any record.
//!
//! Sequence numbers are given out ahead of the chain ([`Projection`]): a
//! checkpoint that falls due between two entries is projected and takes
//! its number, and at a segment's end (a new data key) the pipeline is
//! drained, so every number given out is the one the entry gets. Should
//! anything still come between (a failed `fsync` rewrites the segment), the
//! entry is opened and sealed again for the number and key it does get
//! (`resealed` in [`super::SpoolStats`]). Positions move only when an entry
//! is chained, never when it is merely encoded; after an error nothing
//! more of the batch is chained, so what was written is a prefix of what
//! was pushed.

use super::Spool;
use super::append::encode_entry;
use crate::crypt::EntryKeys;
use crate::error::SpoolError;
use crate::frame::{FRAME_HEADER_LEN, begin_frame};
use crate::hash::ZERO32;
use crate::position::Position;
use crate::record::{Kind, PREV_OFFSET};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::time::{Duration, Instant};

/// [`EntrySink::tick`] runs the spool's timers at least this often.
pub const TICK_EVERY: Duration = Duration::from_millis(100);
/// A chunk is handed to the sealing thread once it holds this many bytes.
const CHUNK_BYTES: usize = 128 << 10;

/// Entries encoded and waiting to be sealed, or sealed and waiting to be
/// chained.
#[derive(Debug, Default)]
pub(super) struct Chunk {
    buf: Vec<u8>,
    items: Vec<Item>,
    /// Source names, each with the index of its first item.
    sources: Vec<(usize, String)>,
    keys: Option<Arc<EntryKeys>>,
}

#[derive(Debug)]
struct Item {
    /// The frame's start in the chunk's buffer; the record follows it.
    at: usize,
    /// The record's clear part ends here (relative to the record).
    split: usize,
    end: usize,
    seq: u64,
    ts: i64,
    position: Position,
}

impl Chunk {
    fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    fn clear(&mut self) {
        self.buf.clear();
        self.items.clear();
        self.sources.clear();
        self.keys = None;
    }

    /// Seals every entry of the chunk (on whichever thread holds it).
    fn seal(&mut self, aad: &mut Vec<u8>) {
        let Some(keys) = &self.keys else { return };
        for it in &self.items {
            let rec = &mut self.buf[it.at + FRAME_HEADER_LEN..it.end];
            crate::crypt::seal_entry(keys, it.seq, rec, it.split, aad);
        }
    }

    fn source_of(&self, i: usize) -> &str {
        let k = self.sources.partition_point(|(first, _)| *first <= i);
        &self.sources[k - 1].1
    }
}

/// The sealing thread: takes chunks, seals them, gives them back in order.
#[derive(Debug)]
pub(super) struct Sealer {
    to: SyncSender<Chunk>,
    from: Receiver<Chunk>,
}

impl Sealer {
    fn start() -> Option<Sealer> {
        let (to, jobs) = sync_channel::<Chunk>(2);
        let (done, from) = sync_channel::<Chunk>(2);
        std::thread::Builder::new()
            .name("wormlog-seal".into())
            .spawn(move || {
                let mut aad = Vec::new();
                for mut chunk in jobs {
                    chunk.seal(&mut aad);
                    if done.send(chunk).is_err() {
                        break;
                    }
                }
            })
            .ok()
            .map(|_| Sealer { to, from })
    }
}

/// Takes the entries of one batch ([`Spool::append_entries`]).
#[derive(Debug)]
pub struct EntrySink<'s> {
    spool: &'s mut Spool,
    building: Chunk,
    /// A chunk is with the sealing thread.
    inflight: bool,
    /// The chain as it will be once everything encoded is chained; `None`
    /// while nothing is ahead of the spool.
    ahead: Option<Projection>,
    /// Bytes encoded since the batch began.
    pushed_bytes: u64,
    /// Chaining failed: nothing more of this batch is written.
    failed: bool,
    last_tick: Instant,
}

impl Spool {
    /// Appends a batch of entries: `fill` pushes them into the sink. When
    /// entries are sealed, a second thread seals them while the writer
    /// chains; otherwise each is appended as by [`Spool::append_entry`].
    ///
    /// On success every entry pushed is written. On an error, what was
    /// written is a prefix of what was pushed, positions move only with
    /// what was written, and the first error is returned.
    pub fn append_entries<T, E: From<SpoolError>>(
        &mut self,
        fill: impl FnOnce(&mut EntrySink<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        let building = self.spare_chunk.take().unwrap_or_default();
        let mut sink = EntrySink {
            spool: self,
            building,
            inflight: false,
            ahead: None,
            pushed_bytes: 0,
            failed: false,
            last_tick: Instant::now(),
        };
        let out = fill(&mut sink);
        let drained = sink.drain();
        let EntrySink {
            spool, building, ..
        } = sink;
        spool.spare_chunk = Some(building);
        let out = out?;
        drained?;
        Ok(out)
    }
}

impl EntrySink<'_> {
    /// Appends an entry; returns its sequence number.
    pub fn push(
        &mut self,
        source: &str,
        position: &Position,
        flags: u8,
        fields: &[(&str, &[u8])],
        body: &[u8],
        ts: i64,
    ) -> Result<u64, SpoolError> {
        if self.failed {
            // What follows a lost entry is not written either.
            return Err(SpoolError::Stopped);
        }
        let keys = match &self.spool.sealing {
            Some(k) => k,
            None => {
                // Nothing to seal: one by one.
                self.drain()?;
                let before = self.spool.disk_usage();
                let seq = self
                    .spool
                    .append_entry(source, position, flags, fields, body, ts)?;
                self.pushed_bytes += self.spool.disk_usage().saturating_sub(before);
                return Ok(seq);
            }
        };
        if let Err(e) = self.spool.check_entry(source, fields, body) {
            self.drain()?;
            return Err(e);
        }
        let c = &mut self.building;
        if c.keys.is_none() {
            c.keys = Some(keys.clone());
        }
        let s = &*self.spool;
        let ahead = self.ahead.get_or_insert_with(|| Projection::of(s));
        let seq = ahead.next_seq;
        if c.sources.last().is_none_or(|(_, s)| s != source) {
            c.sources.push((c.items.len(), source.to_owned()));
        }
        let at = begin_frame(&mut c.buf);
        let clear = (source, position, flags);
        let split = encode_entry(&mut c.buf, seq, ts, &ZERO32, true, clear, fields, body);
        let end = c.buf.len();
        c.items.push(Item {
            at,
            split,
            end,
            seq,
            ts,
            position: position.clone(),
        });
        self.pushed_bytes += (end - at) as u64;
        let ahead = self.ahead.as_mut().expect("set above");
        if ahead.add_entry((end - at) as u64, &self.spool.opts) {
            // The segment ends after this entry, and the next entry has a
            // new data key: chain everything first.
            self.drain()?;
        } else if self.building.buf.len() >= CHUNK_BYTES {
            self.hand_over()?;
        }
        Ok(seq)
    }

    /// Runs the spool's timers ([`Spool::tick`]) once everything pushed
    /// so far is appended. A caller may call it after every few entries:
    /// while entries are in flight it runs when a timer is due, and at
    /// least every [`TICK_EVERY`], so that the pipeline is not drained
    /// for nothing.
    pub fn tick(&mut self) -> Result<(), SpoolError> {
        let now = Instant::now();
        if self.ahead.is_some()
            && now < self.spool.next_deadline()
            && now.duration_since(self.last_tick) < TICK_EVERY
        {
            return Ok(());
        }
        self.last_tick = now;
        self.drain()?;
        self.spool.tick()
    }

    /// Whether a chunk of entries is with the sealing thread.
    pub fn in_flight(&self) -> bool {
        self.inflight
    }

    /// Bytes encoded since the batch began (for a caller that checks the
    /// disk budget every so often).
    pub fn pushed_bytes(&self) -> u64 {
        self.pushed_bytes
    }

    /// The spool, with everything pushed so far appended (a caller that
    /// writes something else between entries).
    pub fn settled(&mut self) -> Result<&mut Spool, SpoolError> {
        self.drain()?;
        Ok(self.spool)
    }

    /// Sends the chunk being built to the sealing thread; chains the one
    /// sent before, which the thread has sealed meanwhile.
    fn hand_over(&mut self) -> Result<(), SpoolError> {
        if self.spool.sealer.is_none() {
            self.spool.sealer = Sealer::start();
        }
        let next = self.spool.spare_chunk.take().unwrap_or_default();
        let mut chunk = std::mem::replace(&mut self.building, next);
        let Some(sealer) = &self.spool.sealer else {
            // No thread could be started: sealed here.
            chunk.seal(&mut self.spool.aad);
            return self.chain(chunk);
        };
        if sealer.to.send(chunk).is_err() {
            // The thread is gone, and with it the chunk before, if any:
            // nothing after it may be chained.
            return Err(self.sealer_lost());
        }
        // The thread gives chunks back in the order it takes them: the one
        // before first.
        let result = if self.inflight {
            self.chain_inflight()
        } else {
            Ok(())
        };
        self.inflight = true;
        result
    }

    /// The sealing thread stopped (it never should): the batch fails here.
    fn sealer_lost(&mut self) -> SpoolError {
        self.spool.sealer = None;
        self.inflight = false;
        self.failed = true;
        SpoolError::Encryption(
            "the sealing thread stopped; the entries it held and those after them are not written"
                .into(),
        )
    }

    /// Takes the chunk in flight back from the sealing thread and chains it.
    fn chain_inflight(&mut self) -> Result<(), SpoolError> {
        self.inflight = false;
        match self.spool.sealer.as_ref().map(|s| s.from.recv()) {
            Some(Ok(chunk)) => self.chain(chunk),
            _ => Err(self.sealer_lost()),
        }
    }

    /// Seals and chains everything pushed so far.
    fn drain(&mut self) -> Result<(), SpoolError> {
        if self.building.is_empty() && !self.inflight {
            // Nothing ahead (every entry of a clear spool comes this way).
            self.ahead = None;
            return Ok(());
        }
        let mut building = std::mem::take(&mut self.building);
        if !building.is_empty() && !self.failed {
            // Sealed here while the thread seals the chunk in flight.
            building.seal(&mut self.spool.aad);
        }
        let mut result = Ok(());
        if self.inflight {
            result = self.chain_inflight();
        }
        if result.is_ok() && !building.is_empty() {
            result = self.chain(std::mem::take(&mut building));
        }
        building.clear();
        self.building = building;
        self.ahead = None;
        result
    }

    /// Chains a sealed chunk's entries, in order (none once the batch has
    /// failed).
    fn chain(&mut self, mut chunk: Chunk) -> Result<(), SpoolError> {
        let result = if self.failed {
            Ok(())
        } else {
            self.chain_items(&chunk)
        };
        if result.is_err() {
            self.failed = true;
        }
        chunk.clear();
        if self.spool.spare_chunk.is_none() {
            self.spool.spare_chunk = Some(chunk);
        }
        result
    }

    fn chain_items(&mut self, chunk: &Chunk) -> Result<(), SpoolError> {
        for (i, it) in chunk.items.iter().enumerate() {
            let frame = &chunk.buf[it.at..it.end];
            let s = &mut *self.spool;
            let at = s.pending.len();
            s.pending.extend_from_slice(frame);
            let rec = at + FRAME_HEADER_LEN;
            let same_key = match (&s.sealing, &chunk.keys) {
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                _ => false,
            };
            if it.seq != s.st.next_seq || !same_key {
                // Something came between (a failed fsync rewrote the
                // segment): sealed again for the seq and key it gets.
                let old = s.pending[rec..].to_vec();
                let next = s.st.next_seq.to_le_bytes();
                s.pending[rec + 4..rec + 12].copy_from_slice(&next);
                if let Err(e) = s.reseal(&old, rec, chunk.keys.as_deref()) {
                    s.pending.truncate(at);
                    return Err(SpoolError::Encryption(e));
                }
                s.resealed += 1;
            }
            s.pending[rec + PREV_OFFSET..rec + PREV_OFFSET + 32].copy_from_slice(&s.st.head);
            s.seal_frame(at, Kind::Entry, it.ts);
            s.entries += 1;
            s.track(chunk.source_of(i), &it.position);
            s.after_append()?;
        }
        Ok(())
    }
}

/// What the chain will be once every entry encoded ahead is chained: the
/// sequence number the next entry gets, and the size triggers of
/// [`Spool::after_append`] as they will stand.
#[derive(Debug)]
struct Projection {
    next_seq: u64,
    since_checkpoint: u64,
    segment_bytes: u64,
}

/// What a checkpoint record is reckoned to add to its segment (its exact
/// size depends on the tree; a segment that ends a little earlier than
/// projected only costs its last entries a second sealing).
const CHECKPOINT_ESTIMATE: u64 = 1024;

impl Projection {
    fn of(s: &Spool) -> Projection {
        Projection {
            next_seq: s.st.next_seq,
            since_checkpoint: s.st.bytes_since_checkpoint,
            segment_bytes: s.submitted + s.pending.len() as u64,
        }
    }

    /// Counts an entry of `frame` bytes; true when the segment is projected
    /// to end after it. A checkpoint that falls due after it takes the
    /// next sequence number.
    fn add_entry(&mut self, frame: u64, opts: &super::SpoolOptions) -> bool {
        self.next_seq += 1;
        self.since_checkpoint += frame;
        self.segment_bytes += frame;
        if self.segment_bytes >= opts.segment_max_bytes {
            return true;
        }
        if self.since_checkpoint >= opts.checkpoint_bytes {
            self.next_seq += 1;
            self.since_checkpoint = 0;
            self.segment_bytes += CHECKPOINT_ESTIMATE;
        }
        false
    }
}
