//! The RFC 9162 tree, cross-checked against an independent implementation
//! (the `ct-merkle` crate) under proptest: roots, inclusion proofs and
//! consistency proofs, produced by each and verified by the other.

use ct_merkle::mem_backed_tree::MemoryBackedTree;
use ct_merkle::{ConsistencyProof, InclusionProof, RootHash};
use proptest::prelude::*;
use sha2::Sha256;
use wormlog_spool::hash::{Hash, leaf_hash};
use wormlog_spool::merkle::{
    Frontier, consistency_proof, inclusion_proof, root_of, verify_consistency, verify_inclusion,
};

fn flat(p: &[Hash]) -> Vec<u8> {
    p.iter().flatten().copied().collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn agrees_with_ct_merkle(leaves in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 1..70),
                             pick in any::<prop::sample::Index>(),
                             old in any::<prop::sample::Index>()) {
        let mut theirs = MemoryBackedTree::<Sha256, Vec<u8>>::new();
        let mut frontier = Frontier::new();
        let mut hashes = Vec::new();
        for l in &leaves {
            theirs.push(l.clone());
            let h = leaf_hash(l);
            frontier.push(h);
            hashes.push(h);
            let their_root: Hash = (*theirs.root().as_bytes()).into();
            prop_assert_eq!(frontier.root(), their_root);
        }
        prop_assert_eq!(root_of(&hashes), frontier.root());
        let n = leaves.len();
        let root = frontier.root();
        let their_root = theirs.root();

        // Inclusion: same bytes, and each verifies the other's.
        let i = pick.index(n);
        let ours = inclusion_proof(&hashes, i as u64).unwrap();
        let theirs_p = theirs.prove_inclusion(i);
        prop_assert_eq!(flat(&ours), theirs_p.as_bytes().to_vec());
        verify_inclusion(&hashes[i], i as u64, n as u64, &ours, &root).unwrap();
        let reparsed = InclusionProof::<Sha256>::from_bytes(flat(&ours));
        prop_assert!(their_root.verify_inclusion(&leaves[i], i as u64, &reparsed).is_ok());

        // Consistency from a smaller tree (ct-merkle needs old size >= 1).
        let m = old.index(n) + 1;
        let ours_c = consistency_proof(&hashes, m as u64).unwrap();
        let old_root = root_of(&hashes[..m]);
        verify_consistency(m as u64, n as u64, &ours_c, &old_root, &root).unwrap();
        if m < n {
            let theirs_c = theirs.prove_consistency(n - m);
            prop_assert_eq!(flat(&ours_c), theirs_c.as_bytes().to_vec());
            let old_rh = RootHash::<Sha256>::new(old_root.into(), m as u64);
            let reparsed = ConsistencyProof::<Sha256>::try_from_bytes(flat(&ours_c)).unwrap();
            prop_assert!(their_root.verify_consistency(&old_rh, &reparsed).is_ok());
        }
    }
}
