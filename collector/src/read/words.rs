//! Word filters: for each block of records, a Bloom filter of the words
//! (ASCII case-folded) of its bodies and field values. A text search
//! matches whole words — the text found where it neither starts nor ends
//! inside a longer word — so every word of the text is a word of a record
//! that matches it, and a block whose filter lacks one of them cannot hold
//! a match and is skipped. A block that may hold them all is read and
//! matched for real; the filter never decides a match.
//!
//! Words are hashed with a secret key (SHA-256 of the key and the word),
//! so that the index of an encrypted store, built from opened bodies,
//! cannot be asked "does this block hold this name" without the key.

use sha2::{Digest, Sha256};
use std::collections::HashSet;

/// Smallest and largest filter, in 64-bit words.
const MIN_WORDS: usize = 16;
pub const MAX_WORDS: usize = 1 << 17;
/// Bits per distinct word.
const BITS_PER_WORD: usize = 16;
/// Hashes per word: with 16 bits a word or more, under 0.3% false
/// positives.
const HASHES: u64 = 6;
/// The longest word hashed (a longer run is hashed by its first bytes).
const MAX_WORD: usize = 64;

/// Bytes that make up words: ASCII letters and digits, `_`, and every
/// byte of a UTF-8 multi-byte character.
#[inline]
pub fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80
}

/// The words of `text`, ASCII lower-cased.
fn words(text: &[u8]) -> impl Iterator<Item = &[u8]> {
    text.split(|b| !is_word(*b)).filter(|w| !w.is_empty())
}

/// The distinct words seen in a block.
#[derive(Debug, Default)]
pub struct WordSet {
    seen: HashSet<Vec<u8>>,
    scratch: Vec<u8>,
}

impl WordSet {
    /// Adds the words of `text`.
    pub fn add(&mut self, text: &[u8]) {
        for w in words(text) {
            let w = &w[..w.len().min(MAX_WORD)];
            self.scratch.clear();
            self.scratch.extend(w.iter().map(u8::to_ascii_lowercase));
            if !self.seen.contains(self.scratch.as_slice()) {
                self.seen.insert(self.scratch.clone());
            }
        }
    }

    /// The filter of what was added (and the set emptied for the next
    /// block).
    pub fn take_filter(&mut self, key: &[u8; 32]) -> WordFilter {
        let words = (self.seen.len() * BITS_PER_WORD)
            .div_ceil(64)
            .clamp(MIN_WORDS, MAX_WORDS);
        let mut bm = WordFilter {
            bits: vec![0u64; words],
        };
        let nbits = (words * 64) as u64;
        for w in self.seen.drain() {
            for h in positions(key, &w, nbits) {
                bm.bits[(h >> 6) as usize] |= 1 << (h & 63);
            }
        }
        bm
    }
}

/// The filter positions of a (lower-cased) word.
fn positions(key: &[u8; 32], word: &[u8], nbits: u64) -> impl Iterator<Item = u64> {
    spread(hashes(key, word), nbits)
}

/// The keyed hash of a word: two 64-bit halves for double hashing.
fn hashes(key: &[u8; 32], word: &[u8]) -> (u64, u64) {
    let mut h = Sha256::new();
    h.update(key);
    h.update(word);
    let d = h.finalize();
    let h1 = u64::from_le_bytes(d[..8].try_into().expect("8"));
    let h2 = u64::from_le_bytes(d[8..16].try_into().expect("8")) | 1;
    (h1, h2)
}

/// A word's positions in a filter of `nbits` bits.
fn spread((h1, h2): (u64, u64), nbits: u64) -> impl Iterator<Item = u64> {
    (0..HASHES).map(move |i| h1.wrapping_add(i.wrapping_mul(h2)) % nbits)
}

/// A block's filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WordFilter {
    pub bits: Vec<u64>,
}

impl WordFilter {
    pub fn to_bytes(&self) -> Vec<u8> {
        self.bits.iter().flat_map(|w| w.to_le_bytes()).collect()
    }

    pub fn from_bytes(b: &[u8]) -> Option<WordFilter> {
        if !(MIN_WORDS..=MAX_WORDS).contains(&(b.len() / 8)) || !b.len().is_multiple_of(8) {
            return None;
        }
        Some(WordFilter {
            bits: b
                .chunks_exact(8)
                .map(|c| u64::from_le_bytes(c.try_into().expect("8")))
                .collect(),
        })
    }

