//! The daemon's control socket: a Unix stream socket (mode 0600, so the
//! agent's user and root only) that answers every connection with the
//! daemon's state as one JSON object — what `wormlog status` prints — and
//! the problems an operator must look at. A client may then send one
//! request line: `{"record": "verify", "ok": BOOL, "summary": TEXT}` (what
//! `wormlog verify --config … --record` sends) puts the result of a
//! verification into the chain — an entry of source `wormlog-verify`, or,
//! when it failed, an `alert` record.

use crate::config::Loaded;
use crate::metrics;
use serde_json::json;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A forwarding agent is behind when records wait and no receipt came for
/// this long.
pub const RECEIPT_AGE_LIMIT: Duration = Duration::from_secs(600);
/// A source is erroring when it wrote a gap record this recently.
pub const SOURCE_ERROR_WINDOW: Duration = Duration::from_secs(600);

/// What the state is judged by.
#[derive(Debug, Clone)]
pub struct Limits {
    pub agent_id: String,
    pub forwarding: bool,
    /// Percent of the disk budget at which the spool is "near full".
    pub budget_warning: u8,
}

impl Limits {
    pub fn of(cfg: &Loaded) -> Limits {
        Limits {
            agent_id: cfg.agent_id(),
            forwarding: cfg.config.forward.is_some(),
            budget_warning: cfg.config.spool.budget_warning.0,
        }
    }
}

/// Binds the socket and answers on a thread of its own; the path is
/// removed again when `ControlSocket` is dropped.
#[derive(Debug)]
pub struct ControlSocket(PathBuf);

impl Drop for ControlSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

pub fn serve(
    path: &Path,
    limits: std::sync::Arc<std::sync::Mutex<Limits>>,
    link: crate::forward::WriterLink,
) -> std::io::Result<ControlSocket> {
    crate::unix_socket::prepare(path)?;
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    let started = Instant::now();
    std::thread::Builder::new()
        .name("control".into())
        .spawn(move || {
            for conn in listener.incoming() {
                match conn {
                    Ok(mut c) => {
                        let l = limits.lock().unwrap_or_else(|p| p.into_inner()).clone();
                        let _ = c.set_write_timeout(Some(Duration::from_secs(2)));
                        let _ = writeln!(c, "{}", state(&l, started));
                        if let Some(ev) = request(&mut c) {
                            let tx = link.lock().unwrap_or_else(|p| p.into_inner()).clone();
                            let sent = tx.is_some_and(|tx| tx.send(ev).is_ok());
                            let _ = writeln!(c, "{}", json!({"recorded": sent}));
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(100)),
                }
            }
        })?;
    Ok(ControlSocket(path.to_owned()))
}

/// The request a client sent with its connection, if any (at most 64 KiB,
/// within 200 ms: a client sends it before reading the state, and one
/// that sends nothing and keeps its side open holds the socket no longer).
fn request(c: &mut std::os::unix::net::UnixStream) -> Option<crate::sources::Event> {
    use std::io::{BufRead, Read};
    let _ = c.set_read_timeout(Some(Duration::from_millis(200)));
    let mut line = String::new();
    std::io::BufReader::new(Read::take(&mut *c, 64 << 10))
        .read_line(&mut line)
        .ok()?;
    let v: serde_json::Value = serde_json::from_str(line.trim()).ok()?;
    if v["record"] != "verify" {
        return None;
    }
    let summary = v["summary"].as_str().unwrap_or("").to_owned();
    Some(if v["ok"] == true {
        let mut batch = crate::sources::EntryBatch::default();
        batch.begin(wormlog_spool::Position::None, 0);
        batch.body(summary.as_bytes());
        crate::sources::Event::Entries {
            source: "wormlog-verify".into(),
            ts: wormlog_spool::clock::wall_ns(),
            batch,
        }
    } else {
        crate::sources::Event::Alert {
            code: wormlog_spool::record::AlertCode::Other,
            detail: summary,
        }
    })
}

/// The daemon's state, and its problems.
fn state(l: &Limits, started: Instant) -> serde_json::Value {
    let m = metrics::get();
    let now = wormlog_spool::clock::wall_ns() / 1_000_000_000;
    let disk = m.spool_disk_bytes.get().max(0) as u64;
    let budget = m.spool_disk_budget_bytes.get().max(0) as u64;
    let full = m.spool_full.get() != 0;
    let lag = m.forward_lag_records.get().max(0) as u64;
    let last_receipt = m.forward_last_receipt.get();
    // A clock stepped back makes no negative age.
    let receipt_age = (last_receipt > 0).then(|| (now - last_receipt).max(0));
    let sources = m.sources.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let mut problems: Vec<String> = Vec::new();
    if full {
        problems.push(format!(
            "spool full ({disk} of {budget} bytes, or its file system below min_free): sources wait"
        ));
    } else if budget > 0 && disk * 100 >= budget * u64::from(l.budget_warning) {
        problems.push(format!(
            "spool at {}% of its disk budget",
            disk * 100 / budget
        ));
    }
    let up = started.elapsed();
    if l.forwarding && lag > 0 {
        let stale = match receipt_age {
            Some(age) => age as u64 > RECEIPT_AGE_LIMIT.as_secs(),
            None => up > RECEIPT_AGE_LIMIT,
        };
        if stale {
            problems.push(format!(
                "forwarding behind: {lag} records not acknowledged; last receipt {}",
                receipt_age.map_or("never (this run)".into(), |a| format!("{a}s ago"))
            ));
        }
    }
    for (name, s) in &sources {
        if s.state == metrics::SourceState::Failed {
            problems.push(format!("source {name} failed: {}", s.state_detail));
        }
        if s.last_gap > 0 && now - s.last_gap <= SOURCE_ERROR_WINDOW.as_secs() as i64 {
            problems.push(format!(
                "source {name}: a gap {}s ago: {}",
                now - s.last_gap,
                s.last_gap_detail
            ));
        }
    }
    json!({
        "agent_id": l.agent_id,
        "pid": std::process::id(),
        "uptime_s": up.as_secs(),
        "now": now,
        "healthy": problems.is_empty(),
        "problems": problems,
        "spool": {
            "records": m.spool_records.get(),
            "segments": m.spool_segments.get(),
            "disk_bytes": disk,
            "disk_budget_bytes": budget,
            "full": full,
        },
        "chain": {
            "checkpoints": m.chain_checkpoints.get(),
            "epoch": m.chain_epoch.get(),
        },
        "forward": {
            "configured": l.forwarding,
            "acknowledged_seq": m.forward_acknowledged_seq.get(),
            "lag_records": lag,
            "last_receipt_age_s": receipt_age,
            "records_sent": m.forward_records.get(),
            "retries": m.forward_retries.get(),
        },
        "sources": sources,
    })
}
