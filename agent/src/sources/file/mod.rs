//! `[[sources.file]]`: log files named by globs, followed through rotation.
//!
//! * A file is known by device + inode + fingerprint (identity.rs), not by
//!   name: a file renamed by rotation (`app.log` → `app.log.1`, dateext) is
//!   the same file and is never read twice; it is read to its end before it
//!   is let go, and the new `app.log` is read from 0.
//! * Truncation and in-place replacement (copytruncate) become `gap`
//!   records, never a silent skip or a re-read (tailer.rs).
//! * Where to resume comes from the spool: the position of the last line of
//!   each file that reached the disk. There is no checkpoint file.
//! * A file renamed out of the globs or deleted is still read for
//!   `rotate_wait` (default 5 s) after its last data: the program writing
//!   it may not have reopened its log yet.
//! * inotify wakes the source as soon as a watched directory changes, and
//!   says which files did: only those are read then. Every open file is
//!   also checked every `RESCAN_EVERY` polls (30 s by default) behind it —
//!   on every poll where inotify does not watch its directory — so that a
//!   change inotify does not report (a network file system, a write through
//!   a mapping) is seen late, never missed. The directories are listed again
//!   when files come, go or are renamed, and every `RELIST_EVERY` polls (a
//!   minute; with a wildcard directory in a glob, every `RESCAN_EVERY`).
//!   Quiet files cost nothing in between, and share one read buffer.

mod exclude;
mod identity;
mod locate;
mod tailer;
mod watch;

use crate::config::{FileSourceConfig, ReadFrom};
use crate::metrics::{self, SourceState};
use crate::sources::{Event, Source, SourceContext, StreamKey};
use identity::{Refused, dev_ino_size, fingerprint, matches, open_regular};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tailer::Tailer;
use wormlog_spool::Position;
use wormlog_spool::clock::wall_ns;
use wormlog_spool::record::{GapReason, UNKNOWN_COUNT};

/// With inotify active, every open file is checked at least every this
/// many polls (30 s by default), whatever inotify says.
const RESCAN_EVERY: u64 = 30;
/// With inotify active, the directories are listed when files come, go
/// or are renamed in them, and at least every this many polls (1 minute
/// by default): a listing of thousands of files is most of what a quiet
/// source costs.
const RELIST_EVERY: u64 = 60;

/// A file source.
#[derive(Debug)]
pub struct FileSource {
    name: Arc<str>,
    paths: Vec<String>,
    exclude: exclude::Exclude,
    read_from: ReadFrom,
    max_line: usize,
    partial_timeout: Duration,
    poll: Duration,
    rotate_wait: Duration,
}

impl FileSource {
    pub fn new(c: &FileSourceConfig, default_max_line: u64) -> FileSource {
        FileSource {
            name: c.name.as_str().into(),
            paths: c.paths.clone(),
            exclude: exclude::Exclude::new(&c.exclude),
            read_from: c.read_from,
            max_line: c.max_line_bytes.map_or(default_max_line, |s| s.0) as usize,
            partial_timeout: c.partial_line_timeout.0,
            poll: c.poll_interval.0,
            rotate_wait: c.rotate_wait.0,
        }
    }

