//! One open file: read what is new, split it into lines, notice when it
//! was truncated or replaced under the same name.

use super::identity::{FINGERPRINT_BYTES, covered, dev_ino_size, fingerprint};
use crate::lines::LineSplitter;
use crate::sources::{Event, SourceContext, StreamKey};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wormlog_spool::Position;
use wormlog_spool::clock::wall_ns;
use wormlog_spool::record::{GapReason, UNKNOWN_COUNT};

/// Lines are handed to the writer in batches of about this many bytes.
const BATCH_BYTES: usize = 64 << 10;
/// Bytes read per `pread`.
const READ_BYTES: usize = 64 << 10;

/// A file being read.
#[derive(Debug)]
pub struct Tailer {
    pub path: PathBuf,
    file: File,
    pub dev: u64,
    pub ino: u64,
    pub fp: u64,
    /// The next byte to read.
    pub offset: u64,
    size_seen: u64,
    splitter: LineSplitter,
    last_data: Instant,
    source: Arc<str>,
    /// To be read at the next pass whatever inotify says: just opened, or
    /// found under another name.
    pub look: bool,
    /// The path no longer leads here (renamed away or deleted).
    pub gone: bool,
    /// inotify watches the directory of its path (then a change is
    /// reported; otherwise it is read on every poll).
    pub watched: bool,
    /// Resumed from a position the spool (or this run) knew.
    pub resumed: bool,
    /// When it was found, in this run's order.
    pub order: u64,
}

impl Tailer {
    pub fn new(
        source: Arc<str>,
        path: PathBuf,
        file: File,
        fp: u64,
        offset: u64,
        max_line: usize,
    ) -> io::Result<Tailer> {
        let (dev, ino, _) = dev_ino_size(&file)?;
        let mut splitter = LineSplitter::new(max_line);
        // Resuming after a line that was written without its newline (or
        // in parts): what follows continues it.
        let mut before = [0u8; 1];
        if offset > 0 && file.read_at(&mut before, offset - 1)? == 1 && before[0] != b'\n' {
            splitter.continue_line();
        }
        Ok(Tailer {
            path,
            file,
            dev,
            ino,
            fp,
            offset,
            size_seen: offset,
            splitter,
            last_data: Instant::now(),
            source,
            look: true,
            gone: false,
            watched: false,
            resumed: false,
            order: 0,
        })
    }

    /// The file as the spool's positions know it: device, inode, and the
    /// fingerprint the positions carry.
    pub fn key(&self) -> StreamKey {
        (self.dev, self.ino, self.fp)
    }

    fn position(&self, offset: u64) -> Position {
        Position::File {
            dev: self.dev,
            ino: self.ino,
            fingerprint: self.fp,
            offset,
        }
    }

    /// The globs show the file under `path`: under another name than
    /// before (renamed within them), it is read at the next pass.
    pub fn found_as(&mut self, path: PathBuf) {
        if path != self.path || self.gone {
            self.look = true;
        }
        self.path = path;
        self.gone = false;
    }

    /// Whether part of a line is held, waiting for its end (or for the
    /// idle time, to be written without it).
    pub fn holds_partial(&self) -> bool {
        self.splitter.pending() > 0
    }

    /// Whether everything in the file has been read and handed over.
    pub fn drained(&self) -> io::Result<bool> {
        Ok(self.offset >= dev_ino_size(&self.file)?.2 && self.splitter.pending() == 0)
    }

    /// How long since new data was last read.
    pub fn idle_for(&self) -> Duration {
        self.last_data.elapsed()
    }

    /// The file's link count (0 once deleted).
    pub fn nlink(&self) -> u64 {
        use std::os::unix::fs::MetadataExt;
        self.file.metadata().map_or(0, |m| m.nlink())
    }

    fn gap(&self, ctx: &SourceContext, reason: GapReason, lost: u64, detail: String) -> bool {
        ctx.send(Event::Gap {
            source: self.source.clone(),
            position: self.position(self.offset),
            reason,
            lost_bytes: lost,
            lost_records: UNKNOWN_COUNT,
            detail,
            ts: wall_ns(),
        })
    }

    /// Starts the file over from offset 0 after it was truncated or
    /// replaced, recording a gap that says so.
    fn restart(
        &mut self,
        ctx: &SourceContext,
        reason: GapReason,
        size: u64,
        detail: String,
    ) -> bool {
        // A partial line already read is evidence too: write it (flagged
        // no_newline) before starting over, never drop it.
        let mut held = Batch::new(self.key());
        let offset = self.offset;
        if self
            .splitter
            .flush(offset, &mut |b: &[u8], f: u8, o: u64| held.push(b, f, o))
            .is_err()
            || !held.send(&self.source, ctx)
        {
            return false;
        }
        self.splitter.reset();
        self.offset = 0;
        self.size_seen = size;
        self.fp = fingerprint(&self.file, size).unwrap_or(0);
        self.gap(ctx, reason, UNKNOWN_COUNT, detail)
    }

