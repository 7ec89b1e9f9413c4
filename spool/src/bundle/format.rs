//! The lines of a bundle (docs/FORMAT.md §12): a header object, then one
//! JSON object per line, each with exactly one key naming what it holds.
//! Records travel as standard base64 of their bytes, hashes as lowercase
//! hex, keys as `ed25519:<base64>`.

use crate::chain::Receipt;
use crate::hash::{Hash, hex, parse_hex32};
use crate::keys::{format_pubkey, parse_pubkey};
use base64::Engine;
use serde::{Deserialize, Serialize};

/// The version this code writes and reads.
pub const BUNDLE_VERSION: u32 = 1;

/// What a bundle proves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BundleKind {
    /// A range of records, whole, between two signed checkpoints.
    Export,
    /// One entry, its inclusion proof and the checkpoint it leads to.
    Disclosure,
}

/// The first line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    pub wormlog_bundle: u32,
    pub kind: BundleKind,
    pub agent: String,
    /// The collector that made it (not trusted: receipts are checked
    /// against the key the investigator was given).
    pub collector_id: String,
    pub collector_pubkey: String,
    /// RFC 3339, UTC: when it was made.
    pub created: String,
    /// What was asked for: the first and last seq (export), or the entry's
    /// seq twice (disclosure).
    pub from_seq: u64,
    pub to_seq: u64,
}

/// A collector's countersignature, as a bundle carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiptLine {
    pub collector_id: String,
    pub collector_pubkey: String,
    pub tree_size: u64,
    pub root: String,
    pub collector_ts: i64,
    pub signature: String,
}

impl ReceiptLine {
    pub fn from_receipt(r: &Receipt) -> ReceiptLine {
        ReceiptLine {
            collector_id: r.collector_id.clone(),
            collector_pubkey: format_pubkey(&r.collector_pubkey),
            tree_size: r.tree_size,
            root: hex(&r.root),
            collector_ts: r.collector_ts,
            signature: hex(&r.signature),
        }
    }

    pub fn to_receipt(&self) -> Result<Receipt, String> {
        let sig = parse_hex(&self.signature)?;
        Ok(Receipt {
            collector_id: self.collector_id.clone(),
            collector_pubkey: parse_pubkey(&self.collector_pubkey).map_err(|e| e.to_string())?,
            tree_size: self.tree_size,
            root: hash(&self.root)?,
            collector_ts: self.collector_ts,
            signature: sig
                .try_into()
                .map_err(|_| "a signature is not 64 bytes".to_string())?,
        })
    }
}

/// One line after the header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Line {
    /// A record of the key ledger: the genesis record, then every
    /// `epoch_key` record before the first record the bundle proves.
    Ledger { record: String },
    /// Export: a record of the range, in seq order.
    Record { record: String },
    /// Export: the `data_key` record of the segment the range starts in,
    /// when it lies before the range, with its inclusion proof in the tree
    /// of the range's first checkpoint.
    DataKey {
        record: String,
        tree_size: u64,
        proof: Vec<String>,
    },
    /// Disclosure: the entry, and its own key when it is sealed.
    Entry {
        record: String,
        entry_key: Option<String>,
    },
    /// Disclosure: the checkpoint whose tree holds the entry, and the
    /// entry's inclusion proof in it.
    Checkpoint { record: String, proof: Vec<String> },
    /// The collector's countersignature of a checkpoint in the bundle.
    Receipt(ReceiptLine),
    /// Export: the last checkpoint's tree is a prefix of the tree the
    /// collector countersigned later.
    Consistency {
        from_size: u64,
        proof: Vec<String>,
        receipt: ReceiptLine,
    },
    /// The last line: the collector's signature over every byte before
    /// this line (context `wormlog bundle v1`), with its receipt key.
    Signature {
        collector_pubkey: String,
        signature: String,
    },
}

pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A record's bytes from their base64 (no longer than a frame allows).
pub fn unb64(s: &str) -> Result<Vec<u8>, String> {
    if s.len() / 4 * 3 > crate::frame::MAX_RECORD_LEN + 3 {
        return Err("a record longer than a frame allows".into());
    }
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .map_err(|e| format!("not base64: {e}"))
}

pub fn hashes(h: &[Hash]) -> Vec<String> {
    h.iter().map(|h| hex(h)).collect()
}

/// 64 lowercase hex digits (one spelling per hash: an upper-case digit is
/// a changed byte, refused).
pub fn hash(s: &str) -> Result<Hash, String> {
    parse_hex(s)
        .ok()
        .and_then(|_| parse_hex32(s))
        .ok_or_else(|| format!("{s:?} is not 64 lowercase hex digits"))
}

pub fn parse_hashes(v: &[String]) -> Result<Vec<Hash>, String> {
    v.iter().map(|s| hash(s)).collect()
}

pub fn parse_hex(s: &str) -> Result<Vec<u8>, String> {
    if !s.len().is_multiple_of(2)
        || !s
            .bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
    {
        return Err(format!("{s:?} is not lowercase hex"));
    }
    Ok((0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("checked"))
        .collect())
}

/// Writes one line (the header or a [`Line`]) and its newline.
pub fn write_line<T: Serialize>(out: &mut dyn std::io::Write, v: &T) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, v)?;
    out.write_all(b"\n")
}
