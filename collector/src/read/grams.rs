//! Trigram bitmaps: for each block of records, one bit per keyed hash of
//! every three-byte sequence (ASCII lower-cased) of its bodies and field
//! values. A text search skips a block whose bitmap lacks one of the
//! needle's trigrams: a block that holds the needle has all of them, so a
//! skip never loses a match; a block that has them all is read and
//! matched for real.
//!
//! The hash is keyed (SHA-256 of a secret key and the trigram), so that
//! the index of an encrypted store, built from opened bodies, cannot be
//! asked "does this block hold these words" by someone without the key.

use sha2::{Digest, Sha256};

/// Smallest and largest bitmap, as log2 of its bits.
const MIN_LOG2: u32 = 10;
const MAX_LOG2: u32 = 20;

/// The set of distinct trigrams seen in a block.
pub struct GramSet {
    /// One bit per possible trigram (2^24): 2 MiB.
    seen: Vec<u64>,
    list: Vec<u32>,
}

impl std::fmt::Debug for GramSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GramSet({} trigrams)", self.list.len())
    }
}

impl Default for GramSet {
    fn default() -> Self {
        GramSet {
            seen: vec![0; (1 << 24) / 64],
            list: Vec::new(),
        }
    }
}

#[inline]
fn lower(b: u8) -> u8 {
    b.to_ascii_lowercase()
}

impl GramSet {
    /// Adds the trigrams of `text`.
    pub fn add(&mut self, text: &[u8]) {
        if text.len() < 3 {
            return;
        }
        let mut g = (u32::from(lower(text[0])) << 8) | u32::from(lower(text[1]));
        for &b in &text[2..] {
            g = ((g << 8) | u32::from(lower(b))) & 0xff_ffff;
            let (w, bit) = ((g >> 6) as usize, g & 63);
            if self.seen[w] >> bit & 1 == 0 {
                self.seen[w] |= 1 << bit;
                self.list.push(g);
            }
        }
    }

    /// The bitmap of what was added (and the set emptied for the next
    /// block): at most a quarter of its bits set.
    pub fn take_bitmap(&mut self, key: &[u8; 32]) -> Bitmap {
        let n = self.list.len().max(1) as u64;
        let log2 = (64 - (n * 4 - 1).leading_zeros()).clamp(MIN_LOG2, MAX_LOG2);
        let mut bits = vec![0u64; 1 << (log2 - 6)];
        for &g in &self.list {
            let h = gram_hash(key, g) & ((1 << log2) - 1);
            bits[(h >> 6) as usize] |= 1 << (h & 63);
            self.seen[(g >> 6) as usize] = 0;
        }
        self.list.clear();
        Bitmap { log2, bits }
    }
}

fn gram_hash(key: &[u8; 32], g: u32) -> u64 {
    let mut h = Sha256::new();
    h.update(key);
    h.update(&g.to_be_bytes()[1..]);
    u64::from_le_bytes(h.finalize()[..8].try_into().expect("8 bytes"))
}

/// A block's bitmap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bitmap {
    pub log2: u32,
    pub bits: Vec<u64>,
}

impl Bitmap {
    pub fn to_bytes(&self) -> Vec<u8> {
        self.bits.iter().flat_map(|w| w.to_le_bytes()).collect()
    }

    pub fn from_bytes(log2: u32, b: &[u8]) -> Option<Bitmap> {
        if !(MIN_LOG2..=MAX_LOG2).contains(&log2) || b.len() != 1 << (log2 - 3) {
            return None;
        }
        Some(Bitmap {
            log2,
            bits: b
                .chunks_exact(8)
                .map(|c| u64::from_le_bytes(c.try_into().expect("8")))
                .collect(),
        })
    }

    /// Whether every trigram of the needle may be in the block.
    pub fn may_hold(&self, needle: &Needle) -> bool {
        needle.hashes.iter().all(|h| {
            let h = h & ((1 << self.log2) - 1);
            self.bits[(h >> 6) as usize] >> (h & 63) & 1 == 1
        })
    }
}

/// A text to find, lower-cased, with its trigrams' hashes.
#[derive(Debug, Clone)]
pub struct Needle {
    pub lower: Vec<u8>,
    hashes: Vec<u64>,
}

impl Needle {
    pub fn new(text: &str, key: &[u8; 32]) -> Needle {
        let lower: Vec<u8> = text.bytes().map(lower).collect();
        let mut hashes: Vec<u64> = lower
            .windows(3)
            .map(|w| gram_hash(key, u32::from_be_bytes([0, w[0], w[1], w[2]])))
            .collect();
        hashes.sort_unstable();
        hashes.dedup();
        Needle { lower, hashes }
    }

    /// Whether `hay` holds the needle (ASCII case-insensitive).
    pub fn found_in(&self, hay: &[u8], scratch: &mut Vec<u8>) -> bool {
        if self.lower.is_empty() {
            return true;
        }
        scratch.clear();
        scratch.extend(hay.iter().map(|&b| lower(b)));
        memchr::memmem::find(scratch, &self.lower).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_holding_the_needle_is_never_skipped() {
        let key = [7u8; 32];
        let mut set = GramSet::default();
        set.add(b"Patient MRN-4711 admitted by dr.House");
        set.add(b"ab");
        let bm = set.take_bitmap(&key);
        for t in ["mrn-4711", "PATIENT", "house", "d by", "mrn"] {
            assert!(bm.may_hold(&Needle::new(t, &key)), "{t}");
        }
        // The set is empty again: a new block starts from nothing.
        set.add(b"zzzzzz");
        let other = set.take_bitmap(&key);
        assert!(!other.may_hold(&Needle::new("mrn-4711", &key)));
        let bytes = bm.to_bytes();
        assert_eq!(Bitmap::from_bytes(bm.log2, &bytes), Some(bm.clone()));
        // Another key: other bits.
        let bm2 = {
            let mut s = GramSet::default();
            s.add(b"Patient MRN-4711 admitted by dr.House");
            s.take_bitmap(&[8u8; 32])
        };
        assert_ne!(bm.bits, bm2.bits);
        let mut scratch = Vec::new();
        assert!(Needle::new("Mrn-47", &key).found_in(b"x MRN-4711", &mut scratch));
        assert!(!Needle::new("mrn-48", &key).found_in(b"x MRN-4711", &mut scratch));
    }
}
