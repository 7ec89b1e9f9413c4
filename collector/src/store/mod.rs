//! One agent's chain in the collector's store: the agent's segments mirrored
//! byte for byte (`<store>/agents/<id>/NNNNNNNNNNNNNNNN.wlseg`), append-only
//! while active and immutable once complete, plus the receipts the collector
//! issued (`receipts`), the first public key (`pubkey`) and a snapshot of the
//! follower (`state.json`) that makes a restart O(1).
//!
//! Ingest is all or nothing and durable before it is answered: the batch is
//! checked first ([`Follower::accept`]), then written, `fdatasync`ed (and
//! the directory when a segment was created), then the receipts are signed
//! and made durable, and only then is the answer sent. A batch that only
//! appends to the active segment is written after the agent's lock is
//! released, while the next batch is checked ([`commit`]).
//!
//! A replayed batch is compared with the stored records byte for byte; a
//! difference is a fork only when a checkpoint of the batch, signed with
//! the agent's key, covers the differing record ([`proof`]) — then the
//! agent's differing bytes are kept as evidence ([`crate::forks`]).

pub mod commit;
mod proof;
pub mod stored;

pub use proof::Proof;

use crate::receipts::{Receipt, ReceiptLog, Signer};
use commit::{Commit, DurableEnd, Pending, Piece};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use stored::{SeqIndex, Stored, StoredFrames, frame_seq};
use wormlog_spool::follow::{Follower, Op, Refusal};
use wormlog_spool::frame::{FRAME_HEADER_LEN, FrameAt, frame_at};
use wormlog_spool::record::AppendOnly;
use wormlog_spool::segment::{SegmentHeader, list_segments, segment_path};
use wormlog_spool::verify::verify_spool;

/// What became of a batch.
#[derive(Debug)]
pub enum Outcome {
    /// Stored (or already held): the next expected sequence number and the
    /// receipts for the checkpoints in the batch.
    Accepted {
        next_seq: u64,
        receipts: Vec<Receipt>,
    },
    /// The batch starts after the next expected record.
    Gap { expected_seq: u64 },
    /// The batch holds a record at `seq` that differs from the one stored,
    /// under a checkpoint the agent's key signed: the agent's history was
    /// rewritten. What became of its bytes: `evidence`.
    Fork {
        seq: u64,
        expected_seq: u64,
        evidence: crate::forks::Kept,
    },
    /// The batch holds a record at `seq` that differs from the one stored,
    /// and nothing in it proves the agent made it (`reason`): refused, not
    /// a fork.
    Unproven { seq: u64, reason: String },
    /// Cannot be decided now (a proof that needs a long replay, run at
    /// most so often): try later.
    Busy(String),
    /// Other collectors of the bucket kept claiming the next records first
    /// (several times in a row): send again.
    Contended(String),
    /// Not a valid continuation.
    Invalid { seq: u64, reason: String },
    /// Not whole frames.
    Malformed(String),
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{0}")]
    Damaged(String),
    /// The S3 bucket did not take or give what it should.
    #[error("S3: {0}")]
    Remote(String),
    /// The bucket holds a batch that does not continue the chain, or a
    /// claim or object that is not what it should be.
    #[error("the S3 bucket: {0}")]
    Bucket(String),
    /// The batch before was not written (see [`commit`]): the store is
    /// reloaded from disk and this batch is not stored either.
    #[error("the batch before this one was not stored: {0}")]
    EarlierNotStored(String),
}

pub(crate) fn io_at(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_owned(),
        source,
    }
}

/// How a replayed batch compares with what is stored.
#[derive(Debug)]
enum Held {
    /// The first `records` records are the stored ones; new records start
    /// at byte `new_from`.
    Same { records: u64, new_from: usize },
    /// The record with this sequence number differs: a fork.
    Differs(u64),
    /// Not whole frames (damaged in transit, not a fork).
    Malformed(String),
}

/// One agent's store.
#[derive(Debug)]
pub struct AgentStore {
    pub id: String,
    pub dir: PathBuf,
    pub pubkey: [u8; 32],
    follower: Follower,
    active: Option<(u64, File)>,
    receipts: Arc<Mutex<ReceiptLog>>,
    /// The newest batch checked but written after the lock (see
    /// [`commit`]); waited for before anything else is written or read.
    pending: Option<Pending>,
    /// What is known durable (`next_seq` runs ahead of it while a batch
    /// is checked, or after a failed write): a reload after a failed write
    /// cuts the active segment back to it.
    durable: DurableEnd,
    append_only: AppendOnly,
    /// Set after a failed write: the store is reloaded from disk before the
    /// next batch.
    poisoned: bool,
    /// This collector's receipt key (receipts it signed need no window).
    receipt_key: [u8; 32],
    /// The store's root (`<root>/agents/<id>`, `<root>/forks`).
    root: PathBuf,
    index: SeqIndex,
    /// Followers at a few earlier batch starts: a fork is proven from the
    /// nearest one before it instead of from the genesis record.
    bases: Vec<Follower>,
    last_replay: Option<std::time::Instant>,
    last_proof: Option<std::time::Instant>,
    /// When the snapshot was last written and when the last batch was
    /// stored (see [`AgentStore::snapshot_if_due`]).
    snapshot_at: Option<std::time::Instant>,
    stored_at: Option<std::time::Instant>,
    /// What loading cut or removed (unacknowledged crash leftovers), not yet
    /// told (see [`AgentStore::take_repairs`]).
    repairs: Vec<String>,
    /// The S3 bucket the batches are kept in (None: the local store is
    /// the store).
    remote: Option<std::sync::Arc<crate::s3::sync::Remote>>,
    /// Set when the local copy was (re)loaded from disk: a crash may have
    /// cut it inside a batch the bucket holds (see [`AgentStore::pull`]).
    reloaded: bool,
    /// Tests: panic once a batch is written, before it is answered.
    #[cfg(test)]
    panic_after_write: bool,
}

impl AgentStore {
    /// What loading the store cut or removed since this was last called:
    /// leftovers of a crash that no answer acknowledged (the agent sends
    /// them again), for the collector's own chain and metrics.
    pub fn take_repairs(&mut self) -> Vec<String> {
        std::mem::take(&mut self.repairs)
    }

    /// Opens (or creates) the store of agent `id`, whose first public key is
    /// `pubkey`; `signer` is the collector's receipt key.
    pub fn open(
        root: &Path,
        id: &str,
        pubkey: [u8; 32],
        append_only: AppendOnly,
        signer: &Signer,
    ) -> Result<AgentStore, StoreError> {
        let dir = root.join("agents").join(id);
        std::fs::create_dir_all(&dir).map_err(io_at(&dir))?;
        let pk_path = dir.join("pubkey");
        let pk_line = format!("{}\n", wormlog_spool::keys::format_pubkey(&pubkey));
        match std::fs::read_to_string(&pk_path) {
            Ok(s) if s == pk_line => {}
            Ok(s) => {
                return Err(StoreError::Damaged(format!(
                    "{}: holds {}, but the agent is registered with {}",
                    pk_path.display(),
                    s.trim(),
                    pk_line.trim()
                )));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                wormlog_spool::keys::write_atomic(&pk_path, pk_line.as_bytes(), 0o644)
                    .map_err(|e| StoreError::Damaged(e.to_string()))?;
            }
            Err(e) => return Err(io_at(&pk_path)(e)),
        }
        let receipts =
            ReceiptLog::open(&dir.join("receipts"), &signer.collector_id, signer.pubkey())
                .map_err(io_at(&dir))?;
        let mut s = AgentStore {
            id: id.to_owned(),
            dir,
            pubkey,
            follower: Follower::new(id, Some(pubkey)),
            active: None,
            receipts: Arc::new(Mutex::new(receipts)),
            pending: None,
            durable: DurableEnd::default(),
            append_only,
            poisoned: false,
            receipt_key: signer.pubkey(),
            root: root.to_owned(),
            index: SeqIndex::default(),
            bases: Vec::new(),
            last_replay: None,
            last_proof: None,
            snapshot_at: None,
            stored_at: None,
            repairs: Vec::new(),
            remote: None,
            reloaded: false,
            #[cfg(test)]
            panic_after_write: false,
        };
        s.load()?;
        Ok(s)
    }

    /// The seq after the last record checked (a batch checked may still be
    /// being written: see [`AgentStore::durable_next_seq`]).
    pub fn next_seq(&self) -> u64 {
        self.follower.next_seq()
    }

