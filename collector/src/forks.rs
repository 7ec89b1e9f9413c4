//! Evidence of proven forks: when an agent's own signature proves that it
//! rewrote history the collector already holds, the batch it sent — the
//! differing records and the checkpoint that proves them — is kept byte for
//! byte beside the store, write-once, in
//! `<store>/forks/<agent>/<seq>-<time>/`:
//!
//! * `batch.bin`: the torn region sent with the batch (if any) and then its
//!   frames, exactly as received;
//! * `fork.json`: what the collector knew — the agent, the first differing
//!   record, the proving checkpoint, when and from whom, and the SHA-256 of
//!   `batch.bin`.
//!
//! `wormlog-collector forks` lists them and prints the differing records.

use crate::server::Peer;
use crate::server::limits::ClientKey;
use crate::store::Proof;
use serde_json::{Value, json};
use sha2::Digest as _;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use wormlog_spool::frame::{FrameAt, frame_at};
use wormlog_spool::hash::{hex, sha256};
use wormlog_spool::record::{AppendOnly, Record};

/// Who sent a batch: its client certificate or its address.
#[derive(Debug, Clone)]
pub struct Sender(pub String);

impl Sender {
    pub fn of(peer: &Peer) -> Sender {
        Sender(match &peer.client {
            ClientKey::Cert(h) => format!("client certificate sha256:{}", hex(h)),
            ClientKey::Addr(a) => format!("address {a} (no client certificate)"),
        })
    }
}

/// A proven fork, as it is kept.
#[derive(Debug)]
pub struct Evidence<'a> {
    pub agent: &'a str,
    pub batch_seq: u64,
    pub expected_seq: u64,
    pub torn: &'a [u8],
    pub frames: &'a [u8],
    pub proof: &'a Proof,
    pub from: &'a Sender,
}

/// Proven forks kept per agent: an agent (or whoever holds its key) that
/// sends fork after fork cannot fill the disk with them.
pub const KEPT_PER_AGENT: usize = 64;

/// What became of a proven fork's evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kept {
    /// Written to this directory.
    New(PathBuf),
    /// The same batch (by SHA-256) was kept before, in this directory.
    Already(PathBuf),
    /// Not kept: [`KEPT_PER_AGENT`] forks of this agent are kept already.
    Full,
    /// Not kept: writing it failed (the fork is declared all the same).
    Failed(String),
}

