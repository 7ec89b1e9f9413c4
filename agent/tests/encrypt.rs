//! Encryption at rest through the binaries (`[spool] encrypt_to`,
//! docs/FORMAT.md §6.2.1, §6.16), with identities made by `age-keygen` as an
//! operator makes them: check-config names a bad recipient at file:line:column;
//! `wormlog append` and the file source (a 10 MiB line in parts) keep every
//! byte under encryption, `cat` shows sealed entries as encrypted without an
//! identity and opens them with one, a wrong identity is refused (exit 2),
//! `verify` needs no key; turning encryption on and off rolls the segment;
//! and forwarded to a real collector (through a relay that records what
//! crosses the wire) no line and no field value is ever in clear, while
//! `wormlog-collector cat --identity` reads them all.

mod common;

use base64::Engine as _;
use common::{Env, append, bin, run_with, stop};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The collector binary, built beside the agent (`cargo test --workspace`,
/// or `cargo build -p wormlog-collector` before `cargo test -p wormlog`).
fn collector_bin() -> PathBuf {
    let p = Path::new(bin()).with_file_name("wormlog-collector");
    assert!(
        p.exists(),
        "{} is missing: build it first (`cargo build -p wormlog-collector`, or `cargo test --workspace`)",
        p.display()
    );
    p
}

fn ok(out: &Output) {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An age identity made with `age-keygen -o FILE` in `dir`: its file and
/// its recipient (`age1…`).
fn age_keygen(dir: &Path, name: &str) -> (PathBuf, String) {
    let file = dir.join(name);
    let out = Command::new("age-keygen")
        .arg("-o")
        .arg(&file)
        .output()
        .expect("age-keygen (Debian package age) is needed");
    ok(&out);
    let out = Command::new("age-keygen")
        .arg("-y")
        .arg(&file)
        .output()
        .unwrap();
    ok(&out);
    let recipient = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(recipient.starts_with("age1"), "{recipient}");
    (file, recipient)
}

/// `cat` (of the agent or the collector) with `--json`: its output and the
/// records.
fn parse_json(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn spool_cat(spool: &Path, json: bool, identity: Option<&Path>) -> Output {
    let mut c = Command::new(bin());
    c.args(["cat", "--spool"]).arg(spool);
    if json {
        c.arg("--json");
    }
    if let Some(i) = identity {
        c.arg("--identity").arg(i);
    }
    run_with(&mut c, None)
}

/// An entry's body, from `body` (text) or `body_base64`.
fn body(v: &serde_json::Value) -> Vec<u8> {
    if let Some(s) = v["body"].as_str() {
        return s.as_bytes().to_vec();
    }
    base64::engine::general_purpose::STANDARD
        .decode(v["body_base64"].as_str().expect("a body"))
        .unwrap()
}

fn entries(records: &[serde_json::Value]) -> Vec<serde_json::Value> {
    records
        .iter()
        .filter(|v| v["kind"] == "entry")
        .cloned()
        .collect()
}

fn flags(v: &serde_json::Value) -> Vec<String> {
    v["flags"]
        .as_array()
        .map(|a| a.iter().map(|f| f.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default()
}

/// The lines of one source, their parts joined.
fn joined_lines(entries: &[serde_json::Value], source: &str) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut cur: Option<Vec<u8>> = None;
    for e in entries.iter().filter(|e| e["source"] == source) {
        let f = flags(e);
        let mut acc = cur.take().unwrap_or_default();
        assert_eq!(
            f.contains(&"continuation".to_owned()),
            !acc.is_empty(),
            "{e}"
        );
        acc.extend(body(e));
        if f.contains(&"more_parts".to_owned()) {
            cur = Some(acc);
        } else {
            out.push(acc);
        }
    }
    assert!(cur.is_none(), "a line left unfinished");
    out
}

/// Every byte of every file under `dir`.
fn all_bytes(dir: &Path) -> Vec<u8> {
    let mut all = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let t = e.file_type().unwrap();
            if t.is_dir() {
                stack.push(e.path());
            } else if t.is_file() {
                all.extend(std::fs::read(e.path()).unwrap());
            }
        }
    }
    all
}

/// None of `needles` occurs in `hay` (named `what`).
fn assert_absent(hay: &[u8], needles: &[&[u8]], what: &str) {
    assert!(!hay.is_empty(), "{what} is empty");
    for n in needles {
        assert!(
            memchr::memmem::find(hay, n).is_none(),
            "{:?} is in clear in {what}",
            String::from_utf8_lossy(n)
        );
    }
}

fn verify_spool_cmd(spool: &Path, pubkey: &Path) {
    let out = run_with(
        Command::new(bin())
            .args(["verify", "--spool"])
            .arg(spool)
            .arg("--pubkey")
            .arg(pubkey),
        None,
    );
    ok(&out);
}

/// A 10 MiB line of varied bytes: not UTF-8, a NUL, no newline inside.
fn big_line() -> Vec<u8> {
    let mut x: u32 = 0x2545_f491;
    let mut v: Vec<u8> = (0..10 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            match (x >> 24) as u8 {
                b'\n' => b'N',
                b => b,
            }
        })
        .collect();
    v[7] = 0;
    v[8] = 0xff;
    v
}

/// A standalone audit event whose `cmd` is hex-encoded: its decoded value
/// is a field only (not in the body as text).
const AUDIT_CMD: &str = "cat /srv/zebra-7781/plans.txt";

fn audit_line() -> String {
    let hex: String = AUDIT_CMD.bytes().map(|b| format!("{b:02X}")).collect();
    format!(
        "type=USER_CMD msg=audit(1700000000.000:4242): pid=77 uid=0 auid=1000 ses=3 msg='cwd=\"/root\" cmd={hex} exe=\"/usr/bin/sudo\" terminal=pts/0 res=success'\n"
    )
}

// ---------------------------------------------------------------- 1a

#[test]
fn check_config_refuses_a_bad_recipient_at_file_line_column() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let cfg = dir.path().join("agent.toml");
    std::fs::write(
        &cfg,
        format!(
            "[agent]\nid = \"web-01\"\nspool_dir = \"{}\"\nkey_dir = \"{}\"\n\n[spool]\nappend_only = \"off\"\nencrypt_to = [\"age1nope\"]\n",
            dir.path().join("spool").display(),
            dir.path().join("keys").display()
        ),
    )
    .unwrap();
    let out = run_with(
        Command::new(bin())
            .args(["check-config", "--config"])
            .arg(&cfg),
        None,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    let at = format!("{}:8:", cfg.display());
    assert!(err.contains(&at), "{err}");
    // file:line:column, the column a number.
    let col = err.split(&at).nth(1).unwrap();
    assert!(
        col.chars().next().is_some_and(|c| c.is_ascii_digit()),
        "{err}"
    );
    assert!(
        err.contains("age1nope") || err.contains("encrypt_to"),
        "{err}"
    );
    // The same recipient made by age-keygen is accepted.
    let (_, recipient) = age_keygen(dir.path(), "id.txt");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("age1nope", &recipient);
    std::fs::write(&cfg, text).unwrap();
    let out = run_with(
        Command::new(bin())
            .args(["keygen", "--key-dir"])
            .arg(dir.path().join("keys")),
        None,
    );
    ok(&out);
    let out = run_with(
        Command::new(bin())
            .args(["check-config", "--config"])
            .arg(&cfg),
        None,
    );
    ok(&out);
    let _ = wormlog_spool::worm::remove_dir_all_worm(dir.path());
}

// ---------------------------------------------------------------- 1b

#[test]
fn append_encrypted_keeps_every_byte_and_cat_opens_only_with_the_identity() {
    let e = Env::with_sources("", |_| String::new());
    let (id, recipient) = age_keygen(e.dir.path(), "id.txt");
    let (wrong, _) = age_keygen(e.dir.path(), "other.txt");
    let cfg = e.p("agent.toml");
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "[spool]\n",
        &format!("[spool]\nencrypt_to = [\"{recipient}\"]\n"),
    );
    std::fs::write(&cfg, text).unwrap();
    let lines: Vec<Vec<u8>> = vec![
        b"patient MRN-0042 chart opened by dr.house".to_vec(),
        b"\xff\xfe not UTF-8 \x80 kiwi-3391".to_vec(),
        b"a NUL \x00 then SSN 078-05-1120".to_vec(),
        b"last line, no newline: walrus-5512".to_vec(),
    ];
    let mut input = lines.join(&b'\n');
    let out = run_with(
        Command::new(bin())
            .args(["append", "--source", "app", "--config"])
            .arg(&cfg),
        Some(&input),
    );
    ok(&out);
    input.clear();
    let needles: [&[u8]; 4] = [b"MRN-0042", b"kiwi-3391", b"078-05-1120", b"walrus-5512"];
    assert_absent(&all_bytes(&e.p("spool")), &needles, "the spool's files");

    // Without an identity: shown as encrypted, exit 0, the hint on stderr,
    // no plaintext on stdout.
    let out = spool_cat(&e.p("spool"), false, None);
    ok(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.matches("(encrypted:").count(), lines.len(), "{text}");
    assert_absent(&out.stdout, &needles, "cat's output");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("4 entries are encrypted") && err.contains("--identity"),
        "{err}"
    );
    let out = spool_cat(&e.p("spool"), true, None);
    ok(&out);
    assert_absent(&out.stdout, &needles, "cat --json's output");
    for v in entries(&parse_json(&out)) {
        assert_eq!(v["encrypted"], true, "{v}");
        assert!(v["body"].is_null() && v["body_base64"].is_null(), "{v}");
    }

    // With the identity: every body byte-exact.
    let out = spool_cat(&e.p("spool"), true, Some(&id));
    ok(&out);
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = entries(&parse_json(&out));
    assert_eq!(got.len(), lines.len());
    for (v, want) in got.iter().zip(&lines) {
        assert_eq!(v["decrypted"], true, "{v}");
        assert_eq!(v["source"], "app");
        assert_eq!(body(v), *want, "{v}");
    }
    assert!(got[1]["body_base64"].is_string(), "not UTF-8: {}", got[1]);
    assert_eq!(flags(&got[3]), ["no_newline"]);
    // Human output with the identity: the lines, escaped.
    let out = spool_cat(&e.p("spool"), false, Some(&id));
    ok(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("MRN-0042") && text.contains("\\xff\\xfe") && text.contains("walrus-5512"),
        "{text}"
    );

    // A wrong identity (another age-keygen key): exit 2, a clear error.
    let out = spool_cat(&e.p("spool"), true, Some(&wrong));
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("the identity opens none of the 4 encrypted entries")
            && err.contains(&recipient),
        "{err}"
    );
    assert_absent(&out.stdout, &needles, "cat with a wrong identity");

    // Integrity without any age key.
    verify_spool_cmd(&e.p("spool"), &e.p("keys/host.pub"));
}

