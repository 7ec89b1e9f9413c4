//! The real binaries over real TLS on loopback: `wormlog run` tails a file
//! into its spool and forwards it to `wormlog-collector serve` with mutual
//! TLS (certificates made here with rcgen). Checks exactly-once delivery,
//! receipts in the agent's chain, the store's verification, TLS refusals
//! and a forked chain.

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn collector_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_wormlog-collector"))
}

/// The agent binary, built beside the collector by `cargo test --workspace`.
fn agent_bin() -> PathBuf {
    let p = collector_bin().with_file_name("wormlog");
    assert!(
        p.exists(),
        "{} is missing: run the tests with `cargo test --workspace`",
        p.display()
    );
    p
}

struct Dir(tempfile::TempDir);
impl Dir {
    fn new() -> Dir {
        Dir(tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap())
    }
    fn p(&self, rel: &str) -> PathBuf {
        self.0.path().join(rel)
    }
}
impl Drop for Dir {
    fn drop(&mut self) {
        let _ = wormlog_spool::worm::remove_dir_all_worm(self.0.path());
    }
}

struct Proc(Child, PathBuf);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
impl Proc {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.1).unwrap_or_default()
    }
    fn stop(mut self) -> String {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.0.try_wait().unwrap().is_some() {
                return self.log();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("process did not stop: {}", self.log());
    }
}

