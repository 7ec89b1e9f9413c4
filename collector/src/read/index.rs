//! The search index of one agent's store: derived data, rebuilt from the
//! store whenever it is missing, stale or disagrees with it, and never
//! used to verify anything. The store is cut into *blocks*, each from one
//! checkpoint to the next (the first from the genesis record): where the
//! block starts, how many records it holds, the earliest and latest record
//! time in it, and a Bloom filter of the words of its bodies and field values
//! ([`super::words`]). A search reads only the blocks whose time span
//! meets the query's and whose word filter may hold its text.
//!
//! Files, under `<store_dir>/index/<agent>/`: `blocks` (a 40-byte header —
//! magic and the fingerprint of the identity that opened sealed bodies —
//! then 72-byte entries, each with the CRC32C of its filter and its own) and `words` (the filters, one after another).

use super::scan::{At, Scan, ScanError, peek};
use super::timeline::{self, Timeline};
use super::words::{WordFilter, WordSet};
use super::{Bodies, open_record};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use wormlog_spool::record::Kind;

const MAGIC: &[u8; 8] = b"WLIDX004";
const HEADER: u64 = 40;
const ENTRY: usize = 72;
/// The most records in a block.
const BLOCK_RECORDS: u64 = 1024;

/// One block of records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block {
    pub seq: u64,
    pub at: At,
    pub records: u64,
    pub min_ts: i64,
    pub max_ts: i64,
    /// Whether the block starts with a checkpoint (each checkpoint starts
    /// one; a block also ends after [`BLOCK_RECORDS`] records).
    pub checkpoint: bool,
    /// Whether it holds the genesis or an `epoch_key` record (the key
    /// ledger a bundle carries is gathered from these blocks).
    pub keys: bool,
    /// Sealed entries whose text is not in the word filter (not opened when
    /// the block was indexed): a search skipping the block did not look in
    /// them.
    pub sealed_unindexed: u64,
    filter_off: u64,
    /// The filter's length in 64-bit words.
    filter_words: u32,
    /// CRC32C of the filter's bytes.
    filter_crc: u32,
}

impl Block {
    pub fn end_seq(&self) -> u64 {
        self.seq + self.records
    }

    fn encode(&self) -> [u8; ENTRY] {
        let mut b = [0u8; ENTRY];
        let words = [
            self.seq,
            self.at.segment,
            self.at.offset,
            self.records,
            self.min_ts as u64,
            self.max_ts as u64,
            self.filter_off,
            u64::from(self.filter_words)
                | (u64::from(self.checkpoint) << 32)
                | (u64::from(self.keys) << 33)
                | (self.sealed_unindexed.min((1 << 30) - 1) << 34),
        ];
        for (i, w) in words.iter().enumerate() {
            b[i * 8..i * 8 + 8].copy_from_slice(&w.to_le_bytes());
        }
        b[64..68].copy_from_slice(&self.filter_crc.to_le_bytes());
        let crc = crc32c::crc32c(&b[..68]);
        b[68..72].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// None when the entry's CRC does not match.
    fn decode(b: &[u8]) -> Option<Block> {
        let crc = u32::from_le_bytes(b[68..72].try_into().expect("4"));
        if crc32c::crc32c(&b[..68]) != crc {
            return None;
        }
        let w = |i: usize| u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().expect("8"));
        Some(Block {
            seq: w(0),
            at: At {
                segment: w(1),
                offset: w(2),
            },
            records: w(3),
            min_ts: w(4) as i64,
            max_ts: w(5) as i64,
            filter_off: w(6),
            filter_words: w(7) as u32,
            checkpoint: w(7) >> 32 & 1 == 1,
            keys: w(7) >> 33 & 1 == 1,
            sealed_unindexed: w(7) >> 34,
            filter_crc: u32::from_le_bytes(b[64..68].try_into().expect("4")),
        })
    }
}

/// The index of one agent's store.
#[derive(Debug)]
pub struct AgentIndex {
    store: PathBuf,
    blocks_path: PathBuf,
    filters_path: PathBuf,
    keys_path: PathBuf,
    /// Where the genesis and every `epoch_key` record stand (the key
    /// ledger of a bundle), in seq order.
    key_records: Vec<(u64, At)>,
    blocks: Vec<Block>,
    filters_len: u64,
    /// The records after the last whole block (not kept on disk).
    tail: Option<Block>,
    fingerprint: [u8; 32],
    opened: bool,
    /// The filters' file, open for reading.
    filters_file: std::sync::Mutex<Option<File>>,
    /// The agent's timeline, taken in by the same pass.
    timeline: Timeline,
}