#[test]
fn file_source_encrypted_long_line_in_parts_and_audit_fields() {
    let root = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let (id, recipient) = age_keygen(root.path(), "id.txt");
    let audit = root.path().join("audit.log");
    let e = Env::with_sources(&format!("encrypt_to = [\"{recipient}\"]"), |e| {
        format!(
            "[[sources.file]]\nname = \"app\"\npaths = [\"{}\"]\npoll_interval = \"20ms\"\n\n[[sources.auditd]]\nname = \"audit\"\npath = \"{}\"\npoll_interval = \"50ms\"\n",
            e.log("app.log").display(),
            audit.display()
        )
    });
    let big = big_line();
    let mut data = b"before the big line: heron-1144\n".to_vec();
    data.extend_from_slice(&big);
    data.extend_from_slice(b"\nafter it: osprey-9021\n");
    std::fs::write(&audit, audit_line()).unwrap();
    let d = e.start();
    append(&e.log("app.log"), &data);
    // 64 KiB parts (max_line_bytes): 160 of them, 2 more lines, 1 event.
    let parts = big.len().div_ceil(64 << 10);
    e.wait_entries(parts + 3);
    stop(d);
    verify_spool_cmd(&e.p("spool"), &e.p("keys/host.pub"));
    let all = all_bytes(&e.p("spool"));
    assert_absent(
        &all,
        &[
            b"heron-1144",
            b"osprey-9021",
            &big[1000..1064],
            &big[(5 << 20)..(5 << 20) + 64],
            b"zebra-7781",
            AUDIT_CMD.as_bytes(),
            b"/usr/bin/sudo",
        ],
        "the spool's files",
    );

    let out = spool_cat(&e.p("spool"), true, Some(&id));
    ok(&out);
    let got = entries(&parse_json(&out));
    assert!(got.iter().all(|v| v["decrypted"] == true));
    let app: Vec<_> = got.iter().filter(|v| v["source"] == "app").collect();
    assert_eq!(app.len(), parts + 2);
    assert!(app[1..=parts].iter().all(|v| body(v).len() <= 64 << 10));
    let joined = joined_lines(&got, "app");
    assert_eq!(joined.len(), 3);
    assert_eq!(joined[0], b"before the big line: heron-1144");
    assert!(joined[1] == big, "the 10 MiB line is not byte-exact");
    assert_eq!(joined[2], b"after it: osprey-9021");
    // The audit event: its body and its fields, the decoded one included.
    let ev: Vec<_> = got.iter().filter(|v| v["source"] == "audit").collect();
    assert_eq!(ev.len(), 1);
    assert_eq!(body(ev[0]), audit_line().trim_end().as_bytes());
    let f = &ev[0]["fields"];
    assert_eq!(f["audit_serial"], "4242", "{f}");
    assert_eq!(f["audit_types"], "USER_CMD", "{f}");
    assert_eq!(f["USER_CMD.cmd.decoded"], AUDIT_CMD, "{f}");

    // Without an identity: nothing of it on stdout.
    let out = spool_cat(&e.p("spool"), true, None);
    ok(&out);
    assert_absent(
        &out.stdout,
        &[b"heron-1144", b"zebra-7781", b"USER_CMD", &big[1000..1064]],
        "cat --json without an identity",
    );
    let _ = wormlog_spool::worm::remove_dir_all_worm(root.path());
}

