//! The tamper matrix: every byte of every sealed segment flipped, records
//! deleted, duplicated, swapped, inserted (naively and with the chain
//! recomputed), segments truncated, deleted and reordered, an old epoch
//! re-signed with a newer key — each detected at the right place, and the
//! independent Python verifier agrees on the verdict and the location.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use wormlog_spool::frame::{FrameAt, begin_frame, finish_frame, frame_at};
use wormlog_spool::hash::{ZERO32, leaf_hash};
use wormlog_spool::keys::{CHECKPOINT_CONTEXT, EPOCH_KEY_CONTEXT, HostKey, sign_with};
use wormlog_spool::merkle::Frontier;
use wormlog_spool::record::{Payload, Record, put_header, put_payload};
use wormlog_spool::segment::SegmentHeader;
use wormlog_spool::verify::Report;

/// Three segments, two epoch transitions, a dozen entries.
fn build(t: &TempDir) -> [u8; 32] {
    let pk = keygen(t);
    // Keep the epoch-0 key for the forger's positive control.
    std::fs::create_dir_all(t.path().join("key0")).unwrap();
    std::fs::copy(t.keys().join("host.key"), t.path().join("key0/host.key")).unwrap();
    let mut s = open(t, options(&t.spool()));
    for i in 0..4 {
        entry(
            &mut s,
            "app",
            i,
            format!("line {i} of segment zero").as_bytes(),
        );
    }
    s.checkpoint().unwrap();
    s.advance_epoch().unwrap();
    entry(&mut s, "app", 4, b"after the first epoch");
    s.rotate().unwrap();
    for i in 5..9 {
        entry(
            &mut s,
            "sys",
            i,
            &[format!("line {i} ").as_bytes(), b"\x00\xff binary"].concat(),
        );
    }
    s.advance_epoch().unwrap();
    s.rotate().unwrap();
    for i in 9..12 {
        entry(&mut s, "app", i, b"in the active segment");
    }
    s.close("test done").unwrap();
    pk
}

/// (offset, end) of every frame of a segment file, after the header.
fn frames(bytes: &[u8]) -> Vec<(usize, usize)> {
    let (_, mut off) = SegmentHeader::decode(bytes).unwrap();
    let mut out = Vec::new();
    while let FrameAt::Frame { end, .. } = frame_at(bytes, off) {
        out.push((off, end));
        off = end;
    }
    assert_eq!(off, bytes.len(), "test spool is clean");
    out
}

fn expect_failure(r: &Report, segment: u64, offset: u64, what: &str) {
    let f = r
        .failure
        .as_ref()
        .unwrap_or_else(|| panic!("{what}: not detected"));
    assert_eq!(
        (f.segment, f.offset),
        (segment, offset),
        "{what}: detected at the wrong place: {f:?}"
    );
}

fn seg(t: &TempDir, n: usize) -> PathBuf {
    segments(&t.spool())[n].clone()
}

#[test]
fn intact_spool_verifies_with_both_verifiers() {
    let t = TempDir::new();
    let pk = build(&t);
    let r = verify(&t.spool(), Some(pk));
    assert!(r.ok(), "{:?}", r.failure);
    assert!(r.key_authenticated);
    assert_eq!(r.segments, 3);
    assert_eq!(r.entries, 12);
    assert_eq!(r.epoch_transitions, 2);
    assert_eq!(r.unsigned_tail, 0);
    assert_verifiers_agree(&t.spool(), Some(pk), &r);
    // A wrong key is refused at the genesis record.
    let other = [7u8; 32];
    let r = verify(&t.spool(), Some(other));
    expect_failure(
        &r,
        0,
        frames(&std::fs::read(seg(&t, 0)).unwrap())[0].0 as u64,
        "wrong key",
    );
    assert_verifiers_agree(&t.spool(), Some(other), &r);
}

#[test]
fn every_byte_of_every_sealed_segment() {
    let t = TempDir::new();
    let pk = build(&t);
    for n in 0..2 {
        let path = seg(&t, n);
        let orig = std::fs::read(&path).unwrap();
        let fr = frames(&orig);
        let hlen = fr[0].0;
        for i in 0..orig.len() {
            let mut b = orig.clone();
            b[i] ^= 0x01;
            std::fs::write(&path, &b).unwrap();
            let r = verify(&t.spool(), Some(pk));
            let want = if i < hlen {
                0
            } else {
                fr.iter().find(|(s, e)| *s <= i && i < *e).unwrap().0
            };
            expect_failure(
                &r,
                n as u64,
                want as u64,
                &format!("flip of byte {i} in segment {n}"),
            );
            if i % 97 == 0 {
                assert_verifiers_agree(&t.spool(), Some(pk), &r);
            }
        }
        std::fs::write(&path, &orig).unwrap();
    }
    assert!(verify(&t.spool(), Some(pk)).ok());
}