    /// The seq after the last record durably stored, without waiting: what
    /// the collector tells an agent that asks where to go on from.
    pub fn durable_next_seq(&self) -> u64 {
        match &self.pending {
            Some(p) if p.is_durable() => p.end.seq,
            _ => self.durable.seq,
        }
    }

    /// Finds where the chain stands: from the snapshot when it matches the
    /// files, else by verifying the whole store. A tail that was written but
    /// never acknowledged (a crash mid-batch) is cut back to the last whole
    /// record — the only time the collector shortens a file.
    fn load(&mut self) -> Result<(), StoreError> {
        self.active = None;
        self.reloaded = true;
        let (segs, _) = list_segments(&self.dir).map_err(io_at(&self.dir))?;
        let Some((last_no, last_path)) = segs.last().cloned() else {
            self.follower = Follower::new(&self.id, Some(self.pubkey));
            self.follower.chain.own_receipt_key = Some(self.receipt_key);
            if let Some(r) = &self.remote {
                self.follower.chain.peer_receipt_keys = r.peer_receipt_keys.clone();
            }
            self.index = SeqIndex::default();
            self.bases = Vec::new();
            self.mark_durable();
            return Ok(());
        };
        let file_len = std::fs::metadata(&last_path)
            .map_err(io_at(&last_path))?
            .len();
        if header_only(&last_path, file_len)? {
            // Created, and nothing written into it before a crash: no batch
            // that reached it was ever answered.
            let done = remove_unacknowledged(&self.dir, &last_path)?;
            self.repairs.push(done);
            return self.load();
        }
        let from_snapshot = crate::snapshot::read(&self.dir, &self.id, self.pubkey)
            .filter(|f| f.cursor.no == last_no && f.cursor.len <= file_len)
            .and_then(|f| catch_up(&self.dir, f, last_no, file_len));
        if let Some(f) = from_snapshot {
            self.follower = f;
        } else {
            let report = verify_spool(&self.dir, Some(self.pubkey), &mut |_, _, _| {})
                .map_err(|e| StoreError::Damaged(format!("{}: {e}", self.dir.display())))?;
            if let Some(f) = &report.failure {
                return Err(StoreError::Damaged(format!(
                    "{}: the store does not verify: segment {} offset {} seq {}: {}",
                    self.dir.display(),
                    f.segment,
                    f.offset,
                    f.seq,
                    f.reason
                )));
            }
            let follower = Follower::from_report(&report).ok_or_else(|| {
                StoreError::Damaged(format!("{}: no genesis record", self.dir.display()))
            })?;
            if follower.cursor.len < file_len {
                let done = cut_tail(&last_path, follower.cursor.len)?;
                self.repairs.push(done);
            }
            self.follower = follower;
            crate::snapshot::write(&self.dir, &self.follower).map_err(io_at(&self.dir))?;
        }
        self.follower.chain.own_receipt_key = Some(self.receipt_key);
        if let Some(r) = &self.remote {
            self.follower.chain.peer_receipt_keys = r.peer_receipt_keys.clone();
        }
        self.index = SeqIndex::default();
        self.bases = vec![self.follower.clone()];
        if !self.follower.cursor.sealed {
            let f = OpenOptions::new()
                .append(true)
                .open(&last_path)
                .map_err(io_at(&last_path))?;
            self.active = Some((last_no, f));
        }
        self.mark_durable();
        Ok(())
    }

    /// Takes everything checked so far as durable.
    fn mark_durable(&mut self) {
        self.durable = self.checked_end();
    }

    /// Where the store ends once everything checked is written.
    fn checked_end(&self) -> DurableEnd {
        let at = self.active.as_ref().and_then(|(no, _)| {
            (self.follower.cursor.no == *no).then_some((*no, self.follower.cursor.len))
        });
        DurableEnd {
            seq: self.next_seq(),
            at,
        }
    }

    /// Reloads a poisoned store: first cuts the active segment back to the
    /// end of the last batch known durable, then loads it from disk. What
    /// follows that end was never answered (its agent sends it again), and
    /// may be in the page cache only: after a failed `fdatasync` the kernel
    /// may keep the pages clean but unwritten, and a later one, on this
    /// descriptor or a new one, need not fail again. A segment already made
    /// immutable was synced before it was closed.
    fn reload(&mut self) -> Result<(), StoreError> {
        if let Some((no, len)) = self.durable.at {
            let path = segment_path(&self.dir, no);
            let (_, immutable) = wormlog_spool::worm::flags_of(&path).unwrap_or((false, false));
            let now = std::fs::metadata(&path).map_err(io_at(&path))?.len();
            if now > len && !immutable {
                self.active = None;
                let done = cut_tail(&path, len)?;
                self.repairs.push(done);
            }
        }
        self.load()?;
        self.poisoned = false;
        Ok(())
    }

    /// Keeps this store's batches in `remote` from now on (and first takes
    /// what the bucket holds beyond the local copy).
    pub fn set_remote(
        &mut self,
        remote: std::sync::Arc<crate::s3::sync::Remote>,
        signer: &Signer,
    ) -> Result<(), StoreError> {
        self.follower.chain.peer_receipt_keys = remote.peer_receipt_keys.clone();
        self.remote = Some(remote);
        self.pull(signer)
    }

    /// Takes the batches other collectors kept in the bucket beyond the
    /// local copy, each checked as an agent's batch is.
    pub fn pull(&mut self, signer: &Signer) -> Result<(), StoreError> {
        let Some(remote) = self.remote.clone() else {
            return Ok(());
        };
        if self.poisoned {
            self.reload()?;
        }
        let local = crate::forks::Sender("the S3 bucket".into());
        loop {
            let next = self.next_seq();
            let range = remote.claimed_at(&self.id, next).map_err(|e| match e {
                crate::s3::sync::PullError::S3(e) => StoreError::Remote(e.to_string()),
                e => StoreError::Bucket(e.to_string()),
            })?;
            let r = match range {
                Some(r) => r,
                // Inside a range kept before a crash cut the local copy:
                // that range again, as a replay of what is held.
                None if !std::mem::take(&mut self.reloaded) => return Ok(()),
                None => match remote.covering(&self.id, next) {
                    Ok(Some(start)) if start < next => remote
                        .claimed_at(&self.id, start)
                        .map_err(|e| StoreError::Bucket(e.to_string()))?
                        .ok_or_else(|| {
                            StoreError::Bucket(format!("the claim at {start} is gone"))
                        })?,
                    Ok(_) => return Ok(()),
                    Err(e) => return Err(StoreError::Remote(e.to_string())),
                },
            };
            // With a bucket, a batch is written under the lock: no commit.
            let o = self.ingest_once(r.first_seq, &r.torn, &r.frames, signer, &local, false);
            match o?.0 {
                Outcome::Accepted { next_seq, .. } if next_seq == r.next_seq => {
                    crate::metrics::s3_pulled(r.next_seq - r.first_seq);
                }
                other => {
                    return Err(StoreError::Bucket(format!(
                        "the batch claimed at {}.{} of agent {} does not continue the chain: {other:?}",
                        r.first_seq, r.next_seq, self.id
                    )));
                }
            }
        }
    }

    /// Takes a batch whose first record is `seq`, stored and durable when
    /// this returns. See [`Outcome`] and [`AgentStore::ingest_deferred`].
    pub fn ingest(
        &mut self,
        seq: u64,
        torn: &[u8],
        frames: &[u8],
        signer: &Signer,
        from: &crate::forks::Sender,
    ) -> Result<Outcome, StoreError> {
        let (outcome, commit) = self.ingest_deferred(seq, torn, frames, signer, from)?;
        if let Some(c) = commit {
            c.run(torn, frames)?;
            self.settle()?;
            self.snapshot_if_due(false);
        }
        Ok(outcome)
    }

    /// Takes a batch whose first record is `seq`. See [`Outcome`]. With a
    /// bucket, a batch another collector continued first is answered from
    /// what that collector kept (pulled, then the batch taken as a replay).
    ///
    /// With a [`Commit`], the batch was checked and is not yet written: the
    /// caller runs it (after releasing the store) with the same `torn` and
    /// `frames`, and answers only if it succeeds.
    pub fn ingest_deferred(
        &mut self,
        seq: u64,
        torn: &[u8],
        frames: &[u8],
        signer: &Signer,
        from: &crate::forks::Sender,
    ) -> Result<(Outcome, Option<Commit>), StoreError> {
        if self.remote.is_none() {
            return self.ingest_once(seq, torn, frames, signer, from, false);
        }
        if self.poisoned || seq > self.next_seq() {
            self.pull(signer)?;
        }
        // A lost race (another collector claimed the batch's first record
        // first): take what it kept, then this batch again, as a replay.
        for _ in 0..4 {
            match self.ingest_once(seq, torn, frames, signer, from, true)? {
                (Outcome::Contended(_), _) => self.pull(signer)?,
                o => return Ok(o),
            }
        }
        Ok((
            Outcome::Contended(
                "other collectors of the bucket kept continuing this agent's chain first; send again"
                    .into(),
            ),
            None,
        ))
    }

