//! Disk use and pruning: the oldest segments are removed once the collector
//! has acknowledged every record in them (docs/FORMAT.md §6.13 and the key
//! ledger, §2.1). Each removal is written into the chain first, as a
//! `prune` record, and only then carried out, so a crash in between leaves
//! segments that the chain already calls pruned (harmless: the next round
//! removes them), never segments gone without a record.

use super::Spool;
use super::append::FORWARD_POSITION;
use crate::clock::wall_ns;
use crate::error::{SpoolError, io_at};
use crate::frame::{FrameAt, frame_at};
use crate::hash::Hash;
use crate::ledger;
use crate::position::Position;
use crate::record::{Kind, Payload, peek_kind};
use crate::segment::{SegmentHeader, list_segments};
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
    pub free_bytes: u64,
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

/// A segment as pruning sees it.
struct SegmentHead {
    no: u64,
    path: PathBuf,
    len: u64,
    header: SegmentHeader,
    /// Kind and ts of its first record.
    first: Option<(Kind, i64)>,
}

fn read_head(no: u64, path: &Path) -> std::io::Result<SegmentHead> {
    let mut f = fs::File::open(path)?;
    let len = f.metadata()?.len();
    let mut buf = vec![0u8; 4096.min(len as usize)];
    f.read_exact(&mut buf)?;
    let (header, hlen) = SegmentHeader::decode(&buf)
        .map_err(|e| std::io::Error::other(format!("{}: {e}", path.display())))?;
    // Only the first 20 bytes of the first record are needed (kind, ts).
    let first = (buf.len() >= hlen + 8 + 20).then(|| {
        let rec = &buf[hlen + 8..hlen + 28];
        let kind = peek_kind(rec).and_then(Kind::from_u8)?;
        let ts = i64::from_le_bytes(rec[12..20].try_into().ok()?);
        Some((kind, ts))
    });
    Ok(SegmentHead {
        no,
        path: path.to_owned(),
        len,
        header,
        first: first.flatten(),
    })
}

impl Spool {
    /// Bytes the spool holds on disk: its segments (the active one as far
    /// as it has been written or handed over) and the key ledger.
    pub fn disk_usage(&self) -> u64 {
        self.other_bytes + self.submitted + self.pending.len() as u64
    }

    /// Recounts the bytes of every file but the active segment.
    pub(super) fn count_other_bytes(&mut self) -> Result<(), SpoolError> {
        let dir = self.opts.dir.clone();
        let (segs, _) = list_segments(&dir).map_err(io_at("list", &dir))?;
        let mut total = fs::metadata(ledger::ledger_path(&dir)).map_or(0, |m| m.len());
        for (no, path) in segs {
            if no != self.seg.no {
                total += fs::metadata(&path).map_or(0, |m| m.len());
            }
        }
        self.other_bytes = total;
        Ok(())
    }

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
    /// anchor checkpoint (what a verifier starts from). Writes the key
    /// ledger, then a `prune` record (durable), then removes the files.
    pub fn prune(&mut self, policy: &PrunePolicy) -> Result<Option<Pruned>, SpoolError> {
        if self.stopped {
            return Err(SpoolError::Stopped);
        }
        let acked = self.acknowledged();
        let dir = self.opts.dir.clone();
        let (segs, _) = list_segments(&dir).map_err(io_at("list", &dir))?;
        let now = wall_ns();
        let mut heads: Vec<SegmentHead> = Vec::new();
        // (index of the first kept segment in `heads`, bytes freed)
        let mut cut: Option<(usize, u64)> = None;
        let mut freed = 0u64;
        let mut all_old = true;
        for (no, path) in &segs {
            if *no >= self.seg.no {
                break;
            }
            if heads.is_empty() {
                heads.push(read_head(*no, path).map_err(io_at("read", path))?);
            }
            // The next segment tells where this one ends and when it closed.
            let next_path = segs
                .iter()
                .find(|(n, _)| *n == no + 1)
                .map(|(_, p)| p.clone());
            let Some(next_path) = next_path else { break };
            let next = read_head(no + 1, &next_path).map_err(io_at("read", &next_path))?;
            let this = heads.last().expect("pushed");
            if next.header.first_seq > acked {
                break;
            }
            let closed_at = next.first.map_or(now, |(_, ts)| ts);
            let old = now.saturating_sub(closed_at) >= policy.retention.as_nanos() as i64;
            all_old &= old;
            if !old && freed >= policy.free_bytes {
                break;
            }
            freed += this.len;
            let anchored = matches!(next.first, Some((Kind::Checkpoint, _)));
            heads.push(next);
            if anchored {
                cut = Some((heads.len() - 1, freed));
            }
        }
        let Some((kept_idx, bytes)) = cut else {
            return Ok(None);
        };
        let kept = &heads[kept_idx];
        let (first, first_kept) = (heads[0].no, kept.no);
        let (first_kept_seq, anchor_head): (u64, Hash) =
            (kept.header.first_seq, kept.header.prev_head);
        let removed: Vec<PathBuf> = heads[..kept_idx].iter().map(|h| h.path.clone()).collect();
        self.extend_ledger(&removed, heads[0].header.first_seq)?;
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
        for path in &removed {
            let _ = worm::clear_flags(path);
            fs::remove_file(path).map_err(io_at("remove", path))?;
        }
        fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(io_at("fsync directory", &dir))?;
        self.count_other_bytes()?;
        Ok(Some(Pruned {
            first,
            first_kept,
            first_kept_seq,
            bytes,
            seq,
            detail,
        }))
    }

    /// Adds the genesis and epoch-transition records of the segments about
    /// to be removed to the key ledger (records the ledger already holds
    /// from an earlier, interrupted prune are replaced, not doubled).
    fn extend_ledger(&self, removed: &[PathBuf], first_seq: u64) -> Result<(), SpoolError> {
        let dir = &self.opts.dir;
        let mut records: Vec<Vec<u8>> = match ledger::load(dir) {
            Ok(Some(r)) => r,
            Ok(None) => Vec::new(),
            Err(e) => {
                return Err(SpoolError::Corrupt {
                    path: ledger::ledger_path(dir),
                    reason: e.to_string(),
                });
            }
        };
        records.retain(|r| {
            r.len() >= 12 && u64::from_le_bytes(r[4..12].try_into().expect("8")) < first_seq
        });
        for path in removed {
            let bytes = fs::read(path).map_err(io_at("read", path))?;
            let (_, mut off) = SegmentHeader::decode(&bytes).map_err(|e| SpoolError::Corrupt {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            while let FrameAt::Frame { start, end } = frame_at(&bytes, off) {
                if ledger::is_ledger_kind(&bytes[start..end]) {
                    records.push(bytes[start..end].to_vec());
                }
                off = end;
            }
        }
        ledger::store(dir, &records).map_err(io_at("write", &ledger::ledger_path(dir)))?;
        Ok(())
    }
}
