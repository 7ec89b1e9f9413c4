//! Helpers shared by the spool's integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;
use wormlog_spool::keys::HostKey;
use wormlog_spool::record::AppendOnly;
use wormlog_spool::verify::{Report, verify_spool};
use wormlog_spool::{Position, Spool, SpoolOptions};

/// A temporary directory whose write-once flags are cleared before it is
/// removed (an immutable segment cannot otherwise be deleted, even by root).
pub struct TempDir(tempfile::TempDir);

impl TempDir {
    pub fn new() -> Self {
        // Under target/ (ext4 here), not /tmp, which may be tmpfs elsewhere.
        let base = Path::new(env!("CARGO_TARGET_TMPDIR"));
        TempDir(tempfile::tempdir_in(base).unwrap())
    }
    pub fn path(&self) -> &Path {
        self.0.path()
    }
    pub fn spool(&self) -> PathBuf {
        self.0.path().join("spool")
    }
    pub fn keys(&self) -> PathBuf {
        self.0.path().join("keys")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = wormlog_spool::worm::remove_dir_all_worm(self.0.path());
    }
}

/// Options for small, fast test spools: no background timing surprises.
pub fn options(dir: &Path) -> SpoolOptions {
    let mut o = SpoolOptions::new(dir, "test-agent");
    o.append_only = AppendOnly::Off;
    o.commit_bytes = 1 << 30;
    o.checkpoint_bytes = 1 << 30;
    o.segment_max_bytes = 1 << 30;
    o.checkpoint_interval = Duration::from_secs(3600);
    o.heartbeat_interval = Duration::from_secs(7200);
    o.epoch_duration = Duration::from_secs(10 * 365 * 86400);
    o.segment_max_age = Duration::from_secs(10 * 365 * 86400);
    o
}

pub fn keygen(t: &TempDir) -> [u8; 32] {
    HostKey::generate(&t.keys(), wormlog_spool::clock::wall_ns()).unwrap()
}

pub fn open(t: &TempDir, o: SpoolOptions) -> Spool {
    let key = HostKey::load(&t.keys()).unwrap();
    Spool::open(o, key).unwrap().0
}

pub fn entry(s: &mut Spool, source: &str, n: u64, body: &[u8]) -> u64 {
    s.append_entry(
        source,
        &Position::Counter(n),
        0,
        &[],
        body,
        wormlog_spool::clock::wall_ns(),
    )
    .unwrap()
}

pub fn verify(dir: &Path, pk: Option<[u8; 32]>) -> Report {
    verify_spool(dir, pk, &mut |_, _, _| {}).unwrap()
}

/// The entry bodies of a spool, in order, with their sources.
pub fn bodies(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let r = verify_spool(dir, None, &mut |_, rec, _| {
        if let wormlog_spool::record::Payload::Entry(e) = &rec.payload {
            out.push((e.source.to_owned(), e.body.to_vec()));
        }
    })
    .unwrap();
    assert!(r.ok(), "spool does not verify: {:?}", r.failure);
    out
}

/// Copies a directory's regular files (a spool) to another directory.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// The segment files of a spool, in order.
pub fn segments(dir: &Path) -> Vec<PathBuf> {
    wormlog_spool::segment::list_segments(dir)
        .unwrap()
        .0
        .into_iter()
        .map(|(_, p)| p)
        .collect()
}

/// Tears the last record of the spool in `dir`, as a crash in the middle
/// of a write would: cuts `bytes` off its last segment.
pub fn tear_last_segment(dir: &Path, bytes: u64) {
    let seg = segments(dir).pop().unwrap();
    let len = std::fs::metadata(&seg).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
    f.set_len(len - bytes).unwrap();
}

/// The independent Python verifier's verdict (tests/pyverify), as
/// (ok, failure segment/offset/seq). It is required: a missing Python or
/// `cryptography` package fails the test rather than skipping it.
pub fn pyverify(dir: &Path, pk: Option<[u8; 32]>) -> serde_json::Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/pyverify/wormlog_verify.py");
    let python = std::env::var("WORMLOG_PYTHON").unwrap_or_else(|_| "python3".into());
    let mut cmd = std::process::Command::new(&python);
    cmd.arg(&script).arg("--spool").arg(dir).arg("--json");
    if let Some(k) = pk {
        cmd.arg("--pubkey")
            .arg(wormlog_spool::keys::format_pubkey(&k));
    }
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("cannot run {python} (needed for the independent verifier): {e}")
    });
    let code = out.status.code().unwrap_or(-1);
    assert!(
        code == 0 || code == 1,
        "python verifier failed to run (exit {code}): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "python verifier printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    assert_eq!(
        v["ok"].as_bool(),
        Some(code == 0),
        "exit code and verdict disagree: {v}"
    );
    v
}

/// Asserts that the Rust and the Python verifier agree on a spool.
pub fn assert_verifiers_agree(dir: &Path, pk: Option<[u8; 32]>, r: &Report) {
    let py = pyverify(dir, pk);
    assert_eq!(
        py["ok"].as_bool(),
        Some(r.ok()),
        "verdicts differ: rust {:?}, python {py}",
        r.failure
    );
    match &r.failure {
        None => {
            assert!(py["failure"].is_null());
            assert_eq!(
                py["records"].as_u64(),
                Some(r.records),
                "record counts differ"
            );
            assert_eq!(py["checkpoints"].as_u64(), Some(r.checkpoints));
            assert_eq!(py["epoch_transitions"].as_u64(), Some(r.epoch_transitions));
            assert_eq!(py["unsigned_tail"].as_u64(), Some(r.unsigned_tail));
            assert_eq!(
                py["root"].as_str(),
                Some(wormlog_spool::hash::hex(&r.root).as_str())
            );
            assert_eq!(
                py["recoveries"].as_array().map(Vec::len),
                Some(r.recoveries.len()),
                "recoveries differ: {py}"
            );
        }
        Some(f) => {
            let pf = &py["failure"];
            assert_eq!(
                (
                    pf["segment"].as_u64(),
                    pf["offset"].as_u64(),
                    pf["seq"].as_u64()
                ),
                (Some(f.segment), Some(f.offset), Some(f.seq)),
                "failure locations differ: rust {f:?} / python {pf}"
            );
        }
    }
}

/// The collector key the tests sign receipts with.
pub fn test_collector() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[7u8; 32])
}

/// Makes everything durable and returns the tree size and root of the
/// newest durable checkpoint, as the forwarder would send it.
pub fn durable_checkpoint(s: &mut Spool, dir: &Path) -> (u64, wormlog_spool::hash::Hash) {
    s.sync().unwrap();
    let mut r = wormlog_spool::reader::RangeReader::new(dir);
    let mut last = None;
    loop {
        let b = r.read(s.durable_seq().get(), 1000, 1 << 20).unwrap();
        if b.span.records == 0 {
            break;
        }
        last = b.span.checkpoints.last().copied().or(last);
    }
    last.expect("a durable checkpoint")
}

/// The `collector_ts` of the receipts the tests make.
pub const RECEIPT_TS: i64 = 1_700_000_000_000_000_000;

/// Makes everything durable and appends a receipt for the newest durable
/// checkpoint, as the forwarder would; returns its tree size.
pub fn receipt_for(s: &mut Spool, dir: &Path) -> u64 {
    let (size, root) = durable_checkpoint(s, dir);
    let ts = RECEIPT_TS;
    let receipt = wormlog_spool::chain::Receipt::sign(
        &test_collector(),
        "collector-1",
        "test-agent",
        size,
        &root,
        ts,
    );
    s.append_receipt(&receipt).unwrap();
    size
}
