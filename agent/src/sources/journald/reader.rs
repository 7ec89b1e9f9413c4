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
                    skipping = true;
                    let start = std::mem::take(&mut line);
                    if !self.too_long(&start) {
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
        match self.admit(&entry.cursor) {
            Admit::Keep => {}
            Admit::Skip => {
                self.last = Some(entry.cursor);
                return true;
            }
            Admit::WriterGone => return false,
        }
        self.batch.begin(Position::Journal(entry.cursor.clone()), 0);
        for (k, v) in &entry.fields {
            self.batch.field(k.clone(), v);
        }
        self.batch.body(&entry.body);
        self.last = Some(entry.cursor);
        true
    }

    /// The first entry of a run is checked against where the run started
    /// (already spooled: skipped; the expected one gone: a `vacuumed`
    /// gap); every entry against the journal's sequence numbers (a jump: a
    /// gap). Whether to keep the entry with this cursor.
    fn admit(&mut self, entry_cursor: &str) -> Admit {
        self.read_any = true;
        let cursor = Cursor::parse(entry_cursor);
        match std::mem::replace(&mut self.resume, Resume::Fresh) {
            Resume::Expect(c) | Resume::SkipIfShown(c) if Cursor::same_entry(&c, entry_cursor) => {
                // Already in the spool.
                self.seqnums.read(&cursor);
                return Admit::Skip;
            }
            Resume::Expect(gone) => {
                self.seqnums.restart_at(&cursor);
                if !self.vacuumed(&gone, entry_cursor) {
                    return Admit::WriterGone;
                }
            }
            Resume::SkipIfShown(_) | Resume::Fresh => {
                if let Some(jump) = self.seqnums.read(&cursor)
                    && !self.jumped(&jump, &cursor)
                {
                    return Admit::WriterGone;
                }
            }
        }
        Admit::Keep
    }

    /// An entry too long to keep: it still counts as read (where the
    /// source stands, the sequence numbers), and a gap record says it was
    /// not kept — once, also across restarts. False when the writer is gone.
    fn too_long(&mut self, start: &[u8]) -> bool {
        let Some(cursor) = leading_cursor(start) else {
            // Not an entry as journalctl writes them: only the gap.
            return self.not_kept();
        };
        match self.admit(&cursor) {
            Admit::Skip => {
                self.last = Some(cursor);
                true
            }
            Admit::WriterGone => false,
            Admit::Keep => {
                self.last = Some(cursor);
                self.not_kept()
            }
        }
    }

    fn not_kept(&mut self) -> bool {
        let detail = format!(
            "a journal entry of more than {} MiB was not kept",
            MAX_LINE >> 20
        );
        tracing::warn!(source = %self.name, "source {}: {detail}", self.name);
        self.gap(GapReason::Other, 1, detail)
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
        self.ctx.send_entries(self.name, &mut self.batch)
    }

    /// A gap record, after what is already batched. False when the writer
    /// is gone.
    fn gap(&mut self, reason: GapReason, lost_records: u64, detail: String) -> bool {
        if !self.flush() {
            return false;
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

/// Whether to keep an entry (see `Reader::admit`).
enum Admit {
    Keep,
    Skip,
    WriterGone,
}

/// The cursor at the start of a journalctl JSON line
/// (`{"__CURSOR":"s=…;i=…",…`), when it is there.
fn leading_cursor(line: &[u8]) -> Option<String> {
    let rest = line.strip_prefix(b"{\"__CURSOR\":\"")?;
    let end = memchr::memchr(b'"', rest)?;
    String::from_utf8(rest[..end].to_vec()).ok()
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

fn boot<'a>(c: &Cursor<'a>) -> &'a str {
    c.boot_id.unwrap_or("unknown")
}

fn when(c: &Cursor) -> String {
    c.realtime_us.map_or("an unknown time".into(), rfc3339_us)
}

#[cfg(test)]
mod tests {
    use super::leading_cursor;

    #[test]
    fn the_cursor_of_a_line_too_long_to_parse_is_read_from_its_start() {
        let line = br#"{"__CURSOR":"s=ab;i=1f;b=cd;m=1;t=5f;x=9","__REALTIME_TIMESTAMP":"1","MESSAGE":"xxxx"#;
        assert_eq!(
            leading_cursor(line).as_deref(),
            Some("s=ab;i=1f;b=cd;m=1;t=5f;x=9")
        );
        assert_eq!(leading_cursor(br#"{"MESSAGE":"s"}"#), None);
        assert_eq!(leading_cursor(br#"{"__CURSOR":"unterminated"#), None);
    }
}
