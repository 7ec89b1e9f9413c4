//! `[[sources.journald]]`: the systemd journal, through `journalctl
//! --output=json` (as Vector does: no libsystemd in the agent).
//!
//! * Every entry is kept: `MESSAGE` as the body, all other fields as
//!   structured fields, binary values byte-exact (entry.rs).
//! * Two steps per `journalctl` start (command.rs says why): without
//!   `--follow` to the end of the journal, every boot, then `--follow` from
//!   the last entry read. After a reboot the rest of the earlier boot (its
//!   shutdown) is read before the current boot is followed.
//! * The journal cursor is the position of each entry, so the spool alone
//!   says where to resume. A restart asks `journalctl --cursor=LAST`: the
//!   first entry it shows is that same entry (already spooled: skipped), or,
//!   when that entry was vacuumed or rotated away meanwhile, a later one —
//!   then a `gap` record (reason `vacuumed`) says which boot and which time
//!   range were lost, and how many entries when the journal can tell.
//! * The journal's sequence numbers are checked per journal file set: a
//!   jump is a `gap` record with the count (seqnum.rs, reader.rs).
//! * A `journalctl` that exits or dies is logged and started again with
//!   backoff (0.5 s doubling to 30 s), from the last entry read.

mod command;
mod cursor;
mod entry;
mod reader;
mod seqnum;

use crate::config::{JournaldSourceConfig, ReadFrom};
use crate::metrics::SourceState;
use crate::sources::{EntryBatch, Source, SourceContext};
use command::{Phase, Start};
use reader::{ReadEnd, Reader, Resume};
use seqnum::SeqnumCheck;
use std::io::{BufRead, BufReader};
use std::process::{Child, ExitStatus};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wormlog_spool::Position;
use wormlog_spool::clock::wall_ns;

const BACKOFF_MIN: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A `journalctl` that ran this long before it stopped starts again at the
/// shortest backoff.
const RAN_LONG: Duration = Duration::from_secs(60);
/// How long a `journalctl` whose output ended is waited for before it is
/// killed.
const EXIT_WAIT: Duration = Duration::from_secs(5);
/// A source of journal files (`directory`, `files`) reads them to their
/// end this often.
const FILES_POLL: Duration = Duration::from_secs(1);
/// How long a journalctl ended by a stop signal waits for the agent's own
/// stop before it counts as a failure.
const STOP_GRACE: Duration = Duration::from_secs(3);

#[derive(Debug)]
pub struct JournaldSource {
    name: Arc<str>,
    cfg: JournaldSourceConfig,
}

/// Why one `journalctl` run ended.
enum RunEnd {
    Shutdown,
    /// The writer is gone.
    WriterGone,
    /// Its output ended and it exited successfully: the end of the journal
    /// for a catch-up run.
    Finished,
    /// It stopped otherwise (or its output could not be read): what to log.
    Stopped(String),
}

/// Where the source stands between `journalctl` runs.
struct Progress {
    /// Where the next run starts.
    start: Start,
    /// The last run read (or skipped) an entry, so the entry at `start` was
    /// there a moment ago.
    start_seen: bool,
    seqnums: SeqnumCheck,
}

impl Progress {
    /// What the first entry of a run in `phase` is checked against.
    fn resume(&self, phase: Phase) -> Resume {
        match &self.start {
            Start::Cursor(c) if phase == Phase::Follow && self.start_seen => {
                Resume::SkipIfShown(c.clone())
            }
            // Without --follow nothing hides it: if it is not shown, it is
            // gone. A follow run after a catch-up that showed nothing at
            // all: the same.
            Start::Cursor(c) => Resume::Expect(c.clone()),
            Start::Beginning | Start::Since(_) => Resume::Fresh,
        }
    }
}

impl JournaldSource {
    pub fn new(cfg: &JournaldSourceConfig) -> JournaldSource {
        JournaldSource {
            name: cfg.name.as_str().into(),
            cfg: cfg.clone(),
        }
    }

    /// Whether the source sees only some of the journal's numbered
    /// entries (a filter; or chosen files, which may hold the system
    /// journal without the user journals journald numbers with it): then
    /// a skipped sequence number is no loss, and is not checked.
    fn filtered(&self) -> bool {
        !self.cfg.units.is_empty() || !self.cfg.matches.is_empty() || !self.cfg.files.is_empty()
    }

    /// Where the source starts: after the spool's last entry of it, or as
    /// `read_from` says.
    fn progress(&self, ctx: &SourceContext) -> Progress {
        let mut seqnums = SeqnumCheck::new(self.filtered());
        let start = match ctx.positions.get(&(0, 0, 0)) {
            Some(Position::Journal(c)) => {
                seqnums.read(&cursor::Cursor::parse(c));
                Start::Cursor(c.clone())
            }
            _ => match self.cfg.read_from {
                ReadFrom::Beginning => Start::Beginning,
                ReadFrom::End => Start::Since(u64::try_from(wall_ns() / 1000).unwrap_or(0)),
            },
        };
        Progress {
            start,
            start_seen: false,
            seqnums,
        }
    }

