//! The access log: the `access` lines of the collector's own chain (one
//! per call to the reading API, allowed or refused; docs/FORMAT.md §10.5),
//! read back and verified on the way — "who looked at this agent's trail,
//! and what did they ask" (`wormlog-collector access`, `GET /v1/access`).

use serde_json::Value;
use std::collections::VecDeque;
use std::path::Path;
use wormlog_spool::record::Payload;

/// Which access records to give.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub user: Option<String>,
    pub agent: Option<String>,
    /// The newest this many.
    pub limit: usize,
}

/// The prefix of an access line in the collector's own chain.
pub const PREFIX: &str = "access ";

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("{0}")]
    Verify(#[from] wormlog_spool::verify::VerifyError),
    #[error("the collector's own chain fails verification at seq {seq}: {reason}")]
    Tampered { seq: u64, reason: String },
}

/// The access records of the store's own chain that `f` selects, oldest
/// first, each with the record's `seq` and `ts`.
pub fn read(store: &Path, f: &Filter) -> Result<Vec<Value>, AuditError> {
    let mut out = VecDeque::new();
    let limit = f.limit.max(1);
    let report =
        wormlog_spool::verify::verify_spool(&store.join("log"), None, &mut |_, rec, _| {
            let Payload::Entry(e) = &rec.payload else {
                return;
            };
            let Some(json) = std::str::from_utf8(e.body)
                .ok()
                .and_then(|s| s.strip_prefix(PREFIX))
            else {
                return;
            };
            let Ok(mut v) = serde_json::from_str::<Value>(json) else {
                return;
            };
            if f.user.as_deref().is_some_and(|u| v["user"] != u)
                || f.agent
                    .as_deref()
                    .is_some_and(|a| v["agent"] != a && v["params"]["agent"] != a)
            {
                return;
            }
            v["seq"] = rec.seq.into();
            v["ts"] = wormlog_spool::clock::rfc3339(rec.ts).into();
            out.push_back(v);
            if out.len() > limit {
                out.pop_front();
            }
        })?;
    if let Some(fl) = report.failure {
        return Err(AuditError::Tampered {
            seq: fl.seq,
            reason: fl.reason,
        });
    }
    Ok(out.into())
}
