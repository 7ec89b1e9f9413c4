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
    build_with(t, None)
}

/// The same, encrypted to a recipient (its identity is thrown away: the
/// verifiers need none).
fn build_encrypted(t: &TempDir) -> [u8; 32] {
    let id = age::x25519::Identity::generate();
    build_with(t, Some(id.to_public().to_string()))
}

fn build_with(t: &TempDir, encrypt_to: Option<String>) -> [u8; 32] {
    let pk = keygen(t);
    // Keep the epoch-0 key for the forger's positive control.
    std::fs::create_dir_all(t.path().join("key0")).unwrap();
    std::fs::copy(t.keys().join("host.key"), t.path().join("key0/host.key")).unwrap();
    let mut o = options(&t.spool());
    o.encrypt_to = encrypt_to.into_iter().collect();
    let mut s = open(t, o);
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

/// Every record of a spool that verifies, with the segment it is in.
fn records_of(dir: &Path) -> Vec<(u64, Vec<u8>)> {
    let mut recs = Vec::new();
    let r = wormlog_spool::verify::verify_spool(dir, None, &mut |loc, _, bytes| {
        recs.push((loc.segment, bytes.to_vec()))
    })
    .unwrap();
    assert!(r.ok(), "{:?}", r.failure);
    recs
}

/// Writes the spool in `dir` anew from `recs` (each with the segment it
/// goes in), as a root attacker who holds keys would: sequence numbers,
/// links, segment headers, and the tree size, root, head and frontier of
/// every checkpoint and epoch transition recomputed; a signing record that
/// changed is signed again with `key_for(epoch)`.
fn rechain(
    dir: &Path,
    recs: &[(u64, Vec<u8>)],
    key_for: &dyn Fn(u64) -> ed25519_dalek::SigningKey,
) {
    let mut head = ZERO32;
    let mut tree = Frontier::new();
    let mut epoch = 0;
    let mut files: Vec<(u64, Vec<u8>)> = Vec::new();
    for (seq, (segno, bytes)) in (0u64..).zip(recs) {
        let rec = Record::decode(bytes).unwrap();
        if files.last().is_none_or(|(no, _)| no != segno) {
            let h = SegmentHeader {
                segment_no: *segno,
                first_seq: seq,
                prev_head: head,
                agent_id: "test-agent".into(),
            };
            files.push((*segno, h.encode()));
        }
        let mut out = Vec::new();
        put_header(&mut out, rec.kind, seq, rec.ts, &head);
        // The record's flags as they were (a sealed entry stays sealed).
        let flags = wormlog_spool::record::FLAGS_OFFSET;
        out[flags..flags + 2].copy_from_slice(&bytes[flags..flags + 2]);
        let resign = |out: &mut Vec<u8>, context: &[u8], epoch: u64| {
            // Only what changed needs a new signature.
            if out[..] != bytes[..] {
                let n = out.len();
                let sig = sign_with(&key_for(epoch), context, &out[..n - 64]);
                out[n - 64..].copy_from_slice(&sig);
            }
        };
        match rec.payload {
            Payload::Checkpoint(mut c) => {
                c.tree_size = seq;
                c.root = tree.root();
                c.head = head;
                c.frontier = tree.nodes().to_vec();
                put_payload(&mut out, &Payload::Checkpoint(c));
                resign(&mut out, CHECKPOINT_CONTEXT, epoch);
            }
            Payload::EpochKey {
                from_epoch,
                to_epoch,
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
                        tree_size: seq,
                        head,
                        signature,
                    },
                );
                resign(&mut out, EPOCH_KEY_CONTEXT, epoch);
                epoch = to_epoch;
            }
            p => put_payload(&mut out, &p),
        }
        let f = &mut files.last_mut().unwrap().1;
        let at = begin_frame(f);
        f.extend_from_slice(&out);
        finish_frame(f, at);
        let leaf = leaf_hash(&out);
        head = leaf;
        tree.push(leaf);
    }
    for (no, f) in &files {
        std::fs::write(wormlog_spool::segment::segment_path(dir, *no), f).unwrap();
    }
}

