//! Proving a fork: a replayed batch whose record `at` differs from the
//! stored one is the agent's own rewritten history only if the batch,
//! followed from the stored chain just before it, passes every rule up to
//! a checkpoint that covers `at` — above all that checkpoint's signature
//! under the agent's key for its epoch and its Merkle root over the
//! differing records. Anyone can send bytes; only the agent's key can
//! sign such a checkpoint.

use super::stored::{Stored, StoredFrames, frame_seq};
use super::{AgentStore, Outcome, StoreError};
use std::time::{Duration, Instant};
use wormlog_spool::follow::Follower;
use wormlog_spool::frame::{FrameAt, frame_at};
use wormlog_spool::hash::Hash;
use wormlog_spool::keys::{CHECKPOINT_CONTEXT, verify_signature};
use wormlog_spool::record::{Payload, Record};

/// A base is kept every this many records (a proof replays at most about
/// this many stored records from the nearest one).
pub const BASE_EVERY: u64 = 200_000;
/// Bases kept per agent (the state at load and the newest ones).
pub const BASES_KEPT: usize = 4;
/// A longer replay (from an older base, or the genesis record) is run at
/// most once per agent in this time.
const LONG_REPLAY_EVERY: Duration = Duration::from_secs(600);
/// Any proof (a replay of up to [`BASE_EVERY`] records) is attempted at
/// most once per agent in this time.
const PROOF_EVERY: Duration = Duration::from_secs(1);
/// Replayed records in one accept call.
const REPLAY_BATCH_BYTES: usize = 8 << 20;

/// What proves a fork: the checkpoint of the batch that covers the
/// differing record.
#[derive(Debug, Clone)]
pub struct Proof {
    /// The first differing record.
    pub at: u64,
    /// The checkpoint's own seq, tree size and root.
    pub checkpoint_seq: u64,
    pub tree_size: u64,
    pub root: Hash,
}

impl AgentStore {
    /// Decides what a batch from `seq` whose record `at` differs from the
    /// stored one is: a proven fork (its bytes kept as evidence), or an
    /// unproven claim (refused).
    pub(super) fn differs(
        &mut self,
        seq: u64,
        torn: &[u8],
        frames: &[u8],
        at: u64,
        from: &crate::forks::Sender,
    ) -> Result<Outcome, StoreError> {
        let unproven = |reason: &str| {
            Ok(Outcome::Unproven {
                seq: at,
                reason: reason.to_owned(),
            })
        };
        let Some(cp) = covering_checkpoint(frames, at) else {
            return unproven("no checkpoint in the batch covers it");
        };
        // A batch proven before: the same answer, no work.
        // (Unreadable evidence is looked at as none: the proof runs.)
        if let Ok(Some(kept)) = crate::forks::kept_before(&self.root, &self.id, torn, frames) {
            return Ok(Outcome::Fork {
                seq: at,
                expected_seq: self.next_seq(),
                evidence: kept,
            });
        }
        // The cheap test first: where the collector knows the agent's key
        // for the checkpoint's epoch, its signature must hold before any
        // replay is run.
        let known = self.known_key(cp.epoch);
        if let Some(key) = known
            && !verify_signature(&key, CHECKPOINT_CONTEXT, cp.signed(frames), &cp.signature)
        {
            return unproven(&format!(
                "the checkpoint at {} is not signed with the agent's key of epoch {}",
                cp.seq, cp.epoch
            ));
        }
        if self.last_proof.is_some_and(|t| t.elapsed() < PROOF_EVERY) {
            return Ok(Outcome::Busy(
                "a fork proof of this agent ran less than a second ago".into(),
            ));
        }
        self.last_proof = Some(Instant::now());
        let Some(mut f) = self.follower_at(seq, known.is_some())? else {
            return Ok(Outcome::Busy(
                "proving this fork needs a long replay of the store, which runs at most every 10 minutes per agent".into(),
            ));
        };
        if let Err(r) = f.accept(torn, &frames[..cp.end]) {
            return unproven(&format!(
                "the batch does not hold under the agent's key ({r})"
            ));
        }
        let (checkpoint_seq, tree_size, root) = (cp.seq, cp.tree_size, cp.root);
        let proof = Proof {
            at,
            checkpoint_seq,
            tree_size,
            root,
        };
        let evidence = crate::forks::keep(
            &self.root,
            &crate::forks::Evidence {
                agent: &self.id,
                batch_seq: seq,
                expected_seq: self.next_seq(),
                torn,
                frames,
                proof: &proof,
                from,
            },
            self.append_only,
        )
        // A proven fork is declared even when its evidence cannot be
        // written (a full or failing disk): the answer says so.
        .unwrap_or_else(|e| {
            let dir = self.root.join("forks");
            crate::forks::Kept::Failed(format!("{}: {e}", dir.display()))
        });
        Ok(Outcome::Fork {
            seq: at,
            expected_seq: self.next_seq(),
            evidence,
        })
    }