impl AgentIndex {
    /// Opens the index of the store `store` (an agent directory), in
    /// `dir`; a missing, damaged or stale one is started again.
    pub fn open(store: &Path, dir: &Path, fingerprint: [u8; 32]) -> std::io::Result<AgentIndex> {
        std::fs::create_dir_all(dir)?;
        let mut ix = AgentIndex {
            store: store.to_owned(),
            blocks_path: dir.join("blocks"),
            filters_path: dir.join("words"),
            keys_path: dir.join("keys"),
            key_records: Vec::new(),
            blocks: Vec::new(),
            filters_len: 0,
            tail: None,
            fingerprint,
            opened: true,
            filters_file: std::sync::Mutex::new(None),
            timeline: Timeline::empty(timeline::path_in(dir)),
        };
        if !ix.load()? {
            ix.reset()?;
        }
        Ok(ix)
    }

    /// A placeholder until [`AgentIndex::open`].
    pub fn empty() -> AgentIndex {
        AgentIndex {
            store: PathBuf::new(),
            blocks_path: PathBuf::new(),
            filters_path: PathBuf::new(),
            keys_path: PathBuf::new(),
            key_records: Vec::new(),
            blocks: Vec::new(),
            filters_len: 0,
            tail: None,
            fingerprint: [0; 32],
            opened: false,
            filters_file: std::sync::Mutex::new(None),
            timeline: Timeline::empty(PathBuf::new()),
        }
    }

    pub fn is_open(&self) -> bool {
        self.opened
    }

    /// Loads what is on disk; false when it must be rebuilt.
    fn load(&mut self) -> std::io::Result<bool> {
        let bytes = match std::fs::read(&self.blocks_path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        if bytes.len() < HEADER as usize || &bytes[..8] != MAGIC || bytes[8..40] != self.fingerprint
        {
            return Ok(false);
        }
        let filters = std::fs::read(&self.filters_path).unwrap_or_default();
        let filters_len = filters.len() as u64;
        let mut blocks = Vec::new();
        let mut expect = 0;
        // Whole entries, in order, each with its filter whole: the rest (a
        // crash, damage) is cut and indexed again.
        for e in bytes[HEADER as usize..].chunks_exact(ENTRY) {
            let Some(b) = Block::decode(e) else { break };
            let flen = u64::from(b.filter_words) * 8;
            let end = b.filter_off.saturating_add(flen);
            if b.seq != expect
                || end > filters_len
                || crc32c::crc32c(&filters[b.filter_off as usize..end as usize]) != b.filter_crc
            {
                break;
            }
            expect = b.end_seq();
            blocks.push(b);
        }
        self.filters_len = blocks
            .last()
            .map_or(0, |b| b.filter_off + u64::from(b.filter_words) * 8);
        // Cut what a crash left half-written, so appends stay aligned.
        let keep = HEADER + (blocks.len() * ENTRY) as u64;
        if keep != bytes.len() as u64 {
            OpenOptions::new()
                .write(true)
                .open(&self.blocks_path)?
                .set_len(keep)?;
        }
        if self.filters_len != filters_len {
            OpenOptions::new()
                .write(true)
                .open(&self.filters_path)?
                .set_len(self.filters_len)?;
        }
        self.blocks = blocks;
        if !self.load_keys()? || !self.timeline.load()? {
            return Ok(false);
        }
        // The timeline must have taken in every whole block (it may hold
        // the tail too: those records are passed over when read again).
        Ok(self.timeline.state().next_seq >= self.blocks.last().map_or(0, Block::end_seq))
    }

    /// The key records up to the end of the whole blocks (those after are
    /// found again when the tail is read); the file cut to them. False when
    /// they do not match the blocks that hold key records (a lost or
    /// damaged file): the index is then built again.
    fn load_keys(&mut self) -> std::io::Result<bool> {
        let end = self.blocks.last().map_or(0, Block::end_seq);
        let bytes = std::fs::read(&self.keys_path).unwrap_or_default();
        let mut keys: Vec<(u64, At)> = Vec::new();
        for e in bytes.chunks_exact(24) {
            let w = |i: usize| u64::from_le_bytes(e[i * 8..i * 8 + 8].try_into().expect("8"));
            let (seq, at) = (
                w(0),
                At {
                    segment: w(1),
                    offset: w(2),
                },
            );
            if seq >= end || keys.last().is_some_and(|(s, _)| *s >= seq) {
                break;
            }
            keys.push((seq, at));
        }
        if bytes.len() != keys.len() * 24 {
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.keys_path)?
                .set_len((keys.len() * 24) as u64)?;
        }
        // Both in seq order: one pass pairs each block with its key records.
        let mut next = keys.iter().map(|(s, _)| *s).peekable();
        let matches = self.blocks.iter().all(|b| {
            let mut inside = false;
            while next.next_if(|s| *s < b.end_seq()).is_some() {
                inside = true;
            }
            inside == b.keys
        });
        self.key_records = keys;
        Ok(matches)
    }