    /// Reads what is new, into `buf` (one buffer for every file of the
    /// source: a watched file costs no read buffer of its own).
    /// `flush_partial` forces a held partial line out (shutdown). Returns
    /// false when the writer is gone.
    pub fn poll(
        &mut self,
        ctx: &SourceContext,
        buf: &mut Vec<u8>,
        partial_timeout: Duration,
        flush_partial: bool,
    ) -> io::Result<bool> {
        self.look = false;
        let (_, _, size) = dev_ino_size(&self.file)?;
        if size < self.offset {
            let detail = format!(
                "{}: truncated: size shrank from {} to {size} bytes (inode {}); reading again from 0 (lines written between the last read and the truncation are lost)",
                self.path.display(),
                self.offset,
                self.ino
            );
            tracing::warn!(source = %self.source, path = %self.path.display(), "source {}: {detail}", self.source);
            if !self.restart(ctx, GapReason::Truncated, size, detail) {
                return Ok(false);
            }
        } else if size != self.size_seen
            && self.fp != 0
            && fingerprint(&self.file, covered(self.fp))? != self.fp
        {
            // Same inode, new first bytes: truncated and rewritten past our
            // offset between two looks (copytruncate).
            let detail = format!(
                "{}: replaced in place: the first {FINGERPRINT_BYTES} bytes changed (size {} -> {size}, inode {}, read to offset {}); reading again from 0",
                self.path.display(),
                self.size_seen,
                self.ino,
                self.offset
            );
            tracing::warn!(source = %self.source, path = %self.path.display(), "source {}: {detail}", self.source);
            if !self.restart(ctx, GapReason::Replaced, size, detail) {
                return Ok(false);
            }
        }
        self.size_seen = size;
        if covered(self.fp) < FINGERPRINT_BYTES as u64 && size > covered(self.fp) {
            // The file grew while still short: the fingerprint takes in the
            // new first bytes (it covers at most 64).
            self.fp = fingerprint(&self.file, size)?;
        }
        if self.offset >= size && self.splitter.pending() == 0 {
            return Ok(true); // nothing new: the common case for a quiet file
        }
        let left = usize::try_from(size.saturating_sub(self.offset)).unwrap_or(usize::MAX);
        let mut batch = Batch::sized(self.key(), left.saturating_add(self.splitter.pending()));
        if buf.len() < READ_BYTES {
            buf.resize(READ_BYTES, 0);
        }
        while self.offset < size {
            let want = ((size - self.offset) as usize).min(READ_BYTES);
            // Handed over once it holds BATCH_BYTES, or before a read that
            // would take it past its buffer: batches stay at about
            // BATCH_BYTES, in the buffer they were given (growing it would
            // double it, and up to seven batches are alive at once, in the
            // channel and at both ends).
            let full =
                batch.data.len() >= BATCH_BYTES || batch.data.len() + want > batch.data.capacity();
            if !batch.data.is_empty() && full && !batch.send(&self.source, ctx) {
                return Ok(false);
            }
            let n = self.file.read_at(&mut buf[..want], self.offset)?;
            if n == 0 {
                break;
            }
            let start = self.offset;
            self.splitter
                .push(&buf[..n], start, &mut |b: &[u8], f: u8, o: u64| {
                    batch.push(b, f, o)
                })?;
            self.offset += n as u64;
            self.last_data = Instant::now();
        }
        if self.splitter.pending() > 0
            && (flush_partial || self.last_data.elapsed() >= partial_timeout)
        {
            self.splitter
                .flush(self.offset, &mut |b: &[u8], f: u8, o: u64| {
                    batch.push(b, f, o)
                })?;
        }
        self.splitter.trim();
        Ok(batch.send(&self.source, ctx))
    }
}

/// Lines on their way to the writer.
struct Batch {
    key: StreamKey,
    data: Vec<u8>,
    lines: Vec<(u32, u32, u8, u64)>,
    /// Bytes the batch is expected to hold: what is left to read, at most
    /// about [`BATCH_BYTES`]. Its buffers are that big from the first line
    /// on (a file with a line to give costs a line, not 80 KiB, while it
    /// waits in the channel).
    expect: usize,
}

impl Batch {
    fn new(key: StreamKey) -> Batch {
        Batch::sized(key, BATCH_BYTES)
    }

    fn sized(key: StreamKey, expect: usize) -> Batch {
        Batch {
            key,
            data: Vec::new(),
            lines: Vec::new(),
            expect: expect.min(BATCH_BYTES + (BATCH_BYTES >> 2)),
        }
    }

    fn push(&mut self, body: &[u8], flags: u8, end: u64) -> io::Result<()> {
        if self.data.capacity() == 0 {
            self.data.reserve(self.expect.max(body.len()));
            self.lines.reserve(self.expect / 128 + 1);
        }
        let s = self.data.len() as u32;
        self.data.extend_from_slice(body);
        self.lines.push((s, self.data.len() as u32, flags, end));
        Ok(())
    }

    /// Sends what was collected (if anything); false when the writer is gone.
    fn send(&mut self, source: &Arc<str>, ctx: &SourceContext) -> bool {
        if self.lines.is_empty() {
            return true;
        }
        let next = Batch::sized(self.key, self.expect);
        let full = std::mem::replace(self, next);
        ctx.send(Event::Lines {
            source: source.clone(),
            file: full.key,
            ts: wall_ns(),
            data: full.data,
            lines: full.lines,
        })
    }
}