/// Rewrites segment `n` with its frames rearranged by `f`.
fn rewrite_frames(t: &TempDir, n: usize, f: impl FnOnce(&mut Vec<Vec<u8>>)) {
    let path = seg(t, n);
    let orig = std::fs::read(&path).unwrap();
    let fr = frames(&orig);
    let mut list: Vec<Vec<u8>> = fr.iter().map(|(s, e)| orig[*s..*e].to_vec()).collect();
    f(&mut list);
    let mut out = orig[..fr[0].0].to_vec();
    for x in list {
        out.extend_from_slice(&x);
    }
    std::fs::write(&path, out).unwrap();
}

/// Re-frames a record after editing it (a careful attacker fixes the CRC).
fn reframe(frame: &[u8], edit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut rec = frame[8..].to_vec();
    edit(&mut rec);
    let mut out = Vec::new();
    let at = begin_frame(&mut out);
    out.extend_from_slice(&rec);
    finish_frame(&mut out, at);
    out
}

#[test]
fn records_deleted_duplicated_swapped_inserted() {
    type Edit = Box<dyn Fn(&mut Vec<Vec<u8>>)>;
    let cases: Vec<(&str, Edit, usize)> = vec![
        // (name, edit of segment 0's frames, index of the frame where the failure is expected)
        (
            "delete",
            Box::new(|l| {
                l.remove(4);
            }),
            4,
        ),
        (
            "duplicate",
            Box::new(|l| {
                let x = l[4].clone();
                l.insert(5, x);
            }),
            5,
        ),
        ("swap", Box::new(|l| l.swap(4, 5)), 4),
        (
            "insert naive",
            Box::new(|l| {
                let x = l[4].clone();
                l.insert(4, x);
            }),
            5,
        ),
        (
            "insert with renumbered seqs and fixed CRCs",
            Box::new(|l| {
                let forged = reframe(&l[4], |r| r.extend_from_slice(b" forged"));
                l.insert(4, forged);
                for f in l.iter_mut().skip(5) {
                    *f = reframe(f, |r| {
                        let seq = u64::from_le_bytes(r[4..12].try_into().unwrap()) + 1;
                        r[4..12].copy_from_slice(&seq.to_le_bytes());
                    });
                }
            }),
            // The record after the forged one does not link to it.
            5,
        ),
        (
            "body edited with the CRC fixed",
            Box::new(|l| {
                let x = reframe(&l[4], |r| {
                    let n = r.len();
                    r[n - 1] ^= 0x20;
                });
                l[4] = x;
            }),
            // The next record no longer links to the edited one.
            5,
        ),
    ];
    for (name, edit, at) in cases {
        let t = TempDir::new();
        let pk = build(&t);
        let before = std::fs::read(seg(&t, 0)).unwrap();
        rewrite_frames(&t, 0, edit);
        let after = std::fs::read(seg(&t, 0)).unwrap();
        assert_ne!(before, after);
        let r = verify(&t.spool(), Some(pk));
        let want = frames_lenient(&after)[at];
        expect_failure(&r, 0, want as u64, name);
        assert_verifiers_agree(&t.spool(), Some(pk), &r);
    }
}

/// Frame offsets of a segment that may no longer verify.
fn frames_lenient(bytes: &[u8]) -> Vec<usize> {
    let (_, mut off) = SegmentHeader::decode(bytes).unwrap();
    let mut out = Vec::new();
    while let FrameAt::Frame { end, .. } = frame_at(bytes, off) {
        out.push(off);
        off = end;
    }
    out
}

