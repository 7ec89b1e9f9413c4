//! Committing, and everything the writer does because time passed:
//! group-commit deadlines, checkpoints, heartbeats, clock steps, epochs,
//! segment rotation, and the clean stop.

use super::flusher::Job;
use super::{CLOCK_STEP_NS, OpenReport, Spool, SpoolStats};
use crate::clock::{boottime_ns, wall_ns};
use crate::error::SpoolError;
use crate::record::{AlertCode, AppendOnly, Kind, Payload};
use crate::worm;
use std::time::{Duration, Instant};

impl Spool {
    /// The pending batch as a job for the flusher: where the segment and the
    /// chain end once it is durable.
    pub(super) fn take_job(&mut self) -> Job {
        let buf = std::mem::take(&mut self.pending);
        Job {
            file: self.seg.file.clone(),
            end_offset: self.submitted + buf.len() as u64,
            buf,
            segment_no: self.seg.no,
            end_count: self.entries,
            end_seq: self.st.next_seq,
        }
    }

    /// Hands the pending batch to the flusher (waiting for the one in
    /// flight first).
    pub(super) fn submit(&mut self) -> Result<(), SpoolError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let job = self.take_job();
        let end_offset = job.end_offset;
        match self.flusher.submit(job) {
            Ok(mut spare) => {
                let want = self.opts.commit_bytes.min(64 << 20) + (64 << 10);
                if spare.capacity() < want {
                    spare.reserve(want);
                }
                self.pending = spare;
                self.submitted = end_offset;
                self.pending_since = None;
                Ok(())
            }
            Err((failure, job)) => {
                self.pending = job.buf;
                self.handle_failure(failure)
            }
        }
    }

    /// Makes everything appended so far durable; returns the number of
    /// entries durable.
    pub fn sync(&mut self) -> Result<u64, SpoolError> {
        if self.stopped {
            return Err(SpoolError::Stopped);
        }
        self.submit()?;
        match self.flusher.wait_idle() {
            Ok(d) => Ok(d.end_count),
            Err(failure) => {
                self.handle_failure(failure)?;
                self.sync()
            }
        }
    }

    /// Writes a checkpoint now (if anything was written since the last).
    pub fn checkpoint(&mut self) -> Result<(), SpoolError> {
        if self.stopped {
            return Err(SpoolError::Stopped);
        }
        if self.st.last_kind != Some(Kind::Checkpoint) {
            self.push_checkpoint(false);
        }
        Ok(())
    }

    /// Does what is due: hands over a batch whose time is up, writes a
    /// checkpoint, a heartbeat, a clock-step record, moves to the next epoch,
    /// rotates an old segment. Call it at least every `commit_interval`
    /// (see [`Spool::next_deadline`]).
    pub fn tick(&mut self) -> Result<(), SpoolError> {
        if self.stopped {
            return Err(SpoolError::Stopped);
        }
        let now = Instant::now();
        self.retry_key_save(now)?;
        self.check_clock();
        if now.duration_since(self.last_record_activity()) >= self.opts.heartbeat_interval {
            self.push_payload(
                Kind::Heartbeat,
                wall_ns(),
                &Payload::Heartbeat {
                    boot_id: self.boot_id,
                    mono_ns: boottime_ns(),
                },
            );
            self.push_checkpoint(false);
            self.last_record_at = now;
        } else if self.st.bytes_since_checkpoint > 0
            && now.duration_since(self.last_checkpoint_at) >= self.opts.checkpoint_interval
        {
            self.push_checkpoint(false);
        }
        let epoch_age = wall_ns().saturating_sub(self.key.epoch_started_ns());
        if epoch_age >= self.opts.epoch_duration.as_nanos() as i64 {
            self.advance_epoch()?;
        }
        if now.duration_since(self.seg.opened_at) >= self.opts.segment_max_age {
            self.rotate()?;
        }
        if let Some(since) = self.pending_since
            && now.duration_since(since) >= self.opts.commit_interval
            && !self.flusher.busy()
        {
            self.submit()?;
        }
        Ok(())
    }

    fn last_record_activity(&self) -> Instant {
        // Any record written, including checkpoints, counts as activity.
        self.last_record_at.max(self.last_checkpoint_at)
    }

    /// When [`Spool::tick`] should run next.
    pub fn next_deadline(&self) -> Instant {
        let mut d = self.last_record_activity() + self.opts.heartbeat_interval;
        if self.st.bytes_since_checkpoint > 0 {
            d = d.min(self.last_checkpoint_at + self.opts.checkpoint_interval);
        }
        if let Some(since) = self.pending_since {
            d = d.min(since + self.opts.commit_interval);
        }
        d.min(Instant::now() + Duration::from_secs(5))
    }

    /// Records a step of the wall clock against the monotonic clock.
    fn check_clock(&mut self) {
        let (wall, mono) = (wall_ns(), boottime_ns());
        let expected = self.clock_ref.0 + (mono - self.clock_ref.1) as i64;
        if (wall - expected).abs() > CLOCK_STEP_NS {
            self.push_payload(
                Kind::ClockStep,
                wall,
                &Payload::ClockStep {
                    boot_id: self.boot_id,
                    mono_ns: mono,
                    expected_ts: expected,
                    observed_ts: wall,
                },
            );
        }
        self.clock_ref = (wall, mono);
    }

    /// Ends the epoch: a checkpoint with the old key, the transition signed
    /// by it, made durable; only then the seed on disk is replaced and the
    /// old one erased.
    pub fn advance_epoch(&mut self) -> Result<(), SpoolError> {
        if self.stopped {
            return Err(SpoolError::Stopped);
        }
        self.push_checkpoint(false);
        self.push_epoch_key();
        self.sync()?;
        if self.st.last_kind != Some(Kind::EpochKey) {
            // A failed fsync rewound the transition; it is retried later.
            return Ok(());
        }
        self.st.epoch += 1;
        self.key.advance_in_memory(wall_ns());
        if let Err(e) = self.key.save() {
            // The chain has moved on; the key file is retried every second
            // (and caught up at the next start, over any number of epochs).
            self.append_alert(
                AlertCode::Other,
                &format!(
                    "the host key file could not be replaced ({e}); an old seed is still on disk (retrying every second)"
                ),
            )?;
            self.key_unsaved_since.get_or_insert_with(Instant::now);
        }
        self.push_checkpoint(false);
        Ok(())
    }

    /// Retries writing a seed the key file did not take. Fails with
    /// [`SpoolError::KeyNotSaved`] once it has failed for a whole epoch: an
    /// old seed on disk can sign for every epoch since, so forward security
    /// is gone until it is replaced — the agent must not go on quietly.
    fn retry_key_save(&mut self, now: Instant) -> Result<(), SpoolError> {
        let Some(since) = self.key_unsaved_since else {
            return Ok(());
        };
        if self.key_retry_at.is_some_and(|at| now < at) {
            return Ok(());
        }
        self.key_retry_at = Some(now + Duration::from_secs(1));
        match self.key.save() {
            Ok(()) => {
                self.key_unsaved_since = None;
                self.append_alert(
                    AlertCode::Other,
                    &format!(
                        "the host key file was replaced after failing for {:.0?}: the old seed is erased",
                        now.duration_since(since)
                    ),
                )?;
                Ok(())
            }
            Err(e) if now.duration_since(since) >= self.opts.epoch_duration => {
                Err(SpoolError::KeyNotSaved {
                    failing_for: now.duration_since(since),
                    source: e,
                })
            }
            Err(_) => Ok(()),
        }
    }

    /// Seals the active segment (a `seal` record, durable, then immutable)
    /// and opens the next.
    pub fn rotate(&mut self) -> Result<(), SpoolError> {
        if self.stopped {
            return Err(SpoolError::Stopped);
        }
        let next = self.seg.no + 1;
        self.push_payload(Kind::Seal, wall_ns(), &Payload::Seal { next_segment: next });
        self.sync()?;
        if self.seg.no + 1 != next {
            // An fsync failure already moved to a new segment.
            return Ok(());
        }
        let mut report = OpenReport::default();
        if self.opts.append_only != AppendOnly::Off
            && let Err(e) = worm::set_immutable(&self.seg.file)
        {
            if self.opts.append_only == AppendOnly::Require {
                self.stopped = true;
                return Err(SpoolError::AppendOnlyRequired {
                    path: self.seg.path.clone(),
                    source: e,
                });
            }
            self.deferred_alerts.push((
                AlertCode::AppendOnlyUnavailable,
                format!("segment {} could not be made immutable: {e}", self.seg.no),
            ));
        }
        self.open_segment(next, &mut report)?;
        self.push_checkpoint(true);
        Ok(())
    }

    /// Writes a `stop` record and a final checkpoint, makes them durable and
    /// releases the spool.
    pub fn close(mut self, reason: &str) -> Result<(), SpoolError> {
        if self.stopped {
            return Err(SpoolError::Stopped);
        }
        self.push_payload(
            Kind::Stop,
            wall_ns(),
            &Payload::Stop {
                boot_id: self.boot_id,
                mono_ns: boottime_ns(),
                reason,
            },
        );
        self.push_checkpoint(false);
        self.sync()?;
        Ok(())
    }

    /// Counters.
    pub fn stats(&self) -> SpoolStats {
        SpoolStats {
            next_seq: self.st.next_seq,
            segment_no: self.seg.no,
            entries_appended: self.entries,
            entries_durable: self.flusher.durable().end_count,
            epoch: self.st.epoch,
            checkpoints: self.checkpoints,
            resealed: self.resealed,
            flush: self.flusher.stats(),
        }
    }

    /// Entries appended through this handle.
    pub fn entries_appended(&self) -> u64 {
        self.entries
    }

    /// Entries known durable.
    pub fn entries_durable(&self) -> u64 {
        self.flusher.durable().end_count
    }

    /// Where every source stands.
    pub fn positions(&mut self) -> &super::Positions {
        self.flush_hot();
        &self.st.positions
    }

    /// The sequence number the next record gets.
    /// The durable end of the chain, shared with readers of the spool.
    pub fn durable_seq(&self) -> std::sync::Arc<super::DurableSeq> {
        self.durable_seq.clone()
    }

    pub fn next_seq(&self) -> u64 {
        self.st.next_seq
    }
}
