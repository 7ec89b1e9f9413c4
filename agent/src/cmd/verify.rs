//! `wormlog verify --spool DIR [--pubkey KEY] [--json]`

use crate::render::escape_bytes;
use serde_json::{Value, json};
use std::path::Path;
use std::process::ExitCode;
use wormlog_spool::clock::rfc3339;
use wormlog_spool::hash::hex;
use wormlog_spool::keys::format_pubkey;
use wormlog_spool::record::AlertCode;
use wormlog_spool::verify::{Report, VerifyError, verify_spool};

pub fn run(spool: &Path, pubkey: Option<&str>, json_out: bool) -> anyhow::Result<ExitCode> {
    let key = pubkey.map(super::read_pubkey).transpose()?;
    let report = match verify_spool(spool, key, &mut |_, _, _| {}) {
        Ok(r) => r,
        Err(e @ (VerifyError::Io { .. } | VerifyError::NotASpool(_))) => {
            if json_out {
                println!(
                    "{}",
                    json!({"ok": false, "error": e.to_string(), "failure": null})
                );
            }
            eprintln!("wormlog: error: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    if json_out {
        println!("{}", report_json(spool, &report));
    } else {
        print_human(spool, &report);
    }
    Ok(if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `wormlog verify --config FILE [--record]`: the configured spool,
/// checked against the first key in its key_dir (or `pubkey`); with
/// `record`, the result goes into the chain through the running daemon and
/// into the journal at `err` (failed) or `info` priority.
pub fn run_configured(
    config: &Path,
    pubkey: Option<&str>,
    json_out: bool,
    record: bool,
) -> anyhow::Result<ExitCode> {
    let cfg = match crate::config::load(config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::from(2));
        }
    };
    let agent = &cfg.config.agent;
    let key = match pubkey {
        Some(k) => k.to_owned(),
        None => agent
            .key_dir
            .join(wormlog_spool::keys::PUB_FILE)
            .display()
            .to_string(),
    };
    if !record {
        return run(&agent.spool_dir, Some(&key), json_out);
    }
    let key = super::read_pubkey(&key)?;
    let (ok, summary) = match verify_spool(&agent.spool_dir, Some(key), &mut |_, _, _| {}) {
        Ok(r) => {
            if json_out {
                println!("{}", report_json(&agent.spool_dir, &r));
            }
            let summary = match &r.failure {
                None => format!(
                    "verify: OK: {} records ({} entries), {} checkpoints, {} receipts, root {}",
                    r.records,
                    r.entries,
                    r.checkpoints,
                    r.receipts,
                    hex(&r.root)
                ),
                Some(f) => format!(
                    "verify: FAILED at segment {} offset {} seq {}: {}",
                    f.segment,
                    f.offset,
                    f.seq,
                    escape_bytes(f.reason.as_bytes())
                ),
            };
            (r.ok(), summary)
        }
        Err(e) => (false, format!("verify: FAILED: {e}")),
    };
    // Under systemd stdout is the journal: "<3>" is err, "<6>" info.
    let priority = if ok { "<6>" } else { "<3>" };
    let journal = std::env::var_os("JOURNAL_STREAM").is_some();
    let line = format!("{}{summary}", if journal { priority } else { "" });
    if !json_out {
        println!("{line}");
    } else {
        eprintln!("{line}");
    }
    let recorded = tell_daemon(&agent.control_socket, ok, &summary);
    if let Err(e) = &recorded {
        eprintln!(
            "{}wormlog: the result is not in the chain: the daemon at {} cannot be asked: {e}",
            if journal { "<3>" } else { "" },
            agent.control_socket.display()
        );
    }
    Ok(match (ok, recorded.is_ok()) {
        (true, true) => ExitCode::SUCCESS,
        (false, _) => ExitCode::from(1),
        (true, false) => ExitCode::from(2),
    })
}

/// Sends the result to the daemon's control socket; Ok once it says it
/// passed it on to the writer.
fn tell_daemon(socket: &Path, ok: bool, summary: &str) -> std::io::Result<()> {
    use std::io::{BufRead, Write};
    let mut s = std::os::unix::net::UnixStream::connect(socket)?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
    writeln!(
        s,
        "{}",
        json!({"record": "verify", "ok": ok, "summary": summary})
    )?;
    let mut r = std::io::BufReader::new(s);
    let mut state = String::new();
    r.read_line(&mut state)?;
    let mut answer = String::new();
    r.read_line(&mut answer)?;
    let v: Value = serde_json::from_str(answer.trim()).unwrap_or(Value::Null);
    if v["recorded"] == true {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "it did not take the record ({})",
            answer.trim()
        )))
    }
}