/// Rewrites the whole spool, altering the body of entry record `target`
/// and signing again with `key_for(epoch)` (see [`rechain`]).
fn forge(dir: &Path, target: u64, key_for: &dyn Fn(u64) -> ed25519_dalek::SigningKey) {
    let mut recs = records_of(dir);
    let (_, bytes) = &mut recs[target as usize];
    let rec = Record::decode(bytes).unwrap();
    let Payload::Entry(mut e) = rec.payload else {
        panic!("record {target} is not an entry")
    };
    let body = [e.body, b" (rewritten)"].concat();
    e.body = &body;
    let mut out = Vec::new();
    put_header(&mut out, rec.kind, rec.seq, rec.ts, &rec.prev);
    put_payload(&mut out, &Payload::Entry(e));
    *bytes = out;
    rechain(dir, &recs, key_for);
}

/// The signing key of every epoch of a spool made by [`build`], derived
/// from the epoch-0 seed it kept.
fn epoch_keys(t: &TempDir) -> impl Fn(u64) -> ed25519_dalek::SigningKey {
    let scratch = t.path().join("key0");
    let mut k = HostKey::load(&scratch).unwrap();
    let mut seeds = Vec::new();
    for _ in 0..3 {
        let copy = t.path().join(format!("k{}", seeds.len()));
        std::fs::copy(scratch.join("host.key"), &copy).unwrap();
        seeds.push(std::fs::read(copy).unwrap());
        k.advance(0).unwrap();
    }
    move |e: u64| -> ed25519_dalek::SigningKey {
        wormlog_spool::keys::epoch_signing_key(seeds[e as usize][26..58].try_into().unwrap())
    }
}