fn spawn(bin: &Path, args: &[&str], log: PathBuf) -> Proc {
    let f = std::fs::File::create(&log).unwrap();
    let c = Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(f)
        .spawn()
        .unwrap();
    Proc(c, log)
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool, log: impl Fn() -> String) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}\n{}", log());
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

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// Starts the collector (listening on a port the kernel chose) and notes
/// the port it printed.
fn start_collector(s: &mut Setup) -> Proc {
    let collector = spawn(
        &collector_bin(),
        &[
            "serve",
            "--config",
            s.d.p("collector.toml").to_str().unwrap(),
        ],
        s.d.p("collector.log"),
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

struct Setup {
    d: Dir,
    /// The collector's port, once it listens.
    port: u16,
    pubkey: String,
}

/// Keys, certificates and a collector config (mTLS, web-01 registered).
fn setup() -> Setup {
    let d = Dir::new();
    std::fs::create_dir_all(d.p("pki")).unwrap();
    let out = Command::new(agent_bin())
        .args(["keygen", "--key-dir"])
        .arg(d.p("keys"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let pubkey = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let pki = Pki::new("wormlog test CA");
    std::fs::write(d.p("pki/ca.pem"), &pki.ca_pem).unwrap();
    pki.issue(&d.p("pki"), "collector", "localhost", false);
    pki.issue(&d.p("pki"), "web-01", "web-01", false);
    pki.issue(&d.p("pki"), "web-02", "web-02", false);
    pki.issue(&d.p("pki"), "expired", "web-01", true);
    let other = Pki::new("another CA");
    std::fs::write(d.p("pki/other-ca.pem"), &other.ca_pem).unwrap();
    other.issue(&d.p("pki"), "rogue", "web-01", false);
    let p = |s: &str| d.p(s).display().to_string();
    std::fs::write(
        d.p("collector.toml"),
        format!(
            r#"[collector]
listen = "127.0.0.1:0"
store_dir = "{}"
id = "test-collector"
tls_cert = "{}"
tls_key = "{}"
client_ca = "{}"

[[agents]]
id = "web-01"
pubkey = "{pubkey}"
"#,
            p("store"),
            p("pki/collector.pem"),
            p("pki/collector-key.pem"),
            p("pki/ca.pem"),
        ),
    )
    .unwrap();
    Setup { d, port: 0, pubkey }
}

/// An agent config that forwards to the collector with `cert` (None: no
/// client certificate) and trusts `ca`.
fn agent_config(s: &Setup, name: &str, cert: Option<&str>, ca: &str, host: &str) -> PathBuf {
    let p = |x: &str| s.d.p(x).display().to_string();
    let client = match cert {
        Some(c) => format!(
            "cert_file = \"{}\"\nkey_file = \"{}\"\n",
            p(&format!("pki/{c}.pem")),
            p(&format!("pki/{c}-key.pem"))
        ),
        None => String::new(),
    };
    let path = s.d.p(&format!("{name}.toml"));
    std::fs::write(
        &path,
        format!(
            r#"[agent]
id = "web-01"
spool_dir = "{}"
key_dir = "{}"

[spool]
append_only = "try"
checkpoint_interval = "200ms"
heartbeat_interval = "2s"

[[sources.file]]
name = "app"
paths = ["{}"]

[forward]
url = "https://{host}:{}"
ca_file = "{}"
{client}batch_records = 5000
backoff_min = "50ms"
backoff_max = "500ms"
timeout = "10s"
"#,
            p("spool"),
            p("keys"),
            p("logs/*.log"),
            s.port,
            p(&format!("pki/{ca}.pem")),
        ),
    )
    .unwrap();
    path
}

fn write_lines(path: &Path, from: usize, n: usize) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    let mut buf = Vec::new();
    for i in from..from + n {
        writeln!(buf, "line {i:07} payload {}", "x".repeat(i % 150)).unwrap();
    }
    f.write_all(&buf).unwrap();
}

/// The entry bodies of agent web-01 in the store, verified.
fn stored_lines(store: &Path) -> Vec<String> {
    let out = Command::new(collector_bin())
        .args(["cat", "--agent", "web-01", "--json", "--store"])
        .arg(store)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cat failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["kind"] == "entry")
        .map(|v| v["body"].as_str().unwrap().to_owned())
        .collect()
}

fn receipts_in_spool(spool: &Path) -> usize {
    let out = Command::new(agent_bin())
        .args(["cat", "--json", "--spool"])
        .arg(spool)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("\"kind\":\"receipt\""))
        .count()
}

fn next_seq_in_store(store: &Path) -> u64 {
    std::fs::read_to_string(store.join("agents/web-01/state.json"))
        .ok()
        .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
        .and_then(|v| v["next_seq"].as_u64())
        .unwrap_or(0)
}

#[test]
fn lines_reach_the_collector_over_mutual_tls_exactly_once() {
    let mut s = setup();
    let collector = start_collector(&mut s);
    let log = s.d.p("logs/app.log");
    write_lines(&log, 0, 20_000);
    let cfg = agent_config(&s, "agent", Some("web-01"), "ca", "localhost");
    let agent = spawn(
        &agent_bin(),
        &["run", "--config", cfg.to_str().unwrap()],
        s.d.p("agent.log"),
    );
    let store = s.d.p("store");
    wait_for(
        "20000 lines in the store",
        Duration::from_secs(60),
        || next_seq_in_store(&store) > 20_000,
        || format!("{}\n{}", agent.log(), collector.log()),
    );
    // More lines, and an agent restart in between: nothing twice.
    let a = agent.stop();
    assert!(a.contains("forwarding to https://localhost"), "{a}");
    write_lines(&log, 20_000, 5_000);
    let agent = spawn(
        &agent_bin(),
        &["run", "--config", cfg.to_str().unwrap()],
        s.d.p("agent2.log"),
    );
    wait_for(
        "25000 lines in the store",
        Duration::from_secs(60),
        || stored_lines(&store).len() >= 25_000,
        || format!("{}\n{}", agent.log(), collector.log()),
    );
    wait_for(
        "the stop and later records of the first run in the store",
        Duration::from_secs(30),
        || next_seq_in_store(&store) > 25_010,
        || agent.log(),
    );
    agent.stop();
    collector.stop();
    let lines = stored_lines(&store);
    let want: Vec<String> = (0..25_000)
        .map(|i| format!("line {i:07} payload {}", "x".repeat(i % 150)))
        .collect();
    assert_eq!(lines.len(), want.len(), "every line exactly once");
    assert!(lines == want, "the store holds the lines in order");
    // The store verifies with the registered key, the agent's spool carries
    // the collector's receipts and still verifies.
    let v = Command::new(collector_bin())
        .args(["verify", "--json", "--store"])
        .arg(&store)
        .output()
        .unwrap();
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stdout));
    let r: serde_json::Value = serde_json::from_slice(&v.stdout).unwrap();
    assert_eq!(r[0]["chain"], "web-01");
    assert_eq!(r[0]["key_authenticated"], true);
    assert!(receipts_in_spool(&s.d.p("spool")) >= 2);
    let v = Command::new(agent_bin())
        .args(["verify", "--pubkey", &s.pubkey, "--spool"])
        .arg(s.d.p("spool"))
        .output()
        .unwrap();
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stdout));
    // The store's segments are byte-identical copies of the agent's
    // (all but the agent's last, which went on after the collector stopped).
    let seg = "0000000000000000.wlseg";
    let a = std::fs::read(s.d.p("spool").join(seg)).unwrap();
    let c = std::fs::read(store.join("agents/web-01").join(seg)).unwrap();
    assert!(
        a.starts_with(&c) && c.len() > 1 << 20,
        "a prefix of the agent's segment"
    );
}

