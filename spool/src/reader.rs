//! Reading contiguous ranges of records from a spool while the writer goes
//! on: the forwarder's queue is the spool itself (docs/FORMAT.md §10).
//!
//! A [`RangeReader`] hands out batches of whole frames, byte-exact, in
//! sequence order, across segment boundaries. It reads only below the
//! durable end the writer publishes, so nothing a crash could take back is
//! ever sent. Where a segment ends without a seal (a torn tail or a failed
//! fsync, explained by a `recovery` record at the start of the next
//! segment), it stops at the point the recovery record names and hands the
//! torn bytes to the batch that starts with that recovery record.

use crate::frame::{FRAME_HEADER_LEN, FrameAt, frame_at};
use crate::hash::Hash;
use crate::record::{Kind, Payload, Record, RecoveryCause};
use crate::segment::{SegmentHeader, list_segments, recovery_limit, segment_path};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// Why a range could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("seq {0} is no longer in the spool (pruned)")]
    Pruned(u64),
    #[error("seq {want} is not in the spool (it ends at {end})")]
    Beyond { want: u64, end: u64 },
    #[error("{path}: damaged at offset {offset}: {reason}")]
    Damaged {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    /// What a batch was handed to (`read_into`'s sink) failed.
    #[error("taking the batch: {0}")]
    Sink(std::io::Error),
}

/// What a batch holds (the range of records it is), as read with
/// [`RangeReader::read_into`], whose sink takes its bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Span {
    pub first_seq: u64,
    /// Records in the batch.
    pub records: u64,
    /// Its bytes: the torn region, then the frames.
    pub len: usize,
    /// How many of them are the torn region (only when the batch starts
    /// with a torn-tail recovery record).
    pub torn_len: usize,
    /// (tree_size, root) of every checkpoint in the batch.
    pub checkpoints: Vec<(u64, Hash)>,
}

impl Span {
    pub fn end_seq(&self) -> u64 {
        self.first_seq + self.records
    }
}

/// A batch with its bytes, as read with [`RangeReader::read`]: the torn
/// region of the segment before the first record, then whole frames as on
/// disk, exactly the body the wire protocol sends.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    pub span: Span,
    pub bytes: Vec<u8>,
}

impl Batch {
    pub fn torn(&self) -> &[u8] {
        &self.bytes[..self.span.torn_len]
    }

    pub fn frames(&self) -> &[u8] {
        &self.bytes[self.span.torn_len..]
    }
}

#[derive(Debug, Clone)]
struct Cursor {
    no: u64,
    offset: u64,
    next_seq: u64,
    /// The current segment ends at this offset (a recovery record in the
    /// next segment says so), and whether its region is a torn tail.
    limit: Option<(u64, bool)>,
}

/// How much of a segment one read takes by default: a batch is read in
/// pieces of this size and handed over piece by piece, so a reader that
/// compresses as it reads never holds the whole batch (docs/BENCHMARKS.md).
pub const READ_SIZE: usize = 256 << 10;

/// Reads batches from a spool directory.
#[derive(Debug)]
pub struct RangeReader {
    dir: PathBuf,
    cur: Option<Cursor>,
    buf: Vec<u8>,
    read_size: usize,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ReadError + '_ {
    move |source| ReadError::Io {
        path: path.to_owned(),
        source,
    }
}

