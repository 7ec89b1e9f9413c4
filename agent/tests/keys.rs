//! The host key file behind the spool: caught up over any number of
//! epochs at the next start; while running, a key file that cannot be
//! replaced is retried and, after a whole epoch of failures, the agent
//! halts loudly (an old seed on disk breaks forward security).

mod common;

use common::*;
use std::process::Command;
use std::time::{Duration, Instant};

/// The epoch the key file holds (docs/FORMAT.md, key file).
fn key_file_epoch(e: &Env) -> u64 {
    let b = std::fs::read(e.p("keys/host.key")).unwrap();
    u64::from_le_bytes(b[10..18].try_into().unwrap())
}

fn wait_key_epoch(e: &Env, epoch: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while key_file_epoch(e) < epoch {
        assert!(
            Instant::now() < deadline,
            "the key never reached epoch {epoch}"
        );
        append(&e.log("app.log"), b"tick\n");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_key_file_several_epochs_behind_is_caught_up_at_start() {
    let e = Env::with_spool("*.log", "epoch = \"1s\"", "");
    let epoch0 = std::fs::read(e.p("keys/host.key")).unwrap();
    let d = e.start();
    wait_key_epoch(&e, 4);
    stop(d);
    // The key file as it was four epochs ago (a key directory that took no
    // writes for that long, then was restored).
    std::fs::write(e.p("keys/host.key"), &epoch0).unwrap();
    let d = e.start();
    append(&e.log("app.log"), b"after the catch-up\n");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !e.bodies().iter().any(|b| b == "after the catch-up") {
        assert!(Instant::now() < deadline, "{}", e.stderr());
        std::thread::sleep(Duration::from_millis(20));
    }
    stop(d);
    let err = e.stderr();
    assert!(
        err.contains("epoch(s) behind the spool") && err.contains("caught up"),
        "{err}"
    );
    assert!(key_file_epoch(&e) >= 4, "the caught-up key is saved");
    e.assert_verifies();
}

/// Needs root (chattr +i on the key directory); skipped otherwise, but not
/// under CI.
#[test]
fn a_key_file_that_cannot_be_replaced_for_an_epoch_halts_the_agent_loudly() {
    let e = Env::with_spool("*.log", "epoch = \"1s\"", "");
    let immutable = |on: bool| {
        Command::new("chattr")
            .arg(if on { "+i" } else { "-i" })
            .arg(e.p("keys"))
            .status()
            .is_ok_and(|s| s.success())
    };
    if !immutable(true) {
        assert!(
            std::env::var_os("CI").is_none(),
            "chattr +i failed under CI (needs root and ext4)"
        );
        eprintln!("skipped: chattr +i needs root and a file system that supports it");
        return;
    }
    immutable(false);
    let mut d = e.start();
    append(&e.log("app.log"), b"before\n");
    e.wait_entries(1);
    assert!(immutable(true));
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = d.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "the agent did not halt:\n{}",
            e.stderr()
        );
        append(&e.log("app.log"), b"tick\n");
        std::thread::sleep(Duration::from_millis(50));
    };
    immutable(false);
    assert_eq!(status.code(), Some(1), "{}", e.stderr());
    let err = e.stderr();
    assert!(err.contains("could not be replaced"), "{err}");
    assert!(
        e.records()
            .iter()
            .any(|r| r.kind.starts_with("alert") && r.detail.contains("stopping")),
        "the halt is in the chain"
    );
    // The key directory writable again: the next start catches up.
    let d = e.start();
    stop(d);
    assert!(e.stderr().contains("caught up"), "{}", e.stderr());
    e.assert_verifies();
}
