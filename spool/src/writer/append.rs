//! Appending records: encode into the pending batch, frame, hash, chain.

use super::Spool;
use crate::clock::{boottime_ns, wall_ns};
use crate::codec::{put_bytes8, put_u8, put_u32, put_u64};
use crate::error::SpoolError;
use crate::frame::{MAX_RECORD_LEN, begin_frame, finish_frame};
use crate::hash::leaf_hash;
use crate::keys::{CHECKPOINT_CONTEXT, EPOCH_KEY_CONTEXT};
use crate::position::Position;
use crate::record::{AlertCode, GapReason, Kind, Payload, put_header, put_payload};
use std::time::Instant;

/// The position-table entry that holds the tree size of the newest receipt:
/// everything before it has been delivered to the collector.
pub const FORWARD_POSITION: &str = "@forward";

impl Spool {
    /// Appends a log line; returns its sequence number. The line is durable
    /// once [`Spool::entries_durable`] has passed [`Spool::entries_appended`]
    /// as it was after this call (or after [`Spool::sync`]).
    #[inline]
    pub fn append_entry(
        &mut self,
        source: &str,
        position: &Position,
        flags: u8,
        fields: &[(&str, &[u8])],
        body: &[u8],
        ts: i64,
    ) -> Result<u64, SpoolError> {
        self.check_entry(source, fields, body)?;
        let at = begin_frame(&mut self.pending);
        let rec_start = self.pending.len();
        let split = encode_entry(
            &mut self.pending,
            self.st.next_seq,
            ts,
            &self.st.head,
            self.sealing.is_some(),
            (source, position, flags),
            fields,
            body,
        );
        if let Some(keys) = &self.sealing {
            crate::crypt::seal_entry(
                keys,
                self.st.next_seq,
                &mut self.pending[rec_start..],
                split,
                &mut self.aad,
            );
        }
        let seq = self.seal_frame(at, Kind::Entry, ts);
        self.entries += 1;
        self.track(source, position);
        self.after_append()?;
        Ok(seq)
    }

    /// Refuses an entry the spool cannot take (before any byte of it is
    /// encoded).
    pub(super) fn check_entry(
        &self,
        source: &str,
        fields: &[(&str, &[u8])],
        body: &[u8],
    ) -> Result<(), SpoolError> {
        if self.stopped {
            return Err(SpoolError::Stopped);
        }
        if source.is_empty() || source.len() > 255 {
            return Err(SpoolError::BadSourceName);
        }
        let approx = body.len()
            + fields
                .iter()
                .map(|(k, v)| k.len() + v.len() + 5)
                .sum::<usize>()
            + 400;
        if approx > MAX_RECORD_LEN {
            return Err(SpoolError::RecordTooLarge(approx));
        }
        if self.recipients.is_some() && self.sealing.is_none() {
            // Never a line in clear when encryption is configured.
            return Err(SpoolError::Encryption(
                self.sealing_error
                    .clone()
                    .unwrap_or_else(|| "no data key for the active segment".into()),
            ));
        }
        Ok(())
    }

    /// Records that a source could not read something.
    #[allow(clippy::too_many_arguments)]
    pub fn append_gap(
        &mut self,
        source: &str,
        position: &Position,
        reason: GapReason,
        lost_bytes: u64,
        lost_records: u64,
        detail: &str,
        ts: i64,
    ) -> Result<u64, SpoolError> {
        if self.stopped {
            return Err(SpoolError::Stopped);
        }
        if source.is_empty() || source.len() > 255 {
            return Err(SpoolError::BadSourceName);
        }
        let (kind, bytes) = crate::record::position_bytes(position);
        let p = Payload::Gap {
            source,
            position: crate::position::PositionRef {
                kind,
                bytes: &bytes,
            },
            reason: reason as u16,
            lost_bytes,
            lost_records,
            detail,
        };
        let seq = self.push_payload(Kind::Gap, ts, &p);
        if reason == GapReason::Deleted {
            // The stream is gone: no position to resume from.
            self.forget_position(source, position.stream_key());
        } else {
            self.track(source, position);
        }
        self.after_append()?;
        Ok(seq)
    }