/// The segment of every entry whose body starts with `prefix`.
/// SIGKILLs at random moments while the daemon seals bursts larger than a
/// sealing chunk (128 KiB), so that kills land while entries are encoded,
/// with the sealing thread, or being chained: after a last clean run every
/// line is in the spool exactly once, in order, and the spool verifies.
#[test]
fn crash_loop_with_encryption_loses_and_duplicates_nothing() {
    let e = Env::with_glob("app.log", "");
    let (id, recipient) = age_keygen(e.dir.path(), "id.txt");
    let cfg = std::fs::read_to_string(e.p("agent.toml")).unwrap();
    let cfg = cfg.replace(
        "[spool]\n",
        &format!("[spool]\nencrypt_to = [\"{recipient}\"]\n"),
    );
    std::fs::write(e.p("agent.toml"), cfg).unwrap();
    // Before each start a burst of 6,000 lines (600 KB, several chunks)
    // is appended; the kill comes 10 to 70 ms after the start.
    let (rounds, burst) = (15u32, 6_000u32);
    let total = rounds * burst;
    let pad = "p".repeat(90);
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut behind = 0;
    for r in 0..rounds {
        let mut chunk = String::new();
        for i in r * burst..(r + 1) * burst {
            chunk.push_str(&format!("line {i:06} {pad}\n"));
        }
        append(&e.log("app.log"), chunk.as_bytes());
        let d = e.start();
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        std::thread::sleep(Duration::from_millis(10 + rng % 60));
        drop(d); // SIGKILL
        if e.entries().len() < ((r + 1) * burst) as usize {
            behind += 1;
        }
    }
    eprintln!("{behind} of {rounds} kills came while lines were unread");
    assert!(
        behind >= 3,
        "only {behind} kills came while lines were still unread: the test did not race"
    );
    let d = e.start();
    e.wait_entries(total as usize);
    stop(d);
    verify_spool_cmd(&e.p("spool"), &e.p("keys/host.pub"));
    let out = spool_cat(&e.p("spool"), true, Some(&id));
    ok(&out);
    let got: Vec<u32> = entries(&parse_json(&out))
        .iter()
        .map(|v| {
            let b = String::from_utf8(body(v)).unwrap();
            b[5..11]
                .parse()
                .unwrap_or_else(|_| panic!("unexpected line {b:?}"))
        })
        .collect();
    let want: Vec<u32> = (0..total).collect();
    if got != want {
        let dup = got.windows(2).find(|w| w[0] >= w[1]);
        let missing = want.iter().find(|n| !got.contains(n));
        panic!(
            "{} lines; first out of order or twice: {dup:?}; first missing: {missing:?}",
            got.len()
        );
    }
}

