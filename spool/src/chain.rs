//! The checks that make a record a continuation of its chain
//! (docs/FORMAT.md §7): sequence, link, genesis, checkpoint and epoch
//! signatures, receipts, payload values. Shared by the offline verifier
//! ([`crate::verify`]) and the collector's incremental follower
//! ([`crate::follow`]), so the rules exist once. Segment structure (where
//! anchors, seals and recovery records may stand) is [`crate::structure`].

use crate::codec::put_bytes8;
use crate::hash::{Hash, ZERO32};
use crate::keys::{CHECKPOINT_CONTEXT, EPOCH_KEY_CONTEXT, RECEIPT_CONTEXT, verify_signature};
use crate::merkle::Frontier;
use crate::record::{Kind, Payload, Record, SIGNATURE_LEN};
use std::collections::BTreeMap;

/// Highest alert code a version-1 record may carry.
pub const MAX_ALERT_CODE: u16 = 6;

/// The state a verifier keeps between records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainCheck {
    /// The first public key given by the caller (None: take the genesis key).
    pub trusted: Option<[u8; 32]>,
    pub key_authenticated: bool,
    pub next_seq: u64,
    pub head: Hash,
    pub frontier: Frontier,
    pub epoch: u64,
    /// The public key of the current epoch.
    pub key: Option<[u8; 32]>,
    pub first_pubkey: Option<[u8; 32]>,
    pub agent_id: Option<String>,
    /// Checkpoint roots by tree size, for receipts.
    roots: BTreeMap<u64, Hash>,
    /// Keep at most this many roots (None: all).
    max_roots: Option<usize>,
    /// Receipts signed by this key are accepted without the checkpoint root
    /// when it has left the window (the signer checked it when it signed).
    pub own_receipt_key: Option<[u8; 32]>,
    /// The same for these keys: the other collectors of a shared store,
    /// which check what they sign as this one does.
    pub peer_receipt_keys: Vec<[u8; 32]>,
    /// Records below this seq were pruned: a receipt for one of their
    /// checkpoints is checked by its signature only (its root is gone).
    pub pruned_below: u64,
}

impl ChainCheck {
    /// A verifier at the start of a log.
    pub fn new(trusted: Option<[u8; 32]>) -> Self {
        ChainCheck {
            trusted,
            key_authenticated: false,
            next_seq: 0,
            head: ZERO32,
            frontier: Frontier::new(),
            epoch: 0,
            key: None,
            first_pubkey: None,
            agent_id: None,
            roots: BTreeMap::new(),
            max_roots: None,
            own_receipt_key: None,
            peer_receipt_keys: Vec::new(),
            pruned_below: 0,
        }
    }

    /// Keeps only the newest `n` checkpoint roots (a long-running follower).
    pub fn with_root_window(mut self, n: usize) -> Self {
        self.max_roots = Some(n.max(1));
        self
    }

    /// Resumes at a checkpoint the caller trusts (e.g. its own snapshot).
    #[allow(clippy::too_many_arguments)]
    pub fn resume(
        agent_id: String,
        first_pubkey: [u8; 32],
        next_seq: u64,
        head: Hash,
        frontier: Frontier,
        epoch: u64,
        key: [u8; 32],
    ) -> Self {
        let mut c = ChainCheck::new(Some(first_pubkey));
        c.key_authenticated = true;
        c.first_pubkey = Some(first_pubkey);
        c.agent_id = Some(agent_id);
        c.next_seq = next_seq;
        c.head = head;
        c.frontier = frontier;
        c.epoch = epoch;
        c.key = Some(key);
        c
    }

    /// Sequence number, link to the record before, genesis position.
    pub fn check_link(&self, rec: &Record<'_>) -> Result<(), String> {
        if rec.seq != self.next_seq {
            return Err(format!(
                "record has seq {}, expected {} (records removed, duplicated or reordered)",
                rec.seq, self.next_seq
            ));
        }
        if rec.prev != self.head {
            return Err("record does not link to the one before it (prev hash mismatch: the record before it was altered, or records were removed, inserted or reordered)".into());
        }
        if (rec.seq == 0) != (rec.kind == Kind::Genesis) {
            return Err("the first record must be the genesis record, and only it".into());
        }
        Ok(())
    }

