//! The metrics endpoint scraped and parsed with a real OpenMetrics parser
//! (Python's prometheus_client, Debian's python3-prometheus-client), and
//! `wormlog status` for a healthy agent (exit 0), an unhealthy one (exit 1:
//! the spool near full, a source that just lost data) and no agent (2).

mod common;

use common::*;
use std::process::Command;
use std::time::{Duration, Instant};

/// `GET /metrics`, parsed by prometheus_client's OpenMetrics parser into
/// `name{labels} value` lines (the parser rejects malformed text).
fn scrape_parsed(e: &Env) -> Vec<String> {
    use std::io::{Read, Write};
    let err = e.stderr();
    let addr = err
        .split("metrics on http://")
        .nth(1)
        .and_then(|r| r.split("/metrics").next())
        .unwrap_or_else(|| panic!("no metrics address:\n{err}"))
        .to_owned();
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    c.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
    let mut out = String::new();
    c.read_to_string(&mut out).unwrap();
    let body = out.split_once("\r\n\r\n").unwrap().1.to_owned();
    let script = r#"
import sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
for fam in text_string_to_metric_families(sys.stdin.read()):
    for s in fam.samples:
        labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
        print(f"{s.name}{{{labels}}} {s.value}")
"#;
    let mut p = Command::new("/usr/bin/python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("/usr/bin/python3 with python3-prometheus-client");
    p.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
    let o = p.wait_with_output().unwrap();
    assert!(
        o.status.success(),
        "the OpenMetrics parser refused the text: {}\n{body}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn value(samples: &[String], name_labels: &str) -> f64 {
    samples
        .iter()
        .find_map(|l| l.strip_prefix(name_labels)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name_labels} in {samples:#?}"))
}

fn status(e: &Env, json: bool) -> (i32, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_wormlog"));
    c.args(["status", "--config"]).arg(e.p("agent.toml"));
    if json {
        c.arg("--json");
    }
    let o = c.output().unwrap();
    (
        o.status.code().unwrap(),
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr),
    )
}

#[test]
fn a_healthy_agent_has_parseable_metrics_and_a_status_of_0() {
    let e = Env::new("\n[metrics]\nlisten = \"127.0.0.1:0\"\n");
    append(&e.log("app.log"), lines("a", 0..500).as_bytes());
    let d = e.start();
    e.wait_entries(500);
    // The writer publishes its state at every turn (after each event).
    let deadline = Instant::now() + Duration::from_secs(10);
    let m = loop {
        let m = scrape_parsed(&e);
        if value(&m, "wormlog_source_entries_total{source=\"app\"}") >= 500.0
            && value(&m, "wormlog_spool_records{}") > 500.0
        {
            break m;
        }
        assert!(Instant::now() < deadline, "{m:#?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(value(&m, "wormlog_source_bytes_total{source=\"app\"}") >= 500.0 * 3.0);
    assert!(value(&m, "wormlog_spool_commit_seconds_count{}") >= 1.0);
    assert!(value(&m, "wormlog_spool_segments{}") >= 1.0);
    assert_eq!(value(&m, "wormlog_chain_epoch{}"), 0.0);
    assert_eq!(value(&m, "wormlog_spool_full{}"), 0.0);
    assert!(
        value(
            &m,
            "wormlog_source_last_entry_timestamp_seconds{source=\"app\"}"
        ) > 1.7e9
    );
    let (code, out) = status(&e, false);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(": OK")
            && out.contains("source    app: file reading for ")
            && out.contains("; 500 entries"),
        "{out}"
    );
    let (code, out) = status(&e, true);
    assert_eq!(code, 0, "{out}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["healthy"], true);
    assert_eq!(v["sources"]["app"]["entries"], 500);
    assert_eq!(v["sources"]["app"]["state"], "reading");
    stop(d);
    // No daemon: 2, and a clear message.
    let (code, out) = status(&e, false);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("cannot ask the daemon"), "{out}");
}

#[test]
fn an_unhealthy_agent_says_why_and_exits_1() {
    let e = Env::with_spool(
        "*.log",
        "segment_max_bytes = \"1MiB\"\ndisk_budget = \"4MiB\"\nbudget_warning = \"50%\"\nmin_free = \"1MiB\"\n",
        "",
    );
    // Past the warning level (50% of 4 MiB), short of full.
    append(
        &e.log("app.log"),
        lines(&"p".repeat(150), 0..12_000).as_bytes(),
    );
    let d = e.start();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !e.stderr().contains("of its disk budget") {
        assert!(Instant::now() < deadline, "{}", e.stderr());
        std::thread::sleep(Duration::from_millis(20));
    }
    // A source that lost data just now: the file was truncated.
    std::fs::OpenOptions::new()
        .write(true)
        .open(e.log("app.log"))
        .unwrap()
        .set_len(0)
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let out = loop {
        let (code, out) = status(&e, false);
        if code == 1 && out.contains("source app: a gap") && out.contains("disk budget") {
            break out;
        }
        assert!(Instant::now() < deadline, "exit {code}: {out}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(out.contains("NEEDS ATTENTION"), "{out}");
    stop(d);
}

/// Every configured source is shown from the start, with its state: one
/// that reads, one whose paths match nothing yet (said in the log too), an
/// audit source without an audit log — and the silent ones become
/// `reading` when their files appear.
#[test]
fn every_configured_source_is_shown_with_its_state() {
    let e = Env::with_sources("", |e| {
        format!(
            "[[sources.file]]\nname = \"app\"\npaths = [\"{logs}/*.log\"]\npoll_interval = \"20ms\"\n\n\
             [[sources.file]]\nname = \"later\"\npaths = [\"{later}/*.log\"]\npoll_interval = \"20ms\"\n\n\
             [[sources.auditd]]\nname = \"audit\"\npath = \"{audit}\"\npoll_interval = \"20ms\"\n\n\
             [metrics]\nlisten = \"127.0.0.1:0\"\n",
            logs = e.logs().display(),
            later = e.p("later").display(),
            audit = e.p("audit/audit.log").display(),
        )
    });
    append(&e.log("app.log"), lines("a", 0..3).as_bytes());
    let d = e.start();
    e.wait_entries(3);
    let states = |e: &Env| -> serde_json::Value {
        let (_, out) = status(e, true);
        serde_json::from_str::<serde_json::Value>(out.trim()).unwrap_or_default()["sources"].clone()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let s = loop {
        let s = states(&e);
        if s["app"]["state"] == "reading"
            && s["later"]["state"] == "waiting-for-path"
            && s["audit"]["state"] == "waiting-for-path"
        {
            break s;
        }
        assert!(Instant::now() < deadline, "{s:#}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(s["later"]["kind"], "file");
    assert_eq!(s["later"]["entries"], 0);
    assert!(
        s["later"]["state_detail"]
            .as_str()
            .unwrap()
            .contains(&format!("{}/*.log", e.p("later").display())),
        "{s:#}"
    );
    assert_eq!(s["audit"]["kind"], "auditd");
    let (code, out) = status(&e, false);
    assert_eq!(code, 0, "waiting for a path is not a problem: {out}");
    assert!(
        out.contains("source    later: file waiting-for-path for ")
            && out.contains("source    audit: auditd waiting-for-path for ")
            && out.contains("last entry none this run"),
        "{out}"
    );
    let err = e.stderr();
    assert!(
        err.contains("source later: no readable file matches")
            && err.contains("source audit: no readable file matches"),
        "{err}"
    );
    let m = scrape_parsed(&e);
    assert_eq!(
        value(
            &m,
            "wormlog_source_state{source=\"later\",state=\"waiting-for-path\"}"
        ),
        1.0
    );
    assert_eq!(
        value(
            &m,
            "wormlog_source_state{source=\"later\",state=\"reading\"}"
        ),
        0.0
    );
    assert_eq!(
        value(&m, "wormlog_source_entries_total{source=\"later\"}"),
        0.0
    );
    // The path appears: the source reads.
    std::fs::create_dir(e.p("later")).unwrap();
    append(&e.p("later/x.log"), b"late line\n");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = states(&e);
        if s["later"]["state"] == "reading" && s["later"]["entries"] == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "{s:#}");
        std::thread::sleep(Duration::from_millis(50));
    }
    stop(d);
}