fn segments_of(entries: &[serde_json::Value], prefix: &str) -> Vec<u64> {
    entries
        .iter()
        .filter(|v| body(v).starts_with(prefix.as_bytes()))
        .map(|v| v["segment"].as_u64().unwrap())
        .collect()
}

#[test]
fn turning_encryption_on_and_off_rolls_the_segment_and_all_lines_read() {
    let e = Env::with_glob("app.log", "");
    let (id, recipient) = age_keygen(e.dir.path(), "id.txt");
    let clear_cfg = std::fs::read_to_string(e.p("agent.toml")).unwrap();
    let sealed_cfg = clear_cfg.replace(
        "[spool]\n",
        &format!("[spool]\nencrypt_to = [\"{recipient}\"]\n"),
    );
    let phases = [
        ("clear-one", &clear_cfg),
        ("sealed-two", &sealed_cfg),
        ("sealed-three", &sealed_cfg),
        ("clear-four", &clear_cfg),
    ];
    let mut n = 0;
    for (prefix, cfg) in phases {
        std::fs::write(e.p("agent.toml"), cfg).unwrap();
        let d = e.start();
        append(&e.log("app.log"), common::lines(prefix, 0..5).as_bytes());
        n += 5;
        e.wait_entries(n);
        stop(d);
    }
    verify_spool_cmd(&e.p("spool"), &e.p("keys/host.pub"));
    let all = all_bytes(&e.p("spool"));
    assert_absent(&all, &[b"sealed-two", b"sealed-three"], "the spool's files");
    // The scan finds what is in clear.
    for clear in [&b"clear-one 4"[..], b"clear-four 0"] {
        assert!(memchr::memmem::find(&all, clear).is_some());
    }
    // Without an identity, the clear lines are there and the sealed ones
    // are shown as encrypted.
    let out = spool_cat(&e.p("spool"), true, None);
    ok(&out);
    let plain = entries(&parse_json(&out));
    assert_eq!(plain.iter().filter(|v| v["encrypted"] == true).count(), 10);
    assert_eq!(
        plain.iter().filter(|v| v["body"].is_string()).count(),
        10,
        "the clear lines"
    );
    let out = spool_cat(&e.p("spool"), true, Some(&id));
    ok(&out);
    let records = parse_json(&out);
    let got = entries(&records);
    let bodies: Vec<String> = got
        .iter()
        .map(|v| String::from_utf8(body(v)).unwrap())
        .collect();
    let mut want = Vec::new();
    for (prefix, _) in phases {
        want.extend(common::expect_lines(prefix, 0..5));
    }
    assert_eq!(bodies, want);
    // Each phase in segments of its own, in order: a new segment when
    // encryption is turned on, at a restart with it on, and when it is
    // turned off; the sealed segments each have one data_key record.
    let seg: Vec<Vec<u64>> = phases
        .iter()
        .map(|(p, _)| {
            let mut s = segments_of(&got, p);
            s.dedup();
            s
        })
        .collect();
    for w in seg.windows(2) {
        assert!(
            w[0].last().unwrap() < w[1].first().unwrap(),
            "segments {seg:?}"
        );
    }
    for (i, (prefix, _)) in phases.iter().enumerate() {
        let sealed = prefix.starts_with("sealed");
        for v in got
            .iter()
            .filter(|v| body(v).starts_with(prefix.as_bytes()))
        {
            assert_eq!(v["decrypted"] == true, sealed, "{v}");
        }
        for s in &seg[i] {
            let keys = records
                .iter()
                .filter(|r| r["kind"] == "data_key" && r["segment"] == *s)
                .count();
            assert_eq!(keys, usize::from(sealed), "segment {s} of {prefix}");
        }
    }
}

