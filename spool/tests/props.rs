//! Property tests of the decoders and the follower against hostile bytes:
//! `Record::decode`, `SegmentHeader::decode`, `frame_at`, `agent_id::check`
//! and `Follower::accept` never panic, whatever they are given, and a batch
//! the follower refuses leaves it exactly as it was (its whole state
//! compared, chain and segment cursor).
//!
//! The follower is also fed mutated versions of real batches, read with
//! `RangeReader` from a real spool that crosses segments (seals), carries a
//! torn tail with its recovery record, checkpoints and an epoch transition:
//! bytes flipped, cut, inserted or moved, with and without the frame's CRC
//! made right again (so that the mutation reaches the record checks rather
//! than stopping at the CRC).

mod common;

use common::*;
use proptest::prelude::*;
use std::sync::OnceLock;
use wormlog_spool::follow::Follower;
use wormlog_spool::frame::{FrameAt, frame_at};
use wormlog_spool::reader::RangeReader;
use wormlog_spool::record::Record;
use wormlog_spool::segment::SegmentHeader;

/// A real chain, as batches, and the follower as it stands before each.
struct Fixture {
    /// (torn, frames) of each batch.
    batches: Vec<(Vec<u8>, Vec<u8>)>,
    /// `before[i]`: the follower that accepted batches `0..i`.
    before: Vec<Follower>,
    header: Vec<u8>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let t = TempDir::new();
        let pk = keygen(&t);
        let src = t.spool();
        let mut o = options(&src);
        o.segment_max_bytes = 2 << 10;
        let mut s = open(&t, o.clone());
        for i in 0..40u64 {
            entry(&mut s, "app", i, format!("line {i}").as_bytes());
            if i % 10 == 9 {
                s.checkpoint().unwrap();
            }
            if i == 25 {
                s.advance_epoch().unwrap();
            }
        }
        s.sync().unwrap();
        drop(s); // a crash
        // Tear the last record of the last segment.
        tear_last_segment(&src, 5);
        let mut s = open(&t, o);
        for i in 0..10u64 {
            entry(&mut s, "app", 100 + i, b"after the crash");
        }
        s.close("done").unwrap();
        let report = verify(&src, Some(pk));
        assert!(report.ok(), "{:?}", report.failure);
        assert_eq!(report.recoveries.len(), 1, "the fixture needs a torn tail");
        assert!(report.segments > 3, "the fixture needs several segments");
        let mut r = RangeReader::new(&src);
        let mut f = Follower::new("test-agent", Some(pk));
        let (mut batches, mut before) = (Vec::new(), Vec::new());
        loop {
            let b = r.read(u64::MAX, 7, 1 << 20).unwrap();
            if b.span.records == 0 {
                break;
            }
            before.push(f.clone());
            f.accept(b.torn(), b.frames()).unwrap();
            batches.push((b.torn().to_vec(), b.frames().to_vec()));
        }
        assert!(
            batches.iter().any(|(torn, _)| !torn.is_empty()),
            "the fixture needs a batch with a torn region"
        );
        let seg0 = std::fs::read(&segments(&src)[0]).unwrap();
        let (_, hlen) = SegmentHeader::decode(&seg0).unwrap();
        let header = seg0[..hlen].to_vec();
        Fixture {
            batches,
            before,
            header,
        }
    })
}

/// Offers a batch; a refusal must leave the follower as it was.
fn offer(f: &Follower, torn: &[u8], frames: &[u8]) -> Result<(), TestCaseError> {
    let mut g = f.clone();
    if g.accept(torn, frames).is_err() {
        prop_assert_eq!(&g, f, "a refused batch changed the follower");
    }
    Ok(())
}

/// The frame boundaries of whole frames in `frames`.
fn frame_spans(frames: &[u8]) -> Vec<(usize, usize, usize)> {
    let mut v = Vec::new();
    let mut off = 0;
    while let FrameAt::Frame { start, end } = frame_at(frames, off) {
        v.push((off, start, end));
        off = end;
    }
    v
}

