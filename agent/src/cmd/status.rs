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
            "  forward   acknowledged up to {}, {} records behind, last receipt {}, {} retries",
            f["acknowledged_seq"],
            f["lag_records"],
            f["last_receipt_age_s"]
                .as_i64()
                .map_or("none yet".into(), |a| format!("{a}s ago")),
            f["retries"]
        );
    } else {
        println!("  forward   not configured");
    }
    if let Some(sources) = v["sources"].as_object() {
        for (name, s) in sources {
            println!(
                "  source    {name}: {} entries, {} bytes, {} gaps",
                s["entries"], s["bytes"], s["gaps"]
            );
        }
    }
    for p in v["problems"].as_array().into_iter().flatten() {
        println!("  PROBLEM   {}", p.as_str().unwrap_or(""));
    }
}
