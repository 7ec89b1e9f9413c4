//! Export and one-entry disclosure (docs/FORMAT.md §12) through the real
//! binaries: a collector fed by a real agent makes the bundles
//! (`wormlog-collector export` / `disclose` over HTTP with a token), and
//! `wormlog verify --bundle` checks them with only the agent's first key
//! and the collector's key; every part changed — and the bundle signed
//! again with the collector's own key, so that the inner checks are what
//! catches it — fails. The independent Python verifier agrees. Search over
//! encrypted bodies with and without the collector's read identity.

mod common;

use base64::Engine;
use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

struct Reader {
    s: Setup,
    token_file: PathBuf,
    collector: Option<Proc>,
}

/// A change made to a bundle's lines before it is signed again.
type Change = Box<dyn Fn(&mut Vec<Value>)>;

/// A collector on loopback with an auditor `audra` (token in a file),
/// `extra` appended to its configuration.
fn reader_setup(extra: &str) -> Reader {
    let mut s = Setup::new();
    s.write_collector_config("");
    let (token, hash) = new_token();
    let token_file = s.d.p("audra.token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let cfg = s.d.p("collector.toml");
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str(&format!(
        "\n[[users]]\nname = \"audra\"\nroles = [\"auditor\"]\n{hash}\n{extra}"
    ));
    std::fs::write(&cfg, text).unwrap();
    let collector = Some(start_collector(&mut s));
    Reader {
        s,
        token_file,
        collector,
    }
}

impl Reader {
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.s.port)
    }

    fn cli(&self, args: &[&str]) -> Output {
        let mut all = args.to_vec();
        let url = self.url();
        let tf = self.token_file.display().to_string();
        all.extend(["--url", &url, "--token-file", &tf]);
        Command::new(collector_bin()).args(&all).output().unwrap()
    }

    fn receipt_key(&self) -> String {
        std::fs::read_to_string(self.s.d.p("store/keys/receipt.pub"))
            .unwrap()
            .trim()
            .to_owned()
    }

    /// Waits until entry `seq` can be disclosed (a countersigned
    /// checkpoint after it), and writes its bundle to `out`.
    fn disclose(&self, seq: u64, out: &Path) {
        let seq = seq.to_string();
        wait_for(
            "a disclosure",
            Duration::from_secs(30),
            || {
                self.cli(&[
                    "disclose",
                    "--agent",
                    "web-01",
                    "--seq",
                    &seq,
                    "--out",
                    out.to_str().unwrap(),
                ])
                .status
                .success()
            },
            || self.collector.as_ref().unwrap().log(),
        );
    }
}

/// The independent Python verifier's verdict (tests/pyverify, written
/// from docs/FORMAT.md §12 alone).
fn pyverify(bundle: &Path, pubkey: &str, collector: &str) -> Option<Value> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/pyverify/wormlog_bundle.py");
    let o = Command::new("python3")
        .arg(script)
        .args(["--json", "--bundle"])
        .arg(bundle)
        .args(["--pubkey", pubkey, "--collector-pubkey", collector])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|_| panic!("python: {}", String::from_utf8_lossy(&o.stderr)));
    assert_eq!(
        o.status.code(),
        Some(if v["ok"] == true { 0 } else { 1 }),
        "{v}"
    );
    Some(v)
}

