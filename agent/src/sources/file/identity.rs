//! Opening a log file safely and telling files apart.
//!
//! A file is device + inode, checked by a fingerprint of its first bytes
//! (up to 64): inode numbers are reused after a delete, and the fingerprint
//! tells the new file from the old one. The fingerprint says how many bytes
//! it covers (its low 8 bits), so a file that was short when last recorded
//! is checked on exactly the bytes it had.

use rustix::fs::{Mode, OFlags};
use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;

/// Bytes the fingerprint covers.
pub const FINGERPRINT_BYTES: usize = 64;

/// Why a path is not read.
#[derive(Debug)]
pub enum Refused {
    Symlink,
    NotRegular(&'static str),
    Io(io::Error),
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Symlink => f.write_str(
                "is a symbolic link; links are not followed (name the file it points to in `paths`)",
            ),
            Refused::NotRegular(kind) => write!(f, "is a {kind}, not a regular file; not read"),
            Refused::Io(e) => write!(f, "cannot be opened: {e}"),
        }
    }
}

/// Opens a regular file for reading without following a symbolic link and
/// without blocking on a FIFO; anything else is refused.
pub fn open_regular(path: &Path) -> Result<File, Refused> {
    let fd = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY,
        Mode::empty(),
    )
    .map_err(|e| {
        if e == rustix::io::Errno::LOOP {
            Refused::Symlink
        } else {
            Refused::Io(e.into())
        }
    })?;
    let f = File::from(fd);
    let ft = f.metadata().map_err(Refused::Io)?.file_type();
    use std::os::unix::fs::FileTypeExt;
    if ft.is_file() {
        Ok(f)
    } else if ft.is_fifo() {
        Err(Refused::NotRegular("FIFO"))
    } else if ft.is_dir() {
        Err(Refused::NotRegular("directory"))
    } else if ft.is_char_device() || ft.is_block_device() {
        Err(Refused::NotRegular("device"))
    } else if ft.is_socket() {
        Err(Refused::NotRegular("socket"))
    } else {
        Err(Refused::NotRegular("special file"))
    }
}

/// The fingerprint of an open file over its first `min(64, size)` bytes:
/// 56 bits of their SHA-256, then the number of bytes covered. An empty
/// file's fingerprint is 0.
pub fn fingerprint(f: &File, size: u64) -> io::Result<u64> {
    let len = size.min(FINGERPRINT_BYTES as u64) as usize;
    let mut buf = [0u8; FINGERPRINT_BYTES];
    let mut got = 0;
    while got < len {
        let n = f.read_at(&mut buf[got..len], got as u64)?;
        if n == 0 {
            break;
        }
        got += n;
    }
    Ok(fingerprint_of(&buf[..got]))
}

fn fingerprint_of(prefix: &[u8]) -> u64 {
    if prefix.is_empty() {
        return 0;
    }
    let h = wormlog_spool::hash::sha256(prefix);
    (u64::from_le_bytes(h[..8].try_into().expect("8 bytes")) << 8) | prefix.len() as u64
}

/// How many bytes a fingerprint covers.
pub fn covered(fp: u64) -> u64 {
    fp & 0xff
}

/// Whether an open file starts with the bytes a fingerprint was taken of.
pub fn matches(f: &File, fp: u64) -> io::Result<bool> {
    let len = covered(fp);
    let size = f.metadata()?.len();
    if size < len {
        return Ok(false);
    }
    Ok(fingerprint(f, len)? == fp)
}

/// (device, inode, size) of an open file.
pub fn dev_ino_size(f: &File) -> io::Result<(u64, u64, u64)> {
    let m = f.metadata()?;
    Ok((m.dev(), m.ino(), m.len()))
}
