//! Helpers shared by the daemon's integration tests: a temporary agent
//! (config, keys, log directory), the daemon process, and the spool's
//! records read back through the verifier.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use wormlog_spool::record::Payload;
use wormlog_spool::verify::verify_spool;

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_wormlog")
}

/// Runs `cmd` to its end with `stdin` on its standard input; its output.
pub fn run_with(cmd: &mut Command, stdin: Option<&[u8]>) -> std::process::Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut sin = child.stdin.take().unwrap();
    if let Some(data) = stdin {
        // The process may exit without reading (e.g. refused): a broken
        // pipe here is not the test's failure.
        let _ = sin.write_all(data);
    }
    drop(sin);
    child.wait_with_output().unwrap()
}

pub struct Env {
    pub dir: tempfile::TempDir,
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = wormlog_spool::worm::remove_dir_all_worm(self.dir.path());
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Rec {
    pub kind: String,
    pub source: String,
    pub body: Vec<u8>,
    pub flags: u8,
    pub detail: String,
    /// An entry's structured fields.
    pub fields: Vec<(String, Vec<u8>)>,
}

impl Rec {
    /// The value of an entry's first field named `key`.
    pub fn field(&self, key: &str) -> Option<&[u8]> {
        self.fields
            .iter()
            .find(|(n, _)| n == key)
            .map(|(_, v)| v.as_slice())
    }
}

impl Env {
    pub fn new(source_extra: &str) -> Env {
        Env::with_glob("*.log", source_extra)
    }

    pub fn with_glob(glob: &str, source_extra: &str) -> Env {
        Env::with_spool(glob, "", source_extra)
    }

    /// A daemon whose `[spool]` section gets `spool_extra` too.
    pub fn with_spool(glob: &str, spool_extra: &str, source_extra: &str) -> Env {
        Env::with_sources(spool_extra, |e| {
            format!(
                "[[sources.file]]\nname = \"app\"\npaths = [\"{}/{glob}\"]\n{}{source_extra}\n",
                e.logs().display(),
                if source_extra.contains("poll_interval") {
                    ""
                } else {
                    "poll_interval = \"20ms\"\n"
                }
            )
        })
    }

