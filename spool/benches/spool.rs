//! Spool benchmarks: durable append throughput beside the cost of SHA-256
//! alone (the floor), verification throughput, and the time to reopen a
//! large spool. Prints medians of several runs; run with
//! `cargo bench -p wormlog-spool --bench spool` (or `bench/spool.sh`).
//!
//! Environment: `WORMLOG_BENCH_DIR` (default `target/bench-spool`, which
//! must be on the disk under test), `WORMLOG_BENCH_RUNS` (default 3),
//! `WORMLOG_BENCH_RECORDS` (default 2,000,000), `WORMLOG_BENCH_REOPEN_MIB`
//! (default 1024).

mod common;

use common::*;
use std::path::Path;
use std::time::{Duration, Instant};
use wormlog_spool::clock::wall_ns;
use wormlog_spool::crypt::{DataKey, seal_entry};
use wormlog_spool::hash::{leaf_hash, sha256};
use wormlog_spool::keys::HostKey;
use wormlog_spool::merkle::Frontier;
use wormlog_spool::record::AppendOnly;
use wormlog_spool::verify::verify_spool;
use wormlog_spool::{Position, Spool};

/// 4096 different lines, made before the clock starts.
fn lines() -> Vec<Vec<u8>> {
    (0..4096)
        .map(|i| {
            let mut b = Vec::new();
            line(i, &mut b);
            b
        })
        .collect()
}

/// CPU time of the calling thread, in seconds.
fn thread_cpu() -> f64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    t.tv_sec as f64 + t.tv_nsec as f64 / 1e9
}

/// Appends `n` lines durably; returns (wall seconds, CPU seconds of the
/// writer thread, bytes on disk).
fn append_run(dir: &Path, n: u64, commit_bytes: usize) -> (f64, f64, u64) {
    fresh(dir);
    let key = new_key(dir);
    let (mut s, _) = Spool::open(options(dir, commit_bytes, AppendOnly::Try), key).unwrap();
    let input = lines();
    let t = Instant::now();
    let cpu0 = thread_cpu();
    let ts = wall_ns();
    let mut next_tick = 0u64;
    for i in 0..n {
        let buf = &input[(i & 4095) as usize];
        let pos = Position::File {
            dev: 2049,
            ino: 1234,
            fingerprint: 0xfeed,
            offset: (i + 1) * 201,
        };
        s.append_entry("app", &pos, 0, &[], buf, ts + i as i64)
            .unwrap();
        if i == next_tick {
            s.tick().unwrap();
            next_tick += 4096;
        }
    }
    s.close("bench").unwrap();
    let secs = t.elapsed().as_secs_f64();
    let cpu = thread_cpu() - cpu0;
    let bytes = disk_bytes(&dir.join("spool"));
    (secs, cpu, bytes)
}

/// The minimal durable loop; returns lines per second.
fn minimal_loop(dir: &Path, n: u64) -> f64 {
    use std::io::Write;
    fresh(dir);
    let path = dir.join("floor.log");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .unwrap();
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(1);
    let (back_tx, back_rx) = std::sync::mpsc::channel::<Vec<u8>>();
    let syncer = std::thread::spawn(move || {
        let mut f = file;
        for mut b in rx {
            f.write_all(&b).unwrap();
            f.sync_data().unwrap();
            b.clear();
            let _ = back_tx.send(b);
        }
    });
    let input = lines();
    let t = Instant::now();
    let mut buf = Vec::with_capacity(2 << 20);
    let mut head = [0u8; 32];
    for i in 0..n {
        let line = &input[(i & 4095) as usize];
        let len = (line.len() as u32).to_le_bytes();
        buf.extend_from_slice(&len);
        buf.extend_from_slice(&crc32c::crc32c_append(crc32c::crc32c(&len), line).to_le_bytes());
        buf.extend_from_slice(line);
        let mut chained = [0u8; 256];
        chained[..32].copy_from_slice(&head);
        chained[32..32 + line.len()].copy_from_slice(line);
        head = leaf_hash(&chained[..31 + line.len()]);
        buf.extend_from_slice(&head);
        if buf.len() >= 1 << 20 {
            let next = back_rx
                .try_recv()
                .unwrap_or_else(|_| Vec::with_capacity(2 << 20));
            tx.send(std::mem::replace(&mut buf, next)).unwrap();
        }
    }
    tx.send(buf).unwrap();
    drop(tx);
    syncer.join().unwrap();
    let rate = n as f64 / t.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(path);
    rate
}

