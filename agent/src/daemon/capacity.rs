//! Spool capacity (NIST SP 800-53 AU-4, AU-5): a disk budget, a warning
//! before it is reached, and a configured action when it is — sources stop
//! reading (`block`) or the agent stops (`halt`). Nothing is ever dropped
//! to make room: only segments the collector has acknowledged are pruned,
//! each prune recorded in the chain.

use crate::config::{OnFull, SpoolSection};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use wormlog_spool::record::AlertCode;
use wormlog_spool::writer::PrunePolicy;
use wormlog_spool::{Spool, SpoolError};
use wormlog_text::humanize::format_size;

/// The bounds of [`Capacity::check_every`].
const CHECK_BYTES_MIN: u64 = 256 << 10;
const CHECK_BYTES_MAX: u64 = 4 << 20;
/// How often acknowledged segments past their retention are looked for.
const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// How often the file system's free space is read (also after every MiB
/// written).
const STATVFS_EVERY: Duration = Duration::from_secs(1);
const STATVFS_BYTES: u64 = 1 << 20;
/// While full, how often the log says so again.
const STILL_FULL_EVERY: Duration = Duration::from_secs(60);

/// What the writer must do after a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Take events from the sources.
    Accept,
    /// Full, `block`: leave the sources' events waiting.
    Block,
    /// Full, `halt`: stop the agent.
    Halt,
}

/// The budget and its state.
#[derive(Debug)]
pub struct Capacity {
    dir: PathBuf,
    budget: u64,
    warn_at: u64,
    min_free: u64,
    on_full: OnFull,
    retention: Duration,
    /// File system free bytes as last read, and when/at what usage.
    fs_free: Option<u64>,
    fs_read_at: Option<(Instant, u64)>,
    warned: bool,
    full_since: Option<Instant>,
    full_logged_at: Option<Instant>,
    pruned_at: Option<Instant>,
    prune_error_logged_at: Option<Instant>,
    statvfs_failed: bool,
}

impl Capacity {
    pub fn new(dir: PathBuf, s: &SpoolSection) -> Self {
        let budget = s.disk_budget.0;
        Capacity {
            dir,
            budget,
            warn_at: budget / 100 * u64::from(s.budget_warning.0),
            min_free: s.min_free.0,
            on_full: s.on_full,
            retention: s.retention.0,
            fs_free: None,
            fs_read_at: None,
            warned: false,
            full_since: None,
            full_logged_at: None,
            pruned_at: None,
            prune_error_logged_at: None,
            statvfs_failed: false,
        }
    }

    /// New settings (a reload); the state (warned, full) carries over.
    pub fn reconfigure(&mut self, s: &SpoolSection) {
        let fresh = Capacity::new(self.dir.clone(), s);
        self.budget = fresh.budget;
        self.warn_at = fresh.warn_at;
        self.min_free = fresh.min_free;
        self.on_full = fresh.on_full;
        self.retention = fresh.retention;
    }

    /// How many bytes the writer may write between two checks: 1/64 of the
    /// budget (and of `min_free`), from 256 KiB to 4 MiB. Large batches
    /// keep the sealing thread busy (encryption at rest); small budgets
    /// are not overshot by more than a sliver.
    pub fn check_every(&self) -> u64 {
        let basis = match self.min_free {
            0 => self.budget,
            m => self.budget.min(m),
        };
        (basis / 64).clamp(CHECK_BYTES_MIN, CHECK_BYTES_MAX)
    }

    /// The file system's free bytes: read with `statvfs` every second or
    /// every MiB the spool grew, and between reads lowered by what the
    /// spool wrote since (so a fast writer does not overshoot `min_free`).
    fn fs_free(&mut self, used: u64) -> Option<u64> {
        let now = Instant::now();
        let due = self.fs_read_at.is_none_or(|(at, u)| {
            now.duration_since(at) >= STATVFS_EVERY || used.abs_diff(u) >= STATVFS_BYTES
        });
        if due {
            self.fs_read_at = Some((now, used));
            self.fs_free = match rustix::fs::statvfs(&self.dir) {
                Ok(v) => Some(v.f_bavail.saturating_mul(v.f_frsize)),
                Err(e) => {
                    if !self.statvfs_failed {
                        self.statvfs_failed = true;
                        tracing::error!(
                            dir = %self.dir.display(),
                            error = %e,
                            "statvfs {}: {e}; min_free is not checked while this lasts",
                            self.dir.display()
                        );
                    }
                    None
                }
            };
        }
        let (_, at_used) = self.fs_read_at?;
        Some(self.fs_free?.saturating_sub(used.saturating_sub(at_used)))
    }

