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

/// Fills the file system at `mnt` to the last byte: a filler, then small
/// files while any room is left.
fn fill_to_zero(fs: &SmallFs) {
    let mut f = std::fs::File::create(fs.mnt.join("filler")).unwrap();
    let chunk = vec![0u8; 1 << 20];
    while f.write_all(&chunk).is_ok() {}
    let _ = f.sync_all();
    for i in 0.. {
        let Ok(mut g) = std::fs::File::create(fs.mnt.join(format!("top-{i}"))) else {
            break;
        };
        let full = g.write_all(&[0u8; 4096]).is_err();
        let _ = g.sync_all();
        if full && fs.free() == 0 {
            break;
        }
    }
}

fn free_again(fs: &SmallFs) {
    for e in std::fs::read_dir(&fs.mnt).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if name == "filler" || name.starts_with("top-") {
            std::fs::remove_file(p).unwrap();
        }
    }
}

#[test]
fn the_own_chain_goes_on_after_a_full_disk_with_a_gap_and_every_access_record_once() {
    const READS: usize = 60;
    let mut s = mtls_setup();
    let Some(fs) = SmallFs::new(&s.d, 64) else {
        return;
    };
    let store = fs.mnt.join("store");
    let (token, user) = new_token();
    let cfg = s.d.p("collector.toml");
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        &format!("store_dir = \"{}\"", s.d.p("store").display()),
        &format!("store_dir = \"{}\"", store.display()),
    );
    assert!(text.contains(&store.display().to_string()));
    std::fs::write(
        &cfg,
        format!("{text}\n[[users]]\nname = \"audra\"\nroles = [\"auditor\"]\n{user}\n"),
    )
    .unwrap();
    let collector = start_collector(&mut s);
    let agent_cfg = mtls_agent_config(&s, "agent", Some("web-01"), "ca", "localhost", s.port);
    write_lines(&s.d.p("logs/app.log"), 0, 40);
    let agent = s.start_agent(&agent_cfg, "agent");
    wait_for(
        "40 lines stored",
        Duration::from_secs(30),
        || next_seq_in_store(&store) > 40 && stored_lines(&store).len() == 40,
        || agent.log(),
    );
    agent.stop();
    // The disk fills to the last byte; each search is an access record for
    // the own chain, which cannot be written now.
    fill_to_zero(&fs);
    let tls = wormlog_tls::client_config(Some(&s.d.p("pki/ca.pem")), None).unwrap();
    let c = reqwest::blocking::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    for i in 0..READS {
        c.get(format!(
            "https://localhost:{}/v1/agents/web-01/records?text=LINE%20{:07}",
            s.port,
            i % 40
        ))
        .bearer_auth(&token)
        .send()
        .unwrap();
    }
    wait_for(
        "the own log to stop on the full disk",
        Duration::from_secs(30),
        || collector.log().contains("own log: "),
        || collector.log(),
    );
    // Room returns: the own chain goes on, a gap first.
    free_again(&fs);
    let own = || spool_records(&store.join("log"));
    let gap = |r: &serde_json::Value| r["kind"] == "gap" && r["source"] == "collector";
    wait_for(
        "a gap record in the own chain",
        Duration::from_secs(30),
        || own().iter().any(gap),
        || collector.log(),
    );
    let log = collector.stop();
    let records = own();
    let at = records.iter().position(gap).unwrap();
    assert!(
        records[at].to_string().contains("could not write"),
        "{}",
        records[at]
    );
    let access = records
        .iter()
        .filter(|r| r["body"].as_str().is_some_and(|b| b.starts_with("access")))
        .count();
    assert_eq!(access, READS, "every access record once\n{log}");
    assert!(
        records[at..].iter().any(|r| r["kind"] == "stop"),
        "the stop record after the gap: {records:?}"
    );
    let v = Command::new(agent_bin())
        .args(["verify", "--spool"])
        .arg(store.join("log"))
        .output()
        .unwrap();
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stdout));
    drop(fs);
}