// ---------------------------------------------------------------- 1c

/// A TCP relay on 127.0.0.1: each connection it accepts is copied both
/// ways to 127.0.0.1:`target`; what clients send is recorded.
struct Relay {
    port: u16,
    target: Arc<AtomicU16>,
    sent: Arc<Mutex<Vec<u8>>>,
}

impl Relay {
    fn start() -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let target = Arc::new(AtomicU16::new(0));
        let sent = Arc::new(Mutex::new(Vec::new()));
        let (t, s) = (target.clone(), sent.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(client) = conn else { return };
                let port = t.load(Ordering::SeqCst);
                let Ok(server) = TcpStream::connect(("127.0.0.1", port)) else {
                    continue; // the collector is not up yet: the agent retries
                };
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let rec = s.clone();
                std::thread::spawn(move || copy(client, server, Some(&rec)));
                std::thread::spawn(move || copy(s2, c2, None));
            }
        });
        Relay { port, target, sent }
    }
}

fn copy(mut from: TcpStream, mut to: TcpStream, record: Option<&Mutex<Vec<u8>>>) {
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some(r) = record {
            r.lock().unwrap().extend_from_slice(&buf[..n]);
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Write);
}

/// A process killed when dropped, its standard error in a file.
struct Proc(std::process::Child, PathBuf);

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

