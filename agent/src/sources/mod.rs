//! Sources: where lines come from. Each kind of source is one module behind
//! the small [`Source`] trait; adding a source touches no other source.
//! Sources run on their own threads and hand [`Event`]s to the one spool
//! writer through a bounded channel, so a slow disk slows the sources down
//! instead of filling memory.

pub mod file;
pub mod journald;

use crossbeam_channel::{Sender, TrySendError};
use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;
use wormlog_spool::Position;
use wormlog_spool::record::GapReason;

/// Identity of a stream within a source (a file: device, inode, fingerprint).
pub type StreamKey = (u64, u64, u64);

/// What a source hands to the writer.
#[derive(Debug)]
pub enum Event {
    /// Lines read from one file: `data[start..end]` with flags and the
    /// offset after each line.
    Lines {
        source: Arc<str>,
        file: StreamKey,
        ts: i64,
        data: Vec<u8>,
        lines: Vec<(u32, u32, u8, u64)>,
    },
    /// Entries with structured fields (journald, syslog, auditd).
    Entries {
        source: Arc<str>,
        /// When the agent read them.
        ts: i64,
        entries: Vec<Entry>,
    },
    /// Something could not be read.
    Gap {
        source: Arc<str>,
        position: Position,
        reason: GapReason,
        lost_bytes: u64,
        lost_records: u64,
        detail: String,
        ts: i64,
    },
    /// A stream is gone (deleted after being read to its end): the spool's
    /// next anchor no longer lists it.
    Forget { source: Arc<str>, key: StreamKey },
    /// A collector's receipt for one of the chain's checkpoints (from the
    /// forwarder, already checked against the checkpoint it names).
    Receipt(Box<wormlog_spool::chain::Receipt>),
    /// Something an operator must know, from a part that is not a source.
    Alert {
        code: wormlog_spool::record::AlertCode,
        detail: String,
    },
}

/// One entry with structured fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Where the source resumes after this entry.
    pub position: Position,
    /// `entry_flags` (docs/FORMAT.md §6.2).
    pub flags: u8,
    pub fields: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

/// Shared shutdown signal that sources can sleep on.
#[derive(Debug, Default)]
pub struct Shutdown {
    flag: Mutex<bool>,
    cv: Condvar,
}

impl Shutdown {
    pub fn trigger(&self) {
        *self.flag.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.cv.notify_all();
    }

    pub fn is_set(&self) -> bool {
        *self.flag.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sleeps `d` (the whole of it: spurious wake-ups do not end it early);
    /// true when shutdown was requested, at once.
    pub fn wait(&self, d: Duration) -> bool {
        let deadline = std::time::Instant::now() + d;
        let mut g = self.flag.lock().unwrap_or_else(|p| p.into_inner());
        while !*g {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return false;
            }
            g = self
                .cv
                .wait_timeout(g, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        true
    }
}

/// What a source gets to run.
#[derive(Debug, Clone)]
pub struct SourceContext {
    pub tx: Sender<Event>,
    pub shutdown: Arc<Shutdown>,
    /// This source's positions as the spool has them.
    pub positions: BTreeMap<StreamKey, Position>,
}

impl SourceContext {
    /// Hands an event to the writer, waiting while the channel is full
    /// (backpressure). False when the writer is gone.
    pub fn send(&self, mut ev: Event) -> bool {
        let mut pause = Duration::from_micros(200);
        loop {
            match self.tx.try_send(ev) {
                Ok(()) => return true,
                Err(TrySendError::Disconnected(_)) => return false,
                Err(TrySendError::Full(back)) => {
                    ev = back;
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(20));
                }
            }
        }
    }
}

/// A kind of source.
pub trait Source: Send {
    /// Runs until shutdown; drains what was read before returning.
    fn run(self: Box<Self>, ctx: SourceContext);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn shutdown_wait_sleeps_its_whole_time_unless_triggered() {
        let s = Arc::new(Shutdown::default());
        let t0 = Instant::now();
        assert!(!s.wait(Duration::from_millis(30)));
        assert!(t0.elapsed() >= Duration::from_millis(30));
        let s2 = s.clone();
        let h = std::thread::spawn(move || s2.wait(Duration::from_secs(600)));
        s.trigger();
        assert!(h.join().unwrap(), "a trigger ends the wait");
        assert!(s.wait(Duration::from_secs(600)), "and later waits at once");
    }
}
