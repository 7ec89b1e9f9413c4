//! inotify as a hint: wake up as soon as a watched directory changes, and
//! poll anyway every `poll_interval` (inotify can overflow, miss network
//! file systems, or be unavailable). An overflow (`IN_Q_OVERFLOW`) means
//! events were dropped: the next pass rescans everything, and it is counted.

use inotify::{EventMask, Inotify, WatchMask};
use std::collections::HashSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::sources::Shutdown;

/// Why [`Watcher::wait`] returned (in rising order: a wait that saw
/// several returns the last).
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord, Clone, Copy)]
pub enum Wake {
    Timeout,
    /// Only files' contents changed (the names are kept).
    Modified,
    /// Files came, went or were renamed (or their attributes changed):
    /// the directories are listed again.
    Changed,
    Overflow,
    Shutdown,
}

#[derive(Debug)]
pub struct Watcher {
    inotify: Option<Inotify>,
    dirs: HashSet<PathBuf>,
    buf: Vec<u8>,
    /// The names inotify reported changed since [`Watcher::take_changed`].
    changed: HashSet<OsString>,
    /// Event queue overflows seen.
    pub overflows: u64,
}

impl Watcher {
    /// An inotify instance, or plain polling when there is none (the
    /// reason is returned for the log).
    pub fn new() -> (Watcher, Option<String>) {
        let (inotify, note) = match Inotify::init() {
            Ok(i) => (Some(i), None),
            Err(e) => (
                None,
                Some(format!("inotify unavailable ({e}); polling only")),
            ),
        };
        (
            Watcher {
                inotify,
                dirs: HashSet::new(),
                buf: vec![0; 16 << 10],
                changed: HashSet::new(),
                overflows: 0,
            },
            note,
        )
    }

    /// Watches the directory part of each glob (up to its first wildcard).
    pub fn watch_globs(&mut self, globs: &[String]) -> Vec<String> {
        let mut notes = Vec::new();
        let Some(ino) = &mut self.inotify else {
            return notes;
        };
        for g in globs {
            let dir = static_prefix_dir(g);
            if self.dirs.contains(&dir) || !dir.is_dir() {
                continue;
            }
            let mask = WatchMask::MODIFY
                | WatchMask::CREATE
                | WatchMask::MOVED_TO
                | WatchMask::MOVED_FROM
                | WatchMask::DELETE
                | WatchMask::CLOSE_WRITE
                | WatchMask::ATTRIB;
            match ino.watches().add(&dir, mask) {
                Ok(_) => {
                    self.dirs.insert(dir);
                }
                Err(e) => notes.push(format!(
                    "cannot watch {} ({e}); it is polled",
                    dir.display()
                )),
            }
        }
        notes
    }

    /// Whether inotify watches every glob's directory (then a change wakes
    /// the source, and directories need not be listed on every poll).
    pub fn active(&self) -> bool {
        self.inotify.is_some() && !self.dirs.is_empty()
    }

    /// Whether a change of a file directly in `dir` is reported.
    pub fn watches(&self, dir: &Path) -> bool {
        self.inotify.is_some() && self.dirs.contains(dir)
    }

    /// The names of the files reported changed since the last call.
    pub fn take_changed(&mut self) -> HashSet<OsString> {
        std::mem::take(&mut self.changed)
    }

    /// Waits for a change, the timeout, or shutdown (at once: its eventfd
    /// is polled beside inotify's).
    pub fn wait(&mut self, timeout: Duration, shutdown: &Shutdown) -> Wake {
        let deadline = Instant::now() + timeout;
        let stop_fd = shutdown.fd();
        loop {
            if shutdown.is_set() {
                return Wake::Shutdown;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Wake::Timeout;
            }
            let slice = left.min(Duration::from_millis(500));
            let Some(ino) = &mut self.inotify else {
                if shutdown.wait(slice) {
                    return Wake::Shutdown;
                }
                continue;
            };
            let ts = rustix::time::Timespec {
                tv_sec: slice.as_secs() as _,
                tv_nsec: slice.subsec_nanos() as _,
            };
            let mut fds = vec![rustix::event::PollFd::new(
                &*ino,
                rustix::event::PollFlags::IN,
            )];
            if let Some(fd) = &stop_fd {
                fds.push(rustix::event::PollFd::new(fd, rustix::event::PollFlags::IN));
            }
            match rustix::event::poll(&mut fds, Some(&ts)) {
                Ok(0) | Err(_) => continue,
                Ok(_) if fds.get(1).is_some_and(|f| !f.revents().is_empty()) => {
                    return Wake::Shutdown;
                }
                Ok(_) => {}
            }
            let mut woke = Wake::Timeout;
            let contents = EventMask::MODIFY | EventMask::CLOSE_WRITE;
            if let Ok(events) = ino.read_events(&mut self.buf) {
                for ev in events {
                    if let Some(n) = ev.name {
                        self.changed.insert(n.to_owned());
                    }
                    let this = if ev.mask.contains(EventMask::Q_OVERFLOW) {
                        self.overflows += 1;
                        Wake::Overflow
                    } else if contents.contains(ev.mask) {
                        Wake::Modified
                    } else {
                        Wake::Changed
                    };
                    woke = woke.max(this);
                }
            }
            if woke != Wake::Timeout {
                return woke;
            }
        }
    }
}

/// The directory of a glob up to its first wildcard: `/var/log/app/*.log`
/// → `/var/log/app`.
pub(super) fn static_prefix_dir(glob: &str) -> PathBuf {
    let mut dir = PathBuf::new();
    for comp in Path::new(glob).components() {
        let s = comp.as_os_str().to_string_lossy();
        if s.contains(['*', '?', '[']) {
            return dir;
        }
        dir.push(comp);
    }
    dir.parent().map(Path::to_path_buf).unwrap_or(dir)
}

#[cfg(test)]
mod tests {
    use super::static_prefix_dir;
    use std::path::Path;

    #[test]
    fn glob_directories() {
        assert_eq!(
            static_prefix_dir("/var/log/app/*.log"),
            Path::new("/var/log/app")
        );
        assert_eq!(static_prefix_dir("/var/log/*/x.log"), Path::new("/var/log"));
        assert_eq!(static_prefix_dir("/var/log/syslog"), Path::new("/var/log"));
    }
}
