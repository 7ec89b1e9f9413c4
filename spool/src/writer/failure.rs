//! An `fdatasync` that failed. The file descriptor is never synced again
//! (after a failed fsync the kernel may have dropped the dirty pages and
//! marked them clean — the PostgreSQL "fsyncgate" lesson). The segment is
//! abandoned and sealed; the chain is rebuilt from what is durable; a new
//! segment opens with a `recovery` record, and the records that were not
//! durable are written again into it. If that fails too, the writer stops.

use super::flusher::{Durable, FlushFailure};
use super::recover::scan;
use super::{OpenReport, Spool};
use crate::clock::wall_ns;
use crate::error::SpoolError;
use crate::frame::{FrameAt, begin_frame, frame_at};
use crate::hash::ZERO32;
use crate::record::{AlertCode, Kind, Payload, RecoveryCause, peek_kind};
use crate::segment::list_segments;
use crate::worm;

impl Spool {
    /// Seals again, under the active segment's keys, a sealed entry `rec`
    /// copied (with its new seq and prev) to `pending[start..]`.
    pub(super) fn reseal(
        &mut self,
        rec: &[u8],
        start: usize,
        old: Option<&crate::crypt::EntryKeys>,
    ) -> Result<(), String> {
        let Ok(crate::record::Record {
            seq: old_seq,
            payload:
                Payload::Entry(crate::record::Entry {
                    sealed: Some(sealed),
                    ..
                }),
            ..
        }) = crate::record::Record::decode(rec)
        else {
            return Ok(());
        };
        let (Some(old), Some(new)) = (old, &self.sealing) else {
            return Err("a sealed entry to write again without its data keys".into());
        };
        let split = rec.len() - sealed.len();
        crate::crypt::entry_aad(&rec[..split], &mut self.aad);
        let plain = old
            .key(old_seq)
            .open(&self.aad, sealed)
            .map_err(|e| e.to_string())?;
        // The copy at `start` holds the plaintext, then room for the tag,
        // and is sealed as any entry is.
        let end = start + split + plain.len();
        self.pending[start + split..end].copy_from_slice(&plain);
        let rec_new = &mut self.pending[start..end + crate::record::SEAL_TAG_LEN];
        crate::crypt::seal_entry(new, self.st.next_seq, rec_new, split, &mut self.aad);
        Ok(())
    }