    /// Waits for the newest batch's [`Commit`] (if one is out); if it did
    /// not make its batch durable, the store is poisoned (reloaded from
    /// disk before the next batch) and the error returned.
    fn settle(&mut self) -> Result<(), StoreError> {
        let Some(p) = self.pending.take() else {
            return Ok(());
        };
        p.wait().map_err(|e| {
            self.poisoned = true;
            StoreError::EarlierNotStored(e)
        })?;
        self.durable = p.end;
        Ok(())
    }

    /// Readies the store for a batch at `seq` (`empty`: no bytes). Only a
    /// batch that continues the chain is checked before the one before it
    /// is durable; any other answer (a gap, a replay's receipts, the next
    /// seq) is given from what is durable. A commit that failed was already
    /// answered; the store is then reloaded.
    fn before_batch(&mut self, seq: u64, empty: bool) -> Result<(), StoreError> {
        if seq != self.next_seq() || empty {
            let _ = self.settle();
        }
        self.snapshot_if_due(false);
        if self.poisoned {
            self.reload()?;
        }
        Ok(())
    }

    /// One try; `keep`: write the batch's new part to the bucket first
    /// (false for what is taken from the bucket, and without one).
    fn ingest_once(
        &mut self,
        seq: u64,
        torn: &[u8],
        frames: &[u8],
        signer: &Signer,
        from: &crate::forks::Sender,
        keep: bool,
    ) -> Result<(Outcome, Option<Commit>), StoreError> {
        self.before_batch(seq, frames.is_empty() && torn.is_empty())?;
        let next = self.next_seq();
        if seq > next {
            return Ok((Outcome::Gap { expected_seq: next }, None));
        }
        let (batch_torn, batch_frames) = (torn, frames);
        let (mut torn, mut frames) = (torn, frames);
        let mut replayed = Vec::new();
        // Where the new part starts in the batch's frames (after a replay's
        // held records).
        let mut new_from = 0;
        if seq <= next && frames.is_empty() && torn.is_empty() {
            // Nothing to compare, nothing to store.
            let nothing = Outcome::Accepted {
                next_seq: next,
                receipts: Vec::new(),
            };
            return Ok((nothing, None));
        }
        if seq < next {
            // A replay: every record the store already holds must be the
            // same, byte for byte.
            let (held, rest) = match self.compare_held(seq, frames)? {
                Held::Same { records, new_from } => (records, new_from),
                Held::Differs(at) => {
                    let o = self.differs(seq, batch_torn, batch_frames, at, from)?;
                    return Ok((o, None));
                }
                Held::Malformed(m) => return Ok((Outcome::Malformed(m), None)),
            };
            replayed = self.replayed_receipts(seq, held, &frames[..rest], signer)?;
            new_from = rest;
            frames = &frames[rest..];
            torn = &[];
            if frames.is_empty() {
                let held = Outcome::Accepted {
                    next_seq: next,
                    receipts: replayed,
                };
                return Ok((held, None));
            }
        }
        let start = (self.next_seq(), self.follower.cursor.clone());
        let newest = self.bases.last().map_or(0, |b| b.next_seq());
        let base = (self.bases.is_empty() || start.0 >= newest + proof::BASE_EVERY)
            .then(|| self.follower.clone());
        let plan = match self.follower.accept(torn, frames) {
            Ok(p) => p,
            Err(Refusal::NotNext { expected, .. }) => {
                // Told from what is durable.
                self.settle()?;
                let gap = Outcome::Gap {
                    expected_seq: expected,
                };
                return Ok((gap, None));
            }
            Err(Refusal::Invalid { seq, reason }) => {
                return Ok((Outcome::Invalid { seq, reason }, None));
            }
            Err(Refusal::Framing(m)) => return Ok((Outcome::Malformed(m), None)),
        };
        // Checked; the batch before is durable before anything is written
        // behind it.
        self.settle()?;
        if let Some(remote) = self.remote.clone().filter(|_| keep) {
            // Kept in the bucket before anything is written here: the
            // local copy never holds what the bucket does not.
            let kept = remote.keep(&self.id, start.0, self.next_seq(), torn, frames);
            match kept {
                Ok(crate::s3::sync::Kept::Claimed) => {}
                Ok(crate::s3::sync::Kept::Lost) => {
                    self.poisoned = true;
                    let lost = Outcome::Contended("another collector stored it first".into());
                    return Ok((lost, None));
                }
                Err(e) => {
                    self.poisoned = true;
                    crate::metrics::s3_failed();
                    return Err(StoreError::Remote(e.to_string()));
                }
            }
        }
        let mut fresh = Vec::new();
        for (tree_size, root) in &plan.checkpoints {
            fresh.push(signer.sign(&self.id, *tree_size, root));
        }
        let commit = match self.deferrable(&plan.ops, new_from, torn.len()) {
            Some((file, path, pieces)) => {
                let log = self.receipts.clone();
                let end = self.checked_end();
                let (commit, pending) = Commit::new(end, file, path, pieces, fresh.clone(), log);
                self.pending = Some(pending);
                Some(commit)
            }
            None => {
                self.write_now(&plan.ops, torn, frames, &fresh)?;
                None
            }
        };
        self.remember_batch_start(start.0, &start.1, base);
        let mut receipts = replayed;
        receipts.extend(fresh);
        self.stored_at = Some(std::time::Instant::now());
        if commit.is_none() {
            self.snapshot_if_due(false);
        }
        let stored = Outcome::Accepted {
            next_seq: self.next_seq(),
            receipts,
        };
        Ok((stored, commit))
    }

    /// Writes a checked batch and its receipts (`fresh`) and makes them
    /// durable, under the lock: a batch that creates or closes a segment,
    /// or with a bucket.
    fn write_now(
        &mut self,
        ops: &[Op],
        torn: &[u8],
        frames: &[u8],
        fresh: &[Receipt],
    ) -> Result<(), StoreError> {
        if let Err(e) = self.write(ops, torn, frames) {
            self.poisoned = true;
            return Err(e);
        }
        #[cfg(test)]
        if self.panic_after_write {
            panic!("a test's panic between the write and the answer");
        }
        let appended = self
            .receipts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .append(fresh);
        appended.map_err(|e| {
            self.poisoned = true;
            io_at(&self.dir)(e)
        })?;
        self.mark_durable();
        Ok(())
    }

    /// A batch whose `ops` only append to the active segment, without a
    /// bucket: the segment (a second handle on it), its path and what to
    /// append, for a [`Commit`]. None: written under the lock. The ops'
    /// ranges are of the frames from `new_from` on, and of `torn_len` torn
    /// bytes (none after a replay); a commit's are of the whole batch.
    fn deferrable(
        &self,
        ops: &[Op],
        new_from: usize,
        torn_len: usize,
    ) -> Option<(File, PathBuf, Vec<Piece>)> {
        #[cfg(test)]
        if self.panic_after_write {
            return None;
        }
        let (active, file) = self.active.as_ref()?;
        if self.remote.is_some() {
            return None;
        }
        let mut pieces = Vec::new();
        for op in ops {
            match op {
                Op::AppendTorn { no } if no == active => {
                    if torn_len > 0 {
                        pieces.push(Piece::Torn);
                    }
                }
                Op::Append { no, range } if no == active => {
                    pieces.push(Piece::Frames(range.start + new_from..range.end + new_from));
                }
                _ => return None,
            }
        }
        let file = file.try_clone().ok()?;
        Some((file, segment_path(&self.dir, *active), pieces))
    }

    /// Whether batches were stored since the snapshot was written.
    fn snapshot_behind(&self) -> bool {
        self.stored_at
            .is_some_and(|s| self.snapshot_at.is_none_or(|w| s > w))
    }

