//! The key ledger (`keys.wlledger`, docs/FORMAT.md §2.1): what a verifier
//! needs from segments that were pruned. It holds, byte for byte, the
//! `genesis` record and every `epoch_key` record of the removed segments,
//! so that the key in force at the first kept segment can still be traced,
//! signature by signature, back to the host's first public key.
//!
//! The file is not trusted: every record in it is checked as the verifier
//! would have checked it in its segment, except its link to the chain
//! (the records around it are gone).

use crate::chain::ChainCheck;
use crate::frame::{FrameAt, begin_frame, finish_frame, frame_at};
use crate::record::{Kind, Payload, Record};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// File name of the ledger in the spool directory.
pub const LEDGER_FILE: &str = "keys.wlledger";
/// Magic and version at the start of the file.
pub const LEDGER_MAGIC: &[u8; 8] = b"WLLEDGR\0";
pub const LEDGER_VERSION: u16 = 1;
const HEADER_LEN: usize = 12;

/// Why a ledger cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{0}: not a key ledger (bad magic or version)")]
    Header(PathBuf),
    #[error("{path}: damaged frame at offset {offset}")]
    Frame { path: PathBuf, offset: usize },
}

pub fn ledger_path(dir: &Path) -> PathBuf {
    dir.join(LEDGER_FILE)
}

/// The raw records of the ledger in `dir`, or None if there is none.
pub fn load(dir: &Path) -> Result<Option<Vec<Vec<u8>>>, LedgerError> {
    let path = ledger_path(dir);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(LedgerError::Io { path, source }),
    };
    decode(&bytes, &path).map(Some)
}

fn decode(bytes: &[u8], path: &Path) -> Result<Vec<Vec<u8>>, LedgerError> {
    if bytes.len() < HEADER_LEN
        || &bytes[..8] != LEDGER_MAGIC
        || bytes[8..10] != LEDGER_VERSION.to_le_bytes()
        || bytes[10..12] != [0, 0]
    {
        return Err(LedgerError::Header(path.to_owned()));
    }
    let mut out = Vec::new();
    let mut off = HEADER_LEN;
    while off < bytes.len() {
        match frame_at(bytes, off) {
            FrameAt::Frame { start, end } => {
                out.push(bytes[start..end].to_vec());
                off = end;
            }
            _ => {
                return Err(LedgerError::Frame {
                    path: path.to_owned(),
                    offset: off,
                });
            }
        }
    }
    Ok(out)
}

/// Replaces the ledger with `records` (through a temporary file, fsynced,
/// renamed, and the directory fsynced: the old or the new ledger, never
/// half of one).
pub fn store(dir: &Path, records: &[Vec<u8>]) -> io::Result<()> {
    let mut buf =
        Vec::with_capacity(HEADER_LEN + records.iter().map(|r| r.len() + 8).sum::<usize>());
    buf.extend_from_slice(LEDGER_MAGIC);
    buf.extend_from_slice(&LEDGER_VERSION.to_le_bytes());
    buf.extend_from_slice(&0u16.to_le_bytes());
    for r in records {
        let at = begin_frame(&mut buf);
        buf.extend_from_slice(r);
        finish_frame(&mut buf, at);
    }
    let path = ledger_path(dir);
    let tmp = path.with_extension("wlledger.tmp");
    let _ = fs::remove_file(&tmp);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o640)
        .open(&tmp)?;
    f.write_all(&buf)?;
    f.sync_all()?;
    fs::rename(&tmp, &path)?;
    File::open(dir)?.sync_all()
}

/// The genesis and epoch-transition records among a segment's records.
pub fn is_ledger_kind(record: &[u8]) -> bool {
    matches!(
        crate::record::peek_kind(record).and_then(Kind::from_u8),
        Some(Kind::Genesis | Kind::EpochKey)
    )
}

/// Takes a verifier to the key in force before `first_seq` (the first record
/// kept): the genesis record gives the agent id and the first public key,
/// then each epoch transition with a `seq` below `first_seq` must follow the
/// one before it and be signed by the key it replaces. Transitions at or
/// after `first_seq` are in the kept segments and are ignored here.
pub fn apply(chain: &mut ChainCheck, records: &[Vec<u8>], first_seq: u64) -> Result<(), String> {
    let mut last_seq = None;
    for (i, bytes) in records.iter().enumerate() {
        let rec = Record::decode(bytes).map_err(|e| format!("key ledger record {i}: {e}"))?;
        if last_seq.is_some_and(|s| rec.seq <= s) {
            return Err(format!(
                "key ledger record {i}: seq {} out of order",
                rec.seq
            ));
        }
        last_seq = Some(rec.seq);
        match (&rec.payload, i) {
            (Payload::Genesis { .. }, 0) if rec.seq == 0 && rec.prev == crate::hash::ZERO32 => {
                chain
                    .check_payload(&rec, bytes)
                    .map_err(|e| format!("key ledger: {e}"))?;
            }
            (Payload::Genesis { .. }, _) => {
                return Err(
                    "key ledger: a genesis record that is not the first record, at seq 0, linking to nothing"
                        .into(),
                );
            }
            (_, 0) => return Err("key ledger: does not start with the genesis record".into()),
            (Payload::EpochKey { .. }, _) => {
                if rec.seq >= first_seq {
                    continue;
                }
                chain
                    .take_epoch_key(&rec, bytes)
                    .map_err(|e| format!("key ledger: {e}"))?;
            }
            (_, _) => {
                return Err(format!(
                    "key ledger: record {i} is a {}, not a genesis or epoch_key record",
                    rec.kind.name()
                ));
            }
        }
    }
    if records.is_empty() {
        return Err("key ledger is empty".into());
    }
    Ok(())
}
