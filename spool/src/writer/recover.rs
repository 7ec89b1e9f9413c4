//! Finding where the spool stands when it is opened: O(last segment).
//!
//! The last checkpoint holds the Merkle frontier and chain head; the anchor
//! checkpoint at the start of its segment holds every source's position.
//! Only the records after the last checkpoint are hashed again; the entries
//! between the anchor and it are decoded for their positions only.

use crate::error::{SpoolError, io_at};
use crate::frame::{FrameAt, completed_write, frame_at};
use crate::hash::{Hash, ZERO32, leaf_hash, sha256};
use crate::merkle::Frontier;
use crate::position::Position;
use crate::record::{GapReason, Kind, Payload, Record, RecoveryCause, SIGNATURE_LEN};
use crate::segment::SegmentHeader;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Every source's position: source name → stream key → position.
pub type Positions = BTreeMap<String, BTreeMap<(u64, u64, u64), Position>>;

/// The writer's view of the chain.
#[derive(Debug, Clone, Default)]
pub(crate) struct ChainState {
    pub next_seq: u64,
    pub head: Hash,
    pub frontier: Frontier,
    pub epoch: u64,
    pub positions: Positions,
    pub last_ts: i64,
    pub last_kind: Option<Kind>,
    /// The kind of the record before the last one.
    pub prev_kind: Option<Kind>,
    pub bytes_since_checkpoint: u64,
    /// The newest epoch transition seen: (to_epoch, new_pubkey).
    pub last_epoch_key: Option<(u64, [u8; 32])>,
    /// The newest checkpoint seen: (epoch, signed bytes, signature).
    pub last_checkpoint: Option<(u64, Vec<u8>, [u8; 64])>,
    pub genesis_pubkey: Option<[u8; 32]>,
}

impl ChainState {
    /// Whether the last process closed the spool: its last records are
    /// `stop` and the final checkpoint after it (a `stop` alone when the
    /// checkpoint did not reach the disk).
    pub fn stopped_cleanly(&self) -> bool {
        self.last_kind == Some(Kind::Stop)
            || (self.last_kind == Some(Kind::Checkpoint) && self.prev_kind == Some(Kind::Stop))
    }
}

/// How the last segment ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Tail {
    /// Ends on a record boundary; more may be appended.
    Clean,
    /// Ends with a `seal` record.
    Sealed,
    /// Bytes after the last good record.
    Damaged {
        cause: RecoveryCause,
        offset: u64,
        len: u64,
        sha256: Hash,
    },
}

/// The last segment as found.
#[derive(Debug, Clone)]
pub(crate) struct LastSegment {
    pub no: u64,
    pub path: PathBuf,
    pub header: SegmentHeader,
    /// End of the last good record.
    pub end: u64,
    pub records: u64,
    pub tail: Tail,
    /// Whether it holds a `data_key` record (its entries are sealed).
    pub keyed: bool,
}

struct Loaded {
    no: u64,
    path: PathBuf,
    bytes: Vec<u8>,
    header: SegmentHeader,
    /// (frame offset, record start, record end) of every good frame.
    frames: Vec<(usize, usize, usize)>,
    /// Where the good frames stop, and what lies there.
    stop: (usize, FrameAt),
}

