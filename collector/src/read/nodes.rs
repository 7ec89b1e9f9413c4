//! Merkle nodes of a stored log for proofs, without hashing the whole
//! store: a perfect subtree that is a left child is read from the frontier
//! of a checkpoint that holds it; a small range is hashed from its
//! records; anything else is split as RFC 9162 splits it.

use super::index::AgentIndex;
use super::scan::{Scan, ScanError};
use std::collections::HashMap;
use std::path::Path;
use wormlog_spool::hash::{Hash, leaf_hash, node_hash};
use wormlog_spool::merkle::{Frontier, root_of};
use wormlog_spool::proofs::{Nodes, frontier_node, is_left_perfect};
use wormlog_spool::record::{Payload, Record};

/// Ranges up to this many records are hashed from the records.
const HASHED: u64 = 1 << 14;

#[derive(Debug)]
pub struct StoreNodes<'a> {
    store: &'a Path,
    index: &'a AgentIndex,
    frontiers: HashMap<u64, Frontier>,
    /// Leaf hashes read, from `leaves.0` on.
    leaves: Option<(u64, Vec<Hash>)>,
    pub records_hashed: u64,
}

impl<'a> StoreNodes<'a> {
    pub fn new(store: &'a Path, index: &'a AgentIndex) -> Self {
        StoreNodes {
            store,
            index,
            frontiers: HashMap::new(),
            leaves: None,
            records_hashed: 0,
        }
    }

    /// The frontier of the checkpoint at seq `m`, if a block starts with
    /// it.
    fn frontier(&mut self, m: u64) -> Result<Option<&Frontier>, ScanError> {
        if !self.frontiers.contains_key(&m) {
            let Some(b) = self.index.all().find(|b| b.seq == m && b.checkpoint) else {
                return Ok(None);
            };
            let rec = super::scan::read_record_at(self.store, b.at)?;
            let r = Record::decode(&rec).map_err(|e| ScanError::Damaged(e.to_string()))?;
            let Payload::Checkpoint(cp) = r.payload else {
                return Err(ScanError::Damaged(format!(
                    "index: seq {m} is not a checkpoint"
                )));
            };
            let f = Frontier::from_parts(cp.tree_size, cp.frontier)
                .ok_or_else(|| ScanError::Damaged(format!("checkpoint {m}: frontier")))?;
            self.frontiers.insert(m, f);
        }
        Ok(self.frontiers.get(&m))
    }

    /// A checkpoint whose frontier holds the left perfect subtree
    /// `[lo, hi)`: one at a seq in `[hi, hi + (hi - lo))`.
    fn holding(&self, lo: u64, hi: u64) -> Option<u64> {
        let n = hi - lo;
        self.index
            .all()
            .filter(|b| b.checkpoint && b.seq >= hi && b.seq < hi + n)
            .map(|b| b.seq)
            .next()
    }

    /// The leaf hashes of records `[lo, hi)`.
    pub fn leaves(&mut self, lo: u64, hi: u64) -> Result<Vec<Hash>, ScanError> {
        if let Some((at, v)) = &self.leaves
            && *at <= lo
            && hi <= at + v.len() as u64
        {
            return Ok(v[(lo - at) as usize..(hi - at) as usize].to_vec());
        }
        let b = self
            .index
            .block_of(lo)
            .ok_or_else(|| ScanError::Damaged(format!("record {lo} is not stored")))?;
        let mut scan = Scan::from(self.store, b.at)?;
        let mut seq = b.seq;
        let mut out = Vec::with_capacity((hi - lo) as usize);
        while seq < hi {
            let Some((_, rec)) = scan.next_record()? else {
                return Err(ScanError::Damaged(format!("record {seq} is not stored")));
            };
            if seq >= lo {
                out.push(leaf_hash(rec));
            }
            seq += 1;
        }
        self.records_hashed += hi - lo;
        Ok(out)
    }

    /// Reads and keeps the leaves `[lo, hi)` (the records around a
    /// disclosed entry), so the nodes inside are not read again.
    pub fn keep_leaves(&mut self, lo: u64, hi: u64) -> Result<(), ScanError> {
        let v = self.leaves(lo, hi)?;
        self.leaves = Some((lo, v));
        Ok(())
    }
}

impl Nodes for StoreNodes<'_> {
    type Error = ScanError;

    fn node(&mut self, lo: u64, hi: u64) -> Result<Hash, ScanError> {
        let n = hi - lo;
        if let Some((at, v)) = &self.leaves
            && *at <= lo
            && hi <= at + v.len() as u64
        {
            return Ok(root_of(&v[(lo - at) as usize..(hi - at) as usize]));
        }
        if is_left_perfect(lo, hi)
            && let Some(m) = self.holding(lo, hi)
            && let Some(f) = self.frontier(m)?
            && let Some(h) = frontier_node(f, lo, hi)
        {
            return Ok(h);
        }
        if n <= HASHED {
            return Ok(root_of(&self.leaves(lo, hi)?));
        }
        let k = if n.is_power_of_two() {
            n / 2
        } else {
            1u64 << (63 - (n - 1).leading_zeros())
        };
        Ok(node_hash(&self.node(lo, lo + k)?, &self.node(lo + k, hi)?))
    }
}
