//! The scheduled verification on the local store: a byte changed in a
//! stored segment is found within one period, with an alert record in the
//! collector's own chain, an error line, a metric and `status` exit 1.

mod common;

use common::*;
use serde_json::Value;
use std::process::Command;
use std::time::Duration;

fn status(store: &std::path::Path) -> (i32, Value) {
    let o = Command::new(collector_bin())
        .args(["status", "--json", "--store"])
        .arg(store)
        .output()
        .unwrap();
    (
        o.status.code().unwrap(),
        serde_json::from_slice(&o.stdout).unwrap_or(Value::Null),
    )
}

/// The alert records of the collector's own chain.
fn own_alerts(store: &std::path::Path) -> Vec<String> {
    spool_records(&store.join("log"))
        .into_iter()
        .filter(|v| v["kind"] == "alert")
        .map(|v| v.to_string())
        .collect()
}

/// A collector verifying every `every` (unthrottled) that holds `n` lines
/// of web-01, the agent stopped: the setup, the collector, the store.
fn stored(every: &str, n: usize) -> (Setup, Proc, std::path::PathBuf) {
    let mut s = Setup::new();
    s.write_collector_config("append_only = \"off\"");
    let cfg = s.d.p("collector.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        format!("{text}\n[verify]\nevery = \"{every}\"\nrate = \"0\"\n"),
    )
    .unwrap();
    let collector = start_collector(&mut s);
    let agent_cfg =
        s.write_agent_config("agent", &format!("url = \"http://127.0.0.1:{}\"", s.port));
    write_lines(&s.d.p("logs/app.log"), 0, n);
    let agent = s.start_agent(&agent_cfg, "agent");
    let store = s.d.p("store");
    wait_for(
        &format!("{n} lines stored"),
        Duration::from_secs(30),
        || next_seq_in_store(&store) > n as u64 && stored_lines(&store).len() == n,
        || collector.log(),
    );
    drop(agent);
    (s, collector, store)
}

#[test]
fn a_changed_byte_in_the_store_is_found_within_one_period() {
    let (s, collector, store) = stored("1s", 300);
    // A clean pass after the lines arrived.
    let passes_before = status(&store).1["passes"].as_u64().unwrap_or(0);
    wait_for(
        "a clean pass",
        Duration::from_secs(20),
        || {
            let (code, v) = status(&store);
            code == 0 && v["passes"].as_u64().unwrap_or(0) >= passes_before + 2
        },
        || collector.log(),
    );
    assert!(metrics_text(s.port).contains("wormlog_collector_verify_failed_agents 0"));

    // One byte of a stored line changed (what a disk or an intruder does).
    let seg = std::fs::read_dir(store.join("agents/web-01"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "wlseg"))
        .min()
        .unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    let at = bytes
        .windows(12)
        .position(|w| w == b"line 0000150")
        .unwrap();
    bytes[at + 11] = b'9';
    std::fs::write(&seg, &bytes).unwrap();
    wait_for(
        "the scheduled verification to find it",
        Duration::from_secs(20),
        || status(&store).0 == 1,
        || collector.log(),
    );
    let (_, v) = status(&store);
    let f = &v["last_failures"][0];
    assert_eq!(f["agent"], "web-01", "{v}");
    assert_eq!(f["place"], "store");
    assert!(f["reason"].as_str().unwrap().contains("segment"), "{v}");
    let m = metrics_text(s.port);
    assert!(
        m.contains("wormlog_collector_verify_failed_agents 1"),
        "{m}"
    );
    assert!(
        m.contains("wormlog_collector_verify_failures_total{agent=\"web-01\"}"),
        "{m}"
    );
    let log = collector.stop();
    assert!(
        log.contains("scheduled verification: agent web-01 (store) fails"),
        "{log}"
    );
    let alerts = own_alerts(&store);
    assert!(
        alerts
            .iter()
            .any(|a| a.contains("scheduled verification: agent web-01")),
        "{alerts:?}"
    );
    // Plain `status` says the same, safely.
    let o = Command::new(collector_bin())
        .args(["status", "--store"])
        .arg(&store)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stdout).contains("FAILED: agent web-01 (store)"));
}

#[test]
fn a_pass_cut_short_goes_on_with_the_agents_it_had_not_done() {
    let (mut s, collector, store) = stored("1h", 50);
    collector.stop();
    // A pass that was under way when the collector stopped, web-01 done.
    std::fs::write(
        store.join("verify.json"),
        r#"{"pass_started_ns": 1, "done": ["web-01"], "records": 7, "bytes": 70, "passes": 3}"#,
    )
    .unwrap();
    let collector = start_collector(&mut s);
    wait_for(
        "the pass to end",
        Duration::from_secs(20),
        || status(&store).1["passes"] == 4,
        || collector.log(),
    );
    let (code, v) = status(&store);
    assert_eq!(code, 0);
    // It went on where it stood (web-01 was not read again) …
    assert_eq!(v["last_pass_records"], 7, "{v}");
    assert_eq!(v["pass_started_ns"], Value::Null);
    // … and the next pass is an hour after this one started.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(status(&store).1["passes"], 4);
    collector.stop();
}
