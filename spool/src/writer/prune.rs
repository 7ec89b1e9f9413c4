//! Pruning: the oldest segments are removed once the collector has
//! acknowledged every record in them (docs/FORMAT.md §6.13 and the key
//! ledger, §2.1).
//!
//! The order makes every crash safe: the write-once flags of the segments
//! to go are cleared first (a refusal stops the prune before anything is
//! written), then the key ledger is replaced, then the `prune` record is
//! made durable, and only then are the files removed, oldest first. A
//! removal that fails after the record is retried before the next prune;
//! a crash in between leaves segments that the chain already calls pruned,
//! which a later prune removes.

use super::Spool;
use super::append::FORWARD_POSITION;
use crate::clock::wall_ns;
use crate::error::{SpoolError, io_at};
use crate::frame::{FrameAt, frame_at};
use crate::ledger;
use crate::position::Position;
use crate::record::{Kind, Payload, Record};
use crate::segment::{SegmentHeader, list_segments, recovery_limit, segment_path};
use crate::worm;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Which acknowledged segments may go.
#[derive(Debug, Clone, Copy)]
pub struct PrunePolicy {
    /// Segments closed longer ago than this go.
    pub retention: Duration,
    /// Also remove younger acknowledged segments, oldest first, until this
    /// many bytes are freed (the disk budget needs the room).
    pub bytes_to_free: u64,
}

/// What a prune removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pruned {
    /// Segments `first..first_kept` were removed.
    pub first: u64,
    pub first_kept: u64,
    pub first_kept_seq: u64,
    pub bytes: u64,
    /// The `prune` record's seq.
    pub seq: u64,
    pub detail: String,
}

/// The start of a segment, as pruning needs it.
#[derive(Debug)]
struct SegmentStart {
    no: u64,
    path: PathBuf,
    len: u64,
    header: SegmentHeader,
    /// The ts of its first record (when the segment before it was closed).
    first_ts: Option<i64>,
    /// Its first record is a whole, valid checkpoint inside its log: it can
    /// be where a pruned spool starts.
    anchored: bool,
}

