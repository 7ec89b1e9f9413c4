//! What the integration tests that run the real binaries share: temporary
//! directories, child processes, waiting with a deadline, the agent's keys,
//! certificates (made here with rcgen) and the configuration files, the test
//! log lines, and reading and verifying what the collector stored.
//!
//! Only what several test files use lives here; a file's own helpers stay
//! in that file. Not every file uses every helper.

#![allow(dead_code)]

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn collector_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_wormlog-collector"))
}

/// The agent binary, built beside the collector by `cargo test --workspace`.
pub fn agent_bin() -> PathBuf {
    let p = collector_bin().with_file_name("wormlog");
    assert!(
        p.exists(),
        "{} is missing: run the tests with `cargo test --workspace`",
        p.display()
    );
    p
}

/// A temporary directory under the target directory, removed (append-only
/// and immutable flags included) when dropped.
#[derive(Debug)]
pub struct Dir(tempfile::TempDir);

impl Dir {
    pub fn new() -> Dir {
        Dir(tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap())
    }

    pub fn p(&self, rel: &str) -> PathBuf {
        self.0.path().join(rel)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = wormlog_spool::worm::remove_dir_all_worm(self.0.path());
    }
}

/// A child process whose standard error goes to `log`; killed (SIGKILL)
/// when dropped.
#[derive(Debug)]
pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    /// What the process wrote to standard error so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stops the process with SIGTERM, waits for it and returns its log.
    pub fn stop(mut self) -> String {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.child.try_wait().unwrap().is_some() {
                return self.log();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("process did not stop: {}", self.log());
    }
}

pub fn spawn(bin: &Path, args: &[&str], log: PathBuf) -> Proc {
    let f = std::fs::File::create(&log).unwrap();
    let child = Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(f)
        .spawn()
        .unwrap();
    Proc { child, log }
}

/// Polls `f` until it holds; panics with `log()` after `timeout`.
pub fn wait_for(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> bool,
    log: impl Fn() -> String,
) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}\n{}", log());
}

/// One test's directory, the agent's keys and the collector's port.
#[derive(Debug)]
pub struct Setup {
    pub d: Dir,
    /// The collector's port, once it listens (a new one at every start).
    pub port: u16,
    /// The agent's first public key, as `wormlog keygen` printed it.
    pub pubkey: String,
    /// How many times the collector was started.
    collector_starts: u32,
}

impl Setup {
    /// A new directory with the agent's keys (`keys/`).
    pub fn new() -> Setup {
        let d = Dir::new();
        let out = Command::new(agent_bin())
            .args(["keygen", "--key-dir"])
            .arg(d.p("keys"))
            .output()
            .unwrap();
        assert!(out.status.success());
        let pubkey = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        Setup {
            d,
            port: 0,
            pubkey,
            collector_starts: 0,
        }
    }

    /// Writes `collector.toml`: a store in `store/`, a port the kernel
    /// chooses, agent web-01 registered; `tls` is the TLS settings (empty:
    /// plain HTTP on loopback).
    pub fn write_collector_config(&self, tls: &str) {
        std::fs::write(
            self.d.p("collector.toml"),
            format!(
                r#"[collector]
listen = "127.0.0.1:0"
store_dir = "{}"
id = "test-collector"
{tls}
[[agents]]
id = "web-01"
pubkey = "{}"
"#,
                self.d.p("store").display(),
                self.pubkey,
            ),
        )
        .unwrap();
    }

    /// Writes `<name>.toml`: agent web-01 tails `logs/*.log` into `spool/`
    /// and forwards with `forward`, the body of its `[forward]` table.
    pub fn write_agent_config(&self, name: &str, forward: &str) -> PathBuf {
        self.write_agent_config_with(name, "", forward)
    }

    /// The same, with more `[spool]` settings.
    pub fn write_agent_config_with(&self, name: &str, spool: &str, forward: &str) -> PathBuf {
        let p = |x: &str| self.d.p(x).display().to_string();
        let path = self.d.p(&format!("{name}.toml"));
        std::fs::write(
            &path,
            format!(
                r#"[agent]
id = "web-01"
spool_dir = "{}"
key_dir = "{}"
control_socket = "{}/control.sock"

[spool]
append_only = "try"
checkpoint_interval = "200ms"
heartbeat_interval = "2s"
{spool}
[[sources.file]]
name = "app"
paths = ["{}"]

[forward]
{forward}"#,
                p("spool"),
                p("keys"),
                self.d.0.path().display(),
                p("logs/*.log"),
            ),
        )
        .unwrap();
        path
    }