    /// Writes the snapshot (`state.json`) when it is behind and
    /// `SNAPSHOT_EVERY` (10 s) has passed, or `now`. Not made durable, and
    /// not after every batch: each write is a new inode, and a thousand
    /// agents' batches made that the collector's largest cost. A snapshot
    /// behind the store is caught up on load by following the records
    /// after it; one that cannot be is rebuilt by verifying.
    fn snapshot_if_due(&mut self, now: bool) {
        let due = self
            .snapshot_at
            .is_none_or(|t| t.elapsed() >= SNAPSHOT_EVERY);
        if !self.snapshot_behind() || !(now || due) {
            return;
        }
        // It describes only what is durable.
        if self.settle().is_err() || self.poisoned {
            return;
        }
        self.snapshot_at = Some(std::time::Instant::now());
        if let Err(e) = crate::snapshot::write(&self.dir, &self.follower) {
            warn(&format!(
                "{}: snapshot not written: {e}",
                self.dir.display()
            ));
        }
    }

    /// Whether batches were stored since the snapshot and none for `QUIET`.
    pub fn snapshot_wanted(&self) -> bool {
        self.snapshot_behind()
            && !self.poisoned
            && self.pending.as_ref().is_none_or(|p| p.is_durable())
            && self.stored_at.is_some_and(|t| t.elapsed() >= QUIET)
    }

    /// Writes the snapshot now if batches were stored since the last one
    /// (the collector's sweep, once [`AgentStore::snapshot_wanted`]).
    pub fn write_snapshot(&mut self) {
        self.snapshot_if_due(true);
    }

    /// The receipts for the checkpoints among `held` records from `seq`
    /// (whole frames the store already holds): those issued before, and any
    /// the store lacks because the batch's receipts could not be written
    /// last time (signed now, so a replay always brings them).
    fn replayed_receipts(
        &mut self,
        seq: u64,
        held: u64,
        frames: &[u8],
        signer: &Signer,
    ) -> Result<Vec<Receipt>, StoreError> {
        let mut log = self.receipts.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = log.for_range(seq, seq + held).map_err(io_at(&self.dir))?;
        let last = log.last_tree_size().map_err(io_at(&self.dir))?;
        let mut missing = Vec::new();
        let mut off = 0;
        while let FrameAt::Frame { start, end } = frame_at(frames, off) {
            if let Ok(wormlog_spool::record::Record {
                payload: wormlog_spool::record::Payload::Checkpoint(cp),
                ..
            }) = wormlog_spool::record::Record::decode(&frames[start..end])
                && last.is_none_or(|l| cp.tree_size > l)
            {
                missing.push(signer.sign(&self.id, cp.tree_size, &cp.root));
            }
            off = end;
        }
        if !missing.is_empty() {
            log.append(&missing).map_err(io_at(&self.dir))?;
            out.extend(missing);
        }
        Ok(out)
    }

    /// Compares the records of `frames` below the next expected sequence
    /// number with the stored ones, reading the store from the nearest
    /// known place before `seq`.
    fn compare_held(&mut self, seq: u64, frames: &[u8]) -> Result<Held, StoreError> {
        let next = self.next_seq();
        let (no, off) = self.index.locate(&self.dir, seq)?;
        let mut stored = StoredFrames::at(&self.dir, no, off)?;
        let next_stored = |stored: &mut StoredFrames| -> Result<Option<Vec<u8>>, StoreError> {
            loop {
                match stored.next_stored()? {
                    Some(Stored::Frame(f)) if frame_seq(&f) >= seq => return Ok(Some(f)),
                    Some(_) => {}
                    None => return Ok(None),
                }
            }
        };
        let mut off = 0;
        let mut s = seq;
        while s < next && off < frames.len() {
            let FrameAt::Frame { start, end } = frame_at(frames, off) else {
                return Ok(Held::Malformed(format!(
                    "byte {off} of the batch is not a whole frame"
                )));
            };
            let Some(f) = next_stored(&mut stored)? else {
                return Err(StoreError::Damaged(format!(
                    "{}: record {s} is not in the store",
                    self.dir.display()
                )));
            };
            if frame_seq(&f) != s {
                return Err(StoreError::Damaged(format!(
                    "{}: record {s} is not where the index says",
                    self.dir.display()
                )));
            }
            if f[FRAME_HEADER_LEN..] != frames[start..end] {
                return Ok(Held::Differs(s));
            }
            off = end;
            s += 1;
        }
        Ok(Held::Same {
            records: s - seq,
            new_from: off,
        })
    }

    /// Remembers where a stored batch began (its first seq and the cursor
    /// just before it) in the index, and `base` (the follower just before
    /// it, now and then) for fork proofs.
    fn remember_batch_start(
        &mut self,
        seq: u64,
        c: &wormlog_spool::follow::SegmentCursor,
        base: Option<Follower>,
    ) {
        let (no, off) = if c.len == 0 {
            (0, 0)
        } else if c.sealed {
            (c.no + 1, 0)
        } else {
            (c.no, c.len)
        };
        self.index.batch_at(seq, no, off);
        if let Some(b) = base {
            self.bases.push(b);
            if self.bases.len() > proof::BASES_KEPT {
                // Keep the oldest (the state at load) and the newest.
                self.bases.remove(1);
            }
        }
    }

    fn write(&mut self, ops: &[Op], torn: &[u8], frames: &[u8]) -> Result<(), StoreError> {
        let mut dirty: Vec<u64> = Vec::new();
        let mut created = false;
        for op in ops {
            match op {
                Op::Create { no, header } => {
                    let path = segment_path(&self.dir, *no);
                    let mut f = OpenOptions::new()
                        .append(true)
                        .create_new(true)
                        .mode(0o640)
                        .open(&path)
                        .map_err(io_at(&path))?;
                    f.write_all(header).map_err(io_at(&path))?;
                    self.protect(&f, &path, false)?;
                    if let Ok((h, _)) = SegmentHeader::decode(header) {
                        self.index.segment_created(*no, h.first_seq);
                    }
                    self.active = Some((*no, f));
                    created = true;
                }
                Op::AppendTorn { no } => self.append(*no, torn, &mut dirty)?,
                Op::Append { no, range } => self.append(*no, &frames[range.clone()], &mut dirty)?,
                Op::Close { no } => {
                    self.sync(*no)?;
                    dirty.retain(|d| d != no);
                    if let Some((n, f)) = self.active.take() {
                        if n == *no {
                            let path = segment_path(&self.dir, n);
                            self.protect(&f, &path, true)?;
                        } else {
                            self.active = Some((n, f));
                        }
                    }
                }
            }
        }
        for no in dirty {
            self.sync(no)?;
        }
        if created {
            File::open(&self.dir)
                .and_then(|d| d.sync_all())
                .map_err(io_at(&self.dir))?;
        }
        Ok(())
    }

    fn append(&mut self, no: u64, bytes: &[u8], dirty: &mut Vec<u64>) -> Result<(), StoreError> {
        let path = segment_path(&self.dir, no);
        match &mut self.active {
            Some((n, f)) if *n == no => f.write_all(bytes).map_err(io_at(&path))?,
            _ => {
                return Err(StoreError::Damaged(format!(
                    "{}: segment {no} is not the active one",
                    self.dir.display()
                )));
            }
        }
        if !dirty.contains(&no) {
            dirty.push(no);
        }
        Ok(())
    }

    fn sync(&mut self, no: u64) -> Result<(), StoreError> {
        if let Some((n, f)) = &self.active
            && *n == no
        {
            sync_segment(f, &segment_path(&self.dir, no))?;
        }
        Ok(())
    }

    /// Sets the write-once flag on a segment (append-only while active,
    /// immutable once complete).
    fn protect(&self, f: &File, path: &Path, immutable: bool) -> Result<(), StoreError> {
        if self.append_only == AppendOnly::Off {
            return Ok(());
        }
        let r = if immutable {
            wormlog_spool::worm::set_immutable(f)
        } else {
            wormlog_spool::worm::set_append_only(f)
        };
        match r {
            Ok(()) => Ok(()),
            Err(e) if self.append_only == AppendOnly::Require => Err(io_at(path)(e)),
            Err(_) => Ok(()),
        }
    }
}

/// Ingests a batch into the store held in `slot`; returns the outcome, the
/// next seq and the batch's [`Commit`] if it is still to be written (run it
/// after releasing the slot, before answering). A panic while storing drops
/// the store (so the next request reloads it from disk, which cuts back
/// whatever a half-done write left) and is returned as an error; a commit
/// that fails or panics makes the store reload before its next batch
/// ([`commit`]).
pub fn ingest_or_reload(
    slot: &mut Option<AgentStore>,
    seq: u64,
    torn: &[u8],
    frames: &[u8],
    signer: &Signer,
    from: &crate::forks::Sender,
) -> Result<(Outcome, u64, Option<Commit>), String> {
    let Some(s) = slot.as_mut() else {
        return Err("the store is closed".into());
    };
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        s.ingest_deferred(seq, torn, frames, signer, from)
    }));
    match r {
        // The next seq once the commit has run; else what is durable now.
        Ok(Ok((o, commit @ Some(_)))) => Ok((o, s.next_seq(), commit)),
        Ok(Ok((o, None))) => Ok((o, s.durable_next_seq(), None)),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => {
            *slot = None;
            tracing::error!(
                "a panic while storing a batch; the store is reloaded from disk before the next one"
            );
            Err("the batch could not be stored (the store is reloaded from disk)".into())
        }
    }
}

