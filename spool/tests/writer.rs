//! The writer: rotation, epochs, heartbeats, the lock, the key, positions
//! after a reopen, and fsync failures (through a fault-injection hook: a
//! real failing disk cannot be made on the test machine).

mod common;

use common::*;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use wormlog_spool::keys::HostKey;
use wormlog_spool::record::{Kind, Payload};
use wormlog_spool::verify::verify_spool;
use wormlog_spool::writer::flusher::FaultInjector;
use wormlog_spool::{Position, Spool, SpoolError};

fn kinds(dir: &std::path::Path) -> Vec<Kind> {
    let mut v = Vec::new();
    verify_spool(dir, None, &mut |_, r, _| v.push(r.kind)).unwrap();
    v
}

/// Waits for a condition, ticking the writer, up to a deadline.
fn tick_until(s: &mut Spool, what: &str, mut cond: impl FnMut(&Spool) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond(s) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        s.tick().unwrap();
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn rotation_by_size_seals_every_segment() {
    let t = TempDir::new();
    let pk = keygen(&t);
    let mut o = options(&t.spool());
    o.segment_max_bytes = 4096;
    o.checkpoint_bytes = 1000;
    let mut s = open(&t, o);
    for i in 0..200 {
        entry(
            &mut s,
            "app",
            i,
            format!("entry number {i} with some padding text").as_bytes(),
        );
    }
    s.close("done").unwrap();
    let segs = segments(&t.spool());
    assert!(segs.len() >= 4, "{} segments", segs.len());
    let r = verify(&t.spool(), Some(pk));
    assert!(r.ok(), "{:?}", r.failure);
    assert_eq!(r.entries, 200);
    assert!(r.checkpoints >= segs.len() as u64 * 2);
    assert_eq!(bodies(&t.spool()).len(), 200);
    assert_verifiers_agree(&t.spool(), Some(pk), &r);
}

#[test]
fn epochs_advance_by_time_and_heartbeats_fill_quiet_time() {
    let t = TempDir::new();
    let pk = keygen(&t);
    let mut o = options(&t.spool());
    o.epoch_duration = Duration::from_millis(300);
    o.heartbeat_interval = Duration::from_millis(100);
    o.checkpoint_interval = Duration::from_millis(20);
    let mut s = open(&t, o);
    entry(&mut s, "app", 0, b"one line, then quiet");
    tick_until(&mut s, "two epoch transitions", |s| s.stats().epoch >= 2);
    s.close("done").unwrap();
    assert_eq!(
        HostKey::load(&t.keys()).unwrap().epoch(),
        2,
        "the seed on disk moved on"
    );
    let k = kinds(&t.spool());
    assert!(
        k.iter().filter(|k| **k == Kind::Heartbeat).count() >= 2,
        "{k:?}"
    );
    let r = verify(&t.spool(), Some(pk));
    assert!(r.ok(), "{:?}", r.failure);
    assert_eq!(r.epoch_transitions, 2);
    assert!(
        r.time_gaps.is_empty(),
        "heartbeats leave no gap: {:?}",
        r.time_gaps
    );
    assert_verifiers_agree(&t.spool(), Some(pk), &r);
}

#[test]
fn one_writer_only() {
    let t = TempDir::new();
    keygen(&t);
    let s = open(&t, options(&t.spool()));
    let key = HostKey::load(&t.keys()).unwrap();
    match Spool::open(options(&t.spool()), key) {
        Err(SpoolError::Locked(_)) => {}
        other => panic!("second writer not refused: {other:?}"),
    }
    drop(s);
    let key = HostKey::load(&t.keys()).unwrap();
    assert!(
        Spool::open(options(&t.spool()), key).is_ok(),
        "the lock is released"
    );
}

#[test]
fn the_key_must_be_the_spools() {
    let t = TempDir::new();
    keygen(&t);
    let s = open(&t, options(&t.spool()));
    s.close("x").unwrap();
    // Another host's key.
    let other = TempDir::new();
    keygen(&other);
    let key = HostKey::load(&other.keys()).unwrap();
    assert!(matches!(
        Spool::open(options(&t.spool()), key),
        Err(SpoolError::WrongKey(_))
    ));
    // Another agent id.
    let mut o = options(&t.spool());
    o.agent_id = "someone-else".into();
    let key = HostKey::load(&t.keys()).unwrap();
    assert!(matches!(
        Spool::open(o, key),
        Err(SpoolError::AgentIdMismatch { .. })
    ));
    // A key that evolved but whose spool is gone.
    let mut key = HostKey::load(&t.keys()).unwrap();
    key.advance(0).unwrap();
    let fresh = t.path().join("fresh");
    assert!(matches!(
        Spool::open(options(&fresh), key),
        Err(SpoolError::FreshSpoolEvolvedKey(1))
    ));
}

#[test]
fn key_file_catches_up_after_a_crash_mid_transition() {
    let t = TempDir::new();
    let pk = keygen(&t);
    let mut s = open(&t, options(&t.spool()));
    entry(&mut s, "app", 0, b"x");
    let before = std::fs::read(t.keys().join("host.key")).unwrap();
    s.advance_epoch().unwrap();
    drop(s);
    // The transition reached the spool, the key file did not move on.
    std::fs::write(t.keys().join("host.key"), before).unwrap();
    let key = HostKey::load(&t.keys()).unwrap();
    let (mut s, report) = Spool::open(options(&t.spool()), key).unwrap();
    assert!(report.key_caught_up);
    entry(&mut s, "app", 1, b"y");
    s.close("x").unwrap();
    assert_eq!(HostKey::load(&t.keys()).unwrap().epoch(), 1);
    let r = verify(&t.spool(), Some(pk));
    assert!(r.ok(), "{:?}", r.failure);
}

#[test]
fn positions_survive_a_reopen() {
    let t = TempDir::new();
    keygen(&t);
    let mut o = options(&t.spool());
    o.segment_max_bytes = 1024;
    let mut s = open(&t, o.clone());
    let file = |ino, offset| Position::File {
        dev: 1,
        ino,
        fingerprint: 9,
        offset,
    };
    for i in 0..40u64 {
        s.append_entry("files", &file(i % 3, i * 10), 0, &[], b"line", 1)
            .unwrap();
    }
    s.append_entry(
        "journal",
        &Position::Journal("s=abc;i=7".into()),
        0,
        &[],
        b"j",
        1,
    )
    .unwrap();
    s.sync().unwrap();
    let want = s.positions().clone();
    drop(s); // crash: what was synced is what counts
    let key = HostKey::load(&t.keys()).unwrap();
    let (mut s, _) = Spool::open(o, key).unwrap();
    assert!(segments(&t.spool()).len() > 2);
    assert_eq!(s.positions(), &want);
    assert_eq!(s.positions()["files"].len(), 3);
}

#[test]
fn a_clock_behind_the_last_record_is_recorded() {
    let t = TempDir::new();
    keygen(&t);
    let mut s = open(&t, options(&t.spool()));
    let future = wormlog_spool::clock::wall_ns() + 3_600_000_000_000;
    s.append_entry("app", &Position::None, 0, &[], b"from the future", future)
        .unwrap();
    s.sync().unwrap();
    drop(s); // the last record is the one stamped by the fast clock
    let s = open(&t, options(&t.spool()));
    s.close("x").unwrap();
    let mut steps = Vec::new();
    verify_spool(&t.spool(), None, &mut |_, r, _| {
        if let Payload::ClockStep {
            expected_ts,
            observed_ts,
            ..
        } = r.payload
        {
            steps.push((expected_ts, observed_ts));
        }
    })
    .unwrap();
    assert_eq!(steps.len(), 1);
    assert_eq!(steps[0].0, future);
    assert!(verify(&t.spool(), None).clock_steps.len() == 1);
}

#[test]
fn fsync_failure_abandons_the_segment_and_rewrites_the_records() {
    let t = TempDir::new();
    let pk = keygen(&t);
    let fault = Arc::new(FaultInjector::default());
    let mut o = options(&t.spool());
    o.fault = Some(fault.clone());
    let mut s = open(&t, o);
    let mut expected = Vec::new();
    for i in 0..5 {
        let b = format!("durable {i}").into_bytes();
        entry(&mut s, "app", i, &b);
        expected.push(b);
    }
    s.sync().unwrap();
    let seg_before = s.stats().segment_no;
    // The next fsync fails.
    fault
        .fail_sync_at
        .store(fault.syncs() + 1, Ordering::SeqCst);
    for i in 5..10 {
        let b = format!("not yet durable {i}").into_bytes();
        entry(&mut s, "app", i, &b);
        expected.push(b);
    }
    let durable = s.sync().unwrap();
    assert_eq!(durable, 10, "every entry durable after the rewrite");
    assert_eq!(
        s.stats().segment_no,
        seg_before + 1,
        "moved to a new segment"
    );
    s.close("x").unwrap();
    let r = verify(&t.spool(), Some(pk));
    assert!(r.ok(), "{:?}", r.failure);
    assert_eq!(r.recoveries.len(), 1);
    assert_eq!(r.recoveries[0].cause, "fsync_failed");
    assert!(
        r.alerts.iter().any(|(_, code, _)| *code == 2),
        "an fsync alert is in the chain"
    );
    let got: Vec<Vec<u8>> = bodies(&t.spool()).into_iter().map(|(_, b)| b).collect();
    assert_eq!(got, expected, "each entry exactly once, in order");
    assert_verifiers_agree(&t.spool(), Some(pk), &r);
}

#[test]
fn fsync_failing_again_stops_the_writer_loudly() {
    let t = TempDir::new();
    keygen(&t);
    let fault = Arc::new(FaultInjector::default());
    let mut o = options(&t.spool());
    o.fault = Some(fault.clone());
    let mut s = open(&t, o);
    entry(&mut s, "app", 0, b"durable");
    s.sync().unwrap();
    fault.fail_from.store(fault.syncs() + 1, Ordering::SeqCst);
    entry(&mut s, "app", 1, b"lost disk");
    match s.sync() {
        Err(SpoolError::FsyncFailed { .. }) => {}
        other => panic!("expected FsyncFailed, got {other:?}"),
    }
    assert!(matches!(
        s.append_entry("app", &Position::None, 0, &[], b"more", 1),
        Err(SpoolError::Stopped)
    ));
    drop(s);
    // What was durable is intact; the agent's next start explains the rest.
    let r = verify(&t.spool(), None);
    assert!(r.ok(), "{:?}", r.failure);
    let s = open(&t, options(&t.spool()));
    s.close("x").unwrap();
    let r = verify(&t.spool(), None);
    assert!(r.ok(), "{:?}", r.failure);
    assert_eq!(bodies(&t.spool())[0].1, b"durable");
}

#[test]
fn segments_rotate_by_age_when_ticked() {
    let t = TempDir::new();
    let pk = keygen(&t);
    let mut o = options(&t.spool());
    o.segment_max_age = Duration::from_millis(50);
    let mut s = open(&t, o);
    entry(&mut s, "app", 0, b"in the first segment");
    tick_until(&mut s, "two rotations by age", |s| {
        s.stats().segment_no >= 2
    });
    entry(&mut s, "app", 1, b"in a later segment");
    s.close("done").unwrap();
    let r = verify(&t.spool(), Some(pk));
    assert!(r.ok(), "{:?}", r.failure);
    assert!(r.segments >= 3);
    assert_eq!(r.entries, 2);
}
