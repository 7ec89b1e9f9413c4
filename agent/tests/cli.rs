//! The `wormlog` binary, run for real in temporary directories: keygen,
//! check-config, append, cat, verify, the lock, the append-only flags on a
//! real ext4 file system, and a process without CAP_LINUX_IMMUTABLE.

mod common;

use common::{bin, run_with};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A temporary directory under target/ (ext4 here) whose write-once flags
/// are cleared before removal.
struct Tmp(tempfile::TempDir);

impl Tmp {
    fn new() -> Tmp {
        Tmp(tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap())
    }
    fn p(&self, rel: &str) -> PathBuf {
        self.0.path().join(rel)
    }
    /// Writes agent.toml with extra `[spool]` settings; returns its path.
    fn config(&self, spool_extra: &str) -> PathBuf {
        let path = self.p("agent.toml");
        let text = format!(
            "[agent]\nid = \"web-01\"\nspool_dir = \"{}\"\nkey_dir = \"{}\"\n\n[spool]\n{spool_extra}\n",
            self.p("spool").display(),
            self.p("keys").display()
        );
        std::fs::write(&path, text).unwrap();
        path
    }
    fn keygen(&self) -> String {
        let out = run(
            &["keygen", "--key-dir", self.p("keys").to_str().unwrap()],
            None,
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }
}

impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = wormlog_spool::worm::remove_dir_all_worm(self.0.path());
    }
}

fn run(args: &[&str], stdin: Option<&[u8]>) -> Output {
    run_with(Command::new(bin()).args(args), stdin)
}

fn append(_t: &Tmp, cfg: &Path, source: &str, input: &[u8]) -> Output {
    run(
        &[
            "append",
            "--config",
            cfg.to_str().unwrap(),
            "--source",
            source,
        ],
        Some(input),
    )
}

