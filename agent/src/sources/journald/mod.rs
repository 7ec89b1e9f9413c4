//! `[[sources.journald]]`: the systemd journal, through `journalctl
//! --follow --output=json` (as Vector does: no libsystemd in the agent).
//!
//! * Every entry is kept: `MESSAGE` as the body, all other fields as
//!   structured fields, binary values byte-exact (entry.rs).
//! * The journal cursor is the position of each entry, so the spool alone
//!   says where to resume. A restart asks `journalctl --cursor=LAST`: the
//!   first entry it shows is that same entry (already spooled: skipped), or,
//!   when that entry was vacuumed or rotated away meanwhile, a later one —
//!   then a `gap` record (reason `vacuumed`) says which boot and which time
//!   range were lost, and how many entries when the journal can tell.
//! * A `journalctl` that exits or dies is logged and started again with
//!   backoff (0.5 s doubling to 30 s), from the last entry read.

mod cursor;
mod entry;

use crate::config::{JournaldSourceConfig, ReadFrom};
use crate::sources::{EntryBatch, Event, Source, SourceContext};
use cursor::{Cursor, rfc3339_us};
use std::io::{BufRead, BufReader, Read};
use std::os::fd::AsFd;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wormlog_spool::Position;
use wormlog_spool::clock::wall_ns;
use wormlog_spool::record::{GapReason, UNKNOWN_COUNT};

/// A JSON line longer than this is not kept (it is recorded as a gap).
const MAX_LINE: usize = 16 << 20;
/// Entries are handed to the writer in events of about this many bytes.
const EVENT_BYTES: usize = 64 << 10;
const BACKOFF_MIN: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A `journalctl` that ran this long before it stopped starts again at the
/// shortest backoff.
const RAN_LONG: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub struct JournaldSource {
    name: Arc<str>,
    cfg: JournaldSourceConfig,
}

/// Why one `journalctl` run ended.
enum RunEnd {
    Shutdown,
    /// It exited (or its output could not be read): what to log.
    Stopped(String),
    /// The writer is gone.
    WriterGone,
}

/// Where the next `journalctl` starts.
#[derive(Debug, Clone)]
enum Start {
    /// At this entry (shown again, and skipped if it is still there).
    Cursor(String),
    /// At the beginning of the journal.
    Beginning,
    /// At entries from this time on (µs since the epoch): `read_from =
    /// "end"` before any entry was read.
    Since(u64),
}

impl JournaldSource {
    pub fn new(cfg: &JournaldSourceConfig) -> JournaldSource {
        JournaldSource {
            name: cfg.name.as_str().into(),
            cfg: cfg.clone(),
        }
    }

    fn command(&self, start: &Start) -> Command {
        let mut c = Command::new(&self.cfg.journalctl);
        // `--lines=all`: with --follow, journalctl would otherwise begin with
        // only the last 10 entries of whatever the start selects.
        c.args([
            "--follow",
            "--lines=all",
            "--output=json",
            "--all",
            "--no-pager",
            "--quiet",
        ]);
        c.args(self.cfg.selection_args());
        match start {
            Start::Cursor(cur) => {
                c.arg(format!("--cursor={cur}"));
            }
            Start::Beginning => {}
            Start::Since(us) => {
                c.arg(format!("--since=@{}", us / 1_000_000));
            }
        }
        c.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    /// Runs one `journalctl` until it ends, handing entries to the writer.
    /// `start` moves to the last entry handed over.
    fn run_once(&self, ctx: &SourceContext, start: &mut Start) -> RunEnd {
        let mut child = match self.command(start).spawn() {
            Ok(c) => c,
            Err(e) => {
                return RunEnd::Stopped(format!(
                    "cannot run {}: {e}",
                    self.cfg.journalctl.display()
                ));
            }
        };
        let stderr = child.stderr.take().map(|e| self.log_stderr(e));
        let mut reader = Reader {
            src: self,
            ctx,
            expect: match start {
                Start::Cursor(c) => Some(c.clone()),
                _ => None,
            },
            batch: EntryBatch::default(),
            last: None,
        };
        let end = reader.read_all(&mut child);
        if let Some(c) = reader.last.take() {
            *start = Start::Cursor(c);
        }
        let _ = child.kill();
        let status = child.wait();
        if let Some(h) = stderr {
            let _ = h.join();
        }
        match end {
            RunEnd::Stopped(why) => RunEnd::Stopped(match status {
                Ok(s) => format!("{why} ({s})"),
                Err(_) => why,
            }),
            other => other,
        }
    }

    /// Copies journalctl's own messages to the agent's log.
    fn log_stderr(&self, e: std::process::ChildStderr) -> std::thread::JoinHandle<()> {
        let name = self.name.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(e).lines().map_while(Result::ok) {
                tracing::info!(source = %name, "source {name}: journalctl: {line}");
            }
        })
    }
}

/// Reads one `journalctl`'s output.
struct Reader<'a> {
    src: &'a JournaldSource,
    ctx: &'a SourceContext,
    /// The cursor the output should start with (a resumed run).
    expect: Option<String>,
    batch: EntryBatch,
    /// The cursor of the last entry handed over.
    last: Option<String>,
}

