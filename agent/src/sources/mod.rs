//! Sources: where lines come from. Each kind of source is one module behind
//! the small [`Source`] trait; adding a source touches no other source.
//! Sources run on their own threads and hand [`Event`]s to the one spool
//! writer through a bounded channel, so a slow disk slows the sources down
//! instead of filling memory.

pub mod auditd;
pub mod file;
pub mod journald;
pub mod syslog;

use crossbeam_channel::{SendTimeoutError, Sender};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;
use wormlog_spool::Position;
use wormlog_spool::record::GapReason;

/// While the writer's channel is full, how often a source looks whether a
/// stop was asked.
const SEND_RECHECK: Duration = Duration::from_millis(50);

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
        batch: EntryBatch,
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
    /// New capacity settings (SIGHUP), on the control channel, which the
    /// writer reads even while the spool is full; it answers whether the
    /// spool is still full after them.
    Capacity {
        spool: crate::config::SpoolSection,
        reply: crossbeam_channel::Sender<bool>,
    },
    /// A new configuration (SIGHUP), sent by the daemon after the sources
    /// of the old one stopped: the writer records its hash in the chain,
    /// takes its capacity settings, and answers with every source's
    /// position, from which the new sources start.
    Reload {
        sha256: wormlog_spool::hash::Hash,
        spool: crate::config::SpoolSection,
        reply: crossbeam_channel::Sender<wormlog_spool::writer::Positions>,
    },
    /// Something an operator must know, from a part that is not a source.
    Alert {
        code: wormlog_spool::record::AlertCode,
        detail: String,
    },
}

/// Entries with structured fields, packed for the trip to the writer: the
/// bodies and field values of every entry in one buffer, so that a source
/// handing over thousands of small messages allocates per batch, not per
/// message and field (the writer frees what the source allocated: across
/// threads, per message, that was half the CPU of a syslog source).
#[derive(Debug, Default)]
pub struct EntryBatch {
    data: Vec<u8>,
    fields: Vec<(Cow<'static, str>, Range<u32>)>,
    entries: Vec<BatchEntry>,
}

#[derive(Debug)]
struct BatchEntry {
    position: Position,
    flags: u8,
    fields: Range<u32>,
    body: Range<u32>,
}

/// One entry of an [`EntryBatch`], as the writer reads it.
#[derive(Debug)]
pub struct EntryView<'a> {
    pub position: &'a Position,
    pub flags: u8,
    fields: &'a [(Cow<'static, str>, Range<u32>)],
    data: &'a [u8],
    pub body: &'a [u8],
}

impl<'a> EntryView<'a> {
    /// The fields, in order.
    pub fn fields(&self) -> impl Iterator<Item = (&'a str, &'a [u8])> + 'a {
        let data = self.data;
        self.fields
            .iter()
            .map(move |(k, r)| (k.as_ref(), &data[r.start as usize..r.end as usize]))
    }
}

impl EntryBatch {
    fn put(&mut self, bytes: &[u8]) -> Range<u32> {
        let start = self.data.len() as u32;
        self.data.extend_from_slice(bytes);
        start..self.data.len() as u32
    }

    /// Starts an entry: its fields follow with [`EntryBatch::field`], and
    /// [`EntryBatch::body`] ends it.
    pub fn begin(&mut self, position: Position, flags: u8) {
        let at = self.fields.len() as u32;
        self.entries.push(BatchEntry {
            position,
            flags,
            fields: at..at,
            body: 0..0,
        });
    }

    pub fn field(&mut self, key: impl Into<Cow<'static, str>>, value: &[u8]) {
        let r = self.put(value);
        self.fields.push((key.into(), r));
        if let Some(e) = self.entries.last_mut() {
            e.fields.end = self.fields.len() as u32;
        }
    }