    /// Whether every word of the needle may be in the block.
    pub fn may_hold(&self, needle: &Needle) -> bool {
        let nbits = (self.bits.len() * 64) as u64;
        needle
            .hashes
            .iter()
            .all(|h| spread(*h, nbits).all(|p| self.bits[(p >> 6) as usize] >> (p & 63) & 1 == 1))
    }
}

/// A text to find, lower-cased, with its words.
#[derive(Debug, Clone)]
pub struct Needle {
    pub lower: Vec<u8>,
    /// The keyed hashes of its words.
    hashes: Vec<(u64, u64)>,
}

impl Needle {
    pub fn new(text: &str, key: &[u8; 32]) -> Needle {
        let lower: Vec<u8> = text.bytes().map(|b| b.to_ascii_lowercase()).collect();
        let mut ws: Vec<Vec<u8>> = words(&lower)
            .map(|w| w[..w.len().min(MAX_WORD)].to_vec())
            .collect();
        ws.sort();
        ws.dedup();
        Needle {
            lower,
            hashes: ws.iter().map(|w| hashes(key, w)).collect(),
        }
    }

    /// Whether `hay` holds the text (ASCII case-insensitive), neither
    /// starting nor ending inside a word.
    pub fn found_in(&self, hay: &[u8], scratch: &mut Vec<u8>) -> bool {
        let n = &self.lower;
        if n.is_empty() {
            return true;
        }
        scratch.clear();
        scratch.extend(hay.iter().map(u8::to_ascii_lowercase));
        let (first, last) = (is_word(n[0]), is_word(n[n.len() - 1]));
        memchr::memmem::find_iter(scratch, n).any(|at| {
            let before = at.checked_sub(1).map(|i| scratch[i]);
            let after = scratch.get(at + n.len()).copied();
            !(first && before.is_some_and(is_word) || last && after.is_some_and(is_word))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_holding_the_words_is_never_skipped() {
        let key = [7u8; 32];
        let mut set = WordSet::default();
        set.add(b"Patient MRN-4711 admitted by dr.House \xc3\xa9t\xc3\xa9");
        set.add(b"ab");
        let bm = set.take_filter(&key);
        for t in [
            "mrn-4711",
            "PATIENT",
            "house",
            "admitted by",
            "MRN",
            "\u{e9}t\u{e9}",
            "ab",
        ] {
            assert!(bm.may_hold(&Needle::new(t, &key)), "{t}");
        }
        // The set is empty again: a new block starts from nothing.
        set.add(b"zzzzzz");
        let other = set.take_filter(&key);
        assert!(!other.may_hold(&Needle::new("mrn-4711", &key)));
        assert!(!other.may_hold(&Needle::new("house", &key)));
        let bytes = bm.to_bytes();
        assert_eq!(WordFilter::from_bytes(&bytes), Some(bm.clone()));
        // Another key: other bits.
        let bm2 = {
            let mut s = WordSet::default();
            s.add(b"Patient MRN-4711 admitted by dr.House");
            s.take_filter(&[8u8; 32])
        };
        assert_ne!(bm.bits, bm2.bits);
    }

    #[test]
    fn text_matches_whole_words_case_insensitively() {
        let key = [1u8; 32];
        let mut s = Vec::new();
        let hay = b"x MRN-4711, seen by Dr. House";
        assert!(Needle::new("mrn-4711", &key).found_in(hay, &mut s));
        assert!(Needle::new("4711", &key).found_in(hay, &mut s));
        assert!(Needle::new("dr. house", &key).found_in(hay, &mut s));
        assert!(Needle::new(", seen", &key).found_in(hay, &mut s));
        assert!(
            !Needle::new("471", &key).found_in(hay, &mut s),
            "inside a word"
        );
        assert!(
            !Needle::new("ouse", &key).found_in(hay, &mut s),
            "inside a word"
        );
        assert!(!Needle::new("mrn-47", &key).found_in(hay, &mut s));
        // A later occurrence on word boundaries counts.
        assert!(Needle::new("ab", &key).found_in(b"abc ab", &mut s));
        assert!(Needle::new("", &key).found_in(b"anything", &mut s));
    }
}