/// How often an agent's snapshot is written while it sends.
const SNAPSHOT_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// An agent that sent nothing for this long has its snapshot written (by
/// the collector's sweep, this often).
pub const QUIET: std::time::Duration = std::time::Duration::from_secs(1);

impl Drop for AgentStore {
    fn drop(&mut self) {
        if !self.poisoned {
            self.snapshot_if_due(true);
        }
    }
}

/// The snapshot's follower `f` brought up to the end of the last segment
/// (`last_no`, `file_len` bytes) by following the records stored after it.
/// None when they do not follow cleanly (a torn tail after a crash): the
/// caller then verifies the whole store, which also cuts such a tail.
fn catch_up(dir: &Path, f: Follower, last_no: u64, file_len: u64) -> Option<Follower> {
    let f = if f.cursor.len == file_len {
        f
    } else {
        proof::replay(dir, f, None).ok()?
    };
    (f.cursor.no == last_no && f.cursor.len == file_len).then_some(f)
}

/// Whether a segment file holds its header and nothing else (or not even
/// a whole header).
fn header_only(path: &Path, len: u64) -> Result<bool, StoreError> {
    let mut head = Vec::new();
    File::open(path)
        .and_then(|f| std::io::Read::read_to_end(&mut std::io::Read::take(f, 400), &mut head))
        .map_err(io_at(path))?;
    Ok(match SegmentHeader::decode(&head) {
        Ok((_, n)) => len <= n as u64,
        // A header cut short by the crash itself.
        Err(_) => len <= wormlog_spool::segment::HEADER_FIXED_LEN as u64,
    })
}

/// Removes a segment file no acknowledged batch reached (clearing its
/// append-only flag first).
fn remove_unacknowledged(dir: &Path, path: &Path) -> Result<String, StoreError> {
    let _ = wormlog_spool::worm::clear_flags(path);
    std::fs::remove_file(path).map_err(io_at(path))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_at(dir))?;
    let done = format!(
        "{}: removed a segment that holds no record (created just before a crash)",
        path.display()
    );
    warn(&done);
    Ok(done)
}

/// Cuts an unacknowledged partial tail back to `len` (clearing and restoring
/// the append-only flag around it).
fn cut_tail(path: &Path, len: u64) -> Result<String, StoreError> {
    let (append_only, _) = wormlog_spool::worm::flags_of(path).unwrap_or((false, false));
    if append_only {
        wormlog_spool::worm::clear_flags(path).map_err(io_at(path))?;
    }
    let f = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io_at(path))?;
    f.set_len(len).map_err(io_at(path))?;
    f.sync_all().map_err(io_at(path))?;
    if append_only {
        wormlog_spool::worm::set_append_only(&f).map_err(io_at(path))?;
    }
    let done = format!(
        "{}: cut an unacknowledged partial batch back to {len} bytes",
        path.display()
    );
    warn(&done);
    Ok(done)
}

/// `fdatasync` of a segment written to, timed for the metrics.
fn sync_segment(f: &File, path: &Path) -> Result<(), StoreError> {
    let started = std::time::Instant::now();
    f.sync_data().map_err(io_at(path))?;
    crate::metrics::observe_fsync(started.elapsed());
    Ok(())
}

