//! How several collectors keep one chain per agent in one bucket: a batch
//! checked against the local working copy is written as a locked range
//! object, then claimed (`claims/<agent>/<first_seq>`, created only if
//! absent). The claims of one agent are contiguous — each starts where the
//! previous one ends — so a collector whose claim is refused was behind:
//! it pulls the claims it lacks, checks their objects as it would an
//! agent's batch, and takes the agent's batch again as a replay.

use super::range::{Claim, Range};
use super::{S3, S3Error};
use wormlog_spool::hash::{hex, sha256};

/// What became of a batch written to the bucket.
#[derive(Debug, PartialEq, Eq)]
pub enum Kept {
    /// Ours: the records from `first_seq` are in our range object.
    Claimed,
    /// Another collector claimed `first_seq` first: pull, then retry.
    Lost,
}

/// The bucket as one collector sees it.
#[derive(Debug)]
pub struct Remote {
    pub s3: S3,
    pub collector: String,
    /// The other collectors' receipt keys (`[store] peer_receipt_keys`):
    /// their receipts are taken like this collector's own once the
    /// checkpoint they name has left the follower's window.
    pub peer_receipt_keys: Vec<[u8; 32]>,
}

/// A claim or range object that is not what it should be.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error(transparent)]
    S3(#[from] S3Error),
    #[error("{key}: {reason}")]
    Damaged { key: String, reason: String },
}

impl Remote {
    /// Writes a checked batch (its new part: the records `first_seq` up to
    /// `next_seq`) and claims it.
    pub fn keep(
        &self,
        agent: &str,
        first_seq: u64,
        next_seq: u64,
        torn: &[u8],
        frames: &[u8],
    ) -> Result<Kept, S3Error> {
        let claim_key = Claim::key(&self.s3.prefix, agent, first_seq);
        // Already claimed: do not leave a locked object no claim names.
        if self.s3.get_head(&claim_key)?.is_some() {
            crate::metrics::s3_lost_race();
            return Ok(Kept::Lost);
        }
        let bytes = Range {
            agent: agent.to_owned(),
            first_seq,
            next_seq,
            torn: torn.to_vec(),
            frames: frames.to_vec(),
        }
        .encode();
        let object = Range::key(&self.s3.prefix, agent, first_seq, &bytes);
        let started = std::time::Instant::now();
        self.s3.put_kept(&object, &bytes)?;
        let claim = Claim {
            object,
            first_seq,
            next_seq,
            sha256: hex(&sha256(&bytes)),
            collector: self.collector.clone(),
        };
        let body = serde_json::to_vec(&claim).expect("a claim serializes");
        let won = self.s3.put_head_if_absent(&claim_key, &body)?;
        crate::metrics::observe_s3_write(started.elapsed(), bytes.len() as u64, won);
        Ok(if won { Kept::Claimed } else { Kept::Lost })
    }

    /// The range claimed at `seq`, checked against its claim (None: no
    /// claim there yet, the chain's end in the bucket).
    pub fn claimed_at(&self, agent: &str, seq: u64) -> Result<Option<Range>, PullError> {
        let key = Claim::key(&self.s3.prefix, agent, seq);
        let Some(body) = self.s3.get_head(&key)? else {
            return Ok(None);
        };
        let damaged = |reason: String| PullError::Damaged {
            key: key.clone(),
            reason,
        };
        let claim: Claim =
            serde_json::from_slice(&body).map_err(|e| damaged(format!("not a claim: {e}")))?;
        if claim.first_seq != seq || claim.next_seq <= seq {
            return Err(damaged(format!(
                "claims {}..{} under the name of {seq}",
                claim.first_seq, claim.next_seq
            )));
        }
        // Absent as the newest version (a delete marker: a plain DELETE
        // of a locked object adds one) or another version: the locked first
        // one is looked for below.
        let mut bytes = self.s3.get_kept(&claim.object)?.unwrap_or_default();
        if hex(&sha256(&bytes)) != claim.sha256 {
            // Written again over it: the first, locked version is still
            // there (the name is its SHA-256). Said, and read from there.
            let first = self
                .s3
                .kept_versions(&claim.object)?
                .into_iter()
                .find(|(_, b)| hex(&sha256(b)) == claim.sha256);
            let Some((version, b)) = first else {
                return Err(damaged(format!(
                    "{}: no version has the SHA-256 its claim names",
                    claim.object
                )));
            };
            tracing::error!(
                "{}: the object was written again or deleted after it was kept; its first version {version} is read",
                claim.object
            );
            crate::metrics::s3_overwritten();
            bytes = b;
        }
        let range = Range::decode(&bytes).map_err(|e| damaged(format!("{}: {e}", claim.object)))?;
        if range.agent != agent || range.first_seq != seq || range.next_seq != claim.next_seq {
            return Err(damaged(format!(
                "{} holds {} {}..{}, not what its claim names",
                claim.object, range.agent, range.first_seq, range.next_seq
            )));
        }
        Ok(Some(range))
    }

