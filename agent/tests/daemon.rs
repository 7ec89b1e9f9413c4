//! `wormlog run` with the file source, on real files: rotation by rename
//! and create, copytruncate, truncation, deletion while open, inode reuse,
//! symlinks and FIFOs, partial lines, long lines, hostile bytes, restarts,
//! and a crash loop of SIGKILLs.

mod common;

use common::*;
use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn rotate_by_rename_and_create_reads_everything_once() {
    let e = Env::new("");
    append(&e.log("app.log"), lines("a", 0..100).as_bytes());
    let d = e.start();
    e.wait_entries(100);
    append(&e.log("app.log"), lines("a", 100..150).as_bytes());
    std::fs::rename(e.log("app.log"), e.log("app.log.1")).unwrap();
    // The old file gets a last write after the rename (the logger had it open).
    append(&e.log("app.log.1"), lines("a", 150..160).as_bytes());
    append(&e.log("app.log"), lines("b", 0..50).as_bytes());
    e.wait_entries(210);
    stop(d);
    // Each file in order and complete; the two files' lines may interleave.
    let got = e.bodies();
    let of = |p: &str| {
        got.iter()
            .filter(|l| l.starts_with(p))
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(got.len(), 210);
    assert_eq!(of("a "), expect_lines("a", 0..160));
    assert_eq!(of("b "), expect_lines("b", 0..50));
}

#[test]
fn copytruncate_and_plain_truncation_become_gap_records() {
    let e = Env::new("");
    append(&e.log("app.log"), lines("a", 0..20).as_bytes());
    let d = e.start();
    e.wait_entries(20);
    // copytruncate: the copy is not in the glob; the original is truncated.
    std::fs::copy(e.log("app.log"), e.p("app.log.1")).unwrap();
    truncate(&e.log("app.log"));
    // Wait for the truncation to be noticed before writing again.
    e.wait_records("gap", 1);
    append(&e.log("app.log"), lines("b", 0..5).as_bytes());
    e.wait_entries(25);
    stop(d);
    let recs = e.records();
    let gap = recs.iter().find(|r| r.kind.starts_with("gap")).unwrap();
    assert_eq!(gap.kind, "gap:1", "reason truncated");
    assert!(
        gap.detail.contains("shrank from") && gap.detail.contains("to 0"),
        "{}",
        gap.detail
    );
    let mut want = expect_lines("a", 0..20);
    want.extend(expect_lines("b", 0..5));
    assert_eq!(
        e.bodies(),
        want,
        "nothing re-read, nothing skipped silently"
    );
}

#[test]
fn a_file_deleted_while_open_is_drained_and_a_reused_inode_is_a_new_file() {
    let e = Env::new("");
    append(&e.log("app.log"), lines("a", 0..10).as_bytes());
    let d = e.start();
    e.wait_entries(10);
    // The writer keeps it open, writes more, then it is deleted.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(e.log("app.log"))
        .unwrap();
    std::fs::remove_file(e.log("app.log")).unwrap();
    f.write_all(lines("a", 10..15).as_bytes()).unwrap();
    drop(f);
    e.wait_entries(15);
    // A new file under the same name (the inode may well be reused).
    append(&e.log("app.log"), lines("c", 0..3).as_bytes());
    e.wait_entries(18);
    stop(d);
    let mut want = expect_lines("a", 0..15);
    want.extend(expect_lines("c", 0..3));
    assert_eq!(e.bodies(), want);
}

#[test]
fn symlinks_fifos_and_directories_are_refused() {
    let e = Env::new("");
    append(&e.log("real.log"), b"real line\n");
    std::os::unix::fs::symlink("/etc/passwd", e.log("passwd.log")).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        e.log("pipe.log"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    std::fs::create_dir(e.log("dir.log")).unwrap();
    let d = e.start();
    e.wait_entries(1);
    // Wait until all three refusals are in the chain (then every path was
    // looked at).
    e.wait_records("gap", 3);
    stop(d);
    assert_eq!(e.bodies(), ["real line"]);
    let err = e.stderr();
    assert!(err.contains("passwd.log is a symbolic link"), "{err}");
    assert!(err.contains("pipe.log is a FIFO"), "{err}");
    assert!(err.contains("dir.log is a directory"), "{err}");
    // Each is also said once in the chain.
    let gaps: Vec<Rec> = e
        .records()
        .into_iter()
        .filter(|r| r.kind.starts_with("gap"))
        .collect();
    assert_eq!(gaps.len(), 3, "{gaps:?}");
    assert!(
        gaps.iter()
            .any(|g| g.detail.contains("passwd.log is a symbolic link"))
    );
}

#[test]
fn restart_resumes_without_rereading_and_partial_lines_are_flagged() {
    let e = Env::new("partial_line_timeout = \"100ms\"");
    append(&e.log("app.log"), b"one\ntwo\nthr");
    let d = e.start();
    e.wait_entries(3); // "thr" flushed after the idle time
    stop(d);
    append(&e.log("app.log"), b"ee\nfour\n");
    let d = e.start();
    e.wait_entries(5);
    stop(d);
    let recs: Vec<Rec> = e
        .records()
        .into_iter()
        .filter(|r| r.kind == "entry")
        .collect();
    let bodies: Vec<&[u8]> = recs.iter().map(|r| r.body.as_slice()).collect();
    assert_eq!(bodies, [&b"one"[..], b"two", b"thr", b"ee", b"four"]);
    assert_eq!(
        recs[2].flags & wormlog_spool::record::ENTRY_NO_NEWLINE,
        wormlog_spool::record::ENTRY_NO_NEWLINE
    );
    // After the restart, the rest of that line says it continues it.
    assert_eq!(recs[3].flags, wormlog_spool::record::ENTRY_CONTINUATION);
    assert_eq!(recs[4].flags, 0);
}

#[test]
fn hostile_bytes_are_kept_exactly_and_long_lines_split() {
    let e = Env::new("max_line_bytes = \"1KiB\"");
    let mut data = b"nul \x00 bad \xff\xfe esc \x1b[2J\r\n".to_vec();
    data.extend(std::iter::repeat_n(b'x', 2500));
    data.push(b'\n');
    append(&e.log("app.log"), &data);
    let d = e.start();
    e.wait_entries(4);
    stop(d);
    let recs: Vec<Rec> = e
        .records()
        .into_iter()
        .filter(|r| r.kind == "entry")
        .collect();
    assert_eq!(recs[0].body, b"nul \x00 bad \xff\xfe esc \x1b[2J\r");
    let joined: Vec<u8> = recs[1..].iter().flat_map(|r| r.body.clone()).collect();
    assert_eq!(joined, vec![b'x'; 2500]);
    assert_eq!(recs.len(), 4, "2500 bytes in 1 KiB parts");
}

#[test]
fn bad_source_config_names_line_and_column() {
    let e = Env::new("");
    let p = e.p("bad.toml");
    // (subcommand, configuration, expected file:line:column, a word of the message)
    let cases = [
        (
            "check-config",
            "[[sources.file]]\nname = \"app\"\npaths = [\"relative/*.log\"]\n",
            ":2:1:",
            "absolute",
        ),
        (
            "run",
            "[[sources.file]]\nname = \"app\"\npaths = [\"/x/*.log\"]\nread_from = \"middle\"\n",
            ":4:13:",
            "middle",
        ),
        (
            "check-config",
            "[[sources.file]]\nname = \"a\"\npaths = [\"/x\"]\n[[sources.file]]\nname = \"a\"\npaths = [\"/y\"]\n",
            ":5:1:",
            "same name",
        ),
    ];
    for (cmd, text, loc, word) in cases {
        std::fs::write(&p, text).unwrap();
        let out = Command::new(bin())
            .args([cmd, "--config"])
            .arg(&p)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{cmd} {text:?}: {err}");
        assert!(
            err.starts_with(&format!("{}{loc}", p.display())) && err.contains(word),
            "{text:?}: {err}"
        );
    }
}

/// A writer appends numbered lines and rotates (by rename, dateext style:
/// the rotated names still match the glob, so a file rotated while the
/// daemon is down is still found — by its identity, not its name); the
/// daemon is killed with SIGKILL at random moments; at the end every line
/// is in the spool exactly once, in order, and the spool verifies.
#[test]
fn crash_loop_loses_and_duplicates_nothing() {
    let kills: u32 = std::env::var("WORMLOG_CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let e = Env::with_glob("app.log*", "");
    let total = 6000u32;
    let writer_path = e.log("app.log");
    let rotated = e.logs();
    let writer = std::thread::spawn(move || {
        for i in 0..total {
            append(&writer_path, format!("line {i:06}\n").as_bytes());
            if i % 500 == 499 {
                // Rotate by rename + create; the rotated file leaves the glob.
                std::fs::rename(&writer_path, rotated.join(format!("app.log.{i:06}"))).unwrap();
            }
            if i % 20 == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    });
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..kills {
        let d = e.start();
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        std::thread::sleep(Duration::from_millis(20 + rng % 120));
        drop(d); // SIGKILL
    }
    writer.join().unwrap();
    // A last, clean run picks up what is left.
    let d = e.start();
    e.wait_entries(total as usize);
    stop(d);
    let got: Vec<u32> = e
        .bodies()
        .iter()
        .map(|b| {
            b.strip_prefix("line ")
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("unexpected line {b:?}"))
        })
        .collect();
    // Exactly once.
    let mut sorted = got.clone();
    sorted.sort_unstable();
    let dup = sorted.windows(2).find(|w| w[0] == w[1]);
    assert!(dup.is_none(), "line {:?} spooled twice", dup);
    let missing: Vec<u32> = (0..total)
        .filter(|i| sorted.binary_search(i).is_err())
        .take(10)
        .collect();
    assert!(missing.is_empty(), "lines lost, e.g. {missing:?}");
    // In order within each file (file k holds lines 500k..500k+499).
    let mut last = std::collections::HashMap::new();
    for n in &got {
        if let Some(prev) = last.insert(n / 500, *n) {
            assert!(prev < *n, "line {n} after {prev} in the same file");
        }
    }
    e.assert_verifies();
}

#[test]
fn inotify_wakes_the_source_long_before_the_next_poll() {
    let e = Env::new("poll_interval = \"1h\"");
    append(&e.log("app.log"), b"first\n");
    let d = e.start();
    e.wait_entries(1);
    let t = Instant::now();
    append(&e.log("app.log"), b"second\n");
    e.wait_entries(2);
    append(&e.log("new.log"), b"in a new file\n");
    e.wait_entries(3);
    assert!(
        t.elapsed() < Duration::from_secs(20),
        "took {:?}",
        t.elapsed()
    );
    stop(d);
    assert_eq!(e.bodies(), ["first", "second", "in a new file"]);
}

#[test]
fn a_write_inotify_does_not_name_is_read_at_the_next_full_check() {
    // Only the files inotify names are read between full checks (every 30
    // polls). A write through a hard link in another directory is not
    // reported by the watch on logs/: it must still be read, at the next
    // full check (here within about 30 × 100 ms).
    let e = Env::new("poll_interval = \"100ms\"");
    append(&e.log("app.log"), b"first\n");
    let d = e.start();
    e.wait_entries(1);
    let other = e.p("elsewhere");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::hard_link(e.log("app.log"), other.join("link")).unwrap();
    append(&other.join("link"), b"through the link\n");
    e.wait_entries(2);
    // And a write inotify names is read at once, as before.
    append(&e.log("app.log"), b"third\n");
    e.wait_entries(3);
    stop(d);
    assert_eq!(e.bodies(), ["first", "through the link", "third"]);
}

#[test]
fn a_partial_line_is_written_at_its_timeout_though_its_file_stays_quiet() {
    // Between full checks (every 30 polls) a poll reads the files inotify
    // names and those that need a look on every poll: a file holding part
    // of a line must stay among the latter after its read, or its timeout
    // would pass unnoticed until the next full check. The poll interval is
    // an hour, so polls come only from writes to another file; the partial
    // line must be written at one of the first wakes after its timeout,
    // long before a 30th. other.log exists from the start: its writes
    // change no name, so no listing (which looks at every file again)
    // comes between.
    let e = Env::new("poll_interval = \"1h\"\npartial_line_timeout = \"300ms\"");
    append(&e.log("app.log"), b"first\n");
    append(&e.log("other.log"), b"there from the start\n");
    let d = e.start();
    e.wait_entries(2);
    append(&e.log("app.log"), b"no newline yet");
    // One poll per write: each is waited for in the spool before the next
    // (a poll at least 100 ms after the one before).
    let mut wakes = 0;
    let held = |e: &Env| {
        e.try_records().is_some_and(|r| {
            r.iter()
                .any(|r| r.kind == "entry" && r.body == b"no newline yet")
        })
    };
    while !held(&e) {
        assert!(
            wakes < 8,
            "the partial line waited for a full check ({wakes} polls)"
        );
        std::thread::sleep(Duration::from_millis(100));
        append(&e.log("other.log"), format!("wake {wakes}\n").as_bytes());
        wakes += 1;
        e.wait_entries(2 + wakes);
    }
    stop(d);
    let recs = e.records();
    let partial = recs
        .iter()
        .find(|r| r.kind == "entry" && r.body == b"no newline yet")
        .expect("written");
    assert_eq!(partial.flags, wormlog_spool::record::ENTRY_NO_NEWLINE);
}

#[test]
fn a_thousand_quiet_files_cost_no_read_buffer_each() {
    // Each file used to keep a 64 KiB read buffer once read: 1,000 files,
    // 64 MB. Now one buffer for the source, and batches as big as what
    // they carry.
    let e = Env::new("");
    for i in 0..1000 {
        append(
            &e.log(&format!("f{i:04}.log")),
            lines(&format!("file {i}"), 0..20).as_bytes(),
        );
    }
    let d = e.start();
    e.wait_entries(20_000);
    let hwm = vm_hwm_kb(d.0.id());
    let fds = std::fs::read_dir(format!("/proc/{}/fd", d.0.id()))
        .unwrap()
        .count();
    eprintln!("1,000 files of 20 lines: peak RSS {hwm} kB, {fds} descriptors");
    stop(d);
    assert!(hwm < 48 * 1024, "peak RSS {hwm} kB for 1,000 small files");
    assert!(fds <= 1000 + 32, "{fds} descriptors for 1,000 files");
    assert_eq!(e.bodies().len(), 20_000);
}

#[test]
fn compressed_and_dateext_rotations_are_not_read_twice() {
    // logrotate with compress + delaycompress + dateext, and a glob that
    // matches the rotated names too.
    let e = Env::with_glob("app.log*", "");
    append(&e.log("app.log"), lines("d1", 0..30).as_bytes());
    let d = e.start();
    e.wait_entries(30);
    // Day 2: rename with a date (same file), new app.log.
    std::fs::rename(e.log("app.log"), e.log("app.log-20261125")).unwrap();
    append(&e.log("app.log"), lines("d2", 0..30).as_bytes());
    e.wait_entries(60);
    // Day 3: the day-1 file is compressed (a new file, excluded), the
    // uncompressed one removed; day 2 renamed.
    let gz = e.log("app.log-20261125.gz");
    std::fs::write(&gz, b"\x1f\x8b\x08compressed bytes\n").unwrap();
    std::fs::remove_file(e.log("app.log-20261125")).unwrap();
    std::fs::rename(e.log("app.log"), e.log("app.log-20261126")).unwrap();
    append(&e.log("app.log"), lines("d3", 0..30).as_bytes());
    e.wait_entries(90);
    stop(d);
    // And a restart reads nothing again. (Absence can only be watched for
    // a while: ~15 poll cycles of 20 ms.)
    let d = e.start();
    std::thread::sleep(Duration::from_millis(300));
    stop(d);
    let got = e.bodies();
    let mut want = expect_lines("d1", 0..30);
    want.extend(expect_lines("d2", 0..30));
    want.extend(expect_lines("d3", 0..30));
    assert_eq!(got, want);
}

#[test]
fn a_64_mib_line_without_newline_keeps_memory_bounded() {
    let e = Env::new("");
    let chunk = vec![b'z'; 1 << 20];
    {
        let mut f = std::fs::File::create(e.log("big.log")).unwrap();
        for _ in 0..64 {
            f.write_all(&chunk).unwrap();
        }
    }
    let d = e.start();
    // 64 MiB in 64 KiB parts (max_line_bytes in this test's config).
    e.wait_entries(1024);
    let hwm = vm_hwm_kb(d.0.id());
    eprintln!("peak RSS for a 64 MiB line: {hwm} kB");
    stop(d);
    assert!(hwm < 32 * 1024, "peak RSS {hwm} kB for a 64 MiB line");
    let recs: Vec<Rec> = e
        .records()
        .into_iter()
        .filter(|r| r.kind == "entry")
        .collect();
    assert_eq!(recs.iter().map(|r| r.body.len()).sum::<usize>(), 64 << 20);
    assert!(
        recs[..recs.len() - 1]
            .iter()
            .all(|r| r.flags & wormlog_spool::record::ENTRY_MORE_PARTS != 0)
    );
}

mod model {
    //! Model-based: random sequences of writes, rotations, truncations,
    //! deletions and restarts (clean and SIGKILL) against the real daemon,
    //! and — with the daemon down — deletions, copytruncates and in-place
    //! rewrites. The invariant: every line written is in the spool exactly
    //! once, in order within its file, or inside a gap record that covers
    //! it (a truncated, replaced or deleted gap naming its file's inode);
    //! and every such gap names a file something destructive happened to.
    //! Destructive operations while the daemon runs wait until it has
    //! caught up, as an operator's logrotate would have to for no line to
    //! be lost; those while it is down cannot, and may lose lines.
    use super::*;
    use proptest::prelude::*;
    use std::collections::{BTreeMap, BTreeSet};
    use std::os::unix::fs::MetadataExt;

    #[derive(Debug, Clone, Copy)]
    enum Down {
        Delete,
        Copytruncate,
        Rewrite,
    }

    #[derive(Debug, Clone)]
    enum Op {
        Write { file: usize, lines: u32 },
        Rotate { file: usize },
        Truncate { file: usize },
        Delete { file: usize },
        Restart { kill: bool },
        WhileDown { file: usize, op: Down, kill: bool },
    }

    fn op() -> impl Strategy<Value = Op> {
        let down = prop_oneof![
            Just(Down::Delete),
            Just(Down::Copytruncate),
            Just(Down::Rewrite)
        ];
        prop_oneof![
            4 => (0..3usize, 1..40u32).prop_map(|(file, lines)| Op::Write { file, lines }),
            1 => (0..3usize).prop_map(|file| Op::Rotate { file }),
            1 => (0..3usize).prop_map(|file| Op::Truncate { file }),
            1 => (0..3usize).prop_map(|file| Op::Delete { file }),
            1 => any::<bool>().prop_map(|kill| Op::Restart { kill }),
            2 => (0..3usize, down, any::<bool>())
                .prop_map(|(file, op, kill)| Op::WhileDown { file, op, kill }),
        ]
    }

    /// What the model knows: every line with the inode of the file it
    /// went into, and the inodes something destructive happened to.
    #[derive(Default)]
    struct Model {
        written: Vec<String>,
        inode_of: BTreeMap<String, u64>,
        destroyed: BTreeSet<u64>,
        serial: u32,
        generation: [u32; 3],
    }

    impl Model {
        fn write(&mut self, path: &std::path::Path, file: usize, lines: u32) {
            let mut text = String::new();
            let mut new = Vec::new();
            for _ in 0..lines {
                let l = format!("f{file}.g{}.{:05}", self.generation[file], self.serial);
                self.serial += 1;
                text.push_str(&l);
                text.push('\n');
                new.push(l);
            }
            append(path, text.as_bytes());
            let ino = std::fs::metadata(path).unwrap().ino();
            for l in new {
                self.inode_of.insert(l.clone(), ino);
                self.written.push(l);
            }
        }
    }

    impl Model {
        /// Whether line `l` is covered by a loss gap naming its file.
        fn covered(&self, recs: &[Rec], l: &str) -> bool {
            recs.iter().any(|r| {
                matches!(r.kind.as_str(), "gap:1" | "gap:2" | "gap:9")
                    && inodes_named(&r.detail).contains(&self.inode_of[l])
            })
        }

        /// Waits until every line written is either spooled or covered
        /// by a gap.
        fn wait_settled(&self, e: &Env) {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let recs = e.records();
                let got: BTreeSet<&[u8]> = recs
                    .iter()
                    .filter(|r| r.kind == "entry")
                    .map(|r| r.body.as_slice())
                    .collect();
                let pending = self
                    .written
                    .iter()
                    .filter(|l| !got.contains(l.as_bytes()) && !self.covered(&recs, l))
                    .count();
                if pending == 0 {
                    return;
                }
                assert!(
                    Instant::now() < deadline,
                    "{pending} lines neither spooled nor in a gap"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    fn run(ops: &[Op]) {
        let e = Env::with_glob("*.log*", "");
        let mut d = Some(e.start());
        let mut m = Model::default();
        for op in ops {
            match *op {
                Op::Write { file, lines } => m.write(&e.log(&format!("f{file}.log")), file, lines),
                Op::Rotate { file } => {
                    let p = e.log(&format!("f{file}.log"));
                    if p.exists() {
                        std::fs::rename(&p, e.log(&format!("f{file}.log.{}", m.serial))).unwrap();
                        m.generation[file] += 1;
                    }
                }
                Op::Truncate { file } | Op::Delete { file } => {
                    let p = e.log(&format!("f{file}.log"));
                    if p.exists() {
                        // Lines lost earlier (a kill while down) are
                        // covered by gaps, never spooled: wait for both.
                        m.wait_settled(&e);
                        m.destroyed.insert(std::fs::metadata(&p).unwrap().ino());
                        let gaps = e
                            .records()
                            .iter()
                            .filter(|r| r.kind.starts_with("gap"))
                            .count();
                        let nonempty = std::fs::metadata(&p).unwrap().len() > 0;
                        if matches!(op, Op::Truncate { .. }) {
                            truncate(&p);
                            if nonempty {
                                // Let the daemon see it before new writes.
                                e.wait_records("gap", gaps + 1);
                            }
                        } else {
                            std::fs::remove_file(&p).unwrap();
                        }
                        m.generation[file] += 1;
                    }
                }
                Op::Restart { kill } => {
                    let old = d.take().unwrap();
                    if kill {
                        drop(old);
                    } else {
                        stop(old);
                    }
                    d = Some(e.start());
                }
                Op::WhileDown { file, op, kill } => {
                    // A file the agent never saw cannot be reported: let it
                    // read at least the first line of this one.
                    let prefix = format!("f{file}.g{}.", m.generation[file]);
                    if m.written.iter().any(|l| l.starts_with(&prefix)) {
                        let deadline = Instant::now() + Duration::from_secs(30);
                        while !e.bodies().iter().any(|b| b.starts_with(&prefix)) {
                            assert!(Instant::now() < deadline, "{prefix} never read");
                            std::thread::sleep(Duration::from_millis(10));
                        }
                    }
                    let old = d.take().unwrap();
                    if kill {
                        drop(old);
                    } else {
                        stop(old);
                    }
                    let p = e.log(&format!("f{file}.log"));
                    if p.exists() {
                        m.destroyed.insert(std::fs::metadata(&p).unwrap().ino());
                        match op {
                            Down::Delete => std::fs::remove_file(&p).unwrap(),
                            Down::Copytruncate => {
                                std::fs::copy(&p, e.p(&format!("copy-{}", m.serial))).unwrap();
                                truncate(&p);
                            }
                            Down::Rewrite => truncate(&p),
                        }
                        m.generation[file] += 1;
                        if !matches!(op, Down::Delete) {
                            // Written again before the daemon looks.
                            m.write(&p, file, 45);
                        }
                    }
                    d = Some(e.start());
                }
            }
        }
        m.wait_settled(&e);
        stop(d.take().unwrap());
        let recs = e.records();
        let got = e.bodies();
        // Exactly once: nothing twice, nothing that was not written.
        let mut sorted = got.clone();
        sorted.sort();
        let dup = sorted.windows(2).find(|w| w[0] == w[1]);
        assert!(dup.is_none(), "spooled twice: {dup:?}");
        for l in &got {
            assert!(m.inode_of.contains_key(l), "never written: {l}");
        }
        // Every line not spooled is covered by a gap.
        let have: BTreeSet<&String> = got.iter().collect();
        for l in &m.written {
            assert!(
                have.contains(l) || m.covered(&recs, l),
                "{l} lost without a gap record"
            );
        }
        // In order within each file generation.
        for g in m
            .written
            .iter()
            .map(|l| l.rsplit_once('.').unwrap().0)
            .collect::<BTreeSet<_>>()
        {
            let mine = |v: &[String]| {
                v.iter()
                    .filter(|l| l.rsplit_once('.').unwrap().0 == g)
                    .cloned()
                    .collect::<Vec<_>>()
            };
            let spooled = mine(&got);
            let expected: Vec<String> = mine(&m.written)
                .into_iter()
                .filter(|l| have.contains(l))
                .collect();
            assert_eq!(spooled, expected, "order within {g}");
        }
        // No false alarm: every loss gap names a file that was destroyed.
        for r in recs
            .iter()
            .filter(|r| matches!(r.kind.as_str(), "gap:1" | "gap:2" | "gap:9"))
        {
            assert!(
                inodes_named(&r.detail)
                    .iter()
                    .any(|i| m.destroyed.contains(i)),
                "gap about a file nothing happened to: {}",
                r.detail
            );
        }
    }

    /// Found by CI: a kill while down left lines of f0 unread (a loss,
    /// told by a gap); the Delete after it must not wait for them.
    #[test]
    fn a_loss_while_down_then_a_delete() {
        run(&[
            Op::Write { file: 0, lines: 16 },
            Op::Write { file: 1, lines: 3 },
            Op::Delete { file: 1 },
            Op::Write { file: 0, lines: 26 },
            Op::WhileDown {
                file: 0,
                op: Down::Copytruncate,
                kill: true,
            },
            Op::Delete { file: 0 },
        ]);
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 12, max_shrink_iters: 20, ..ProptestConfig::default() })]
        #[test]
        fn random_operations_match_the_model(ops in prop::collection::vec(op(), 1..14)) {
            run(&ops);
        }
    }
}

#[test]
fn a_partial_line_held_when_the_file_is_truncated_is_kept() {
    let e = Env::new("partial_line_timeout = \"1h\"");
    append(&e.log("app.log"), b"whole\nheld without newline");
    let d = e.start();
    e.wait_entries(1);
    // The daemon holds "held without newline" (its newline never comes).
    truncate(&e.log("app.log"));
    e.wait_records("gap", 1);
    append(&e.log("app.log"), b"after\n");
    e.wait_entries(3);
    stop(d);
    let recs: Vec<Rec> = e
        .records()
        .into_iter()
        .filter(|r| r.kind == "entry")
        .collect();
    let bodies: Vec<&[u8]> = recs.iter().map(|r| r.body.as_slice()).collect();
    assert_eq!(bodies, [&b"whole"[..], b"held without newline", b"after"]);
    assert_eq!(recs[1].flags, wormlog_spool::record::ENTRY_NO_NEWLINE);
    assert_eq!(
        recs[2].flags, 0,
        "a new line after the truncation, not a continuation"
    );
}
