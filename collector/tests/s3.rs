//! The S3 store backend against a real S3 with Object Lock: Ceph's radosgw
//! from Debian's packages, started by `tests/s3/ceph-s3.sh up`. No emulator:
//! they get Object Lock wrong.
//!
//! These tests are `#[ignore]`d in `cargo test --workspace` (they need the
//! server) and run by `tests/s3/run.sh` (called from
//! `packaging/slow-tests.sh`), which starts radosgw and sets
//! `WORMLOG_TEST_S3` to its endpoint and the `AWS_*` credentials. Run with
//! `--ignored` and no endpoint, each fails and says why.

mod common;

use common::*;
use std::process::Command;
use std::sync::{Arc, Barrier};
use std::time::{Duration, SystemTime};
use wormlog_collector::s3::range::Claim;
use wormlog_collector::s3::sync::{Kept, Remote};
use wormlog_collector::s3::{S3, S3Config};

/// The endpoint of the real S3, or a failure that says how to get one.
fn endpoint() -> String {
    std::env::var("WORMLOG_TEST_S3").unwrap_or_else(|_| {
        panic!(
            "these tests need a real S3 with Object Lock: run tests/s3/run.sh \
             (radosgw from Debian's packages), or set WORMLOG_TEST_S3 and AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"
        )
    })
}

/// Bucket names of one test (its own, so tests do not meet).
fn buckets(test: &str) -> (String, String) {
    let n = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
        % 1_000_000_000;
    (format!("wl-{test}-{n}"), format!("wl-{test}-{n}-heads"))
}

fn s3_config(bucket: &str, heads: &str) -> S3Config {
    S3Config {
        endpoint: Some(endpoint()),
        region: "us-east-1".into(),
        bucket: bucket.into(),
        heads_bucket: heads.into(),
        prefix: String::new(),
        retention: Duration::from_secs(86_400),
        path_style: true,
        credentials_file: None,
    }
}

fn store_section(bucket: &str, heads: &str) -> String {
    format!(
        "\n[store]\nkind = \"s3\"\nendpoint = \"{}\"\nbucket = \"{bucket}\"\nheads_bucket = \"{heads}\"\nretention_days = 1\n",
        endpoint()
    )
}

/// A collector config in `<name>.toml` with its own store directory and id,
/// kept in the buckets.
fn collector_config(s: &Setup, name: &str, bucket: &str, heads: &str) -> std::path::PathBuf {
    let path = s.d.p(&format!("{name}.toml"));
    std::fs::write(
        &path,
        format!(
            "[collector]\nlisten = \"127.0.0.1:0\"\nstore_dir = \"{}\"\nid = \"{name}\"\n\n[[agents]]\nid = \"web-01\"\npubkey = \"{}\"\n{}",
            s.d.p(&format!("store-{name}")).display(),
            s.pubkey,
            store_section(bucket, heads)
        ),
    )
    .unwrap();
    path
}

/// Starts `wormlog-collector serve --config cfg`: the process and its port.
fn serve(s: &Setup, cfg: &std::path::Path, log: &str) -> (Proc, u16) {
    let p = spawn(
        &collector_bin(),
        &["serve", "--config", cfg.to_str().unwrap()],
        s.d.p(log),
    );
    let mut port = None;
    wait_for(
        "the collector to listen",
        Duration::from_secs(30),
        || {
            port = p
                .log()
                .split("listening on 127.0.0.1:")
                .nth(1)
                .and_then(|r| r.split_whitespace().next()?.parse().ok());
            port.is_some()
        },
        || p.log(),
    );
    (p, port.unwrap())
}

/// How many lines of web-01 a store holds (0 before its first batch).
fn kept_lines(store: &std::path::Path) -> usize {
    let segments = std::fs::read_dir(store.join("agents/web-01"))
        .map(|d| {
            d.flatten()
                .any(|e| e.path().extension().is_some_and(|x| x == "wlseg"))
        })
        .unwrap_or(false);
    if segments {
        stored_lines(store).len()
    } else {
        0
    }
}

/// An agent (config `agent-<round>`) sends lines `written..written + n`
/// through the collector on `port` until `store` holds them all, then
/// stops; the lines written so far.
fn send_through(
    s: &Setup,
    round: usize,
    port: u16,
    store: &str,
    written: usize,
    n: usize,
    logs: &dyn Fn() -> String,
) -> usize {
    let cfg = s.write_agent_config(
        &format!("agent-{round}"),
        &format!("url = \"http://127.0.0.1:{port}\""),
    );
    write_lines(&s.d.p("logs/app.log"), written, n);
    let agent = s.start_agent(&cfg, &format!("agent-{round}"));
    let store = s.d.p(store);
    let want = written + n;
    wait_for(
        &format!("{want} lines in {}", store.display()),
        Duration::from_secs(60),
        || kept_lines(&store) == want,
        || format!("{}\n{}", logs(), agent.log()),
    );
    agent.stop();
    want
}

