//! `wormlog verify --bundle` and `wormlog cat --bundle`: a bundle checked
//! offline (docs/FORMAT.md §12), its records printed as `cat` prints them
//! (a disclosure's one entry always), and the verdict.

use crate::render::{record_json_opened, record_line, with_opened};
use serde_json::json;
use std::io::Write;
use wormlog_spool::bundle::{BundleKind, BundleReport, Trust, verify_bundle};
use wormlog_spool::keys::format_pubkey;

/// What a checked bundle showed.
#[derive(Debug)]
pub struct Checked {
    pub report: BundleReport,
    /// A disclosure's entry, as `cat --json` shows it (opened when the
    /// bundle holds its key), and as `cat` does.
    pub entry_json: Option<serde_json::Value>,
    pub entry_line: Option<String>,
}

/// Checks `text`; with `records`, prints every record it proves to `out`
/// as `cat` does (one JSON object each with `json`).
pub fn check(text: &[u8], trust: Trust, json: bool, records: bool, out: &mut dyn Write) -> Checked {
    let mut broken = false;
    let mut entry_json = None;
    let mut entry_line = None;
    let first = text.split(|&b| b == b'\n').next().unwrap_or_default();
    let disclosure = serde_json::from_slice::<wormlog_spool::bundle::Header>(first)
        .is_ok_and(|h| h.kind == BundleKind::Disclosure);
    let report = verify_bundle(text, trust, &mut |rec, _bytes, opened| {
        let line = || match opened.and_then(|o| with_opened(rec, o)) {
            Some(clear) => record_line(&clear),
            None => record_line(rec),
        };
        if disclosure {
            entry_json = Some(record_json_opened(rec, opened, 0, 0));
            entry_line = Some(line());
        }
        if broken || !records {
            return;
        }
        let r = if json {
            writeln!(out, "{}", record_json_opened(rec, opened, 0, 0))
        } else {
            writeln!(out, "{}", line())
        };
        broken = r.is_err();
    });
    Checked {
        report,
        entry_json,
        entry_line,
    }
}

/// The verdict: a line (or, with `json`, an object) and the exit code: 0
/// the bundle proves what it says, 1 it does not.
pub fn verdict(
    program: &str,
    c: &Checked,
    trust_key: &[u8; 32],
    json: bool,
) -> std::process::ExitCode {
    let r = &c.report;
    let h = r.header.as_ref();
    if json {
        println!(
            "{}",
            json!({
                "ok": r.ok(),
                "kind": h.map(|h| match h.kind { BundleKind::Export => "export", BundleKind::Disclosure => "disclosure" }),
                "agent": h.map(|h| h.agent.clone()),
                "first_pubkey": format_pubkey(trust_key),
                "collector_id": h.map(|h| h.collector_id.clone()),
                "collector_pubkey": h.map(|h| h.collector_pubkey.clone()),
                "collector_authenticated": r.collector_authenticated,
                "records": r.records,
                "entries": r.entries,
                "checkpoints": r.checkpoints,
                "first_seq": r.first_seq,
                "last_seq": r.last_seq,
                "tree_size": r.tree_size,
                "receipts": r.receipts,
                "consistent_to": r.consistent_to,
                "opened": r.opened,
                "encrypted": r.sealed,
                "failure": r.failure,
                "entry": c.entry_json.as_ref().filter(|_| r.ok()),
            })
        );
    }
    if !json
        && r.ok()
        && let Some(l) = &c.entry_line
    {
        println!("{l}");
    }
    let Some(h) = h.filter(|_| r.ok()) else {
        eprintln!(
            "{program}: BUNDLE DOES NOT VERIFY: {}",
            r.failure.as_deref().unwrap_or("unknown")
        );
        return std::process::ExitCode::from(1);
    };
    let collector = if r.collector_authenticated {
        format!(
            "countersigned by collector {} (the key given)",
            h.collector_id
        )
    } else {
        format!(
            "countersigned by collector {} with key {} — NOT the key of a collector you trust: give --collector-pubkey to check it",
            h.collector_id, h.collector_pubkey
        )
    };
    match h.kind {
        BundleKind::Disclosure => eprintln!(
            "{program}: OK: entry {} of agent {} is in its log's tree of {} records, signed by the agent's key (first key as given), {collector}{}",
            h.from_seq,
            h.agent,
            r.tree_size,
            if r.sealed > 0 {
                "; the entry is encrypted and the bundle holds no key for it"
            } else {
                ""
            }
        ),
        BundleKind::Export => eprintln!(
            "{program}: OK: export of agent {}: records {}..{} ({} records, {} entries, {} checkpoints) whole and in order, signed by the agent's key (first key as given), {collector}{}{}",
            h.agent,
            r.first_seq.unwrap_or(0),
            r.last_seq.unwrap_or(0),
            r.records,
            r.entries,
            r.checkpoints,
            r.consistent_to
                .map(|n| format!("; the collector's later tree of {n} records extends it"))
                .unwrap_or_default(),
            if r.sealed > 0 {
                format!(
                    "; {} entries encrypted (give --identity to read them)",
                    r.sealed
                )
            } else {
                String::new()
            }
        ),
    }
    std::process::ExitCode::SUCCESS
}