    /// Runs the agent with the config `cfg`, its log in `<log>.log`.
    pub fn start_agent(&self, cfg: &Path, log: &str) -> Proc {
        spawn(
            &agent_bin(),
            &["run", "--config", cfg.to_str().unwrap()],
            self.d.p(&format!("{log}.log")),
        )
    }
}

/// Starts the collector (listening on a port the kernel chose) and notes
/// the port it printed. Its log is `collector.log`, then `collector-2.log`
/// and so on when it is started again.
pub fn start_collector(s: &mut Setup) -> Proc {
    s.collector_starts += 1;
    let log = match s.collector_starts {
        1 => "collector.log".to_owned(),
        n => format!("collector-{n}.log"),
    };
    let collector = spawn(
        &collector_bin(),
        &[
            "serve",
            "--config",
            s.d.p("collector.toml").to_str().unwrap(),
        ],
        s.d.p(&log),
    );
    let mut port = None;
    wait_for(
        "the collector to listen",
        Duration::from_secs(20),
        || {
            port = collector
                .log()
                .split("listening on 127.0.0.1:")
                .nth(1)
                .and_then(|r| r.split_whitespace().next()?.parse().ok());
            port.is_some()
        },
        || collector.log(),
    );
    s.port = port.unwrap();
    collector
}

/// A CA and the certificates it issues.
struct Pki {
    ca_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Pki {
    fn new(name: &str) -> Pki {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let cert = params.self_signed(&key).unwrap();
        Pki {
            ca_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// Writes `<name>.pem` and `<name>-key.pem` for a certificate valid for
    /// the DNS name `dns` only; `expired` makes it end in 2021.
    fn issue(&self, dir: &Path, name: &str, dns: &str, expired: bool) -> (PathBuf, PathBuf) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec![dns.to_owned()]).unwrap();
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let c = dir.join(format!("{name}.pem"));
        let k = dir.join(format!("{name}-key.pem"));
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k)
    }
}

/// Keys, certificates in `pki/` and a collector config (mutual TLS, web-01
/// registered): a CA (`ca`) that issued the collector's certificate for
/// `localhost` (`collector`), the agents' for their ids (`web-01`, `web-02`)
/// an expired one for web-01 (`expired`) and a user's for
/// `alice.auditors` (`alice`); another CA (`other-ca`) that
/// issued `rogue` for web-01.
pub fn mtls_setup() -> Setup {
    let s = Setup::new();
    let d = &s.d;
    std::fs::create_dir_all(d.p("pki")).unwrap();
    let pki = Pki::new("wormlog test CA");
    std::fs::write(d.p("pki/ca.pem"), &pki.ca_pem).unwrap();
    pki.issue(&d.p("pki"), "collector", "localhost", false);
    pki.issue(&d.p("pki"), "web-01", "web-01", false);
    pki.issue(&d.p("pki"), "web-02", "web-02", false);
    pki.issue(&d.p("pki"), "expired", "web-01", true);
    pki.issue(&d.p("pki"), "alice", "alice.auditors", false);
    let other = Pki::new("another CA");
    std::fs::write(d.p("pki/other-ca.pem"), &other.ca_pem).unwrap();
    other.issue(&d.p("pki"), "rogue", "web-01", false);
    let p = |x: &str| d.p(x).display().to_string();
    s.write_collector_config(&format!(
        "tls_cert = \"{}\"\ntls_key = \"{}\"\nclient_ca = \"{}\"\n",
        p("pki/collector.pem"),
        p("pki/collector-key.pem"),
        p("pki/ca.pem"),
    ));
    s
}

/// An agent config `<name>.toml` that forwards to `https://<host>:<port>`
/// with the client certificate `cert` (None: none) and trusts the CA `ca`
/// (names in `pki/`, see [`mtls_setup`]).
pub fn mtls_agent_config(
    s: &Setup,
    name: &str,
    cert: Option<&str>,
    ca: &str,
    host: &str,
    port: u16,
) -> PathBuf {
    let p = |x: &str| s.d.p(x).display().to_string();
    let client = match cert {
        Some(c) => format!(
            "cert_file = \"{}\"\nkey_file = \"{}\"\n",
            p(&format!("pki/{c}.pem")),
            p(&format!("pki/{c}-key.pem"))
        ),
        None => String::new(),
    };
    s.write_agent_config(
        name,
        &format!(
            r#"url = "https://{host}:{port}"
ca_file = "{}"
{client}batch_records = 5000
backoff_min = "50ms"
backoff_max = "500ms"
timeout = "10s"
"#,
            p(&format!("pki/{ca}.pem")),
        ),
    )
}

