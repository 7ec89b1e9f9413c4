//! The uses of SHA-256, kept apart by a one-byte prefix (docs/FORMAT.md §4):
//! leaf `0x00`, interior node `0x01`. The chain needs no hash of its own:
//! each record holds the leaf hash of the one before it.

use sha2::{Digest, Sha256};

/// A SHA-256 value.
pub type Hash = [u8; 32];

/// 32 zero bytes: the chain head before the first record.
pub const ZERO32: Hash = [0u8; 32];

const LEAF: u8 = 0x00;
const NODE: u8 = 0x01;

/// `H(0x00 || record)`: the RFC 9162 leaf hash of a record.
#[inline]
pub fn leaf_hash(record: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([LEAF]);
    h.update(record);
    h.finalize().into()
}

/// `H(0x01 || left || right)`: an interior node of the Merkle tree.
#[inline]
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut buf = [0u8; 65];
    buf[0] = NODE;
    buf[1..33].copy_from_slice(left);
    buf[33..].copy_from_slice(right);
    Sha256::digest(buf).into()
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