fn collector_cat(store: &Path, identity: &Path) -> Output {
    run_with(
        Command::new(collector_bin())
            .args(["cat", "--agent", "t", "--json", "--store"])
            .arg(store)
            .arg("--identity")
            .arg(identity),
        None,
    )
}

#[test]
fn forwarded_encrypted_spool_is_never_in_clear_and_the_collector_reads_it() {
    let relay = Relay::start();
    let root = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let (id, recipient) = age_keygen(root.path(), "id.txt");
    let audit = root.path().join("audit.log");
    let e = Env::with_sources(
        &format!("encrypt_to = [\"{recipient}\"]\ncheckpoint_interval = \"200ms\""),
        |e| {
            format!(
                "[[sources.file]]\nname = \"app\"\npaths = [\"{}\"]\npoll_interval = \"20ms\"\n\n[[sources.auditd]]\nname = \"audit\"\npath = \"{}\"\npoll_interval = \"50ms\"\n\n[forward]\nurl = \"http://127.0.0.1:{}\"\ncompression = \"none\"\n",
                e.log("app.log").display(),
                audit.display(),
                relay.port
            )
        },
    );
    // The collector, plain HTTP on loopback, agent "t" registered.
    let store = root.path().join("store");
    let pubkey = std::fs::read_to_string(e.p("keys/host.pub")).unwrap();
    let ccfg = root.path().join("collector.toml");
    std::fs::write(
        &ccfg,
        format!(
            "[collector]\nlisten = \"127.0.0.1:0\"\nstore_dir = \"{}\"\nid = \"test-collector\"\n\n[[agents]]\nid = \"t\"\npubkey = \"{}\"\n",
            store.display(),
            pubkey.trim()
        ),
    )
    .unwrap();
    let clog = root.path().join("collector.log");
    let collector = Proc(
        Command::new(collector_bin())
            .args(["serve", "--config"])
            .arg(&ccfg)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&clog).unwrap())
            .spawn()
            .unwrap(),
        clog,
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
                .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok());
            port.is_some()
        },
        || collector.log(),
    );
    relay.target.store(port.unwrap(), Ordering::SeqCst);

    // What the test writes: lines with secrets, invalid UTF-8, a NUL, a
    // long line in parts, and an audit event with a decoded field.
    let mut lines: Vec<Vec<u8>> = (0..50)
        .map(|i| format!("card 4111-1111-1111-{i:04} charged by otter-{i}").into_bytes())
        .collect();
    lines.push(b"\xff\xfe bytes \x00 and badger-6610".to_vec());
    let mut long = b"long-line-start ".to_vec();
    long.extend((0..200_000u32).map(|i| b"abcdefghijklmnopqrstuvwxyz"[(i % 26) as usize]));
    long.extend_from_slice(b" long-line-end");
    lines.push(long.clone());
    let mut data = lines.join(&b'\n');
    data.push(b'\n');
    std::fs::write(&audit, audit_line()).unwrap();
    let d = e.start();
    append(&e.log("app.log"), &data);
    let parts = long.len().div_ceil(64 << 10);
    let want_entries = lines.len() - 1 + parts + 1;
    e.wait_entries(want_entries);

    // Wait until the collector holds every line (read with the identity).
    let mut got = Vec::new();
    wait_for(
        "the collector to store every entry",
        Duration::from_secs(60),
        || {
            let out = collector_cat(&store, &id);
            if !out.status.success() {
                return false;
            }
            got = entries(&parse_json(&out));
            got.len() >= want_entries
        },
        || format!("collector: {}\nagent: {}", collector.log(), e.stderr()),
    );
    stop(d);

    assert!(got.iter().all(|v| v["decrypted"] == true));
    assert_eq!(joined_lines(&got, "app"), lines);
    let ev: Vec<_> = got.iter().filter(|v| v["source"] == "audit").collect();
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0]["fields"]["USER_CMD.cmd.decoded"], AUDIT_CMD);

    // Nothing the test wrote is in clear: on the wire, in the spool, in
    // the collector's store.
    let mut needles: Vec<Vec<u8>> = (0..50)
        .flat_map(|i| {
            [
                format!("4111-1111-1111-{i:04}").into_bytes(),
                format!("otter-{i} ").into_bytes(),
            ]
        })
        .collect();
    needles.extend([
        b"badger-6610".to_vec(),
        b"long-line-start".to_vec(),
        b"long-line-end".to_vec(),
        long[100..164].to_vec(),
        b"zebra-7781".to_vec(),
        AUDIT_CMD.as_bytes().to_vec(),
        b"/usr/bin/sudo".to_vec(),
        b"USER_CMD".to_vec(),
    ]);
    let needles: Vec<&[u8]> = needles.iter().map(Vec::as_slice).collect();
    let wire = relay.sent.lock().unwrap().clone();
    assert!(
        memchr::memmem::find(&wire, b"POST ").is_some(),
        "requests went through the relay"
    );
    assert!(
        wire.len() > long.len(),
        "the bodies went uncompressed: {} bytes",
        wire.len()
    );
    assert_absent(&wire, &needles, "the bytes sent to the collector");
    assert_absent(&all_bytes(&e.p("spool")), &needles, "the agent's spool");
    assert_absent(&all_bytes(&store), &needles, "the collector's store");

    // The store verifies with no age key.
    let out = run_with(
        Command::new(collector_bin())
            .args(["verify", "--store"])
            .arg(&store),
        None,
    );
    ok(&out);
    // Without the identity: encrypted, exit 0, nothing in clear.
    let out = run_with(
        Command::new(collector_bin())
            .args(["cat", "--agent", "t", "--store"])
            .arg(&store),
        None,
    );
    ok(&out);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--identity"));
    assert_absent(&out.stdout, &needles, "collector cat without an identity");
    drop(collector);
    let _ = wormlog_spool::worm::remove_dir_all_worm(root.path());
}