    /// Writes an alert record (something an operator must know).
    pub fn append_alert(&mut self, code: AlertCode, detail: &str) -> Result<u64, SpoolError> {
        if self.stopped {
            return Err(SpoolError::Stopped);
        }
        let seq = self.push_payload(
            Kind::Alert,
            wall_ns(),
            &Payload::Alert {
                code: code as u16,
                detail,
            },
        );
        self.after_append()?;
        Ok(seq)
    }

    /// Appends a collector's receipt for one of this chain's checkpoints
    /// (docs/FORMAT.md §6.12) and moves the delivery position (the
    /// `@forward` entry of the position table) to its tree size. A receipt
    /// does not by itself bring the next checkpoint forward (the heartbeat's
    /// checkpoint covers it), so an idle agent does not trade checkpoints
    /// and receipts with its collector every few seconds.
    pub fn append_receipt(&mut self, r: &crate::chain::Receipt) -> Result<u64, SpoolError> {
        if self.stopped {
            return Err(SpoolError::Stopped);
        }
        let before = self.st.bytes_since_checkpoint;
        let seq = self.push_payload(
            Kind::Receipt,
            wall_ns(),
            &Payload::Receipt {
                collector_id: &r.collector_id,
                tree_size: r.tree_size,
                root: r.root,
                collector_ts: r.collector_ts,
                collector_pubkey: r.collector_pubkey,
                signature: r.signature,
            },
        );
        self.st.bytes_since_checkpoint = before;
        // The delivery position only moves forward (a late receipt from a
        // forwarder that was being replaced is kept, but does not move it
        // back).
        let current = match self
            .positions()
            .get(FORWARD_POSITION)
            .and_then(|m| m.values().next())
        {
            Some(Position::Counter(n)) => *n,
            _ => 0,
        };
        if r.tree_size > current {
            self.track(FORWARD_POSITION, &Position::Counter(r.tree_size));
        }
        self.after_append()?;
        Ok(seq)
    }

    /// Records that a new configuration is in force.
    pub fn append_config(&mut self, config_sha256: [u8; 32]) -> Result<u64, SpoolError> {
        if self.stopped {
            return Err(SpoolError::Stopped);
        }
        self.opts.config_sha256 = config_sha256;
        let seq = self.push_payload(
            Kind::Config,
            wall_ns(),
            &Payload::Config {
                boot_id: self.boot_id,
                mono_ns: boottime_ns(),
                config_sha256,
            },
        );
        self.after_append()?;
        Ok(seq)
    }

    /// Forgets a stream of a source (e.g. a rotated file read to its end):
    /// the next checkpoint carries the table without it.
    pub fn forget_position(&mut self, source: &str, stream_key: (u64, u64, u64)) {
        self.flush_hot();
        if let Some(m) = self.st.positions.get_mut(source)
            && m.remove(&stream_key).is_some()
        {
            if m.is_empty() {
                self.st.positions.remove(source);
            }
            self.table_shrank = true;
        }
    }

    /// Notes where a source stands. The stream of the last entry is kept
    /// aside ("hot"), so that a run of lines from one file costs a compare,
    /// not two map lookups.
    #[inline]
    pub(super) fn track(&mut self, source: &str, position: &Position) {
        if *position == Position::None {
            return; // nothing to resume from (e.g. a gap about a file not read)
        }
        let key = position.stream_key();
        if let Some((s, k, p)) = &mut self.hot
            && *k == key
            && s == source
        {
            p.clone_from(position);
            return;
        }
        self.flush_hot();
        self.hot = Some((source.to_owned(), key, position.clone()));
    }

    /// Moves the hot position into the table.
    pub(super) fn flush_hot(&mut self) {
        if let Some((source, key, p)) = self.hot.take() {
            match self.st.positions.get_mut(&source) {
                Some(m) => {
                    m.insert(key, p);
                }
                None => {
                    self.st.positions.entry(source).or_default().insert(key, p);
                }
            }
        }
    }

