//! `[[sources.auditd]]` on real audit logs: `fixtures/audit.log` holds real
//! auditd output (from laurel's and go-libaudit's test data, as cited in
//! parse/src/audit/tests.rs: an ENRICHED login with the 0x1D separator, a
//! perl reverse shell with a hex-encoded EXECVE argument and PROCTITLE, a
//! raw USER_LOGIN, a dash execution). Events grouped into one entry each,
//! events split across writes, an `EOE` read after its `PROCTITLE` (also
//! across a stop or a kill -9), serial gaps as gap records, rotation, and
//! exactly once across a kill -9 while events interleave.

mod common;

use common::*;
use std::io::Write;
use std::time::Duration;

const FIXTURE: &[u8] = include_bytes!("fixtures/audit.log");

fn audit_env() -> Env {
    Env::with_sources("", |e| {
        format!(
            "[[sources.auditd]]\nname = \"audit\"\npath = \"{}\"\npoll_interval = \"50ms\"\n",
            e.log("audit.log").display()
        )
    })
}

fn serials(e: &Env) -> Vec<String> {
    e.entries()
        .iter()
        .map(|r| String::from_utf8_lossy(r.field("audit_serial").unwrap_or(b"?")).into_owned())
        .collect()
}

/// Appends `lines` to the log `name` in one write (a reader sees all or
/// none of them).
fn write(e: &Env, name: &str, lines: &[&[u8]]) {
    let mut data = lines.join(&b'\n');
    data.push(b'\n');
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(e.log(name))
        .unwrap()
        .write_all(&data)
        .unwrap();
}

#[test]
fn records_of_one_event_become_one_entry_with_fields_and_decoded_hex() {
    let e = audit_env();
    std::fs::write(e.log("audit.log"), FIXTURE).unwrap();
    let d = e.start();
    e.wait_entries(4);
    stop(d);
    // One entry per event, in the order they completed (the login has no
    // PROCTITLE: it completes when the log has moved 2 s past it).
    let mut s = serials(&e);
    s.sort();
    assert_eq!(s, ["151316", "28860764", "348501", "42120"]);
    let by_serial = |n: &str| {
        e.entries()
            .into_iter()
            .find(|r| r.field("audit_serial") == Some(n.as_bytes()))
            .unwrap()
    };
    let ev = [by_serial("151316"), by_serial("348501"), by_serial("42120")];
    // Each event's lines, byte-exact, joined with \n.
    let fixture_lines: Vec<&[u8]> = FIXTURE
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    let perl = &ev[1];
    assert_eq!(perl.body, fixture_lines[2..9].join(&b'\n'));
    assert_eq!(
        perl.field("audit_types"),
        Some(&b"SYSCALL,EXECVE,CWD,PATH,PATH,PATH,PROCTITLE"[..])
    );
    let decoded = String::from_utf8_lossy(
        perl.field("EXECVE.a2.decoded")
            .expect("the hex argument decoded"),
    );
    assert!(
        decoded.starts_with("use Socket;$i=\"10.0.0.1\""),
        "{decoded}"
    );
    assert!(
        perl.field("PROCTITLE.proctitle.decoded")
            .is_some_and(|p| p.starts_with(b"perl -e use Socket"))
    );
    // The ENRICHED part after 0x1D is kept in the body and as fields.
    let login = &ev[0];
    assert!(login.body.contains(&0x1d));
    assert_eq!(login.field("LOGIN.AUID"), Some(&b"root"[..]));
    // A standalone record is an event of its own.
    assert_eq!(ev[2].field("audit_types"), Some(&b"USER_LOGIN"[..]));
    assert_eq!(ev[2].field("audit_completion"), Some(&b"standalone"[..]));
}