/// `encrypt_to` changed by SIGHUP: the running spool cannot take new
/// recipients, so the reload must say that it takes effect at the next
/// start, like the other settings that need one; lines after it are then
/// still in clear until the restart, which seals them.
#[test]
fn encrypt_to_changed_by_sighup_is_said_to_need_a_restart() {
    let e = Env::with_glob("app.log", "");
    let (id, recipient) = age_keygen(e.dir.path(), "id.txt");
    let clear_cfg = std::fs::read_to_string(e.p("agent.toml")).unwrap();
    let d = e.start();
    append(&e.log("app.log"), b"before the reload\n");
    e.wait_entries(1);
    std::fs::write(
        e.p("agent.toml"),
        clear_cfg.replace(
            "[spool]\n",
            &format!("[spool]\nencrypt_to = [\"{recipient}\"]\n"),
        ),
    )
    .unwrap();
    rustix::process::kill_process(
        rustix::process::Pid::from_child(&d.0),
        rustix::process::Signal::HUP,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !e.stderr().contains("SIGHUP: applying configuration") {
        assert!(Instant::now() < deadline, "{}", e.stderr());
        std::thread::sleep(Duration::from_millis(20));
    }
    let err = e.stderr();
    let line = err
        .lines()
        .find(|l| l.contains("SIGHUP: applying configuration"))
        .unwrap();
    assert!(
        line.contains("encrypt_to") && line.contains("at the next start"),
        "the reload does not say that encrypt_to needs a restart:\n{line}"
    );
    // As said: until the restart, lines are still written in clear.
    append(&e.log("app.log"), b"after the reload\n");
    e.wait_entries(2);
    stop(d);
    // At the next start the spool rolls to a sealed segment.
    let d = e.start();
    append(&e.log("app.log"), b"after the restart\n");
    e.wait_entries(3);
    stop(d);
    let out = spool_cat(&e.p("spool"), true, None);
    ok(&out);
    let got = entries(&parse_json(&out));
    assert_eq!(got[1]["body"], "after the reload");
    assert_eq!(got[2]["encrypted"], true);
    let out = spool_cat(&e.p("spool"), true, Some(&id));
    ok(&out);
    let got = entries(&parse_json(&out));
    assert_eq!(body(&got[2]), b"after the restart");
    assert_eq!(got[2]["decrypted"], true);
}
