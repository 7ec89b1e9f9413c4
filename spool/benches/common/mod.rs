//! Helpers shared by the spool's benchmarks.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use wormlog_spool::SpoolOptions;
use wormlog_spool::clock::wall_ns;
use wormlog_spool::keys::HostKey;
use wormlog_spool::record::AppendOnly;

pub fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// `WORMLOG_BENCH_DIR`, or `target/<default>` (it must be on the disk
/// under test).
pub fn base_dir(default: &str) -> PathBuf {
    std::env::var("WORMLOG_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../target")
                .join(default)
        })
}

pub fn fresh(dir: &Path) {
    let _ = wormlog_spool::worm::remove_dir_all_worm(dir);
    std::fs::create_dir_all(dir).unwrap();
}

/// A 200-byte syslog-like line, varying.
pub fn line(i: u64, buf: &mut Vec<u8>) {
    use std::io::Write;
    buf.clear();
    write!(
        buf,
        "<134>Nov 26 07:00:00 web-01 app[4242]: request id={i:012} GET /api/v1/patients/{:08} 200 ",
        i % 99_991
    )
    .unwrap();
    while buf.len() < 200 {
        buf.push(b'x');
    }
}

pub fn options(dir: &Path, commit_bytes: usize, append_only: AppendOnly) -> SpoolOptions {
    let mut o = SpoolOptions::new(dir.join("spool"), "bench");
    o.append_only = append_only;
    o.commit_bytes = commit_bytes;
    o
}

pub fn new_key(dir: &Path) -> HostKey {
    HostKey::generate(&dir.join("keys"), wall_ns()).unwrap();
    HostKey::load(&dir.join("keys")).unwrap()
}