impl RangeReader {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        RangeReader {
            dir: dir.into(),
            cur: None,
            buf: Vec::new(),
            read_size: READ_SIZE,
        }
    }

    /// Reads at most `bytes` of a segment at a time (a frame larger than
    /// that is still read whole). Tests use small sizes to cut frames.
    pub fn with_read_size(mut self, bytes: usize) -> Self {
        self.read_size = bytes.max(1);
        self
    }

    /// The sequence number the next batch starts at, once positioned.
    pub fn position(&self) -> Option<u64> {
        self.cur.as_ref().map(|c| c.next_seq)
    }

    /// Positions the reader at record `seq` (which may be the end of the
    /// spool).
    pub fn seek(&mut self, seq: u64) -> Result<(), ReadError> {
        // From the newest segment back: the one that holds `seq` is found
        // without touching older segments, which pruning may be removing
        // right now (a segment gone between the listing and its header is
        // one of those, and is passed over).
        let (segs, _) = list_segments(&self.dir).map_err(io_err(&self.dir))?;
        let mut chosen = None;
        for (no, path) in segs.iter().rev() {
            let h = match read_header(path) {
                Ok((h, _)) => h,
                Err(ReadError::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound =>
                {
                    continue;
                }
                Err(e) => return Err(e),
            };
            if h.first_seq <= seq {
                chosen = Some((*no, h.first_seq));
                break;
            }
        }
        let (no, mut next_seq) = chosen.ok_or(ReadError::Pruned(seq))?;
        // Walk the frames of that segment (up to where a recovery record in
        // the next one says it ends) to `seq`, a read at a time.
        let path = segment_path(&self.dir, no);
        let limit = self.limit_of(no)?;
        let mut off = read_header(&path)?.1 as u64;
        let mut sealed = false;
        let mut want = self.read_size;
        while next_seq < seq {
            let file_end = self.fill(&path, off, want, limit.map(|l| l.0))?;
            let mut used = 0;
            while next_seq < seq {
                let FrameAt::Frame { start, end } = frame_at(&self.buf, used) else {
                    break;
                };
                sealed = self.buf[start + 1] == Kind::Seal as u8;
                used = end;
                next_seq += 1;
            }
            if used == 0 && next_seq < seq {
                // No whole frame in the chunk: a frame larger than it, or
                // the end of the data.
                match frame_len(&self.buf) {
                    Some(n) if n > self.buf.len() && off + (self.buf.len() as u64) < file_end => {
                        want = n;
                        continue;
                    }
                    _ => {
                        return Err(ReadError::Beyond {
                            want: seq,
                            end: next_seq,
                        });
                    }
                }
            }
            off += used as u64;
            want = self.read_size;
        }
        self.cur = Some(if sealed {
            Cursor {
                no: no + 1,
                offset: 0,
                next_seq,
                limit: None,
            }
        } else {
            Cursor {
                no,
                offset: off,
                next_seq,
                limit,
            }
        });
        Ok(())
    }

    /// Where segment `no` ends if the next segment opens with a recovery
    /// record naming it, and whether the rest is a torn tail.
    fn limit_of(&self, no: u64) -> Result<Option<(u64, bool)>, ReadError> {
        let next = segment_path(&self.dir, no + 1);
        Ok(recovery_limit(&next, no)
            .map_err(io_err(&next))?
            .map(|(offset, cause)| (offset, cause == RecoveryCause::TornTail)))
    }

    /// Reads the next batch: at most `max_records` records and about
    /// `max_bytes` bytes (at least one record when one is there), all below
    /// `durable_end`. An empty batch means nothing new is durable yet.
    pub fn read(
        &mut self,
        durable_end: u64,
        max_records: u64,
        max_bytes: usize,
    ) -> Result<Batch, ReadError> {
        let mut bytes = Vec::new();
        let span = self.read_into(durable_end, max_records, max_bytes, &mut |piece| {
            bytes.extend_from_slice(piece);
            Ok(())
        })?;
        Ok(Batch { span, bytes })
    }

    /// Reads the next batch as [`read`](Self::read) does, handing its bytes
    /// to `sink` in order, a read at a time (the torn region first, then
    /// whole frames), instead of gathering them.
    pub fn read_into(
        &mut self,
        durable_end: u64,
        max_records: u64,
        max_bytes: usize,
        sink: &mut dyn FnMut(&[u8]) -> std::io::Result<()>,
    ) -> Result<Span, ReadError> {
        if self.cur.is_none() {
            self.seek(0)?;
        }
        let mut cur = self.cur.clone().expect("positioned");
        let mut span = Span {
            first_seq: cur.next_seq,
            ..Span::default()
        };
        let mut min_want = 0usize;
        // At least one record when one is there: a torn region larger than
        // `max_bytes` still comes with the recovery record that explains it.
        while span.records < max_records
            && (span.records == 0 || span.len < max_bytes)
            && cur.next_seq < durable_end
        {
            let path = segment_path(&self.dir, cur.no);
            if cur.offset == 0 {
                // A segment not entered yet: it exists, because a durable
                // record lies in it.
                cur.offset = read_header(&path)?.1 as u64;
            }
            // The next segment's recovery record, if any, limits this one.
            // Checked before reading: a record rewritten after a failed
            // fsync is durable only once that segment exists.
            if cur.limit.is_none() {
                cur.limit = self.limit_of(cur.no)?;
            }
            let want = max_bytes
                .saturating_sub(span.len)
                .max(4096)
                .min(self.read_size)
                .max(min_want);
            // What is not a whole frame (or is beyond the limits) is read
            // again by the next read.
            let file_end = self.fill(&path, cur.offset, want, cur.limit.map(|l| l.0))?;
            let data = &self.buf[..];
            let base = span.len;
            let mut off = 0usize;
            let mut sealed = false;
            let mut grow = None;
            while span.records < max_records
                && (off == 0 || base + off < max_bytes)
                && cur.next_seq < durable_end
            {
                let (start, end) = match frame_at(data, off) {
                    FrameAt::Frame { start, end } => (start, end),
                    FrameAt::Incomplete
                        if off == 0 && (data.len() as u64) < file_end - cur.offset =>
                    {
                        // One frame larger than the read: read it whole.
                        grow = Some(frame_len(data).unwrap_or(want * 2));
                        break;
                    }
                    FrameAt::Incomplete | FrameAt::End => break,
                    FrameAt::Bad(b) => {
                        return Err(ReadError::Damaged {
                            path,
                            offset: cur.offset + off as u64,
                            reason: b.to_string(),
                        });
                    }
                };
                let rec = &data[start..end];
                let kind = rec[1];
                let seq = u64::from_le_bytes(rec[4..12].try_into().expect("8 bytes"));
                if seq != cur.next_seq {
                    return Err(ReadError::Damaged {
                        path,
                        offset: cur.offset + off as u64,
                        reason: format!("seq {seq} where {} was expected", cur.next_seq),
                    });
                }
                if kind == Kind::Checkpoint as u8
                    && let Ok(Record {
                        payload: Payload::Checkpoint(cp),
                        ..
                    }) = Record::decode(rec)
                {
                    span.checkpoints.push((cp.tree_size, cp.root));
                }
                span.records += 1;
                cur.next_seq += 1;
                off = end;
                if kind == Kind::Seal as u8 {
                    sealed = true;
                    break;
                }
            }
            if off > 0 {
                sink(&data[..off]).map_err(ReadError::Sink)?;
                span.len += off;
            }
            if let Some(need) = grow {
                min_want = need;
                continue;
            }
            min_want = 0;
            cur.offset += off as u64;
            if sealed {
                cur = Cursor {
                    no: cur.no + 1,
                    offset: 0,
                    next_seq: cur.next_seq,
                    limit: None,
                };
                continue;
            }
            match cur.limit {
                Some((limit, torn)) if cur.offset >= limit => {
                    if span.records > 0 {
                        break; // the recovery record starts the next batch
                    }
                    if torn {
                        let region = read_range(&path, limit, file_end)?;
                        sink(&region).map_err(ReadError::Sink)?;
                        span.len = region.len();
                        span.torn_len = region.len();
                    }
                    cur = Cursor {
                        no: cur.no + 1,
                        offset: 0,
                        next_seq: cur.next_seq,
                        limit: None,
                    };
                }
                // More whole frames may follow in this segment than one
                // read took: the loop's conditions say whether to go on.
                _ if off > 0 => {}
                _ => break,
            }
        }
        self.cur = Some(cur);
        Ok(span)
    }

    /// Reads up to `want` bytes of `path` from `offset` (not past `limit`)
    /// into the reader's buffer; returns the file's usable end.
    fn fill(
        &mut self,
        path: &Path,
        offset: u64,
        want: usize,
        limit: Option<u64>,
    ) -> Result<u64, ReadError> {
        self.buf.clear();
        fill(&mut self.buf, path, offset, want, limit)
    }
}