    /// The agent's public key for `epoch`, where the collector holds it
    /// (its current epoch, or a kept base's).
    fn known_key(&self, epoch: u64) -> Option<[u8; 32]> {
        std::iter::once(&self.follower)
            .chain(self.bases.iter())
            .find(|f| f.chain.epoch == epoch)
            .and_then(|f| f.chain.key)
    }

    /// The follower just before record `seq`, from the nearest base (None:
    /// the replay would be long and one ran recently). A long replay for a
    /// checkpoint whose signature could not be checked first (`checked`
    /// false) counts against the same limit.
    fn follower_at(&mut self, seq: u64, checked: bool) -> Result<Option<Follower>, StoreError> {
        let base = self
            .bases
            .iter()
            .filter(|b| b.next_seq() <= seq)
            .max_by_key(|b| b.next_seq())
            .cloned()
            .unwrap_or_else(|| {
                let mut f = Follower::new(&self.id, Some(self.pubkey));
                f.chain.own_receipt_key = Some(self.receipt_key);
                f
            });
        if seq - base.next_seq() > BASE_EVERY || !checked {
            if self
                .last_replay
                .is_some_and(|t| t.elapsed() < LONG_REPLAY_EVERY)
            {
                return Ok(None);
            }
            self.last_replay = Some(Instant::now());
        }
        replay(&self.dir, base, Some(seq)).map(Some)
    }
}

/// The batch's checkpoint that covers the differing record.
#[derive(Debug)]
struct Covering {
    /// Where its frame starts and ends in the batch.
    start: usize,
    end: usize,
    seq: u64,
    epoch: u64,
    tree_size: u64,
    root: Hash,
    signature: [u8; 64],
}

impl Covering {
    /// The bytes its signature covers: the record without the signature.
    fn signed<'a>(&self, frames: &'a [u8]) -> &'a [u8] {
        &frames[self.start..self.end - self.signature.len()]
    }
}

/// The batch's first checkpoint that covers record `at` (its tree holds
/// record `at`).
fn covering_checkpoint(frames: &[u8], at: u64) -> Option<Covering> {
    let mut off = 0;
    while let FrameAt::Frame { start, end } = frame_at(frames, off) {
        if let Ok(Record {
            seq,
            payload: Payload::Checkpoint(cp),
            ..
        }) = Record::decode(&frames[start..end])
            && cp.tree_size > at
        {
            return Some(Covering {
                start,
                end,
                seq,
                epoch: cp.epoch,
                tree_size: cp.tree_size,
                root: cp.root,
                signature: cp.signature,
            });
        }
        off = end;
    }
    None
}

/// Follows the stored chain from `f` up to (not including) record `to`,
/// or to the end of the store (`None`: a torn region with nothing after
/// it, a write a crash cut short, is left unfollowed; the follower's
/// cursor then stops before it).
pub(super) fn replay(
    dir: &std::path::Path,
    mut f: Follower,
    to: Option<u64>,
) -> Result<Follower, StoreError> {
    let c = f.cursor.clone();
    let (no, off) = if c.len == 0 { (0, 0) } else { (c.no, c.len) };
    let mut stored = StoredFrames::at(dir, no, off)?;
    let mut batch: Vec<u8> = Vec::new();
    let mut torn: Vec<u8> = Vec::new();
    let mut pending = 0u64;
    let damaged = |e: String| StoreError::Damaged(format!("{}: {e}", dir.display()));
    let flush = |f: &mut Follower, batch: &mut Vec<u8>, torn: &mut Vec<u8>, pending: &mut u64| {
        if batch.is_empty() {
            return Ok(());
        }
        f.accept(torn, batch)
            .map_err(|r| damaged(format!("the stored chain does not follow: {r}")))?;
        batch.clear();
        torn.clear();
        *pending = 0;
        Ok::<(), StoreError>(())
    };
    while to.is_none_or(|to| f.next_seq() + pending < to) {
        match stored.next_stored()? {
            Some(Stored::Frame(fr)) => {
                if frame_seq(&fr) < f.next_seq() + pending {
                    continue;
                }
                batch.extend_from_slice(&fr);
                pending += 1;
                if batch.len() >= REPLAY_BATCH_BYTES {
                    flush(&mut f, &mut batch, &mut torn, &mut pending)?;
                }
            }
            Some(Stored::Torn(t)) => {
                flush(&mut f, &mut batch, &mut torn, &mut pending)?;
                torn = t;
            }
            None => match to {
                Some(to) => return Err(damaged(format!("the store ends before record {to}"))),
                None => break,
            },
        }
    }
    flush(&mut f, &mut batch, &mut torn, &mut pending)?;
    Ok(f)
}