/// The `--json` report.
pub fn report_json(spool: &Path, r: &Report) -> Value {
    json!({
        "ok": r.ok(),
        "spool": spool.display().to_string(),
        "agent_id": r.agent_id,
        "first_pubkey": r.first_pubkey.map(|k| format_pubkey(&k)),
        "key_authenticated": r.key_authenticated,
        "segments": r.segments,
        "records": r.records,
        "entries": r.entries,
        "bytes": r.bytes,
        "first_ts": r.first_ts.map(rfc3339),
        "last_ts": r.last_ts.map(rfc3339),
        "checkpoints": r.checkpoints,
        "epoch": r.epoch,
        "epoch_transitions": r.epoch_transitions,
        "unsigned_tail": r.unsigned_tail,
        "tree_size": r.tree_size,
        "root": hex(&r.root),
        "head": hex(&r.head),
        "receipts": r.receipts,
        "recoveries": r.recoveries.iter().map(|n| json!({
            "segment": n.segment, "cause": n.cause, "offset": n.offset, "len": n.len
        })).collect::<Vec<_>>(),
        "tail_in_progress_bytes": r.tail_in_progress_bytes,
        "time_gaps": r.time_gaps.iter().map(|g| json!({
            "from_seq": g.from_seq, "to_seq": g.to_seq, "from": rfc3339(g.from_ts),
            "to": rfc3339(g.to_ts), "seconds": g.seconds, "cause": g.cause
        })).collect::<Vec<_>>(),
        "clock_steps": r.clock_steps.iter().map(|(seq, e, o)| json!({
            "seq": seq, "expected": rfc3339(*e), "observed": rfc3339(*o)
        })).collect::<Vec<_>>(),
        "alerts": r.alerts.iter().map(|(seq, code, detail)| json!({
            "seq": seq, "code": AlertCode::name_of(*code), "detail": detail
        })).collect::<Vec<_>>(),
        "prunes": r.prunes,
        "pruned": r.pruned.as_ref().map(|p| json!({
            "first_segment": p.first_segment, "first_seq": p.first_seq,
            "ledger_records": p.ledger_records, "recorded_at": p.recorded_at
        })),
        "ignored_files": r.ignored_files,
        "failure": r.failure.as_ref().map(|f| json!({
            "segment": f.segment, "offset": f.offset, "seq": f.seq, "reason": f.reason
        })),
    })
}

fn print_human(spool: &Path, r: &Report) {
    let verdict = if r.ok() {
        "INTACT"
    } else {
        "TAMPERING OR LOSS FOUND"
    };
    println!("{}: {verdict}", spool.display());
    if let Some(id) = &r.agent_id {
        println!("  agent            {}", escape_bytes(id.as_bytes()));
    }
    if let Some(k) = r.first_pubkey {
        let auth = if r.key_authenticated {
            "matches --pubkey"
        } else {
            "NOT authenticated: pass --pubkey with the key `wormlog keygen` printed"
        };
        println!("  first key        {} ({auth})", format_pubkey(&k));
    }
    println!(
        "  checked          {} segments, {} records ({} log entries), {} bytes",
        r.segments, r.records, r.entries, r.bytes
    );
    if let Some(p) = &r.pruned {
        println!(
            "  pruned           segments 0..{} (records 0..{}) were removed after the collector acknowledged them{}; key ledger of {} records",
            p.first_segment.saturating_sub(1),
            p.first_seq.saturating_sub(1),
            p.recorded_at
                .map_or(String::new(), |s| format!(" (prune record at seq {s})")),
            p.ledger_records
        );
    }
    if let (Some(a), Some(b)) = (r.first_ts, r.last_ts) {
        println!("  time covered     {} .. {}", rfc3339(a), rfc3339(b));
    }
    println!(
        "  signatures       {} checkpoints verified, epoch {} ({} key transitions)",
        r.checkpoints, r.epoch, r.epoch_transitions
    );
    println!(
        "  unsigned tail    {} records after the last checkpoint (chained, not yet signed)",
        r.unsigned_tail
    );
    if r.tail_in_progress_bytes > 0 {
        println!(
            "  tail in progress {} bytes at the end of the active segment (a write under way, or a crash not yet recovered)",
            r.tail_in_progress_bytes
        );
    }
    for n in &r.recoveries {
        println!(
            "  recovery         segment {}: {} of {} bytes at offset {} (explained by a recovery record)",
            n.segment, n.cause, n.len, n.offset
        );
    }
    for g in &r.time_gaps {
        println!(
            "  gap in time      {:.1}s between seq {} and {} ({} .. {}): {}",
            g.seconds,
            g.from_seq,
            g.to_seq,
            rfc3339(g.from_ts),
            rfc3339(g.to_ts),
            g.cause
        );
    }
    for (seq, e, o) in &r.clock_steps {
        println!(
            "  clock step       at seq {seq}: expected {}, clock said {}",
            rfc3339(*e),
            rfc3339(*o)
        );
    }
    for (seq, code, detail) in &r.alerts {
        println!(
            "  alert            at seq {seq}: {}: {}",
            AlertCode::name_of(*code),
            escape_bytes(detail.as_bytes())
        );
    }
    for f in &r.ignored_files {
        println!("  ignored file     {}", escape_bytes(f.as_bytes()));
    }
    if let Some(f) = &r.failure {
        println!(
            "  FIRST PROBLEM    segment {}, byte offset {}, seq {}: {}",
            f.segment,
            f.offset,
            f.seq,
            escape_bytes(f.reason.as_bytes())
        );
    }
}