    pub fn body(&mut self, body: &[u8]) {
        let r = self.put(body);
        if let Some(e) = self.entries.last_mut() {
            e.body = r;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Bytes of bodies and field values.
    pub fn bytes(&self) -> usize {
        self.data.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = EntryView<'_>> {
        self.entries.iter().map(|e| EntryView {
            position: &e.position,
            flags: e.flags,
            fields: &self.fields[e.fields.start as usize..e.fields.end as usize],
            data: &self.data,
            body: &self.data[e.body.start as usize..e.body.end as usize],
        })
    }
}

/// Shared shutdown signal that sources can sleep on (a condition
/// variable), or poll beside their own descriptors ([`Shutdown::fd`]).
#[derive(Debug, Default)]
pub struct Shutdown {
    flag: Mutex<bool>,
    cv: Condvar,
    /// An eventfd made readable by [`Shutdown::trigger`], made when a
    /// source first asks for it.
    event: std::sync::OnceLock<Option<std::os::fd::OwnedFd>>,
}

impl Shutdown {
    pub fn trigger(&self) {
        *self.flag.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.cv.notify_all();
        if let Some(Some(fd)) = self.event.get() {
            let _ = rustix::io::write(fd, &1u64.to_ne_bytes());
        }
    }

    /// A descriptor that becomes readable when shutdown is requested (for
    /// a `poll` beside the source's own); None when no eventfd can be
    /// made. Ask for it before checking [`Shutdown::is_set`]: a trigger
    /// between the two is then seen by one or the other.
    pub fn fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        use std::os::fd::AsFd;
        self.event
            .get_or_init(|| {
                rustix::event::eventfd(
                    0,
                    rustix::event::EventfdFlags::CLOEXEC | rustix::event::EventfdFlags::NONBLOCK,
                )
                .ok()
            })
            .as_ref()
            .map(|fd| fd.as_fd())
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

/// Messages a source read but could not hand to the writer (a stop while
/// the spool was full or behind), by source. Only what has no position to
/// be read again from counts (syslog messages): a file's lines, a journal
/// entry or an audit event not handed over is read again at the next
/// start. The writer turns the counts into `not_written_at_stop` gap
/// records before it closes the spool.
#[derive(Debug, Default)]
pub struct Unwritten {
    counts: Mutex<BTreeMap<Arc<str>, Lost>>,
}

/// What a source lost at a stop: a count, and whether an unknown number
/// more (a source that was cut off while messages were still arriving).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Lost {
    pub counted: u64,
    pub unknown_more: bool,
}

impl Unwritten {
    /// Counts what `ev` loses if it is not written.
    pub fn note(&self, ev: &Event) {
        let (source, lost) = match ev {
            Event::Entries { source, batch, .. } => (
                source,
                Lost {
                    counted: batch
                        .iter()
                        .filter(|e| *e.position == wormlog_spool::Position::None)
                        .count() as u64,
                    unknown_more: false,
                },
            ),
            Event::Gap {
                source,
                position: wormlog_spool::Position::None,
                lost_records,
                ..
            } => (
                source,
                if *lost_records == wormlog_spool::record::UNKNOWN_COUNT {
                    Lost {
                        counted: 0,
                        unknown_more: true,
                    }
                } else {
                    Lost {
                        counted: *lost_records,
                        unknown_more: false,
                    }
                },
            ),
            _ => return,
        };
        if lost == Lost::default() {
            return;
        }
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let c = counts.entry(source.clone()).or_default();
        c.counted += lost.counted;
        c.unknown_more |= lost.unknown_more;
    }

    /// What each source lost, once (the counts start again from zero).
    pub fn take(&self) -> Vec<(Arc<str>, Lost)> {
        std::mem::take(&mut *self.counts.lock().unwrap_or_else(|p| p.into_inner()))
            .into_iter()
            .collect()
    }
}

/// What a source gets to run.
#[derive(Debug, Clone)]
pub struct SourceContext {
    pub tx: Sender<Event>,
    pub shutdown: Arc<Shutdown>,
    /// What could not be handed over (see [`Unwritten`]).
    pub unwritten: Arc<Unwritten>,
    /// This source's positions as the spool has them.
    pub positions: BTreeMap<StreamKey, Position>,
}

impl SourceContext {
    /// Hands `batch` (emptied) to the writer as the entries of `source`;
    /// true at once when it is empty. False when the writer is gone.
    pub fn send_entries(&self, source: &Arc<str>, batch: &mut EntryBatch) -> bool {
        if batch.is_empty() {
            return true;
        }
        self.send(Event::Entries {
            source: source.clone(),
            ts: wormlog_spool::clock::wall_ns(),
            batch: std::mem::take(batch),
        })
    }

    /// Hands an event to the writer, waiting while the channel is full
    /// (backpressure). False when the writer is gone.
    pub fn send(&self, mut ev: Event) -> bool {
        // Once a stop is asked, a writer that takes nothing (a full spool)
        // is not waited for long: what is not handed over is read again at
        // the next start (positions move only with what is written).
        let mut stop_deadline: Option<std::time::Instant> = None;
        loop {
            // A blocking send wakes as soon as the writer takes an event
            // (a sleep between tries would leave the writer idle); the
            // timeout only lets a stop be noticed.
            match self.tx.send_timeout(ev, SEND_RECHECK) {
                Ok(()) => return true,
                Err(SendTimeoutError::Disconnected(back)) => {
                    self.unwritten.note(&back);
                    return false;
                }
                Err(SendTimeoutError::Timeout(back)) => {
                    ev = back;
                    if self.shutdown.is_set() {
                        let d = *stop_deadline.get_or_insert_with(|| {
                            std::time::Instant::now() + Duration::from_secs(2)
                        });
                        if std::time::Instant::now() >= d {
                            self.unwritten.note(&ev);
                            return false;
                        }
                    }
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
    fn a_loss_of_unknown_size_not_handed_over_is_still_counted() {
        let u = Unwritten::default();
        let gap = |lost_records| Event::Gap {
            source: Arc::from("syslog"),
            position: Position::None,
            reason: GapReason::NotWrittenAtStop,
            lost_bytes: wormlog_spool::record::UNKNOWN_COUNT,
            lost_records,
            detail: String::new(),
            ts: 0,
        };
        u.note(&gap(wormlog_spool::record::UNKNOWN_COUNT));
        let lost = u.take();
        assert_eq!(lost.len(), 1, "a cut at the stop is not dropped");
        assert_eq!(
            lost[0].1,
            Lost {
                counted: 0,
                unknown_more: true
            }
        );
        u.note(&gap(3));
        u.note(&gap(wormlog_spool::record::UNKNOWN_COUNT));
        assert_eq!(
            u.take()[0].1,
            Lost {
                counted: 3,
                unknown_more: true
            }
        );
        assert!(u.take().is_empty(), "taken once");
    }

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

    /// An entry as the test compares it: position, flags, fields, body.
    type Seen = (Position, u8, Vec<(String, Vec<u8>)>, Vec<u8>);

    #[test]
    fn a_batch_gives_back_each_entry_as_it_was_put() {
        let mut b = EntryBatch::default();
        b.begin(Position::Counter(1), 2);
        b.field("a", b"x");
        b.field(String::from("dyn"), b"");
        b.body(b"first");
        b.begin(Position::None, 0);
        b.body(b"");
        b.begin(Position::Journal("c".into()), 1);
        b.field("k", &[0, 255]);
        b.body(b"third");
        let got: Vec<Seen> = b
            .iter()
            .map(|e| {
                (
                    e.position.clone(),
                    e.flags,
                    e.fields()
                        .map(|(k, v)| (k.to_owned(), v.to_vec()))
                        .collect(),
                    e.body.to_vec(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    Position::Counter(1),
                    2,
                    vec![("a".into(), b"x".to_vec()), ("dyn".into(), vec![])],
                    b"first".to_vec()
                ),
                (Position::None, 0, vec![], vec![]),
                (
                    Position::Journal("c".into()),
                    1,
                    vec![("k".into(), vec![0, 255])],
                    b"third".to_vec()
                ),
            ]
        );
        assert_eq!(b.iter().count(), 3);
    }
}