/// Recomputes the CRC of the frame at `off` (record `start..end`).
fn fix_crc(buf: &mut [u8], off: usize, end: usize) {
    let crc = crc32c::crc32c(&buf[off + 4..end]);
    buf[off..off + 4].copy_from_slice(&crc.to_le_bytes());
}

#[derive(Debug, Clone)]
enum Mutation {
    /// XOR a byte anywhere in the body (torn region and frames).
    Flip { at: usize, mask: u8 },
    /// XOR a byte inside one record and make its frame's CRC right again.
    FlipRecord { frame: usize, at: usize, mask: u8 },
    /// Cut the frames at some point.
    Truncate { at: usize },
    /// Insert bytes somewhere in the frames.
    Insert { at: usize, bytes: Vec<u8> },
    /// Drop one whole frame.
    DropFrame { frame: usize },
    /// Swap two whole frames.
    SwapFrames { a: usize, b: usize },
    /// Move bytes between the torn region and the frames.
    MoveTorn { by: isize },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1u8..).prop_map(|(at, mask)| Mutation::Flip { at, mask }),
        (any::<usize>(), any::<usize>(), 1u8..)
            .prop_map(|(frame, at, mask)| Mutation::FlipRecord { frame, at, mask }),
        any::<usize>().prop_map(|at| Mutation::Truncate { at }),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..64))
            .prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        any::<usize>().prop_map(|frame| Mutation::DropFrame { frame }),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::SwapFrames { a, b }),
        (-16isize..16).prop_map(|by| Mutation::MoveTorn { by }),
    ]
}

