//! Framing: CRC32C, length, record (docs/FORMAT.md §3.2).

/// Bytes before the record in a frame.
pub const FRAME_HEADER_LEN: usize = 8;
/// The smallest record: the common header.
pub const MIN_RECORD_LEN: usize = crate::record::RECORD_HEADER_LEN;
/// The largest record a frame may hold.
pub const MAX_RECORD_LEN: usize = 64 << 20;

/// Reserves a frame header at the end of `out`; returns its offset for
/// [`finish_frame`].
#[inline]
pub fn begin_frame(out: &mut Vec<u8>) -> usize {
    let at = out.len();
    out.extend_from_slice(&[0u8; FRAME_HEADER_LEN]);
    at
}

/// Fills in the frame header started at `at`; returns the record bytes'
/// range within `out`.
#[inline]
pub fn finish_frame(out: &mut [u8], at: usize) -> std::ops::Range<usize> {
    let start = at + FRAME_HEADER_LEN;
    let len = (out.len() - start) as u32;
    out[at + 4..at + 8].copy_from_slice(&len.to_le_bytes());
    // The CRC covers the length and the record, which lie side by side.
    let crc = crc32c::crc32c(&out[at + 4..]);
    out[at..at + 4].copy_from_slice(&crc.to_le_bytes());
    start..out.len()
}

/// What lies at an offset of a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameAt {
    /// A well-formed frame whose record is `buf[start..end]`.
    Frame { start: usize, end: usize },
    /// Nothing: the offset is the end of the data.
    End,
    /// Fewer bytes than a whole frame: a write under way or cut short.
    Incomplete,
    /// A length out of bounds or a CRC mismatch.
    Bad(BadFrame),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadFrame {
    Length(u32),
    Crc,
}

impl std::fmt::Display for BadFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BadFrame::Length(n) => write!(f, "frame length {n} out of bounds"),
            BadFrame::Crc => write!(f, "frame CRC mismatch"),
        }
    }
}

/// Examines the frame at `off` in `buf` (an offset past the end is
/// [`FrameAt::Incomplete`]).
#[inline]
pub fn frame_at(buf: &[u8], off: usize) -> FrameAt {
    match frame_bounds_at(buf, off) {
        FrameAt::Frame { end, .. } if !crc_matches(buf, off, end) => FrameAt::Bad(BadFrame::Crc),
        other => other,
    }
}

/// Like [`frame_at`] without the CRC check (see [`crc_matches`]), so that
/// a verifier can find the frames of a segment first and check their CRCs
/// on several cores.
#[inline]
pub fn frame_bounds_at(buf: &[u8], off: usize) -> FrameAt {
    // An offset past the end (say, one a crafted recovery record names)
    // has the data end before a frame could.
    let Some(rest) = buf.len().checked_sub(off) else {
        return FrameAt::Incomplete;
    };
    if rest == 0 {
        return FrameAt::End;
    }
    if rest < FRAME_HEADER_LEN {
        return FrameAt::Incomplete;
    }
    let len = u32::from_le_bytes(buf[off + 4..off + 8].try_into().expect("4 bytes"));

    if (len as usize) < MIN_RECORD_LEN || len as usize > MAX_RECORD_LEN {
        return FrameAt::Bad(BadFrame::Length(len));
    }
    let start = off + FRAME_HEADER_LEN;
    let end = start + len as usize;
    if end > buf.len() {
        return FrameAt::Incomplete;
    }

    FrameAt::Frame { start, end }
}

/// Whether the CRC of the frame at `off` (ending at `end`) is right.
#[inline]
pub fn crc_matches(buf: &[u8], off: usize, end: usize) -> bool {
    let crc = u32::from_le_bytes(buf[off..off + 4].try_into().expect("4 bytes"));
    crc32c::crc32c(&buf[off + 4..end]) == crc
}

/// After damage at `from`, looks for a later well-formed frame holding one
/// of the next expected sequence numbers. A write cut short by a crash never
/// leaves one; damage in the middle of the data does.
pub fn find_later_frame(buf: &[u8], from: usize, expected_seq: u64) -> Option<usize> {
    let mut off = from + 1;
    while off + FRAME_HEADER_LEN + MIN_RECORD_LEN <= buf.len() {
        let seq_at = off + FRAME_HEADER_LEN + 4;
        let seq = u64::from_le_bytes(buf[seq_at..seq_at + 8].try_into().expect("8 bytes"));
        if seq >= expected_seq
            && seq < expected_seq.saturating_add(1 << 20)
            && matches!(frame_at(buf, off), FrameAt::Frame { .. })
        {
            return Some(off);
        }
        off += 1;
    }
    None
}

/// Why bytes that end a segment are not a write cut short.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompleteWrite {
    /// A well-formed frame starts where they start.
    Frame,
    /// The frame there is whole with the length `len`, which ends it at the
    /// end of the data: its CRC holds for that length, not for the one it
    /// carries.
    LengthAltered { len: u32 },
    /// A well-formed frame of record `seq`, continuing the sequence, starts
    /// at `offset`, inside them.
    LaterFrame { offset: usize, seq: u64 },
}

impl std::fmt::Display for CompleteWrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CompleteWrite::Frame => write!(f, "a whole, valid frame starts there"),
            CompleteWrite::LengthAltered { len } => write!(
                f,
                "the frame is whole with length {len}, which its CRC confirms: its length was altered"
            ),
            CompleteWrite::LaterFrame { offset, seq } => write!(
                f,
                "a whole, valid frame of seq {seq} follows at offset {offset}: the length was altered"
            ),
        }
    }
}

/// Whether the bytes of `buf` from `at` to its end, which do not end on a
/// frame boundary, hold a complete write after all (docs/FORMAT.md §7,
/// step 5): a well-formed frame at `at`; the frame at `at` well-formed if
/// its length ran exactly to the end of `buf`; or a later well-formed frame
/// continuing the sequence from `expected_seq` ([`find_later_frame`]). A
/// write cut short (by a crash, or still under way) shows none of these;
/// damage or an altered length does.
pub fn completed_write(buf: &[u8], at: usize, expected_seq: u64) -> Option<CompleteWrite> {
    if let FrameAt::Frame { .. } = frame_at(buf, at) {
        return Some(CompleteWrite::Frame);
    }
    let rest = buf.len().saturating_sub(at);
    if rest >= FRAME_HEADER_LEN + MIN_RECORD_LEN && rest - FRAME_HEADER_LEN <= MAX_RECORD_LEN {
        let len = (rest - FRAME_HEADER_LEN) as u32;
        let stored = u32::from_le_bytes(buf[at..at + 4].try_into().expect("4 bytes"));
        let crc = crc32c::crc32c_append(
            crc32c::crc32c(&len.to_le_bytes()),
            &buf[at + FRAME_HEADER_LEN..],
        );
        if crc == stored {
            return Some(CompleteWrite::LengthAltered { len });
        }
    }
    find_later_frame(buf, at, expected_seq).map(|offset| CompleteWrite::LaterFrame {
        offset,
        seq: u64::from_le_bytes(
            buf[offset + FRAME_HEADER_LEN + 4..offset + FRAME_HEADER_LEN + 12]
                .try_into()
                .expect("8 bytes"),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_offset_past_the_end_is_incomplete_not_a_panic() {
        let buf = [0u8; 4];
        assert!(matches!(frame_at(&buf, 4), FrameAt::End));
        assert!(matches!(frame_at(&buf, 5), FrameAt::Incomplete));
        assert!(matches!(frame_at(&buf, usize::MAX), FrameAt::Incomplete));
    }
}