    /// Finishes the frame started at `at`: CRC, leaf, chain, tree.
    #[inline]
    pub(super) fn seal_frame(&mut self, at: usize, kind: Kind, ts: i64) -> u64 {
        let range = finish_frame(&mut self.pending, at);
        let len = range.len() as u64 + 8;
        let leaf = leaf_hash(&self.pending[range]);
        self.st.head = leaf;
        self.st.frontier.push(leaf);
        let seq = self.st.next_seq;
        self.st.next_seq += 1;
        self.st.last_ts = ts;
        self.st.prev_kind = self.st.last_kind.replace(kind);
        if kind != Kind::Checkpoint {
            self.st.bytes_since_checkpoint += len;
        }
        if self.pending_since.is_none() {
            self.pending_since = Some(Instant::now());
        }
        seq
    }

    /// Appends any non-entry record.
    pub(super) fn push_payload(&mut self, kind: Kind, ts: i64, p: &Payload<'_>) -> u64 {
        let at = begin_frame(&mut self.pending);
        put_header(&mut self.pending, kind, self.st.next_seq, ts, &self.st.head);
        put_payload(&mut self.pending, p);
        self.seal_frame(at, kind, ts)
    }

    /// Appends a record that ends with a signature by the current epoch key
    /// over `context` and the record before the signature; `payload`
    /// writes the rest of the payload.
    fn push_signed(
        &mut self,
        kind: Kind,
        context: &[u8],
        payload: impl FnOnce(&Spool, &mut Vec<u8>),
    ) -> i64 {
        let ts = wall_ns();
        let mut out = std::mem::take(&mut self.pending);
        let at = begin_frame(&mut out);
        let rec_start = out.len();
        put_header(&mut out, kind, self.st.next_seq, ts, &self.st.head);
        payload(self, &mut out);
        let sig = self.key.sign(context, &out[rec_start..]);
        out.extend_from_slice(&sig);
        self.pending = out;
        self.seal_frame(at, kind, ts);
        ts
    }

    /// Appends a checkpoint signed with the current epoch key. An anchor
    /// also carries every source's position.
    pub(super) fn push_checkpoint(&mut self, anchor: bool) {
        // The anchor carries the table; so does the first checkpoint after
        // a stream left it (a forgotten stream must not come back after a
        // crash, when recovery rebuilds the table).
        let with_table = anchor || std::mem::take(&mut self.table_shrank);
        if with_table {
            self.flush_hot();
        }
        let ts = self.push_signed(Kind::Checkpoint, CHECKPOINT_CONTEXT, |s, out| {
            put_u64(out, s.st.epoch);
            put_u64(out, s.st.next_seq);
            out.extend_from_slice(&s.st.frontier.root());
            out.extend_from_slice(&s.st.head);
            out.extend_from_slice(&s.boot_id);
            put_u64(out, boottime_ns());
            put_u8(out, s.st.frontier.nodes().len() as u8);
            for h in s.st.frontier.nodes() {
                out.extend_from_slice(h);
            }
            if with_table {
                let n: usize = s.st.positions.values().map(|m| m.len()).sum();
                put_u32(out, n as u32);
                for (name, m) in &s.st.positions {
                    for p in m.values() {
                        put_bytes8(out, name.as_bytes());
                        p.encode(out);
                    }
                }
            } else {
                put_u32(out, 0);
            }
        });
        self.st.bytes_since_checkpoint = 0;
        self.last_checkpoint_at = Instant::now();
        self.checkpoints += 1;
        if anchor {
            // The segment's data key, right after its anchor (§6.16).
            self.sealing = None;
            if let Some(to) = &self.recipients {
                match crate::crypt::DataKey::generate().and_then(|d| Ok((d.wrap(to)?, d))) {
                    Ok((wrapped, d)) => {
                        let names = to.names();
                        let payload = Payload::DataKey {
                            recipients: names.iter().map(|n| n.as_str()).collect(),
                            wrapped: &wrapped,
                        };
                        self.push_payload(Kind::DataKey, ts, &payload);
                        self.sealing = Some(std::sync::Arc::new(d.entry_keys()));
                        self.sealing_error = None;
                    }
                    Err(e) => self.sealing_error = Some(e.to_string()),
                }
            }
            for (code, detail) in std::mem::take(&mut self.deferred_alerts) {
                self.push_payload(
                    Kind::Alert,
                    ts,
                    &Payload::Alert {
                        code: code as u16,
                        detail: &detail,
                    },
                );
            }
        }
    }

