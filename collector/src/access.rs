//! What `check-config` (and `serve`, before it listens) checks beyond the
//! file's syntax: every file and directory the configuration names can be
//! opened the way the service will use it, by this process — under
//! systemd's `ExecStartPre=` that is the service's own user, so a key the
//! service cannot read fails here, with its name, instead of failing every
//! restart.

use crate::config::Config;
use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error("{path}: cannot {what}: {source}")]
    Io {
        path: String,
        what: &'static str,
        source: io::Error,
    },
    #[error("{0}")]
    Tls(String),
}

fn io_err<'a>(path: &'a Path, what: &'static str) -> impl FnOnce(io::Error) -> AccessError + 'a {
    move |source| AccessError::Io {
        path: path.display().to_string(),
        what,
        source,
    }
}

/// Opens everything `c` names.
pub fn check(c: &Config) -> Result<(), AccessError> {
    if let Some(t) = &c.tls {
        for p in [Some(&t.cert), Some(&t.key), t.client_ca.as_ref()]
            .into_iter()
            .flatten()
        {
            File::open(p).map_err(io_err(p, "read it"))?;
        }
        crate::server::tls_config(t, c.token_users())
            .map_err(|e| AccessError::Tls(format!("{e:#}")))?;
    }
    writable_dir(&c.store_dir.join("agents"))?;
    writable_dir(&c.key_dir)?;
    // The keys already there must be readable (and the receipt key and the
    // own log's key are replaced in place, so writable too).
    for e in std::fs::read_dir(&c.key_dir).map_err(io_err(&c.key_dir, "list it"))? {
        let p = e.map_err(io_err(&c.key_dir, "list it"))?.path();
        if p.is_file() {
            File::open(&p).map_err(io_err(&p, "read it"))?;
        }
    }
    let log = c.store_dir.join("log");
    if log.exists() {
        writable_dir(&log)?;
    }
    Ok(())
}

/// Creates `dir` if needed and proves a file can be made in it.
fn writable_dir(dir: &Path) -> Result<(), AccessError> {
    std::fs::create_dir_all(dir).map_err(io_err(dir, "create it"))?;
    let probe = dir.join(format!(".check-config-{}", std::process::id()));
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .map_err(io_err(dir, "write in it"))?;
    std::fs::remove_file(&probe).map_err(io_err(&probe, "remove it"))?;
    Ok(())
}
