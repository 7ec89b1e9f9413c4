//! Following an agent's chain as it arrives in batches (the collector's
//! side of forwarding, docs/FORMAT.md §10).
//!
//! A [`Follower`] checks a batch of frames against everything it has
//! accepted before — the chain rules of [`crate::chain`] plus the segment
//! structure of [`crate::structure`] — and, only if every record passes, returns the writes
//! that mirror the agent's segments byte for byte: which segment files to
//! create (with the same header the agent wrote), what to append, which
//! segment is complete. A batch is all or nothing: a rejected batch leaves
//! the follower as it was.

use crate::chain::ChainCheck;
use crate::frame::{FrameAt, frame_at};
use crate::hash::{Hash, leaf_hash};
use crate::record::{Payload, Record, RecoveryCause};
use crate::structure::{
    check_anchor_place, check_key_place, check_recovery_at, check_seal, expected_header,
    opens_segment, unsealed_end,
};
use std::ops::Range;

pub use crate::structure::SegmentCursor;

/// A write the store must make, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Create segment file `no` starting with `header`.
    Create { no: u64, header: Vec<u8> },
    /// Append the torn region given with the batch to segment `no`.
    AppendTorn { no: u64 },
    /// Append `frames[range]` of the batch to segment `no`.
    Append { no: u64, range: Range<usize> },
    /// Segment `no` is complete: make it immutable.
    Close { no: u64 },
}

/// What an accepted batch changes.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub ops: Vec<Op>,
    pub records: u64,
    /// (tree_size, root) of each checkpoint in the batch.
    pub checkpoints: Vec<(u64, Hash)>,
}

/// Why a batch was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The batch does not start at the next expected record.
    #[error("batch starts at seq {got}, expected {expected}")]
    NotNext { expected: u64, got: u64 },
    /// A record breaks the rules; `seq` is where.
    #[error("record {seq}: {reason}")]
    Invalid { seq: u64, reason: String },
    /// The bytes are not whole frames.
    #[error("{0}")]
    Framing(String),
}

/// The incremental verifier of one agent's chain. Two followers are equal
/// when all they know is (`PartialEq`: a refused batch leaves it equal).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Follower {
    pub chain: ChainCheck,
    pub cursor: SegmentCursor,
}

impl Follower {
    /// A follower for a new agent whose first public key is `first_pubkey`.
    pub fn new(agent_id: &str, first_pubkey: Option<[u8; 32]>) -> Self {
        let mut chain = ChainCheck::new(first_pubkey).with_root_window(4096);
        chain.agent_id = Some(agent_id.to_owned());
        Follower {
            chain,
            cursor: SegmentCursor {
                no: 0,
                len: 0,
                records: 0,
                anchored: false,
                keys: Default::default(),
                sealed: false,
            },
        }
    }

    /// A follower that resumes where a verification of the store ended
    /// (`report` must be a passing report). The last segment's length is
    /// that of its good records (a tail in progress is not counted).
    pub fn from_report(report: &crate::verify::Report) -> Option<Self> {
        let mut cursor = report.last_segment.clone()?;
        cursor.len -= report.tail_in_progress_bytes.min(cursor.len);
        let mut chain = ChainCheck::resume(
            report.agent_id.clone()?,
            report.first_pubkey?,
            report.records,
            report.head,
            report.frontier.clone(),
            report.epoch,
            report.key?,
        )
        .with_root_window(4096);
        chain.key_authenticated = report.key_authenticated;
        // The roots of the checkpoints before the resume point are not
        // kept: a receipt naming one (another collector's, sent after a
        // failover) is checked by its signature, as after pruning; a full
        // verification from the genesis record checks its root.
        chain.pruned_below = chain.pruned_below.max(chain.next_seq);
        Some(Follower { chain, cursor })
    }

    pub fn next_seq(&self) -> u64 {
        self.chain.next_seq
    }

    /// Checks a batch: `torn` is the torn region of the current segment
    /// (empty unless the batch starts with a torn-tail recovery record),
    /// `frames` whole frames. On success the follower has advanced and the
    /// plan says what to write; on refusal nothing changed.
    pub fn accept(&mut self, torn: &[u8], frames: &[u8]) -> Result<Plan, Refusal> {
        let mut next = self.clone();
        let plan = next.accept_inner(torn, frames)?;
        *self = next;
        Ok(plan)
    }

