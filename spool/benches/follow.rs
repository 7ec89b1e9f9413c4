//! What the collector's check of one forwarded batch costs:
//! `Follower::accept` of a 4 MiB batch of a real spool's records (from its
//! genesis record), median of several runs (docs/BENCHMARKS.md, "Leaf
//! hashes on a second core in the collector: tried, not kept"):
//!
//!   cargo bench -p wormlog-spool --bench follow
//!
//! Environment: `WORMLOG_BENCH_DIR` (default `target/bench-follow`),
//! `WORMLOG_BENCH_RUNS` (default 15).

mod common;

use common::*;
use std::path::Path;
use std::time::Instant;
use wormlog_spool::clock::wall_ns;
use wormlog_spool::follow::Follower;
use wormlog_spool::frame::{FrameAt, frame_at};
use wormlog_spool::record::AppendOnly;
use wormlog_spool::segment::SegmentHeader;
use wormlog_spool::{Position, Spool};

const BATCH_BYTES: usize = 4 << 20;

fn main() {
    let runs = env_u64("WORMLOG_BENCH_RUNS", 15) as usize;
    let dir = base_dir("bench-follow");
    fresh(&dir);
    let (batch, records) = one_batch(&dir);
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mut per_record = Vec::new();
    for _ in 0..runs {
        let mut f = Follower::new("bench", None);
        let t = Instant::now();
        let plan = f.accept(&[], &batch).expect("the batch passes");
        per_record.push(t.elapsed().as_nanos() as f64 / records as f64);
        assert_eq!(plan.records, records);
    }
    let (low, high) = per_record
        .iter()
        .fold((f64::MAX, 0f64), |(l, h), &x| (l.min(x), h.max(x)));
    let median = median(per_record);
    println!(
        "Follower::accept, {records} records in {} bytes, {cores} core(s): {median:.0} ns/record median of {runs} ({:.0}-{:.0}), {:.0} MB/s",
        batch.len(),
        low,
        high,
        1e3 * batch.len() as f64 / records as f64 / median
    );
    let _ = wormlog_spool::worm::remove_dir_all_worm(&dir);
}

/// The first ~4 MiB of whole frames after the first segment's header of a
/// spool of 200-byte lines, and how many records they are.
fn one_batch(dir: &Path) -> (Vec<u8>, u64) {
    let o = options(dir, 1 << 20, AppendOnly::Try);
    let (mut s, _) = Spool::open(o, new_key(dir)).unwrap();
    let ts = wall_ns();
    let mut buf = Vec::new();
    for i in 0..20_000u64 {
        line(i, &mut buf);
        let pos = Position::File {
            dev: 2049,
            ino: 1234,
            fingerprint: 0xfeed,
            offset: (i + 1) * 201,
        };
        s.append_entry("app", &pos, 0, &[], &buf, ts + i as i64)
            .unwrap();
        if i % 4096 == 0 {
            s.tick().unwrap();
        }
    }
    s.close("bench").unwrap();
    let seg = std::fs::read(dir.join("spool").join("0000000000000000.wlseg")).unwrap();
    let (_, hlen) = SegmentHeader::decode(&seg).unwrap();
    let frames = &seg[hlen..];
    let (mut off, mut records) = (0, 0u64);
    while let FrameAt::Frame { end, .. } = frame_at(frames, off) {
        if end > BATCH_BYTES {
            break;
        }
        off = end;
        records += 1;
    }
    (frames[..off].to_vec(), records)
}