fn corrupt(path: &Path, reason: impl Into<String>) -> SpoolError {
    SpoolError::Corrupt {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

/// Reads segment `no`'s header and first record. `log_end` is where its
/// log ends if a recovery record in the next segment says so.
fn read_start(no: u64, path: &Path, log_end: Option<u64>) -> Result<SegmentStart, SpoolError> {
    let mut f = fs::File::open(path).map_err(io_at("open", path))?;
    let len = f.metadata().map_err(io_at("stat", path))?.len();
    let mut buf = Vec::new();
    (&mut f)
        .take(4096)
        .read_to_end(&mut buf)
        .map_err(io_at("read", path))?;
    let (header, hlen) =
        SegmentHeader::decode(&buf).map_err(|e| corrupt(path, format!("segment header: {e}")))?;
    // The whole first frame (an anchor can be larger than 4 KiB).
    let mut first_ts = None;
    let mut anchored = false;
    if let Some(flen) = buf
        .get(hlen + 4..hlen + 8)
        .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize)
    {
        let want = (hlen + 8 + flen).min(len as usize);
        if want > buf.len() {
            (&mut f)
                .take((want - buf.len()) as u64)
                .read_to_end(&mut buf)
                .map_err(io_at("read", path))?;
        }
        if let FrameAt::Frame { start, end } = frame_at(&buf, hlen)
            && let Ok(rec) = Record::decode(&buf[start..end])
        {
            first_ts = Some(rec.ts);
            anchored = matches!(rec.payload, Payload::Checkpoint(_))
                && log_end.is_none_or(|l| l >= end as u64);
        }
    }
    Ok(SegmentStart {
        no,
        path: path.to_owned(),
        len,
        header,
        first_ts,
        anchored,
    })
}

impl Spool {
    /// The collector has acknowledged every record below this seq.
    pub fn acknowledged(&mut self) -> u64 {
        match self
            .positions()
            .get(FORWARD_POSITION)
            .and_then(|m| m.values().next())
        {
            Some(Position::Counter(n)) => *n,
            _ => 0,
        }
    }

    /// Removes the oldest segments that the collector has acknowledged and
    /// that `policy` lets go. The first segment kept must begin with its
    /// anchor checkpoint (what a verifier starts from).
    pub fn prune(&mut self, policy: &PrunePolicy) -> Result<Option<Pruned>, SpoolError> {
        if self.stopped {
            return Err(SpoolError::Stopped);
        }
        self.remove_unremoved()?;
        let acked = self.acknowledged();
        let dir = self.opts.dir.clone();
        let (segs, _) = list_segments(&dir).map_err(io_at("list", &dir))?;
        let now = wall_ns();
        let retention_ns = i64::try_from(policy.retention.as_nanos()).unwrap_or(i64::MAX);
        let limit_of = |no: u64| -> Result<Option<u64>, SpoolError> {
            let next = segment_path(&dir, no + 1);
            Ok(recovery_limit(&next, no)
                .map_err(io_at("read", &next))?
                .map(|(offset, _)| offset))
        };
        let mut starts: Vec<SegmentStart> = Vec::new();
        // (index of the first kept segment in `starts`, bytes freed, whether
        // every segment removed is past the retention)
        let mut cut: Option<(usize, u64, bool)> = None;
        let (mut freed, mut all_old) = (0u64, true);
        for (no, path) in &segs {
            if *no >= self.seg.no {
                break;
            }
            if starts.is_empty() {
                starts.push(read_start(*no, path, limit_of(*no)?)?);
            }
            // The next segment says where this one ends and when it closed.
            if !segs.iter().any(|(n, _)| *n == no + 1) {
                break;
            }
            let next_path = segment_path(&dir, no + 1);
            let next = read_start(no + 1, &next_path, limit_of(no + 1)?)?;
            if next.header.first_seq > acked {
                break;
            }
            let closed_at = next.first_ts.unwrap_or(now);
            let old = now.saturating_sub(closed_at) >= retention_ns;
            if !old && freed >= policy.bytes_to_free {
                break;
            }
            all_old &= old;
            freed += starts.last().expect("pushed").len;
            let anchored = next.anchored;
            starts.push(next);
            if anchored {
                cut = Some((starts.len() - 1, freed, all_old));
            }
        }
        let Some((kept_idx, bytes, all_old)) = cut else {
            return Ok(None);
        };
        let first = starts[0].no;
        let kept = &starts[kept_idx];
        let (first_kept, first_kept_seq, anchor_head) =
            (kept.no, kept.header.first_seq, kept.header.prev_head);
        let removed: Vec<PathBuf> = starts[..kept_idx].iter().map(|s| s.path.clone()).collect();
        // A segment that cannot lose its flags cannot be removed: find out
        // before anything is written.
        for path in &removed {
            worm::clear_flags(path).map_err(io_at("clear the write-once flags of", path))?;
        }
        self.extend_ledger(&starts[..=kept_idx])?;
        let why = if all_old {
            format!(
                "older than the retention of {}s",
                policy.retention.as_secs()
            )
        } else {
            "to keep the spool within its disk budget".to_owned()
        };
        let detail = format!(
            "removed segments {first}..{} ({bytes} bytes): acknowledged by the collector (below seq {acked}), {why}",
            first_kept - 1
        );
        let seq = self.push_payload(
            Kind::Prune,
            wall_ns(),
            &Payload::Prune {
                first_kept_segment: first_kept,
                first_kept_seq,
                anchor_head,
                detail: &detail,
            },
        );
        self.sync()?;
        self.unremoved = removed;
        self.remove_unremoved()?;
        Ok(Some(Pruned {
            first,
            first_kept,
            first_kept_seq,
            bytes,
            seq,
            detail,
        }))
    }

    /// Removes the segments a durable `prune` record named, oldest first.
    fn remove_unremoved(&mut self) -> Result<(), SpoolError> {
        let dir = self.opts.dir.clone();
        let mut result = Ok(());
        while let Some(path) = self.unremoved.first().cloned() {
            let _ = worm::clear_flags(&path);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    result = Err(io_at("remove", &path)(e));
                    break;
                }
            }
            self.unremoved.remove(0);
        }
        fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(io_at("fsync directory", &dir))?;
        self.count_closed_bytes()?;
        result
    }

    /// Adds the genesis and epoch-transition records of the segments about
    /// to be removed (all of `starts` but the last, the first kept) to the
    /// key ledger. Each segment is read only as far as its log goes (a
    /// recovery record may say it ends early); records the ledger already
    /// holds from an earlier, interrupted prune are replaced, not doubled.
    fn extend_ledger(&self, starts: &[SegmentStart]) -> Result<(), SpoolError> {
        let dir = &self.opts.dir;
        let path = ledger::ledger_path(dir);
        let mut records: Vec<Vec<u8>> = match ledger::load(dir) {
            Ok(Some(r)) => r,
            // Without a ledger only a spool that still starts at 0 can prune.
            Ok(None) if starts[0].no == 0 => Vec::new(),
            Ok(None) => {
                return Err(corrupt(
                    &path,
                    format!(
                        "the spool starts at segment {} but its key ledger is missing: pruning stopped (restore {} from a backup, or verify the collector's copy)",
                        starts[0].no,
                        ledger::LEDGER_FILE
                    ),
                ));
            }
            Err(e) => return Err(corrupt(&path, e.to_string())),
        };
        let first_seq = starts[0].header.first_seq;
        records.retain(|r| Record::decode(r).is_ok_and(|r| r.seq < first_seq));
        for pair in starts.windows(2) {
            let (seg, next) = (&pair[0], &pair[1]);
            let bytes = fs::read(&seg.path).map_err(io_at("read", &seg.path))?;
            let end = recovery_limit(&next.path, seg.no)
                .map_err(io_at("read", &next.path))?
                .map_or(bytes.len(), |(offset, _)| {
                    (offset as usize).min(bytes.len())
                });
            let data = &bytes[..end];
            let (_, mut off) = SegmentHeader::decode(data)
                .map_err(|e| corrupt(&seg.path, format!("segment header: {e}")))?;
            while let FrameAt::Frame { start, end } = frame_at(data, off) {
                if ledger::is_ledger_kind(&data[start..end]) {
                    records.push(data[start..end].to_vec());
                }
                off = end;
            }
        }
        ledger::store(dir, &records).map_err(io_at("write", &path))
    }
}