/// Appends up to `want` bytes (and a frame header) of `path` from `offset`,
/// not past `limit`, to `out`; returns the file's usable end.
fn fill(
    out: &mut Vec<u8>,
    path: &Path,
    offset: u64,
    want: usize,
    limit: Option<u64>,
) -> Result<u64, ReadError> {
    let mut f = std::fs::File::open(path).map_err(io_err(path))?;
    let len = f.metadata().map_err(io_err(path))?.len();
    let end = limit.map_or(len, |l| l.min(len));
    let n = (end.saturating_sub(offset)).min(want as u64 + FRAME_HEADER_LEN as u64) as usize;
    let base = out.len();
    out.resize(base + n, 0);
    f.seek(SeekFrom::Start(offset)).map_err(io_err(path))?;
    let mut got = 0;
    while got < n {
        match f.read(&mut out[base + got..]).map_err(io_err(path))? {
            0 => break,
            k => got += k,
        }
    }
    out.truncate(base + got);
    Ok(len)
}

fn frame_len(buf: &[u8]) -> Option<usize> {
    let len = u32::from_le_bytes(buf.get(4..8)?.try_into().ok()?) as usize;
    Some(len + FRAME_HEADER_LEN)
}

fn read_header(path: &Path) -> Result<(SegmentHeader, usize), ReadError> {
    let mut buf = Vec::with_capacity(400);
    std::fs::File::open(path)
        .map_err(io_err(path))?
        .take(400)
        .read_to_end(&mut buf)
        .map_err(io_err(path))?;
    SegmentHeader::decode(&buf).map_err(|e| ReadError::Damaged {
        path: path.to_owned(),
        offset: 0,
        reason: format!("segment header: {e}"),
    })
}

fn read_range(path: &Path, from: u64, to: u64) -> Result<Vec<u8>, ReadError> {
    let mut f = std::fs::File::open(path).map_err(io_err(path))?;
    f.seek(SeekFrom::Start(from)).map_err(io_err(path))?;
    let mut v = Vec::new();
    f.take(to.saturating_sub(from))
        .read_to_end(&mut v)
        .map_err(io_err(path))?;
    Ok(v)
}
