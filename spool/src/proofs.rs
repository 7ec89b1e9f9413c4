//! RFC 9162 inclusion and consistency proofs computed from any source of
//! subtree hashes, not only from the full list of leaves: a collector with
//! tens of millions of records answers a proof from the frontiers its
//! checkpoints carry and the few records around the leaf
//! ([`crate::merkle`] holds the leaf-list forms and the checks).

use crate::hash::{Hash, node_hash};
use crate::merkle::{Frontier, ProofError};

/// Gives `MTH(D[lo:hi])` for `lo < hi`.
pub trait Nodes {
    type Error;
    fn node(&mut self, lo: u64, hi: u64) -> Result<Hash, Self::Error>;
}

/// Why a proof could not be made.
#[derive(Debug, thiserror::Error)]
pub enum MakeError<E> {
    #[error(transparent)]
    Range(ProofError),
    #[error(transparent)]
    Source(E),
}

/// The largest power of two smaller than `n` (`n >= 2`).
fn split(n: u64) -> u64 {
    1u64 << (63 - (n - 1).leading_zeros())
}

/// The inclusion proof of leaf `index` in the tree of `size` leaves (RFC
/// 9162 §2.1.3.1), the same hashes in the same order as
/// [`crate::merkle::inclusion_proof`].
pub fn inclusion<N: Nodes>(
    nodes: &mut N,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, MakeError<N::Error>> {
    if index >= size {
        return Err(MakeError::Range(ProofError::IndexOutOfRange {
            index,
            size,
        }));
    }
    let mut out = Vec::new();
    path(nodes, index, 0, size, &mut out).map_err(MakeError::Source)?;
    Ok(out)
}

fn path<N: Nodes>(
    nodes: &mut N,
    m: u64,
    lo: u64,
    hi: u64,
    out: &mut Vec<Hash>,
) -> Result<(), N::Error> {
    let n = hi - lo;
    if n <= 1 {
        return Ok(());
    }
    let k = split(n);
    if m < k {
        path(nodes, m, lo, lo + k, out)?;
        out.push(nodes.node(lo + k, hi)?);
    } else {
        path(nodes, m - k, lo + k, hi, out)?;
        out.push(nodes.node(lo, lo + k)?);
    }
    Ok(())
}

/// The consistency proof between the trees of `old` and `new` leaves (RFC
/// 9162 §2.1.4.1), as [`crate::merkle::consistency_proof`] gives it.
pub fn consistency<N: Nodes>(
    nodes: &mut N,
    old: u64,
    new: u64,
) -> Result<Vec<Hash>, MakeError<N::Error>> {
    if old > new {
        return Err(MakeError::Range(ProofError::SizeOrder { old, new }));
    }
    let mut out = Vec::new();
    if old > 0 && old < new {
        subproof(nodes, old, 0, new, true, &mut out).map_err(MakeError::Source)?;
    }
    Ok(out)
}

fn subproof<N: Nodes>(
    nodes: &mut N,
    m: u64,
    lo: u64,
    hi: u64,
    complete: bool,
    out: &mut Vec<Hash>,
) -> Result<(), N::Error> {
    let n = hi - lo;
    if m == n {
        if !complete {
            out.push(nodes.node(lo, hi)?);
        }
        return Ok(());
    }
    let k = split(n);
    if m <= k {
        subproof(nodes, m, lo, lo + k, complete, out)?;
        out.push(nodes.node(lo + k, hi)?);
    } else {
        subproof(nodes, m - k, lo + k, hi, false, out)?;
        out.push(nodes.node(lo, lo + k)?);
    }
    Ok(())
}

/// `MTH(D[lo:hi])` for a range that the frontier of a tree of `f.size()`
/// leaves holds whole: one of its perfect subtrees, or a run of them that
/// ends at the tree's end (the window a consistency proof asks for).
pub fn frontier_node(f: &Frontier, lo: u64, hi: u64) -> Option<Hash> {
    let size = f.size();
    if lo >= hi || hi > size {
        return None;
    }
    let bits = (0..64u32).rev().filter(|b| size >> b & 1 == 1);
    let mut start = 0u64;
    let mut run: Vec<Hash> = Vec::new();
    for (node, bit) in f.nodes().iter().zip(bits) {
        let end = start + (1u64 << bit);
        if start == lo || !run.is_empty() {
            run.push(*node);
        }
        if !run.is_empty() && end == hi {
            // A run of perfect subtrees, each smaller than the one before,
            // is the tree over its leaves: fold it from the right.
            let (last, rest) = run.split_last()?;
            return Some(rest.iter().rev().fold(*last, |acc, l| node_hash(l, &acc)));
        }
        if end >= hi {
            return None;
        }
        start = end;
    }
    None
}

/// Whether `[lo, hi)` is a perfect subtree that is the left child of its
/// parent, so a frontier of any size in `[hi, hi + (hi - lo))` holds it.
pub fn is_left_perfect(lo: u64, hi: u64) -> bool {
    let n = hi - lo;
    n.is_power_of_two() && lo.is_multiple_of(n) && (lo / n).is_multiple_of(2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::sha256;
    use crate::merkle::{consistency_proof, inclusion_proof, root_of};

    struct Leaves(Vec<Hash>);
    impl Nodes for Leaves {
        type Error = ();
        fn node(&mut self, lo: u64, hi: u64) -> Result<Hash, ()> {
            Ok(root_of(&self.0[lo as usize..hi as usize]))
        }
    }

    fn leaves(n: u64) -> Vec<Hash> {
        (0..n).map(|i| sha256(&i.to_le_bytes())).collect()
    }

    #[test]
    fn proofs_match_the_leaf_list_forms() {
        let all = leaves(70);
        for size in 1..=70u64 {
            let mut src = Leaves(all[..size as usize].to_vec());
            for i in 0..size {
                assert_eq!(
                    inclusion(&mut src, i, size).unwrap(),
                    inclusion_proof(&all[..size as usize], i).unwrap()
                );
            }
            for old in 0..=size {
                assert_eq!(
                    consistency(&mut src, old, size).unwrap(),
                    consistency_proof(&all[..size as usize], old).unwrap()
                );
            }
        }
    }

    #[test]
    fn frontier_nodes_are_the_subtrees_and_runs_it_holds() {
        let all = leaves(64);
        for size in 1..=64u64 {
            let mut f = Frontier::new();
            for l in &all[..size as usize] {
                f.push(*l);
            }
            for lo in 0..size {
                for hi in lo + 1..=size {
                    let got = frontier_node(&f, lo, hi);
                    if let Some(h) = got {
                        assert_eq!(
                            h,
                            root_of(&all[lo as usize..hi as usize]),
                            "{size} {lo} {hi}"
                        );
                    }
                    // Every left perfect subtree ending at or before the
                    // size, whose parent does not fit, is there.
                    if is_left_perfect(lo, hi) && hi <= size && size < hi + (hi - lo) {
                        assert!(got.is_some(), "{size}: [{lo},{hi}) should be held");
                    }
                }
            }
        }
    }
}