    /// The paths the globs name now, in a stable order.
    fn discover(&self, ctx: &SourceContext, warned: &mut HashSet<String>) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for pattern in &self.paths {
            match glob::glob(pattern) {
                Ok(paths) => {
                    for p in paths {
                        match p {
                            Ok(p) if !self.exclude.matches(&p) => out.push(p),
                            Ok(_) => {}
                            // A directory that cannot be listed hides files.
                            Err(e) => not_read(
                                ctx,
                                warned,
                                &self.name,
                                GapReason::Unreadable,
                                format!("{}: {e}", e.path().display()),
                            ),
                        }
                    }
                }
                // check-config refuses invalid globs; kept for safety.
                Err(e) => {
                    warn_once(warned, &self.name, format!("invalid glob {pattern:?}: {e}"));
                }
            }
        }
        out.sort();
        out.dedup();
        out
    }

    /// Where to start reading a newly found file: where the spool (or this
    /// run) left it if its first bytes are still those it had, else 0 —
    /// with a gap record when a known file's unread bytes may be lost.
    fn resume_at(
        &self,
        known: &BTreeMap<StreamKey, Position>,
        file: &std::fs::File,
        (dev, ino, size): (u64, u64, u64),
        first_start: bool,
    ) -> Start {
        match known.get(&(dev, ino, 0)) {
            Some(Position::File {
                fingerprint: pfp,
                offset,
                ..
            }) => {
                if size < *offset {
                    Start {
                        offset: 0,
                        resumed: false,
                        gap: Some((
                            GapReason::Truncated,
                            UNKNOWN_COUNT,
                            format!(
                                "truncated (or replaced by a shorter file) while the agent was not running: size {size} is below the offset {offset} it had been read to (inode {ino}); what was written past that before the truncation is lost (amount unknown); reading from 0"
                            ),
                        )),
                    }
                } else if !matches(file, *pfp).unwrap_or(false) {
                    Start {
                        offset: 0,
                        resumed: false,
                        gap: Some((
                            GapReason::Replaced,
                            UNKNOWN_COUNT,
                            format!(
                                "no longer starts with the bytes it had (inode {ino}, fingerprint {pfp:016x}): rewritten in place, copied and truncated, or deleted and its inode reused, while the agent was not running; it had been read to offset {offset}, and whatever the old content held past that is lost (amount unknown); reading from 0"
                            ),
                        )),
                    }
                } else {
                    Start {
                        offset: *offset,
                        resumed: true,
                        gap: None,
                    }
                }
            }
            _ if first_start && self.read_from == ReadFrom::End => Start {
                offset: size,
                resumed: false,
                gap: Some((
                    GapReason::Other,
                    size,
                    format!(
                        "read_from = \"end\": the {size} bytes already in the file at first start are not read"
                    ),
                )),
            },
            _ => Start {
                offset: 0,
                resumed: false,
                gap: None,
            },
        }
    }
}

/// Where a newly found file is read from, and what the chain must say.
#[derive(Debug)]
struct Start {
    offset: u64,
    /// From a position the spool (or this run) knew.
    resumed: bool,
    /// (reason, lost bytes, detail) of a gap record to write first.
    gap: Option<(GapReason, u64, String)>,
}

/// Logs a warning the first time it happens; true then.
fn warn_once(warned: &mut HashSet<String>, source: &str, msg: String) -> bool {
    let new = warned.insert(msg.clone());
    if new {
        tracing::warn!(source, "source {source}: {msg}");
    }
    new
}

/// A file matched by the globs that is not read (refused or unreadable)
/// is said in the log and, once, in the chain as a gap record.
fn not_read(
    ctx: &SourceContext,
    warned: &mut HashSet<String>,
    source: &Arc<str>,
    reason: GapReason,
    msg: String,
) {
    if warn_once(warned, source, msg.clone()) {
        ctx.send(Event::Gap {
            source: source.clone(),
            position: Position::None,
            reason,
            lost_bytes: UNKNOWN_COUNT,
            lost_records: UNKNOWN_COUNT,
            detail: msg,
            ts: wall_ns(),
        });
    }
}

impl FileSource {
    /// Opens a newly found file and makes a tailer for it, writing the gap
    /// record its start calls for. None when it cannot be read.
    fn open_new(
        &self,
        ctx: &SourceContext,
        run: &mut RunState,
        path: PathBuf,
        file: std::fs::File,
        (dev, ino, size): (u64, u64, u64),
    ) -> Option<Tailer> {
        let fp = fingerprint(&file, size).unwrap_or(0);
        // A gap's position replaces the spool's old one for this inode.
        let start = self.resume_at(&run.known, &file, (dev, ino, size), run.first_start);
        if let Some((reason, lost_bytes, detail)) = start.gap {
            let detail = format!("{}: {detail}", path.display());
            tracing::warn!(source = %self.name, path = %path.display(), "source {}: {detail}", self.name);
            ctx.send(Event::Gap {
                source: self.name.clone(),
                position: Position::File {
                    dev,
                    ino,
                    fingerprint: fp,
                    offset: start.offset,
                },
                reason,
                lost_bytes,
                lost_records: UNKNOWN_COUNT,
                detail,
                ts: wall_ns(),
            });
        }
        match Tailer::new(
            self.name.clone(),
            path.clone(),
            file,
            fp,
            start.offset,
            self.max_line,
        ) {
            Ok(mut t) => {
                t.resumed = start.resumed;
                t.order = run.next_order();
                Some(t)
            }
            Err(e) => {
                not_read(
                    ctx,
                    &mut run.warned,
                    &self.name,
                    GapReason::Unreadable,
                    format!("{}: {e}", path.display()),
                );
                None
            }
        }
    }

