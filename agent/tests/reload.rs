//! SIGHUP with a valid and with a broken configuration: the first is
//! applied (a new source starts, the old one goes on exactly where it was)
//! and its SHA-256 is in the chain as a `config` record; the second is
//! refused with its file:line:column, recorded as an alert, and the running
//! configuration stays.

mod common;

use common::*;
use std::time::{Duration, Instant};

fn hup(d: &Daemon) {
    rustix::process::kill_process(
        rustix::process::Pid::from_child(&d.0),
        rustix::process::Signal::HUP,
    )
    .unwrap();
}

fn wait_stderr(e: &Env, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !e.stderr().contains(what) {
        assert!(Instant::now() < deadline, "no {what:?} in:\n{}", e.stderr());
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    wormlog_spool::hash::hex(&wormlog_spool::hash::sha256(bytes))
}

#[test]
fn a_valid_configuration_is_applied_and_recorded_in_the_chain() {
    let e = Env::with_glob("a*.log", "");
    append(&e.log("a.log"), lines("a", 0..100).as_bytes());
    let d = e.start();
    e.wait_entries(100);
    let cfg = std::fs::read_to_string(e.p("agent.toml")).unwrap();
    let new_cfg = format!(
        "{cfg}\n[[sources.file]]\nname = \"other\"\npaths = [\"{}/b*.log\"]\npoll_interval = \"20ms\"\n",
        e.logs().display()
    );
    std::fs::write(e.p("agent.toml"), &new_cfg).unwrap();
    append(&e.log("b.log"), lines("b", 0..50).as_bytes());
    append(&e.log("a.log"), lines("a", 100..120).as_bytes());
    hup(&d);
    wait_stderr(&e, "SIGHUP: running with 2 sources");
    append(&e.log("a.log"), lines("a", 120..130).as_bytes());
    e.wait_entries(180);
    stop(d);
    let recs = e.records();
    let configs: Vec<&Rec> = recs.iter().filter(|r| r.kind == "config").collect();
    assert_eq!(configs.len(), 1, "one config record");
    assert_eq!(configs[0].detail, sha256_hex(new_cfg.as_bytes()));
    let bodies = e.bodies();
    let of = |p: &str| {
        bodies
            .iter()
            .filter(|l| l.starts_with(p))
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(
        of("a "),
        expect_lines("a", 0..130),
        "the old source went on exactly where it was"
    );
    assert_eq!(of("b "), expect_lines("b", 0..50));
}

#[test]
fn a_broken_configuration_is_refused_and_the_old_one_keeps_running() {
    let e = Env::new("");
    append(&e.log("app.log"), lines("a", 0..10).as_bytes());
    let d = e.start();
    e.wait_entries(10);
    let good = std::fs::read_to_string(e.p("agent.toml")).unwrap();
    std::fs::write(e.p("agent.toml"), format!("{good}\n[spool]\nbogus = 1\n")).unwrap();
    hup(&d);
    wait_stderr(&e, "not applied");
    let err = e.stderr();
    let line = err.lines().find(|l| l.contains("not applied")).unwrap();
    assert!(
        line.contains("agent.toml:") && line.contains("the running one stays"),
        "{line}"
    );
    // Still reading, under the old configuration.
    append(&e.log("app.log"), lines("a", 10..20).as_bytes());
    e.wait_entries(20);
    stop(d);
    let recs = e.records();
    assert!(
        recs.iter().all(|r| r.kind != "config"),
        "no config record for a refused file"
    );
    assert!(
        recs.iter()
            .any(|r| r.kind == "alert:4" && r.detail.contains("not applied")),
        "the refusal is in the chain"
    );
    assert_eq!(e.bodies(), expect_lines("a", 0..20));
}

#[test]
fn a_reload_while_the_spool_is_full_applies_the_budget_and_never_hangs() {
    let e = Env::with_spool(
        "*.log",
        "segment_max_bytes = \"1MiB\"\ndisk_budget = \"4MiB\"\nmin_free = \"1MiB\"\n",
        "",
    );
    append(
        &e.log("app.log"),
        lines(&"q".repeat(150), 0..60_000).as_bytes(),
    );
    let d = e.start();
    wait_stderr(&e, "spool full");
    // A bigger budget, by SIGHUP: applied through the channel the writer
    // reads while full; the spool has room again and the reload goes on.
    let cfg = std::fs::read_to_string(e.p("agent.toml")).unwrap();
    std::fs::write(
        e.p("agent.toml"),
        cfg.replace("disk_budget = \"4MiB\"", "disk_budget = \"64MiB\""),
    )
    .unwrap();
    hup(&d);
    wait_stderr(&e, "room again");
    wait_stderr(&e, "SIGHUP: running with 1 sources");
    e.wait_entries(60_000);
    // A reload that leaves it full (the budget back down) does not hang,
    // and neither does the stop after it.
    std::fs::write(e.p("agent.toml"), &cfg).unwrap();
    hup(&d);
    let t0 = Instant::now();
    stop(d);
    assert!(
        t0.elapsed() < Duration::from_secs(20),
        "the stop took {:?}",
        t0.elapsed()
    );
    assert_eq!(
        e.bodies(),
        expect_lines(&"q".repeat(150), 0..60_000),
        "every line once"
    );
}

#[test]
fn a_source_whose_settings_did_not_change_runs_on_through_a_reload() {
    let e = Env::with_sources("", |_| {
        "[[sources.syslog]]\nname = \"net\"\nlisten = \"tcp://127.0.0.1:0\"\n".to_owned()
    });
    let d = e.start();
    wait_stderr(&e, "listening on tcp://");
    let err = e.stderr();
    let addr = err
        .split("listening on tcp://")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap()
        .to_owned();
    let mut c = std::net::TcpStream::connect(&addr).unwrap();
    use std::io::Write;
    c.write_all(b"<13>before the reload\n").unwrap();
    e.wait_entries(1);
    let cfg = std::fs::read_to_string(e.p("agent.toml")).unwrap();
    std::fs::write(
        e.p("agent.toml"),
        format!(
            "{cfg}\n[[sources.file]]\nname = \"app\"\npaths = [\"{}/*.log\"]\npoll_interval = \"20ms\"\n",
            e.logs().display()
        ),
    )
    .unwrap();
    append(&e.log("app.log"), lines("a", 0..5).as_bytes());
    hup(&d);
    wait_stderr(&e, "SIGHUP: running with 2 sources");
    // The same connection, still served: the listener was not restarted.
    c.write_all(b"<13>after the reload\n").unwrap();
    e.wait_entries(7);
    drop(c);
    stop(d);
    assert_eq!(e.stderr().matches("listening on tcp://").count(), 1);
    let bodies = e.bodies();
    assert!(
        bodies.contains(&"<13>before the reload".to_owned()),
        "{bodies:?}"
    );
    assert!(
        bodies.contains(&"<13>after the reload".to_owned()),
        "{bodies:?}"
    );
    assert_eq!(bodies.len(), 7);
}