#[test]
fn segments_truncated_deleted_reordered() {
    // Truncated by a few bytes: the last frame is incomplete.
    let t = TempDir::new();
    let pk = build(&t);
    let p = seg(&t, 1);
    let b = std::fs::read(&p).unwrap();
    let last = *frames(&b).last().unwrap();
    std::fs::write(&p, &b[..b.len() - 5]).unwrap();
    let r = verify(&t.spool(), Some(pk));
    expect_failure(&r, 1, last.0 as u64, "truncated by 5 bytes");
    assert_verifiers_agree(&t.spool(), Some(pk), &r);
    // Cut at a frame boundary (the seal removed): the end is unexplained.
    std::fs::write(&p, &b[..last.0]).unwrap();
    let r = verify(&t.spool(), Some(pk));
    expect_failure(&r, 1, last.0 as u64, "seal removed");
    assert!(
        r.failure
            .as_ref()
            .unwrap()
            .reason
            .contains("without a seal")
    );
    assert_verifiers_agree(&t.spool(), Some(pk), &r);

    // A segment deleted from the middle.
    let t = TempDir::new();
    let pk = build(&t);
    std::fs::remove_file(seg(&t, 1)).unwrap();
    let r = verify(&t.spool(), Some(pk));
    expect_failure(&r, 2, 0, "middle segment deleted");
    assert_verifiers_agree(&t.spool(), Some(pk), &r);

    // The first segment deleted.
    let t = TempDir::new();
    let pk = build(&t);
    std::fs::remove_file(seg(&t, 0)).unwrap();
    let r = verify(&t.spool(), Some(pk));
    expect_failure(&r, 1, 0, "first segment deleted");
    assert_verifiers_agree(&t.spool(), Some(pk), &r);

    // Two segments swapped by renaming.
    let t = TempDir::new();
    let pk = build(&t);
    let (a, b) = (seg(&t, 1), seg(&t, 2));
    let tmp = t.path().join("swap");
    std::fs::rename(&a, &tmp).unwrap();
    std::fs::rename(&b, &a).unwrap();
    std::fs::rename(&tmp, &b).unwrap();
    let r = verify(&t.spool(), Some(pk));
    expect_failure(&r, 1, 0, "segments swapped");
    assert_verifiers_agree(&t.spool(), Some(pk), &r);

    // A segment whose torn tail a recovery record explains, cut below the
    // recovery's region_offset: the end it names is past the file's end.
    let t = TempDir::new();
    let pk = build(&t);
    let last = seg(&t, 2);
    let mut b = std::fs::read(&last).unwrap();
    let clean_len = b.len();
    b.extend_from_slice(&[0x55, 0, 0, 0, 0x10, 0]);
    wormlog_spool::worm::clear_flags(&last).unwrap();
    std::fs::write(&last, &b).unwrap();
    open(&t, options(&t.spool())).close("recovered").unwrap();
    assert!(verify(&t.spool(), Some(pk)).ok());
    let torn_frames = frames(&b[..clean_len]);
    wormlog_spool::worm::clear_flags(&last).unwrap();
    std::fs::write(&last, &b[..torn_frames.last().unwrap().0]).unwrap();
    let r = verify(&t.spool(), Some(pk));
    let f = r
        .failure
        .clone()
        .expect("segment cut under its recovery record");
    assert!(f.reason.contains("past the end"), "{f:?}");
    assert_verifiers_agree(&t.spool(), Some(pk), &r);

    // Segments of another spool mixed in: the chain does not continue.
    let t = TempDir::new();
    let pk = build(&t);
    let t2 = TempDir::new();
    std::fs::create_dir_all(t2.keys()).unwrap();
    std::fs::copy(t.path().join("key0/host.key"), t2.keys().join("host.key")).unwrap();
    let mut s = open(&t2, options(&t2.spool()));
    entry(&mut s, "app", 0, b"another history");
    s.rotate().unwrap();
    s.close("x").unwrap();
    std::fs::copy(seg(&t2, 1), seg(&t, 1)).unwrap();
    let r = verify(&t.spool(), Some(pk));
    expect_failure(&r, 1, 0, "foreign segment");
    assert_verifiers_agree(&t.spool(), Some(pk), &r);
}