#[test]
fn old_epoch_resigned_with_a_newer_key() {
    let t = TempDir::new();
    let pk = build(&t);
    let key_of = epoch_keys(&t);
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

/// The frames of the active (last) segment of a spool made by [`build`]:
/// its anchor, three entries, the stop record and the final checkpoint.
fn active_frames(t: &TempDir) -> (PathBuf, Vec<u8>, Vec<(usize, usize)>) {
    let path = seg(t, 2);
    let bytes = std::fs::read(&path).unwrap();
    let fr = frames(&bytes);
    assert_eq!(fr.len(), 6, "anchor, 3 entries, stop, checkpoint");
    (path, bytes, fr)
}

/// The expected `seq` at each frame of the active segment.
fn active_first_seq(t: &TempDir) -> u64 {
    let bytes = std::fs::read(seg(t, 2)).unwrap();
    SegmentHeader::decode(&bytes).unwrap().0.first_seq
}

/// Sets bit 22 of the `len` of the frame at `off`: still within bounds
/// (below 64 MiB), now running past the end of the file.
fn flip_length(bytes: &mut [u8], off: usize) {
    bytes[off + 4 + 2] ^= 0x40;
    let len = u32::from_le_bytes(bytes[off + 4..off + 8].try_into().unwrap()) as usize;
    assert!(off + 8 + len > bytes.len() && len <= 64 << 20);
}

#[test]
fn flipped_length_in_the_active_segment_is_not_a_tail_in_progress() {
    // A frame in the middle: the entries, stop record and signed final
    // checkpoint after it are intact and continue the sequence.
    let t = TempDir::new();
    let pk = build(&t);
    let (path, mut bytes, fr) = active_frames(&t);
    let first_seq = active_first_seq(&t);
    flip_length(&mut bytes, fr[1].0);
    std::fs::write(&path, &bytes).unwrap();
    let r = verify(&t.spool(), Some(pk));
    expect_failure(&r, 2, fr[1].0 as u64, "length flipped in the middle");
    let f = r.failure.clone().unwrap();
    assert_eq!(f.seq, first_seq + 1, "{f:?}");
    assert!(f.reason.contains("length"), "{f:?}");
    assert_eq!(r.tail_in_progress_bytes, 0);
    assert_verifiers_agree(&t.spool(), Some(pk), &r);
    // Reopened, the agent records the damage as corruption: still a failure,
    // at the recovery record.
    open(&t, options(&t.spool())).close("reopened").unwrap();
    let r = verify(&t.spool(), Some(pk));
    expect_failure(
        &r,
        3,
        frames_lenient(&std::fs::read(seg(&t, 3)).unwrap())[0] as u64,
        "reopened",
    );
    assert!(r.failure.as_ref().unwrap().reason.contains("corruption"));
    assert_verifiers_agree(&t.spool(), Some(pk), &r);

    // The last frame, the final checkpoint: nothing follows it, but its
    // bytes to the end of the file are a whole frame under its CRC.
    let t = TempDir::new();
    let pk = build(&t);
    let (path, mut bytes, fr) = active_frames(&t);
    flip_length(&mut bytes, fr[5].0);
    std::fs::write(&path, &bytes).unwrap();
    let r = verify(&t.spool(), Some(pk));
    expect_failure(&r, 2, fr[5].0 as u64, "length of the last frame flipped");
    assert_eq!(r.failure.as_ref().unwrap().seq, first_seq + 5);
    assert_verifiers_agree(&t.spool(), Some(pk), &r);
    // Reopened, the agent applies the verifiers' rule and records the damage
    // as corruption (not a torn tail): still a failure, at the recovery
    // record — a restart does not turn damage into a torn write.
    open(&t, options(&t.spool())).close("reopened").unwrap();
    let r = verify(&t.spool(), Some(pk));
    let recovery_at = frames_lenient(&std::fs::read(seg(&t, 3)).unwrap())[0] as u64;
    expect_failure(&r, 3, recovery_at, "reopened after the last frame's flip");
    assert!(
        r.failure.as_ref().unwrap().reason.contains("corruption"),
        "{:?}",
        r.failure
    );
    assert_verifiers_agree(&t.spool(), Some(pk), &r);

    // Control: a write really in progress (a frame header and part of its
    // record) is still a tail in progress for both verifiers.
    let t = TempDir::new();
    let pk = build(&t);
    let (path, mut bytes, fr) = active_frames(&t);
    let partial = bytes[fr[1].0..fr[1].1 - 3].to_vec();
    bytes.extend_from_slice(&partial);
    std::fs::write(&path, &bytes).unwrap();
    let r = verify(&t.spool(), Some(pk));
    assert!(r.ok(), "{:?}", r.failure);
    assert_eq!(r.tail_in_progress_bytes, partial.len() as u64);
    assert_verifiers_agree(&t.spool(), Some(pk), &r);
}

#[test]
fn anchor_checkpoint_stands_first_in_its_segment() {
    type Edit = Box<dyn Fn(&mut Vec<(u64, Vec<u8>)>) -> usize>;
    let kind = |r: &[u8]| Record::decode(r).unwrap().kind;
    let cases: Vec<(&str, u64, Edit)> = vec![
        (
            // Second after an entry: neither genesis nor recovery may stand
            // before the anchor.
            "anchor after an entry",
            2,
            Box::new(|recs| {
                let i = recs.iter().position(|(s, _)| *s == 2).unwrap();
                recs.swap(i, i + 1);
                i
            }),
        ),
        (
            "a sealed segment without any checkpoint",
            1,
            Box::new(move |recs| {
                recs.retain(|(s, r)| *s != 1 || kind(r) != wormlog_spool::record::Kind::Checkpoint);
                recs.iter().position(|(s, _)| *s == 1).unwrap()
            }),
        ),
    ];
    for (name, segment, edit) in cases {
        let t = TempDir::new();
        let pk = build(&t);
        let key_of = epoch_keys(&t);
        // Control: rewritten unchanged, the spool verifies.
        let mut recs = records_of(&t.spool());
        rechain(&t.spool(), &recs, &key_of);
        assert!(verify(&t.spool(), Some(pk)).ok(), "{name}: control");
        let at = edit(&mut recs);
        for p in segments(&t.spool()) {
            std::fs::remove_file(p).unwrap();
        }
        rechain(&t.spool(), &recs, &key_of);
        let r = verify(&t.spool(), Some(pk));
        let hlen = SegmentHeader::decode(&std::fs::read(seg(&t, segment as usize)).unwrap())
            .unwrap()
            .1;
        expect_failure(&r, segment, hlen as u64, name);
        assert_eq!(r.failure.as_ref().unwrap().seq, at as u64, "{name}");
        assert!(
            r.failure.as_ref().unwrap().reason.contains("anchor"),
            "{name}: {:?}",
            r.failure
        );
        assert_verifiers_agree(&t.spool(), Some(pk), &r);
    }
}

/// The Ed25519 group order L, as little-endian 64-bit limbs.
const ORDER_L: [u64; 4] = [0x5812_631a_5cf5_d3ed, 0x14de_f9de_a2f7_9cd6, 0, 1 << 60];

/// `x mod L` for a little-endian integer of any length.
fn mod_l(x: &[u8]) -> [u8; 32] {
    let mut r = [0u64; 4];
    for byte in x.iter().rev() {
        for bit in (0..8).rev() {
            let mut carry = u64::from((byte >> bit) & 1);
            for limb in r.iter_mut() {
                let out = *limb >> 63;
                *limb = (*limb << 1) | carry;
                carry = out;
            }
            if r.iter().rev().cmp(ORDER_L.iter().rev()).is_ge() {
                let mut borrow = 0;
                for (limb, l) in r.iter_mut().zip(ORDER_L) {
                    let (d, b1) = limb.overflowing_sub(l);
                    let (d, b2) = d.overflowing_sub(borrow);
                    *limb = d;
                    borrow = u64::from(b1 || b2);
                }
            }
        }
    }
    let mut out = [0u8; 32];
    for (chunk, limb) in out.chunks_mut(8).zip(r) {
        chunk.copy_from_slice(&limb.to_le_bytes());
    }
    out
}

/// `a + b` for little-endian integers (one byte longer).
fn add_le(a: &[u8; 32], b: &[u8; 32]) -> [u8; 33] {
    let mut out = [0u8; 33];
    let mut carry = 0u16;
    for i in 0..32 {
        let s = u16::from(a[i]) + u16::from(b[i]) + carry;
        out[i] = s as u8;
        carry = s >> 8;
    }
    out[32] = carry as u8;
    out
}

/// The encoding of the Ed25519 base point B (its discrete log is 1).
fn base_point() -> [u8; 32] {
    let mut b = [0x66u8; 32];
    b[0] = 0x58;
    b
}

/// A little-endian 32-byte integer.
fn le32(n: u64) -> [u8; 32] {
    let mut b = [0u8; 32];
    b[..8].copy_from_slice(&n.to_le_bytes());
    b
}

#[test]
fn weak_ed25519_keys_and_signatures_are_refused_by_both_verifiers() {
    use sha2::Digest;
    use wormlog_spool::chain::{Receipt, receipt_message};
    use wormlog_spool::keys::RECEIPT_CONTEXT;
    // `k` of RFC 8032 for a receipt signature with this R and key.
    let challenge = |r: &[u8; 32], key: &[u8; 32], size: u64, root: &[u8; 32]| {
        let mut h = sha2::Sha512::new();
        h.update(r);
        h.update(key);
        h.update(RECEIPT_CONTEXT);
        h.update(receipt_message("test-agent", size, root, RECEIPT_TS));
        mod_l(&h.finalize())
    };
    let sig = |r: [u8; 32], s: [u8; 32]| -> [u8; 64] { [r, s].concat().try_into().unwrap() };
    let mut identity = [0u8; 32];
    identity[0] = 1;
    // p + 1, the identity's y coordinate written without reduction mod p.
    let mut identity_unreduced = [0xffu8; 32];
    identity_unreduced[0] = 0xee;
    identity_unreduced[31] = 0x7f;
    type Forge = Box<dyn Fn(u64, &[u8; 32]) -> ([u8; 32], [u8; 64])>;
    let cases: Vec<(&str, bool, Forge)> = vec![
        (
            // Key B, R = B, S = 1 + k: a valid signature under a key whose
            // secret is 1. Both verifiers accept it.
            "control: key B, ordinary signature",
            true,
            Box::new(move |size, root| {
                let b = base_point();
                let k = challenge(&b, &b, size, root);
                (b, sig(b, mod_l(&add_le(&k, &le32(1)))))
            }),
        ),
        (
            // [S]B - [k]O = R for any message: anyone can sign.
            "the identity as key",
            false,
            Box::new(move |_, _| (identity, sig(base_point(), le32(1)))),
        ),
        (
            "the identity as key, y not reduced mod p",
            false,
            Box::new(move |_, _| (identity_unreduced, sig(base_point(), le32(1)))),
        ),
        (
            "R of small order (the identity), S = k",
            false,
            Box::new(move |size, root| {
                let b = base_point();
                (b, sig(identity, challenge(&identity, &b, size, root)))
            }),
        ),
        (
            "S not reduced mod L (S + L)",
            false,
            Box::new(move |size, root| {
                let b = base_point();
                let k = challenge(&b, &b, size, root);
                let s = mod_l(&add_le(&k, &le32(1)));
                let mut l = [0u8; 32];
                for (chunk, limb) in l.chunks_mut(8).zip(ORDER_L) {
                    chunk.copy_from_slice(&limb.to_le_bytes());
                }
                let unreduced: [u8; 32] = add_le(&s, &l)[..32].try_into().unwrap();
                (b, sig(b, unreduced))
            }),
        ),
    ];
    for (name, valid, forge) in cases {
        let t = TempDir::new();
        let pk = keygen(&t);
        let mut s = open(&t, options(&t.spool()));
        entry(&mut s, "app", 0, b"countersigned");
        s.checkpoint().unwrap();
        let (size, root) = durable_checkpoint(&mut s, &t.spool());
        let (collector_pubkey, signature) = forge(size, &root);
        let seq = s
            .append_receipt(&Receipt {
                collector_id: "collector-1".into(),
                tree_size: size,
                root,
                collector_ts: RECEIPT_TS,
                collector_pubkey,
                signature,
            })
            .unwrap();
        s.close("done").unwrap();
        let r = verify(&t.spool(), Some(pk));
        if valid {
            assert!(r.ok(), "{name}: {:?}", r.failure);
            assert_eq!(r.receipts, 1, "{name}");
        } else {
            let f = r
                .failure
                .clone()
                .unwrap_or_else(|| panic!("{name}: accepted"));
            assert_eq!((f.segment, f.seq), (0, seq), "{name}: {f:?}");
            assert!(f.reason.contains("receipt signature"), "{name}: {f:?}");
        }
        assert_verifiers_agree(&t.spool(), Some(pk), &r);
    }
}

#[test]
fn lookahead_needs_a_next_header_that_passes_its_own_checks() {
    // Segment 2 torn, segment 3 opening with the recovery record that names
    // it; then segment 3's agent id is made invalid UTF-8 (CRC recomputed).
    let t = TempDir::new();
    let pk = build(&t);
    let last = seg(&t, 2);
    let mut b = std::fs::read(&last).unwrap();
    let clean_len = b.len();
    b.extend_from_slice(&[0x55, 0, 0, 0, 0x10, 0]);
    std::fs::write(&last, &b).unwrap();
    open(&t, options(&t.spool())).close("recovered").unwrap();
    assert!(verify(&t.spool(), Some(pk)).ok());
    let next = seg(&t, 3);
    let mut h = std::fs::read(&next).unwrap();
    let n = h[64] as usize;
    h[65] = 0xff;
    let crc = crc32c::crc32c(&h[..65 + n]);
    h[65 + n..69 + n].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&next, &h).unwrap();
    // The recovery record no longer limits segment 2, whose torn end is
    // then damage in a segment that is not the last.
    let r = verify(&t.spool(), Some(pk));
    expect_failure(&r, 2, clean_len as u64, "next header's agent id not UTF-8");
    assert_verifiers_agree(&t.spool(), Some(pk), &r);
}

