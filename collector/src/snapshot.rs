//! `state.json`: where an agent's follower stood after the last batch, so a
//! restart does not re-verify the whole store. Written after every batch
//! (tmp + rename, not synced): a stale or missing snapshot is noticed (it
//! does not match the last segment's length) and the store is verified from
//! the start instead.

use serde::{Deserialize, Serialize};
use std::path::Path;
use wormlog_spool::chain::ChainCheck;
use wormlog_spool::follow::{Follower, SegmentCursor};
use wormlog_spool::hash::{hex, parse_hex32};
use wormlog_spool::merkle::Frontier;

#[derive(Serialize, Deserialize)]
struct State {
    agent_id: String,
    first_pubkey: String,
    next_seq: u64,
    head: String,
    frontier: Vec<String>,
    epoch: u64,
    key: String,
    segment: u64,
    segment_len: u64,
    segment_records: u64,
    anchored: bool,
    sealed: bool,
    /// The segment's anchor index and whether it has a data key (absent
    /// in snapshots written before encryption at rest: none).
    #[serde(default)]
    anchor_at: Option<u64>,
    #[serde(default)]
    data_key: bool,
}

pub fn write(dir: &Path, f: &Follower) -> std::io::Result<()> {
    let c = &f.chain;
    let s = State {
        agent_id: c.agent_id.clone().unwrap_or_default(),
        first_pubkey: hex(&c.first_pubkey.unwrap_or_default()),
        next_seq: c.next_seq,
        head: hex(&c.head),
        frontier: c.frontier.nodes().iter().map(|n| hex(n)).collect(),
        epoch: c.epoch,
        key: hex(&c.key.unwrap_or_default()),
        segment: f.cursor.no,
        segment_len: f.cursor.len,
        segment_records: f.cursor.records,
        anchored: f.cursor.anchored,
        sealed: f.cursor.sealed,
        anchor_at: f.cursor.keys.anchor_at,
        data_key: f.cursor.keys.data_key,
    };
    let tmp = dir.join("state.json.tmp");
    std::fs::write(&tmp, serde_json::to_vec(&s).map_err(std::io::Error::other)?)?;
    std::fs::rename(tmp, dir.join("state.json"))
}

/// The snapshot, if present and about this agent and key.
/// The next sequence number the snapshot in `dir` records (None: none).
pub fn next_seq(dir: &Path) -> Option<u64> {
    let s: State = serde_json::from_slice(&std::fs::read(dir.join("state.json")).ok()?).ok()?;
    Some(s.next_seq)
}

pub fn read(dir: &Path, agent_id: &str, first_pubkey: [u8; 32]) -> Option<Follower> {
    let s: State = serde_json::from_slice(&std::fs::read(dir.join("state.json")).ok()?).ok()?;
    if s.agent_id != agent_id || parse_hex32(&s.first_pubkey)? != first_pubkey {
        return None;
    }
    let nodes = s
        .frontier
        .iter()
        .map(|n| parse_hex32(n))
        .collect::<Option<Vec<_>>>()?;
    let mut chain = ChainCheck::resume(
        s.agent_id,
        first_pubkey,
        s.next_seq,
        parse_hex32(&s.head)?,
        Frontier::from_parts(s.next_seq, nodes)?,
        s.epoch,
        parse_hex32(&s.key)?,
    )
    .with_root_window(4096);
    chain.key_authenticated = true;
    // As in Follower::from_report: no roots before the resume point.
    chain.pruned_below = chain.pruned_below.max(chain.next_seq);
    Some(Follower {
        chain,
        cursor: SegmentCursor {
            no: s.segment,
            len: s.segment_len,
            records: s.segment_records,
            anchored: s.anchored,
            sealed: s.sealed,
            keys: wormlog_spool::structure::KeyPlace {
                anchor_at: s.anchor_at,
                data_key: s.data_key,
            },
        },
    })
}