    /// Where the claimed range holding `seq` starts when `seq` is inside
    /// one (a crash cut the local copy in the middle of a batch it had
    /// kept); None otherwise. A binary search over the claims' names: about
    /// 2 × log2(seq) one-key listings, asked only after the local copy was
    /// reloaded.
    pub fn covering(&self, agent: &str, seq: u64) -> Result<Option<u64>, S3Error> {
        let prefix = format!("{}claims/{agent}/", self.s3.prefix);
        // The first claim starting at or after `x`.
        let first = |x: u64| -> Result<Option<u64>, S3Error> {
            let after = x
                .checked_sub(1)
                .map(|p| Claim::key(&self.s3.prefix, agent, p));
            Ok(self
                .s3
                .list(true, &prefix, after.as_deref(), 1)?
                .first()
                .and_then(|k| k.strip_prefix(&prefix)?.parse().ok()))
        };
        let mut best = match first(0)? {
            Some(c) if c < seq => c,
            _ => return Ok(None),
        };
        // The last claim starting before `seq`: one in [lo, hi)?
        let (mut lo, mut hi) = (best + 1, seq);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match first(mid)? {
                Some(c) if c < hi => {
                    best = c;
                    lo = c + 1;
                }
                _ => hi = mid,
            }
        }
        let key = Claim::key(&self.s3.prefix, agent, best);
        let Some(body) = self.s3.get_head(&key)? else {
            return Ok(None);
        };
        let claim: Option<Claim> = serde_json::from_slice(&body).ok();
        Ok(claim.filter(|c| c.next_seq > seq).map(|c| c.first_seq))
    }

    /// The agents the bucket holds claims for.
    pub fn agents(&self) -> Result<Vec<String>, S3Error> {
        let prefix = format!("{}pins/", self.s3.prefix);
        Ok(self
            .s3
            .list(true, &prefix, None, usize::MAX)?
            .into_iter()
            .filter_map(|k| k.strip_prefix(&prefix).map(str::to_owned))
            .collect())
    }

    /// Records `pubkey` as `agent`'s first key in the bucket unless one is
    /// there: returns the key the bucket holds for it.
    pub fn pin(&self, agent: &str, pubkey: &[u8; 32]) -> Result<[u8; 32], PullError> {
        let key = format!("{}pins/{agent}", self.s3.prefix);
        let text = wormlog_spool::keys::format_pubkey(pubkey);
        if !self.s3.put_head_if_absent(&key, text.as_bytes())? {
            return self.pinned(agent)?.ok_or_else(|| PullError::Damaged {
                key,
                reason: "refused as existing, then absent".into(),
            });
        }
        // The kept, locked copy: what an auditor compares the pin with.
        self.s3.put_kept(
            &format!("{}agents/{agent}/pubkey", self.s3.prefix),
            text.as_bytes(),
        )?;
        Ok(*pubkey)
    }

    /// The first key the bucket holds for `agent`.
    pub fn pinned(&self, agent: &str) -> Result<Option<[u8; 32]>, PullError> {
        let key = format!("{}pins/{agent}", self.s3.prefix);
        let Some(b) = self.s3.get_head(&key)? else {
            return Ok(None);
        };
        let text = String::from_utf8_lossy(&b);
        wormlog_spool::keys::parse_pubkey(text.trim())
            .map(Some)
            .map_err(|e| PullError::Damaged {
                key,
                reason: e.to_string(),
            })
    }
}