/// The matrix on an encrypted spool (docs/FORMAT.md §6.2.1, §6.16): every
/// byte of a sealed segment flipped, a ciphertext byte changed, an entry
/// deleted, the sealed flag set where it is not allowed — each caught
/// without any key, at the same place by both verifiers.
#[test]
fn encrypted_spool_tamper_matrix() {
    let t = TempDir::new();
    let pk = build_encrypted(&t);
    let r = verify(&t.spool(), Some(pk));
    assert!(r.ok(), "{:?}", r.failure);
    assert_eq!(r.entries, 12);
    assert_verifiers_agree(&t.spool(), Some(pk), &r);
    // Every byte of segment 0.
    let path = seg(&t, 0);
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
        expect_failure(&r, 0, want as u64, &format!("flip of byte {i}"));
        if i % 61 == 0 {
            assert_verifiers_agree(&t.spool(), Some(pk), &r);
        }
    }
    std::fs::write(&path, &orig).unwrap();
    // Segment 0: genesis, anchor, data_key, start, entries…
    fn kind_at(l: &[Vec<u8>], i: usize) -> u8 {
        l[i][9]
    }
    // (Edits that only the data-key rules can catch need the forger, which
    // renumbers and signs again: see
    // encrypted_forgeries_are_caught_by_the_data_key_rules.)
    type Edit = Box<dyn Fn(&mut Vec<Vec<u8>>)>;
    let cases: Vec<(&str, Edit, usize)> = vec![
        (
            "sealed flag set on the start record, CRC fixed",
            Box::new(|l| l[3] = reframe(&l[3], |r| r[2] = 1)),
            3,
        ),
        (
            "ciphertext edited, CRC fixed",
            Box::new(|l| {
                assert_eq!(kind_at(l, 4), 2, "an entry");
                l[4] = reframe(&l[4], |r| {
                    let n = r.len();
                    r[n - 20] ^= 0x20;
                });
            }),
            5,
        ),
        (
            "entry deleted",
            Box::new(|l| {
                l.remove(4);
            }),
            4,
        ),
    ];
    for (name, edit, at) in cases {
        let t = TempDir::new();
        let pk = build_encrypted(&t);
        rewrite_frames(&t, 0, edit);
        let after = std::fs::read(seg(&t, 0)).unwrap();
        let r = verify(&t.spool(), Some(pk));
        let want = frames_lenient(&after)[at];
        expect_failure(&r, 0, want as u64, name);
        assert_verifiers_agree(&t.spool(), Some(pk), &r);
    }
}