fn corrupt(path: &std::path::Path, reason: impl Into<String>) -> SpoolError {
    SpoolError::Corrupt {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

fn load(no: u64, path: &PathBuf, limit: Option<u64>) -> Result<Loaded, SpoolError> {
    let mut bytes = std::fs::read(path).map_err(io_at("read", path))?;
    if let Some(limit) = limit {
        bytes.truncate(limit as usize);
    }
    let (header, hlen) =
        SegmentHeader::decode(&bytes).map_err(|e| corrupt(path, format!("segment header: {e}")))?;
    if header.segment_no != no {
        return Err(corrupt(
            path,
            "segment number in the header differs from the file name",
        ));
    }
    let mut frames = Vec::new();
    let mut off = hlen;
    let stop = loop {
        match frame_at(&bytes, off) {
            FrameAt::Frame { start, end } => {
                frames.push((off, start, end));
                off = end;
            }
            other => break (off, other),
        }
    };
    Ok(Loaded {
        no,
        path: path.clone(),
        bytes,
        header,
        frames,
        stop,
    })
}

fn first_record_is_recovery_of(seg: &Loaded, prev_no: u64) -> Option<u64> {
    let &(_, s, e) = seg.frames.first()?;
    match Record::decode(&seg.bytes[s..e]).ok()?.payload {
        Payload::Recovery {
            segment_no,
            region_offset,
            ..
        } if segment_no == prev_no => Some(region_offset),
        _ => None,
    }
}

/// Rebuilds the chain state from the last segments. `limit` cuts the last
/// segment at a byte offset (after a failed fsync: what is durable).
pub(crate) fn scan(
    segs: &[(u64, PathBuf)],
    limit: Option<u64>,
) -> Result<(ChainState, LastSegment), SpoolError> {
    let (last_no, last_path) = segs.last().expect("at least one segment");
    let mut loaded = vec![load(*last_no, last_path, limit)?];
    // Walk back until a segment holding a checkpoint is loaded.
    let mut idx = segs.len() - 1;
    while !has_checkpoint(&loaded[0]) && idx > 0 {
        idx -= 1;
        let (no, path) = &segs[idx];
        loaded.insert(0, load(*no, path, None)?);
    }
    // A segment followed by a recovery record ends where the record says.
    for i in 0..loaded.len() - 1 {
        if let Some(end) = first_record_is_recovery_of(&loaded[i + 1], loaded[i].no) {
            let seg = &mut loaded[i];
            seg.frames.retain(|&(off, ..)| off < end as usize);
        }
    }

    let mut st = ChainState::default();
    let (start_seg, start_frame) = match find_last_checkpoint(&loaded[0]) {
        Some(fi) => {
            let seg = &loaded[0];
            // Positions: the anchor's table, then entries up to the checkpoint.
            let anchor = seg
                .frames
                .iter()
                .position(|f| is_checkpoint(seg, f))
                .expect("a checkpoint exists");
            if let Payload::Checkpoint(cp) = &decode(seg, &seg.frames[anchor])?.payload {
                for (name, pos) in &cp.sources {
                    let p = pos
                        .to_position()
                        .map_err(|e| corrupt(&seg.path, e.to_string()))?;
                    st.positions
                        .entry((*name).to_owned())
                        .or_default()
                        .insert(p.stream_key(), p);
                }
            }
            for f in seg.frames.iter().take(fi).skip(anchor + 1) {
                let rec = decode(seg, f)?;
                track_position(&mut st, &rec, &seg.path)?;
                st.last_kind = Some(rec.kind);
            }
            let rec = decode(seg, &seg.frames[fi])?;
            let Payload::Checkpoint(cp) = &rec.payload else {
                unreachable!("found as a checkpoint")
            };
            st.frontier =
                Frontier::from_parts(cp.tree_size, cp.frontier.clone()).ok_or_else(|| {
                    corrupt(
                        &seg.path,
                        "checkpoint frontier does not match its tree size",
                    )
                })?;
            st.head = cp.head;
            st.next_seq = rec.seq;
            st.epoch = cp.epoch;
            (0, fi)
        }
        None => {
            if loaded[0].no != 0 || loaded[0].header.first_seq != 0 {
                return Err(corrupt(
                    &loaded[0].path,
                    "no checkpoint found in the spool's last segments",
                ));
            }
            st.head = ZERO32;
            (0, 0)
        }
    };

    for (si, seg) in loaded.iter().enumerate().skip(start_seg) {
        let first = if si == start_seg { start_frame } else { 0 };
        if (si > start_seg || first == 0)
            && (seg.header.first_seq != st.next_seq || seg.header.prev_head != st.head)
        {
            return Err(corrupt(
                &seg.path,
                "segment header does not continue the chain",
            ));
        }
        for f in &seg.frames[first..] {
            let rec_bytes = &seg.bytes[f.1..f.2];
            let rec = decode(seg, f)?;
            if rec.seq != st.next_seq {
                return Err(corrupt(
                    &seg.path,
                    format!(
                        "record at offset {} has seq {}, expected {}",
                        f.0, rec.seq, st.next_seq
                    ),
                ));
            }
            apply(&mut st, &rec, rec_bytes, &seg.path)?;
        }
    }

    let seg = loaded.last().expect("loaded");
    let end = seg.frames.last().map_or(seg.stop.0, |f| f.2) as u64;
    let tail = if end as usize == seg.bytes.len() {
        if st.last_kind == Some(Kind::Seal) && seg.frames.last().is_some_and(|f| f.2 as u64 == end)
        {
            Tail::Sealed
        } else {
            Tail::Clean
        }
    } else {
        let region = &seg.bytes[end as usize..];
        // The verifiers' rule (docs/FORMAT.md §7 step 5): what is not a
        // write cut short is damage.
        let cause = if completed_write(&seg.bytes, end as usize, st.next_seq).is_some() {
            RecoveryCause::Corruption
        } else {
            RecoveryCause::TornTail
        };
        Tail::Damaged {
            cause,
            offset: end,
            len: region.len() as u64,
            sha256: sha256(region),
        }
    };
    let last = LastSegment {
        no: seg.no,
        path: seg.path.clone(),
        header: seg.header.clone(),
        end,
        records: seg.frames.len() as u64,
        keyed: seg
            .frames
            .iter()
            .any(|&(_, s, _)| seg.bytes.get(s + 1) == Some(&(Kind::DataKey as u8))),
        tail,
    };
    Ok((st, last))
}

fn decode<'a>(seg: &'a Loaded, f: &(usize, usize, usize)) -> Result<Record<'a>, SpoolError> {
    Record::decode(&seg.bytes[f.1..f.2])
        .map_err(|e| corrupt(&seg.path, format!("record at offset {}: {e}", f.0)))
}