    /// At the first pass: the files the spool has a position for that the
    /// globs no longer show. One renamed out of the globs while the agent
    /// was not running is found in the globs' directories and read to its
    /// end (before anything new); one that is nowhere to be found becomes a
    /// `deleted` gap record, which ends its stream.
    fn settle_missing(&self, ctx: &SourceContext, run: &mut RunState) {
        let missing: Vec<Position> = run
            .known
            .values()
            .filter(|p| match p {
                Position::File { dev, ino, .. } => !run.tailers.contains_key(&(*dev, *ino)),
                _ => false,
            })
            .cloned()
            .collect();
        if missing.is_empty() {
            return;
        }
        let elsewhere = locate::in_directories(&self.paths, &run.tailers);
        for pos in missing {
            let Position::File {
                dev,
                ino,
                fingerprint: fp,
                offset,
            } = pos
            else {
                continue;
            };
            let gone = match elsewhere.get(&(dev, ino)) {
                None => format!(
                    "is no longer found under {:?}: deleted or moved away while the agent was not running",
                    self.paths
                ),
                Some(path) => match open_regular(path) {
                    Err(e) => {
                        // Still there but not readable (now): its position
                        // stays, and it is said once in the log and chain.
                        let msg = format!("{} {e}", path.display());
                        not_read(ctx, &mut run.warned, &self.name, GapReason::Unreadable, msg);
                        continue;
                    }
                    Ok(file) => match dev_ino_size(&file) {
                        Ok(id @ (_, _, size))
                            if offset <= size && matches(&file, fp).unwrap_or(false) =>
                        {
                            tracing::info!(source = %self.name, path = %path.display(),
                                "source {}: {} was renamed out of the paths while the agent was not running; reading the rest of it",
                                self.name, path.display());
                            if let Some(mut t) = self.open_new(ctx, run, path.clone(), file, id) {
                                t.gone = true;
                                run.tailers.insert((dev, ino), t);
                            }
                            continue;
                        }
                        _ => format!(
                            "was moved out of the paths (now {}) and then truncated or replaced, or its inode reused, while the agent was not running",
                            path.display()
                        ),
                    },
                },
            };
            run.known.remove(&(dev, ino, 0));
            let detail = format!(
                "a file this source was reading (device {dev}, inode {ino}, fingerprint {fp:016x}) {gone}; it had been read to offset {offset}, and whatever it held past that is lost (amount unknown: its size when it went is not known)"
            );
            tracing::warn!(source = %self.name, "source {}: {detail}", self.name);
            ctx.send(Event::Gap {
                source: self.name.clone(),
                position: pos,
                reason: GapReason::Deleted,
                lost_bytes: UNKNOWN_COUNT,
                lost_records: UNKNOWN_COUNT,
                detail,
                ts: wall_ns(),
            });
        }
    }
}

/// What one run of a file source keeps.
#[derive(Debug)]
struct RunState {
    first_start: bool,
    /// Where every file stands: the spool's positions at start, kept up to
    /// date with the files this run lets go of.
    known: BTreeMap<StreamKey, Position>,
    tailers: HashMap<(u64, u64), Tailer>,
    warned: HashSet<String>,
    orders: u64,
    /// The read buffer every file of the source shares.
    buf: Vec<u8>,
    /// The open files by file name, as of the last scan.
    by_name: HashMap<OsString, Vec<(u64, u64)>>,
    /// The open files read on every poll whatever inotify says (see
    /// [`needs_look`]): kept as the flags change (at a scan, after a
    /// read), so that a poll with thousands of quiet files open does not
    /// go through all of them.
    attention: HashSet<(u64, u64)>,
}

/// Whether a file is read on every poll: gone from the globs (read to its
/// end, then let go of), just found, in a directory inotify does not
/// watch, or holding part of a line.
fn needs_look(t: &Tailer) -> bool {
    t.gone || t.look || !t.watched || t.holds_partial()
}

impl RunState {
    fn next_order(&mut self) -> u64 {
        self.orders += 1;
        self.orders
    }

    /// After a scan: which files are gone from the globs, which are in a
    /// directory inotify watches, and the files by name (what inotify
    /// names).
    fn scanned(&mut self, seen: &HashSet<(u64, u64)>, watcher: &watch::Watcher) {
        self.by_name.clear();
        for (id, t) in self.tailers.iter_mut() {
            if !seen.contains(id) {
                t.gone = true;
            }
            t.watched = t.path.parent().is_some_and(|d| watcher.watches(d));
            if let Some(n) = t.path.file_name() {
                self.by_name.entry(n.to_owned()).or_default().push(*id);
            }
        }
        self.attention = self
            .tailers
            .iter()
            .filter(|(_, t)| needs_look(t))
            .map(|(id, _)| *id)
            .collect();
    }