fn mutate(torn: &mut Vec<u8>, frames: &mut Vec<u8>, m: &Mutation) {
    let spans = frame_spans(frames);
    match m {
        Mutation::Flip { at, mask } => {
            let n = torn.len() + frames.len();
            if n > 0 {
                let at = at % n;
                if at < torn.len() {
                    torn[at] ^= mask;
                } else {
                    frames[at - torn.len()] ^= mask;
                }
            }
        }
        Mutation::FlipRecord { frame, at, mask } => {
            if !spans.is_empty() {
                let (off, start, end) = spans[frame % spans.len()];
                frames[start + at % (end - start)] ^= mask;
                fix_crc(frames, off, end);
            }
        }
        Mutation::Truncate { at } => frames.truncate(at % (frames.len() + 1)),
        Mutation::Insert { at, bytes } => {
            let at = at % (frames.len() + 1);
            frames.splice(at..at, bytes.iter().copied());
        }
        Mutation::DropFrame { frame } => {
            if !spans.is_empty() {
                let (off, _, end) = spans[frame % spans.len()];
                frames.drain(off..end);
            }
        }
        Mutation::SwapFrames { a, b } => {
            if spans.len() > 1 {
                let (a, b) = (a % spans.len(), b % spans.len());
                let (a, b) = (a.min(b), a.max(b));
                let mut out = Vec::with_capacity(frames.len());
                for (i, _) in spans.iter().enumerate() {
                    let j = if i == a {
                        b
                    } else if i == b {
                        a
                    } else {
                        i
                    };
                    let (off, _, end) = spans[j];
                    out.extend_from_slice(&frames[off..end]);
                }
                *frames = out;
            }
        }
        Mutation::MoveTorn { by } => {
            if *by < 0 {
                let n = (by.unsigned_abs()).min(torn.len());
                let moved = torn.split_off(torn.len() - n);
                frames.splice(0..0, moved);
            } else {
                let n = (*by as usize).min(frames.len());
                torn.extend(frames.drain(..n));
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn record_decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
        let _ = Record::decode(&bytes);
    }

    /// Past the fixed fields (version 1, flags 0, a kind 0..=16), so the
    /// payload decoders of every kind see arbitrary bytes.
    #[test]
    fn record_payloads_never_panic(
        kind in 0u8..=16,
        seq in any::<u64>(),
        rest in prop::collection::vec(any::<u8>(), 0..2048),
    ) {
        let mut b = vec![1, kind, 0, 0];
        b.extend_from_slice(&seq.to_le_bytes());
        b.extend_from_slice(&[0; 40]);
        b.extend_from_slice(&rest);
        let _ = Record::decode(&b);
    }

    /// Any string: no panic, and an accepted id is a safe directory name
    /// that a segment header can hold.
    #[test]
    fn agent_id_check_never_panics_and_what_passes_is_a_safe_name(id in any::<String>(), dns in "[a-z0-9.-]{0,300}") {
        for id in [id, dns] {
            if wormlog_spool::agent_id::check(&id).is_ok() {
                prop_assert!((1..=253).contains(&id.len()), "{:?}", id);
                prop_assert!(!id.starts_with('.') && !id.contains('/') && !id.contains(".."), "{:?}", id);
                prop_assert!(id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.'), "{:?}", id);
            }
        }
    }

    #[test]
    fn segment_header_decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..1024)) {
        let _ = SegmentHeader::decode(&bytes);
    }

    /// A real header, damaged.
    #[test]
    fn damaged_segment_headers_never_panic(at in any::<usize>(), mask in 1u8.., cut in any::<usize>()) {
        let mut h = fixture().header.clone();
        let at = at % h.len();
        h[at] ^= mask;
        h.truncate(cut % (h.len() + 1));
        let _ = SegmentHeader::decode(&h);
    }

    #[test]
    fn frame_at_never_panics(
        bytes in prop::collection::vec(any::<u8>(), 0..4096),
        off in any::<usize>(),
    ) {
        let _ = frame_at(&bytes, off % (bytes.len() + 16));
        let _ = frame_at(&bytes, off);
        match frame_at(&bytes, 0) {
            FrameAt::Frame { start, end } => prop_assert!(start <= end && end <= bytes.len()),
            FrameAt::End => prop_assert!(bytes.is_empty()),
            FrameAt::Incomplete | FrameAt::Bad(_) => {}
        }
    }

    /// Arbitrary bytes, to a new follower and to one in mid-chain.
    #[test]
    fn accept_of_arbitrary_bytes_never_panics_and_a_refusal_changes_nothing(
        torn in prop::collection::vec(any::<u8>(), 0..64),
        frames in prop::collection::vec(any::<u8>(), 0..4096),
        which in any::<usize>(),
    ) {
        let fx = fixture();
        let f = &fx.before[which % fx.before.len()];
        offer(f, &torn, &frames)?;
        offer(f, &[], &frames)?;
    }

    /// A real batch, mutated, to the follower that would take it as it is.
    #[test]
    fn accept_of_mutated_batches_never_panics_and_a_refusal_changes_nothing(
        which in any::<usize>(),
        mutations in prop::collection::vec(mutation(), 1..4),
    ) {
        let fx = fixture();
        let i = which % fx.batches.len();
        let (mut torn, mut frames) = fx.batches[i].clone();
        for m in &mutations {
            mutate(&mut torn, &mut frames, m);
        }
        offer(&fx.before[i], &torn, &frames)?;
    }
}

/// The mutations above are meant to be refused: make sure the fixture's
/// batches pass unmutated, one after the other, and a replayed batch is
/// refused (it does not continue the chain) without a change.
#[test]
fn the_fixture_batches_are_accepted_in_order_and_a_replay_is_refused() {
    let fx = fixture();
    let mut f = fx.before[0].clone();
    for (i, (torn, frames)) in fx.batches.iter().enumerate() {
        assert_eq!(f, fx.before[i]);
        f.accept(torn, frames).unwrap();
    }
    let g = f.clone();
    let (torn, frames) = &fx.batches[1];
    assert!(f.accept(torn, frames).is_err());
    assert_eq!(f, g);
}
