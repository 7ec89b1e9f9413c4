//! The forwarding pair: a spool read in batches by `RangeReader` and checked
//! by a `Follower` rebuilds the agent's segments byte for byte, and the copy
//! verifies. Batches that do not continue the chain are refused.

mod common;

use common::*;
use std::io::Write;
use std::path::Path;
use wormlog_spool::follow::{Follower, Op, Refusal};
use wormlog_spool::frame::{FrameAt, frame_at};
use wormlog_spool::reader::RangeReader;

/// Mirrors `src` into `dst` with batches of at most `max` records; returns
/// the number of batches and how many of them carried a torn region.
fn mirror(src: &Path, dst: &Path, max: u64, f: &mut Follower) -> (usize, usize) {
    std::fs::create_dir_all(dst).unwrap();
    let mut r = RangeReader::new(src);
    let (mut n, mut torn) = (0, 0);
    loop {
        let b = r.read(u64::MAX, max, 1 << 20).unwrap();
        if b.span.records == 0 {
            assert!(b.bytes.is_empty());
            return (n, torn);
        }
        n += 1;
        torn += usize::from(b.span.torn_len > 0);
        assert_eq!(b.span.first_seq, f.next_seq());
        let plan = f
            .accept(b.torn(), b.frames())
            .unwrap_or_else(|e| panic!("batch {n} at {}: {e}", b.span.first_seq));
        assert_eq!(plan.records, b.span.records);
        apply(dst, &plan.ops, b.torn(), b.frames());
    }
}

fn apply(dst: &Path, ops: &[Op], torn: &[u8], frames: &[u8]) {
    use wormlog_spool::segment::segment_path;
    let append = |no: u64, bytes: &[u8]| {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(segment_path(dst, no))
            .unwrap();
        f.write_all(bytes).unwrap();
    };
    for op in ops {
        match op {
            Op::Create { no, header } => std::fs::write(segment_path(dst, *no), header).unwrap(),
            Op::AppendTorn { no } => append(*no, torn),
            Op::Append { no, range } => append(*no, &frames[range.clone()]),
            Op::Close { .. } => {}
        }
    }
}

fn assert_same_files(a: &Path, b: &Path) {
    let sa = segments(a);
    let sb = segments(b);
    assert_eq!(sa.len(), sb.len(), "segment count");
    for (x, y) in sa.iter().zip(&sb) {
        assert_eq!(x.file_name(), y.file_name());
        assert!(
            std::fs::read(x).unwrap() == std::fs::read(y).unwrap(),
            "{} differs from its copy",
            x.display()
        );
    }
}

fn busy_spool(t: &TempDir) -> [u8; 32] {
    let pk = keygen(t);
    let mut o = options(&t.spool());
    o.segment_max_bytes = 8 << 10;
    let mut s = open(t, o);
    for i in 0..600u64 {
        entry(
            &mut s,
            "app",
            i,
            format!("line {i} {}", "x".repeat((i % 90) as usize)).as_bytes(),
        );
        if i % 50 == 49 {
            s.checkpoint().unwrap();
        }
        if i % 200 == 199 {
            s.advance_epoch().unwrap();
        }
        if i == 120 {
            // A receipt for the last checkpoint, as the forwarder appends it.
            receipt_for(&mut s, &t.spool());
        }
    }
    s.close("done").unwrap();
    pk
}

#[test]
fn batches_of_any_size_rebuild_the_spool_byte_for_byte() {
    let t = TempDir::new();
    let pk = busy_spool(&t);
    let src = t.spool();
    assert!(segments(&src).len() > 5, "the test needs several segments");
    let want = verify(&src, Some(pk));
    assert!(want.ok(), "{:?}", want.failure);
    assert_eq!(want.receipts, 1);
    for max in [1u64, 7, 100, 100_000] {
        let dst = t.path().join(format!("copy-{max}"));
        let mut f = Follower::new("test-agent", Some(pk));
        let (batches, torn) = mirror(&src, &dst, max, &mut f);
        assert_eq!(torn, 0);
        assert!(batches >= (want.records / max.min(want.records)) as usize);
        assert_same_files(&src, &dst);
        let got = verify(&dst, Some(pk));
        assert!(got.ok(), "{:?}", got.failure);
        assert_eq!((got.records, got.root), (want.records, want.root));
        // The follower can also be rebuilt from a verification of the copy.
        let g = Follower::from_report(&got).unwrap();
        assert_eq!(g.next_seq(), f.next_seq());
        assert_eq!(g.cursor, f.cursor);
        assert_eq!(g.chain.head, f.chain.head);
    }
}

#[test]
fn a_torn_tail_travels_with_its_recovery_record() {
    let t = TempDir::new();
    let pk = keygen(&t);
    let src = t.spool();
    let mut s = open(&t, options(&src));
    for i in 0..20 {
        entry(&mut s, "app", i, b"before the crash");
    }
    s.sync().unwrap();
    drop(s); // a crash
    // Tear the last record: cut 5 bytes off the segment.
    tear_last_segment(&src, 5);
    let mut s = open(&t, options(&src));
    for i in 0..20 {
        entry(&mut s, "app", 100 + i, b"after the crash");
    }
    s.close("done").unwrap();
    let want = verify(&src, Some(pk));
    assert!(want.ok(), "{:?}", want.failure);
    assert_eq!(want.recoveries.len(), 1);
    for max in [1u64, 3, 1000] {
        let dst = t.path().join(format!("copy-{max}"));
        let mut f = Follower::new("test-agent", Some(pk));
        let (_, torn) = mirror(&src, &dst, max, &mut f);
        assert_eq!(
            torn, 1,
            "the torn region is sent once, with its recovery record"
        );
        assert_same_files(&src, &dst);
        let got = verify(&dst, Some(pk));
        assert!(got.ok(), "{:?}", got.failure);
        assert_eq!(got.recoveries.len(), 1);
    }
}

