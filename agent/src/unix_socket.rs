//! Where the agent binds its Unix sockets (the control socket, syslog's
//! `unix:`): a socket left by an earlier run is replaced, anything else at
//! the path is refused, and so is a directory that others may write to
//! without the sticky bit — there the socket could be swapped for a
//! symbolic link between `bind` and the `chmod` that follows it.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;

pub fn prepare(path: &Path) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mode = std::fs::metadata(dir)?.permissions().mode();
    if mode & 0o022 != 0 && mode & 0o1000 == 0 {
        return Err(std::io::Error::other(format!(
            "{} may be written by others (mode {:o}) and has no sticky bit: choose a directory only the agent writes, such as /run/wormlog",
            dir.display(),
            mode & 0o7777
        )));
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => std::fs::remove_file(path),
        Ok(_) => Err(std::io::Error::other(format!(
            "{} exists and is not a socket",
            path.display()
        ))),
        Err(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_safe_directories_and_stale_sockets_pass() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path();
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let sock = dir.join("s.sock");
        assert!(prepare(&sock).is_ok(), "nothing there yet");
        let _l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        assert!(
            prepare(&sock).is_ok() && !sock.exists(),
            "a stale socket is removed"
        );
        std::fs::write(&sock, b"not a socket").unwrap();
        assert!(prepare(&sock).is_err(), "a file is not replaced");
        std::fs::remove_file(&sock).unwrap();
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(prepare(&sock).is_err(), "world-writable without sticky bit");
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o1777)).unwrap();
        assert!(prepare(&sock).is_ok(), "sticky like /tmp");
    }
}