    /// The payload's own rules and signatures. `bytes` is the whole record.
    /// Changes the key state for genesis and epoch transitions; the caller
    /// then calls [`ChainCheck::advance`].
    pub fn check_payload(&mut self, rec: &Record<'_>, bytes: &[u8]) -> Result<(), String> {
        let signed = &bytes[..bytes.len().saturating_sub(SIGNATURE_LEN)];
        match &rec.payload {
            Payload::Genesis {
                agent_id,
                first_pubkey,
            } => {
                if Some(*agent_id) != self.agent_id.as_deref() {
                    return Err("genesis agent id differs from the segment header".into());
                }
                if let Some(t) = self.trusted {
                    if t != *first_pubkey {
                        return Err(
                            "the spool's first public key is not the one given (--pubkey)".into(),
                        );
                    }
                    self.key_authenticated = true;
                }
                self.key = Some(*first_pubkey);
                self.first_pubkey = Some(*first_pubkey);
            }
            Payload::Entry(e) => {
                if e.source.is_empty() {
                    return Err("entry with an empty source name".into());
                }
            }
            Payload::Checkpoint(cp) => {
                if cp.epoch != self.epoch {
                    return Err(format!(
                        "checkpoint claims epoch {}, the log is in epoch {}",
                        cp.epoch, self.epoch
                    ));
                }
                if cp.tree_size != rec.seq {
                    return Err(format!(
                        "checkpoint tree size {} is not its seq {}",
                        cp.tree_size, rec.seq
                    ));
                }
                if cp.head != self.head {
                    return Err("checkpoint chain head does not match the records before it (a record was altered)".into());
                }
                if cp.root != self.frontier.root() {
                    return Err("checkpoint Merkle root does not match the records before it (a record was altered)".into());
                }
                if cp.frontier.as_slice() != self.frontier.nodes() {
                    return Err("checkpoint frontier does not match the tree".into());
                }
                let key = self.key.ok_or("no key in force")?;
                if !verify_signature(&key, CHECKPOINT_CONTEXT, signed, &cp.signature) {
                    return Err(format!(
                        "checkpoint signature is not valid under the key of epoch {}",
                        self.epoch
                    ));
                }
                self.roots.insert(cp.tree_size, cp.root);
                if let Some(max) = self.max_roots {
                    while self.roots.len() > max {
                        self.roots.pop_first();
                    }
                }
            }
            Payload::EpochKey {
                tree_size, head, ..
            } => {
                if *tree_size != rec.seq || *head != self.head {
                    return Err("epoch transition does not name the chain before it".into());
                }
                self.take_epoch_key(rec, bytes)?;
            }
            Payload::Start {
                append_only,
                append_only_active,
                ..
            } => {
                if *append_only > 2 || *append_only_active > 1 {
                    return Err("start record with an invalid append-only value".into());
                }
            }
            Payload::Gap { reason, .. } => {
                if crate::record::GapReason::from_u16(*reason).is_none() {
                    return Err(format!("gap record with unknown reason {reason}"));
                }
            }
            Payload::Alert { code, .. } => {
                if !(1..=MAX_ALERT_CODE).contains(code) {
                    return Err(format!("alert record with unknown code {code}"));
                }
            }
            Payload::Receipt {
                tree_size,
                root,
                collector_ts,
                collector_pubkey,
                signature,
                ..
            } => {
                let msg = receipt_message(
                    self.agent_id.as_deref().unwrap_or(""),
                    *tree_size,
                    root,
                    *collector_ts,
                );
                if !verify_signature(collector_pubkey, RECEIPT_CONTEXT, &msg, signature) {
                    return Err("receipt signature is not valid".into());
                }
                match self.roots.get(tree_size) {
                    Some(r) if r == root => {}
                    None if *tree_size < self.pruned_below => {}
                    None if self.max_roots.is_some()
                        && (self.own_receipt_key == Some(*collector_pubkey)
                            || self.peer_receipt_keys.contains(collector_pubkey))
                        && self
                            .roots
                            .first_key_value()
                            .is_none_or(|(k, _)| tree_size < k) => {}
                    _ => {
                        return Err(format!(
                            "receipt names tree size {tree_size} and a root that no earlier checkpoint has"
                        ));
                    }
                }
            }
            Payload::ClockStep { .. }
            | Payload::Recovery { .. }
            | Payload::Seal { .. }
            | Payload::Stop { .. }
            | Payload::Config { .. }
            | Payload::Heartbeat { .. }
            | Payload::Prune { .. }
            | Payload::DataKey { .. } => {}
        }
        Ok(())
    }