    /// Appends the epoch transition record, signed with the outgoing key.
    pub(super) fn push_epoch_key(&mut self) {
        self.push_signed(Kind::EpochKey, EPOCH_KEY_CONTEXT, |s, out| {
            put_u64(out, s.st.epoch);
            put_u64(out, s.st.epoch + 1);
            out.extend_from_slice(&s.key.next_pubkey());
            put_u64(out, s.st.next_seq);
            out.extend_from_slice(&s.st.head);
        });
    }

    pub(super) fn push_start(&mut self) {
        let program = self.opts.program.clone();
        let p = Payload::Start {
            boot_id: self.boot_id,
            mono_ns: boottime_ns(),
            pid: std::process::id(),
            config_sha256: self.opts.config_sha256,
            heartbeat_ns: self.opts.heartbeat_interval.as_nanos() as u64,
            append_only: self.opts.append_only as u8,
            append_only_active: self.append_only_active as u8,
            program: &program,
        };
        let ts = wall_ns();
        let last_ts = self.st.last_ts;
        self.push_payload(Kind::Start, ts, &p);
        // A wall clock behind the last record is a step backwards.
        if ts + super::CLOCK_STEP_NS < last_ts {
            self.push_payload(
                Kind::ClockStep,
                ts,
                &Payload::ClockStep {
                    boot_id: self.boot_id,
                    mono_ns: boottime_ns(),
                    expected_ts: last_ts,
                    observed_ts: ts,
                },
            );
        }
    }

    /// Hands the batch over when it is big enough, and checks the size
    /// triggers (checkpoint, segment).
    #[inline]
    pub(super) fn after_append(&mut self) -> Result<(), SpoolError> {
        if self.st.bytes_since_checkpoint >= self.opts.checkpoint_bytes {
            self.push_checkpoint(false);
        }
        if self.submitted + self.pending.len() as u64 >= self.opts.segment_max_bytes {
            return self.rotate();
        }
        if self.pending.len() >= self.opts.commit_bytes {
            // Group commit: hand over when the flusher is free; let the batch
            // grow while it is busy, but not without bound. Until a batch is
            // durable its bytes stay in memory (a failed fsync writes them
            // again), so the bound sets the peak: two buffers at 1.5x
            // commit_bytes. At 2x the file source peaked 1 MiB higher at
            // the same lines per second (docs/BENCHMARKS.md).
            if !self.flusher.busy() || self.pending.len() >= self.opts.commit_bytes * 3 / 2 {
                self.submit()?;
            }
        }
        Ok(())
    }
}

/// Encodes an entry record (§6.2) at the end of `out`; returns where its
/// clear part ends (relative to the record's start). A sealed entry gets
/// the `sealed` flag and room for its tag; the caller seals it
/// ([`crate::crypt::seal_entry`]).
#[allow(clippy::too_many_arguments)]
#[inline]
pub(super) fn encode_entry(
    out: &mut Vec<u8>,
    seq: u64,
    ts: i64,
    prev: &crate::hash::Hash,
    sealed: bool,
    (source, position, flags): (&str, &Position, u8),
    fields: &[(&str, &[u8])],
    body: &[u8],
) -> usize {
    let rec_start = out.len();
    put_header(out, Kind::Entry, seq, ts, prev);
    if sealed {
        let f = rec_start + crate::record::FLAGS_OFFSET;
        out[f..f + 2].copy_from_slice(&crate::record::RECORD_FLAG_SEALED.to_le_bytes());
    }
    put_bytes8(out, source.as_bytes());
    position.encode(out);
    put_u8(out, flags);
    let split = out.len() - rec_start;
    crate::codec::put_u16(out, fields.len() as u16);
    for (k, v) in fields {
        put_bytes8(out, k.as_bytes());
        crate::codec::put_bytes32(out, v);
    }
    out.extend_from_slice(body);
    if sealed {
        out.extend_from_slice(&[0u8; crate::record::SEAL_TAG_LEN]);
    }
    split
}