/// The lines of a bundle as JSON.
fn lines(b: &[u8]) -> Vec<Value> {
    std::str::from_utf8(b)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Writes `lines` back and signs them again with the collector's receipt
/// key (what a thief of that key alone could do).
fn resign(r: &Reader, mut lines: Vec<Value>, out: &Path) {
    lines.pop();
    let mut text = String::new();
    for l in &lines {
        text.push_str(&serde_json::to_string(l).unwrap());
        text.push('\n');
    }
    let seed: [u8; 32] = std::fs::read(r.s.d.p("store/keys/receipt.key"))
        .unwrap()
        .try_into()
        .unwrap();
    let key = ed25519_dalek::SigningKey::from_bytes(&seed);
    let sig =
        wormlog_spool::keys::sign_with(&key, wormlog_spool::keys::BUNDLE_CONTEXT, text.as_bytes());
    let pk = wormlog_spool::keys::format_pubkey(&key.verifying_key().to_bytes());
    text.push_str(&serde_json::json!({"signature": {"collector_pubkey": pk, "signature": wormlog_spool::hash::hex(&sig)}}).to_string());
    text.push('\n');
    std::fs::write(out, text).unwrap();
}

/// Flips one bit of a base64 record's byte `at`.
fn flip_b64(v: &mut Value, at: usize) {
    let mut b = B64.decode(v.as_str().unwrap()).unwrap();
    let i = at.min(b.len() - 1);
    b[i] ^= 1;
    *v = Value::String(B64.encode(b));
}

/// Flips one bit of a hex string.
fn flip_hex(v: &mut Value) {
    let s = v.as_str().unwrap();
    let c = if s.starts_with('0') { '1' } else { '0' };
    *v = Value::String(format!("{c}{}", &s[1..]));
}

fn start_clear_agent(r: &Reader, n: usize) -> Proc {
    let cfg = r.s.write_agent_config(
        "agent",
        &format!("url = \"http://127.0.0.1:{}\"\n", r.s.port),
    );
    write_lines(&r.s.d.p("logs/app.log"), 0, n);
    let agent = r.s.start_agent(&cfg, "agent");
    let store = r.s.d.p("store");
    wait_for(
        "the lines stored",
        Duration::from_secs(30),
        || next_seq_in_store(&store) > n as u64 && stored_lines(&store).len() == n,
        || agent.log(),
    );
    agent
}

/// The seq of the entry holding line `i`, found with the query command.
fn seq_of(r: &Reader, i: usize) -> u64 {
    let text = format!("line {i:07} ");
    let o = r.cli(&[
        "query", "--agent", "web-01", "--text", &text, "--oldest", "--all",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let hits: Vec<Value> = String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(hits[0]["body"], line(i));
    hits[0]["seq"].as_u64().unwrap()
}

#[test]
fn a_disclosed_entry_verifies_alone_and_any_change_fails() {
    let r = reader_setup("");
    let _agent = start_clear_agent(&r, 60);
    let seq = seq_of(&r, 17);
    let b = r.s.d.p("d.wlbundle");
    r.disclose(seq, &b);
    let ck = r.receipt_key();
    let pk = r.s.pubkey.clone();
    let (code, out, err) = verify_bundle(&b, &pk, Some(&ck), &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&line(17)), "{out}");
    assert!(
        err.contains("OK: entry") && err.contains("the key given"),
        "{err}"
    );
    let (code, out, _) = verify_bundle(&b, &pk, Some(&ck), &["--json"]);
    assert_eq!(code, 0);
    let rep: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(rep["entry"]["body"], line(17));
    assert_eq!(rep["kind"], "disclosure");
    if let Some(py) = pyverify(&b, &pk, &ck) {
        assert_eq!(py["ok"], true, "{py}");
        assert_eq!(py["entry"]["body"]["text"], line(17));
        assert_eq!(py["tree_size"], rep["tree_size"]);
    }
    // Without the collector's key it verifies, and says it is not
    // authenticated; with another key, or another agent key, it fails.
    let (code, _, err) = verify_bundle(&b, &pk, None, &[]);
    assert_eq!(code, 0);
    assert!(
        err.contains("NOT the key of a collector you trust"),
        "{err}"
    );
    assert_eq!(verify_bundle(&b, &pk, Some(&pk), &[]).0, 1);
    assert_eq!(verify_bundle(&b, &ck, Some(&ck), &[]).0, 1);

    // The bundle holds no other line, in any form.
    let bytes = std::fs::read(&b).unwrap();
    let mut decoded = Vec::new();
    for l in lines(&bytes) {
        for v in [
            &l["ledger"]["record"],
            &l["entry"]["record"],
            &l["checkpoint"]["record"],
        ] {
            if let Some(s) = v.as_str() {
                decoded.extend(B64.decode(s).unwrap());
            }
        }
    }
    for i in (0..60).filter(|i| *i != 17) {
        let needle = format!("line {i:07}");
        for hay in [&bytes, &decoded] {
            assert!(
                !hay.windows(needle.len()).any(|w| w == needle.as_bytes()),
                "{needle} in the disclosure"
            );
        }
    }

    // Each part changed, the bundle signed again: the inner checks fail.
    let orig = lines(&bytes);
    let find = |k: &str| orig.iter().position(|l| l.get(k).is_some()).unwrap();
    let (e, c, rc, lg) = (
        find("entry"),
        find("checkpoint"),
        find("receipt"),
        find("ledger"),
    );
    let cases: Vec<(&str, Change)> = vec![
        (
            "entry body byte",
            Box::new(move |v: &mut Vec<Value>| flip_b64(&mut v[e]["entry"]["record"], 10_000)),
        ),
        (
            "entry seq",
            Box::new(move |v: &mut Vec<Value>| flip_b64(&mut v[e]["entry"]["record"], 4)),
        ),
        (
            "proof",
            Box::new(move |v: &mut Vec<Value>| flip_hex(&mut v[c]["checkpoint"]["proof"][0])),
        ),
        (
            "proof shortened",
            Box::new(move |v: &mut Vec<Value>| {
                v[c]["checkpoint"]["proof"].as_array_mut().unwrap().pop();
            }),
        ),
        (
            "checkpoint root",
            Box::new(move |v: &mut Vec<Value>| flip_b64(&mut v[c]["checkpoint"]["record"], 70)),
        ),
        (
            "checkpoint signature",
            Box::new(move |v: &mut Vec<Value>| {
                flip_b64(&mut v[c]["checkpoint"]["record"], 100_000)
            }),
        ),
        (
            "receipt signature",
            Box::new(move |v: &mut Vec<Value>| flip_hex(&mut v[rc]["receipt"]["signature"])),
        ),
        (
            "receipt root",
            Box::new(move |v: &mut Vec<Value>| flip_hex(&mut v[rc]["receipt"]["root"])),
        ),
        (
            "receipt removed",
            Box::new(move |v: &mut Vec<Value>| {
                v.remove(rc);
            }),
        ),
        (
            "genesis key",
            Box::new(move |v: &mut Vec<Value>| flip_b64(&mut v[lg]["ledger"]["record"], 100_000)),
        ),
        (
            "entry_key added",
            Box::new(move |v: &mut Vec<Value>| {
                v[e]["entry"]["entry_key"] = Value::String("00".repeat(32))
            }),
        ),
        (
            "header seq",
            Box::new(|v: &mut Vec<Value>| {
                v[0]["from_seq"] = Value::from(v[0]["from_seq"].as_u64().unwrap() + 1)
            }),
        ),
        (
            "header agent",
            Box::new(|v: &mut Vec<Value>| v[0]["agent"] = Value::String("web-02".into())),
        ),
    ];
    let t = r.s.d.p("t.wlbundle");
    for (what, change) in &cases {
        let mut v = orig.clone();
        change(&mut v);
        resign(&r, v, &t);
        let (code, _, err) = verify_bundle(&t, &pk, Some(&ck), &[]);
        assert_eq!(code, 1, "{what}: {err}");
        assert!(err.contains("DOES NOT VERIFY"), "{what}: {err}");
        if let Some(py) = pyverify(&t, &pk, &ck) {
            assert_eq!(py["ok"], false, "python accepts {what}");
        }
    }
    // Unchanged but signed again: still good (the re-signing is sound).
    resign(&r, orig.clone(), &t);
    assert_eq!(verify_bundle(&t, &pk, Some(&ck), &[]).0, 0);
    // Any byte changed without signing again: the signature fails.
    for at in [10, bytes.len() / 3, bytes.len() / 2, bytes.len() - 10] {
        let mut x = bytes.clone();
        x[at] ^= 1;
        std::fs::write(&t, &x).unwrap();
        assert_eq!(verify_bundle(&t, &pk, Some(&ck), &[]).0, 1, "byte {at}");
    }
    // Cut short: refused.
    std::fs::write(&t, &bytes[..bytes.len() - 1]).unwrap();
    assert_eq!(verify_bundle(&t, &pk, Some(&ck), &[]).0, 1);
}

#[test]
fn an_export_verifies_and_a_removed_or_reordered_record_does_not() {
    let mut r = reader_setup("");
    // 3000 lines at once: more than a search block (1024 records) between
    // two checkpoints, so the range starts inside a block that does not
    // start with a checkpoint.
    let _agent = start_clear_agent(&r, 3000);
    let (from, to) = (seq_of(&r, 2040), seq_of(&r, 2250));
    let b = r.s.d.p("e.wlbundle");
    wait_for(
        "an export",
        Duration::from_secs(30),
        || {
            r.cli(&[
                "export",
                "--agent",
                "web-01",
                "--from-seq",
                &from.to_string(),
                "--to-seq",
                &to.to_string(),
                "--out",
                b.to_str().unwrap(),
            ])
            .status
            .success()
        },
        || r.collector.as_ref().unwrap().log(),
    );
    let (ck, pk) = (r.receipt_key(), r.s.pubkey.clone());
    let (code, out, err) = verify_bundle(&b, &pk, Some(&ck), &["--json"]);
    assert_eq!(code, 0, "{err}");
    let rep: Value = serde_json::from_str(&out).unwrap();
    assert!(
        rep["first_seq"].as_u64().unwrap() <= from && rep["last_seq"].as_u64().unwrap() >= to,
        "{rep}"
    );
    assert!(rep["receipts"].as_u64().unwrap() >= 1);
    if let Some(py) = pyverify(&b, &pk, &ck) {
        assert_eq!(py["ok"], true, "{py}");
        for k in [
            "records",
            "entries",
            "checkpoints",
            "first_seq",
            "last_seq",
            "tree_size",
            "receipts",
            "consistent_to",
        ] {
            assert_eq!(py[k], rep[k], "{k}");
        }
    }
    // cat --bundle prints every line of the range, in order.
    let o = Command::new(agent_bin())
        .args(["cat", "--json", "--bundle"])
        .arg(&b)
        .args(["--pubkey", &pk, "--collector-pubkey", &ck])
        .output()
        .unwrap();
    assert!(o.status.success());
    let bodies: Vec<String> = String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["kind"] == "entry")
        .map(|v| v["body"].as_str().unwrap().to_owned())
        .collect();
    let want: Vec<String> = (2040..=2250).map(line).collect();
    let at = bodies.iter().position(|x| *x == line(2040)).unwrap();
    assert_eq!(&bodies[at..at + want.len()], &want[..]);

    // From the very start (the genesis record in the range): the ledger
    // still begins with it, and both verifiers take the bundle (this was
    // refused as "the genesis record is not stored").
    let b0 = r.s.d.p("e0.wlbundle");
    let o = r.cli(&[
        "export",
        "--agent",
        "web-01",
        "--from-seq",
        "0",
        "--to-seq",
        &seq_of(&r, 5).to_string(),
        "--out",
        b0.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (code, out, err) = verify_bundle(&b0, &pk, Some(&ck), &["--json"]);
    assert_eq!(code, 0, "{err}");
    let rep0: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(rep0["first_seq"], 0, "{rep0}");
    if let Some(py) = pyverify(&b0, &pk, &ck) {
        assert_eq!(py["ok"], true, "{py}");
        assert_eq!(py["records"], rep0["records"]);
    }

    let orig = lines(&std::fs::read(&b).unwrap());
    let recs: Vec<usize> = orig
        .iter()
        .enumerate()
        .filter(|(_, l)| l.get("record").is_some())
        .map(|(i, _)| i)
        .collect();
    let t = r.s.d.p("t.wlbundle");
    let mid = recs[recs.len() / 2];
    let cases: Vec<(&str, Change)> = vec![
        (
            "a record removed",
            Box::new(move |v: &mut Vec<Value>| {
                v.remove(mid);
            }),
        ),
        (
            "two records swapped",
            Box::new(move |v: &mut Vec<Value>| v.swap(mid, mid + 1)),
        ),
        (
            "the last checkpoint removed",
            Box::new({
                let last = *recs.last().unwrap();
                move |v: &mut Vec<Value>| {
                    v.remove(last);
                }
            }),
        ),
        (
            "a record's byte",
            Box::new(move |v: &mut Vec<Value>| flip_b64(&mut v[mid]["record"]["record"], 60)),
        ),
        (
            "the first checkpoint's frontier",
            Box::new({
                let first = recs[0];
                move |v: &mut Vec<Value>| flip_b64(&mut v[first]["record"]["record"], 140)
            }),
        ),
        (
            "the range widened",
            Box::new(|v: &mut Vec<Value>| v[0]["to_seq"] = Value::from(1_000_000u64)),
        ),
    ];
    for (what, change) in &cases {
        let mut v = orig.clone();
        change(&mut v);
        resign(&r, v, &t);
        let (code, _, err) = verify_bundle(&t, &pk, Some(&ck), &[]);
        assert_eq!(code, 1, "{what}: {err}");
        if let Some(py) = pyverify(&t, &pk, &ck) {
            assert_eq!(py["ok"], false, "python accepts {what}");
        }
    }

    // The index's list of key records lost: it is built again, and the
    // export still carries its ledger.
    r.collector.take().unwrap().stop();
    std::fs::remove_file(r.s.d.p("store/index/web-01/keys")).unwrap();
    r.collector = Some(start_collector(&mut r.s));
    let again = r.cli(&[
        "export",
        "--agent",
        "web-01",
        "--from-seq",
        &from.to_string(),
        "--to-seq",
        &to.to_string(),
        "--out",
        t.to_str().unwrap(),
    ]);
    assert!(again.status.success(), "{again:?}");
    let (code, _, err) = verify_bundle(&t, &pk, Some(&ck), &[]);
    assert_eq!(code, 0, "{err}");
}

/// An age identity made by `age-keygen`: its file and recipient.
fn age_identity(dir: &Path, name: &str) -> (PathBuf, String) {
    let path = dir.join(name);
    let out = Command::new("age-keygen")
        .arg("-o")
        .arg(&path)
        .output()
        .expect("age-keygen (Debian package age) is needed");
    assert!(out.status.success());
    let recipient = String::from_utf8_lossy(&out.stderr)
        .lines()
        .find_map(|l| l.strip_prefix("Public key: "))
        .unwrap()
        .trim()
        .to_owned();
    (path, recipient)
}

#[test]
fn encrypted_bodies_are_searched_with_the_read_identity_and_disclosed_one_by_one() {
    let tmp = tempfile::tempdir().unwrap();
    let (id, recipient) = age_identity(tmp.path(), "read.age");
    let mut r = reader_setup(&format!("[read]\nidentity = \"{}\"\n", id.display()));
    let cfg = r.s.write_agent_config_with(
        "agent",
        &format!("encrypt_to = [\"{recipient}\"]\n"),
        &format!("url = \"http://127.0.0.1:{}\"\n", r.s.port),
    );
    write_lines(&r.s.d.p("logs/app.log"), 0, 80);
    let agent = r.s.start_agent(&cfg, "agent");
    let store = r.s.d.p("store");
    wait_for(
        "80 lines forwarded",
        Duration::from_secs(30),
        || next_seq_in_store(&store) > 82,
        || agent.log(),
    );
    // The read identity opens the bodies for the search.
    let seq = seq_of(&r, 33);
    let b = r.s.d.p("d.wlbundle");
    r.disclose(seq, &b);
    let (ck, pk) = (r.receipt_key(), r.s.pubkey.clone());
    let (code, out, err) = verify_bundle(&b, &pk, Some(&ck), &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&line(33)), "{out}");
    let l = lines(&std::fs::read(&b).unwrap());
    let key = l
        .iter()
        .find_map(|x| x["entry"]["entry_key"].as_str())
        .expect("the entry's own key");
    assert_eq!(key.len(), 64);
    // No plaintext of the line in the bundle, only its ciphertext and key.
    let raw = std::fs::read(&b).unwrap();
    assert!(
        !raw.windows(12)
            .any(|w| w == format!("line {:07}", 33).as_bytes())
    );
    if let Some(py) = pyverify(&b, &pk, &ck) {
        assert_eq!(py["ok"], true, "{py}");
        assert_eq!(py["entry"]["body"]["text"], line(33));
    }
    // A wrong key for the entry: refused.
    let mut v = l.clone();
    let e = v.iter().position(|x| x.get("entry").is_some()).unwrap();
    flip_hex(&mut v[e]["entry"]["entry_key"]);
    let t = r.s.d.p("t.wlbundle");
    resign(&r, v, &t);
    assert_eq!(verify_bundle(&t, &pk, Some(&ck), &[]).0, 1);

    // Without the read identity the search covers clear fields only, and
    // says so; a disclosure of an encrypted entry is refused.
    r.collector.take().unwrap().stop();
    let cfgp = r.s.d.p("collector.toml");
    let text = std::fs::read_to_string(&cfgp).unwrap();
    std::fs::write(&cfgp, text.split("[read]").next().unwrap()).unwrap();
    r.collector = Some(start_collector(&mut r.s));
    let o = r.cli(&["query", "--agent", "web-01", "--text", "line 0000033"]);
    assert!(o.status.success());
    assert!(o.stdout.is_empty(), "nothing can match in encrypted bodies");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("encrypted entries were not searched") && err.contains("no read identity"),
        "{err}"
    );
    let o = r.cli(&[
        "disclose",
        "--agent",
        "web-01",
        "--seq",
        &seq.to_string(),
        "--out",
        t.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no read identity"));
    drop(agent);
}

/// The query's records (JSON lines) and its standard error.
fn query(r: &Reader, args: &[&str]) -> (Vec<Value>, String) {
    let mut all = vec!["query", "--agent", "web-01"];
    all.extend(args);
    let o = r.cli(&all);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    (
        String::from_utf8(o.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect(),
        String::from_utf8(o.stderr).unwrap(),
    )
}

fn bodies(v: &[Value]) -> Vec<String> {
    v.iter()
        .filter_map(|x| x["body"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn search_pages_survive_new_arrivals_and_the_index_survives_damage() {
    let mut r = reader_setup("");
    let agent = start_clear_agent(&r, 300);
    // Newest first, 50 a page: the cursor of the next page.
    let (page1, err) = query(&r, &["--text", "payload", "--limit", "50"]);
    assert_eq!(
        bodies(&page1),
        (250..300).rev().map(line).collect::<Vec<_>>()
    );
    let cursor = err
        .split("--cursor ")
        .nth(1)
        .expect("a next page")
        .trim()
        .to_owned();
    // New lines arrive; the next page goes on where the first stopped.
    write_lines(&r.s.d.p("logs/app.log"), 300, 100);
    let store = r.s.d.p("store");
    wait_for(
        "400 lines",
        Duration::from_secs(30),
        || stored_lines(&store).len() == 400,
        || agent.log(),
    );
    let (page2, _) = query(
        &r,
        &["--text", "payload", "--limit", "50", "--cursor", &cursor],
    );
    assert_eq!(
        bodies(&page2),
        (200..250).rev().map(line).collect::<Vec<_>>()
    );
    // Every page to the end, oldest first: each line once, in order.
    let (all, _) = query(
        &r,
        &["--text", "payload", "--oldest", "--limit", "7", "--all"],
    );
    assert_eq!(bodies(&all), (0..400).map(line).collect::<Vec<_>>());
    // Filters: source, kind, time.
    assert_eq!(query(&r, &["--source", "nope"]).0.len(), 0);
    assert_eq!(
        query(&r, &["--source", "app", "--kind", "entry", "--all"])
            .0
            .len(),
        400
    );
    let starts = query(&r, &["--kind", "start", "--all"]).0;
    assert!(!starts.is_empty() && starts.iter().all(|v| v["kind"] == "start"));
    let ts = |i: usize| all[i]["ts"].as_str().unwrap().to_owned();
    let (window, _) = query(
        &r,
        &[
            "--text",
            "payload",
            "--oldest",
            "--all",
            "--from",
            &ts(100),
            "--to",
            &ts(300),
        ],
    );
    let got = bodies(&window);
    assert!(
        got.contains(&line(100))
            && !got.contains(&line(300))
            && got.iter().all(|b| all.iter().any(|a| a["body"] == *b)),
        "{got:?}"
    );
    // Whole words: a number inside a longer one is not found.
    assert!(query(&r, &["--text", "line 000003"]).0.is_empty());
    assert_eq!(
        bodies(&query(&r, &["--text", "LINE 0000003"]).0),
        vec![line(3)]
    );
    // A bad parameter is a clear error.
    let o = r.cli(&["query", "--agent", "web-01", "--kind", "nope"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a record kind"));

    // The index is derived data: damaged on disk, it is built again, and
    // the answers do not change.
    r.collector.take().unwrap().stop();
    let ix = r.s.d.p("store/index/web-01");
    let blocks = std::fs::read(ix.join("blocks")).unwrap();
    std::fs::write(ix.join("blocks"), &blocks[..blocks.len() - 30]).unwrap();
    // A filter with bits lost would skip a block that holds a match.
    let mut words = std::fs::read(ix.join("words")).unwrap();
    for b in words.iter_mut() {
        *b = 0;
    }
    std::fs::write(ix.join("words"), &words).unwrap();
    r.collector = Some(start_collector(&mut r.s));
    let (again, _) = query(
        &r,
        &["--text", "payload", "--oldest", "--limit", "7", "--all"],
    );
    assert_eq!(bodies(&again), bodies(&all));
    r.collector.take().unwrap().stop();
    std::fs::remove_dir_all(r.s.d.p("store/index")).unwrap();
    r.collector = Some(start_collector(&mut r.s));
    assert_eq!(
        bodies(&query(&r, &["--text", "line 0000123"]).0),
        vec![line(123)]
    );
    drop(agent);
}
