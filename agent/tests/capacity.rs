//! Spool capacity (NIST AU-4/AU-5) with the real daemon: a warning before
//! the disk budget is reached, then the configured action — `block` (the
//! source stops reading; the file simply waits) or `halt` (the agent stops
//! with exit code 1) — each said in the log and in the chain, and nothing
//! lost once there is room again. The last test fills a real, small ext4
//! file system (a loop-mounted image made in the test).

mod common;

use common::*;
use std::process::Command;
use std::time::{Duration, Instant};

/// 1 MiB segments and a 4 MiB budget (the smallest allowed: four segments).
const SMALL: &str = "segment_max_bytes = \"1MiB\"\ndisk_budget = \"4MiB\"\nbudget_warning = \"50%\"\nmin_free = \"1MiB\"\n";
const LINES: u32 = 60_000;

fn payload_lines(range: std::ops::Range<u32>) -> String {
    range
        .map(|i| format!("line {i:06} {}\n", "p".repeat(90)))
        .collect()
}

fn expect(range: std::ops::Range<u32>) -> Vec<String> {
    range
        .map(|i| format!("line {i:06} {}", "p".repeat(90)))
        .collect()
}

fn wait_stderr(e: &Env, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !e.stderr().contains(what) {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what:?} in the log:\n{}",
            e.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn spool_bytes(e: &Env) -> u64 {
    std::fs::read_dir(e.p("spool"))
        .unwrap()
        .flatten()
        .filter_map(|f| f.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

/// Alerts with code 3 (disk budget) in the chain.
fn budget_alerts(e: &Env) -> Vec<String> {
    e.records()
        .into_iter()
        .filter(|r| r.kind == "alert:3")
        .map(|r| r.detail)
        .collect()
}

fn set_budget(e: &Env, budget: &str) {
    let path = e.p("agent.toml");
    let cfg = std::fs::read_to_string(&path).unwrap();
    let cfg = cfg.replace(
        "disk_budget = \"4MiB\"",
        &format!("disk_budget = \"{budget}\""),
    );
    std::fs::write(path, cfg).unwrap();
}

/// `GET /metrics` from the daemon's endpoint (its port is in the log):
/// metric name -> value, from the OpenMetrics text.
fn scrape(e: &Env) -> std::collections::BTreeMap<String, f64> {
    use std::io::{Read, Write};
    let err = e.stderr();
    let addr = err
        .split("metrics on http://")
        .nth(1)
        .and_then(|r| r.split("/metrics").next())
        .unwrap_or_else(|| panic!("no metrics address in the log:\n{err}"));
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    c.write_all(b"GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    c.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(body.ends_with("# EOF\n"), "not OpenMetrics text: {body}");
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let (name, v) = l.rsplit_once(' ').unwrap();
            (name.to_owned(), v.parse().unwrap())
        })
        .collect()
}

#[test]
fn a_full_budget_blocks_the_source_and_nothing_is_lost_when_room_returns() {
    let e = Env::with_spool("*.log", SMALL, "\n[metrics]\nlisten = \"127.0.0.1:0\"\n");
    append(&e.log("app.log"), payload_lines(0..LINES).as_bytes());
    let d = e.start();
    wait_stderr(&e, "of its disk budget");
    wait_stderr(&e, "spool full");
    let m = scrape(&e);
    assert_eq!(m["wormlog_spool_full"], 1.0, "{m:?}");
    assert_eq!(m["wormlog_spool_budget_warnings_total"], 1.0, "{m:?}");
    assert_eq!(m["wormlog_spool_full_events_total"], 1.0, "{m:?}");
    assert_eq!(m["wormlog_spool_disk_budget_bytes"], f64::from(4u32 << 20));
    assert!(
        m["wormlog_spool_disk_bytes"] >= f64::from(4u32 << 20),
        "{m:?}"
    );
    // Held back: no entry is added while the spool stays full.
    let held = e.entries().len();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        e.entries().len(),
        held,
        "the source kept writing into a full spool"
    );
    assert!(held > 1000 && held < LINES as usize, "{held} entries");
    let used = spool_bytes(&e);
    assert!(
        used <= (4 << 20) + (1536 << 10),
        "spool holds {used} bytes, budget 4 MiB"
    );
    // A stop while full is clean and reads nothing more into the spool.
    stop(d);
    let after_stop = spool_bytes(&e);
    assert!(
        after_stop <= used + (64 << 10),
        "the stop wrote {} bytes past the budget",
        after_stop - used
    );
    let alerts = budget_alerts(&e);
    assert!(
        alerts.iter().any(|a| a.contains("% of its disk budget")),
        "{alerts:?}"
    );
    assert!(
        alerts
            .iter()
            .any(|a| a.contains("spool full") && a.contains("block")),
        "{alerts:?}"
    );
    assert!(
        e.stderr().contains("wormlog: warning: spool at"),
        "{}",
        e.stderr()
    );

    // Room again (a bigger budget): the file is read on from where it
    // stopped, every line exactly once and in order.
    set_budget(&e, "64MiB");
    let d = e.start();
    e.wait_entries(LINES as usize);
    stop(d);
    assert_eq!(e.bodies(), expect(0..LINES));
}

#[test]
fn halt_stops_the_agent_with_exit_code_1_and_a_clean_chain() {
    let e = Env::with_spool("*.log", &format!("{SMALL}on_full = \"halt\"\n"), "");
    append(&e.log("app.log"), payload_lines(0..LINES).as_bytes());
    let mut d = e.spawn();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = d.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "did not halt:\n{}", e.stderr());
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(1), "{}", e.stderr());
    let err = e.stderr();
    assert!(err.contains("spool full") && err.contains("halt"), "{err}");
    let alerts = budget_alerts(&e);
    assert!(alerts.iter().any(|a| a.contains("halt")), "{alerts:?}");
    // `records()` verified the spool: it ends with a stop and a checkpoint.
    set_budget(&e, "64MiB");
    let d = e.start();
    e.wait_entries(LINES as usize);
    stop(d);
    assert_eq!(e.bodies(), expect(0..LINES));
}

