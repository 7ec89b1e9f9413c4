//! The write-once protection: `FS_APPEND_FL` and `FS_IMMUTABLE_FL`
//! (`chattr +a` / `chattr +i`) through the `FS_IOC_{GET,SET}FLAGS` ioctls.
//!
//! Setting or clearing either flag needs `CAP_LINUX_IMMUTABLE` and a file
//! system that supports them (ext4, xfs, btrfs, …; not tmpfs or overlayfs).

use rustix::fs::{IFlags, ioctl_getflags, ioctl_setflags};
use std::fs::File;
use std::io;
use std::path::Path;

/// Marks an open file append-only.
pub fn set_append_only(f: &File) -> io::Result<()> {
    let flags = ioctl_getflags(f)?;
    ioctl_setflags(f, (flags - IFlags::IMMUTABLE) | IFlags::APPEND)?;
    Ok(())
}

/// Marks an open file immutable (and no longer merely append-only).
pub fn set_immutable(f: &File) -> io::Result<()> {
    let flags = ioctl_getflags(f)?;
    ioctl_setflags(f, (flags - IFlags::APPEND) | IFlags::IMMUTABLE)?;
    Ok(())
}

/// The (append-only, immutable) flags of a file.
pub fn flags_of(path: &Path) -> io::Result<(bool, bool)> {
    let f = File::open(path)?;
    let flags = ioctl_getflags(&f)?;
    Ok((
        flags.contains(IFlags::APPEND),
        flags.contains(IFlags::IMMUTABLE),
    ))
}

/// Clears both flags (for pruning, and for tests that must delete a spool).
/// Only regular files carry them here; anything else is left alone (and a
/// FIFO is never opened, which would block).
pub fn clear_flags(path: &Path) -> io::Result<()> {
    if !std::fs::symlink_metadata(path)?.file_type().is_file() {
        return Ok(());
    }
    let f = File::open(path)?;
    let flags = ioctl_getflags(&f)?;
    if flags.intersects(IFlags::APPEND | IFlags::IMMUTABLE) {
        ioctl_setflags(&f, flags - IFlags::APPEND - IFlags::IMMUTABLE)?;
    }
    Ok(())
}

/// Clears the flags of every file in a directory, then removes it: spools
/// made by tests cannot otherwise be deleted.
pub fn remove_dir_all_worm(dir: &Path) -> io::Result<()> {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_dir_all_worm(&p)?;
            } else {
                let _ = clear_flags(&p);
            }
        }
    }
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}