    pub(super) fn handle_failure(&mut self, failure: FlushFailure) -> Result<(), SpoolError> {
        let failed_seg = failure.segment_no;
        let fatal = |s: &mut Spool, source: std::io::Error| {
            s.stopped = true;
            SpoolError::FsyncFailed {
                segment: failed_seg,
                source,
            }
        };
        // What was not durable: the failed batch and everything after it.
        let mut lost = failure.buf;
        lost.extend_from_slice(&std::mem::take(&mut self.pending));
        let mut replay: Vec<Vec<u8>> = Vec::new();
        let mut off = 0;
        while let FrameAt::Frame { start, end } = frame_at(&lost, off) {
            let rec = &lost[start..end];
            match peek_kind(rec).and_then(Kind::from_u8) {
                // The writer makes these again for the new position.
                Some(Kind::Checkpoint | Kind::Seal | Kind::EpochKey | Kind::DataKey) => {}
                // A batch that opened a spool or a segment: give up.
                Some(Kind::Genesis | Kind::Recovery) | None => {
                    return Err(fatal(self, failure.error));
                }
                Some(_) => replay.push(rec.to_vec()),
            }
            off = end;
        }
        let durable = self.flusher.durable();
        let durable_offset = if durable.segment_no == failed_seg {
            durable.end_offset
        } else {
            self.seg.header_len
        };
        let durable_entries = durable.end_count;
        let _ = worm::set_immutable(&self.seg.file);
        let file_len = std::fs::metadata(&self.seg.path)
            .map(|m| m.len())
            .unwrap_or(durable_offset);
        // Rebuild the chain from what is durable.
        let (segs, _) = list_segments(&self.opts.dir).map_err(|e| fatal(self, e))?;
        let segs: Vec<_> = segs
            .into_iter()
            .filter(|(no, _)| *no <= failed_seg)
            .collect();
        let (st, _) = match scan(&segs, Some(durable_offset)) {
            Ok(x) => x,
            Err(e) => return Err(fatal(self, std::io::Error::other(e.to_string()))),
        };
        self.st = st;
        self.hot = None;
        if self.st.next_seq == 0 {
            return Err(fatal(self, failure.error));
        }
        let mut report = OpenReport::default();
        if let Err(e) = self.open_segment(failed_seg + 1, &mut report) {
            self.stopped = true;
            return Err(e);
        }
        self.flusher.set_durable(Durable {
            segment_no: self.seg.no,
            end_offset: self.seg.header_len,
            end_count: durable_entries,
        });
        let detail = format!(
            "fsync failed on segment {failed_seg} ({}); bytes after offset {durable_offset} are void and their records are written again here",
            failure.error
        );
        self.push_payload(
            Kind::Recovery,
            wall_ns(),
            &Payload::Recovery {
                cause: RecoveryCause::FsyncFailed,
                segment_no: failed_seg,
                last_good_seq: self.st.next_seq - 1,
                region_offset: durable_offset,
                region_len: file_len.saturating_sub(durable_offset),
                region_sha256: ZERO32,
                detail: &detail,
            },
        );
        // Sealed entries were sealed under the abandoned segment's data key,
        // their seq and their prev: they are opened and sealed again for
        // the new segment (whose anchor brings a new data key).
        let old_keys = self.sealing.take();
        self.push_checkpoint(true);
        self.push_payload(
            Kind::Alert,
            wall_ns(),
            &Payload::Alert {
                code: AlertCode::FsyncFailed as u16,
                detail: &detail,
            },
        );
        // Write the lost records again, with new sequence numbers.
        self.entries = durable_entries;
        for rec in replay {
            let at = begin_frame(&mut self.pending);
            let start = self.pending.len();
            self.pending.extend_from_slice(&rec);
            self.pending[start + 4..start + 12].copy_from_slice(&self.st.next_seq.to_le_bytes());
            let prev = crate::record::PREV_OFFSET;
            self.pending[start + prev..start + prev + 32].copy_from_slice(&self.st.head);
            let kind = Kind::from_u8(rec[1]).expect("checked above");
            let ts = i64::from_le_bytes(rec[12..20].try_into().expect("8 bytes"));
            if let Err(e) = self.reseal(&rec, start, old_keys.as_deref()) {
                return Err(fatal(self, std::io::Error::other(e)));
            }
            self.seal_frame(at, kind, ts);
            if kind == Kind::Entry {
                self.entries += 1;
            }
            if let Ok(r) = crate::record::Record::decode(&rec) {
                match r.payload {
                    Payload::Entry(e) => {
                        if let Ok(p) = e.position.to_position() {
                            self.track(e.source, &p);
                        }
                    }
                    Payload::Gap {
                        source, position, ..
                    } => {
                        if let Ok(p) = position.to_position() {
                            self.track(source, &p);
                        }
                    }
                    _ => {}
                }
            }
        }
        // This batch must reach the disk, or the writer stops (no second
        // recovery: `submit` would recurse into this function).
        let job = self.take_job();
        let end_offset = job.end_offset;
        match self.flusher.submit(job) {
            Ok(spare) => self.pending = spare,
            Err((f, _)) => return Err(fatal(self, f.error)),
        }
        match self.flusher.wait_idle() {
            Ok(_) => {
                self.submitted = end_offset;
                self.pending_since = None;
                Ok(())
            }
            Err(f) => Err(fatal(self, f.error)),
        }
    }
}