fn warn(msg: &str) {
    tracing::warn!("{msg}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use wormlog_spool::reader::RangeReader;
    use wormlog_spool::{Position, Spool, SpoolOptions};

    /// An agent spool with checkpoints, read back as batches of 40 records.
    fn agent_batches(dir: &Path) -> ([u8; 32], Vec<wormlog_spool::reader::Batch>) {
        let keys = dir.join("keys");
        let pk = wormlog_spool::keys::HostKey::generate(&keys, 1).unwrap();
        let mut o = SpoolOptions::new(dir.join("spool"), "web-01");
        o.append_only = AppendOnly::Off;
        let key = wormlog_spool::keys::HostKey::load(&keys).unwrap();
        let (mut s, _) = Spool::open(o, key).unwrap();
        for i in 0..200u64 {
            s.append_entry("app", &Position::Counter(i), 0, &[], b"a line", 1)
                .unwrap();
            if i % 30 == 29 {
                s.checkpoint().unwrap();
            }
        }
        s.close("done").unwrap();
        let mut r = RangeReader::new(dir.join("spool"));
        let mut out = Vec::new();
        loop {
            let b = r.read(u64::MAX, 40, 1 << 20).unwrap();
            if b.span.records == 0 {
                return (pk, out);
            }
            out.push(b);
        }
    }

    /// Two spools sharing their first 100 records and key, then each
    /// going on with its own records and checkpoints: the agent's history
    /// rewritten (a restored backup), signed with its own key.
    fn forked_spools(dir: &Path) -> ([u8; 32], PathBuf, PathBuf) {
        let keys = dir.join("keys");
        let pk = wormlog_spool::keys::HostKey::generate(&keys, 1).unwrap();
        let open = |name: &str, keys: &Path| {
            let mut o = SpoolOptions::new(dir.join(name), "web-01");
            o.append_only = AppendOnly::Off;
            let key = wormlog_spool::keys::HostKey::load(keys).unwrap();
            Spool::open(o, key).unwrap().0
        };
        let mut a = open("a", &keys);
        for i in 0..100u64 {
            a.append_entry("app", &Position::Counter(i), 0, &[], b"kept", 1)
                .unwrap();
        }
        a.checkpoint().unwrap();
        a.close("copied").unwrap();
        copy_dir(&dir.join("a"), &dir.join("b"));
        copy_dir(&keys, &dir.join("keys-b"));
        for (name, k, line) in [
            ("a", keys.clone(), &b"what happened"[..]),
            ("b", dir.join("keys-b"), &b"what the intruder wrote"[..]),
        ] {
            let mut s = open(name, &k);
            for i in 0..50u64 {
                s.append_entry("app", &Position::Counter(100 + i), 0, &[], line, 2)
                    .unwrap();
            }
            s.checkpoint().unwrap();
            s.close("done").unwrap();
        }
        (pk, dir.join("a"), dir.join("b"))
    }

    fn copy_dir(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }

    fn read_all(spool: &Path, from: u64, per_batch: u64) -> Vec<wormlog_spool::reader::Batch> {
        let mut r = RangeReader::new(spool);
        r.seek(from).unwrap();
        let mut out = Vec::new();
        loop {
            let b = r.read(u64::MAX, per_batch, 16 << 20).unwrap();
            if b.span.records == 0 {
                return out;
            }
            out.push(b);
        }
    }

    #[test]
    fn a_fork_signed_by_the_agent_is_proven_and_kept() {
        let t = tempfile::tempdir().unwrap();
        let (pk, a, b) = forked_spools(t.path());
        let signer = Signer::load_or_create(&t.path().join("ckeys"), "c1").unwrap();
        let root = t.path().join("store");
        let mut s = AgentStore::open(&root, "web-01", pk, AppendOnly::Off, &signer).unwrap();
        for batch in read_all(&a, 0, 30) {
            assert!(matches!(
                ingest(&mut s, &batch, &signer),
                Outcome::Accepted { .. }
            ));
        }
        let next = s.next_seq();
        // The first record the two histories do not share.
        let (ra, rb) = (read_all(&a, 0, 10_000), read_all(&b, 0, 10_000));
        let (fa, fb) = (ra[0].frames(), rb[0].frames());
        let mut off = 0;
        let mut at = 0;
        while let (FrameAt::Frame { start, end }, FrameAt::Frame { start: s2, end: e2 }) =
            (frame_at(fa, off), frame_at(fb, off))
        {
            if fa[start..end] != fb[s2..e2] {
                break;
            }
            off = end;
            at += 1;
        }
        assert!(at > 0 && at < next, "the histories share {at} records");
        // The rewritten history, sent from before the fork in one batch.
        let forked = &read_all(&b, at - 5, 10_000)[0];
        match ingest(&mut s, forked, &signer) {
            Outcome::Fork {
                seq,
                expected_seq,
                evidence,
            } => {
                assert_eq!((seq, expected_seq), (at, next));
                let kept = crate::forks::list(&root, Some("web-01")).unwrap();
                assert_eq!(kept.len(), 1);
                assert!(kept[0].intact);
                assert_eq!(crate::forks::Kept::New(kept[0].dir.clone()), evidence);
                assert_eq!(kept[0].batch, forked.frames());
                let shown = kept[0].to_json();
                assert_eq!(shown["first_differing_seq"], at);
                let records = shown["records"].as_array().unwrap();
                assert!(
                    records
                        .iter()
                        .any(|r| r.as_str().unwrap().contains("what the intruder wrote")),
                    "{records:?}"
                );
            }
            other => panic!("{other:?}"),
        }
        // The stored chain is untouched, and the store still takes A.
        assert_eq!(s.next_seq(), next);
        assert_store_verifies(&root, pk);
        // Only the fork's own records without their checkpoint: unproven.
        let short = read_all(&b, at - 5, 8);
        assert!(matches!(
            ingest(&mut s, &short[0], &signer),
            Outcome::Unproven { .. }
        ));
        // After a restart (no bases kept but the state at load), the same
        // proof from the genesis record; the same batch is kept once.
        drop(s);
        let mut s = AgentStore::open(&root, "web-01", pk, AppendOnly::Off, &signer).unwrap();
        match ingest(&mut s, forked, &signer) {
            Outcome::Fork {
                evidence: crate::forks::Kept::Already(_),
                ..
            } => {}
            other => panic!("{other:?}"),
        }
        assert_eq!(crate::forks::list(&root, None).unwrap().len(), 1);
        // Another rewritten batch (from one record later) is kept too.
        let other = &read_all(&b, at - 4, 10_000)[0];
        assert!(matches!(
            ingest(&mut s, other, &signer),
            Outcome::Fork {
                evidence: crate::forks::Kept::New(_),
                ..
            }
        ));
        assert_eq!(crate::forks::list(&root, None).unwrap().len(), 2);
    }

    #[test]
    fn a_panic_while_storing_reloads_the_store_from_disk() {
        let t = tempfile::tempdir().unwrap();
        let (pk, batches) = agent_batches(t.path());
        let signer = Signer::load_or_create(&t.path().join("ckeys"), "c1").unwrap();
        let root = t.path().join("store");
        let mut slot =
            Some(AgentStore::open(&root, "web-01", pk, AppendOnly::Off, &signer).unwrap());
        let b = &batches[0];
        let r = ingest_or_reload(
            &mut slot,
            b.span.first_seq,
            b.torn(),
            b.frames(),
            &signer,
            &sender(),
        );
        let Ok((Outcome::Accepted { .. }, _, commit)) = r else {
            panic!("{r:?}")
        };
        if let Some(c) = commit {
            c.run(b.torn(), b.frames()).unwrap();
        }
        slot.as_mut().unwrap().panic_after_write = true;
        let b = &batches[1];
        let r = ingest_or_reload(
            &mut slot,
            b.span.first_seq,
            b.torn(),
            b.frames(),
            &signer,
            &sender(),
        );
        assert!(r.is_err() && slot.is_none(), "{r:?}");
        // Reloaded from disk: the batch written but never answered is
        // there, and its replay brings the receipts it never got.
        let mut s = AgentStore::open(&root, "web-01", pk, AppendOnly::Off, &signer).unwrap();
        assert_eq!(s.next_seq(), b.span.end_seq());
        for b in &batches[1..] {
            assert!(matches!(
                ingest(&mut s, b, &signer),
                Outcome::Accepted { .. }
            ));
        }
        assert_store_verifies(&root, pk);
    }

    /// A store (under `dir`) that took the first of [`agent_batches`]'
    /// batches: the agent's key, the batches, the collector's signer, the
    /// store's root and the store.
    fn store_after_first(
        dir: &Path,
    ) -> (
        [u8; 32],
        Vec<wormlog_spool::reader::Batch>,
        Signer,
        PathBuf,
        AgentStore,
    ) {
        let (pk, batches) = agent_batches(dir);
        let signer = Signer::load_or_create(&dir.join("ckeys"), "c1").unwrap();
        let root = dir.join("store");
        let mut s = AgentStore::open(&root, "web-01", pk, AppendOnly::Off, &signer).unwrap();
        assert!(matches!(
            ingest(&mut s, &batches[0], &signer),
            Outcome::Accepted { .. }
        ));
        (pk, batches, signer, root, s)
    }

    /// Stores each of `batches` (all accepted).
    fn ingest_all(s: &mut AgentStore, batches: &[wormlog_spool::reader::Batch], signer: &Signer) {
        for b in batches {
            assert!(matches!(ingest(s, b, signer), Outcome::Accepted { .. }));
        }
    }

    /// The agent's chain in the store under `root` verifies with `pk`.
    fn assert_store_verifies(root: &Path, pk: [u8; 32]) {
        let r = verify_spool(&root.join("agents/web-01"), Some(pk), &mut |_, _, _| {}).unwrap();
        assert!(r.ok(), "{:?}", r.failure);
    }

    fn deferred(
        s: &mut AgentStore,
        b: &wormlog_spool::reader::Batch,
        signer: &Signer,
    ) -> Result<(Outcome, Option<Commit>), StoreError> {
        s.ingest_deferred(b.span.first_seq, b.torn(), b.frames(), signer, &sender())
    }

    #[test]
    fn a_batch_is_checked_while_the_one_before_is_written_and_written_only_after_it() {
        let t = tempfile::tempdir().unwrap();
        let (pk, batches, signer, root, mut s) = store_after_first(t.path());
        let seg = root.join("agents/web-01/0000000000000000.wlseg");
        let len = || std::fs::metadata(&seg).unwrap().len();
        let after_first = len();
        let (o1, c1) = deferred(&mut s, &batches[1], &signer).unwrap();
        assert!(matches!(o1, Outcome::Accepted { .. }), "{o1:?}");
        let c1 = c1.expect("a batch that only appends is written after the lock");
        assert_eq!(len(), after_first, "checked, not yet written");
        assert_eq!(s.next_seq(), batches[1].span.end_seq());
        assert_eq!(s.durable_next_seq(), batches[1].span.first_seq);
        // The next batch is checked, then waits for the one before: its
        // call returns only once the first commit has run.
        let first_ran = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|scope| {
            let second = scope.spawn(|| {
                let r = deferred(&mut s, &batches[2], &signer);
                let ran = first_ran.load(std::sync::atomic::Ordering::SeqCst);
                (r, ran)
            });
            // The second call reaches the wait for the first commit and
            // blocks there (a deadline, not a sleep).
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            while c1.waiters() == 0 {
                assert!(
                    !second.is_finished(),
                    "returned before the batch before was written"
                );
                assert!(std::time::Instant::now() < deadline, "never waited");
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            assert!(
                !second.is_finished(),
                "returned before the batch before was written"
            );
            assert_eq!(len(), after_first);
            first_ran.store(true, std::sync::atomic::Ordering::SeqCst);
            c1.run(batches[1].torn(), batches[1].frames()).unwrap();
            let (r, ran) = second.join().unwrap();
            assert!(ran, "the second batch went on before the first was durable");
            let (o2, c2) = r.unwrap();
            assert!(matches!(o2, Outcome::Accepted { .. }), "{o2:?}");
            let written = len();
            assert!(written > after_first, "the first batch is written");
            c2.unwrap()
                .run(batches[2].torn(), batches[2].frames())
                .unwrap();
            assert!(len() > written);
        });
        assert_eq!(s.durable_next_seq(), batches[2].span.end_seq());
        ingest_all(&mut s, &batches[3..], &signer);
        assert_eq!(s.next_seq(), batches.last().unwrap().span.end_seq());
        assert_store_verifies(&root, pk);
        // Every checkpoint got its receipt, once, in order.
        let log = s.receipts.lock().unwrap();
        let all = log.for_range(0, u64::MAX).unwrap();
        let sizes: Vec<u64> = all.iter().map(|r| r.tree_size).collect();
        assert!(sizes.windows(2).all(|w| w[0] < w[1]), "{sizes:?}");
        let mut checkpoints = Vec::new();
        for b in &batches {
            let mut off = 0;
            while let FrameAt::Frame { start, end } = frame_at(b.frames(), off) {
                let r = wormlog_spool::record::Record::decode(&b.frames()[start..end]).unwrap();
                if let wormlog_spool::record::Payload::Checkpoint(cp) = r.payload {
                    checkpoints.push(cp.tree_size);
                }
                off = end;
            }
        }
        assert_eq!(sizes, checkpoints);
    }

    #[test]
    fn a_replay_with_new_records_writes_only_the_new_ones_after_the_lock() {
        let t = tempfile::tempdir().unwrap();
        let (pk, batches, signer, root, mut s) = store_after_first(t.path());
        assert!(matches!(
            ingest(&mut s, &batches[1], &signer),
            Outcome::Accepted { .. }
        ));
        // Half of it held, half of it new.
        let mut r = RangeReader::new(t.path().join("spool"));
        r.seek(batches[1].span.first_seq + 20).unwrap();
        let overlap = r.read(u64::MAX, 40, 1 << 20).unwrap();
        assert!(overlap.span.end_seq() > batches[1].span.end_seq());
        let (o, c) = deferred(&mut s, &overlap, &signer).unwrap();
        assert!(
            matches!(o, Outcome::Accepted { next_seq, .. } if next_seq == overlap.span.end_seq()),
            "{o:?}"
        );
        c.expect("appends only")
            .run(overlap.torn(), overlap.frames())
            .unwrap();
        for b in &batches[2..] {
            let (o, c) = deferred(&mut s, b, &signer).unwrap();
            assert!(matches!(o, Outcome::Accepted { .. }), "{o:?}");
            if let Some(c) = c {
                c.run(b.torn(), b.frames()).unwrap();
            }
        }
        assert_eq!(s.next_seq(), batches.last().unwrap().span.end_seq());
        assert_store_verifies(&root, pk);
        let spool = std::fs::read(t.path().join("spool/0000000000000000.wlseg")).unwrap();
        let store = std::fs::read(root.join("agents/web-01/0000000000000000.wlseg")).unwrap();
        assert!(spool == store, "the store mirrors the spool byte for byte");
    }

    #[test]
    fn a_panic_inside_a_commit_fails_the_batch_after_it_instead_of_hanging() {
        let t = tempfile::tempdir().unwrap();
        let (pk, batches, signer, root, mut s) = store_after_first(t.path());
        let (_, c1) = deferred(&mut s, &batches[1], &signer).unwrap();
        let mut c1 = c1.expect("deferred");
        c1.panic_in_run = true;
        let b1 = &batches[1];
        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            c1.run(b1.torn(), b1.frames())
        }));
        assert!(ran.is_err(), "the test's panic");
        // The next batch is refused (within a deadline: a hang fails; the
        // thread is not joined, so a hung one cannot hold the test).
        let (tx, rx) = std::sync::mpsc::channel();
        let b2 = batches[2].clone();
        let ckeys = t.path().join("ckeys");
        std::thread::spawn(move || {
            let signer = Signer::load_or_create(&ckeys, "c1").unwrap();
            let r = deferred(&mut s, &b2, &signer).map(|_| ());
            let _ = tx.send((r, s));
        });
        let (r, mut s) = rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("the batch after a panicked commit hangs");
        assert!(matches!(r, Err(StoreError::EarlierNotStored(_))), "{r:?}");
        ingest_all(&mut s, &batches[1..], &signer);
        assert_store_verifies(&root, pk);
    }

    #[test]
    fn after_a_failed_write_what_follows_the_last_durable_batch_is_cut_not_trusted() {
        let t = tempfile::tempdir().unwrap();
        let (pk, batches, signer, root, mut s) = store_after_first(t.path());
        let seg = root.join("agents/web-01/0000000000000000.wlseg");
        let durable = std::fs::metadata(&seg).unwrap().len();
        // A commit whose batch reached the page cache but whose fdatasync
        // failed: its bytes are in the file, valid records, never answered.
        let (_, c1) = deferred(&mut s, &batches[1], &signer).unwrap();
        let b1 = &batches[1];
        let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
        f.write_all(b1.torn()).unwrap();
        f.write_all(b1.frames()).unwrap();
        drop(f);
        drop(c1.expect("deferred"));
        // The agent sends it again: the store was cut back and takes it as
        // new (written and synced), not as a replay of what it holds.
        assert!(s.take_repairs().is_empty());
        assert!(matches!(
            ingest(&mut s, b1, &signer),
            Outcome::Accepted { .. }
        ));
        let repairs = s.take_repairs();
        assert!(
            repairs
                .iter()
                .any(|r| r.contains(&format!("back to {durable} bytes"))),
            "{repairs:?}"
        );
        assert_eq!(s.next_seq(), b1.span.end_seq());
        ingest_all(&mut s, &batches[2..], &signer);
        assert_store_verifies(&root, pk);
    }

    #[test]
    fn a_commit_never_run_reloads_the_store_and_no_answer_counts_its_batch() {
        let t = tempfile::tempdir().unwrap();
        let (pk, batches, signer, root, mut s) = store_after_first(t.path());
        // A batch checked, its commit dropped unrun (a panic in its
        // handler): the batch after it is refused, not written behind it.
        let (_, c1) = deferred(&mut s, &batches[1], &signer).unwrap();
        drop(c1.expect("deferred"));
        let r = deferred(&mut s, &batches[2], &signer);
        assert!(matches!(r, Err(StoreError::EarlierNotStored(_))), "{r:?}");
        // What an agent asking where to go on is told: what is durable.
        assert_eq!(s.durable_next_seq(), batches[1].span.first_seq);
        // Reloaded: the next seq is what is durable, for a probe too.
        let probe = s
            .ingest_deferred(batches[2].span.first_seq, &[], &[], &signer, &sender())
            .unwrap();
        assert!(
            matches!(probe, (Outcome::Gap { expected_seq }, None) if expected_seq == batches[1].span.first_seq),
            "{probe:?}"
        );
        // The same again with a probe as the next request.
        let (_, c1) = deferred(&mut s, &batches[1], &signer).unwrap();
        drop(c1.expect("deferred"));
        let probe = s
            .ingest_deferred(batches[1].span.end_seq(), &[], &[], &signer, &sender())
            .unwrap();
        assert!(
            matches!(probe, (Outcome::Gap { expected_seq }, None) if expected_seq == batches[1].span.first_seq),
            "{probe:?}"
        );
        // The agent sends them again: stored once, in order.
        ingest_all(&mut s, &batches[1..], &signer);
        assert_eq!(s.next_seq(), batches.last().unwrap().span.end_seq());
        assert_store_verifies(&root, pk);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// Arbitrary bytes, and a real batch with a byte changed or cut,
        /// never panic the store, and a refused batch changes nothing.
        #[test]
        fn refused_batches_change_nothing(
            garbage in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600),
            which in 0usize..6,
            flip in proptest::prelude::any::<usize>(),
            cut in proptest::prelude::any::<usize>(),
            at_seq in 0u64..200,
        ) {
            let t = tempfile::tempdir().unwrap();
            let (pk, batches) = agent_batches(t.path());
            let signer = Signer::load_or_create(&t.path().join("ckeys"), "c1").unwrap();
            let root = t.path().join("store");
            let mut s = AgentStore::open(&root, "web-01", pk, AppendOnly::Off, &signer).unwrap();
            for b in &batches[..2] {
                assert!(matches!(ingest(&mut s, b, &signer), Outcome::Accepted { .. }));
            }
            let seg = root.join("agents/web-01/0000000000000000.wlseg");
            let before = (s.next_seq(), std::fs::read(&seg).unwrap());
            let b = &batches[which.min(batches.len() - 1)];
            let mut bytes = b.frames().to_vec();
            if !bytes.is_empty() {
                let i = flip % bytes.len();
                bytes[i] ^= 0x20;
                bytes.truncate(bytes.len() - cut % bytes.len().min(64));
            }
            for (seq, frames) in [(at_seq, &garbage[..]), (b.span.first_seq, &bytes[..]), (at_seq, &bytes[..])] {
                match s.ingest(seq, &[], frames, &signer, &sender()) {
                    Ok(Outcome::Accepted { .. }) | Err(_) => {}
                    Ok(_) => {
                        assert_eq!((s.next_seq(), std::fs::read(&seg).unwrap()), before.clone());
                    }
                }
            }
            assert!(!root.join("forks").exists());
        }
    }

    #[test]
    fn a_segment_created_just_before_a_crash_is_removed_at_load() {
        let t = tempfile::tempdir().unwrap();
        let (pk, batches) = agent_batches(t.path());
        let signer = Signer::load_or_create(&t.path().join("ckeys"), "c1").unwrap();
        let root = t.path().join("store");
        let dir = root.join("agents/web-01");
        // Segment 0 with its header only (a crash right after Op::Create).
        let header = SegmentHeader {
            segment_no: 0,
            first_seq: 0,
            prev_head: [0; 32],
            agent_id: "web-01".into(),
        }
        .encode();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(segment_path(&dir, 0), &header).unwrap();
        let mut s = AgentStore::open(&root, "web-01", pk, AppendOnly::Off, &signer).unwrap();
        assert_eq!(s.next_seq(), 0);
        let repairs = s.take_repairs();
        assert_eq!(repairs.len(), 1, "{repairs:?}");
        assert!(repairs[0].contains("removed a segment"), "{repairs:?}");
        assert!(s.take_repairs().is_empty(), "told once");
        for b in &batches {
            assert!(matches!(
                ingest(&mut s, b, &signer),
                Outcome::Accepted { .. }
            ));
        }
        let r = verify_spool(&dir, Some(pk), &mut |_, _, _| {}).unwrap();
        assert!(r.ok(), "{:?}", r.failure);
    }

    fn sender() -> crate::forks::Sender {
        crate::forks::Sender("a test".into())
    }

    fn ingest(s: &mut AgentStore, b: &wormlog_spool::reader::Batch, signer: &Signer) -> Outcome {
        s.ingest(b.span.first_seq, b.torn(), b.frames(), signer, &sender())
            .unwrap()
    }

    #[test]
    fn a_snapshot_behind_the_store_is_caught_up_and_a_torn_tail_still_cut() {
        let t = tempfile::tempdir().unwrap();
        let (pk, batches) = agent_batches(t.path());
        let signer = Signer::load_or_create(&t.path().join("ckeys"), "c1").unwrap();
        let root = t.path().join("store");
        let seg = root.join("agents/web-01/0000000000000000.wlseg");
        let state = root.join("agents/web-01/state.json");
        let mut s = AgentStore::open(&root, "web-01", pk, AppendOnly::Off, &signer).unwrap();
        // The first batch writes the snapshot; the next ones, within
        // SNAPSHOT_EVERY, do not.
        for b in &batches[..3] {
            assert!(matches!(
                ingest(&mut s, b, &signer),
                Outcome::Accepted { .. }
            ));
        }
        let behind = crate::snapshot::next_seq(&root.join("agents/web-01"));
        assert_eq!(
            behind,
            Some(batches[0].span.end_seq()),
            "the snapshot is behind"
        );
        // A crash: no drop, no last snapshot. The snapshot is followed to
        // the end of the segment.
        std::mem::forget(s);
        let dir = root.join("agents/web-01");
        let len = |seg: &Path| std::fs::metadata(seg).unwrap().len();
        let snap = || crate::snapshot::read(&dir, "web-01", pk).unwrap();
        let caught = catch_up(&dir, snap(), 0, len(&seg)).expect("followed to the end");
        assert_eq!(caught.next_seq(), batches[2].span.end_seq());
        let mut s = AgentStore::open(&root, "web-01", pk, AppendOnly::Off, &signer).unwrap();
        assert_eq!(s.next_seq(), batches[2].span.end_seq());
        assert!(s.take_repairs().is_empty());
        assert!(matches!(
            ingest(&mut s, &batches[3], &signer),
            Outcome::Accepted { .. }
        ));
        // A clean close writes the snapshot of everything.
        drop(s);
        assert_eq!(
            crate::snapshot::next_seq(&root.join("agents/web-01")),
            Some(batches[3].span.end_seq())
        );
        // A torn tail after a snapshot that is behind: caught up to the last
        // whole record, the tail cut back.
        std::fs::copy(&state, t.path().join("old-state")).unwrap();
        let mut s = AgentStore::open(&root, "web-01", pk, AppendOnly::Off, &signer).unwrap();
        assert!(matches!(
            ingest(&mut s, &batches[4], &signer),
            Outcome::Accepted { .. }
        ));
        std::mem::forget(s);
        std::fs::copy(t.path().join("old-state"), &state).unwrap();
        let whole = std::fs::metadata(&seg).unwrap().len();
        let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
        f.write_all(&batches[5].frames()[..30]).unwrap();
        drop(f);
        assert!(
            catch_up(&dir, snap(), 0, len(&seg)).is_none(),
            "a torn tail"
        );
        let mut s = AgentStore::open(&root, "web-01", pk, AppendOnly::Off, &signer).unwrap();
        assert_eq!(s.next_seq(), batches[4].span.end_seq());
        assert_eq!(std::fs::metadata(&seg).unwrap().len(), whole);
        assert_eq!(s.take_repairs().len(), 1);
    }

    #[test]
    fn replays_gaps_forks_and_lost_receipts() {
        let t = tempfile::tempdir().unwrap();
        let (pk, batches) = agent_batches(t.path());
        let signer = Signer::load_or_create(&t.path().join("ckeys"), "c1").unwrap();
        let root = t.path().join("store");
        let mut s = AgentStore::open(&root, "web-01", pk, AppendOnly::Off, &signer).unwrap();
        // Out of order: the second batch first.
        match ingest(&mut s, &batches[1], &signer) {
            Outcome::Gap { expected_seq } => assert_eq!(expected_seq, 0),
            other => panic!("{other:?}"),
        }
        let first = match ingest(&mut s, &batches[0], &signer) {
            Outcome::Accepted { next_seq, receipts } => {
                assert_eq!(next_seq, batches[0].span.end_seq());
                receipts
            }
            other => panic!("{other:?}"),
        };
        assert!(!first.is_empty(), "the first batch holds checkpoints");
        // A replay gets the very same answer and stores nothing.
        let len = std::fs::metadata(root.join("agents/web-01/0000000000000000.wlseg"))
            .unwrap()
            .len();
        match ingest(&mut s, &batches[0], &signer) {
            Outcome::Accepted { next_seq, receipts } => {
                assert_eq!(next_seq, batches[0].span.end_seq());
                assert_eq!(receipts, first);
            }
            other => panic!("{other:?}"),
        }
        let len2 = std::fs::metadata(root.join("agents/web-01/0000000000000000.wlseg"))
            .unwrap()
            .len();
        assert_eq!(len, len2);
        // The rest, then a batch whose receipts were lost (a failed write,
        // modelled by cutting the receipt log and reopening): a replay
        // brings them back.
        ingest_all(&mut s, &batches[1..], &signer);
        let last = batches.last().unwrap();
        let want = match ingest(&mut s, last, &signer) {
            Outcome::Accepted { receipts, .. } => receipts,
            other => panic!("{other:?}"),
        };
        assert!(
            !want.is_empty(),
            "the last batch holds the final checkpoint"
        );
        drop(s);
        let log = root.join("agents/web-01/receipts");
        let keep = std::fs::metadata(&log).unwrap().len() - 112 * want.len() as u64;
        std::fs::OpenOptions::new()
            .write(true)
            .open(&log)
            .unwrap()
            .set_len(keep)
            .unwrap();
        let mut s = AgentStore::open(&root, "web-01", pk, AppendOnly::Off, &signer).unwrap();
        match ingest(&mut s, last, &signer) {
            Outcome::Accepted { receipts, .. } => {
                assert_eq!(receipts.len(), want.len());
                for (r, w) in receipts.iter().zip(&want) {
                    assert_eq!((r.tree_size, r.root), (w.tree_size, w.root));
                    assert!(r.signature_valid("web-01"));
                }
            }
            other => panic!("{other:?}"),
        }
        // A changed record (same seq, other bytes, CRC fixed) that nothing
        // signed proves: refused, not a fork, and nothing kept.
        let mut forged = batches[2].frames().to_vec();
        let FrameAt::Frame { start, end } = frame_at(&forged, 0) else {
            panic!()
        };
        forged[end - 1] ^= 1;
        let crc = crc32c::crc32c(&forged[start - 4..end]);
        forged[start - 8..start - 4].copy_from_slice(&crc.to_le_bytes());
        match s
            .ingest(batches[2].span.first_seq, &[], &forged, &signer, &sender())
            .unwrap()
        {
            Outcome::Unproven { seq, .. } => assert_eq!(seq, batches[2].span.first_seq),
            other => panic!("{other:?}"),
        }
        assert!(!root.join("forks").exists());
        // A replay cut mid-frame is malformed, not a fork.
        let cut = &batches[2].frames()[..batches[2].frames().len() - 3];
        assert!(matches!(
            s.ingest(batches[2].span.first_seq, &[], cut, &signer, &sender())
                .unwrap(),
            Outcome::Malformed(_)
        ));
        // The store verifies.
        let r = verify_spool(&root.join("agents/web-01"), Some(pk), &mut |_, _, _| {}).unwrap();
        assert!(r.ok(), "{:?}", r.failure);
        assert_eq!(r.records, last.span.end_seq());
    }
}
