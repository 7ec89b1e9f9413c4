//! The crash model: a crash loses what was not synced and may tear the last
//! write at any byte (and, on ext4, leave zeros after it). For every byte
//! position of a batch, the spool is cut there, reopened (recovery) and
//! verified: every entry reported durable is present exactly once, in
//! order, the torn bytes stay where they were and are explained, and the
//! spool goes on working.

mod common;

use common::*;
use wormlog_spool::verify::verify_spool;

struct Point {
    sizes: Vec<u64>,
    entries: usize,
}

fn snapshot(dir: &std::path::Path, entries: usize) -> Point {
    Point {
        sizes: segments(dir)
            .iter()
            .map(|p| std::fs::metadata(p).unwrap().len())
            .collect(),
        entries,
    }
}

/// Builds the spool `dir` as it would be after a crash: segments as in
/// `full`, the last one cut to `len` bytes and padded with `zeros`.
fn crashed(full: &[Vec<u8>], last: usize, len: usize, zeros: usize, dir: &std::path::Path) {
    std::fs::create_dir_all(dir).unwrap();
    for (i, b) in full.iter().enumerate().take(last + 1) {
        let mut b = if i == last {
            b[..len].to_vec()
        } else {
            b.clone()
        };
        b.resize(b.len() + zeros * (i == last) as usize, 0);
        std::fs::write(wormlog_spool::segment::segment_path(dir, i as u64), b).unwrap();
    }
}

/// Reopens, checks the durable entries, appends one more, checks again.
fn recover_and_check(
    t: &TempDir,
    dir: &std::path::Path,
    expected: &[Vec<u8>],
    durable: usize,
    what: &str,
) {
    let mut o = options(dir);
    o.agent_id = "test-agent".into();
    let key = wormlog_spool::keys::HostKey::load(&t.keys()).unwrap();
    let (mut s, report) =
        wormlog_spool::Spool::open(o, key).unwrap_or_else(|e| panic!("{what}: reopen failed: {e}"));
    assert!(report.unclean_shutdown, "{what}");
    entry(&mut s, "after", 0, b"written after recovery");
    s.close("done").unwrap();
    let got: Vec<Vec<u8>> = bodies(dir)
        .into_iter()
        .filter(|(src, _)| src == "app")
        .map(|(_, b)| b)
        .collect();
    assert!(
        got.len() >= durable,
        "{what}: durable entries lost: {} < {durable}",
        got.len()
    );
    assert_eq!(
        got[..],
        expected[..got.len()],
        "{what}: entries differ from what was written"
    );
    let after = bodies(dir)
        .into_iter()
        .filter(|(src, _)| src == "after")
        .count();
    assert_eq!(after, 1, "{what}");
}

#[test]
fn torn_at_every_byte_of_a_batch() {
    let t = TempDir::new();
    keygen(&t);
    let dir = t.spool();
    let mut s = open(&t, options(&dir));
    let mut points = vec![snapshot(&dir, 0)];
    let mut expected = Vec::new();
    for b in 0..3 {
        for i in 0..3 {
            let body = format!("batch {b} line {i}").into_bytes();
            entry(&mut s, "app", expected.len() as u64, &body);
            expected.push(body);
        }
        s.sync().unwrap();
        points.push(snapshot(&dir, expected.len()));
    }
    drop(s); // a crash: no stop record
    let full: Vec<Vec<u8>> = segments(&dir)
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    assert_eq!(full.len(), 1);
    let boundaries: Vec<usize> = {
        let (_, mut off) = wormlog_spool::segment::SegmentHeader::decode(&full[0]).unwrap();
        let mut v = vec![off];
        while let wormlog_spool::frame::FrameAt::Frame { end, .. } =
            wormlog_spool::frame::frame_at(&full[0], off)
        {
            v.push(end);
            off = end;
        }
        v
    };
    let mut cases = 0;
    for w in points.windows(2) {
        let (p, q) = (&w[0], &w[1]);
        let (d, e) = (p.sizes[0] as usize, q.sizes[0] as usize);
        for len in d..=e {
            for zeros in [0usize, 1, 4096 - len % 4096] {
                if zeros > 0 && len % 7 != 0 {
                    continue;
                }
                let c = TempDir::new();
                std::fs::create_dir_all(c.keys()).unwrap();
                std::fs::copy(t.keys().join("host.key"), c.keys().join("host.key")).unwrap();
                crashed(&full, 0, len, zeros, &c.spool());
                let what = format!("cut at {len} (batch {d}..{e}) + {zeros} zeros");
                recover_and_check(&c, &c.spool(), &expected, p.entries, &what);
                let r = verify(&c.spool(), None);
                assert!(r.ok(), "{what}: {:?}", r.failure);
                let torn = zeros > 0 || !boundaries.contains(&len);
                if torn {
                    assert_eq!(r.recoveries.len(), 1, "{what}: torn tail not recorded");
                    assert_eq!(r.recoveries[0].cause, "torn_tail");
                } else {
                    assert!(
                        r.recoveries.is_empty(),
                        "{what}: a clean cut needs no recovery"
                    );
                }
                if cases % 50 == 0 {
                    assert_verifiers_agree(&c.spool(), None, &r);
                }
                cases += 1;
            }
        }
    }
    assert!(cases > 100, "only {cases} cases");
}

