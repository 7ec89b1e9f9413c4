//! Pruning: acknowledged segments are removed with a `prune` record and a
//! key ledger, the spool that is left still verifies from the host's first
//! public key (in Rust and in the independent Python verifier), the writer
//! goes on with it, and a spool whose start was removed any other way fails.

mod common;

use common::*;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use wormlog_spool::Spool;
use wormlog_spool::chain::Receipt;
use wormlog_spool::ledger::{self, LEDGER_FILE};
use wormlog_spool::reader::RangeReader;
use wormlog_spool::writer::PrunePolicy;
use wormlog_spool::writer::flusher::FaultInjector;

const DAY: Duration = Duration::from_secs(86400);

/// A spool of small segments across three epochs; the collector has
/// acknowledged about two thirds of it.
fn spool_with_acks(t: &TempDir) -> ([u8; 32], Spool, u64) {
    let pk = keygen(t);
    let mut o = options(&t.spool());
    o.segment_max_bytes = 8 << 10;
    let mut s = open(t, o);
    let mut acked = 0;
    for i in 0..900u64 {
        entry(
            &mut s,
            "app",
            i,
            format!("line {i} {}", "x".repeat((i % 90) as usize)).as_bytes(),
        );
        if i % 50 == 49 {
            s.checkpoint().unwrap();
        }
        if i % 250 == 249 {
            s.advance_epoch().unwrap();
        }
        if i == 600 {
            acked = receipt_for(&mut s, &t.spool());
        }
    }
    s.sync().unwrap();
    (pk, s, acked)
}

#[test]
fn acknowledged_segments_are_pruned_and_the_rest_still_verifies() {
    let t = TempDir::new();
    let (pk, mut s, acked) = spool_with_acks(&t);
    let before = segments(&t.spool()).len();
    let usage_before = s.disk_usage();
    let lines_before = bodies(&t.spool());

    // Young segments stay unless the budget needs the room.
    let keep = PrunePolicy {
        retention: DAY,
        bytes_to_free: 0,
    };
    assert_eq!(s.prune(&keep).unwrap(), None);

    let p = s
        .prune(&PrunePolicy {
            retention: Duration::ZERO,
            bytes_to_free: 0,
        })
        .unwrap()
        .expect("something to prune");
    assert_eq!(p.first, 0);
    assert!(p.first_kept > 3, "{p:?}");
    assert!(
        p.first_kept_seq <= acked,
        "pruned unacknowledged records: {p:?}"
    );
    assert!(p.detail.contains("retention"), "{}", p.detail);
    let left = segments(&t.spool());
    assert_eq!(left.len(), before - p.first_kept as usize);
    assert!(t.spool().join(LEDGER_FILE).exists());
    assert!(
        s.disk_usage() < usage_before - p.bytes / 2,
        "usage not reduced"
    );

    // Keep writing, through another epoch, a receipt for a checkpoint that
    // is already gone, and a clean stop and a reopen.
    let collector = test_collector();
    let (old_size, old_root) = {
        let mut r = RangeReader::new(t.spool());
        r.seek(p.first_kept_seq).unwrap();
        let b = r.read(s.durable_seq().get(), 1, 1 << 20).unwrap();
        (b.span.checkpoints[0].0, b.span.checkpoints[0].1)
    };
    assert_eq!(
        old_size, p.first_kept_seq,
        "the kept segment starts with its anchor"
    );
    for i in 900..1000u64 {
        entry(&mut s, "app", i, format!("after {i}").as_bytes());
    }
    s.advance_epoch().unwrap();
    s.append_receipt(&Receipt::sign(
        &collector,
        "collector-1",
        "test-agent",
        old_size,
        &old_root,
        2,
    ))
    .unwrap();
    s.close("done").unwrap();
    let s = open(&t, options(&t.spool()));
    s.close("again").unwrap();

    let r = verify(&t.spool(), Some(pk));
    assert!(r.ok(), "{:?}", r.failure);
    let pr = r.pruned.clone().expect("reported as pruned");
    assert_eq!(
        (pr.first_segment, pr.first_seq),
        (p.first_kept, p.first_kept_seq)
    );
    assert_eq!(pr.recorded_at, Some(p.seq));
    assert!(r.key_authenticated);
    assert_eq!(r.epoch, 4);
    assert_eq!(r.prunes, 1);
    // What is left is exactly the tail of what was there, plus the new lines.
    let after = bodies(&t.spool());
    let kept_old = &after[..after.len() - 100];
    assert_eq!(
        kept_old,
        &lines_before[lines_before.len() - kept_old.len()..]
    );
    assert_verifiers_agree(&t.spool(), Some(pk), &r);
    // A wrong first key is still found.
    let wrong = [9u8; 32];
    let bad = verify(&t.spool(), Some(wrong));
    assert!(!bad.ok());
    assert_verifiers_agree(&t.spool(), Some(wrong), &bad);
}