/// The `i`-th test log line (of varying length).
pub fn line(i: usize) -> String {
    format!("line {i:07} payload {}", "x".repeat(i % 150))
}

/// Appends lines `from..from + n` to the log file `path`.
pub fn write_lines(path: &Path, from: usize, n: usize) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    let mut buf = Vec::new();
    for i in from..from + n {
        writeln!(buf, "{}", line(i)).unwrap();
    }
    f.write_all(&buf).unwrap();
}

/// `GET /metrics` of a collector serving plain HTTP on loopback `port`:
/// the Prometheus text.
pub fn metrics_text(port: u16) -> String {
    use std::io::Read;
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    c.read_to_string(&mut out).unwrap();
    out
}

/// The JSON lines `cmd` prints; it must succeed.
pub fn json_lines(cmd: &mut Command) -> Vec<serde_json::Value> {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The records of the spool (or the collector's own log) in `dir`, as
/// `wormlog cat --json` prints them.
pub fn spool_records(dir: &Path) -> Vec<serde_json::Value> {
    json_lines(
        Command::new(agent_bin())
            .args(["cat", "--json", "--spool"])
            .arg(dir),
    )
}

/// The entry bodies of agent web-01 in the store, verified.
pub fn stored_lines(store: &Path) -> Vec<String> {
    json_lines(
        Command::new(collector_bin())
            .args(["cat", "--agent", "web-01", "--json", "--store"])
            .arg(store),
    )
    .into_iter()
    .filter(|v| v["kind"] == "entry")
    .map(|v| v["body"].as_str().unwrap().to_owned())
    .collect()
}

/// The sequence number after the last whole record in web-01's store
/// segments (0 before the first batch). Read from the segments, not from
/// `state.json`: that cache trails a busy agent by up to 10 s.
pub fn next_seq_in_store(store: &Path) -> u64 {
    // The spool's own reader: a store is the agent's segments, byte for byte.
    let mut reader = wormlog_spool::reader::RangeReader::new(store.join("agents/web-01"));
    let mut next = 0;
    while let Ok(b) = reader.read(u64::MAX / 2, 1 << 40, 64 << 20) {
        if b.span.records == 0 {
            break;
        }
        next = b.span.end_seq();
    }
    next
}

/// `wormlog-collector verify --json` of the store, which must pass: one
/// report per chain.
pub fn verify_store(store: &Path) -> serde_json::Value {
    let v = Command::new(collector_bin())
        .args(["verify", "--json", "--store"])
        .arg(store)
        .output()
        .unwrap();
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stdout));
    serde_json::from_slice(&v.stdout).unwrap()
}

/// `wormlog verify` of the agent's spool, which must pass.
pub fn verify_spool(s: &Setup) {
    let v = Command::new(agent_bin())
        .args(["verify", "--pubkey", &s.pubkey, "--spool"])
        .arg(s.d.p("spool"))
        .output()
        .unwrap();
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stdout));
}

/// A token and its `token_sha256` line, made by the real command.
pub fn new_token() -> (String, String) {
    let out = Command::new(collector_bin()).arg("token").output().unwrap();
    assert!(out.status.success());
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let err = String::from_utf8(out.stderr).unwrap();
    let line = err
        .lines()
        .find(|l| l.starts_with("token_sha256 = "))
        .expect("the hash line")
        .to_owned();
    assert!(token.starts_with("wlt_"), "{token}");
    assert!(
        !err.contains(&token),
        "the hash line must not hold the token"
    );
    (token, line)
}

/// `wormlog verify --bundle` with the agent's first key and, when given,
/// the collector's receipt key: exit code, stdout, stderr.
pub fn verify_bundle(
    bundle: &Path,
    pubkey: &str,
    collector: Option<&str>,
    extra: &[&str],
) -> (i32, String, String) {
    let mut c = Command::new(agent_bin());
    c.args(["verify", "--bundle"])
        .arg(bundle)
        .args(["--pubkey", pubkey]);
    if let Some(k) = collector {
        c.args(["--collector-pubkey", k]);
    }
    c.args(extra);
    let o = c.output().unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}