    /// After `id` was read: whether it still needs a look on every poll.
    fn polled(&mut self, id: (u64, u64)) {
        match self.tailers.get(&id) {
            Some(t) if needs_look(t) => self.attention.insert(id),
            _ => self.attention.remove(&id),
        };
    }

    /// The files to read now, in the order they are read: those renamed or
    /// deleted first (what is left of an old file comes before its
    /// successor), then those resumed from the spool, then the others as
    /// found. With `all` every open file; otherwise those inotify named,
    /// those it does not watch, and those that must be looked at anyway
    /// (gone, just found, holding part of a line).
    fn due(&self, all: bool, changed: &HashSet<OsString>) -> Vec<(u64, u64)> {
        let key = |t: &Tailer| (!t.gone, !t.resumed, t.order);
        let mut due: Vec<_> = if all {
            self.tailers.iter().map(|(id, t)| (key(t), *id)).collect()
        } else {
            self.attention
                .iter()
                .filter_map(|id| self.tailers.get(id).map(|t| (key(t), *id)))
                .collect()
        };
        if !all {
            // (A file let go of since the last scan is no longer open.)
            for id in changed.iter().filter_map(|n| self.by_name.get(n)).flatten() {
                if let Some(t) = self.tailers.get(id) {
                    due.push((key(t), *id));
                }
            }
            due.sort_unstable();
            due.dedup();
        } else {
            due.sort_unstable();
        }
        due.into_iter().map(|(_, id)| id).collect()
    }
}

impl Source for FileSource {
    fn run(self: Box<Self>, ctx: SourceContext) {
        let mut run = RunState {
            first_start: ctx.positions.is_empty(),
            known: ctx.positions.clone(),
            tailers: HashMap::new(),
            warned: HashSet::new(),
            orders: 0,
            buf: Vec::new(),
            by_name: HashMap::new(),
            attention: HashSet::new(),
        };
        let (mut watcher, note) = watch::Watcher::new();
        let mut wake = watch::Wake::Changed;
        let mut polls: u64 = 0;
        // A glob with a wildcard directory: inotify (on the directory up to
        // the first wildcard) does not see files come in the directories
        // below, so those are listed as often as files are checked.
        let deep_globs = self.paths.iter().any(|g| {
            Path::new(g)
                .parent()
                .is_some_and(|p| watch::static_prefix_dir(g) != p)
        });
        // Whether no file matched at the last scan (None: not scanned yet).
        let mut waiting: Option<bool> = None;
        if let Some(n) = note {
            warn_once(&mut run.warned, &self.name, n);
        }
        loop {
            let stopping = ctx.shutdown.is_set();
            for n in watcher.watch_globs(&self.paths) {
                warn_once(&mut run.warned, &self.name, n);
            }
            // List the directories when files came, went or were renamed
            // in them, and every RELIST_EVERY polls anyway (inotify is only
            // a hint). Every open file is checked every RESCAN_EVERY polls,
            // after an overflow, and on every poll when inotify is off;
            // otherwise only those it named (a quiet file costs nothing in
            // between).
            let every = polls.is_multiple_of(RESCAN_EVERY);
            let structure = matches!(wake, watch::Wake::Changed | watch::Wake::Overflow);
            let relist = if deep_globs {
                RESCAN_EVERY
            } else {
                RELIST_EVERY
            };
            // A stop lists the directories too: a file created just before
            // it (its inotify event not read yet) is read now, not at the
            // next start.
            let rescan = structure || stopping || !watcher.active() || polls.is_multiple_of(relist);
            let check_all = every || wake == watch::Wake::Overflow || !watcher.active();
            let changed = watcher.take_changed();
            polls += 1;
            if rescan {
                let seen = self.scan(&ctx, &mut run);
                if polls == 1 {
                    self.settle_missing(&ctx, &mut run);
                }
                self.show_state(&mut waiting, run.tailers.is_empty());
                run.scanned(&seen, &watcher);
            }
            // Read what is new (a renamed or deleted file to its end), the
            // old before the new.
            let mut writer_gone = false;
            for id in run.due(check_all || stopping, &changed) {
                let Some(t) = run.tailers.get_mut(&id) else {
                    continue;
                };
                let flush = stopping || t.gone;
                match t.poll(&ctx, &mut run.buf, self.partial_timeout, flush) {
                    Ok(true) => {}
                    Ok(false) => writer_gone = true,
                    Err(e) => {
                        let msg = format!("{}: read error: {e}; retrying", t.path.display());
                        not_read(
                            &ctx,
                            &mut run.warned,
                            &self.name,
                            GapReason::Unreadable,
                            msg,
                        );
                    }
                }
                run.polled(id);
            }
            self.release(&ctx, &mut run);
            if writer_gone || stopping {
                return;
            }
            wake = watcher.wait(self.poll, &ctx.shutdown);
            if wake == watch::Wake::Overflow {
                tracing::warn!(
                    source = %self.name,
                    overflows = watcher.overflows,
                    "source {}: inotify queue overflowed ({} so far); rescanning every file",
                    self.name, watcher.overflows
                );
            }
        }
    }
}

