//! What happens to files while the agent is not running: deleted, copied
//! and truncated by the real `logrotate`, rewritten in place, rotated by
//! rename. Every line is in the spool exactly once, or inside a gap record
//! that names the file's inode and the offset it had been read to; and
//! what is left of an old file is read before its successor.

mod common;

use common::*;
use std::os::unix::fs::MetadataExt;
use std::process::Command;

fn ino(path: &std::path::Path) -> u64 {
    std::fs::metadata(path).unwrap().ino()
}

fn size(path: &std::path::Path) -> u64 {
    std::fs::metadata(path).unwrap().len()
}

/// Runs the real logrotate once, forced, with `directives` for `log`.
fn logrotate(e: &Env, log: &std::path::Path, directives: &str) {
    let conf = e.p("logrotate.conf");
    std::fs::write(
        &conf,
        format!(
            "{} {{\n{directives}\nrotate 3\nmissingok\n}}\n",
            log.display()
        ),
    )
    .unwrap();
    let out = Command::new("logrotate")
        .arg("-f")
        .arg("-s")
        .arg(e.p("logrotate.state"))
        .arg(&conf)
        .output()
        .expect("logrotate (apt-get install logrotate)");
    assert!(
        out.status.success(),
        "logrotate: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Whether the newest checkpoint that carries a source table (an anchor,
/// or one written after a stream left the table) lists none of `inodes`.
fn table_without(e: &Env, inodes: &[u64]) -> bool {
    use wormlog_spool::record::Payload;
    let mut newest: Option<Vec<u64>> = None;
    let r = wormlog_spool::verify::verify_spool(&e.p("spool"), None, &mut |_, rec, _| {
        if let Payload::Checkpoint(cp) = &rec.payload
            && !cp.sources.is_empty()
        {
            newest = Some(
                cp.sources
                    .iter()
                    .filter_map(|(_, p)| match p.to_position() {
                        Ok(wormlog_spool::Position::File { ino, .. }) => Some(ino),
                        _ => None,
                    })
                    .collect(),
            );
        }
    });
    assert!(r.unwrap().ok());
    newest.is_some_and(|t| !t.is_empty() && inodes.iter().all(|i| !t.contains(i)))
}

fn gaps(e: &Env, reason: u16) -> Vec<Rec> {
    e.records()
        .into_iter()
        .filter(|r| r.kind == format!("gap:{reason}"))
        .collect()
}

/// Reads 100 lines, then is killed; 50 more are written while it is down.
fn read_100_then_kill(e: &Env) -> u64 {
    append(&e.log("app.log"), lines("a", 0..100).as_bytes());
    let d = e.start();
    e.wait_entries(100);
    let read_to = size(&e.log("app.log"));
    drop(d); // SIGKILL
    append(&e.log("app.log"), lines("a", 100..150).as_bytes());
    read_to
}

#[test]
fn a_file_deleted_while_the_agent_was_down_is_a_deleted_gap_once() {
    let e = Env::new("");
    let read_to = read_100_then_kill(&e);
    let inode = ino(&e.log("app.log"));
    std::fs::remove_file(e.log("app.log")).unwrap();
    let d = e.start();
    e.wait_records("gap:9", 1);
    stop(d);
    let g = &gaps(&e, 9)[0];
    assert!(
        inodes_named(&g.detail) == [inode]
            && g.detail.contains(&format!("offset {read_to}"))
            && g.detail.contains("amount unknown"),
        "{}",
        g.detail
    );
    assert!(
        e.stderr().contains("no longer found"),
        "a warning is logged"
    );
    assert_eq!(e.bodies(), expect_lines("a", 0..100));
    // The gap ended the stream: another start says nothing more about it.
    let d = e.start();
    append(&e.log("new.log"), b"after\n");
    e.wait_entries(101);
    stop(d);
    assert_eq!(gaps(&e, 9).len(), 1, "the deleted file is reported once");
}

/// Reads 100 lines and is killed; `destroy` acts on `app.log` while the
/// agent is down (after 50 more lines were appended) and writes `new`
/// lines. At the next start: one gap record of `reason` naming the file's
/// inode and the offset it had been read to, before the first new line;
/// the 100 lines once, then the new ones from the start of the file.
fn loss_while_down_is_one_gap(reason: u16, destroy: impl FnOnce(&Env), new: &[String]) {
    let e = Env::new("");
    let read_to = read_100_then_kill(&e);
    let inode = ino(&e.log("app.log"));
    destroy(&e);
    let d = e.start();
    e.wait_entries(100 + new.len());
    stop(d);
    let recs = e.records();
    let g: Vec<&Rec> = recs.iter().filter(|r| r.kind.starts_with("gap")).collect();
    assert_eq!(g.len(), 1, "{g:?}");
    assert_eq!(g[0].kind, format!("gap:{reason}"));
    assert!(
        inodes_named(&g[0].detail) == [inode] && g[0].detail.contains(&format!("offset {read_to}")),
        "{}",
        g[0].detail
    );
    let mut want = expect_lines("a", 0..100);
    want.extend(new.iter().cloned());
    assert_eq!(e.bodies(), want, "the old lines once, the new from 0");
    let gap_at = recs.iter().position(|r| r.kind.starts_with("gap")).unwrap();
    let first_new = recs
        .iter()
        .position(|r| r.body == new[0].as_bytes())
        .unwrap();
    assert!(gap_at < first_new, "the gap comes first");
}

/// The reproduction: 100 lines read, `kill -9`, 50 appended, real
/// `logrotate -f` with `copytruncate` (the copy outside the globs), 300
/// longer lines appended, start.
#[test]
fn copytruncate_while_the_agent_was_down_is_a_gap_then_read_from_0() {
    let new = expect_lines("the longer lines written after the rotation", 0..300);
    loss_while_down_is_one_gap(
        2,
        |e| {
            let read_to = size(&e.log("app.log"));
            logrotate(e, &e.log("app.log"), "copytruncate");
            assert!(e.log("app.log.1").exists() && size(&e.log("app.log")) == 0);
            append(
                &e.log("app.log"),
                lines("the longer lines written after the rotation", 0..300).as_bytes(),
            );
            assert!(
                size(&e.log("app.log")) > read_to,
                "grew past the old offset"
            );
        },
        &new,
    );
}

#[test]
fn a_truncation_while_the_agent_was_down_is_a_truncated_gap() {
    loss_while_down_is_one_gap(
        1,
        |e| {
            truncate(&e.log("app.log"));
            append(&e.log("app.log"), lines("b", 0..3).as_bytes());
        },
        &expect_lines("b", 0..3),
    );
}

#[test]
fn an_in_place_rewrite_while_the_agent_was_down_is_a_replaced_gap() {
    loss_while_down_is_one_gap(
        2,
        |e| {
            let inode = ino(&e.log("app.log"));
            // Same inode, new content longer than what was read.
            std::fs::write(e.log("app.log"), lines("rewritten", 0..200)).unwrap();
            assert_eq!(ino(&e.log("app.log")), inode);
        },
        &expect_lines("rewritten", 0..200),
    );
}

/// Rotated by the real logrotate (rename and create) while the agent was
/// down, the new file written before it starts again: the rest of the old
/// file comes first, then the new one — one log in its own order. With a
/// glob that misses the rotated name, the old file is found by its identity
/// in the same directory.
#[test]
fn after_a_rotation_while_down_the_old_file_is_read_first() {
    for glob in ["app.log", "app.log*"] {
        let e = Env::with_glob(glob, "");
        read_100_then_kill(&e);
        logrotate(&e, &e.log("app.log"), "create");
        append(&e.log("app.log"), lines("b", 0..50).as_bytes());
        let d = e.start();
        e.wait_entries(200);
        stop(d);
        let mut want = expect_lines("a", 0..150);
        want.extend(expect_lines("b", 0..50));
        assert_eq!(e.bodies(), want, "glob {glob}");
        assert!(
            !e.records().iter().any(|r| r.kind.starts_with("gap")),
            "nothing lost, no gap (glob {glob})"
        );
    }
}

/// A rotated file read to its end and later deleted by the next rotations
/// (while the agent runs) is not reported at the next start: the spool
/// forgot it when the source let go of it — and that survives a SIGKILL.
#[test]
fn files_rotated_away_and_deleted_later_are_not_reported_lost() {
    let e = Env::with_glob("app.log", "rotate_wait = \"100ms\"");
    let d = e.start();
    for round in 0..5u32 {
        append(
            &e.log("app.log"),
            lines(&format!("r{round}"), 0..10).as_bytes(),
        );
        e.wait_entries(10 * (round as usize + 1));
        logrotate(&e, &e.log("app.log"), "create");
    }
    // logrotate (rotate 3) deleted the oldest. Once the source lets go of
    // the rotated files (100 ms after their last data), a checkpoint
    // carries the table without them; wait for it, then SIGKILL.
    let inodes_left: Vec<u64> = (1..=3)
        .map(|k| ino(&e.log(&format!("app.log.{k}"))))
        .collect();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !table_without(&e, &inodes_left) {
        assert!(
            std::time::Instant::now() < deadline,
            "no table without the rotated files"
        );
        append(&e.log("app.log"), b"tick\n");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    drop(d); // SIGKILL
    let d = e.start();
    let before = e.entries().len();
    append(&e.log("app.log"), b"next run\n");
    e.wait_entries(before + 1);
    stop(d);
    assert!(
        gaps(&e, 9).is_empty(),
        "no false deleted gap: {:?}",
        gaps(&e, 9)
    );
}

#[test]
fn a_clean_stop_is_told_apart_from_a_crash() {
    let e = Env::new("");
    append(&e.log("app.log"), b"one\n");
    let d = e.start();
    e.wait_entries(1);
    stop(d);
    let d = e.start();
    stop(d);
    assert!(
        !e.stderr().contains("did not stop cleanly"),
        "{}",
        e.stderr()
    );
    // wormlog append ends cleanly too.
    let out = Command::new(bin())
        .args(["append", "--quiet", "--source", "cron", "--config"])
        .arg(e.p("agent.toml"))
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let d = e.start();
    drop(d); // SIGKILL
    let before = e.stderr().matches("did not stop cleanly").count();
    assert_eq!(before, 0, "{}", e.stderr());
    let d = e.start();
    stop(d);
    assert_eq!(
        e.stderr().matches("did not stop cleanly").count(),
        1,
        "{}",
        e.stderr()
    );
}