#[test]
fn tls_refusals_keep_the_data_in_the_spool_with_a_clear_error() {
    let mut s = setup();
    let collector = start_collector(&mut s);
    write_lines(&s.d.p("logs/app.log"), 0, 1000);
    // (config name, client cert, CA the agent trusts, host, what the agent
    // must say)
    let cases = [
        (
            "no-client-cert",
            None,
            "ca",
            "localhost",
            "CertificateRequired",
        ),
        (
            "expired",
            Some("expired"),
            "ca",
            "localhost",
            "CertificateExpired",
        ),
        ("rogue-ca", Some("rogue"), "ca", "localhost", "UnknownCA"),
        (
            "wrong-server-ca",
            Some("web-01"),
            "other-ca",
            "localhost",
            "UnknownIssuer",
        ),
        (
            "wrong-host-name",
            Some("web-01"),
            "ca",
            "127.0.0.1",
            "not valid for name",
        ),
        (
            "other-agent",
            Some("web-02"),
            "ca",
            "localhost",
            "not issued to agent",
        ),
    ];
    for (name, cert, ca, host, says) in cases {
        let cfg = agent_config(&s, name, cert, ca, host);
        let log = s.d.p(&format!("{name}.log"));
        let agent = spawn(
            &agent_bin(),
            &["run", "--config", cfg.to_str().unwrap()],
            log,
        );
        wait_for(
            &format!("{name}: a refusal in the agent's log"),
            Duration::from_secs(20),
            || {
                let l = agent.log();
                l.contains("retrying") && l.contains(says)
            },
            || format!("{}\n{}", agent.log(), collector.log()),
        );
        let l = agent.stop();
        assert!(l.contains("stopped cleanly"), "{name}: {l}");
        assert_eq!(
            next_seq_in_store(&s.d.p("store")),
            0,
            "{name}: nothing stored"
        );
    }
    collector.stop();
    // Everything is still in the spool.
    let out = Command::new(agent_bin())
        .args(["cat", "--spool"])
        .arg(s.d.p("spool"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text.lines().filter(|l| l.contains("[app] line")).count(),
        1000
    );
}

#[test]
fn a_rewritten_spool_is_a_fork_refused_and_alerted() {
    let mut s = setup();
    let collector = start_collector(&mut s);
    write_lines(&s.d.p("logs/app.log"), 0, 500);
    let cfg = agent_config(&s, "agent", Some("web-01"), "ca", "localhost");
    let agent = spawn(
        &agent_bin(),
        &["run", "--config", cfg.to_str().unwrap()],
        s.d.p("a1.log"),
    );
    let store = s.d.p("store");
    wait_for(
        "500 lines stored",
        Duration::from_secs(60),
        || next_seq_in_store(&store) > 500,
        || format!("{}\n{}", agent.log(), collector.log()),
    );
    agent.stop();
    // Root on the host takes a copy of the spool and the key now ...
    copy_dir(&s.d.p("spool"), &s.d.p("spool-then"));
    copy_dir(&s.d.p("keys"), &s.d.p("keys-then"));
    let then = next_seq_in_store(&store);
    // ... the agent goes on and the collector receives more ...
    write_lines(&s.d.p("logs/app.log"), 500, 100);
    let agent = spawn(
        &agent_bin(),
        &["run", "--config", cfg.to_str().unwrap()],
        s.d.p("a2.log"),
    );
    wait_for(
        "600 lines stored",
        Duration::from_secs(60),
        || next_seq_in_store(&store) > then + 100,
        || format!("{}\n{}", agent.log(), collector.log()),
    );
    agent.stop();
    let before = std::fs::read(store.join("agents/web-01/0000000000000000.wlseg")).unwrap();
    // ... then rolls the host back to the copy and lets history go on
    // differently: the same keys, the same genesis, a different record at
    // the first sequence number after the copy.
    for d in ["spool", "keys"] {
        wormlog_spool::worm::remove_dir_all_worm(&s.d.p(d)).unwrap();
        std::fs::rename(s.d.p(&format!("{d}-then")), s.d.p(d)).unwrap();
    }
    let agent = spawn(
        &agent_bin(),
        &["run", "--config", cfg.to_str().unwrap()],
        s.d.p("a3.log"),
    );
    wait_for(
        "the agent to report the refusal",
        Duration::from_secs(30),
        || agent.log().contains("refused the chain"),
        || format!("{}\n{}", agent.log(), collector.log()),
    );
    wait_for(
        "the collector to report the fork",
        Duration::from_secs(10),
        || collector.log().contains("FORK"),
        || collector.log(),
    );
    let a = agent.stop();
    assert!(a.contains("HTTP 409"), "{a}");
    let c = collector.stop();
    // The fork is found where the histories part, after the records both
    // share (which were acknowledged again as replays).
    let at: u64 = c
        .split("sent a record ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("{c}"));
    assert!(
        at >= then && at > 500,
        "fork at {at}, the copy ended at {then}"
    );
    // The original is untouched, the alert is in both chains.
    let after = std::fs::read(store.join("agents/web-01/0000000000000000.wlseg")).unwrap();
    assert!(after == before, "the stored chain was not overwritten");
    let out = Command::new(agent_bin())
        .args(["cat", "--spool"])
        .arg(s.d.p("spool"))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("forward_refused"));
    let out = Command::new(agent_bin())
        .args(["cat", "--spool"])
        .arg(store.join("log"))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("fork_detected"));
    let v = Command::new(collector_bin())
        .args(["verify", "--store"])
        .arg(&store)
        .output()
        .unwrap();
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stdout));
}
