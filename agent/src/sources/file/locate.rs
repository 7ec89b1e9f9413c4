//! Finding a known file by its identity when its name no longer matches
//! the globs (renamed away while the agent was not running).

use super::tailer::Tailer;
use super::watch::static_prefix_dir;
use std::collections::{BTreeSet, HashMap};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

/// Every regular file in the directories the globs look in (their fixed
/// part, and the directories of the files open now), by (device, inode).
/// Rotation moves a file within its directory (`app.log` → `app.log.1`,
/// `app.log-20261204`), which is where this looks; a file moved elsewhere
/// is not found.
pub fn in_directories(
    globs: &[String],
    open: &HashMap<(u64, u64), Tailer>,
) -> HashMap<(u64, u64), PathBuf> {
    let mut dirs: BTreeSet<PathBuf> = globs.iter().map(|g| static_prefix_dir(g)).collect();
    for t in open.values() {
        if let Some(d) = t.path.parent() {
            dirs.insert(d.to_owned());
        }
    }
    let mut found = HashMap::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            // lstat: a symbolic link is not the file.
            if let Ok(m) = std::fs::symlink_metadata(&path)
                && m.file_type().is_file()
            {
                found.entry((m.dev(), m.ino())).or_insert(path);
            }
        }
    }
    found
}
