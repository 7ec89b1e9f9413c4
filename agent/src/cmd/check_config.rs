//! `wormlog check-config --config PATH`: the file parses and its values
//! hold together (file:line:column otherwise), and every file and
//! directory it names can be opened the way the daemon will open it — by
//! this process, so that under systemd (`ExecStartPre=`, same user, same
//! groups and capabilities as `wormlog run`) a key the agent's user cannot
//! read is found before the start, not by a service failing every few
//! seconds. Exit 0 when all holds, 2 otherwise, one line per problem.

use crate::config::Loaded;
use rustix::fs::{Access, AtFlags, CWD};
use std::path::Path;
use std::process::ExitCode;

pub fn run(path: &Path) -> anyhow::Result<ExitCode> {
    match crate::config::load(path) {
        Ok(c) => {
            let problems = access_problems(&c);
            if !problems.is_empty() {
                for p in &problems {
                    eprintln!("{}: {p}", path.display());
                }
                eprintln!(
                    "{}: {} (checked as uid {}, gid {}: the user the daemon runs as)",
                    path.display(),
                    if problems.len() == 1 {
                        "1 file cannot be used".to_owned()
                    } else {
                        format!("{} files cannot be used", problems.len())
                    },
                    rustix::process::getuid().as_raw(),
                    rustix::process::getgid().as_raw()
                );
                return Ok(ExitCode::from(2));
            }
            println!(
                "{}: ok (agent {}, spool {})",
                path.display(),
                c.agent_id(),
                c.config.agent.spool_dir.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("{e}");
            Ok(ExitCode::from(2))
        }
    }
}

/// Every file and directory the configuration names that the daemon could
/// not use, each as "what path: why".
pub fn access_problems(c: &Loaded) -> Vec<String> {
    let cfg = &c.config;
    let mut out = Vec::new();
    // The key directory: the key is read at the start and replaced (a new
    // file renamed over it) at every epoch.
    let keys = &cfg.agent.key_dir;
    match writable_dir(keys) {
        Err(_) if !keys.exists() => out.push(format!(
            "[agent] key_dir {0}: does not exist: create the host key with `wormlog keygen --key-dir {0}`",
            keys.display()
        )),
        Err(e) => out.push(format!("[agent] key_dir {}: {e}", keys.display())),
        Ok(()) => {
            let key = keys.join(wormlog_spool::keys::KEY_FILE);
            match std::fs::File::open(&key) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => out.push(format!(
                    "[agent] key_dir: {} does not exist: create the host key with `wormlog keygen --key-dir {}`",
                    key.display(),
                    keys.display()
                )),
                Err(e) => out.push(format!("[agent] key_dir: {}: cannot read: {e}", key.display())),
            }
        }
    }
    // The spool directory, or the directory it will be created in.
    let spool = &cfg.agent.spool_dir;
    match nearest_existing(spool) {
        Some(dir) if dir == spool.as_path() => {
            if let Err(e) = writable_dir(dir) {
                out.push(format!("[agent] spool_dir {}: {e}", spool.display()));
            }
        }
        Some(parent) => {
            if let Err(e) = writable_dir(parent) {
                out.push(format!(
                    "[agent] spool_dir {}: does not exist and cannot be created in {}: {e}",
                    spool.display(),
                    parent.display()
                ));
            }
        }
        None => out.push(format!(
            "[agent] spool_dir {}: no part of the path exists",
            spool.display()
        )),
    }
    if let Some(f) = &cfg.forward {
        for (key, p) in [
            ("ca_file", &f.ca_file),
            ("cert_file", &f.cert_file),
            ("key_file", &f.key_file),
            ("token_file", &f.token_file),
        ] {
            if let Some(p) = p {
                readable("[forward]", key, p, &mut out);
            }
        }
    }
    for s in &cfg.sources.syslog {
        for (key, p) in [
            ("tls_cert", &s.tls_cert),
            ("tls_key", &s.tls_key),
            ("tls_client_ca", &s.tls_client_ca),
        ] {
            if let Some(p) = p {
                readable(&format!("[[sources.syslog]] {}", s.name), key, p, &mut out);
            }
        }
    }
    out
}

/// A file the daemon reads: opened here for reading, as the daemon will.
fn readable(section: &str, key: &str, p: &Path, out: &mut Vec<String>) {
    if let Err(e) = std::fs::File::open(p) {
        out.push(format!("{section} {key} {}: cannot read: {e}", p.display()));
    }
}

/// A directory the daemon creates and replaces files in: it must be a
/// directory this process may search and write (with its effective ids
/// and capabilities).
fn writable_dir(p: &Path) -> Result<(), String> {
    let m = std::fs::metadata(p).map_err(|e| e.to_string())?;
    if !m.is_dir() {
        return Err("not a directory".into());
    }
    rustix::fs::accessat(
        CWD,
        p,
        Access::READ_OK | Access::WRITE_OK | Access::EXEC_OK,
        AtFlags::EACCESS,
    )
    .map_err(|e| format!("cannot write in it: {}", std::io::Error::from(e)))
}

/// `p` itself if it exists, else its nearest ancestor that does.
fn nearest_existing(p: &Path) -> Option<&Path> {
    p.ancestors()
        .find(|a| !a.as_os_str().is_empty() && a.exists())
}
