//! The uses of SHA-256, kept apart by a one-byte prefix (docs/FORMAT.md §4):
//! leaf `0x00`, interior node `0x01`. The chain needs no hash of its own:
//! each record holds the leaf hash of the one before it.

use sha2::block_api::compress256;
use sha2::{Digest, Sha256};

/// A SHA-256 value.
pub type Hash = [u8; 32];

/// 32 zero bytes: the chain head before the first record.
pub const ZERO32: Hash = [0u8; 32];

const LEAF: u8 = 0x00;
const NODE: u8 = 0x01;

/// The SHA-256 initial state (FIPS 180-4, 5.3.3).
const IV: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

fn output(state: &[u32; 8]) -> Hash {
    let mut out = [0u8; 32];
    for (o, w) in out.chunks_exact_mut(4).zip(state) {
        o.copy_from_slice(&w.to_be_bytes());
    }
    out
}

/// SHA-256 of `prefix || data` straight from the caller's bytes: whole
/// blocks are compressed in place, only the first and the padded last one
/// are assembled. These two hashes are most of the spool's CPU time, so
/// they skip the generic `Digest` buffering (checked against it in tests).
#[inline]
fn sha256_prefixed(prefix: u8, data: &[u8]) -> Hash {
    let mut state = IV;
    let total = data.len() + 1;
    let mut block = [0u8; 64];
    block[0] = prefix;
    let head = data.len().min(63);
    block[1..1 + head].copy_from_slice(&data[..head]);
    let rest = &data[head..];
    let tail: &[u8];
    if total >= 64 {
        compress256(&mut state, &[block]);
        let (blocks, remainder) = rest.as_chunks::<64>();
        compress256(&mut state, blocks);
        tail = remainder;
        block = [0u8; 64];
        block[..tail.len()].copy_from_slice(tail);
    } else {
        tail = &block[..0];
    }
    // `block` holds the last partial block (`used` bytes): pad it.
    let used = if total >= 64 { tail.len() } else { total };
    block[used] = 0x80;
    let bits = (total as u64) * 8;
    if used + 1 + 8 > 64 {
        compress256(&mut state, &[block]);
        block = [0u8; 64];
    }
    block[56..].copy_from_slice(&bits.to_be_bytes());
    compress256(&mut state, &[block]);
    output(&state)
}

/// `H(0x00 || record)`: the RFC 9162 leaf hash of a record.
#[inline]
pub fn leaf_hash(record: &[u8]) -> Hash {
    sha256_prefixed(LEAF, record)
}

/// `H(0x01 || left || right)`: an interior node of the Merkle tree.
#[inline]
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut b = [[0u8; 64]; 2];
    b[0][0] = NODE;
    b[0][1..33].copy_from_slice(left);
    b[0][33..64].copy_from_slice(&right[..31]);
    b[1][0] = right[31];
    b[1][1] = 0x80;
    b[1][56..].copy_from_slice(&(65u64 * 8).to_be_bytes());
    let mut state = IV;
    compress256(&mut state, &b);
    output(&state)
}

/// Plain SHA-256 of some bytes.
pub fn sha256(data: &[u8]) -> Hash {
    Sha256::digest(data).into()
}

/// Lowercase hex of a byte string.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// Parses 64 hex digits into 32 bytes.
pub fn parse_hex32(s: &str) -> Option<Hash> {
    let b = s.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = digit(b[2 * i])? << 4 | digit(b[2 * i + 1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_level_hashes_match_the_digest_api() {
        let data: Vec<u8> = (0..400u32).map(|i| (i * 7 + 3) as u8).collect();
        for len in 0..data.len() {
            let d = &data[..len];
            let mut want = Sha256::new();
            want.update([0u8]);
            want.update(d);
            assert_eq!(
                leaf_hash(d),
                <[u8; 32]>::from(want.finalize()),
                "length {len}"
            );
        }
        let (l, r) = ([1u8; 32], [2u8; 32]);
        let mut want = Sha256::new();
        want.update([1u8]);
        want.update(l);
        want.update(r);
        assert_eq!(node_hash(&l, &r), <[u8; 32]>::from(want.finalize()));
    }
}