fn disk_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.metadata().unwrap().len())
        .sum()
}

/// What encryption at rest adds per entry (docs/FORMAT.md 6.2.1), on the
/// thread that seals: the entry's key (HKDF-SHA256 expand), then
/// ChaCha20-Poly1305 over a 200-byte line's plaintext (with its field
/// count) under the record's clear part as associated data.
fn seal_costs(runs: usize, k: u64) {
    let keys = DataKey::from_bytes([7; 32]).entry_keys();
    let per = |f: &mut dyn FnMut(u64)| {
        median(
            (0..runs)
                .map(|_| {
                    let t = Instant::now();
                    for i in 0..k {
                        f(i);
                    }
                    t.elapsed().as_nanos() as f64 / k as f64
                })
                .collect(),
        )
    };
    let hkdf = per(&mut |i| {
        std::hint::black_box(keys.key(i));
    });
    let key = keys.key(1);
    let mut plain = vec![1u8; 218];
    let aad = [2u8; 60];
    let aead = per(&mut |_| {
        std::hint::black_box(key.seal_detached(&aad, &mut plain));
    });
    // A whole entry as the writer's sealing thread does it.
    let mut rec = vec![3u8; 80 + 218 + 16];
    let mut scratch = Vec::new();
    let entry = per(&mut |i| {
        seal_entry(&keys, i, &mut rec, 80, &mut scratch);
        std::hint::black_box(&rec);
    });
    println!("entry key (HKDF-SHA256 expand):         {hkdf:7.1} ns");
    println!("ChaCha20-Poly1305, 218 B + 60 B of AD:  {aead:7.1} ns");
    println!("sealing one entry (both):               {entry:7.1} ns");
}