fn run_ok(args: &[&str]) -> String {
    let o = Command::new(collector_bin()).args(args).output().unwrap();
    assert!(
        o.status.success(),
        "{args:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The claims of web-01 in the heads bucket, in order: each starts where
/// the one before ends.
fn claims(s3: &S3, agent: &str) -> Vec<Claim> {
    let keys = s3
        .list(true, &format!("claims/{agent}/"), None, usize::MAX)
        .unwrap();
    let v: Vec<Claim> = keys
        .iter()
        .map(|k| serde_json::from_slice(&s3.get_head(k).unwrap().unwrap()).unwrap())
        .collect();
    for w in v.windows(2) {
        assert_eq!(
            w[0].next_seq, w[1].first_seq,
            "claims not contiguous: {v:?}"
        );
    }
    v
}

#[test]
#[ignore = "needs a real S3 with Object Lock: tests/s3/run.sh"]
fn kept_objects_are_locked_in_compliance_mode_and_the_owner_cannot_delete_them() {
    let (bucket, heads) = buckets("lock");
    let s = Setup::new();
    let cfg = collector_config(&s, "c1", &bucket, &heads);
    let cfg_s = cfg.to_str().unwrap();
    run_ok(&["create-buckets", "--config", cfg_s]);
    let (c1, port) = serve(&s, &cfg, "c1.log");
    let agent_cfg = s.write_agent_config("agent", &format!("url = \"http://127.0.0.1:{port}\""));
    write_lines(&s.d.p("logs/app.log"), 0, 500);
    let agent = s.start_agent(&agent_cfg, "agent");
    let store = s.d.p("store-c1");
    wait_for(
        "500 lines kept",
        Duration::from_secs(60),
        || kept_lines(&store) == 500,
        || format!("{}\n{}", c1.log(), agent.log()),
    );

    // Nothing more arrives while the bucket is looked at.
    agent.stop();
    let s3 = S3::new(&s3_config(&bucket, &heads)).unwrap();
    // The newest countersigned checkpoint is published in the bucket too,
    // as a signed note that opens with the collector's verifier key.
    let vkey = std::fs::read_to_string(s.d.p("store-c1/keys/checkpoint.vkey")).unwrap();
    wait_for(
        "the checkpoint note in the bucket",
        Duration::from_secs(20),
        || {
            s3.get_head("checkpoints/web-01/c1")
                .unwrap()
                .is_some_and(|b| {
                    wormlog_collector::note::open(&String::from_utf8_lossy(&b), &vkey).is_ok()
                })
        },
        || c1.log(),
    );
    // The agent's last batch (its stop record and checkpoint) may still be
    // on its way into the bucket: a range's object is put before its claim.
    // Once the collector is done, every object has its claim.
    let mut objects = Vec::new();
    wait_for(
        "a claim for every range object",
        Duration::from_secs(20),
        || {
            objects = s3.list(false, "ranges/web-01/", None, usize::MAX).unwrap();
            !objects.is_empty() && claims(&s3, "web-01").len() == objects.len()
        },
        || c1.log(),
    );
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    for key in &objects {
        let lock = s3.lock_of(key).unwrap();
        assert_eq!(lock.mode.as_deref(), Some("COMPLIANCE"), "{key}");
        let until = lock.retain_until.unwrap();
        assert!(
            (now + 86_400 - 600..=now + 86_400 + 60).contains(&until),
            "{key}: retained until {until}, now {now}"
        );
        // The bucket's owner (these credentials) cannot delete it…
        let e = s3
            .delete_kept_version(key, lock.version_id.as_deref().unwrap())
            .unwrap_err();
        assert_eq!(e.status(), Some(403), "{key}: {e}");
    }
    // …nor overwrite it: a write of the same name is a new version, and
    // the first stays, locked, and is what a reader takes.
    let first = &objects[0];
    let original = s3.get_kept(first).unwrap().unwrap();
    s3.put_kept(first, b"rewritten").unwrap();
    let versions = s3.kept_versions(first).unwrap();
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[0].1, original);

    // A collector that lost its disk: a fresh store taken from the bucket
    // holds every line once, in order, and verifies.
    c1.stop();
    let cfg2 = collector_config(&s, "c2", &bucket, &heads);
    let out = run_ok(&["sync", "--config", cfg2.to_str().unwrap()]);
    assert!(out.contains("web-01:"), "{out}");
    let lines = stored_lines(&s.d.p("store-c2"));
    assert_eq!(lines, (0..500).map(line).collect::<Vec<_>>());
    verify_store(&s.d.p("store-c2"));
}

#[test]
#[ignore = "needs a real S3 with Object Lock: tests/s3/run.sh"]
fn two_collectors_of_one_bucket_keep_one_chain() {
    let (bucket, heads) = buckets("two");
    let s = Setup::new();
    let a = collector_config(&s, "ca", &bucket, &heads);
    let b = collector_config(&s, "cb", &bucket, &heads);
    run_ok(&["create-buckets", "--config", a.to_str().unwrap()]);
    let (ca, pa) = serve(&s, &a, "ca.log");
    let (cb, pb) = serve(&s, &b, "cb.log");
    // The agent moves A → B → A; each collector must continue from what
    // the other kept, never from its own stale copy.
    let mut written = send_through(&s, 0, pa, "store-ca", 0, 300, &|| ca.log());
    written = send_through(&s, 1, pb, "store-cb", written, 300, &|| {
        format!("{}\n{}", ca.log(), cb.log())
    });
    // A takes B's batches as they land, then restarts: it resumes from its
    // snapshot past B's checkpoints, and B's receipts for them, which the
    // agent sends next, must still be taken.
    wait_for(
        "A to take B's batches by itself",
        Duration::from_secs(30),
        || kept_lines(&s.d.p("store-ca")) == written,
        || ca.log(),
    );
    ca.stop();
    let (ca, pa) = serve(&s, &a, "ca-2.log");
    written = send_through(&s, 2, pa, "store-ca", written, 300, &|| {
        format!("{}\n{}", ca.log(), cb.log())
    });
    // B, which has the agent open, takes what A kept last as it lands,
    // with no batch or read to ask for it.
    wait_for(
        "B to take A's last batches by itself",
        Duration::from_secs(30),
        || kept_lines(&s.d.p("store-cb")) == written,
        || cb.log(),
    );
    let s3 = S3::new(&s3_config(&bucket, &heads)).unwrap();
    let claimed = claims(&s3, "web-01");
    let by: std::collections::BTreeSet<&str> =
        claimed.iter().map(|c| c.collector.as_str()).collect();
    assert!(by.contains("ca") && by.contains("cb"), "{claimed:?}");
    ca.stop();
    cb.stop();
    let c = collector_config(&s, "cc", &bucket, &heads);
    run_ok(&["sync", "--config", c.to_str().unwrap()]);
    assert_eq!(
        stored_lines(&s.d.p("store-cc")),
        (0..written).map(line).collect::<Vec<_>>()
    );
    verify_store(&s.d.p("store-cc"));
}

#[test]
#[ignore = "needs a real S3 with Object Lock: tests/s3/run.sh"]
fn a_sequence_number_is_claimed_once_when_two_collectors_race() {
    let (bucket, heads) = buckets("race");
    let s3 = S3::new(&s3_config(&bucket, &heads)).unwrap();
    s3.create_buckets().unwrap();
    // Where the claims would go matters: this radosgw does not honour
    // If-None-Match in a versioned (Object Lock) bucket, and the
    // collector refuses to start on such a heads bucket.
    let wrong = S3::new(&s3_config(&bucket, &bucket)).unwrap();
    assert!(wrong.check_conditional_writes("test").is_err());
    s3.check_conditional_writes("test").unwrap();

    let remotes: Vec<Arc<Remote>> = ["x", "y"]
        .iter()
        .map(|c| {
            Arc::new(Remote {
                s3: S3::new(&s3_config(&bucket, &heads)).unwrap(),
                collector: (*c).into(),
                peer_receipt_keys: Vec::new(),
            })
        })
        .collect();
    for seq in 0..20u64 {
        let barrier = Arc::new(Barrier::new(2));
        let results: Vec<Kept> = remotes
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let (r, barrier) = (r.clone(), barrier.clone());
                std::thread::spawn(move || {
                    let frames = vec![i as u8; 64];
                    barrier.wait();
                    r.keep("race", seq, seq + 1, b"", &frames).unwrap()
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect();
        let won: Vec<usize> = (0..2).filter(|i| results[*i] == Kept::Claimed).collect();
        assert_eq!(won.len(), 1, "seq {seq}: {results:?}");
        // The claim names the winner's object, which holds its batch.
        let range = remotes[0].claimed_at("race", seq).unwrap().unwrap();
        assert_eq!(range.frames, vec![won[0] as u8; 64], "seq {seq}");
    }
}

/// An agent's chain of 200 entries (a checkpoint every 30), read back as
/// batches of at most 40 records.
fn agent_batches(dir: &std::path::Path) -> ([u8; 32], Vec<wormlog_spool::reader::Batch>) {
    use wormlog_spool::record::AppendOnly;
    use wormlog_spool::{Position, Spool, SpoolOptions};
    let keys = dir.join("keys");
    let pk = wormlog_spool::keys::HostKey::generate(&keys, 1).unwrap();
    let mut o = SpoolOptions::new(dir.join("spool"), "web-01");
    o.append_only = AppendOnly::Off;
    let key = wormlog_spool::keys::HostKey::load(&keys).unwrap();
    let (mut s, _) = Spool::open(o, key).unwrap();
    for i in 0..200u64 {
        s.append_entry(
            "app",
            &Position::Counter(i),
            0,
            &[],
            line(i as usize).as_bytes(),
            1,
        )
        .unwrap();
        if i % 30 == 29 {
            s.checkpoint().unwrap();
        }
    }
    s.close("done").unwrap();
    let mut r = wormlog_spool::reader::RangeReader::new(dir.join("spool"));
    let mut out = Vec::new();
    loop {
        let b = r.read(u64::MAX, 40, 1 << 20).unwrap();
        if b.span.records == 0 {
            return (pk, out);
        }
        out.push(b);
    }
}

#[test]
#[ignore = "needs a real S3 with Object Lock: tests/s3/run.sh"]
fn a_collector_that_loses_the_race_answers_from_the_winners_batch() {
    use wormlog_collector::receipts::Signer;
    use wormlog_collector::store::{AgentStore, Outcome};
    use wormlog_spool::record::AppendOnly;
    let (bucket, heads) = buckets("replay");
    let d = tempfile::tempdir().unwrap();
    let (pk, batches) = agent_batches(d.path());
    let s3 = S3::new(&s3_config(&bucket, &heads)).unwrap();
    s3.create_buckets().unwrap();
    let open = |name: &str| {
        let signer = Signer::load_or_create(&d.path().join(format!("keys-{name}")), name).unwrap();
        let mut s = AgentStore::open(
            &d.path().join(format!("store-{name}")),
            "web-01",
            pk,
            AppendOnly::Off,
            &signer,
        )
        .unwrap();
        let remote = Arc::new(Remote {
            s3: S3::new(&s3_config(&bucket, &heads)).unwrap(),
            collector: name.into(),
            peer_receipt_keys: Vec::new(),
        });
        s.set_remote(remote, &signer).unwrap();
        (s, signer)
    };
    let (mut a, sa) = open("a");
    let (mut b, sb) = open("b");
    let from = wormlog_collector::forks::Sender("a test".into());
    let next = |o: Outcome| match o {
        Outcome::Accepted { next_seq, .. } => next_seq,
        other => panic!("{other:?}"),
    };
    // The agent's answer from A was lost: it sends the same batch to B,
    // whose copy is behind. B's claim is refused; it takes A's batch from
    // the bucket and answers this one as a replay.
    let lost = || {
        wormlog_collector::metrics::get()
            .s3_writes
            .get_or_create(&vec![("result", "lost_race".to_owned())])
            .get()
    };
    let lost_before = lost();
    let b0 = &batches[0];
    let n0 = next(
        a.ingest(b0.span.first_seq, b0.torn(), b0.frames(), &sa, &from)
            .unwrap(),
    );
    let n0b = next(
        b.ingest(b0.span.first_seq, b0.torn(), b0.frames(), &sb, &from)
            .unwrap(),
    );
    assert_eq!(n0, n0b);
    assert_eq!(lost() - lost_before, 1, "B did not find A's claim");
    // Then each in turn, and the rest to both at once.
    let b1 = &batches[1];
    next(
        b.ingest(b1.span.first_seq, b1.torn(), b1.frames(), &sb, &from)
            .unwrap(),
    );
    for batch in &batches[2..] {
        let barrier = Barrier::new(2);
        let (ra, rb) = std::thread::scope(|sc| {
            let (ba, bb) = (&barrier, &barrier);
            let (a, b, from) = (&mut a, &mut b, &from);
            let (sa, sb) = (&sa, &sb);
            let ha = sc.spawn(move || {
                ba.wait();
                a.ingest(batch.span.first_seq, batch.torn(), batch.frames(), sa, from)
                    .unwrap()
            });
            let hb = sc.spawn(move || {
                bb.wait();
                b.ingest(batch.span.first_seq, batch.torn(), batch.frames(), sb, from)
                    .unwrap()
            });
            (ha.join().unwrap(), hb.join().unwrap())
        });
        assert_eq!(next(ra), next(rb), "batch at {}", batch.span.first_seq);
    }
    let claimed = claims(&s3, "web-01");
    assert_eq!(claimed.first().unwrap().first_seq, 0);
    assert_eq!(claimed.last().unwrap().next_seq, a.next_seq());
    // One object per claim: no batch written twice under claims.
    let objects = s3.list(false, "ranges/web-01/", None, usize::MAX).unwrap();
    for c in &claimed {
        assert!(objects.contains(&c.object));
    }
    // Both copies are the same chain, and verify.
    for name in ["a", "b"] {
        let dir = d.path().join(format!("store-{name}/agents/web-01"));
        let r = wormlog_spool::verify::verify_spool(&dir, Some(pk), &mut |_, _, _| {}).unwrap();
        assert!(r.ok(), "{name}: {:?}", r.failure);
        assert_eq!(r.records, a.next_seq());
    }
}

/// A port the kernel had free.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A server that answers every request `503 Service Unavailable` (a
/// collector in trouble behind a load balancer).
fn always_503() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for c in l.incoming().flatten() {
            std::thread::spawn(move || {
                use std::io::{Read, Write};
                let mut c = c;
                let mut buf = [0u8; 65536];
                // Read the headers (and whatever of the body comes), answer.
                let _ = c.set_read_timeout(Some(Duration::from_millis(200)));
                let _ = c.read(&mut buf);
                let _ = c.write_all(
                    b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                );
            });
        }
    });
    port
}