#[test]
fn crash_around_segment_rotation() {
    let t = TempDir::new();
    keygen(&t);
    let dir = t.spool();
    let mut s = open(&t, options(&dir));
    let mut expected = Vec::new();
    for i in 0..3 {
        let body = format!("before rotation {i}").into_bytes();
        entry(&mut s, "app", i, &body);
        expected.push(body);
    }
    s.rotate().unwrap();
    s.sync().unwrap();
    drop(s);
    let full: Vec<Vec<u8>> = segments(&dir)
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    assert_eq!(full.len(), 2);
    let hlen = wormlog_spool::segment::SegmentHeader::decode(&full[1])
        .unwrap()
        .1;

    // Crash after the seal, before the next segment existed.
    let c = TempDir::new();
    std::fs::create_dir_all(c.keys()).unwrap();
    std::fs::copy(t.keys().join("host.key"), c.keys().join("host.key")).unwrap();
    crashed(&full, 0, full[0].len(), 0, &c.spool());
    recover_and_check(&c, &c.spool(), &expected, 3, "no next segment");
    assert!(verify(&c.spool(), None).ok());

    // Crash after the next segment's header, before its first batch; and a
    // leftover temporary file from a creation that did not finish.
    let c = TempDir::new();
    std::fs::create_dir_all(c.keys()).unwrap();
    std::fs::copy(t.keys().join("host.key"), c.keys().join("host.key")).unwrap();
    crashed(&full, 1, hlen, 0, &c.spool());
    std::fs::write(
        c.spool().join("0000000000000002.wlseg.tmp"),
        &full[1][..hlen],
    )
    .unwrap();
    recover_and_check(&c, &c.spool(), &expected, 3, "header only");
    let r = verify(&c.spool(), None);
    assert!(r.ok(), "{:?}", r.failure);
    assert!(r.recoveries.is_empty());
    assert!(!c.spool().join("0000000000000002.wlseg.tmp").exists());
    assert_verifiers_agree(&c.spool(), None, &r);
}

#[test]
fn torn_genesis_starts_afresh() {
    let t = TempDir::new();
    keygen(&t);
    let dir = t.spool();
    let s = open(&t, options(&dir));
    drop(s);
    let full = std::fs::read(&segments(&dir)[0]).unwrap();
    let hlen = wormlog_spool::segment::SegmentHeader::decode(&full)
        .unwrap()
        .1;
    std::fs::write(&segments(&dir)[0], &full[..hlen + 10]).unwrap();
    let mut s = open(&t, options(&dir));
    entry(&mut s, "app", 0, b"first");
    s.close("x").unwrap();
    let r = verify_spool(&dir, None, &mut |_, _, _| {}).unwrap();
    assert!(r.ok(), "{:?}", r.failure);
    assert_eq!(bodies(&dir), vec![("app".to_string(), b"first".to_vec())]);
}
