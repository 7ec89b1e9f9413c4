//! The collector's store on a file system that fills up (an ext4 image
//! loop-mounted in the test; CI runs as root). A batch that cannot be
//! written is not answered as stored: the agent hears 503 and sends it
//! again, the collector says so in its log and its metrics, and once room
//! returns every line is stored once, in order, and the store verifies.
//! Most batches here are written after the agent's lock is released
//! (store/commit.rs), so this is also where such a write fails.

mod common;

use common::*;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A loop-mounted ext4 file system without reserved blocks (so what root
/// may write is what `statvfs` calls available), unmounted when dropped.
struct SmallFs {
    mnt: PathBuf,
}

impl SmallFs {
    /// None when this test cannot mount (not root); under CI that fails.
    fn new(d: &Dir, mib: u64) -> Option<SmallFs> {
        let img = d.p("fs.img");
        let mnt = d.p("fs");
        std::fs::create_dir_all(&mnt).unwrap();
        std::fs::File::create(&img)
            .unwrap()
            .set_len(mib << 20)
            .unwrap();
        let ok = |c: &mut Command| c.output().is_ok_and(|o| o.status.success());
        assert!(
            ok(Command::new("mkfs.ext4")
                .args(["-q", "-F", "-m", "0"])
                .arg(&img)),
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

    fn free(&self) -> u64 {
        let v = rustix::fs::statvfs(&self.mnt).unwrap();
        v.f_bavail * v.f_frsize
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = wormlog_spool::worm::remove_dir_all_worm(&self.mnt.join("store"));
        let _ = Command::new("umount").arg(&self.mnt).status();
    }
}

/// The sum of the collector's `batches` counters with `result`.
fn batches_with(port: u16, result: &str) -> f64 {
    metrics_text(port)
        .lines()
        .filter(|l| l.contains("batches") && l.contains(&format!("result=\"{result}\"")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn fill(path: &Path, bytes: u64) {
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![0u8; 1 << 20];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        f.write_all(&chunk[..n]).unwrap();
        left -= n as u64;
    }
    f.sync_all().unwrap();
}

#[test]
fn a_full_store_refuses_batches_loudly_and_stores_every_line_once_room_returns() {
    const LINES: usize = 40_000;
    let mut s = Setup::new();
    let Some(fs) = SmallFs::new(&s.d, 64) else {
        return;
    };
    s.write_collector_config("");
    let cfg = std::fs::read_to_string(s.d.p("collector.toml")).unwrap();
    let store = fs.mnt.join("store");
    let cfg = cfg.replace(
        &format!("store_dir = \"{}\"", s.d.p("store").display()),
        &format!("store_dir = \"{}\"", store.display()),
    );
    assert!(cfg.contains(&store.display().to_string()));
    std::fs::write(s.d.p("collector.toml"), cfg).unwrap();
    let collector = start_collector(&mut s);
    // Something else fills the disk until 2 MiB are left: a few batches of
    // 256 KiB fit, the rest do not.
    fill(&fs.mnt.join("filler"), fs.free() - (2 << 20));
    write_lines(&s.d.p("logs/app.log"), 0, LINES);
    let agent_cfg = s.write_agent_config(
        "agent",
        &format!(
            "url = \"http://127.0.0.1:{}\"\nbatch_bytes = \"256KiB\"\n",
            s.port
        ),
    );
    let agent = s.start_agent(&agent_cfg, "agent");
    let logs = || format!("{}\n{}", agent.log(), collector.log());
    wait_for(
        "the collector to refuse a batch it could not store",
        Duration::from_secs(60),
        || collector.log().contains("a batch was not stored"),
        logs,
    );
    // Batches were stored before: the segment exists, and the batch that
    // failed only appended to it, so its write was a commit's.
    let stored_before = next_seq_in_store(&store);
    assert!(
        stored_before > 0 && stored_before < LINES as u64,
        "some batches fit, not all: {stored_before}\n{}",
        logs()
    );
    assert!(batches_with(s.port, "error") >= 1.0, "{}", logs());
    assert!(batches_with(s.port, "accepted") >= 1.0, "{}", logs());
    // Room returns: everything arrives, once.
    std::fs::remove_file(fs.mnt.join("filler")).unwrap();
    wait_for(
        "every line in the store",
        Duration::from_secs(120),
        || stored_lines(&store).len() >= LINES,
        logs,
    );
    agent.stop();
    let log = collector.stop();
    assert!(log.contains("No space left on device"), "{log}");
    let lines = stored_lines(&store);
    let want: Vec<String> = (0..LINES).map(line).collect();
    assert_eq!(lines.len(), want.len(), "every line exactly once");
    assert!(lines == want, "the store holds the lines in order");
    let r = verify_store(&store);
    assert_eq!(r[0]["chain"], "web-01");
    verify_spool(&s);
    // The collector's own chain lives on the same full disk: what it could
    // not write while the disk was full is told on stderr only (asserted
    // above), so it is not checked here.
    drop(fs);
}