#[test]
fn an_event_split_across_writes_is_still_one_entry() {
    let e = audit_env();
    let lines: Vec<&[u8]> = FIXTURE
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    let d = e.start();
    // The perl event, in three writes with pauses that the source sees.
    write(&e, "audit.log", &lines[2..4]);
    std::thread::sleep(Duration::from_millis(300));
    write(&e, "audit.log", &lines[4..7]);
    std::thread::sleep(Duration::from_millis(300));
    write(&e, "audit.log", &lines[7..9]);
    e.wait_entries(1);
    stop(d);
    let ev = e.entries();
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].body, lines[2..9].join(&b'\n'));
    assert_eq!(ev[0].field("audit_records"), Some(&b"7"[..]));
}

/// The first and last record of an `sh` execution event.
fn syscall(serial: u32) -> Vec<u8> {
    format!("type=SYSCALL msg=audit(1700000000.000:{serial}): arch=c000003e syscall=59 success=yes exit=0 items=0 ppid=1 pid=2 auid=0 uid=0 comm=\"sh\" exe=\"/bin/sh\" key=(null)").into_bytes()
}

fn proctitle(serial: u32) -> Vec<u8> {
    format!("type=PROCTITLE msg=audit(1700000000.000:{serial}): proctitle=7368").into_bytes()
}

/// The end-of-event record, as auditd's plugins and other tools write it.
fn eoe(serial: u32) -> Vec<u8> {
    format!("type=EOE msg=audit(1700000000.000:{serial}): ").into_bytes()
}

fn record(serial: u32, ty: &str) -> Vec<u8> {
    format!(
        "type={ty} msg=audit(1700000000.{:03}:{serial}): pid=1 uid=0 auid=0 ses=1 msg='op=test acct=\"root\" res=success'",
        serial % 1000
    )
    .into_bytes()
}

#[test]
fn a_jump_in_serials_is_a_gap_record() {
    let e = audit_env();
    let recs: Vec<Vec<u8>> = [100, 101, 102, 106, 107]
        .iter()
        .map(|s| record(*s, "USER_CMD"))
        .collect();
    write(
        &e,
        "audit.log",
        &recs.iter().map(Vec::as_slice).collect::<Vec<_>>(),
    );
    let d = e.start();
    e.wait_entries(5);
    e.wait_records("gap", 1);
    stop(d);
    let gaps: Vec<Rec> = e
        .records()
        .into_iter()
        .filter(|r| r.kind.starts_with("gap"))
        .collect();
    assert_eq!(gaps.len(), 1, "{gaps:?}");
    assert_eq!(gaps[0].kind, "gap:6", "reason audit_lost");
    assert!(
        gaps[0]
            .detail
            .contains("3 audit event(s) missing between serial 102 and serial 106"),
        "{}",
        gaps[0].detail
    );
}

#[test]
fn rotation_and_a_kill_during_interleaved_events_lose_and_duplicate_nothing() {
    let e = audit_env();
    // A (200) opens; B (201, standalone) is written while A is open.
    write(
        &e,
        "audit.log",
        &[&syscall(200), &record(201, "USER_LOGIN")],
    );
    let mut d = e.start();
    e.wait_entries(1);
    // Killed while A is open and B already in the spool.
    d.0.kill().unwrap();
    d.0.wait().unwrap();
    // A ends; the log rotates; C comes in the new file.
    write(&e, "audit.log", &[&proctitle(200)]);
    std::fs::rename(e.log("audit.log"), e.log("audit.log.1")).unwrap();
    write(&e, "audit.log", &[&record(202, "USER_LOGOUT")]);
    let d = e.start();
    // B would come again before A (it is earlier in the file), so a
    // duplicate would be among the first three entries after the restart.
    e.wait_entries(3);
    stop(d);
    let mut s = serials(&e);
    s.sort();
    assert_eq!(s, ["200", "201", "202"], "each event exactly once");
    let a = e
        .entries()
        .into_iter()
        .find(|r| r.field("audit_serial") == Some(&b"200"[..]))
        .unwrap();
    assert_eq!(
        a.field("audit_types"),
        Some(&b"SYSCALL,PROCTITLE"[..]),
        "A whole, after the restart"
    );
}