/// Rewrites the whole spool from its records, recomputing the chain, the
/// tree and every signature with `key_for(epoch)`, and altering the body of
/// entry record `target`. This is what a root attacker who holds keys
/// would do.
fn forge(dir: &Path, target: u64, key_for: &dyn Fn(u64) -> ed25519_dalek::SigningKey) {
    let mut recs: Vec<(u64, Vec<u8>)> = Vec::new();
    let r = wormlog_spool::verify::verify_spool(dir, None, &mut |loc, _, bytes| {
        recs.push((loc.segment, bytes.to_vec()))
    })
    .unwrap();
    assert!(r.ok());
    let mut head = ZERO32;
    let mut tree = Frontier::new();
    let mut epoch = 0;
    let mut files: Vec<Vec<u8>> = Vec::new();
    let mut cur_seg = u64::MAX;
    for (segno, bytes) in recs {
        let rec = Record::decode(&bytes).unwrap();
        if segno != cur_seg {
            cur_seg = segno;
            let h = SegmentHeader {
                segment_no: segno,
                first_seq: rec.seq,
                prev_head: head,
                agent_id: "test-agent".into(),
            };
            files.push(h.encode());
        }
        let mut out = Vec::new();
        put_header(&mut out, rec.kind, rec.seq, rec.ts, &head);
        match rec.payload {
            Payload::Entry(mut e) if rec.seq == target => {
                let body = [e.body, b" (rewritten)"].concat();
                e.body = &body;
                put_payload(&mut out, &Payload::Entry(e));
            }
            Payload::Checkpoint(mut c) => {
                c.root = tree.root();
                c.head = head;
                c.frontier = tree.nodes().to_vec();
                put_payload(&mut out, &Payload::Checkpoint(c));
                // Only what changed needs a new signature.
                if out != bytes {
                    let n = out.len();
                    let sig = sign_with(&key_for(epoch), CHECKPOINT_CONTEXT, &out[..n - 64]);
                    out[n - 64..].copy_from_slice(&sig);
                }
            }
            Payload::EpochKey {
                from_epoch,
                to_epoch,
                tree_size,
                signature,
                ..
            } => {
                let new_pubkey = key_for(to_epoch).verifying_key().to_bytes();
                put_payload(
                    &mut out,
                    &Payload::EpochKey {
                        from_epoch,
                        to_epoch,
                        new_pubkey,
                        tree_size,
                        head,
                        signature,
                    },
                );
                if out != bytes {
                    let n = out.len();
                    let sig = sign_with(&key_for(epoch), EPOCH_KEY_CONTEXT, &out[..n - 64]);
                    out[n - 64..].copy_from_slice(&sig);
                }
                epoch = to_epoch;
            }
            p => put_payload(&mut out, &p),
        }
        let f = files.last_mut().unwrap();
        let at = begin_frame(f);
        f.extend_from_slice(&out);
        finish_frame(f, at);
        let leaf = leaf_hash(&out);
        head = leaf;
        tree.push(leaf);
    }
    for (i, f) in files.iter().enumerate() {
        std::fs::write(wormlog_spool::segment::segment_path(dir, i as u64), f).unwrap();
    }
}

#[test]
fn old_epoch_resigned_with_a_newer_key() {
    let t = TempDir::new();
    let pk = build(&t);
    // Every epoch's key, derived from the saved epoch-0 seed.
    let scratch = t.path().join("key0");
    let mut k = HostKey::load(&scratch).unwrap();
    let mut seeds = Vec::new();
    for _ in 0..3 {
        std::fs::copy(
            scratch.join("host.key"),
            t.path().join(format!("k{}", seeds.len())),
        )
        .unwrap();
        seeds.push(t.path().join(format!("k{}", seeds.len())));
        k.advance(0).unwrap();
    }
    let key_of = |e: u64| -> ed25519_dalek::SigningKey {
        let b = std::fs::read(&seeds[e as usize]).unwrap();
        wormlog_spool::keys::epoch_signing_key(b[26..58].try_into().unwrap())
    };
    // The entry to alter: seq 4 (epoch 0).
    let target = 4;

    // Control: with the true keys of every epoch the forger produces a spool
    // that verifies — so the failure below comes from the key, not the forger.
    let t_ok = TempDir::new();
    copy_dir(&t.spool(), &t_ok.spool());
    forge(&t_ok.spool(), target, &key_of);
    let r = verify(&t_ok.spool(), Some(pk));
    assert!(r.ok(), "forger control: {:?}", r.failure);
    assert_verifiers_agree(&t_ok.spool(), Some(pk), &r);
    assert!(
        bodies(&t_ok.spool())
            .iter()
            .any(|(_, b)| b.ends_with(b"(rewritten)"))
    );

    // The intruder holds only the current (epoch 2) key and re-signs everything with it.
    forge(&t.spool(), target, &|_| key_of(2));
    let r = verify(&t.spool(), Some(pk));
    let f = r.failure.clone().expect("re-signed history detected");
    assert_eq!(f.segment, 0);
    assert!(f.reason.contains("signature"), "{f:?}");
    // The first checkpoint after the altered entry (seq 4: entries are
    // seqs 3..=6, the checkpoint 7) is the first signature the intruder had
    // to forge, for epoch 0, with the epoch-2 key.
    assert_eq!(f.seq, 7);
    assert!(f.reason.contains("epoch 0"), "{f:?}");
    assert_verifiers_agree(&t.spool(), Some(pk), &r);
}
