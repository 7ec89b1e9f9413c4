//! `wormlog verify --config … --record` (what the daily
//! wormlog-verify.timer runs): the result goes into the chain through the
//! running daemon — an entry of source `wormlog-verify`, or an alert when
//! it failed — and into the journal at the priority it deserves.

mod common;

use common::*;
use std::process::Command;
use std::time::{Duration, Instant};

fn verify_record(e: &Env) -> std::process::Output {
    Command::new(bin())
        .args(["verify", "--record", "--config"])
        .arg(e.p("agent.toml"))
        // As under systemd: stdout is the journal, "<N>" its priority.
        .env("JOURNAL_STREAM", "8:1")
        .output()
        .unwrap()
}

fn wait_for_record(e: &Env, what: &str, f: impl Fn(&Rec) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !e.records().iter().any(&f) {
        assert!(Instant::now() < deadline, "no {what} in the chain");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_verification_is_recorded_in_the_chain_and_a_failure_as_an_alert() {
    let e = Env::new("");
    append(&e.log("app.log"), lines("verified", 0..100).as_bytes());
    let d = e.start();
    e.wait_entries(100);

    let o = verify_record(&e);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(out.starts_with("<6>verify: OK: "), "{out}");
    wait_for_record(&e, "verify entry", |r| {
        r.kind == "entry" && r.source == "wormlog-verify" && r.body.starts_with(b"verify: OK: ")
    });

    // One byte of a sealed line changed: the check fails at that record,
    // says so at priority err, and the daemon records an alert.
    let seg = std::fs::read_dir(e.p("spool"))
        .unwrap()
        .flatten()
        .map(|x| x.path())
        .filter(|p| p.extension().is_some_and(|x| x == "wlseg"))
        .min()
        .unwrap();
    let orig = std::fs::read(&seg).unwrap();
    let at = orig.windows(11).position(|w| w == b"verified 42").unwrap();
    let mut bad = orig.clone();
    bad[at] = b'V';
    std::fs::write(&seg, &bad).unwrap();
    let o = verify_record(&e);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.starts_with("<3>verify: FAILED at segment "), "{out}");
    // Put back, so that the chain can be read to find the alert.
    std::fs::write(&seg, &orig).unwrap();
    wait_for_record(&e, "verify alert", |r| {
        r.kind == "alert:4" && r.detail.starts_with("verify: FAILED at segment ")
    });
    stop(d);
    e.assert_verifies();

    // Without a daemon the result cannot be recorded: said, exit 2.
    let o = verify_record(&e);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("<3>wormlog: the result is not in the chain")
    );
}