/// The rules only encryption has (§6.16: one `data_key`, right after the
/// segment's anchor; a segment's entries sealed if and only if it has
/// one), reached by a forger who renumbers, re-links and signs again with
/// the agent's own keys — so that nothing but those rules can catch the
/// edit. Each is caught at its record, for the rule's reason, by both
/// verifiers; with no edit the forged spool verifies.
#[test]
fn encrypted_forgeries_are_caught_by_the_data_key_rules() {
    type Edit = Box<dyn Fn(&mut Vec<(u64, Vec<u8>)>)>;
    fn kind(r: &(u64, Vec<u8>)) -> u8 {
        r.1[1]
    }
    let cases: Vec<(&str, Edit, usize, &str)> = vec![
        ("no edit (control)", Box::new(|_| {}), 0, ""),
        (
            "data_key removed",
            Box::new(|l| {
                assert_eq!(kind(&l[2]), 16);
                l.remove(2);
            }),
            3,
            "a sealed entry in a segment without a data_key record",
        ),
        (
            "data_key duplicated",
            Box::new(|l| {
                let x = l[2].clone();
                l.insert(3, x);
            }),
            3,
            "a second data_key record in the segment",
        ),
        (
            "data_key moved after the start record",
            Box::new(|l| l.swap(2, 3)),
            3,
            "not the record right after its segment's anchor checkpoint",
        ),
        (
            "a sealed entry replaced by one in clear",
            Box::new(|l| {
                assert_eq!(kind(&l[4]), 2);
                let rec = Record::decode(&l[4].1).unwrap();
                let Payload::Entry(e) = rec.payload else {
                    panic!("an entry")
                };
                let clear = wormlog_spool::record::Entry {
                    sealed: None,
                    body: b"a line the attacker wants read",
                    ..e
                };
                let mut out = Vec::new();
                put_header(&mut out, rec.kind, rec.seq, rec.ts, &rec.prev);
                put_payload(&mut out, &Payload::Entry(clear));
                l[4].1 = out;
            }),
            4,
            "an entry in clear in a segment with a data_key record",
        ),
    ];
    for (name, edit, at, reason) in cases {
        let t = TempDir::new();
        let pk = build_encrypted(&t);
        let mut recs = records_of(&t.spool());
        edit(&mut recs);
        rechain(&t.spool(), &recs, &epoch_keys(&t));
        let r = verify(&t.spool(), Some(pk));
        if reason.is_empty() {
            assert!(r.ok(), "{name}: {:?}", r.failure);
        } else {
            let after = std::fs::read(seg(&t, 0)).unwrap();
            expect_failure(&r, 0, frames(&after)[at].0 as u64, name);
            let f = r.failure.as_ref().unwrap();
            assert!(f.reason.contains(reason), "{name}: {f:?}");
        }
        assert_verifiers_agree(&t.spool(), Some(pk), &r);
    }
}
