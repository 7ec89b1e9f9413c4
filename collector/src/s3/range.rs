//! The objects an S3 store holds (docs/FORMAT.md §10.6): a range object is
//! one accepted batch's new part, exactly as the collector checked it, and
//! a claim names the range object that holds the records from a sequence
//! number on.
//!
//! A range object is
//! `"WLRANGE1" || agent_len u16 || agent || first_seq u64 || next_seq u64
//! || torn_len u32 || frames_len u32 || torn || frames` (little-endian);
//! its name ends in the SHA-256 of those bytes.

use wormlog_spool::hash::hex;

const MAGIC: &[u8; 8] = b"WLRANGE1";

/// One accepted batch, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    pub agent: String,
    /// The first record's sequence number.
    pub first_seq: u64,
    /// The sequence number after the batch.
    pub next_seq: u64,
    /// The end of a frame that the previous batch began.
    pub torn: Vec<u8>,
    /// Whole frames.
    pub frames: Vec<u8>,
}

/// Why an object is not a range object.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RangeError {
    #[error("not a range object (magic)")]
    Magic,
    #[error("range object cut short at byte {0}")]
    Short(usize),
    #[error("range object has {0} bytes after its end")]
    Trailing(usize),
    #[error("range object's agent id is not UTF-8")]
    Agent,
}

impl Range {
    pub fn encode(&self) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(8 + 2 + self.agent.len() + 24 + self.torn.len() + self.frames.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(self.agent.len() as u16).to_le_bytes());
        out.extend_from_slice(self.agent.as_bytes());
        out.extend_from_slice(&self.first_seq.to_le_bytes());
        out.extend_from_slice(&self.next_seq.to_le_bytes());
        out.extend_from_slice(&(self.torn.len() as u32).to_le_bytes());
        out.extend_from_slice(&(self.frames.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.torn);
        out.extend_from_slice(&self.frames);
        out
    }

    pub fn decode(b: &[u8]) -> Result<Self, RangeError> {
        let mut r = Reader { b, at: 0 };
        if r.take(8)? != MAGIC {
            return Err(RangeError::Magic);
        }
        let n = u16::from_le_bytes(r.array()?) as usize;
        let agent = std::str::from_utf8(r.take(n)?)
            .map_err(|_| RangeError::Agent)?
            .to_owned();
        let first_seq = u64::from_le_bytes(r.array()?);
        let next_seq = u64::from_le_bytes(r.array()?);
        let torn_len = u32::from_le_bytes(r.array()?) as usize;
        let frames_len = u32::from_le_bytes(r.array()?) as usize;
        let torn = r.take(torn_len)?.to_vec();
        let frames = r.take(frames_len)?.to_vec();
        if r.at != b.len() {
            return Err(RangeError::Trailing(b.len() - r.at));
        }
        Ok(Range {
            agent,
            first_seq,
            next_seq,
            torn,
            frames,
        })
    }

    /// The object's key under `prefix`: `ranges/<agent>/<first_seq>-<sha256>`.
    pub fn key(prefix: &str, agent: &str, first_seq: u64, bytes: &[u8]) -> String {
        format!(
            "{prefix}ranges/{agent}/{first_seq:020}-{}",
            hex(&wormlog_spool::hash::sha256(bytes))
        )
    }
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], RangeError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|e| *e <= self.b.len())
            .ok_or(RangeError::Short(self.at))?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], RangeError> {
        Ok(self.take(N)?.try_into().expect("N bytes"))
    }
}

/// The claim of the records from `first_seq` on: which range object holds
/// them (`claims/<agent>/<first_seq>` in the heads bucket, created only if
/// absent, so one collector wins each sequence number).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Claim {
    /// The range object's key.
    pub object: String,
    pub first_seq: u64,
    pub next_seq: u64,
    /// The range object's SHA-256 (hex).
    pub sha256: String,
    /// The collector that stored it.
    pub collector: String,
}

impl Claim {
    pub fn key(prefix: &str, agent: &str, first_seq: u64) -> String {
        format!("{prefix}claims/{agent}/{first_seq:020}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_range_round_trips_and_every_cut_is_refused() {
        let r = Range {
            agent: "web-01".into(),
            first_seq: 42,
            next_seq: 45,
            torn: b"end".to_vec(),
            frames: vec![7u8; 100],
        };
        let b = r.encode();
        assert_eq!(Range::decode(&b), Ok(r));
        for cut in 0..b.len() {
            assert!(Range::decode(&b[..cut]).is_err(), "cut at {cut}");
        }
        let mut long = b.clone();
        long.push(0);
        assert_eq!(Range::decode(&long), Err(RangeError::Trailing(1)));
        let mut bad = b;
        bad[0] ^= 1;
        assert_eq!(Range::decode(&bad), Err(RangeError::Magic));
    }

    #[test]
    fn keys_sort_by_sequence_number() {
        let a = Claim::key("p/", "a", 9);
        let b = Claim::key("p/", "a", 10);
        assert!(a < b);
        assert_eq!(a, "p/claims/a/00000000000000000009");
    }
}
