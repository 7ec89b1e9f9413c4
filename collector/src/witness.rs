//! Cross-witnessing between collectors of one bucket (README
//! "Cross-witnessing"): each collector publishes its newest countersigned
//! checkpoint of an agent as a signed note at `checkpoints/<agent>/<id>` in
//! the heads bucket. When it publishes its own, it reads the other
//! collectors' notes (`[store] peers`: their verifier keys), and for each
//! one whose signature holds it compares the checkpoint with the chain it
//! verified itself — the root it countersigned at that tree size:
//!
//! - the same: it adds its own signature and publishes the cosigned note
//!   at `cosigned/<agent>/<peer>-by-<id>` (two collectors' signatures over
//!   one checkpoint text: what both saw);
//! - different, or a size its chain passed without such a checkpoint: the
//!   peer published a history the agent's chain does not hold — an alert
//!   record in the own chain, an error line and
//!   `witness_conflicts_total{agent,peer}`;
//! - beyond what it has verified: left for a later round.

use crate::note;
use crate::server::App;
use base64::Engine;

/// What a peer's note was found to be.
#[derive(Debug, PartialEq, Eq)]
pub enum Seen {
    /// Consistent: cosigned at this tree size.
    Cosigned(u64),
    /// Not in the chain this collector verified.
    Conflict(String),
    /// Beyond this collector's copy, or not signed by a known peer.
    Skipped,
}

/// The tree size and root a note's text names (`origin`, size, root).
fn parse(text: &str) -> Option<(String, u64, [u8; 32])> {
    let mut l = text.lines();
    let origin = l.next()?.to_owned();
    let size = l.next()?.parse().ok()?;
    let root = base64::engine::general_purpose::STANDARD
        .decode(l.next()?)
        .ok()?
        .try_into()
        .ok()?;
    Some((origin, size, root))
}

/// At most one round per agent this often (a round is 2 + 2 × peers
/// requests; checkpoints come every few seconds).
pub const EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// Whether a round for `agent` is due now (and if so, it is counted as
/// started).
fn due(agent: &str) -> bool {
    use std::collections::HashMap;
    use std::sync::Mutex;
    use std::time::Instant;
    static LAST: Mutex<Option<HashMap<String, Instant>>> = Mutex::new(None);
    let mut last = LAST.lock().unwrap_or_else(|p| p.into_inner());
    let map = last.get_or_insert_with(HashMap::new);
    match map.get(agent) {
        Some(t) if t.elapsed() < EVERY => false,
        _ => {
            map.insert(agent.to_owned(), Instant::now());
            true
        }
    }
}

/// Checks the other collectors' notes of `agent` against this collector's
/// receipts, cosigns the consistent ones and reports the others, at most
/// every [`EVERY`]. Runs off the request path (a blocking thread).
pub fn run(app: &App, agent: &str) -> Vec<(String, Seen)> {
    let Some(remote) = &app.remote else {
        return Vec::new();
    };
    if app.config.peers.is_empty() || !due(agent) {
        return Vec::new();
    }
    let prefix = format!("{}checkpoints/{agent}/", remote.s3.prefix);
    let keys = match remote.s3.list(true, &prefix, None, 1000) {
        Ok(k) => k,
        Err(e) => {
            tracing::warn!("witness: {prefix}: {e}");
            return Vec::new();
        }
    };
    let receipts = match crate::receipts::ReceiptLog::open(
        &app.config
            .store_dir
            .join("agents")
            .join(agent)
            .join("receipts"),
        &app.signer.collector_id,
        app.signer.pubkey(),
    ) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!("witness: agent {agent}: receipts: {e}");
            return Vec::new();
        }
    };
    let newest = receipts.last_tree_size().ok().flatten().unwrap_or(0);
    let mut out = Vec::new();
    for key in keys {
        let Some(peer) = key.strip_prefix(&prefix) else {
            continue;
        };
        if peer == app.config.id {
            continue;
        }
        let Ok(Some(bytes)) = remote.s3.get_head(&key) else {
            continue;
        };
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let opened = app
            .config
            .peers
            .iter()
            .find_map(|v| note::open(&text, v).ok());
        let seen = match opened.as_deref().and_then(parse) {
            None => Seen::Skipped,
            Some((origin, _, _)) if origin != format!("{}/{agent}", app.notes.origin) => {
                Seen::Conflict(format!("a note of origin {origin:?}"))
            }
            Some((_, size, _)) if size > newest => Seen::Skipped,
            Some((_, size, root)) => match receipts.for_range(size, size + 1) {
                Ok(r) if r.first().is_some_and(|r| r.root == root) => {
                    let cosigned = app.notes.cosign(&text);
                    let to = format!(
                        "{}cosigned/{agent}/{peer}-by-{}",
                        remote.s3.prefix, app.config.id
                    );
                    match remote.s3.put_head(&to, cosigned.as_bytes()) {
                        Ok(()) => Seen::Cosigned(size),
                        Err(e) => {
                            tracing::warn!("witness: {to}: {e}");
                            Seen::Skipped
                        }
                    }
                }
                Ok(r) => Seen::Conflict(match r.first() {
                    Some(mine) => format!(
                        "tree size {size} with root {}, where the chain holds {}",
                        wormlog_spool::hash::hex(&root),
                        wormlog_spool::hash::hex(&mine.root)
                    ),
                    None => format!("tree size {size}, which the chain has no checkpoint of"),
                }),
                Err(e) => {
                    tracing::warn!("witness: agent {agent}: receipts: {e}");
                    Seen::Skipped
                }
            },
        };
        if let Seen::Conflict(why) = &seen {
            let msg = format!(
                "witness: collector {peer} published a checkpoint of agent {agent} that is not in the chain: {why}"
            );
            app.alert_limited(
                &format!("witness/{agent}/{peer}"),
                wormlog_spool::record::AlertCode::Other,
                &msg,
            );
            crate::metrics::witness_conflict(agent, peer);
        }
        out.push((peer.to_owned(), seen));
    }
    out
}
