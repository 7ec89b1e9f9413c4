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

/// The SHA-256 of a batch (its torn part, then its frames), in hex.
fn batch_digest(torn: &[u8], frames: &[u8]) -> String {
    let mut h = sha2::Sha256::new();
    h.update(torn);
    h.update(frames);
    let sum: [u8; 32] = h.finalize().into();
    hex(&sum)
}

/// The kept evidence of one agent: the directory that holds the batch of
/// SHA-256 `digest`, if any, and how many are kept. Directories still
/// being written (`.tmp-…`, left by a crash) are removed, not counted.
fn find(agent_dir: &Path, digest: &str) -> io::Result<(Option<PathBuf>, usize)> {
    let mut count = 0;
    for entry in std::fs::read_dir(agent_dir)? {
        let dir = entry?.path();
        if dir
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with(TMP_PREFIX))
        {
            let _ = std::fs::remove_dir_all(&dir);
            continue;
        }
        count += 1;
        let meta: Option<Value> = std::fs::read(dir.join("fork.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        if meta.is_some_and(|m| m["batch_sha256"].as_str() == Some(digest)) {
            return Ok((Some(dir), count));
        }
    }
    Ok((None, count))
}

/// Evidence is written under this prefix, then renamed into place.
const TMP_PREFIX: &str = ".tmp-";

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
    let (found, _) = find(&agent_dir, &batch_digest(torn, frames))?;
    Ok(found.map(Kept::Already))
}

/// Keeps `e` under `<root>/forks` (once per distinct batch). The evidence
/// is written into a directory of its own under a temporary name, made
/// durable, renamed into place, and only then made immutable: a crash
/// leaves either whole evidence or a temporary directory that the next
/// fork removes.
pub fn keep(root: &Path, e: &Evidence<'_>, append_only: AppendOnly) -> io::Result<Kept> {
    let now = wormlog_spool::clock::wall_ns();
    let agent_dir = root.join("forks").join(e.agent);
    std::fs::create_dir_all(&agent_dir)?;
    let digest = batch_digest(e.torn, e.frames);
    match find(&agent_dir, &digest)? {
        (Some(dir), _) => return Ok(Kept::Already(dir)),
        (None, count) if count >= KEPT_PER_AGENT => return Ok(Kept::Full),
        _ => {}
    }
    let name = format!("{:020}-{now}", e.proof.at);
    let tmp = agent_dir.join(format!("{TMP_PREFIX}{name}"));
    std::fs::create_dir(&tmp)?;
    let meta = json!({
        "agent": e.agent,
        "first_differing_seq": e.proof.at,
        "batch_seq": e.batch_seq,
        "stored_next_seq": e.expected_seq,
        "torn_len": e.torn.len(),
        "batch_len": e.torn.len() + e.frames.len(),
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
    let files: [(&str, &[&[u8]]); 2] = [
        ("batch.bin", &[e.torn, e.frames]),
        ("fork.json", &[text.as_bytes()]),
    ];
    for (name, parts) in files {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(tmp.join(name))?;
        for part in parts {
            f.write_all(part)?;
        }
        f.sync_all()?;
    }
    File::open(&tmp)?.sync_all()?;
    let dir = agent_dir.join(name);
    std::fs::rename(&tmp, &dir)?;
    for d in [&agent_dir, &root.join("forks")] {
        File::open(d)?.sync_all()?;
    }
    if append_only != AppendOnly::Off {
        for (name, _) in files {
            let r = File::open(dir.join(name)).and_then(|f| wormlog_spool::worm::set_immutable(&f));
            if append_only == AppendOnly::Require {
                r?;
            }
        }
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
            if dir
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(TMP_PREFIX))
            {
                continue; // being written, or left by a crash
            }
            out.push(Fork::read(dir));
        }
    }
    Ok(out)
}

impl Fork {
    /// Reads kept evidence; what cannot be read is shown as damaged, never
    /// hides the rest.
    fn read(dir: PathBuf) -> Fork {
        let meta = std::fs::read(dir.join("fork.json"))
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice::<Value>(&b).map_err(|e| e.to_string()));
        let batch = std::fs::read(dir.join("batch.bin"));
        match (meta, batch) {
            (Ok(meta), Ok(batch)) => {
                let intact = meta["batch_sha256"].as_str() == Some(hex(&sha256(&batch)).as_str());
                Fork {
                    dir,
                    meta,
                    intact,
                    batch,
                }
            }
            (meta, batch) => {
                let why = [meta.err(), batch.err().map(|e| e.to_string())]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join("; ");
                let agent = dir
                    .parent()
                    .and_then(|a| a.file_name())
                    .map(|a| a.to_string_lossy().into_owned());
                Fork {
                    meta: json!({"agent": agent, "unreadable": why}),
                    dir,
                    intact: false,
                    batch: Vec::new(),
                }
            }
        }
    }

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
        if let Some(why) = m["unreadable"].as_str() {
            return writeln!(
                out,
                "FORK evidence of agent {} in {} is DAMAGED: {why}",
                m["agent"].as_str().unwrap_or("?"),
                self.dir.display()
            );
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn evidence<'a>(frames: &'a [u8], proof: &'a Proof, from: &'a Sender) -> Evidence<'a> {
        Evidence {
            agent: "web-01",
            batch_seq: 7,
            expected_seq: 9,
            torn: b"",
            frames,
            proof,
            from,
        }
    }

    #[test]
    fn evidence_is_kept_whole_once_and_damage_hides_nothing() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        std::fs::create_dir_all(root.join("agents")).unwrap();
        let proof = Proof {
            at: 8,
            checkpoint_seq: 12,
            tree_size: 12,
            root: [7; 32],
        };
        let from = Sender("a test".into());
        // A directory a crash left half-written.
        let agent_dir = root.join("forks/web-01");
        std::fs::create_dir_all(agent_dir.join(".tmp-00000000000000000001-1")).unwrap();
        let first = keep(
            root,
            &evidence(b"batch one", &proof, &from),
            AppendOnly::Off,
        )
        .unwrap();
        let Kept::New(dir) = first else {
            panic!("{first:?}")
        };
        assert!(!agent_dir.join(".tmp-00000000000000000001-1").exists());
        assert!(matches!(
            keep(root, &evidence(b"batch one", &proof, &from), AppendOnly::Off).unwrap(),
            Kept::Already(d) if d == dir
        ));
        assert!(matches!(
            kept_before(root, "web-01", b"", b"batch one").unwrap(),
            Some(Kept::Already(d)) if d == dir
        ));
        keep(
            root,
            &evidence(b"batch two", &proof, &from),
            AppendOnly::Off,
        )
        .unwrap();
        // One piece of evidence damaged: listed as such, the other intact.
        std::fs::remove_file(dir.join("fork.json")).unwrap();
        let forks = list(root, None).unwrap();
        assert_eq!(forks.len(), 2);
        assert_eq!(forks.iter().filter(|f| f.intact).count(), 1);
        let damaged = forks.iter().find(|f| !f.intact).unwrap();
        let mut out = Vec::new();
        damaged.print(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("DAMAGED"), "{text}");
    }
}