impl Reader<'_> {
    fn read_all(&mut self, child: &mut Child) -> RunEnd {
        let Some(mut out) = child.stdout.take() else {
            return RunEnd::Stopped("no output pipe".into());
        };
        let mut buf = vec![0u8; 64 << 10];
        let mut line: Vec<u8> = Vec::new();
        let mut skipping = false;
        loop {
            if self.ctx.shutdown.is_set() {
                // What was read is handed over; journalctl is stopped.
                return if self.flush() {
                    RunEnd::Shutdown
                } else {
                    RunEnd::WriterGone
                };
            }
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
                Ok(0) => {
                    // Quiet: hand over what is waiting.
                    if !self.flush() {
                        return RunEnd::WriterGone;
                    }
                    continue;
                }
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => {
                    // What was read is handed over before the restart.
                    return if self.flush() {
                        RunEnd::Stopped(format!("poll: {e}"))
                    } else {
                        RunEnd::WriterGone
                    };
                }
            }
            let n = match out.read(&mut buf) {
                Ok(0) => {
                    let ok = self.flush();
                    return if ok {
                        RunEnd::Stopped("journalctl exited".into())
                    } else {
                        RunEnd::WriterGone
                    };
                }
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return if self.flush() {
                        RunEnd::Stopped(format!("reading journalctl: {e}"))
                    } else {
                        RunEnd::WriterGone
                    };
                }
            };
            let mut data = &buf[..n];
            while let Some(nl) = memchr::memchr(b'\n', data) {
                if skipping {
                    skipping = false;
                } else {
                    line.extend_from_slice(&data[..nl]);
                    let l = std::mem::take(&mut line);
                    if !l.is_empty() && !self.take(&l) {
                        return RunEnd::WriterGone;
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
                        return RunEnd::WriterGone;
                    }
                }
            }
            if self.batch.bytes() >= EVENT_BYTES && !self.flush() {
                return RunEnd::WriterGone;
            }
        }
    }

    /// One JSON line. False when the writer is gone.
    fn take(&mut self, line: &[u8]) -> bool {
        let entry = match entry::parse(line) {
            Ok(e) => e,
            Err(e) => {
                // Kept as it came, with the reason, where the source stands.
                tracing::warn!(
                    source = %self.src.name,
                    error = %e,
                    "source {}: a journalctl line that is not an entry ({e}); kept as is",
                    self.src.name
                );
                let position = self.last.clone().map_or(Position::None, Position::Journal);
                self.batch.begin(position, 0);
                self.batch
                    .field("_WORMLOG_PARSE_ERROR", e.to_string().as_bytes());
                self.batch.body(line);
                return true;
            }
        };
        if let Some(expected) = self.expect.take() {
            if Cursor::same_entry(&expected, &entry.cursor) {
                // Already in the spool.
                self.last = Some(entry.cursor);
                return true;
            }
            if !self.vacuumed(&expected, &entry.cursor) {
                return false;
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

    /// The entry after `had` is gone: a gap record about what was lost.
    fn vacuumed(&mut self, had: &str, now: &str) -> bool {
        let (a, b) = (Cursor::parse(had), Cursor::parse(now));
        let filtered = !self.src.cfg.units.is_empty() || !self.src.cfg.matches.is_empty();
        let count = a.entries_between(&b);
        let lost = match count {
            Some(n) if !filtered => n,
            _ => UNKNOWN_COUNT,
        };
        let what = match (count, filtered) {
            (Some(n), false) => format!("{n} entries"),
            (Some(n), true) => format!("up to {n} entries (fewer match this source's filter)"),
            (None, _) => "an unknown number of entries (another journal file set)".into(),
        };
        let when = |c: &Cursor| c.realtime_us.map_or("an unknown time".into(), rfc3339_us);
        let detail = format!(
            "the journal no longer holds the entry last read (boot {}, {}): it was vacuumed or rotated away; {what} up to {} (boot {}) were not read",
            a.boot_id.as_deref().unwrap_or("unknown"),
            when(&a),
            when(&b),
            b.boot_id.as_deref().unwrap_or("unknown"),
        );
        tracing::warn!(source = %self.src.name, lost, "source {}: {detail}", self.src.name);
        self.last = Some(had.to_owned());
        self.gap(GapReason::Vacuumed, lost, detail)
    }

    /// Hands the batch to the writer. False when the writer is gone.
    fn flush(&mut self) -> bool {
        if self.batch.is_empty() {
            return true;
        }
        self.ctx.send(Event::Entries {
            source: self.src.name.clone(),
            ts: wall_ns(),
            batch: std::mem::take(&mut self.batch),
        })
    }

    /// A gap record, after what is already batched. False when the writer
    /// is gone.
    fn gap(&mut self, reason: GapReason, lost_records: u64, detail: String) -> bool {
        if !self.flush() {
            return false;
        }
        self.ctx.send(Event::Gap {
            source: self.src.name.clone(),
            position: self.last.clone().map_or(Position::None, Position::Journal),
            reason,
            lost_bytes: UNKNOWN_COUNT,
            lost_records,
            detail,
            ts: wall_ns(),
        })
    }
}

impl Source for JournaldSource {
    fn run(self: Box<Self>, ctx: SourceContext) {
        let mut start = match ctx.positions.get(&(0, 0, 0)) {
            Some(Position::Journal(c)) => Start::Cursor(c.clone()),
            _ => match self.cfg.read_from {
                ReadFrom::Beginning => Start::Beginning,
                ReadFrom::End => Start::Since(u64::try_from(wall_ns() / 1000).unwrap_or(0)),
            },
        };
        let mut backoff = BACKOFF_MIN;
        loop {
            let began = Instant::now();
            match self.run_once(&ctx, &mut start) {
                RunEnd::Shutdown | RunEnd::WriterGone => return,
                RunEnd::Stopped(why) => {
                    if began.elapsed() >= RAN_LONG {
                        backoff = BACKOFF_MIN;
                    }
                    tracing::warn!(
                        source = %self.name,
                        "source {}: {why}; starting it again in {:.1}s from the last entry read",
                        self.name,
                        backoff.as_secs_f64()
                    );
                    if ctx.shutdown.wait(backoff) {
                        return;
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }
}