#[test]
fn serials_passed_over_after_a_restart_are_not_reported_lost() {
    let e = audit_env();
    // A (300) opens; B and C (301, 302) are written while A is open.
    write(
        &e,
        "audit.log",
        &[
            &syscall(300),
            &record(301, "USER_LOGIN"),
            &record(302, "USER_LOGOUT"),
        ],
    );
    let mut d = e.start();
    e.wait_entries(2);
    d.0.kill().unwrap();
    d.0.wait().unwrap();
    // After the restart B and C are read again and passed over; 303 follows
    // 300 in the tracker's eyes, but nothing was lost.
    write(
        &e,
        "audit.log",
        &[&proctitle(300), &record(303, "USER_LOGIN")],
    );
    let d = e.start();
    e.wait_entries(4);
    // The tracker reports holes after an idle period (2 s): hold for three.
    std::thread::sleep(Duration::from_secs(6));
    stop(d);
    let gaps: Vec<Rec> = e
        .records()
        .into_iter()
        .filter(|r| r.kind.starts_with("gap"))
        .collect();
    assert!(gaps.is_empty(), "false loss records: {gaps:?}");
    let mut s = serials(&e);
    s.sort();
    assert_eq!(s, ["300", "301", "302", "303"]);
}

/// Writes a standalone record and an `sh` event up to its PROCTITLE, and
/// waits until the standalone one is in the spool: that write was read.
fn write_up_to_proctitle(e: &Env, serial: u32) {
    write(
        e,
        "audit.log",
        &[
            &record(serial - 1, "USER_LOGIN"),
            &syscall(serial),
            &proctitle(serial),
        ],
    );
    e.wait_entries(1);
}

/// The spool holds the standalone record and the event, each once, the
/// event with its EOE, and no gap.
fn assert_event_whole_with_its_eoe(e: &Env, serial: u32) {
    let mut s = serials(e);
    s.sort();
    assert_eq!(
        s,
        [(serial - 1).to_string(), serial.to_string()],
        "each event once, no EOE of its own"
    );
    let event = e
        .entries()
        .into_iter()
        .find(|r| r.field("audit_serial") == Some(serial.to_string().as_bytes()))
        .unwrap();
    assert_eq!(
        event.body,
        [syscall(serial), proctitle(serial), eoe(serial)].join(&b'\n')
    );
    assert_eq!(event.field("audit_completion"), Some(&b"eoe"[..]));
    assert_eq!(event.field("audit_continues"), None);
    assert!(
        e.records().iter().all(|r| !r.kind.starts_with("gap")),
        "no loss"
    );
}

#[test]
fn an_eoe_read_after_its_proctitle_stays_with_its_event() {
    let e = audit_env();
    let d = e.start();
    write_up_to_proctitle(&e, 501);
    write(&e, "audit.log", &[&eoe(501)]);
    e.wait_entries(2);
    stop(d);
    assert_event_whole_with_its_eoe(&e, 501);
}

/// Stopped (`halt`) after the PROCTITLE was read and before its EOE was:
/// the event was not written, the position is before it, and the next run
/// reads it again whole.
fn an_eoe_after_a_restart_joins_its_event(halt: fn(Daemon)) {
    let e = audit_env();
    let d = e.start();
    write_up_to_proctitle(&e, 601);
    halt(d);
    write(&e, "audit.log", &[&eoe(601)]);
    let d = e.start();
    e.wait_entries(2);
    stop(d);
    assert_event_whole_with_its_eoe(&e, 601);
}

#[test]
fn an_eoe_after_a_kill_joins_its_event() {
    an_eoe_after_a_restart_joins_its_event(|mut d| {
        d.0.kill().unwrap();
        d.0.wait().unwrap();
    });
}

#[test]
fn an_eoe_after_a_stop_joins_its_event() {
    an_eoe_after_a_restart_joins_its_event(stop);
}
