//! Segment files: names and headers (docs/FORMAT.md §2, §3.1).

use crate::codec::{CodecError, Reader};
use crate::hash::Hash;
use std::path::{Path, PathBuf};

pub const MAGIC: &[u8; 8] = b"WORMLOG\0";
pub const FORMAT_VERSION: u16 = 1;
/// Header length without the agent id.
pub const HEADER_FIXED_LEN: usize = 69;
pub const SEGMENT_SUFFIX: &str = ".wlseg";

/// A segment header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentHeader {
    pub segment_no: u64,
    pub first_seq: u64,
    pub prev_head: Hash,
    pub agent_id: String,
}

/// Why a header is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("not a wormlog segment (bad magic)")]
    Magic,
    #[error("unsupported format version {0}")]
    Version(u16),
    #[error("unsupported header flags {0:#06x}")]
    Flags(u16),
    #[error("header length {0} does not match the agent id")]
    Length(u32),
    #[error("header CRC mismatch")]
    Crc,
    #[error("agent id is empty or not UTF-8")]
    AgentId,
    #[error("truncated header")]
    Truncated,
}

impl From<CodecError> for HeaderError {
    fn from(_: CodecError) -> Self {
        HeaderError::Truncated
    }
}

impl SegmentHeader {
    pub fn encoded_len(&self) -> usize {
        HEADER_FIXED_LEN + self.agent_id.len()
    }

    pub fn encode(&self) -> Vec<u8> {
        let n = self.agent_id.len();
        assert!((1..=255).contains(&n), "agent id is 1..=255 bytes");
        let mut b = Vec::with_capacity(HEADER_FIXED_LEN + n);
        b.extend_from_slice(MAGIC);
        b.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        b.extend_from_slice(&0u16.to_le_bytes());
        b.extend_from_slice(&((HEADER_FIXED_LEN + n) as u32).to_le_bytes());
        b.extend_from_slice(&self.segment_no.to_le_bytes());
        b.extend_from_slice(&self.first_seq.to_le_bytes());
        b.extend_from_slice(&self.prev_head);
        b.push(n as u8);
        b.extend_from_slice(self.agent_id.as_bytes());
        let crc = crc32c::crc32c(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes a header from the start of a segment file; returns it and its
    /// length.
    pub fn decode(buf: &[u8]) -> Result<(SegmentHeader, usize), HeaderError> {
        let mut r = Reader::new(buf);
        if r.take(8)? != MAGIC {
            return Err(HeaderError::Magic);
        }
        let version = r.u16()?;
        if version != FORMAT_VERSION {
            return Err(HeaderError::Version(version));
        }
        let flags = r.u16()?;
        if flags != 0 {
            return Err(HeaderError::Flags(flags));
        }
        let header_len = r.u32()?;
        let segment_no = r.u64()?;
        let first_seq = r.u64()?;
        let prev_head = r.array()?;
        let n = r.u8()? as usize;
        if header_len as usize != HEADER_FIXED_LEN + n {
            return Err(HeaderError::Length(header_len));
        }
        let id = r.take(n)?;
        let end = r.position();
        let crc = r.u32()?;
        if crc != crc32c::crc32c(&buf[..end]) {
            return Err(HeaderError::Crc);
        }
        let agent_id = std::str::from_utf8(id)
            .ok()
            .filter(|s| !s.is_empty())
            .ok_or(HeaderError::AgentId)?
            .to_owned();
        Ok((
            SegmentHeader {
                segment_no,
                first_seq,
                prev_head,
                agent_id,
            },
            header_len as usize,
        ))
    }
}

/// The file name of segment `no`.
pub fn segment_file_name(no: u64) -> String {
    format!("{no:016x}{SEGMENT_SUFFIX}")
}

pub fn segment_path(dir: &Path, no: u64) -> PathBuf {
    dir.join(segment_file_name(no))
}

/// The segment number in a file name, if it is a segment's.
pub fn parse_segment_file_name(name: &str) -> Option<u64> {
    let hexpart = name.strip_suffix(SEGMENT_SUFFIX)?;
    if hexpart.len() != 16
        || !hexpart
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return None;
    }
    u64::from_str_radix(hexpart, 16).ok()
}

/// Segment numbers and paths, in order.
pub type SegmentList = Vec<(u64, PathBuf)>;

/// The segments in a directory, sorted by number, and the names of other
/// entries (the lock file, the key ledger, and segments or a ledger being
/// written are not listed).
pub fn list_segments(dir: &Path) -> std::io::Result<(SegmentList, Vec<String>)> {
    let mut segs = Vec::new();
    let mut other = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        match parse_segment_file_name(&name) {
            Some(no) => segs.push((no, e.path())),
            None if name == "lock"
                || name == crate::ledger::LEDGER_FILE
                || name.ends_with(".wlseg.tmp")
                || name.ends_with(".wlledger.tmp") => {}
            None => other.push(name),
        }
    }
    segs.sort();
    other.sort();
    Ok((segs, other))
}

/// If segment file `next` exists and its first record is a `recovery` record
/// naming segment `no`: the offset where segment `no`'s records end (the
/// recovery's `region_offset`) and the cause. Used by every reader that must
/// not read a damaged segment past that point.
pub fn recovery_limit(
    next: &Path,
    no: u64,
) -> std::io::Result<Option<(u64, crate::record::RecoveryCause)>> {
    use crate::frame::{FrameAt, frame_at};
    use crate::record::{Payload, Record};
    use std::io::Read;
    // The header and the first frame: a recovery record is small, so the
    // first 64 KiB nearly always hold it; more only when its length says so.
    let mut buf = Vec::new();
    let f = match std::fs::File::open(next) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    (&f).take(64 << 10).read_to_end(&mut buf)?;
    let Ok((_, hlen)) = SegmentHeader::decode(&buf) else {
        return Ok(None);
    };
    if let FrameAt::Incomplete = frame_at(&buf, hlen)
        && buf.len() == 64 << 10
    {
        (&f).take((1 << 20) - (64 << 10)).read_to_end(&mut buf)?;
    }
    let FrameAt::Frame { start, end } = frame_at(&buf, hlen) else {
        return Ok(None);
    };
    Ok(match Record::decode(&buf[start..end]).map(|r| r.payload) {
        Ok(Payload::Recovery {
            segment_no,
            region_offset,
            cause,
            ..
        }) if segment_no == no => Some((region_offset, cause)),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_roundtrip_and_every_byte_checked() {
        let h = SegmentHeader {
            segment_no: 3,
            first_seq: 1000,
            prev_head: [7; 32],
            agent_id: "web-01".into(),
        };
        let b = h.encode();
        assert_eq!(b.len(), h.encoded_len());
        assert_eq!(SegmentHeader::decode(&b).unwrap(), (h.clone(), b.len()));
        for i in 0..b.len() {
            let mut t = b.clone();
            t[i] ^= 0x40;
            assert!(SegmentHeader::decode(&t).is_err(), "flip at {i} undetected");
        }
        assert_eq!(
            parse_segment_file_name(&segment_file_name(0xabc)),
            Some(0xabc)
        );
        assert_eq!(parse_segment_file_name("0000000000000ABC.wlseg"), None);
    }
}
