//! One `journalctl`'s output turned into events for the writer: entries,
//! and `gap` records for what the journal shows was lost (the entry to
//! resume at is gone; the sequence numbers jump).

use super::cursor::{Cursor, rfc3339_us};
use super::entry;
use super::seqnum::{SeqnumCheck, SeqnumJump};
use crate::sources::{EntryBatch, Event, SourceContext};
use std::io::Read;
use std::os::fd::AsFd;
use std::process::ChildStdout;
use std::sync::Arc;
use wormlog_spool::Position;
use wormlog_spool::clock::wall_ns;
use wormlog_spool::record::{GapReason, UNKNOWN_COUNT};

/// A JSON line longer than this is not kept (it is recorded as a gap).
const MAX_LINE: usize = 16 << 20;
/// Entries are handed to the writer in events of about this many bytes.
const EVENT_BYTES: usize = 64 << 10;

/// What the first entry of a run is checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resume {
    /// Nothing: the run starts at the beginning or at a time.
    Fresh,
    /// The entry of this cursor (already spooled) comes first and is
    /// skipped; another entry first means it is gone (vacuumed).
    Expect(String),
    /// The entry of this cursor was just read by this source; it is skipped
    /// if it comes first. `--follow` leaves it out when it is of an
    /// earlier boot: then the sequence numbers say whether anything lies
    /// between.
    SkipIfShown(String),
}

/// Why reading one `journalctl`'s output ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadEnd {
    Shutdown,
    WriterGone,
    /// The output ended (journalctl exited or closed it).
    Eof,
    /// The output could not be read.
    Failed(String),
}

/// Reads one `journalctl`'s output.
pub struct Reader<'a> {
    pub name: &'a Arc<str>,
    pub ctx: &'a SourceContext,
    /// The source has units or matches (the journal's counts then include
    /// entries it does not read).
    pub filtered: bool,
    pub resume: Resume,
    pub seqnums: &'a mut SeqnumCheck,
    pub batch: EntryBatch,
    /// An entry was read (handed over or skipped).
    pub read_any: bool,
    /// The cursor of the last entry read (handed over or skipped); at
    /// first, where the run started.
    pub last: Option<String>,
}

