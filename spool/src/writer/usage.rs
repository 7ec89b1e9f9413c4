//! How much disk the spool takes, kept as a running count: the active
//! segment as far as it was written or handed over, plus every other file
//! (closed segments, the key ledger), recounted from the directory when the
//! spool opens and after each prune.

use super::Spool;
use crate::error::{SpoolError, io_at};
use crate::ledger;
use crate::segment::list_segments;
use std::fs;

impl Spool {
    /// Segment files in the spool (as of the last rotation or prune).
    pub fn segment_files(&self) -> u64 {
        self.segment_files
    }

    /// Bytes the spool holds on disk.
    pub fn disk_usage(&self) -> u64 {
        self.closed_bytes + self.submitted + self.pending.len() as u64
    }

    /// Recounts the bytes of every file but the active segment.
    pub(super) fn count_closed_bytes(&mut self) -> Result<(), SpoolError> {
        let dir = self.opts.dir.clone();
        let (segs, _) = list_segments(&dir).map_err(io_at("list", &dir))?;
        let ledger_path = ledger::ledger_path(&dir);
        let mut total = fs::metadata(&ledger_path).map_or(0, |m| m.len())
            + fs::metadata(ledger_path.with_extension("wlledger.tmp")).map_or(0, |m| m.len());
        self.segment_files = segs.len() as u64;
        for (no, path) in segs {
            if no != self.seg.no {
                total += fs::metadata(&path).map_or(0, |m| m.len());
            }
        }
        self.closed_bytes = total;
        Ok(())
    }
}