fn main() {
    let runs = env_u64("WORMLOG_BENCH_RUNS", 3) as usize;
    let n = env_u64("WORMLOG_BENCH_RECORDS", 2_000_000);
    let dir = base_dir("bench-spool");
    println!(
        "wormlog spool benchmarks: {runs} runs each, medians; dir {}",
        dir.display()
    );
    println!(
        "machine: {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    // The floor: SHA-256 alone, of 200 bytes (the fastest way this crate
    // has: the block-level function that also makes the leaf hashes).
    let mut buf = Vec::new();
    line(1, &mut buf);
    let k = 5_000_000u64;
    let sha = median(
        (0..runs)
            .map(|_| {
                let t = Instant::now();
                let mut acc = [0u8; 32];
                for _ in 0..k {
                    acc = leaf_hash(&buf[..199]);
                    buf[0] ^= acc[0] & 1;
                }
                std::hint::black_box(acc);
                t.elapsed().as_nanos() as f64 / k as f64
            })
            .collect(),
    );
    let _ = sha256(b"");
    // Hashing as the spool does it: the leaf of a 306-byte record (a
    // 200-byte line with its header, position and link), and the tree.
    let mut rec = vec![0u8; 306];
    let hashing = median(
        (0..runs)
            .map(|_| {
                let t = Instant::now();
                let mut head = [0u8; 32];
                let mut tree = Frontier::new();
                for i in 0..k {
                    rec[0] = i as u8;
                    rec[20..52].copy_from_slice(&head);
                    let leaf = leaf_hash(&rec);
                    head = leaf;
                    tree.push(leaf);
                }
                std::hint::black_box((head, tree.root()));
                t.elapsed().as_nanos() as f64 / k as f64
            })
            .collect(),
    );
    println!("sha256 of one 200-byte line:            {sha:7.1} ns");
    println!("leaf (chain) + Merkle of one record:    {hashing:7.1} ns");
    seal_costs(runs, k / 2);

    // The floor on this machine, in the same run: a minimal loop that
    // frames each line (length + CRC32C), chains it with one SHA-256 and
    // appends it, with write + fdatasync of each 1 MiB batch on a second
    // thread (what ../shared/bench/README.md calls the floor).
    let floor = median((0..runs).map(|_| minimal_loop(&dir, n)).collect());
    println!(
        "floor: minimal frame+chain+append loop, fsync on its own thread: {floor:>9.0} lines/s"
    );

    // Durable append, for several group-commit sizes.
    for commit in [256usize << 10, 1 << 20, 4 << 20] {
        let mut rates = Vec::new();
        let mut mbs = Vec::new();
        let mut per = Vec::new();
        let mut cpu = Vec::new();
        for _ in 0..runs {
            let (secs, cpu_s, bytes) = append_run(&dir, n, commit);
            rates.push(n as f64 / secs);
            mbs.push(bytes as f64 / secs / 1e6);
            per.push(secs * 1e9 / n as f64);
            cpu.push(cpu_s * 1e9 / n as f64);
        }
        let (r, m, p, c) = (median(rates), median(mbs), median(per), median(cpu));
        println!(
            "durable append, 200-byte lines, commit_bytes {:>4} KiB: {:>9.0} records/s ({:.0}% of the floor) {:>6.1} MB/s on disk; {:5.1} ns/record wall = {:.2}x SHA-256 alone; writer thread CPU {:5.1} ns/record = {:.2}x",
            commit >> 10,
            r,
            100.0 * r / floor,
            m,
            p,
            p / sha,
            c,
            c / sha
        );
    }

    // Verify throughput on the last spool (page cache warm).
    let spool = dir.join("spool");
    let bytes = disk_bytes(&spool);
    let v = median(
        (0..runs)
            .map(|_| {
                let t = Instant::now();
                let r = verify_spool(&spool, None, &mut |_, _, _| {}).unwrap();
                assert!(r.ok());
                bytes as f64 / t.elapsed().as_secs_f64() / 1e6
            })
            .collect(),
    );
    println!("verify: {v:.0} MB/s ({} MB spool)", bytes / 1_000_000);

    // Reopen a large spool. The last segment is nearly full (the worst
    // case: opening reads the last segment only).
    let mib = env_u64("WORMLOG_BENCH_REOPEN_MIB", 1024);
    let seg_mib = wormlog_spool::writer::options::DEFAULT_SEGMENT_MAX_BYTES >> 20;
    let target = (mib.div_ceil(seg_mib) * seg_mib - 2) << 20;
    fresh(&dir);
    let key = new_key(&dir);
    let (mut s, _) = Spool::open(options(&dir, 1 << 20, AppendOnly::Try), key).unwrap();
    let input = lines();
    let mut i = 0u64;
    while disk_bytes(&spool) < target {
        for _ in 0..10_000 {
            s.append_entry(
                "app",
                &Position::Counter(i),
                0,
                &[],
                &input[(i & 4095) as usize],
                wall_ns(),
            )
            .unwrap();
            i += 1;
        }
        s.sync().unwrap();
    }
    s.close("bench").unwrap();
    let segs = wormlog_spool::segment::list_segments(&spool).unwrap().0;
    let last_mib =
        std::fs::metadata(&segs.last().unwrap().1).unwrap().len() as f64 / (1 << 20) as f64;
    let reopen = |drop_caches: bool| -> f64 {
        median(
            (0..runs.max(3))
                .map(|_| {
                    if drop_caches {
                        let _ = std::process::Command::new("sync").status();
                        let _ = std::fs::write("/proc/sys/vm/drop_caches", "3");
                    }
                    let key = HostKey::load(&dir.join("keys")).unwrap();
                    let t = Instant::now();
                    let (s, _) = Spool::open(options(&dir, 1 << 20, AppendOnly::Try), key).unwrap();
                    let el = t.elapsed();
                    s.close("bench").unwrap();
                    el.as_secs_f64() * 1e3
                })
                .collect(),
        )
    };
    let warm = reopen(false);
    println!(
        "reopen a {} MiB spool ({} segments, {i} records, last segment {last_mib:.1} MiB), page cache warm: {warm:.1} ms (median; includes the start record and its fsync)",
        disk_bytes(&spool) >> 20,
        segs.len()
    );
    if std::fs::OpenOptions::new()
        .write(true)
        .open("/proc/sys/vm/drop_caches")
        .is_ok()
    {
        let cold = reopen(true);
        println!("reopen, page cache dropped first (cold): {cold:.1} ms");
    } else {
        println!("reopen, cold: not measured (dropping the page cache needs root)");
    }
    let _ = wormlog_spool::worm::remove_dir_all_worm(&dir);
    std::thread::sleep(Duration::from_millis(1));
}