    /// Looks at the spool's size and the file system, prunes what may go,
    /// and says whether the sources may write. Log lines go to stderr; the
    /// same news goes into the chain as `alert` records (code 3).
    pub fn check(&mut self, spool: &mut Spool) -> Result<Verdict, SpoolError> {
        let m = crate::metrics::get();
        let mut used = spool.disk_usage();
        let mut fs_free = self.fs_free(used);
        let now = Instant::now();
        // How far the file system is below min_free (another program may
        // have filled it): pruning frees that much, and a tenth more.
        let fs_short_by = fs_free.map_or(0, |f| self.min_free.saturating_sub(f));
        let under_pressure = used >= self.warn_at || fs_short_by > 0 || self.full_since.is_some();
        let prune_due = self.pruned_at.is_none_or(|t| {
            now.duration_since(t)
                >= if under_pressure {
                    STATVFS_EVERY
                } else {
                    PRUNE_EVERY
                }
        });
        if prune_due {
            self.pruned_at = Some(now);
            let for_fs = if fs_short_by > 0 {
                fs_short_by + self.min_free / 10
            } else {
                0
            };
            let policy = PrunePolicy {
                retention: self.retention,
                bytes_to_free: used.saturating_sub(self.warn_at).max(for_fs),
            };
            match spool.prune(&policy) {
                Ok(Some(p)) => {
                    tracing::info!(
                        segments = p.first_kept - p.first,
                        bytes = p.bytes,
                        "spool: {}",
                        p.detail
                    );
                    m.spool_pruned_segments.inc_by(p.first_kept - p.first);
                    m.spool_pruned_bytes.inc_by(p.bytes);
                    used = spool.disk_usage();
                    self.fs_read_at = None;
                    fs_free = self.fs_free(used);
                }
                Ok(None) => {}
                Err(SpoolError::Stopped) => return Err(SpoolError::Stopped),
                Err(e) => {
                    if self
                        .prune_error_logged_at
                        .is_none_or(|t| now.duration_since(t) >= STILL_FULL_EVERY)
                    {
                        self.prune_error_logged_at = Some(now);
                        let detail = format!("pruning acknowledged segments failed: {e}");
                        tracing::error!(error = %e, "{detail}");
                        spool.append_alert(AlertCode::Other, &detail)?;
                    }
                }
            }
        }
        // Full at the limits; once full, room means a little below them, so
        // that a spool at the edge does not flap between full and not.
        let (budget_line, free_line) = if self.full_since.is_some() {
            (
                self.budget - self.budget / 20,
                self.min_free + self.min_free / 10,
            )
        } else {
            (self.budget, self.min_free)
        };
        let fs_short = fs_free.is_some_and(|f| f < free_line);
        let full = used >= budget_line || fs_short;
        crate::metrics::set(&m.spool_disk_bytes, used);
        crate::metrics::set(&m.spool_disk_budget_bytes, self.budget);
        m.spool_full.set(i64::from(full));

        if used >= self.warn_at && !self.warned {
            self.warned = true;
            let detail = format!(
                "spool at {}% of its disk budget ({} of {}): acknowledged segments are pruned early; sources stop at 100%",
                used * 100 / self.budget.max(1),
                format_size(used),
                format_size(self.budget)
            );
            tracing::warn!(used, budget = self.budget, "{detail}");
            m.spool_budget_warnings.inc();
            spool.append_alert(AlertCode::DiskBudget, &detail)?;
        } else if self.warned && used < self.warn_at.saturating_sub(self.budget / 20) {
            self.warned = false;
        }

        match (full, self.full_since) {
            (true, None) => {
                self.full_since = Some(now);
                self.full_logged_at = Some(now);
                let why = if fs_short {
                    format!(
                        "its file system has {} free, less than min_free = {}",
                        format_size(fs_free.unwrap_or(0)),
                        format_size(self.min_free)
                    )
                } else {
                    format!(
                        "it holds {} of its disk budget of {}",
                        format_size(used),
                        format_size(self.budget)
                    )
                };
                let action = match self.on_full {
                    OnFull::Block => {
                        "sources stop reading until there is room (on_full = \"block\"); nothing is dropped"
                    }
                    OnFull::Halt => "the agent stops (on_full = \"halt\")",
                };
                let detail = format!("spool full: {why}; {action}");
                m.spool_full_events.inc();
                tracing::error!(
                    used,
                    budget = self.budget,
                    fs_free = fs_free.unwrap_or(0),
                    min_free = self.min_free,
                    "{detail}"
                );
                spool.append_alert(AlertCode::DiskBudget, &detail)?;
            }
            (true, Some(since)) => {
                if self
                    .full_logged_at
                    .is_none_or(|t| now.duration_since(t) >= STILL_FULL_EVERY)
                {
                    self.full_logged_at = Some(now);
                    tracing::error!(
                        used,
                        budget = self.budget,
                        "spool still full after {}s ({} used, budget {}); sources are waiting",
                        since.elapsed().as_secs(),
                        format_size(used),
                        format_size(self.budget)
                    );
                }
            }
            (false, Some(since)) => {
                self.full_since = None;
                let detail = format!(
                    "spool has room again after {:.1}s full ({} used of {}); sources resume",
                    since.elapsed().as_secs_f64(),
                    format_size(used),
                    format_size(self.budget)
                );
                tracing::info!(used, budget = self.budget, "{detail}");
                spool.append_alert(AlertCode::DiskBudget, &detail)?;
            }
            (false, None) => {}
        }
        Ok(match (self.full_since, self.on_full) {
            (None, _) => Verdict::Accept,
            (Some(_), OnFull::Block) => Verdict::Block,
            (Some(_), OnFull::Halt) => Verdict::Halt,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Size, SpoolSection};

    fn check_every(budget: u64, min_free: u64) -> u64 {
        let s = SpoolSection {
            disk_budget: Size(budget),
            min_free: Size(min_free),
            ..SpoolSection::default()
        };
        Capacity::new(PathBuf::from("/nonexistent"), &s).check_every()
    }

    #[test]
    fn the_check_interval_follows_the_smaller_limit_within_its_bounds() {
        // The defaults (4 GiB budget, 256 MiB min_free): 4 MiB.
        assert_eq!(check_every(4 << 30, 256 << 20), 4 << 20);
        // A small budget is not overshot by more than a sliver.
        assert_eq!(check_every(4 << 20, 1 << 20), 256 << 10);
        assert_eq!(check_every(64 << 20, 1 << 30), 1 << 20);
        // min_free smaller than the budget sets it; zero does not count.
        assert_eq!(check_every(1 << 40, 64 << 20), 1 << 20);
        assert_eq!(check_every(64 << 20, 0), 1 << 20);
    }
}