impl Reader<'_> {
    /// Reads until the output ends, the source stops or the writer is gone;
    /// what was read is handed over in every case.
    pub fn read_all(&mut self, mut out: ChildStdout) -> ReadEnd {
        let mut buf = vec![0u8; 64 << 10];
        let mut line: Vec<u8> = Vec::new();
        let mut skipping = false;
        let end = loop {
            if self.ctx.shutdown.is_set() {
                break ReadEnd::Shutdown;
            }
            match wait_readable(&out) {
                Ok(false) => {
                    // Quiet: hand over what is waiting.
                    if !self.flush() {
                        return ReadEnd::WriterGone;
                    }
                    continue;
                }
                Ok(true) => {}
                Err(e) => break ReadEnd::Failed(format!("poll: {e}")),
            }
            let n = match out.read(&mut buf) {
                Ok(0) => break ReadEnd::Eof,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => break ReadEnd::Failed(format!("reading journalctl: {e}")),
            };
            let mut data = &buf[..n];
            while let Some(nl) = memchr::memchr(b'\n', data) {
                if skipping {
                    skipping = false;
                } else {
                    line.extend_from_slice(&data[..nl]);
                    let l = std::mem::take(&mut line);
                    if !l.is_empty() && !self.take(&l) {
                        return ReadEnd::WriterGone;
                    }
                }
                data = &data[nl + 1..];
            }
            if !skipping {
                line.extend_from_slice(data);
                if line.len() > MAX_LINE {
                    line = Vec::new();
                    skipping = true;
                    if !self.gap(
                        GapReason::Other,
                        UNKNOWN_COUNT,
                        format!(
                            "a journal entry of more than {} MiB was not kept",
                            MAX_LINE >> 20
                        ),
                    ) {
                        return ReadEnd::WriterGone;
                    }
                }
            }
            if self.batch.bytes() >= EVENT_BYTES && !self.flush() {
                return ReadEnd::WriterGone;
            }
        };
        if self.flush() {
            end
        } else {
            ReadEnd::WriterGone
        }
    }

    /// One JSON line. False when the writer is gone.
    fn take(&mut self, line: &[u8]) -> bool {
        let entry = match entry::parse(line) {
            Ok(e) => e,
            Err(e) => {
                // Kept as it came, with the reason, where the source stands.
                tracing::warn!(
                    source = %self.name,
                    error = %e,
                    "source {}: a journalctl line that is not an entry ({e}); kept as is",
                    self.name
                );
                self.batch.begin(self.position(), 0);
                self.batch
                    .field("_WORMLOG_PARSE_ERROR", e.to_string().as_bytes());
                self.batch.body(line);
                return true;
            }
        };
        self.read_any = true;
        let cursor = Cursor::parse(&entry.cursor);
        match std::mem::replace(&mut self.resume, Resume::Fresh) {
            Resume::Expect(c) | Resume::SkipIfShown(c) if Cursor::same_entry(&c, &entry.cursor) => {
                // Already in the spool.
                self.seqnums.read(&cursor);
                self.last = Some(entry.cursor);
                return true;
            }
            Resume::Expect(gone) => {
                self.seqnums.restart_at(&cursor);
                if !self.vacuumed(&gone, &entry.cursor) {
                    return false;
                }
            }
            Resume::SkipIfShown(_) | Resume::Fresh => {
                if let Some(jump) = self.seqnums.read(&cursor)
                    && !self.jumped(&jump, &cursor)
                {
                    return false;
                }
            }
        }
        self.batch.begin(Position::Journal(entry.cursor.clone()), 0);
        for (k, v) in &entry.fields {
            self.batch.field(k.clone(), v);
        }
        self.batch.body(&entry.body);
        self.last = Some(entry.cursor);
        true
    }

    /// The entry `had` is gone and `now` came instead: a gap record about
    /// what was lost.
    fn vacuumed(&mut self, had: &str, now: &str) -> bool {
        let (a, b) = (Cursor::parse(had), Cursor::parse(now));
        let count = a.entries_between(&b);
        let lost = match count {
            Some(n) if !self.filtered => n,
            _ => UNKNOWN_COUNT,
        };
        let what = match (count, self.filtered) {
            (Some(n), false) => format!("{n} entries"),
            (Some(n), true) => format!("up to {n} entries (fewer match this source's filter)"),
            (None, _) => "an unknown number of entries (another journal file set)".into(),
        };
        let detail = format!(
            "the journal no longer holds the entry last read (boot {}, {}): it was vacuumed or rotated away; {what} up to {} (boot {}) were not read",
            boot(&a),
            when(&a),
            when(&b),
            boot(&b),
        );
        tracing::warn!(source = %self.name, lost, "source {}: {detail}", self.name);
        self.last = Some(had.to_owned());
        self.gap(GapReason::Vacuumed, lost, detail)
    }

    /// The journal's sequence numbers jumped before `now`: a gap record
    /// with the count.
    fn jumped(&mut self, jump: &SeqnumJump, now: &Cursor) -> bool {
        let lost = jump.missing();
        let before = self.last.as_deref().map(Cursor::parse).unwrap_or_default();
        let detail = format!(
            "the journal's sequence numbers jump from {} to {} (journal file set {}): {lost} entries journald wrote were not read (a journal file removed, unreadable or damaged); between {} (boot {}) and {} (boot {})",
            jump.after,
            jump.next,
            jump.seqnum_id,
            when(&before),
            boot(&before),
            when(now),
            boot(now),
        );
        tracing::warn!(source = %self.name, lost, "source {}: {detail}", self.name);
        self.gap(GapReason::Other, lost, detail)
    }

    /// Where the source stands: the last entry read.
    fn position(&self) -> Position {
        self.last.clone().map_or(Position::None, Position::Journal)
    }

    /// Hands the batch to the writer. False when the writer is gone.
    fn flush(&mut self) -> bool {
        if self.batch.is_empty() {
            return true;
        }
        self.ctx.send(Event::Entries {
            source: self.name.clone(),
            ts: wall_ns(),
            batch: std::mem::take(&mut self.batch),
        })
    }

    /// A gap record, after what is already batched; what it loses is
    /// counted in `source_lost`. False when the writer is gone.
    fn gap(&mut self, reason: GapReason, lost_records: u64, detail: String) -> bool {
        if !self.flush() {
            return false;
        }
        if lost_records != UNKNOWN_COUNT {
            crate::metrics::get()
                .source_lost
                .get_or_create(&vec![("source", self.name.to_string())])
                .inc_by(lost_records);
        }
        self.ctx.send(Event::Gap {
            source: self.name.clone(),
            position: self.position(),
            reason,
            lost_bytes: UNKNOWN_COUNT,
            lost_records,
            detail,
            ts: wall_ns(),
        })
    }
}

/// Waits up to 200 ms for output. Ok(false): none came.
fn wait_readable(out: &ChildStdout) -> rustix::io::Result<bool> {
    let fd = out.as_fd();
    let mut fds = [rustix::event::PollFd::new(
        &fd,
        rustix::event::PollFlags::IN,
    )];
    let timeout = rustix::event::Timespec {
        tv_sec: 0,
        tv_nsec: 200_000_000,
    };
    match rustix::event::poll(&mut fds, Some(&timeout)) {
        Ok(n) => Ok(n > 0),
        Err(rustix::io::Errno::INTR) => Ok(false),
        Err(e) => Err(e),
    }
}

fn boot(c: &Cursor) -> &str {
    c.boot_id.as_deref().unwrap_or("unknown")
}

fn when(c: &Cursor) -> String {
    c.realtime_us.map_or("an unknown time".into(), rfc3339_us)
}
