//! Reading an agent's stored records forward from a known place, a few
//! MiB at a time, with the place of every record: what the index is built
//! from and what a search or a bundle reads. It stops where the stored log
//! ends: at a segment's end, at the offset a recovery record in the next
//! segment names (a torn region the agent left), or at a frame still being
//! written.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use wormlog_spool::frame::{FrameAt, frame_at};
use wormlog_spool::segment::{SegmentHeader, recovery_limit, segment_path};

/// Where a record's frame starts: its segment and byte offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct At {
    pub segment: u64,
    pub offset: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Damaged(String),
}

/// The first read of a segment, and the largest (each read doubles).
const FIRST_CHUNK: usize = 128 << 10;
const CHUNK: usize = 4 << 20;

/// The records of a store from a place on.
#[derive(Debug)]
pub struct Scan {
    dir: PathBuf,
    segment: u64,
    file: Option<File>,
    /// File offset of `buf[0]`.
    base: u64,
    buf: Vec<u8>,
    used: usize,
    /// Where this segment's log ends, if the next segment says so.
    limit: Option<u64>,
    /// Whether the file has no more bytes than `buf` reached.
    eof: bool,
    /// The size of the next read.
    chunk: usize,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ScanError + '_ {
    move |source| ScanError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The length of segment `no`'s header.
pub fn header_len(dir: &Path, no: u64) -> Result<Option<u64>, ScanError> {
    let p = segment_path(dir, no);
    let f = match File::open(&p) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(&p)(e)),
    };
    let mut head = vec![0u8; 512];
    let n = f.read_at(&mut head, 0).map_err(io(&p))?;
    let (_, len) = SegmentHeader::decode(&head[..n])
        .map_err(|e| ScanError::Damaged(format!("{}: {e}", p.display())))?;
    Ok(Some(len as u64))
}

impl Scan {
    /// From `at` (an offset of 0: just after the segment's header).
    pub fn from(dir: &Path, at: At) -> Result<Scan, ScanError> {
        let mut s = Scan {
            dir: dir.to_owned(),
            segment: at.segment,
            file: None,
            base: at.offset,
            buf: Vec::new(),
            used: 0,
            limit: None,
            eof: false,
            chunk: FIRST_CHUNK,
        };
        s.enter(at.segment, at.offset)?;
        Ok(s)
    }

    fn enter(&mut self, no: u64, offset: u64) -> Result<bool, ScanError> {
        let p = segment_path(&self.dir, no);
        let file = match File::open(&p) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(io(&p)(e)),
        };
        let offset = match offset {
            0 => header_len(&self.dir, no)?.unwrap_or(0),
            o => o,
        };
        let next = segment_path(&self.dir, no + 1);
        self.limit = recovery_limit(&next, no)
            .map_err(io(&next))?
            .map(|(o, _)| o);
        self.segment = no;
        self.file = Some(file);
        self.base = offset;
        self.buf.clear();
        self.used = 0;
        self.eof = false;
        Ok(true)
    }

    /// Where the next record starts.
    pub fn position(&self) -> At {
        At {
            segment: self.segment,
            offset: self.base + self.used as u64,
        }
    }

    /// Reads more of the segment into the buffer; false at its end.
    fn fill(&mut self) -> Result<bool, ScanError> {
        if self.eof {
            return Ok(false);
        }
        let Some(f) = &self.file else {
            return Ok(false);
        };
        // Keep what is not used yet.
        self.base += self.used as u64;
        self.buf.drain(..self.used);
        self.used = 0;
        let have = self.buf.len();
        // Small at first (a search reads a block of a few hundred KiB),
        // larger as a scan goes on.
        let mut want = self.chunk.max(have * 2);
        self.chunk = (self.chunk * 2).min(CHUNK);
        let pos = self.base + have as u64;
        if let Some(l) = self.limit {
            want = want.min(l.saturating_sub(pos) as usize + have);
        }
        self.buf.resize(want, 0);
        let p = segment_path(&self.dir, self.segment);
        let mut got = have;
        while got < want {
            let n = f
                .read_at(&mut self.buf[got..], self.base + got as u64)
                .map_err(io(&p))?;
            if n == 0 {
                self.eof = true;
                break;
            }
            got += n;
        }
        if self.limit.is_some_and(|l| self.base + got as u64 >= l) {
            self.eof = true;
        }
        self.buf.truncate(got);
        Ok(got > have)
    }

    /// The next record (its bytes, without the frame) and where its frame
    /// starts; None where the stored log ends for now.
    pub fn next_record(&mut self) -> Result<Option<(At, &[u8])>, ScanError> {
        loop {
            match frame_at(&self.buf, self.used) {
                FrameAt::Frame { start, end } => {
                    let at = self.position();
                    self.used = end;
                    return Ok(Some((at, &self.buf[start..end])));
                }
                FrameAt::End | FrameAt::Incomplete => {
                    if self.fill()? {
                        continue;
                    }
                    // The end of this segment: the next one, if there is
                    // one, else the end of the stored log (for now).
                    let rest = self.buf.len() - self.used;
                    let next = self.segment + 1;
                    if segment_path(&self.dir, next).exists() {
                        if rest != 0 && self.limit.is_none() {
                            return Err(ScanError::Damaged(format!(
                                "segment {:016x}: {rest} bytes after its last whole frame, and no recovery record names them",
                                self.segment
                            )));
                        }
                        if self.enter(next, 0)? {
                            continue;
                        }
                    }
                    return Ok(None);
                }
                FrameAt::Bad(b) => {
                    if self.limit.is_none() && !segment_path(&self.dir, self.segment + 1).exists() {
                        // A write under way or cut short at the end of the
                        // last segment: the end for now.
                        return Ok(None);
                    }
                    return Err(ScanError::Damaged(format!(
                        "segment {:016x} offset {}: {b}",
                        self.segment,
                        self.position().offset
                    )));
                }
            }
        }
    }
}

/// The one record whose frame starts at `at` (its CRC checked).
pub fn read_record_at(dir: &Path, at: At) -> Result<Vec<u8>, ScanError> {
    use wormlog_spool::frame::{FRAME_HEADER_LEN, MAX_RECORD_LEN};
    let p = segment_path(dir, at.segment);
    let f = File::open(&p).map_err(io(&p))?;
    let mut frame = vec![0u8; FRAME_HEADER_LEN];
    f.read_exact_at(&mut frame, at.offset).map_err(io(&p))?;
    let len = u32::from_le_bytes(frame[4..8].try_into().expect("4")) as usize;
    if len > MAX_RECORD_LEN {
        return Err(ScanError::Damaged(format!(
            "segment {:016x} offset {}: frame length {len}",
            at.segment, at.offset
        )));
    }
    frame.resize(FRAME_HEADER_LEN + len, 0);
    f.read_exact_at(
        &mut frame[FRAME_HEADER_LEN..],
        at.offset + FRAME_HEADER_LEN as u64,
    )
    .map_err(io(&p))?;
    match frame_at(&frame, 0) {
        FrameAt::Frame { start, end } => Ok(frame[start..end].to_vec()),
        other => Err(ScanError::Damaged(format!(
            "segment {:016x} offset {}: not a whole frame ({other:?})",
            at.segment, at.offset
        ))),
    }
}

/// The kind, seq and ts of a record from its header alone.
pub fn peek(record: &[u8]) -> (u8, u64, i64) {
    (
        record[1],
        u64::from_le_bytes(record[4..12].try_into().expect("a record header")),
        i64::from_le_bytes(record[12..20].try_into().expect("a record header")),
    )
}