/// A loop-mounted ext4 file system, unmounted when dropped.
struct SmallFs {
    mnt: std::path::PathBuf,
}

impl SmallFs {
    /// None when this test cannot mount (not root); under CI that fails.
    fn new(e: &Env, mib: u64) -> Option<SmallFs> {
        let img = e.p("fs.img");
        let mnt = e.p("fs");
        std::fs::create_dir_all(&mnt).unwrap();
        let f = std::fs::File::create(&img).unwrap();
        f.set_len(mib << 20).unwrap();
        let ok = |c: &mut Command| c.output().is_ok_and(|o| o.status.success());
        assert!(
            ok(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&img)),
            "mkfs.ext4 failed (e2fsprogs is needed)"
        );
        if !ok(Command::new("mount")
            .args(["-o", "loop"])
            .arg(&img)
            .arg(&mnt))
        {
            assert!(
                std::env::var_os("CI").is_none(),
                "cannot loop-mount an ext4 image: CI runs as root and must"
            );
            eprintln!("skipped: cannot loop-mount (needs root)");
            return None;
        }
        Some(SmallFs { mnt })
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = wormlog_spool::worm::remove_dir_all_worm(&self.mnt.join("spool"));
        let _ = Command::new("umount").arg(&self.mnt).status();
    }
}

fn fs_free(path: &std::path::Path) -> u64 {
    let v = rustix::fs::statvfs(path).unwrap();
    v.f_bavail * v.f_frsize
}

#[test]
fn a_filling_file_system_blocks_before_it_is_full_and_resumes_when_space_returns() {
    let e = Env::with_spool(
        "*.log",
        "segment_max_bytes = \"1MiB\"\ndisk_budget = \"1GiB\"\nmin_free = \"6MiB\"\n",
        "",
    );
    let Some(fs) = SmallFs::new(&e, 40) else {
        return;
    };
    // The spool lives on the small file system, with write-once flags
    // (ext4 has them).
    let cfg = std::fs::read_to_string(e.p("agent.toml")).unwrap();
    let cfg = cfg
        .replace(
            &format!("spool_dir = \"{}\"", e.p("spool").display()),
            &format!("spool_dir = \"{}\"", fs.mnt.join("spool").display()),
        )
        .replace("append_only = \"off\"", "append_only = \"require\"");
    std::fs::write(e.p("agent.toml"), cfg).unwrap();
    // Something else fills the disk until 12 MiB are left.
    let free = fs_free(&fs.mnt);
    let filler = fs.mnt.join("filler");
    std::fs::write(&filler, vec![0u8; (free - (12 << 20)) as usize]).unwrap();
    append(&e.log("app.log"), payload_lines(0..LINES).as_bytes());
    let d = e.start();
    wait_stderr(&e, "less than min_free");
    let spool = fs.mnt.join("spool");
    let count = |spool: &std::path::Path| {
        let mut n = 0;
        let r = wormlog_spool::verify::verify_spool(spool, None, &mut |_, rec, _| {
            n += usize::from(rec.kind == wormlog_spool::record::Kind::Entry);
        })
        .unwrap();
        assert!(r.ok(), "{:?}", r.failure);
        n
    };
    let held = count(&spool);
    assert!(
        held < LINES as usize,
        "all {held} lines fit: the test filled too little"
    );
    let left = fs_free(&fs.mnt);
    assert!(
        left >= 4 << 20,
        "the agent wrote past min_free: {left} bytes left\n{}",
        e.stderr()
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        count(&spool),
        held,
        "the source kept writing into a full disk"
    );
    // Space returns.
    std::fs::remove_file(&filler).unwrap();
    wait_stderr(&e, "room again");
    let deadline = Instant::now() + Duration::from_secs(60);
    while count(&spool) < LINES as usize {
        assert!(Instant::now() < deadline, "lines missing:\n{}", e.stderr());
        std::thread::sleep(Duration::from_millis(50));
    }
    stop(d);
    let mut bodies = Vec::new();
    let mut alerts = Vec::new();
    let r =
        wormlog_spool::verify::verify_spool(&spool, None, &mut |_, rec, _| match &rec.payload {
            wormlog_spool::record::Payload::Entry(en) => {
                bodies.push(String::from_utf8_lossy(en.body).into_owned());
            }
            wormlog_spool::record::Payload::Alert { code: 3, detail } => {
                alerts.push((*detail).to_owned());
            }
            _ => {}
        })
        .unwrap();
    assert!(r.ok(), "{:?}", r.failure);
    assert_eq!(bodies, expect(0..LINES), "every line once, in order");
    assert!(alerts.iter().any(|a| a.contains("min_free")), "{alerts:?}");
    assert!(
        alerts.iter().any(|a| a.contains("room again")),
        "{alerts:?}"
    );
    drop(fs);
}