    fn accept_inner(&mut self, torn: &[u8], frames: &[u8]) -> Result<Plan, Refusal> {
        let mut plan = Plan::default();
        let mut off = 0usize;
        // Start of the run of frames not yet assigned to an Append op.
        let mut run_start = 0usize;
        let mut first = true;
        while off < frames.len() {
            let (start, end) = match frame_at(frames, off) {
                FrameAt::Frame { start, end } => (start, end),
                FrameAt::Incomplete | FrameAt::End => {
                    return Err(Refusal::Framing(format!(
                        "incomplete frame at byte {off} of the batch"
                    )));
                }
                FrameAt::Bad(b) => {
                    return Err(Refusal::Framing(format!("byte {off} of the batch: {b}")));
                }
            };
            let bytes = &frames[start..end];
            let seq = self.chain.next_seq;
            let invalid = |reason: String| Refusal::Invalid { seq, reason };
            let rec = Record::decode(bytes).map_err(|e| invalid(e.to_string()))?;
            if first && rec.seq != seq {
                return Err(Refusal::NotNext {
                    expected: seq,
                    got: rec.seq,
                });
            }
            self.chain.check_link(&rec).map_err(invalid)?;
            let is_recovery = matches!(rec.payload, Payload::Recovery { .. });
            if first && !torn.is_empty() && !is_recovery {
                return Err(Refusal::Framing(
                    "a torn region must come with the recovery record that names it".into(),
                ));
            }
            // Segment transitions happen before the record is placed.
            if let Payload::Recovery { cause, .. } = &rec.payload {
                // The torn region sent with the batch is the end of the
                // segment as the agent has it.
                let end = unsealed_end(&self.cursor, seq, torn);
                check_recovery_at(&rec.payload, true, end.as_ref(), self.cursor.no + 1)
                    .map_err(invalid)?;
                if *cause != RecoveryCause::TornTail && !torn.is_empty() {
                    return Err(invalid(
                        "a torn region sent with a recovery that is not a torn tail".into(),
                    ));
                }
            }
            if let Some(no) = opens_segment(&self.cursor, is_recovery) {
                flush_run(&mut plan, self.cursor.no, run_start..off);
                if is_recovery {
                    if !torn.is_empty() {
                        plan.ops.push(Op::AppendTorn { no: self.cursor.no });
                    }
                    plan.ops.push(Op::Close { no: self.cursor.no });
                }
                self.open_segment(&mut plan, no);
                run_start = off;
            }
            let anchored_before = self.cursor.anchored;
            self.cursor.anchored =
                check_anchor_place(rec.kind, self.cursor.anchored).map_err(invalid)?;
            check_key_place(
                &mut self.cursor.keys,
                &rec.payload,
                self.cursor.records,
                anchored_before,
            )
            .map_err(invalid)?;
            self.chain.check_payload(&rec, bytes).map_err(invalid)?;
            if check_seal(&rec.payload, self.cursor.no).map_err(invalid)? {
                self.cursor.sealed = true;
            }
            if let Payload::Checkpoint(cp) = &rec.payload {
                plan.checkpoints.push((cp.tree_size, cp.root));
            }
            self.chain.advance(leaf_hash(bytes));
            self.cursor.records += 1;
            self.cursor.len += (end - off) as u64;
            plan.records += 1;
            off = end;
            first = false;
            if self.cursor.sealed {
                flush_run(&mut plan, self.cursor.no, run_start..off);
                plan.ops.push(Op::Close { no: self.cursor.no });
                run_start = off;
            }
        }
        if !torn.is_empty() && plan.records == 0 {
            return Err(Refusal::Framing(
                "a torn region must come with the recovery record that names it".into(),
            ));
        }
        flush_run(&mut plan, self.cursor.no, run_start..off);
        Ok(plan)
    }

    fn open_segment(&mut self, plan: &mut Plan, no: u64) {
        let header = expected_header(no, &self.chain).encode();
        self.cursor = SegmentCursor {
            no,
            len: header.len() as u64,
            records: 0,
            anchored: false,
            keys: Default::default(),
            sealed: false,
        };
        plan.ops.push(Op::Create { no, header });
    }
}

fn flush_run(plan: &mut Plan, no: u64, range: Range<usize>) {
    if !range.is_empty() {
        plan.ops.push(Op::Append { no, range });
    }
}
