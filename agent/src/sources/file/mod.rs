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
//! * inotify wakes the source as soon as a watched directory changes; files
//!   are also polled every `poll_interval` (default 1 s) behind it.

mod identity;
mod tailer;
mod watch;

use crate::config::{FileSourceConfig, ReadFrom};
use crate::sources::{Event, Source, SourceContext, StreamKey};
use identity::{Refused, dev_ino_size, fingerprint, matches, open_regular};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tailer::Tailer;
use wormlog_spool::Position;
use wormlog_spool::clock::wall_ns;
use wormlog_spool::record::{GapReason, UNKNOWN_COUNT};

/// With inotify active, directories are listed on every change and at
/// least every this many polls.
const RESCAN_EVERY: u64 = 10;

/// A file source.
#[derive(Debug)]
pub struct FileSource {
    name: Arc<str>,
    paths: Vec<String>,
    exclude: Vec<glob::Pattern>,
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
            exclude: c
                .exclude
                .iter()
                .filter_map(|p| glob::Pattern::new(p).ok())
                .collect(),
            read_from: c.read_from,
            max_line: c.max_line_bytes.map_or(default_max_line, |s| s.0) as usize,
            partial_timeout: c.partial_line_timeout.0,
            poll: c.poll_interval.0,
            rotate_wait: c.rotate_wait.0,
        }
    }

    fn excluded(&self, path: &Path) -> bool {
        let name = path.file_name().map(Path::new).unwrap_or(path);
        self.exclude
            .iter()
            .any(|p| p.matches_path(path) || p.matches_path(name))
    }

    /// The paths the globs name now, in a stable order.
    fn discover(&self, ctx: &SourceContext, warned: &mut HashSet<String>) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for pattern in &self.paths {
            match glob::glob(pattern) {
                Ok(paths) => {
                    for p in paths {
                        match p {
                            Ok(p) if !self.excluded(&p) => out.push(p),
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
    /// run) left it if its first bytes are still those it had, else 0.
    /// Returns the offset, whether a recorded position belongs to another
    /// file that reused the inode, and a note for a gap record.
    fn resume_at(
        &self,
        known: &BTreeMap<StreamKey, Position>,
        file: &std::fs::File,
        dev: u64,
        ino: u64,
        size: u64,
        first_start: bool,
    ) -> (u64, bool, Option<String>) {
        match known.get(&(dev, ino, 0)) {
            Some(Position::File {
                fingerprint: pfp,
                offset,
                ..
            }) => {
                if !matches(file, *pfp).unwrap_or(false) {
                    // The inode was reused by another file.
                    (0, true, None)
                } else if *offset <= size {
                    (*offset, false, None)
                } else {
                    (
                        0,
                        false,
                        Some(format!(
                            "truncated while the agent was not running: size {size} is below the last position {offset}; reading from 0"
                        )),
                    )
                }
            }
            _ if first_start && self.read_from == ReadFrom::End => (
                size,
                false,
                Some(format!(
                    "read_from = \"end\": the {size} bytes already in the file at first start are not read"
                )),
            ),
            _ => (0, false, None),
        }
    }
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

impl Source for FileSource {
    fn run(self: Box<Self>, ctx: SourceContext) {
        let first_start = ctx.positions.is_empty();
        // Where every file stands: the spool's positions at start, kept up
        // to date with the files this run lets go of.
        let mut known = ctx.positions.clone();
        let mut tailers: HashMap<(u64, u64), Tailer> = HashMap::new();
        let mut warned: HashSet<String> = HashSet::new();
        let (mut watcher, note) = watch::Watcher::new();
        let mut wake = watch::Wake::Changed;
        let mut polls: u64 = 0;
        if let Some(n) = note {
            warn_once(&mut warned, &self.name, n);
        }
        loop {
            let stopping = ctx.shutdown.is_set();
            for n in watcher.watch_globs(&self.paths) {
                warn_once(&mut warned, &self.name, n);
            }
            // List the directories when something changed in them, and
            // every RESCAN_EVERY polls anyway (inotify is only a hint); the
            // open files are checked on every poll.
            let rescan = wake != watch::Wake::Timeout
                || !watcher.active()
                || polls.is_multiple_of(RESCAN_EVERY);
            polls += 1;
            // Find files, new and known.
            let mut seen: HashSet<(u64, u64)> = if rescan {
                HashSet::new()
            } else {
                tailers.keys().copied().collect()
            };
            let found = if rescan {
                self.discover(&ctx, &mut warned)
            } else {
                Vec::new()
            };
            for path in found {
                // A known file costs an lstat, not an open.
                if let Ok(m) = std::fs::symlink_metadata(&path)
                    && m.file_type().is_file()
                {
                    use std::os::unix::fs::MetadataExt;
                    if let Some(t) = tailers.get_mut(&(m.dev(), m.ino())) {
                        seen.insert((m.dev(), m.ino()));
                        t.path = path;
                        t.gone = false;
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
                        not_read(
                            &ctx,
                            &mut warned,
                            &self.name,
                            reason,
                            format!("{} {e}", path.display()),
                        );
                        continue;
                    }
                };
                let Ok((dev, ino, size)) = dev_ino_size(&file) else {
                    continue;
                };
                seen.insert((dev, ino));
                if let Some(t) = tailers.get_mut(&(dev, ino)) {
                    t.path = path;
                    t.gone = false;
                    continue;
                }
                let fp = fingerprint(&file, size).unwrap_or(0);
                let (start, reused, note) =
                    self.resume_at(&known, &file, dev, ino, size, first_start);
                if reused {
                    known.remove(&(dev, ino, 0));
                    ctx.send(Event::Forget {
                        source: self.name.clone(),
                        key: (dev, ino, 0),
                    });
                }
                if let Some(detail) = note {
                    let detail = format!("{}: {detail}", path.display());
                    tracing::warn!(source = %self.name, path = %path.display(), "source {}: {detail}", self.name);
                    let reason = if start == 0 {
                        GapReason::Truncated
                    } else {
                        GapReason::Other
                    };
                    ctx.send(Event::Gap {
                        source: self.name.clone(),
                        position: Position::File {
                            dev,
                            ino,
                            fingerprint: fp,
                            offset: start,
                        },
                        reason,
                        lost_bytes: if start == 0 { UNKNOWN_COUNT } else { size },
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
                    start,
                    self.max_line,
                ) {
                    Ok(t) => {
                        tailers.insert((dev, ino), t);
                    }
                    Err(e) => not_read(
                        &ctx,
                        &mut warned,
                        &self.name,
                        GapReason::Unreadable,
                        format!("{}: {e}", path.display()),
                    ),
                }
            }
            for (id, t) in tailers.iter_mut() {
                if !seen.contains(id) {
                    t.gone = true;
                }
            }
            // Read what is new in every file (a renamed or deleted one to its end).
            let mut writer_gone = false;
            for t in tailers.values_mut() {
                match t.poll(&ctx, self.partial_timeout, stopping || t.gone) {
                    Ok(true) => {}
                    Ok(false) => writer_gone = true,
                    Err(e) => not_read(
                        &ctx,
                        &mut warned,
                        &self.name,
                        GapReason::Unreadable,
                        format!("{}: read error: {e}; retrying", t.path.display()),
                    ),
                }
            }
            // Let go of files that are gone and read to their end.
            tailers.retain(|_, t| {
                // A writer may still append to a file it has open after the
                // rename or unlink (until it reopens): keep reading for
                // `rotate_wait` after the last data.
                if !t.gone
                    || !t.drained().unwrap_or(true)
                    || (t.idle_for() < self.rotate_wait && !stopping)
                {
                    return true;
                }
                if t.nlink() == 0 {
                    // Deleted and read to its end: nothing to resume.
                    known.remove(&(t.dev, t.ino, 0));
                    ctx.send(Event::Forget {
                        source: self.name.clone(),
                        key: (t.dev, t.ino, 0),
                    });
                } else {
                    // Renamed out of the globs (or out of sight for one
                    // pass): if it shows up again, resume where it was left.
                    known.insert(
                        (t.dev, t.ino, 0),
                        Position::File {
                            dev: t.dev,
                            ino: t.ino,
                            fingerprint: t.fp,
                            offset: t.offset,
                        },
                    );
                }
                false
            });
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