    /// A daemon with the sources `sources(env)` writes (TOML tables).
    pub fn with_sources(spool_extra: &str, sources: impl FnOnce(&Env) -> String) -> Env {
        let e = Env {
            dir: tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap(),
        };
        std::fs::create_dir_all(e.logs()).unwrap();
        let cfg = format!(
            "[agent]\nid = \"t\"\nspool_dir = \"{}\"\nkey_dir = \"{}\"\ncontrol_socket = \"{}\"\n\n[spool]\nappend_only = \"off\"\nmax_line_bytes = \"64KiB\"\n{spool_extra}\n\n{}",
            e.p("spool").display(),
            e.p("keys").display(),
            e.p("control.sock").display(),
            sources(&e),
        );
        std::fs::write(e.p("agent.toml"), cfg).unwrap();
        let out = Command::new(bin())
            .args(["keygen", "--key-dir"])
            .arg(e.p("keys"))
            .output()
            .unwrap();
        assert!(out.status.success());
        e
    }
    pub fn p(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
    pub fn logs(&self) -> PathBuf {
        self.p("logs")
    }
    pub fn log(&self, name: &str) -> PathBuf {
        self.logs().join(name)
    }
    /// Starts the daemon and waits until it runs its sources (so that a
    /// stop right after is a clean one).
    pub fn start(&self) -> Daemon {
        let before = self.stderr().matches("running with").count();
        let d = self.spawn();
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.stderr().matches("running with").count() == before {
            assert!(
                Instant::now() < deadline,
                "daemon did not start: {}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        d
    }

    pub fn spawn(&self) -> Daemon {
        self.spawn_env(&[])
    }

    /// The daemon with more environment variables.
    pub fn spawn_env(&self, vars: &[(&str, &std::ffi::OsStr)]) -> Daemon {
        Daemon(
            Command::new(bin())
                .envs(vars.iter().map(|(k, v)| (*k, *v)))
                .args(["run", "--config"])
                .arg(self.p("agent.toml"))
                .stdout(Stdio::null())
                .stderr(
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(self.p("daemon.err"))
                        .unwrap(),
                )
                .spawn()
                .unwrap(),
        )
    }
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.p("daemon.err")).unwrap_or_default()
    }
    /// Every record of the spool (which must verify).
    pub fn records(&self) -> Vec<Rec> {
        self.try_records().expect("a spool")
    }

    /// The records, or None while the spool has no segment yet.
    pub fn try_records(&self) -> Option<Vec<Rec>> {
        let mut v = Vec::new();
        let r = verify_spool(
            &self.p("spool"),
            None,
            &mut |_, rec, _| match &rec.payload {
                Payload::Entry(e) => v.push(Rec {
                    kind: "entry".into(),
                    source: e.source.into(),
                    body: e.body.to_vec(),
                    flags: e.flags,
                    detail: String::new(),
                    fields: e
                        .fields
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), v.to_vec()))
                        .collect(),
                }),
                Payload::Gap {
                    source,
                    detail,
                    reason,
                    ..
                } => v.push(Rec {
                    kind: format!("gap:{reason}"),
                    source: (*source).into(),
                    body: Vec::new(),
                    flags: 0,
                    detail: (*detail).into(),
                    fields: Vec::new(),
                }),
                Payload::Config { config_sha256, .. } => v.push(Rec {
                    kind: "config".into(),
                    source: String::new(),
                    body: Vec::new(),
                    flags: 0,
                    detail: wormlog_spool::hash::hex(config_sha256),
                    fields: Vec::new(),
                }),
                Payload::Alert { code, detail } => v.push(Rec {
                    kind: format!("alert:{code}"),
                    source: String::new(),
                    body: Vec::new(),
                    flags: 0,
                    detail: (*detail).into(),
                    fields: Vec::new(),
                }),
                _ => {}
            },
        );
        match r {
            Ok(r) => assert!(r.ok(), "spool does not verify: {:?}", r.failure),
            // Not created yet.
            Err(wormlog_spool::verify::VerifyError::NotASpool(_)) => return None,
            Err(wormlog_spool::verify::VerifyError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                return None;
            }
            Err(e) => panic!("{e}"),
        }
        Some(v)
    }
    /// `wormlog verify` on the spool must pass, with the host's first
    /// public key (`host.pub`).
    pub fn assert_verifies(&self) {
        let out = Command::new(bin())
            .args(["verify", "--spool"])
            .arg(self.p("spool"))
            .arg("--pubkey")
            .arg(self.p("keys/host.pub"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }

    /// The entry records (log lines, messages, events).
    pub fn entries(&self) -> Vec<Rec> {
        self.records()
            .into_iter()
            .filter(|r| r.kind == "entry")
            .collect()
    }
    pub fn bodies(&self) -> Vec<String> {
        self.records()
            .into_iter()
            .filter(|r| r.kind == "entry")
            .map(|r| String::from_utf8_lossy(&r.body).into_owned())
            .collect()
    }
    /// Waits (with a deadline) until the spool holds `n` entries.
    pub fn wait_entries(&self, n: usize) {
        self.wait_records("entry", n);
    }
    /// Waits (with a deadline) until the spool holds `n` records whose kind
    /// starts with `kind` (`"gap"` matches every gap).
    pub fn wait_records(&self, kind: &str, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let have = self
                .try_records()
                .map_or(0, |r| r.iter().filter(|r| r.kind.starts_with(kind)).count());
            if have >= n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out: {have} of {n} {kind} records; stderr:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// The inodes a gap record's detail names ("inode 1234"), whole numbers
/// only (inode 12 is not inode 123).
pub fn inodes_named(detail: &str) -> Vec<u64> {
    detail
        .split("inode ")
        .skip(1)
        .filter_map(|r| {
            let digits: String = r.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .collect()
}

/// Cuts a file to nothing, as `copytruncate` or `> file` does.
pub fn truncate(path: &Path) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(0)
        .unwrap();
}

/// A running daemon; killed if a test fails before stopping it.
pub struct Daemon(pub Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn stop(mut d: Daemon) {
    rustix::process::kill_process(
        rustix::process::Pid::from_child(&d.0),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    let status = d.0.wait().unwrap();
    assert!(status.success(), "daemon exit: {status}");
}

pub fn append(path: &Path, data: &[u8]) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(data).unwrap();
}

pub fn lines(prefix: &str, range: std::ops::Range<u32>) -> String {
    range.map(|i| format!("{prefix} {i}\n")).collect()
}

pub fn expect_lines(prefix: &str, range: std::ops::Range<u32>) -> Vec<String> {
    range.map(|i| format!("{prefix} {i}")).collect()
}

/// Peak resident memory of a process, from /proc (kB).
pub fn vm_hwm_kb(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap()
}