    /// Reads to the end of the journal, every boot, then follows it; ends
    /// when a `journalctl` stops.
    fn catch_up_and_follow(&self, ctx: &SourceContext, p: &mut Progress) -> RunEnd {
        match self.run_once(ctx, Phase::CatchUp, p) {
            // With `directory` or `files`, `journalctl --follow` shows only
            // the boot that was newest when it started: a boot that begins
            // later (a new boot, another host's journal) would wait for a
            // restart. Such a source reads to the end again every
            // FILES_POLL instead.
            RunEnd::Finished if self.cfg.directory.is_some() || !self.cfg.files.is_empty() => {
                if ctx.shutdown.wait(FILES_POLL) {
                    RunEnd::Shutdown
                } else {
                    RunEnd::Finished
                }
            }
            RunEnd::Finished if ctx.shutdown.is_set() => RunEnd::Shutdown,
            RunEnd::Finished => match self.run_once(ctx, Phase::Follow, p) {
                RunEnd::Finished => RunEnd::Stopped("journalctl --follow exited".into()),
                other => other,
            },
            other => other,
        }
    }

    /// Runs one `journalctl` until it ends, handing entries to the writer.
    /// `p.start` moves to the last entry read.
    fn run_once(&self, ctx: &SourceContext, phase: Phase, p: &mut Progress) -> RunEnd {
        let mut child = match command::journalctl(&self.cfg, phase, &p.start).spawn() {
            Ok(c) => c,
            Err(e) => {
                return RunEnd::Stopped(format!(
                    "cannot run {}: {e}",
                    self.cfg.journalctl.display()
                ));
            }
        };
        crate::metrics::source_state(&self.name, SourceState::Reading, "");
        let stderr = child.stderr.take().map(|e| self.log_stderr(e));
        let mut reader = Reader {
            name: &self.name,
            ctx,
            filtered: self.filtered(),
            resume: p.resume(phase),
            seqnums: &mut p.seqnums,
            batch: EntryBatch::default(),
            read_any: false,
            last: match &p.start {
                Start::Cursor(c) => Some(c.clone()),
                _ => None,
            },
        };
        let end = match child.stdout.take() {
            Some(out) => reader.read_all(out),
            None => ReadEnd::Failed("no output pipe".into()),
        };
        p.start_seen = reader.read_any;
        if let Some(c) = reader.last.take() {
            p.start = Start::Cursor(c);
        }
        let status = reap(&mut child, end == ReadEnd::Eof);
        if let Some(h) = stderr {
            let _ = h.join();
        }
        match end {
            ReadEnd::Shutdown => RunEnd::Shutdown,
            ReadEnd::WriterGone => RunEnd::WriterGone,
            ReadEnd::Eof if status.is_some_and(|s| s.success()) => RunEnd::Finished,
            // A stop signal to the whole service (systemd's stop signals
            // every process of the unit; Ctrl-C the whole process group)
            // reaches journalctl too, a moment before the agent's own stop
            // reaches this source: that is the agent stopping, not a
            // journalctl that failed.
            _ if status.is_some_and(stop_signal) && ctx.shutdown.wait(STOP_GRACE) => {
                RunEnd::Shutdown
            }
            ReadEnd::Eof => RunEnd::Stopped(exited("journalctl exited", status)),
            ReadEnd::Failed(why) => RunEnd::Stopped(exited(&why, status)),
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

/// Ends a `journalctl`: one whose output ended is given `EXIT_WAIT` to
/// exit by itself (a catch-up run exits at the end of the journal), any
/// other is killed. Its exit status, when it could be had.
fn reap(child: &mut Child, output_ended: bool) -> Option<ExitStatus> {
    if output_ended {
        let deadline = Instant::now() + EXIT_WAIT;
        while Instant::now() < deadline {
            match child.try_wait() {
                Ok(Some(s)) => return Some(s),
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                Err(_) => break,
            }
        }
    }
    let _ = child.kill();
    child.wait().ok()
}

/// Whether journalctl was ended by a signal that stops a whole service or
/// process group (SIGTERM, SIGINT).
fn stop_signal(s: ExitStatus) -> bool {
    use std::os::unix::process::ExitStatusExt;
    matches!(s.signal(), Some(15 | 2))
}

fn exited(why: &str, status: Option<ExitStatus>) -> String {
    match status {
        Some(s) => format!("{why} ({s})"),
        None => why.to_owned(),
    }
}

impl Source for JournaldSource {
    fn run(self: Box<Self>, ctx: SourceContext) {
        let mut progress = self.progress(&ctx);
        let mut backoff = BACKOFF_MIN;
        loop {
            let began = Instant::now();
            match self.catch_up_and_follow(&ctx, &mut progress) {
                RunEnd::Shutdown | RunEnd::WriterGone => return,
                RunEnd::Finished | RunEnd::Stopped(_) if ctx.shutdown.is_set() => return,
                // A journal-files source read to the end; again.
                RunEnd::Finished => backoff = BACKOFF_MIN,
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
                    crate::metrics::source_state(
                        &self.name,
                        SourceState::Failed,
                        &format!("{why}; starting it again in {:.1}s", backoff.as_secs_f64()),
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