/// The kept fork of agent `agent` whose batch is exactly `torn` then
/// `frames`, if there is one.
pub fn kept_before(
    root: &Path,
    agent: &str,
    torn: &[u8],
    frames: &[u8],
) -> io::Result<Option<Kept>> {
    let agent_dir = root.join("forks").join(agent);
    if !agent_dir.is_dir() {
        return Ok(None);
    }
    let mut h = sha2::Sha256::new();
    h.update(torn);
    h.update(frames);
    let sum: [u8; 32] = h.finalize().into();
    let digest = hex(&sum);
    for entry in std::fs::read_dir(&agent_dir)? {
        let dir = entry?.path();
        let meta: Option<Value> = std::fs::read(dir.join("fork.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        if meta.is_some_and(|m| m["batch_sha256"].as_str() == Some(digest.as_str())) {
            return Ok(Some(Kept::Already(dir)));
        }
    }
    Ok(None)
}

/// Keeps `e` under `<root>/forks` (once per distinct batch).
pub fn keep(root: &Path, e: &Evidence<'_>, append_only: AppendOnly) -> io::Result<Kept> {
    let now = wormlog_spool::clock::wall_ns();
    let agent_dir = root.join("forks").join(e.agent);
    std::fs::create_dir_all(&agent_dir)?;
    let mut bytes = Vec::with_capacity(e.torn.len() + e.frames.len());
    bytes.extend_from_slice(e.torn);
    bytes.extend_from_slice(e.frames);
    let digest = hex(&sha256(&bytes));
    let mut count = 0;
    for entry in std::fs::read_dir(&agent_dir)? {
        let dir = entry?.path();
        count += 1;
        let meta: Option<Value> = std::fs::read(dir.join("fork.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        if meta.is_some_and(|m| m["batch_sha256"].as_str() == Some(digest.as_str())) {
            return Ok(Kept::Already(dir));
        }
    }
    if count >= KEPT_PER_AGENT {
        return Ok(Kept::Full);
    }
    let dir = agent_dir.join(format!("{:020}-{now}", e.proof.at));
    std::fs::create_dir(&dir)?;
    let meta = json!({
        "agent": e.agent,
        "first_differing_seq": e.proof.at,
        "batch_seq": e.batch_seq,
        "stored_next_seq": e.expected_seq,
        "torn_len": e.torn.len(),
        "batch_len": bytes.len(),
        "batch_sha256": digest,
        "proving_checkpoint": {
            "seq": e.proof.checkpoint_seq,
            "tree_size": e.proof.tree_size,
            "root": hex(&e.proof.root),
        },
        "received_ns": now,
        "from": e.from.0,
    });
    let mut text = serde_json::to_string_pretty(&meta).expect("json");
    text.push('\n');
    for (name, data) in [("batch.bin", &bytes[..]), ("fork.json", text.as_bytes())] {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(dir.join(name))?;
        f.write_all(data)?;
        f.sync_all()?;
        if append_only != AppendOnly::Off {
            let r = wormlog_spool::worm::set_immutable(&f);
            if append_only == AppendOnly::Require {
                r?;
            }
        }
    }
    for d in [&dir, &agent_dir, &root.join("forks")] {
        File::open(d)?.sync_all()?;
    }
    Ok(Kept::New(dir))
}

/// A kept fork, read back.
#[derive(Debug)]
pub struct Fork {
    pub dir: PathBuf,
    pub meta: Value,
    /// Whether `batch.bin` still has the SHA-256 `fork.json` names.
    pub intact: bool,
    pub batch: Vec<u8>,
}

/// The forks kept in store `root` (of agent `only`), oldest first per agent.
pub fn list(root: &Path, only: Option<&str>) -> anyhow::Result<Vec<Fork>> {
    let base = root.join("forks");
    let mut out = Vec::new();
    let agents = match std::fs::read_dir(&base) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if !root.join("agents").is_dir() {
                anyhow::bail!("{}: not a collector store", root.display());
            }
            return Ok(out);
        }
        Err(e) => anyhow::bail!("{}: {e}", base.display()),
    };
    let mut agent_dirs: Vec<PathBuf> = agents.filter_map(|e| e.ok()).map(|e| e.path()).collect();
    agent_dirs.sort();
    for a in agent_dirs {
        if only.is_some_and(|o| a.file_name().is_none_or(|n| n != o)) {
            continue;
        }
        let mut forks: Vec<PathBuf> = std::fs::read_dir(&a)?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .collect();
        forks.sort();
        for dir in forks {
            let meta: Value = serde_json::from_slice(&std::fs::read(dir.join("fork.json"))?)?;
            let batch = std::fs::read(dir.join("batch.bin"))?;
            let intact = meta["batch_sha256"].as_str() == Some(hex(&sha256(&batch)).as_str());
            out.push(Fork {
                dir,
                meta,
                intact,
                batch,
            });
        }
    }
    Ok(out)
}

impl Fork {
    /// The agent's records from the first differing one on, rendered
    /// safely (as `wormlog cat` does).
    fn records(&self) -> Vec<String> {
        let torn = self.meta["torn_len"].as_u64().unwrap_or(0) as usize;
        let from = self.meta["first_differing_seq"].as_u64().unwrap_or(0);
        let mut out = Vec::new();
        let mut off = torn.min(self.batch.len());
        while let FrameAt::Frame { start, end } = frame_at(&self.batch, off) {
            if let Ok(r) = Record::decode(&self.batch[start..end])
                && r.seq >= from
            {
                out.push(wormlog_text::render::record_line(&r));
            }
            off = end;
        }
        out
    }

    pub fn to_json(&self) -> Value {
        let mut v = self.meta.clone();
        v["evidence"] = json!(self.dir.display().to_string());
        v["intact"] = json!(self.intact);
        v["records"] = json!(self.records());
        v
    }

    pub fn print(&self, out: &mut impl Write) -> io::Result<()> {
        let m = &self.meta;
        writeln!(
            out,
            "FORK of agent {} at seq {} (the collector held up to {}), proven by the agent's checkpoint {} over {} records, root {}",
            m["agent"].as_str().unwrap_or("?"),
            m["first_differing_seq"],
            m["stored_next_seq"],
            m["proving_checkpoint"]["seq"],
            m["proving_checkpoint"]["tree_size"],
            m["proving_checkpoint"]["root"].as_str().unwrap_or("?"),
        )?;
        writeln!(
            out,
            "  received {} ns since the epoch from {}; evidence {} ({})",
            m["received_ns"],
            m["from"].as_str().unwrap_or("?"),
            self.dir.display(),
            if self.intact {
                "intact"
            } else {
                "DAMAGED: batch.bin does not match its SHA-256"
            }
        )?;
        for r in self.records() {
            writeln!(out, "  {r}")?;
        }
        Ok(())
    }
}
