//! `RangeReader` reads a batch a piece at a time (`READ_SIZE`) and hands it
//! to a sink piece by piece. Whatever the size of a read, a frame cut by it,
//! or larger than it, or a segment's end (a seal, a torn tail and its
//! recovery record) falling inside it, the batches must be the same: the
//! same records, the same bytes, the same checkpoints, the same torn
//! region. Read sizes from 1 byte to the default are compared on one real
//! spool, and `read_into`'s pieces must add up to `read`'s bytes.

mod common;

use common::*;
use wormlog_spool::reader::{Batch, READ_SIZE, RangeReader, Span};

/// A spool that crosses segments, holds lines larger than a read, a torn
/// tail with its recovery record, checkpoints and an epoch transition.
fn spool(t: &TempDir) -> std::path::PathBuf {
    let pk = keygen(t);
    let src = t.spool();
    let mut o = options(&src);
    o.segment_max_bytes = 16 << 10;
    let mut s = open(t, o.clone());
    for i in 0..120u64 {
        let body = if i % 17 == 5 {
            vec![b'x'; 9_000 + i as usize] // larger than most reads below
        } else {
            format!("line {i}").into_bytes()
        };
        entry(&mut s, "app", i, &body);
        if i % 10 == 9 {
            s.checkpoint().unwrap();
        }
        if i == 60 {
            s.advance_epoch().unwrap();
        }
    }
    s.sync().unwrap();
    drop(s); // a crash
    tear_last_segment(&src, 5);
    let mut s = open(t, o);
    for i in 0..30u64 {
        entry(&mut s, "app", 200 + i, b"after the crash");
    }
    s.close("done").unwrap();
    let report = verify(&src, Some(pk));
    assert!(report.ok(), "{:?}", report.failure);
    assert_eq!(report.recoveries.len(), 1, "the spool needs a torn tail");
    assert!(report.segments > 4, "the spool needs several segments");
    src
}

/// How many records the spool holds, by walking its frames.
fn spool_records(src: &std::path::Path) -> u64 {
    let r = verify(src, None);
    assert!(r.ok(), "{:?}", r.failure);
    r.records
}

fn all_batches(r: &mut RangeReader, max_records: u64, max_bytes: usize) -> Vec<Batch> {
    let mut v = Vec::new();
    loop {
        let b = r.read(u64::MAX, max_records, max_bytes).unwrap();
        if b.span.records == 0 {
            return v;
        }
        v.push(b);
    }
}

/// What two batches must agree on: what they hold (first seq, records,
/// length, torn length, checkpoints) and their bytes.
fn key(b: &Batch) -> (&Span, &[u8]) {
    (&b.span, &b.bytes)
}

#[test]
fn every_read_size_gives_the_same_batches() {
    let t = TempDir::new();
    let src = spool(&t);
    for (max_records, max_bytes) in [(7, 1 << 20), (10_000, 20_000), (3, 100), (10_000, 16 << 20)] {
        let want = all_batches(&mut RangeReader::new(&src), max_records, max_bytes);
        assert!(
            want.iter().any(|b| b.span.torn_len > 0),
            "a batch with a torn region, limits {max_records}/{max_bytes}"
        );
        // Every record, in batches of at least one: a torn region larger
        // than max_bytes (388 bytes against 100) comes with its recovery
        // record, not in a batch of none that would end the reading.
        let records: u64 = want.iter().map(|b| b.span.records).sum();
        assert_eq!(
            records,
            spool_records(&src),
            "limits {max_records}/{max_bytes}"
        );
        for size in [1, 13, 100, 4096, 9_000, 65_536, READ_SIZE] {
            let mut r = RangeReader::new(&src).with_read_size(size);
            let got = all_batches(&mut r, max_records, max_bytes);
            assert_eq!(
                got.len(),
                want.len(),
                "read size {size}, limits {max_records}/{max_bytes}"
            );
            for (g, w) in got.iter().zip(&want) {
                assert_eq!(
                    key(g),
                    key(w),
                    "read size {size}, limits {max_records}/{max_bytes}"
                );
            }
        }
    }
}

#[test]
fn the_pieces_handed_to_the_sink_are_the_batch() {
    let t = TempDir::new();
    let src = spool(&t);
    let want = all_batches(&mut RangeReader::new(&src), 40, 30_000);
    let mut r = RangeReader::new(&src).with_read_size(4096);
    for w in &want {
        let (mut bytes, mut pieces) = (Vec::new(), 0);
        let span = r
            .read_into(u64::MAX, 40, 30_000, &mut |piece| {
                assert!(!piece.is_empty());
                bytes.extend_from_slice(piece);
                pieces += 1;
                Ok(())
            })
            .unwrap();
        assert_eq!(bytes, w.bytes);
        assert_eq!(span, w.span);
        if w.bytes.len() > 3 * 4096 {
            assert!(
                pieces > 1,
                "a batch of {} bytes in one piece",
                w.bytes.len()
            );
        }
    }
    let end = r
        .read_into(u64::MAX, 40, 30_000, &mut |_| panic!("nothing left"))
        .unwrap();
    assert_eq!(end.records, 0);
}

#[test]
fn a_failing_sink_is_an_error_and_the_batch_is_read_again() {
    let t = TempDir::new();
    let src = spool(&t);
    let want = all_batches(&mut RangeReader::new(&src), 40, 30_000);
    let mut r = RangeReader::new(&src).with_read_size(4096);
    let err = r
        .read_into(u64::MAX, 40, 30_000, &mut |_| {
            Err(std::io::Error::other("disk full"))
        })
        .unwrap_err();
    assert!(err.to_string().contains("disk full"), "{err}");
    // The reader has not moved: the same batch, whole, with no seek.
    let b = r.read(u64::MAX, 40, 30_000).unwrap();
    assert_eq!(key(&b), key(&want[0]));
}