    /// The key rules of an `epoch_key` record, without its place in the
    /// chain (also for the key ledger of a pruned spool, whose records
    /// stand alone): the transition follows the current epoch and is signed
    /// by its key; then its new key is in force.
    pub fn take_epoch_key(&mut self, rec: &Record<'_>, bytes: &[u8]) -> Result<(), String> {
        let Payload::EpochKey {
            from_epoch,
            to_epoch,
            new_pubkey,
            signature,
            ..
        } = &rec.payload
        else {
            return Err(format!(
                "a {} record is not an epoch transition",
                rec.kind.name()
            ));
        };
        if *from_epoch != self.epoch || *to_epoch != self.epoch + 1 {
            return Err(format!(
                "epoch transition {from_epoch}->{to_epoch} at seq {} does not follow epoch {}",
                rec.seq, self.epoch
            ));
        }
        let key = self.key.ok_or("no key in force")?;
        let signed = &bytes[..bytes.len().saturating_sub(SIGNATURE_LEN)];
        if !verify_signature(&key, EPOCH_KEY_CONTEXT, signed, signature) {
            return Err(format!(
                "epoch transition at seq {} not signed by the key of epoch {}",
                rec.seq, self.epoch
            ));
        }
        self.epoch = *to_epoch;
        self.key = Some(*new_pubkey);
        Ok(())
    }

    /// Takes the record (whose leaf hash is `leaf`) into the chain.
    pub fn advance(&mut self, leaf: Hash) {
        self.head = leaf;
        self.frontier.push(leaf);
        self.next_seq += 1;
    }
}

/// A collector's countersignature of one of an agent's checkpoints: the
/// fields of a `receipt` record (docs/FORMAT.md §6.12), as the collector
/// issues and keeps it and as the agent appends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub collector_id: String,
    pub tree_size: u64,
    pub root: Hash,
    pub collector_ts: i64,
    pub collector_pubkey: [u8; 32],
    pub signature: [u8; 64],
}

impl Receipt {
    /// Signs `tree_size` and `root` of agent `agent_id`'s log at `ts`.
    pub fn sign(
        key: &ed25519_dalek::SigningKey,
        collector_id: &str,
        agent_id: &str,
        tree_size: u64,
        root: &Hash,
        ts: i64,
    ) -> Receipt {
        let msg = receipt_message(agent_id, tree_size, root, ts);
        Receipt {
            collector_id: collector_id.to_owned(),
            tree_size,
            root: *root,
            collector_ts: ts,
            collector_pubkey: key.verifying_key().to_bytes(),
            signature: crate::keys::sign_with(key, RECEIPT_CONTEXT, &msg),
        }
    }

    /// Whether the signature holds for agent `agent_id`.
    pub fn signature_valid(&self, agent_id: &str) -> bool {
        let msg = receipt_message(agent_id, self.tree_size, &self.root, self.collector_ts);
        verify_signature(
            &self.collector_pubkey,
            RECEIPT_CONTEXT,
            &msg,
            &self.signature,
        )
    }
}

/// The message a collector signs for a receipt (docs/FORMAT.md §6.12),
/// without the context string.
pub fn receipt_message(agent_id: &str, tree_size: u64, root: &Hash, collector_ts: i64) -> Vec<u8> {
    let mut msg = Vec::with_capacity(100);
    put_bytes8(&mut msg, agent_id.as_bytes());
    msg.extend_from_slice(&tree_size.to_le_bytes());
    msg.extend_from_slice(root);
    msg.extend_from_slice(&collector_ts.to_le_bytes());
    msg
}