impl FileSource {
    /// Shows in the status whether the source has files to read or waits
    /// for its paths to appear (said in the log too, when it begins).
    fn show_state(&self, waiting: &mut Option<bool>, none_open: bool) {
        if *waiting == Some(none_open) {
            return;
        }
        *waiting = Some(none_open);
        if none_open {
            let detail = format!("no readable file matches {}", self.paths.join(", "));
            tracing::info!(
                source = %self.name,
                "source {}: {detail}; waiting for one to appear",
                self.name
            );
            metrics::source_state(&self.name, SourceState::WaitingForPath, &detail);
        } else {
            metrics::source_state(&self.name, SourceState::Reading, "");
        }
    }

    /// Lists the globs: known files get their current name, new ones a
    /// tailer. Returns the files the globs show.
    fn scan(&self, ctx: &SourceContext, run: &mut RunState) -> HashSet<(u64, u64)> {
        let mut seen = HashSet::new();
        for path in self.discover(ctx, &mut run.warned) {
            // A known file costs an lstat, not an open.
            if let Ok(m) = std::fs::symlink_metadata(&path)
                && m.file_type().is_file()
            {
                use std::os::unix::fs::MetadataExt;
                if let Some(t) = run.tailers.get_mut(&(m.dev(), m.ino())) {
                    seen.insert((m.dev(), m.ino()));
                    t.found_as(path);
                    continue;
                }
            }
            let file = match open_regular(&path) {
                Ok(f) => f,
                Err(Refused::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    let reason = if matches!(e, Refused::Io(_)) {
                        GapReason::Unreadable
                    } else {
                        GapReason::Other
                    };
                    let msg = format!("{} {e}", path.display());
                    not_read(ctx, &mut run.warned, &self.name, reason, msg);
                    continue;
                }
            };
            let Ok(id @ (dev, ino, _)) = dev_ino_size(&file) else {
                continue;
            };
            seen.insert((dev, ino));
            if let Some(t) = run.tailers.get_mut(&(dev, ino)) {
                t.found_as(path);
                continue;
            }
            if let Some(t) = self.open_new(ctx, run, path, file, id) {
                run.tailers.insert((dev, ino), t);
            }
        }
        seen
    }

    /// Lets go of files that are gone and read to their end. A writer may
    /// still append to a file it has open after the rename or unlink (until
    /// it reopens): they are read for `rotate_wait` after their last data
    /// (a stop before then keeps their positions, and the next start reads
    /// the rest). The spool forgets them (a file renamed away and later
    /// deleted must not look lost at the next start); this run remembers a
    /// renamed one, should it come back into the globs.
    fn release(&self, ctx: &SourceContext, run: &mut RunState) {
        // (A file gone from the globs is one that needs a look.)
        let done: Vec<(u64, u64)> = run
            .attention
            .iter()
            .filter(|id| {
                run.tailers.get(id).is_some_and(|t| {
                    t.gone && t.drained().unwrap_or(true) && t.idle_for() >= self.rotate_wait
                })
            })
            .copied()
            .collect();
        for id in done {
            run.attention.remove(&id);
            let Some(t) = run.tailers.remove(&id) else {
                continue;
            };
            if t.nlink() == 0 {
                run.known.remove(&(t.dev, t.ino, 0));
            } else {
                run.known.insert(
                    (t.dev, t.ino, 0),
                    Position::File {
                        dev: t.dev,
                        ino: t.ino,
                        fingerprint: t.fp,
                        offset: t.offset,
                    },
                );
            }
            ctx.send(Event::Forget {
                source: self.name.clone(),
                key: (t.dev, t.ino, 0),
            });
        }
    }
}