#[test]
fn batches_that_do_not_continue_the_chain_are_refused_and_change_nothing() {
    let t = TempDir::new();
    let pk = busy_spool(&t);
    let src = t.spool();
    let mut r = RangeReader::new(&src);
    let b1 = r.read(u64::MAX, 50, 1 << 20).unwrap();
    let b2 = r.read(u64::MAX, 50, 1 << 20).unwrap();
    let b3 = r.read(u64::MAX, 50, 1 << 20).unwrap();
    let mut f = Follower::new("test-agent", Some(pk));
    f.accept(&[], b1.frames()).unwrap();
    let before = (f.next_seq(), f.chain.head, f.cursor.clone());
    // Out of order: b3 before b2.
    match f.accept(&[], b3.frames()) {
        Err(Refusal::NotNext { expected, got }) => assert_eq!((expected, got), (50, 100)),
        other => panic!("{other:?}"),
    }
    // A replay of b1.
    assert!(matches!(
        f.accept(&[], b1.frames()),
        Err(Refusal::NotNext {
            expected: 50,
            got: 0
        })
    ));
    // A body edit of record 51 with its CRC recomputed: the frame and the
    // record itself pass; the next record's link does not.
    let mut forged = b2.frames().to_vec();
    let FrameAt::Frame { end: first_end, .. } = frame_at(&forged, 0) else {
        panic!("no frame")
    };
    let FrameAt::Frame { start, end } = frame_at(&forged, first_end) else {
        panic!("no second frame")
    };
    forged[end - 1] ^= 1;
    let crc = crc32c::crc32c(&forged[start - 4..end]);
    forged[start - 8..start - 4].copy_from_slice(&crc.to_le_bytes());
    match f.accept(&[], &forged) {
        Err(Refusal::Invalid { seq, .. }) => assert_eq!(seq, 52),
        other => panic!("{other:?}"),
    }
    // A cut frame.
    assert!(matches!(
        f.accept(&[], &b2.frames()[..b2.frames().len() - 3]),
        Err(Refusal::Framing(_))
    ));
    // A torn region without a recovery record.
    assert!(matches!(
        f.accept(b"junk", b2.frames()),
        Err(Refusal::Framing(_))
    ));
    assert_eq!(before, (f.next_seq(), f.chain.head, f.cursor.clone()));
    // And the real b2 still goes in.
    f.accept(&[], b2.frames()).unwrap();
    assert_eq!(f.next_seq(), 100);
    // A different first key is refused at genesis.
    let mut g = Follower::new("test-agent", Some([9u8; 32]));
    assert!(matches!(
        g.accept(&[], b1.frames()),
        Err(Refusal::Invalid { seq: 0, .. })
    ));
}

#[test]
fn seek_lands_on_every_record_including_just_after_a_seal() {
    let t = TempDir::new();
    busy_spool(&t);
    let src = t.spool();
    let total = verify(&src, None).records;
    for seq in 0..=total {
        let mut r = RangeReader::new(&src);
        r.seek(seq).unwrap_or_else(|e| panic!("seek {seq}: {e}"));
        assert_eq!(r.position(), Some(seq));
        let mut got = 0;
        loop {
            let b = r.read(u64::MAX, 10_000, 1 << 20).unwrap();
            if b.span.records == 0 {
                break;
            }
            assert_eq!(b.span.first_seq, seq + got, "contiguous after seek {seq}");
            got += b.span.records;
        }
        assert_eq!(seq + got, total, "everything after seek {seq}");
    }
    let mut r = RangeReader::new(&src);
    assert!(matches!(
        r.seek(total + 1),
        Err(wormlog_spool::reader::ReadError::Beyond { .. })
    ));
}

#[test]
fn seek_walks_large_segments_and_records_larger_than_its_chunk() {
    let t = TempDir::new();
    keygen(&t);
    let src = t.spool();
    let mut s = open(&t, options(&src));
    let line = vec![b'x'; 300];
    for i in 0..5000 {
        entry(&mut s, "app", i, &line);
    }
    let big = entry(&mut s, "app", 5000, &vec![b'y'; 3 << 20]);
    for i in 0..5000 {
        entry(&mut s, "app", 5001 + i, &line);
    }
    s.close("done").unwrap();
    let total = verify(&src, None).records;
    assert_eq!(segments(&src).len(), 1, "one segment of about 6 MiB");
    for seq in [
        0,
        1,
        2500,
        big - 1,
        big,
        big + 1,
        big + 4000,
        total - 1,
        total,
    ] {
        let mut r = RangeReader::new(&src);
        r.seek(seq).unwrap_or_else(|e| panic!("seek {seq}: {e}"));
        let b = r.read(u64::MAX, 1, 1 << 20).unwrap();
        assert_eq!(b.span.first_seq, seq);
        assert_eq!(
            b.span.records,
            u64::from(seq < total),
            "one record at {seq}"
        );
        if seq == big {
            assert!(b.bytes.len() > 3 << 20, "the large record whole");
        }
    }
}