fn cat_json(t: &Tmp) -> Vec<serde_json::Value> {
    let out = run(
        &["cat", "--spool", t.p("spool").to_str().unwrap(), "--json"],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn entries(t: &Tmp) -> Vec<serde_json::Value> {
    cat_json(t)
        .into_iter()
        .filter(|v| v["kind"] == "entry")
        .collect()
}

fn verify_json(t: &Tmp, extra: &[&str]) -> (i32, serde_json::Value) {
    let mut args = vec![
        "verify",
        "--spool",
        t.p("spool").to_str().unwrap().to_owned().leak() as &str,
        "--json",
    ];
    args.extend_from_slice(extra);
    let out = run(&args, None);
    let v = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (out.status.code().unwrap(), v)
}

#[test]
fn keygen_prints_one_line_and_never_overwrites() {
    let t = Tmp::new();
    let pk = t.keygen();
    assert!(pk.starts_with("ed25519:") && !pk.contains('\n'), "{pk}");
    assert_eq!(
        std::fs::read_to_string(t.p("keys/host.pub"))
            .unwrap()
            .trim(),
        pk
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(t.p("keys/host.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the seed is private");
    let again = run(
        &["keygen", "--key-dir", t.p("keys").to_str().unwrap()],
        None,
    );
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("refusing"));
    assert_eq!(
        std::fs::read_to_string(t.p("keys/host.pub"))
            .unwrap()
            .trim(),
        pk,
        "unchanged"
    );
}

#[test]
fn check_config_names_file_line_and_column() {
    let t = Tmp::new();
    t.keygen();
    let good = t.config("segment_max_bytes = \"64MiB\"\nepoch = \"15m\"");
    let out = run(&["check-config", "--config", good.to_str().unwrap()], None);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cases: &[(&str, &str, &str)] = &[
        (
            "[agent]\nid = \"x\"\nspool_dirr = \"/tmp\"\n",
            ":3:1:",
            "unknown field",
        ),
        (
            "[spool]\ncommit_interval = \"5 parsecs\"\n",
            ":2:19:",
            "parsecs",
        ),
        ("[spool]\nsegment_max_bytes = \"12XB\"\n", ":2:21:", "XB"),
        ("[spool]\nappend_only = \"maybe\"\n", ":2:15:", "maybe"),
        ("[spool]\nepoch = \"0s\"\n", ":2:1:", "epoch"),
        // An id no certificate can carry (the collector would refuse it).
        (
            "[agent]\nspool_dir = \"/tmp\"\nid = \"Web_01\"\n",
            ":3:1:",
            "lower case",
        ),
        ("[agent\n", ":1:", ""),
    ];
    for (text, loc, word) in cases {
        let p = t.p("bad.toml");
        std::fs::write(&p, text).unwrap();
        let out = run(&["check-config", "--config", p.to_str().unwrap()], None);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{text:?}: {err}");
        assert!(
            err.starts_with(&format!("{}{loc}", p.display())),
            "{text:?}: {err}"
        );
        assert!(err.contains(word), "{text:?}: {err}");
    }
}

/// check-config opens every file the configuration names, as this process
/// (under systemd: the service's user), and names each one it cannot use.
#[test]
fn check_config_opens_every_file_it_names() {
    let t = Tmp::new();
    let cfg = |extra: &str| {
        let path = t.config("");
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str(extra);
        std::fs::write(&path, text).unwrap();
        path
    };
    let check = |path: &std::path::Path| {
        let out = run(&["check-config", "--config", path.to_str().unwrap()], None);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    // No host key yet.
    let (code, out) = check(&cfg(""));
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("does not exist") && out.contains("wormlog keygen --key-dir"),
        "{out}"
    );
    t.keygen();
    let (code, out) = check(&cfg(""));
    assert_eq!(code, Some(0), "{out}");
    // TLS files that are not there: each named.
    let forward = format!(
        "[forward]\nurl = \"https://127.0.0.1:1\"\nca_file = \"{0}/ca.pem\"\ncert_file = \"{0}/agent.pem\"\nkey_file = \"{0}/agent-key.pem\"\n",
        t.p("tls").display()
    );
    let (code, out) = check(&cfg(&forward));
    assert_eq!(code, Some(2), "{out}");
    for key in ["ca_file", "cert_file", "key_file"] {
        assert!(
            out.lines()
                .any(|l| l.contains(&format!("[forward] {key} ")) && l.contains("cannot read")),
            "{key}: {out}"
        );
    }
    assert!(out.contains("3 files cannot be used"), "{out}");
    std::fs::create_dir(t.p("tls")).unwrap();
    for f in ["ca.pem", "agent.pem", "agent-key.pem"] {
        std::fs::write(t.p(&format!("tls/{f}")), "x").unwrap();
    }
    let (code, out) = check(&cfg(&forward));
    assert_eq!(code, Some(0), "{out}");

    // As another user: what root may open, the service user may not.
    if rustix::process::getuid().as_raw() != 0
        || Command::new("setpriv").arg("--version").output().is_err()
    {
        assert!(!in_ci(), "CI runs this as root, with setpriv");
        eprintln!("NOTE: the other-user half needs root and setpriv; checked in CI");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &str, m: u32| {
        std::fs::set_permissions(t.p(p), std::fs::Permissions::from_mode(m)).unwrap()
    };
    // The way to the configuration is open; the key directory, the spool
    // and the client key are root's alone.
    std::fs::set_permissions(t.0.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    mode("agent.toml", 0o644);
    mode("tls", 0o755);
    mode("tls/ca.pem", 0o644);
    mode("tls/agent.pem", 0o644);
    mode("tls/agent-key.pem", 0o600);
    mode("keys", 0o700);
    std::fs::create_dir_all(t.p("spool")).unwrap();
    mode("spool", 0o700);
    let as_nobody = |path: &std::path::Path| {
        let out = run_with(
            Command::new("setpriv")
                .args([
                    "--reuid=65534",
                    "--regid=65534",
                    "--clear-groups",
                    "--",
                    bin(),
                ])
                .args(["check-config", "--config"])
                .arg(path),
            None,
        );
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = as_nobody(&t.p("agent.toml"));
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.lines()
            .any(|l| l.contains("[agent] key_dir") && l.contains("ermission denied")),
        "{err}"
    );
    assert!(
        err.lines()
            .any(|l| l.contains("[agent] spool_dir") && l.contains("ermission denied")),
        "{err}"
    );
    assert!(
        err.lines()
            .any(|l| l.contains("[forward] key_file") && l.contains("ermission denied")),
        "{err}"
    );
    assert!(
        !err.contains("[forward] ca_file") && !err.contains("[forward] cert_file"),
        "readable files are not named: {err}"
    );
    assert!(err.contains("checked as uid 65534"), "{err}");
}

#[test]
fn append_keeps_bytes_exact_and_cat_shows_them_safely() {
    let t = Tmp::new();
    t.keygen();
    let cfg = t.config("append_only = \"off\"\nmax_line_bytes = \"1KiB\"");
    let mut input = Vec::new();
    input.extend_from_slice(b"plain line\n");
    input.extend_from_slice(b"nul \x00 and invalid \xff\xfe utf-8\n");
    input.extend_from_slice(b"escape \x1b[31mred\x1b[0m and bidi \xe2\x80\xae reversed\r\n");
    input.extend(std::iter::repeat_n(b'L', 2500));
    input.extend_from_slice(b"\nlast line without newline");
    let out = append(&t, &cfg, "app", &input);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let e = entries(&t);
    assert_eq!(e.len(), 7, "{e:?}");
    assert_eq!(e[0]["body"], "plain line");
    assert_eq!(e[0]["source"], "app");
    assert!(e[0]["ts"].as_str().unwrap().ends_with('Z'));
    use base64::Engine as _;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(e[1]["body_base64"].as_str().unwrap())
        .unwrap();
    assert_eq!(raw, b"nul \x00 and invalid \xff\xfe utf-8");
    assert_eq!(
        e[2]["body"],
        "escape \u{1b}[31mred\u{1b}[0m and bidi \u{202e} reversed\r"
    );
    // The long line in parts that say so.
    assert_eq!(e[3]["flags"], serde_json::json!(["more_parts"]));
    assert_eq!(
        e[4]["flags"],
        serde_json::json!(["more_parts", "continuation"])
    );
    assert_eq!(e[5]["flags"], serde_json::json!(["continuation"]));
    let joined: String = (3..6).map(|i| e[i]["body"].as_str().unwrap()).collect();
    assert_eq!(joined, "L".repeat(2500));
    assert_eq!(e[6]["flags"], serde_json::json!(["no_newline"]));
    // Human output: no raw escape or bidi character reaches the terminal.
    let out = run(&["cat", "--spool", t.p("spool").to_str().unwrap()], None);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(!text.contains('\u{1b}') && !text.contains('\u{202e}') && !text.contains('\0'));
    assert!(
        text.contains("\\u{001b}[31mred")
            && text.contains("\\u{202e}")
            && text.contains("\\xff\\xfe")
    );
    // --from
    let out = run(
        &[
            "cat",
            "--spool",
            t.p("spool").to_str().unwrap(),
            "--json",
            "--from",
            "5",
        ],
        None,
    );
    let first: serde_json::Value = serde_json::from_str(
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(first["seq"], 5);
}

#[test]
fn verify_exit_codes_and_report() {
    let t = Tmp::new();
    let pk = t.keygen();
    let cfg = t.config("append_only = \"off\"");
    assert!(
        append(&t, &cfg, "app", b"one\ntwo\nthree\n")
            .status
            .success()
    );
    let (code, v) = verify_json(&t, &["--pubkey", &pk]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["ok"], true);
    assert_eq!(v["key_authenticated"], true);
    assert_eq!(v["entries"], 3);
    assert_eq!(v["unsigned_tail"], 0);
    // The key from a file works too.
    let (code, _) = verify_json(&t, &["--pubkey", t.p("keys/host.pub").to_str().unwrap()]);
    assert_eq!(code, 0);
    // Human report.
    let out = run(
        &[
            "verify",
            "--spool",
            t.p("spool").to_str().unwrap(),
            "--pubkey",
            &pk,
        ],
        None,
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("INTACT") && text.contains("matches --pubkey"),
        "{text}"
    );
    // Tampered: a byte of a line changed.
    let seg = t.p("spool/0000000000000000.wlseg");
    let mut b = std::fs::read(&seg).unwrap();
    let at = b.windows(3).position(|w| w == b"two").unwrap();
    b[at] = b'T';
    std::fs::write(&seg, &b).unwrap();
    let (code, v) = verify_json(&t, &["--pubkey", &pk]);
    assert_eq!(code, 1, "{v}");
    assert_eq!(v["ok"], false);
    assert_eq!(v["failure"]["segment"], 0);
    assert!(v["failure"]["offset"].as_u64().unwrap() < at as u64);
    let out = run(&["verify", "--spool", t.p("spool").to_str().unwrap()], None);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("TAMPERING OR LOSS FOUND")
            && text.contains("FIRST PROBLEM    segment 0, byte offset"),
        "{text}"
    );
    // cat stops at the damage, exit 1.
    let out = run(&["cat", "--spool", t.p("spool").to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("TAMPERING OR LOSS"));
    // Usage and I/O errors: exit 2.
    let (code, _) = verify_json(&t, &["--pubkey", "ed25519:nonsense"]);
    assert_eq!(code, 2);
    let out = run(
        &["verify", "--spool", t.p("nowhere").to_str().unwrap()],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    let out = run(&["verify"], None);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn append_refuses_while_another_process_holds_the_spool() {
    let t = Tmp::new();
    t.keygen();
    let cfg = t.config("append_only = \"off\"");
    // A first append that keeps its standard input open holds the lock.
    let mut first = Command::new(bin())
        .args([
            "append",
            "--config",
            cfg.to_str().unwrap(),
            "--source",
            "slow",
        ])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut sin = first.stdin.take().unwrap();
    sin.write_all(b"held\n").unwrap();
    // Wait (with a deadline) until it has opened the spool.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let held = std::fs::File::open(t.p("spool/lock")).ok().map(|f| {
            rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockShared).is_err()
        });
        if held == Some(true) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "first append never took the lock"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = append(&t, &cfg, "second", b"refused\n");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in use by another process"), "{err}");
    drop(sin);
    assert!(first.wait().unwrap().success());
    let bodies: Vec<_> = entries(&t)
        .iter()
        .map(|e| e["body"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(bodies, ["held"]);
    // Once released, appending works again.
    assert!(append(&t, &cfg, "second", b"now\n").status.success());
}

/// Whether this is the CI run (`.ci/run` sets CI=true), where nothing may
/// be skipped for want of a tool or a capability.
fn in_ci() -> bool {
    std::env::var_os("CI").is_some()
}

/// Whether the test directory's file system takes the flags (ext4 does).
fn flags_supported(t: &Tmp) -> bool {
    let p = t.p("probe");
    std::fs::write(&p, b"x").unwrap();
    let f = std::fs::File::open(&p).unwrap();
    let ok = wormlog_spool::worm::set_append_only(&f).is_ok();
    let _ = wormlog_spool::worm::clear_flags(&p);
    ok
}

#[test]
fn append_only_and_immutable_flags_are_really_set() {
    let t = Tmp::new();
    t.keygen();
    let cfg = t.config("append_only = \"require\"\nsegment_max_bytes = \"1MiB\"");
    if !flags_supported(&t) {
        // CI runs as root on ext4: there the flags must work, not fall back.
        assert!(
            !in_ci(),
            "CI must be able to set chattr flags (root on ext4)"
        );
        // A clear outcome where the flags cannot be set: "require" refuses.
        let out = append(&t, &cfg, "app", b"x\n");
        assert_eq!(out.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&out.stderr).contains("CAP_LINUX_IMMUTABLE"));
        eprintln!(
            "NOTE: this file system (or process) cannot set chattr flags; checked the refusal instead"
        );
        return;
    }
    // Enough lines for two segments.
    let line = "x".repeat(300);
    let input: String = (0..4000).map(|i| format!("{i} {line}\n")).collect();
    let out = append(&t, &cfg, "app", input.as_bytes());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let segs: Vec<PathBuf> = wormlog_spool::segment::list_segments(&t.p("spool"))
        .unwrap()
        .0
        .into_iter()
        .map(|(_, p)| p)
        .collect();
    assert!(segs.len() >= 2);
    let (last, sealed) = segs.split_last().unwrap();
    for s in sealed {
        assert_eq!(
            wormlog_spool::worm::flags_of(s).unwrap(),
            (false, true),
            "{} immutable",
            s.display()
        );
        // Even root cannot write, truncate, rename or delete it.
        assert!(std::fs::OpenOptions::new().append(true).open(s).is_err());
        assert!(std::fs::remove_file(s).is_err());
        assert!(std::fs::rename(s, t.p("moved")).is_err());
    }
    assert_eq!(
        wormlog_spool::worm::flags_of(last).unwrap(),
        (true, false),
        "active segment append-only"
    );
    assert!(
        std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(last)
            .is_err(),
        "no truncation"
    );
    assert!(
        std::fs::OpenOptions::new().write(true).open(last).is_err(),
        "no writes except appends"
    );
    assert!(std::fs::OpenOptions::new().append(true).open(last).is_ok());
    // lsattr, the operator's view, agrees.
    if let Ok(out) = Command::new("lsattr").arg(last).output() {
        let s = String::from_utf8_lossy(&out.stdout);
        assert!(
            s.split_whitespace().next().unwrap_or("").contains('a'),
            "{s}"
        );
    }
    let (code, v) = verify_json(&t, &[]);
    assert_eq!(code, 0, "{v}");
}

#[test]
fn without_cap_linux_immutable_try_warns_and_require_refuses() {
    let t = Tmp::new();
    t.keygen();
    if !flags_supported(&t) || Command::new("setpriv").arg("--version").output().is_err() {
        assert!(!in_ci(), "CI must have setpriv and chattr support");
        eprintln!(
            "NOTE: needs setpriv and a file system with chattr flags; checked in CI as root on ext4"
        );
        return;
    }
    // `wormlog append` without CAP_LINUX_IMMUTABLE in its bounding set.
    let append_without_cap = |cfg: &std::path::Path, input: &[u8]| {
        run_with(
            Command::new("setpriv")
                .args(["--bounding-set=-linux_immutable", "--", bin()])
                .args(["append", "--source", "app", "--config"])
                .arg(cfg),
            Some(input),
        )
    };
    let cfg = t.config("append_only = \"require\"");
    let out = append_without_cap(&cfg, b"x\n");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("append_only = \"require\"") && err.contains("CAP_LINUX_IMMUTABLE"),
        "{err}"
    );
    let cfg = t.config("append_only = \"try\"");
    let out = append_without_cap(&cfg, b"kept anyway\n");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("warning") && err.contains("NOT active"),
        "{err}"
    );
    let recs = cat_json(&t);
    let start = recs.iter().rfind(|r| r["kind"] == "start").unwrap();
    assert_eq!(start["append_only_active"], false);
    assert!(
        recs.iter()
            .any(|r| r["kind"] == "alert" && r["code"] == "append_only_unavailable"),
        "{recs:?}"
    );
    assert!(recs.iter().any(|r| r["body"] == "kept anyway"));
}
