//! The systemd notify protocol against a real `NOTIFY_SOCKET` datagram
//! socket made here: READY once the spool is open and the sources run,
//! STATUS, WATCHDOG pings while the writer makes progress — and none once
//! it is wedged (a test hook) — and STOPPING at SIGTERM.

mod common;

use common::*;
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

/// The messages received within `d`.
fn receive_for(sock: &UnixDatagram, d: Duration) -> Vec<String> {
    let deadline = Instant::now() + d;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return got;
        }
        sock.set_read_timeout(Some(left)).unwrap();
        match sock.recv(&mut buf) {
            Ok(n) => got.push(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(_) => return got,
        }
    }
}

/// Waits (with a deadline) for a message containing `what`; returns the
/// messages up to it.
fn receive_until(sock: &UnixDatagram, what: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut got = Vec::new();
    while Instant::now() < deadline {
        let more = receive_for(sock, Duration::from_millis(100));
        let found = more.iter().any(|m| m.contains(what));
        got.extend(more);
        if found {
            return got;
        }
    }
    panic!("no {what:?} within 20 s; got {got:?}");
}

#[test]
fn ready_status_watchdog_and_stopping_reach_systemd() {
    let e = Env::new("");
    let sock_path = e.p("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    append(&e.log("app.log"), lines("a", 0..10).as_bytes());
    let d = e.spawn_env(&[
        ("NOTIFY_SOCKET", sock_path.as_os_str()),
        ("WATCHDOG_USEC", "1000000".as_ref()),
    ]);
    let got = receive_until(&sock, "READY=1");
    let ready = got.iter().find(|m| m.contains("READY=1")).unwrap();
    assert!(ready.contains("STATUS=running with 1 sources"), "{ready}");
    // READY comes once the spool is open and the sources run.
    assert!(
        e.stderr().contains("running with 1 sources"),
        "{}",
        e.stderr()
    );
    // Pings, about twice a second (the watchdog is 1 s).
    let pings = receive_for(&sock, Duration::from_secs(3))
        .iter()
        .filter(|m| m.contains("WATCHDOG=1"))
        .count();
    assert!((3..=12).contains(&pings), "{pings} pings in 3 s");
    rustix::process::kill_process(
        rustix::process::Pid::from_child(&d.0),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    let got = receive_until(&sock, "STOPPING=1");
    assert!(
        got.iter().any(|m| m.contains("STATUS=SIGTERM: stopping")),
        "{got:?}"
    );
    let mut d = d;
    assert!(d.0.wait().unwrap().success());
}

#[test]
fn a_wedged_writer_stops_the_watchdog_pings() {
    let e = Env::new("");
    let sock_path = e.p("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    let wedge = e.p("wedge");
    let d = e.spawn_env(&[
        ("NOTIFY_SOCKET", sock_path.as_os_str()),
        ("WATCHDOG_USEC", "1000000".as_ref()),
        ("WORMLOG_TEST_WEDGE_FILE", wedge.as_os_str()),
    ]);
    receive_until(&sock, "READY=1");
    receive_until(&sock, "WATCHDOG=1");
    std::fs::write(&wedge, b"").unwrap();
    // At most one ping already under way; then none (systemd would now
    // restart the agent).
    receive_for(&sock, Duration::from_millis(700));
    let after = receive_for(&sock, Duration::from_secs(3));
    assert!(
        !after.iter().any(|m| m.contains("WATCHDOG=1")),
        "pings went on with the writer wedged: {after:?}"
    );
    drop(d);
}
