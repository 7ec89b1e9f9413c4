//! Reading an agent's stored records back, from a known place on, one
//! frame at a time (a replay is compared record by record; a fork is
//! proven by following the stored chain up to it), and the index that
//! finds where a sequence number is stored without reading whole
//! segments.

use super::{StoreError, io_at};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use wormlog_spool::frame::{FRAME_HEADER_LEN, FrameAt, MAX_RECORD_LEN, MIN_RECORD_LEN, frame_at};
use wormlog_spool::segment::{SegmentHeader, list_segments, segment_path};

/// Batch starts remembered per agent (a replay starts at one).
const OFFSETS_KEPT: usize = 256;

/// Where sequence numbers are stored: the first of every segment (read
/// from the headers once, when first needed) and the place of each recent
/// batch's first record.
#[derive(Debug, Default)]
pub struct SeqIndex {
    segments: Option<BTreeMap<u64, u64>>,
    offsets: BTreeMap<u64, (u64, u64)>,
}

impl SeqIndex {
    /// Record `seq` is the first at byte `off` of segment `no` (0: just
    /// after the header of segment `no`, or of the next one if `no` is
    /// complete).
    pub fn batch_at(&mut self, seq: u64, no: u64, off: u64) {
        self.offsets.insert(seq, (no, off));
        while self.offsets.len() > OFFSETS_KEPT {
            self.offsets.pop_first();
        }
    }

    pub fn segment_created(&mut self, no: u64, first_seq: u64) {
        if let Some(s) = &mut self.segments {
            s.insert(first_seq, no);
        }
    }

    /// The stored place to start reading for `seq`: a batch start at or
    /// before it in the same segment, or that segment's start.
    pub fn locate(&mut self, dir: &Path, seq: u64) -> Result<(u64, u64), StoreError> {
        if self.segments.is_none() {
            self.segments = Some(read_segment_index(dir)?);
        }
        let segs = self.segments.as_ref().expect("built");
        let seg = segs.range(..=seq).next_back().map_or(0, |(_, no)| *no);
        match self.offsets.range(..=seq).next_back() {
            Some((_, &(no, off))) if no == seg => Ok((no, off)),
            _ => Ok((seg, 0)),
        }
    }
}

fn read_segment_index(dir: &Path) -> Result<BTreeMap<u64, u64>, StoreError> {
    let (segs, _) = list_segments(dir).map_err(io_at(dir))?;
    let mut out = BTreeMap::new();
    for (no, p) in segs {
        let mut head = Vec::new();
        File::open(&p)
            .and_then(|f| f.take(400).read_to_end(&mut head))
            .map_err(io_at(&p))?;
        let (h, _) = SegmentHeader::decode(&head)
            .map_err(|e| StoreError::Damaged(format!("{}: {e}", p.display())))?;
        out.insert(h.first_seq, no);
    }
    Ok(out)
}

/// One step through the stored bytes.
#[derive(Debug)]
pub enum Stored {
    /// A whole frame (header included).
    Frame(Vec<u8>),
    /// The bytes after a segment's last whole frame (a write cut short,
    /// closed by a recovery record in the next segment).
    Torn(Vec<u8>),
}

/// The stored frames from a place on, across segments.
#[derive(Debug)]
pub struct StoredFrames {
    dir: PathBuf,
    no: u64,
    reader: Option<BufReader<File>>,
}

impl StoredFrames {
    /// From byte `off` of segment `no` (0: after its header).
    pub fn at(dir: &Path, no: u64, off: u64) -> Result<StoredFrames, StoreError> {
        let mut s = StoredFrames {
            dir: dir.to_owned(),
            no,
            reader: None,
        };
        s.open(off)?;
        Ok(s)
    }

    fn open(&mut self, off: u64) -> Result<(), StoreError> {
        let p = segment_path(&self.dir, self.no);
        let mut f = match File::open(&p) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.reader = None;
                return Ok(());
            }
            Err(e) => return Err(io_at(&p)(e)),
        };
        let off = if off == 0 {
            let mut head = Vec::new();
            (&f).take(400).read_to_end(&mut head).map_err(io_at(&p))?;
            SegmentHeader::decode(&head)
                .map_err(|e| StoreError::Damaged(format!("{}: {e}", p.display())))?
                .1 as u64
        } else {
            off
        };
        f.seek(SeekFrom::Start(off)).map_err(io_at(&p))?;
        self.reader = Some(BufReader::with_capacity(64 << 10, f));
        Ok(())
    }

    /// The next frame, a torn tail, or None at the end of the store.
    pub fn next_stored(&mut self) -> Result<Option<Stored>, StoreError> {
        loop {
            let Some(r) = self.reader.as_mut() else {
                return Ok(None);
            };
            let p = segment_path(&self.dir, self.no);
            match read_frame(r).map_err(io_at(&p))? {
                Some(s) => return Ok(Some(s)),
                None => {
                    self.no += 1;
                    self.open(0)?;
                }
            }
        }
    }
}

/// The sequence number of a whole frame's record.
pub fn frame_seq(frame: &[u8]) -> u64 {
    let r = &frame[FRAME_HEADER_LEN..];
    u64::from_le_bytes(r[4..12].try_into().expect("a record header"))
}

/// Reads as much of `buf` as the file holds.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// One frame, the torn rest of the segment, or None at its end.
fn read_frame(r: &mut impl Read) -> io::Result<Option<Stored>> {
    let mut frame = vec![0u8; FRAME_HEADER_LEN];
    let n = read_full(r, &mut frame)?;
    if n == 0 {
        return Ok(None);
    }
    let torn = |mut bytes: Vec<u8>, r: &mut dyn Read| -> io::Result<Option<Stored>> {
        r.read_to_end(&mut bytes)?;
        Ok(Some(Stored::Torn(bytes)))
    };
    if n < FRAME_HEADER_LEN {
        frame.truncate(n);
        return torn(frame, r);
    }
    let len = u32::from_le_bytes(frame[4..8].try_into().expect("4")) as usize;
    if !(MIN_RECORD_LEN..=MAX_RECORD_LEN).contains(&len) {
        return torn(frame, r);
    }
    frame.resize(FRAME_HEADER_LEN + len, 0);
    let m = read_full(r, &mut frame[FRAME_HEADER_LEN..])?;
    if m < len {
        frame.truncate(FRAME_HEADER_LEN + m);
        return torn(frame, r);
    }
    match frame_at(&frame, 0) {
        FrameAt::Frame { .. } => Ok(Some(Stored::Frame(frame))),
        _ => torn(frame, r),
    }
}