#[test]
fn under_budget_pressure_young_acknowledged_segments_go_but_never_unacknowledged_ones() {
    let t = TempDir::new();
    let (pk, mut s, acked) = spool_with_acks(&t);
    let p = s
        .prune(&PrunePolicy {
            retention: DAY,
            bytes_to_free: 20 << 10,
        })
        .unwrap()
        .expect("budget pruning");
    assert!(p.bytes >= 20 << 10 || p.first_kept_seq <= acked, "{p:?}");
    assert!(p.detail.contains("budget"), "{}", p.detail);
    // Asking for everything still stops at what the collector has.
    let q = s
        .prune(&PrunePolicy {
            retention: DAY,
            bytes_to_free: u64::MAX,
        })
        .unwrap();
    if let Some(q) = &q {
        assert!(q.first_kept_seq <= acked, "{q:?}");
    }
    let r = verify(&t.spool(), Some(pk));
    assert!(r.ok(), "{:?}", r.failure);
    assert_eq!(r.prunes, 1 + u64::from(q.is_some()));
    // Nothing acknowledged: nothing pruned.
    let t2 = TempDir::new();
    keygen(&t2);
    let mut o = options(&t2.spool());
    o.segment_max_bytes = 4 << 10;
    let mut s2 = open(&t2, o);
    for i in 0..300 {
        entry(
            &mut s2,
            "app",
            i,
            b"unacknowledged line of some length to fill segments",
        );
    }
    let none = s2
        .prune(&PrunePolicy {
            retention: Duration::ZERO,
            bytes_to_free: u64::MAX,
        })
        .unwrap();
    assert_eq!(none, None);
}

/// A pruned spool, closed, and its first kept segment number.
fn pruned(t: &TempDir) -> ([u8; 32], u64) {
    let (pk, mut s, _) = spool_with_acks(t);
    let p = s
        .prune(&PrunePolicy {
            retention: Duration::ZERO,
            bytes_to_free: 0,
        })
        .unwrap()
        .unwrap();
    s.close("done").unwrap();
    (pk, p.first_kept)
}

fn expect_failure(t: &TempDir, pk: [u8; 32], what: &str) -> String {
    let r = verify(&t.spool(), Some(pk));
    let f = r
        .failure
        .clone()
        .unwrap_or_else(|| panic!("{what}: not detected"));
    assert_verifiers_agree(&t.spool(), Some(pk), &r);
    f.reason
}

#[test]
fn a_start_removed_without_a_prune_record_or_ledger_is_loss() {
    // Segments deleted by hand from an unpruned spool.
    let t = TempDir::new();
    let (pk, s, _) = spool_with_acks(&t);
    s.close("done").unwrap();
    for p in &segments(&t.spool())[..3] {
        std::fs::remove_file(p).unwrap();
    }
    let why = expect_failure(&t, pk, "deleted start");
    assert!(why.contains("no key ledger"), "{why}");

    // A pruned spool whose ledger is gone.
    let t = TempDir::new();
    let (pk, _) = pruned(&t);
    std::fs::remove_file(t.spool().join(LEDGER_FILE)).unwrap();
    let why = expect_failure(&t, pk, "ledger removed");
    assert!(why.contains("no key ledger"), "{why}");

    // One more segment removed than the prune record says.
    let t = TempDir::new();
    let (pk, first_kept) = pruned(&t);
    std::fs::remove_file(&segments(&t.spool())[0]).unwrap();
    let why = expect_failure(&t, pk, "extra segment removed");
    assert!(
        why.contains("no prune record") || why.contains("not a checkpoint"),
        "{why} (first kept was {first_kept})"
    );

    // An epoch transition taken out of the ledger.
    let t = TempDir::new();
    let (pk, _) = pruned(&t);
    let mut recs = ledger::load(&t.spool()).unwrap().unwrap();
    assert!(recs.len() >= 2, "the ledger holds genesis and epoch keys");
    recs.remove(1);
    ledger::store(&t.spool(), &recs).unwrap();
    let why = expect_failure(&t, pk, "ledger epoch removed");
    assert!(why.contains("epoch"), "{why}");

    // A ledger byte flipped.
    let t = TempDir::new();
    let (pk, _) = pruned(&t);
    let path = t.spool().join(LEDGER_FILE);
    let mut b = std::fs::read(&path).unwrap();
    let n = b.len();
    b[n - 10] ^= 1;
    std::fs::write(&path, b).unwrap();
    expect_failure(&t, pk, "ledger damaged");
}

