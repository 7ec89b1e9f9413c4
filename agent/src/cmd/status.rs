//! `wormlog status`: asks the running daemon (its control socket) how it
//! is, prints it for a person (or as JSON), and exits 0 when healthy, 1
//! when something needs looking at, 2 when the daemon cannot be asked.

use std::io::Read;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

pub fn run(config: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let cfg = match crate::config::load(config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::from(2));
        }
    };
    let path = &cfg.config.agent.control_socket;
    let mut text = String::new();
    let asked = UnixStream::connect(path).and_then(|mut s| {
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        // No request: the daemon answers with its state alone.
        s.shutdown(std::net::Shutdown::Write)?;
        s.read_to_string(&mut text)
    });
    if let Err(e) = asked {
        eprintln!(
            "wormlog: cannot ask the daemon at {}: {e} (is `wormlog run` running with this configuration, and may you open its socket?)",
            path.display()
        );
        return Ok(ExitCode::from(2));
    }
    let v: serde_json::Value = serde_json::from_str(text.trim())?;
    if json {
        println!("{v}");
    } else {
        print_human(&v);
    }
    Ok(if v["healthy"].as_bool() == Some(true) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn print_human(v: &serde_json::Value) {
    let healthy = v["healthy"].as_bool() == Some(true);
    println!(
        "wormlog {} (pid {}, up {}s): {}",
        v["agent_id"].as_str().unwrap_or("?"),
        v["pid"],
        v["uptime_s"],
        if healthy { "OK" } else { "NEEDS ATTENTION" }
    );
    let s = &v["spool"];
    println!(
        "  spool     {} records in {} segments, {} of {} bytes{}",
        s["records"],
        s["segments"],
        s["disk_bytes"],
        s["disk_budget_bytes"],
        if s["full"].as_bool() == Some(true) {
            " (FULL)"
        } else {
            ""
        }
    );
    println!(
        "  chain     {} checkpoints this run, key epoch {}",
        v["chain"]["checkpoints"], v["chain"]["epoch"]
    );
    let f = &v["forward"];
    if f["configured"].as_bool() == Some(true) {
        println!(
            "  forward   acknowledged up to {}, {}, last receipt {}, {} retries",
            f["acknowledged_seq"],
            match f["lag_records"].as_u64().unwrap_or(0) {
                0 => "all held by the collector".to_owned(),
                1 => "1 record not yet acknowledged".to_owned(),
                n => format!("{n} records not yet acknowledged"),
            },
            f["last_receipt_age_s"]
                .as_i64()
                .map_or("none yet".into(), |a| format!("{a}s ago")),
            f["retries"]
        );
    } else {
        println!("  forward   not configured");
    }
    if let Some(sources) = v["sources"].as_object() {
        let now = v["now"].as_i64().unwrap_or(0);
        for (name, s) in sources {
            println!("  source    {name}: {}", source_line(s, now));
        }
    }
    for p in v["problems"].as_array().into_iter().flatten() {
        println!("  PROBLEM   {}", p.as_str().unwrap_or(""));
    }
}

/// One source for a person: kind, state (and why), what it wrote this run.
/// A source that reads but wrote nothing this run is `idle`.
fn source_line(s: &serde_json::Value, now: i64) -> String {
    let entries = s["entries"].as_u64().unwrap_or(0);
    let mut state = s["state"].as_str().unwrap_or("?").to_owned();
    if state == "reading" && entries == 0 {
        state = "idle".into();
    }
    let since = s["state_since"].as_i64().unwrap_or(0);
    if since > 0 && now >= since {
        state = format!("{state} for {}s", now - since);
    }
    if let Some(d) = s["state_detail"].as_str().filter(|d| !d.is_empty()) {
        state = format!("{state} ({d})");
    }
    let last = match s["last_entry"].as_i64().unwrap_or(0) {
        0 => "none this run".to_owned(),
        t => format!("{}s ago", (now - t).max(0)),
    };
    format!(
        "{} {state}; {entries} entries, {} bytes, {} gaps, last entry {last}",
        s["kind"].as_str().unwrap_or("?"),
        s["bytes"],
        s["gaps"]
    )
}