#[test]
#[ignore = "needs a real S3 with Object Lock: tests/s3/run.sh"]
fn an_agent_fails_over_between_three_collectors_and_every_line_is_kept_once() {
    let (bucket, heads) = buckets("failover");
    let s = Setup::new();
    let (p1, p3) = (free_port(), free_port());
    let bad = always_503();
    let config = |name: &str, port: u16| {
        let c = collector_config(&s, name, &bucket, &heads);
        let text = std::fs::read_to_string(&c)
            .unwrap()
            .replace("127.0.0.1:0", &format!("127.0.0.1:{port}"));
        std::fs::write(&c, text).unwrap();
        c
    };
    let (c1, c3) = (config("c1", p1), config("c3", p3));
    run_ok(&["create-buckets", "--config", c1.to_str().unwrap()]);
    let mut first = serve(&s, &c1, "c1-0.log").0;
    let third = serve(&s, &c3, "c3.log").0;
    let agent_cfg = s.write_agent_config(
        "agent",
        &format!(
            "urls = [\"http://127.0.0.1:{p1}\", \"http://127.0.0.1:{bad}\", \"http://127.0.0.1:{p3}\"]\nbatch_records = 50\nbackoff_max = \"500ms\"\ntimeout = \"5s\""
        ),
    );
    let log = s.d.p("logs/app.log");
    let agent = s.start_agent(&agent_cfg, "agent");
    // Lines keep coming while the first collector is killed every 2 s,
    // kept down for a second, and started again.
    let mut written = 0;
    let mut write_for = |ms: u64| {
        for _ in 0..ms / 100 {
            write_lines(&log, written, 20);
            written += 20;
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    for round in 1..=5 {
        write_for(1000);
        let _ = first.child.kill();
        let _ = first.child.wait();
        write_for(1000);
        first = serve(&s, &c1, &format!("c1-{round}.log")).0;
    }
    write_for(500);
    // Every line reaches the bucket: a fresh store taken from it holds each
    // once, in order.
    let c = collector_config(&s, "check", &bucket, &heads);
    let check = s.d.p("store-check");
    wait_for(
        &format!("{written} lines in the bucket"),
        Duration::from_secs(120),
        || {
            let o = Command::new(collector_bin())
                .args(["sync", "--config", c.to_str().unwrap()])
                .output()
                .unwrap();
            o.status.success() && kept_lines(&check) == written
        },
        || format!("{}\n{}", agent.log(), third.log()),
    );
    assert_eq!(
        stored_lines(&check),
        (0..written).map(line).collect::<Vec<_>>()
    );
    verify_store(&check);
    verify_spool(&s);
    let claimed = claims(&S3::new(&s3_config(&bucket, &heads)).unwrap(), "web-01");
    let by: std::collections::BTreeSet<&str> =
        claimed.iter().map(|c| c.collector.as_str()).collect();
    assert!(by.contains("c1") && by.contains("c3"), "{by:?}");
    // It went past the one answering 503 to the next.
    let tried_bad = format!("http://127.0.0.1:{bad}: ");
    assert!(agent.log().contains(&tried_bad), "{}", agent.log());
}

#[test]
#[ignore = "needs a real S3 with Object Lock: tests/s3/run.sh"]
fn the_scheduled_verification_finds_a_claim_altered_in_the_bucket() {
    let (bucket, heads) = buckets("scrub");
    let s = Setup::new();
    let cfg = collector_config(&s, "c1", &bucket, &heads);
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        format!("{text}\n[verify]\nevery = \"1s\"\nrate = \"0\"\n"),
    )
    .unwrap();
    run_ok(&["create-buckets", "--config", cfg.to_str().unwrap()]);
    let (c1, port) = serve(&s, &cfg, "c1.log");
    let agent_cfg = s.write_agent_config("agent", &format!("url = \"http://127.0.0.1:{port}\""));
    write_lines(&s.d.p("logs/app.log"), 0, 200);
    let agent = s.start_agent(&agent_cfg, "agent");
    let store = s.d.p("store-c1");
    wait_for(
        "200 lines kept",
        Duration::from_secs(60),
        || kept_lines(&store) == 200,
        || c1.log(),
    );
    drop(agent);
    let status = || {
        let o = Command::new(collector_bin())
            .args(["status", "--json", "--store"])
            .arg(&store)
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        (o.status.code().unwrap(), v)
    };
    let before = status().1["passes"].as_u64().unwrap_or(0);
    wait_for(
        "a clean pass over the store and the bucket",
        Duration::from_secs(30),
        || {
            let (code, v) = status();
            code == 0 && v["passes"].as_u64().unwrap_or(0) >= before + 2
        },
        || c1.log(),
    );
    // Someone with the bucket's credentials points the first claim at
    // other bytes (the objects themselves are locked; the claims are not).
    let s3 = S3::new(&s3_config(&bucket, &heads)).unwrap();
    let key = Claim::key("", "web-01", 0);
    let mut claim: Claim = serde_json::from_slice(&s3.get_head(&key).unwrap().unwrap()).unwrap();
    claim.sha256 = "00".repeat(32);
    s3.put_head(&key, &serde_json::to_vec(&claim).unwrap())
        .unwrap();
    wait_for(
        "the scheduled verification to find it",
        Duration::from_secs(30),
        || status().0 == 1,
        || c1.log(),
    );
    let v = status().1;
    let f = &v["last_failures"][0];
    assert_eq!(
        (f["agent"].as_str(), f["place"].as_str()),
        (Some("web-01"), Some("bucket")),
        "{v}"
    );
    assert_eq!(f["seq"], 0);
    let log = c1.stop();
    assert!(
        log.contains("scheduled verification: agent web-01 (bucket) fails at seq 0"),
        "{log}"
    );
}

#[test]
#[ignore = "needs a real S3 with Object Lock: tests/s3/run.sh"]
fn collectors_cosign_what_both_verified_and_report_a_checkpoint_the_chain_does_not_hold() {
    let (bucket, heads) = buckets("witness");
    let s = Setup::new();
    let (a, b) = (
        collector_config(&s, "ca", &bucket, &heads),
        collector_config(&s, "cb", &bucket, &heads),
    );
    run_ok(&["create-buckets", "--config", a.to_str().unwrap()]);
    // A first start makes each collector's note key; then each names the
    // other's verifier key as a peer.
    for (cfg, log) in [(&a, "ca-0.log"), (&b, "cb-0.log")] {
        serve(&s, cfg, log).0.stop();
    }
    let vkey = |n: &str| {
        std::fs::read_to_string(s.d.p(&format!("store-{n}/keys/checkpoint.vkey")))
            .unwrap()
            .trim()
            .to_owned()
    };
    for (cfg, peer) in [(&a, "cb"), (&b, "ca")] {
        let text = std::fs::read_to_string(cfg).unwrap();
        std::fs::write(cfg, format!("{text}peers = [\"{}\"]\n", vkey(peer))).unwrap();
    }
    let (ca, pa) = serve(&s, &a, "ca.log");
    let (cb, pb) = serve(&s, &b, "cb.log");
    let log = s.d.p("logs/app.log");
    let mut written = 0;
    for (round, (port, store)) in [(pa, "store-ca"), (pb, "store-cb")].into_iter().enumerate() {
        written = send_through(&s, round, port, store, written, 200, &|| {
            format!("{}\n{}", ca.log(), cb.log())
        });
    }
    // B verified what A stored (it took A's batches before its own), so it
    // cosigned A's published checkpoint: one note, both signatures.
    let s3 = S3::new(&s3_config(&bucket, &heads)).unwrap();
    let mut cosigned = None;
    wait_for(
        "B's cosignature of A's checkpoint",
        Duration::from_secs(20),
        || {
            cosigned = s3.get_head("cosigned/web-01/ca-by-cb").unwrap();
            cosigned.is_some()
        },
        || cb.log(),
    );
    let cosigned = String::from_utf8(cosigned.unwrap()).unwrap();
    let text_a = wormlog_collector::note::open(&cosigned, &vkey("ca")).unwrap();
    let text_b = wormlog_collector::note::open(&cosigned, &vkey("cb")).unwrap();
    assert_eq!(text_a, text_b);
    assert!(text_a.starts_with("wormlog/web-01\n"), "{text_a}");

    // A compromised A publishes a checkpoint with another root, signed with
    // its real key: B finds it is not in the chain it verified. The running
    // A is stopped first: its publisher writes its newest note up to 5 s
    // after the batch that made it (one note per agent at most every 5 s),
    // and a note it wrote after the forged one would replace it.
    ca.stop();
    let a_key = wormlog_collector::note::NoteSigner::load_or_create(
        &s.d.p("store-ca/keys"),
        "wormlog",
        "ca",
    )
    .unwrap();
    let size: u64 = text_a.lines().nth(1).unwrap().parse().unwrap();
    s3.put_head(
        "checkpoints/web-01/ca",
        a_key.checkpoint("web-01", size, &[9u8; 32]).as_bytes(),
    )
    .unwrap();
    let cfg = s.write_agent_config("agent-2", &format!("url = \"http://127.0.0.1:{pb}\""));
    write_lines(&log, written, 50);
    let agent = s.start_agent(&cfg, "agent-2");
    wait_for(
        "B to report the conflict",
        Duration::from_secs(30),
        || {
            cb.log().contains("witness: collector ca published a checkpoint of agent web-01 that is not in the chain")
        },
        || format!("{}\n{}", cb.log(), agent.log()),
    );
    agent.stop();
    let log_b = cb.stop();
    assert!(log_b.contains("where the chain holds"), "{log_b}");
}

#[test]
#[ignore = "needs a real S3 with Object Lock: tests/s3/run.sh"]
fn search_export_and_disclosure_on_one_collector_cover_what_another_kept() {
    let (bucket, heads) = buckets("reads");
    let s = Setup::new();
    let (token, hash) = new_token();
    let token_file = s.d.p("audra.token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let with_auditor = |name: &str| {
        let c = collector_config(&s, name, &bucket, &heads);
        let text = std::fs::read_to_string(&c).unwrap();
        std::fs::write(
            &c,
            format!("{text}\n[[users]]\nname = \"audra\"\nroles = [\"auditor\"]\n{hash}\n"),
        )
        .unwrap();
        c
    };
    let (a, b) = (with_auditor("ca"), with_auditor("cb"));
    run_ok(&["create-buckets", "--config", a.to_str().unwrap()]);
    let (ca, pa) = serve(&s, &a, "ca.log");
    let (cb, pb) = serve(&s, &b, "cb.log");
    // Everything goes through A; B never hears from the agent.
    let cfg = s.write_agent_config("agent", &format!("url = \"http://127.0.0.1:{pa}\""));
    write_lines(&s.d.p("logs/app.log"), 0, 300);
    let agent = s.start_agent(&cfg, "agent");
    wait_for(
        "300 lines in A",
        Duration::from_secs(60),
        || kept_lines(&s.d.p("store-ca")) == 300,
        || ca.log(),
    );
    let url_b = format!("http://127.0.0.1:{pb}");
    let cli_b = |args: &[&str]| {
        let mut all = args.to_vec();
        let tf = token_file.display().to_string();
        all.extend(["--url", url_b.as_str(), "--token-file", tf.as_str()]);
        Command::new(collector_bin()).args(&all).output().unwrap()
    };
    let get_b = |path: &str| -> serde_json::Value {
        use std::io::{Read, Write};
        let mut c = std::net::TcpStream::connect(("127.0.0.1", pb)).unwrap();
        write!(
            c,
            "GET {path} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\nconnection: close\r\n\r\n"
        )
        .unwrap();
        let mut r = String::new();
        c.read_to_string(&mut r).unwrap();
        serde_json::from_str(r.split("\r\n\r\n").nth(1).unwrap()).unwrap()
    };
    // B lists the agent it never heard from (from the bucket's pins), and
    // so does its console's overview.
    let agents = get_b("/v1/agents");
    assert_eq!(agents["agents"][0]["agent"], "web-01", "{agents}");
    let ov = get_b("/v1/overview");
    assert_eq!(ov["agents"][0]["agent"], "web-01", "{ov}");
    assert!(
        ov["agents"][0]["problems"][0]["text"]
            .as_str()
            .is_some_and(|t| t.contains("another collector")),
        "{ov}"
    );
    // Its timeline on B takes it from the bucket: the agent's start is there.
    let tl = get_b("/v1/agents/web-01/timeline?from=0");
    assert!(
        tl["events"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["class"] == "start")),
        "{tl}"
    );
    // A search on B finds a line only A stored (B takes it from the bucket).
    let o = cli_b(&["query", "--agent", "web-01", "--text", "line 0000123"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let hits: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(hits.len(), 1, "{hits:?}\n{}", cb.log());
    assert_eq!(hits[0]["body"], line(123));
    let seq = hits[0]["seq"].as_u64().unwrap().to_string();
    // Its disclosure from B verifies with the agent's key and B's receipt key.
    // (Once a checkpoint after it is countersigned: the agent, still
    // running, sends one within its checkpoint interval.)
    let bundle = s.d.p("entry.wlbundle");
    wait_for(
        "a disclosure from B",
        Duration::from_secs(30),
        || {
            cli_b(&[
                "disclose",
                "--agent",
                "web-01",
                "--seq",
                &seq,
                "--out",
                bundle.to_str().unwrap(),
            ])
            .status
            .success()
        },
        || cb.log(),
    );
    agent.stop();
    let receipt_b = std::fs::read_to_string(s.d.p("store-cb/keys/receipt.pub")).unwrap();
    let (code, out, _) = verify_bundle(&bundle, &s.pubkey, Some(receipt_b.trim()), &[]);
    assert_eq!(code, 0, "{out}");
    // And an export of a range A stored.
    let range = s.d.p("range.wlbundle");
    let o = cli_b(&[
        "export",
        "--agent",
        "web-01",
        "--from-seq",
        "5",
        "--to-seq",
        "200",
        "--out",
        range.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (code, out, _) = verify_bundle(&range, &s.pubkey, Some(receipt_b.trim()), &[]);
    assert_eq!(code, 0, "{out}");
    ca.stop();
    cb.stop();
}

/// A TCP relay to the S3 endpoint that can be cut (every connection
/// closed, new ones refused) and restored.
struct Relay {
    port: u16,
    down: Arc<std::sync::atomic::AtomicBool>,
    open: Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
}

impl Relay {
    fn start(upstream: &str) -> Relay {
        use std::sync::atomic::Ordering;
        let upstream = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let down = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let open = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (d, o) = (down.clone(), open.clone());
        std::thread::spawn(move || {
            for c in l.incoming().flatten() {
                if d.load(Ordering::SeqCst) {
                    continue; // dropped: refused
                }
                let Ok(u) = std::net::TcpStream::connect(&upstream) else {
                    continue;
                };
                let mut list = o.lock().unwrap();
                list.push(c.try_clone().unwrap());
                list.push(u.try_clone().unwrap());
                for (mut from, mut to) in [(c.try_clone().unwrap(), u.try_clone().unwrap()), (u, c)]
                {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        Relay { port, down, open }
    }

    fn cut(&self) {
        self.down.store(true, std::sync::atomic::Ordering::SeqCst);
        for s in self.open.lock().unwrap().drain(..) {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }

    fn restore(&self) {
        self.down.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

#[test]
#[ignore = "needs a real S3 with Object Lock: tests/s3/run.sh"]
fn a_bucket_out_of_reach_is_reported_loudly_and_loses_nothing() {
    let (bucket, heads) = buckets("outage");
    let s = Setup::new();
    let relay = Relay::start(&endpoint());
    let cfg = collector_config(&s, "c1", &bucket, &heads);
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace(&endpoint(), &format!("http://127.0.0.1:{}", relay.port));
    std::fs::write(&cfg, text).unwrap();
    run_ok(&["create-buckets", "--config", cfg.to_str().unwrap()]);
    let (c1, port) = serve(&s, &cfg, "c1.log");
    let written = send_through(&s, 0, port, "store-c1", 0, 100, &|| c1.log());
    // The bucket goes out of reach: batches are refused (the agent keeps
    // them and sends them again), loudly.
    relay.cut();
    let agent_cfg = s.write_agent_config(
        "agent-1",
        &format!("url = \"http://127.0.0.1:{port}\"\nbackoff_max = \"500ms\""),
    );
    write_lines(&s.d.p("logs/app.log"), written, 100);
    let agent = s.start_agent(&agent_cfg, "agent-1");
    wait_for(
        "the failure said",
        Duration::from_secs(60),
        || {
            c1.log()
                .contains("a batch was not stored (the agent sends it again): S3:")
        },
        || c1.log(),
    );
    assert_eq!(
        kept_lines(&s.d.p("store-c1")),
        written,
        "stored without the bucket"
    );
    // Back: every line arrives, once.
    relay.restore();
    wait_for(
        "every line after the outage",
        Duration::from_secs(60),
        || kept_lines(&s.d.p("store-c1")) == written + 100,
        || c1.log(),
    );
    agent.stop();
    let log = c1.stop();
    assert!(log.contains("S3:"), "{log}");
    // The alert is in the collector's own chain.
    let own = Command::new(agent_bin())
        .args(["cat", "--json", "--spool"])
        .arg(s.d.p("store-c1/log"))
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&own.stdout).contains("a batch was not stored"),
        "no alert record"
    );
    let c2 = collector_config(&s, "c2", &bucket, &heads);
    run_ok(&["sync", "--config", c2.to_str().unwrap()]);
    assert_eq!(
        stored_lines(&s.d.p("store-c2")),
        (0..written + 100).map(line).collect::<Vec<_>>()
    );
}

#[test]
#[ignore = "needs a real S3 with Object Lock: tests/s3/run.sh"]
fn a_crash_between_the_bucket_and_the_local_write_leaves_one_contiguous_chain() {
    use wormlog_collector::receipts::Signer;
    use wormlog_collector::store::{AgentStore, Outcome};
    use wormlog_spool::record::AppendOnly;
    let (bucket, heads) = buckets("crash");
    let d = tempfile::tempdir().unwrap();
    let (pk, batches) = agent_batches(d.path());
    let s3 = S3::new(&s3_config(&bucket, &heads)).unwrap();
    s3.create_buckets().unwrap();
    let signer = Signer::load_or_create(&d.path().join("ckeys"), "c1").unwrap();
    let root = d.path().join("store");
    let open = || {
        let mut s = AgentStore::open(&root, "web-01", pk, AppendOnly::Off, &signer).unwrap();
        let remote = Arc::new(Remote {
            s3: S3::new(&s3_config(&bucket, &heads)).unwrap(),
            collector: "c1".into(),
            peer_receipt_keys: Vec::new(),
        });
        s.set_remote(remote, &signer).unwrap();
        s
    };
    let from = wormlog_collector::forks::Sender("a test".into());
    let accepted = |o: Outcome| match o {
        Outcome::Accepted { next_seq, .. } => next_seq,
        other => panic!("{other:?}"),
    };
    let mut s = open();
    for b in &batches[..2] {
        accepted(
            s.ingest(b.span.first_seq, b.torn(), b.frames(), &signer, &from)
                .unwrap(),
        );
    }
    drop(s);
    // The crash: the second batch was kept in the bucket, but only part of
    // it reached the local copy (and no answer reached the agent).
    let seg = std::fs::read_dir(root.join("agents/web-01"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "wlseg"))
        .max()
        .unwrap();
    let len = std::fs::metadata(&seg).unwrap().len();
    let cut = len - batches[1].frames().len() as u64 / 2;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(cut)
        .unwrap();
    // Reopened, it takes the rest of that batch from the bucket; the agent
    // sends it again, and then the next ones.
    let mut s = open();
    assert_eq!(
        s.next_seq(),
        batches[1].span.end_seq(),
        "not taken from the bucket"
    );
    for b in &batches[1..] {
        accepted(
            s.ingest(b.span.first_seq, b.torn(), b.frames(), &signer, &from)
                .unwrap(),
        );
    }
    let claimed = claims(&s3, "web-01");
    assert_eq!(claimed.last().unwrap().next_seq, s.next_seq());
    let dir = root.join("agents/web-01");
    let r = wormlog_spool::verify::verify_spool(&dir, Some(pk), &mut |_, _, _| {}).unwrap();
    assert!(r.ok(), "{:?}", r.failure);
}