    /// Where the genesis and the `epoch_key` records before `seq` stand.
    pub fn key_records(&self, before: u64) -> impl Iterator<Item = (u64, At)> + '_ {
        self.key_records
            .iter()
            .copied()
            .take_while(move |(s, _)| *s < before)
    }

    /// Notes a genesis or `epoch_key` record (once: the tail is read again
    /// at each refresh).
    fn key_record(&mut self, seq: u64, at: At) -> Result<(), ScanError> {
        if self.key_records.last().is_some_and(|(s, _)| *s >= seq) {
            return Ok(());
        }
        let mut e = Vec::with_capacity(24);
        for w in [seq, at.segment, at.offset] {
            e.extend_from_slice(&w.to_le_bytes());
        }
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.keys_path)
            .and_then(|mut f| f.write_all(&e))
            .map_err(|source| ScanError::Io {
                path: self.keys_path.clone(),
                source,
            })?;
        self.key_records.push((seq, at));
        Ok(())
    }

    /// Starts the index again from nothing.
    pub fn reset(&mut self) -> std::io::Result<()> {
        let mut head = Vec::with_capacity(HEADER as usize);
        head.extend_from_slice(MAGIC);
        head.extend_from_slice(&self.fingerprint);
        std::fs::write(&self.blocks_path, &head)?;
        std::fs::write(&self.filters_path, b"")?;
        std::fs::write(&self.keys_path, b"")?;
        self.timeline.reset()?;
        self.key_records.clear();
        *self.filters_file.lock().unwrap_or_else(|p| p.into_inner()) = None;
        self.blocks.clear();
        self.filters_len = 0;
        self.tail = None;
        Ok(())
    }

    pub fn blocks(&self) -> &[Block] {
        &self.blocks
    }

    /// The agent's timeline (up to date after [`AgentIndex::refresh`]).
    pub fn timeline(&self) -> &Timeline {
        &self.timeline
    }

    /// The records after the last whole block.
    pub fn tail(&self) -> Option<Block> {
        self.tail
    }

    /// The block holding record `seq`.
    pub fn block_of(&self, seq: u64) -> Option<Block> {
        self.all()
            .take_while(|b| b.seq <= seq)
            .last()
            .filter(|b| seq < b.end_seq())
    }

    /// The last block starting with a checkpoint (or the genesis record)
    /// at or before `seq`: where a proof of the records from `seq` on can
    /// start.
    pub fn checkpoint_at_or_before(&self, seq: u64) -> Option<Block> {
        self.all()
            .take_while(|b| b.seq <= seq)
            .filter(|b| b.checkpoint || b.seq == 0)
            .last()
    }

    /// Every block, the tail last.
    pub fn all(&self) -> impl Iterator<Item = Block> + '_ {
        self.blocks.iter().copied().chain(self.tail)
    }

    /// The word filter of a whole block (None for the tail: it is read).
    pub fn filter(&self, b: &Block) -> std::io::Result<Option<WordFilter>> {
        if self.tail.is_some_and(|t| t.seq == b.seq) {
            return Ok(None);
        }
        let mut buf = vec![0u8; b.filter_words as usize * 8];
        let mut f = self.filters_file.lock().unwrap_or_else(|p| p.into_inner());
        if f.is_none() {
            *f = Some(File::open(&self.filters_path)?);
        }
        f.as_ref()
            .expect("opened")
            .read_exact_at(&mut buf, b.filter_off)?;
        Ok(WordFilter::from_bytes(&buf))
    }

    /// Takes in what the store holds beyond the index: whole blocks are
    /// written, the rest is the tail. Records are opened with `bodies` to
    /// index what sealed entries hold.
    pub fn refresh(
        &mut self,
        bodies: &mut Bodies,
        word_key: &[u8; 32],
        set: &mut WordSet,
    ) -> Result<(), ScanError> {
        if !self.timeline.present() {
            return Err(ScanError::Damaged(
                "index: the timeline file is gone".into(),
            ));
        }
        let (start, seq0) = match self.blocks.last() {
            None => (
                At {
                    segment: 0,
                    offset: 0,
                },
                0,
            ),
            Some(_) => {
                // Resume at the tail's start: the checkpoint after the last
                // whole block.
                match self.tail {
                    Some(t) => (t.at, t.seq),
                    None => match self.next_start()? {
                        Some(x) => x,
                        None => return Ok(()),
                    },
                }
            }
        };
        if super::scan::header_len(&self.store, start.segment)?.is_none() {
            return Ok(());
        }
        let mut scan = Scan::from(&self.store, start)?;
        let mut cur: Option<Block> = None;
        let mut expect = seq0;
        let mut fresh = Vec::new();
        bodies.prime(&self.store, start.segment)?;
        while let Some((at, rec)) = scan.next_record()? {
            let (kind, seq, ts) = peek(rec);
            if seq != expect {
                return Err(ScanError::Damaged(format!(
                    "index: record at segment {:016x} offset {} is seq {seq}, expected {expect}",
                    at.segment, at.offset
                )));
            }
            expect += 1;
            // A block ends before each checkpoint, and after BLOCK_RECORDS
            // records (so a rare word costs a small block to read).
            let full = cur.is_some_and(|b| b.records >= BLOCK_RECORDS);
            if (kind == Kind::Checkpoint as u8 || full)
                && let Some(b) = cur.take()
            {
                fresh.push((b, set.take_filter(word_key)));
            }
            let b = cur.get_or_insert(Block {
                seq,
                at,
                records: 0,
                min_ts: ts,
                max_ts: ts,
                checkpoint: kind == Kind::Checkpoint as u8,
                keys: false,
                sealed_unindexed: 0,
                filter_off: 0,
                filter_words: 0,
                filter_crc: 0,
            });
            b.records += 1;
            let key = kind == Kind::Genesis as u8 || kind == Kind::EpochKey as u8;
            b.keys |= key;
            if key {
                self.key_record(seq, at)?;
            }
            b.min_ts = b.min_ts.min(ts);
            b.max_ts = b.max_ts.max(ts);
            self.timeline.take(kind, seq, ts, rec);
            let unopened = bodies.sealed_unopened;
            if let Some(opened) = open_record(bodies, at.segment, rec) {
                for v in opened.texts() {
                    set.add(v);
                }
            }
            b.sealed_unindexed += bodies.sealed_unopened - unopened;
            if fresh.len() >= 64 {
                self.append(&mut fresh)?;
            }
        }
        // What is left in the set belongs to the tail: it is read, not
        // looked up, so its words are dropped.
        let _ = set.take_filter(word_key);
        self.append(&mut fresh)?;
        self.tail = cur;
        self.timeline.flush().map_err(|source| ScanError::Io {
            path: timeline::path_in(self.blocks_path.parent().unwrap_or(Path::new("."))),
            source,
        })
    }

    /// Where the block after the last whole one starts, when there is no
    /// tail in memory (an index just loaded): found by reading the last
    /// whole block again.
    fn next_start(&self) -> Result<Option<(At, u64)>, ScanError> {
        let Some(last) = self.blocks.last() else {
            return Ok(None);
        };
        let mut scan = Scan::from(&self.store, last.at)?;
        let mut n = 0;
        while let Some((_, _)) = scan.next_record()? {
            n += 1;
            if n == last.records {
                return Ok(Some((scan.position(), last.end_seq())));
            }
        }
        Err(ScanError::Damaged(
            "index: the store is shorter than its index".into(),
        ))
    }

    fn append(&mut self, fresh: &mut Vec<(Block, WordFilter)>) -> Result<(), ScanError> {
        if fresh.is_empty() {
            return Ok(());
        }
        let err = |p: &Path| {
            let p = p.to_owned();
            move |source| ScanError::Io { path: p, source }
        };
        let mut grams = OpenOptions::new()
            .append(true)
            .open(&self.filters_path)
            .map_err(err(&self.filters_path))?;
        let mut entries = Vec::with_capacity(fresh.len() * ENTRY);
        let mut gbytes = Vec::new();
        for (b, bm) in fresh.drain(..) {
            let mut b = b;
            let bytes = bm.to_bytes();
            b.filter_off = self.filters_len + gbytes.len() as u64;
            b.filter_words = bm.bits.len() as u32;
            b.filter_crc = crc32c::crc32c(&bytes);
            gbytes.extend_from_slice(&bytes);
            entries.extend_from_slice(&b.encode());
            self.blocks.push(b);
        }
        grams.write_all(&gbytes).map_err(err(&self.filters_path))?;
        self.filters_len += gbytes.len() as u64;
        let mut f = OpenOptions::new()
            .append(true)
            .open(&self.blocks_path)
            .map_err(err(&self.blocks_path))?;
        f.write_all(&entries).map_err(err(&self.blocks_path))?;
        Ok(())
    }
}