/// Damage inside what gets pruned: an fsync that failed during an epoch
/// transition (the abandoned segment still holds that transition's bytes,
/// void, and the chain makes it again later) and a torn tail explained by a
/// recovery record. The ledger takes only what is in each segment's log,
/// the first kept segment is never one that starts with a recovery record,
/// and the pruned spool verifies.
#[test]
fn void_records_and_recovered_segments_are_pruned_through_correctly() {
    let t = TempDir::new();
    let pk = keygen(&t);
    let fault = Arc::new(FaultInjector::default());
    let mut o = options(&t.spool());
    o.segment_max_bytes = 8 << 10;
    o.fault = Some(fault.clone());
    let mut s = open(&t, o.clone());
    let line = |i: u64| format!("line {i} {}", "y".repeat((i % 70) as usize)).into_bytes();
    for i in 0..150 {
        entry(&mut s, "app", i, &line(i));
    }
    s.sync().unwrap();
    fault
        .fail_sync_at
        .store(fault.syncs() + 1, Ordering::SeqCst);
    s.advance_epoch().unwrap();
    s.advance_epoch().unwrap();
    for i in 150..300 {
        entry(&mut s, "app", i, &line(i));
    }
    s.close("torn next").unwrap();
    // A torn write at the end of the last segment, explained on reopen.
    let last = segments(&t.spool()).pop().unwrap();
    wormlog_spool::worm::clear_flags(&last).unwrap();
    let mut b = std::fs::read(&last).unwrap();
    b.extend_from_slice(&[9, 9, 9, 9, 0x40, 0, 0]);
    std::fs::write(&last, b).unwrap();
    o.fault = None;
    let mut s = open(&t, o);
    for i in 300..700 {
        entry(&mut s, "app", i, &line(i));
        if i % 40 == 39 {
            s.checkpoint().unwrap();
        }
    }
    let before = verify(&t.spool(), Some(pk));
    assert!(before.ok(), "{:?}", before.failure);
    assert_eq!(before.recoveries.len(), 2, "{:?}", before.recoveries);
    let acked = receipt_for(&mut s, &t.spool());
    let p = s
        .prune(&PrunePolicy {
            retention: Duration::ZERO,
            bytes_to_free: 0,
        })
        .unwrap()
        .expect("prunable");
    assert!(p.first_kept_seq <= acked);
    // Both damaged segments went.
    let recovered: Vec<u64> = before.recoveries.iter().map(|r| r.segment).collect();
    assert!(
        recovered.iter().all(|n| *n < p.first_kept),
        "{recovered:?} / {p:?}"
    );
    s.close("done").unwrap();
    let r = verify(&t.spool(), Some(pk));
    assert!(r.ok(), "{:?}", r.failure);
    assert_eq!(r.epoch, 1, "the failed transition was made again once");
    assert_verifiers_agree(&t.spool(), Some(pk), &r);
    let ledger_epochs: Vec<u64> = ledger::load(&t.spool())
        .unwrap()
        .unwrap()
        .iter()
        .filter_map(
            |b| match wormlog_spool::record::Record::decode(b).unwrap().payload {
                wormlog_spool::record::Payload::EpochKey { from_epoch, .. } => Some(from_epoch),
                _ => None,
            },
        )
        .collect();
    assert_eq!(
        ledger_epochs,
        vec![0],
        "the transition once, its void first try left out"
    );
}

#[test]
fn a_late_receipt_does_not_move_the_delivery_position_back() {
    let t = TempDir::new();
    let (_pk, mut s, acked) = spool_with_acks(&t);
    assert_eq!(s.acknowledged(), acked);
    let collector = test_collector();
    // A receipt for an earlier tree, arriving late (an old forwarder).
    let late = Receipt::sign(&collector, "collector-1", "test-agent", 10, &[0; 32], 3);
    s.append_receipt(&late).unwrap();
    assert_eq!(s.acknowledged(), acked, "the position stayed");
}
