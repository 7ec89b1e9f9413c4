//! Splitting a byte stream into lines, with bounded memory: a line longer
//! than `max` bytes is emitted in parts flagged `more_parts` /
//! `continuation`; a tail without a newline is held until it is complete or
//! flushed (then flagged `no_newline`). Used by `wormlog append` and the
//! file source.

use wormlog_spool::record::{ENTRY_CONTINUATION, ENTRY_MORE_PARTS, ENTRY_NO_NEWLINE};

/// Holds the unfinished line between reads.
#[derive(Debug)]
pub struct LineSplitter {
    max: usize,
    line: Vec<u8>,
    /// The next entry continues a line already partly emitted.
    cont: bool,
}

impl LineSplitter {
    pub fn new(max: usize) -> Self {
        LineSplitter {
            max: max.max(1),
            line: Vec::new(),
            cont: false,
        }
    }

    /// Bytes held that are not yet emitted.
    pub fn pending(&self) -> usize {
        self.line.len()
    }

    /// Splits `data`, which starts at stream offset `offset`; `emit` gets
    /// each line (without its `\n`), its flags and the stream offset just
    /// after it. Whole lines are handed over without copying.
    pub fn push<E>(
        &mut self,
        mut data: &[u8],
        mut offset: u64,
        emit: &mut impl FnMut(&[u8], u8, u64) -> Result<(), E>,
    ) -> Result<(), E> {
        while !data.is_empty() {
            let cflag = if self.cont { ENTRY_CONTINUATION } else { 0 };
            let room = self.max - self.line.len();
            if room == 0 {
                if data[0] == b'\n' {
                    offset += 1;
                    data = &data[1..];
                    emit(&self.line, cflag, offset)?;
                    self.line.clear();
                    self.cont = false;
                } else {
                    emit(&self.line, ENTRY_MORE_PARTS | cflag, offset)?;
                    self.line.clear();
                    self.cont = true;
                }
                continue;
            }
            let window = &data[..data.len().min(room + 1)];
            match memchr::memchr(b'\n', window) {
                Some(i) => {
                    offset += i as u64 + 1;
                    if self.line.is_empty() {
                        emit(&data[..i], cflag, offset)?;
                    } else {
                        self.line.extend_from_slice(&data[..i]);
                        emit(&self.line, cflag, offset)?;
                        self.line.clear();
                    }
                    self.cont = false;
                    data = &data[i + 1..];
                }
                None => {
                    let take = data.len().min(room);
                    self.line.extend_from_slice(&data[..take]);
                    offset += take as u64;
                    data = &data[take..];
                }
            }
        }
        Ok(())
    }

    /// Emits the held bytes as an entry without a newline (at the end of
    /// input, after the idle time, or at shutdown); `offset` is the stream
    /// offset after them. The next bytes continue that line.
    pub fn flush<E>(
        &mut self,
        offset: u64,
        emit: &mut impl FnMut(&[u8], u8, u64) -> Result<(), E>,
    ) -> Result<bool, E> {
        if self.line.is_empty() {
            return Ok(false);
        }
        let cflag = if self.cont { ENTRY_CONTINUATION } else { 0 };
        emit(&self.line, ENTRY_NO_NEWLINE | cflag, offset)?;
        self.line.clear();
        self.cont = true;
        Ok(true)
    }

    /// Says that the next bytes continue a line whose beginning was already
    /// emitted (resuming after a partial line or a part).
    pub fn continue_line(&mut self) {
        self.cont = true;
    }

    /// Gives back the memory a long partial line left behind once it is
    /// emitted (thousands of quiet files must not each keep one).
    pub fn trim(&mut self) {
        if self.line.is_empty() && self.line.capacity() > 4096 {
            self.line = Vec::new();
        }
    }

    /// Forgets held bytes (the stream was replaced).
    pub fn reset(&mut self) {
        self.line.clear();
        self.cont = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(input: &[u8], max: usize, chunk: usize) -> Vec<(Vec<u8>, u8, u64)> {
        let mut out = Vec::new();
        let mut s = LineSplitter::new(max);
        let mut emit = |b: &[u8], f: u8, o: u64| -> Result<(), ()> {
            out.push((b.to_vec(), f, o));
            Ok(())
        };
        let mut off = 0;
        for c in input.chunks(chunk) {
            s.push(c, off, &mut emit).unwrap();
            off += c.len() as u64;
        }
        s.flush(off, &mut emit).unwrap();
        out
    }

    #[test]
    fn lines_parts_and_tails_whatever_the_chunking() {
        for chunk in [1, 2, 3, 7, 64] {
            assert_eq!(
                split(b"a\nbb\n\nc", 16, chunk),
                vec![
                    (b"a".to_vec(), 0, 2),
                    (b"bb".to_vec(), 0, 5),
                    (b"".to_vec(), 0, 6),
                    (b"c".to_vec(), ENTRY_NO_NEWLINE, 7)
                ]
            );
            assert_eq!(split(b"abcd\n", 4, chunk), vec![(b"abcd".to_vec(), 0, 5)]);
            assert_eq!(
                split(b"abcdefghij\nxy", 4, chunk),
                vec![
                    (b"abcd".to_vec(), ENTRY_MORE_PARTS, 4),
                    (b"efgh".to_vec(), ENTRY_MORE_PARTS | ENTRY_CONTINUATION, 8),
                    (b"ij".to_vec(), ENTRY_CONTINUATION, 11),
                    (b"xy".to_vec(), ENTRY_NO_NEWLINE, 13),
                ]
            );
            assert_eq!(
                split(b"abcdefgh", 4, chunk),
                vec![
                    (b"abcd".to_vec(), ENTRY_MORE_PARTS, 4),
                    (b"efgh".to_vec(), ENTRY_NO_NEWLINE | ENTRY_CONTINUATION, 8),
                ]
            );
            assert!(split(b"", 4, chunk).is_empty());
            assert_eq!(
                split(b"\x00\xff\r\n", 16, chunk),
                vec![(b"\x00\xff\r".to_vec(), 0, 4)]
            );
        }
    }

    #[test]
    fn a_flushed_tail_is_continued() {
        let mut out = Vec::new();
        let mut emit = |b: &[u8], f: u8, o: u64| -> Result<(), ()> {
            out.push((b.to_vec(), f, o));
            Ok(())
        };
        let mut s = LineSplitter::new(64);
        s.push(b"par", 0, &mut emit).unwrap();
        assert!(s.flush(3, &mut emit).unwrap());
        s.push(b"tial\n", 3, &mut emit).unwrap();
        assert_eq!(
            out,
            vec![
                (b"par".to_vec(), ENTRY_NO_NEWLINE, 3),
                (b"tial".to_vec(), ENTRY_CONTINUATION, 8)
            ]
        );
    }
}
