//! The console's reads over a real collector and a real agent (the pages
//! themselves are tried in a real Chromium by tests/console/): the
//! timeline shows a crash as a stretch nobody watched, the same after the
//! collector restarts and after its derived timeline file is damaged or
//! deleted; the overview tells the unclean stop and how far behind the
//! agent is, then that it stopped forwarding.

mod common;

use common::*;
use serde_json::Value;
use std::time::Duration;

fn http() -> reqwest::blocking::Client {
    let tls = wormlog_tls::client_config(None, None).unwrap();
    reqwest::blocking::Client::builder()
        .tls_backend_preconfigured(tls)
        .build()
        .unwrap()
}

fn get(base: &str, token: &str, path: &str) -> Value {
    let r = http()
        .get(format!("{base}{path}"))
        .bearer_auth(token)
        .send()
        .unwrap();
    let status = r.status();
    let text = r.text().unwrap();
    assert!(status.is_success(), "{path}: {status} {text}");
    serde_json::from_str(&text).unwrap()
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

/// What of a timeline does not move with the clock: the silences and the
/// events.
fn settled(t: &Value) -> (Vec<Value>, Value) {
    let spans = t["uncovered"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["seq"].is_u64())
        .cloned()
        .collect();
    (spans, t["events"].clone())
}

#[test]
fn the_timeline_shows_a_crash_and_survives_restarts_and_damage() {
    let mut s = Setup::new();
    s.write_collector_config("");
    let (token, line) = new_token();
    let cfg = s.d.p("collector.toml");
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str(&format!(
        "\n[console]\nlate_after = \"3s\"\n\n[[users]]\nname = \"audra\"\nroles = [\"auditor\"]\n{line}\n"
    ));
    std::fs::write(&cfg, text).unwrap();
    let mut collector = start_collector(&mut s);
    let base = |s: &Setup| format!("http://127.0.0.1:{}", s.port);
    let agent_cfg = s.write_agent_config("agent", &format!("url = \"{}\"\n", base(&s)));
    write_lines(&s.d.p("logs/app.log"), 0, 20);
    let agent = s.start_agent(&agent_cfg, "agent");
    wait_for(
        "20 lines stored",
        Duration::from_secs(30),
        || next_seq_in_store(&s.d.p("store")) > 20 && stored_lines(&s.d.p("store")).len() == 20,
        || agent.log(),
    );
    // The page: from the binary, with its policy; every answer no-store.
    let client = http();
    let page = client.get(format!("{}/console/", base(&s))).send().unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert!(page.text().unwrap().contains("/console/app.js"));
    let js = client
        .get(format!("{}/console/app.js", base(&s)))
        .send()
        .unwrap();
    assert!(
        js.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    let api = client
        .get(format!("{}/v1/overview", base(&s)))
        .bearer_auth(&token)
        .send()
        .unwrap();
    assert_eq!(api.headers()["cache-control"], "no-store");
    assert_eq!(api.headers()["x-content-type-options"], "nosniff");

    // The overview: how far behind the agent is (Wormlog-Spool-End).
    let ov = get(&base(&s), &token, "/v1/overview");
    let a = &ov["agents"][0];
    assert_eq!(a["agent"], "web-01");
    assert!(a["behind_records"].is_u64(), "{a}");
    assert!(a["last_batch"].is_string(), "{a}");
    assert_eq!(a["severity"], 0, "{a}");

    // A crash (SIGKILL), longer than twice the 2 s heartbeat, a restart.
    let crash = now_ns();
    drop(agent);
    std::thread::sleep(Duration::from_millis(5500));
    let restart = now_ns();
    let agent = s.start_agent(&agent_cfg, "agent-2");
    write_lines(&s.d.p("logs/app.log"), 20, 5);
    wait_for(
        "25 lines stored",
        Duration::from_secs(30),
        || stored_lines(&s.d.p("store")).len() == 25,
        || agent.log(),
    );
    let range = format!(
        "/v1/agents/web-01/timeline?from={}&to={}",
        crash - 120_000_000_000,
        restart + 60_000_000_000
    );
    let t = get(&base(&s), &token, &range);
    let spans: Vec<&Value> = t["uncovered"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["cause"] == "not running (unclean stop)")
        .collect();
    assert_eq!(spans.len(), 1, "{t}");
    let (from, to) = (
        spans[0]["from"].as_i64().unwrap(),
        spans[0]["to"].as_i64().unwrap(),
    );
    assert!(
        from <= crash && crash - from < 3_000_000_000,
        "{from} {crash}"
    );
    assert!(
        to >= restart && to - restart < 5_000_000_000,
        "{to} {restart}"
    );
    let events = t["events"].as_array().unwrap();
    let starts: Vec<&Value> = events.iter().filter(|e| e["class"] == "start").collect();
    assert_eq!(starts.len(), 2, "{t}");
    assert_eq!(starts[0]["cause"], "first start");
    assert_eq!(starts[1]["cause"], "after an unclean stop");
    assert!(
        t["activity"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n.as_u64() > Some(0))
    );
    let ov = get(&base(&s), &token, "/v1/overview");
    assert_eq!(ov["agents"][0]["unclean_24h"], 1, "{ov}");

    // The collector restarts: the timeline is read back from its file.
    let before = settled(&t);
    drop(agent);
    collector.stop();
    collector = start_collector(&mut s);
    let t2 = get(&base(&s), &token, &range);
    assert_eq!(settled(&t2), before);
    // Its file damaged while the collector is down, then deleted while it
    // runs: built again from the store, the same.
    let file = s.d.p("store/index/web-01/timeline");
    collector.stop();
    let mut bytes = std::fs::read(&file).unwrap();
    let at = bytes.len() - 7;
    bytes[at] ^= 0x55;
    std::fs::write(&file, &bytes).unwrap();
    collector = start_collector(&mut s);
    assert_eq!(settled(&get(&base(&s), &token, &range)), before);
    std::fs::remove_file(&file).unwrap();
    assert_eq!(settled(&get(&base(&s), &token, &range)), before);

    // The agent is gone: after late_after it is the overview's problem.
    wait_for(
        "the agent reported as no longer forwarding",
        Duration::from_secs(20),
        || {
            let ov = get(&base(&s), &token, "/v1/overview");
            ov["agents"][0]["severity"] == 2
                && ov["agents"][0]["problems"][0]["text"]
                    .as_str()
                    .is_some_and(|p| p.contains("stopped forwarding"))
        },
        || collector.log(),
    );
}
