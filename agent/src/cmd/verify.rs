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