fn is_checkpoint(seg: &Loaded, f: &(usize, usize, usize)) -> bool {
    seg.bytes.get(f.1 + 1) == Some(&(Kind::Checkpoint as u8))
}

fn has_checkpoint(seg: &Loaded) -> bool {
    seg.frames.iter().any(|f| is_checkpoint(seg, f))
}

fn find_last_checkpoint(seg: &Loaded) -> Option<usize> {
    seg.frames.iter().rposition(|f| is_checkpoint(seg, f))
}

fn track_position(
    st: &mut ChainState,
    rec: &Record<'_>,
    path: &std::path::Path,
) -> Result<(), SpoolError> {
    let (source, pos) = match &rec.payload {
        Payload::Entry(e) => (e.source, e.position),
        Payload::Gap {
            source,
            position,
            reason,
            ..
        } if *reason == GapReason::Deleted as u16 => {
            // The stream ended (docs/FORMAT.md §6.10): forgotten.
            let p = position
                .to_position()
                .map_err(|e| corrupt(path, e.to_string()))?;
            if let Some(m) = st.positions.get_mut(*source) {
                m.remove(&p.stream_key());
                if m.is_empty() {
                    st.positions.remove(*source);
                }
            }
            return Ok(());
        }
        Payload::Gap {
            source, position, ..
        } => (*source, *position),
        Payload::Checkpoint(cp) if !cp.sources.is_empty() => {
            // A checkpoint that carries the table replaces it (§6.3).
            st.positions.clear();
            for (name, pos) in &cp.sources {
                let p = pos
                    .to_position()
                    .map_err(|e| corrupt(path, e.to_string()))?;
                st.positions
                    .entry((*name).to_owned())
                    .or_default()
                    .insert(p.stream_key(), p);
            }
            return Ok(());
        }
        Payload::Receipt { tree_size, .. } => {
            let p = Position::Counter(*tree_size);
            st.positions
                .entry(super::append::FORWARD_POSITION.to_owned())
                .or_default()
                .insert(p.stream_key(), p);
            return Ok(());
        }
        _ => return Ok(()),
    };
    let p = pos
        .to_position()
        .map_err(|e| corrupt(path, e.to_string()))?;
    if p == Position::None {
        return Ok(()); // as the writer: nothing to resume from
    }
    let key = p.stream_key();
    match st.positions.get_mut(source) {
        Some(m) => {
            m.insert(key, p);
        }
        None => {
            st.positions
                .entry(source.to_owned())
                .or_default()
                .insert(key, p);
        }
    }
    Ok(())
}

/// Replays one record into the state.
fn apply(
    st: &mut ChainState,
    rec: &Record<'_>,
    bytes: &[u8],
    path: &std::path::Path,
) -> Result<(), SpoolError> {
    track_position(st, rec, path)?;
    match &rec.payload {
        Payload::Checkpoint(cp) => {
            st.bytes_since_checkpoint = 0;
            st.last_checkpoint = Some((
                cp.epoch,
                bytes[..bytes.len() - SIGNATURE_LEN].to_vec(),
                cp.signature,
            ));
            st.epoch = cp.epoch;
        }
        Payload::EpochKey {
            to_epoch,
            new_pubkey,
            ..
        } => {
            st.epoch = *to_epoch;
            st.last_epoch_key = Some((*to_epoch, *new_pubkey));
        }
        Payload::Genesis { first_pubkey, .. } => st.genesis_pubkey = Some(*first_pubkey),
        _ => st.bytes_since_checkpoint += bytes.len() as u64 + 8,
    }
    let leaf = leaf_hash(bytes);
    st.head = leaf;
    st.frontier.push(leaf);
    st.next_seq += 1;
    st.last_ts = rec.ts;
    st.prev_kind = st.last_kind.replace(rec.kind);
    Ok(())
}
