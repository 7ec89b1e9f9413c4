//! Where a source stands (docs/FORMAT.md §6, `Position`).

use crate::codec::{CodecError, Reader, put_u8, put_u16, put_u64};

/// A source's read position, as stored in entries, gaps and checkpoints.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum Position {
    #[default]
    None,
    /// A file: its identity and the offset where reading resumes.
    File {
        dev: u64,
        ino: u64,
        fingerprint: u64,
        offset: u64,
    },
    /// A journald cursor.
    Journal(String),
    /// A per-source counter (e.g. the line number of standard input).
    Counter(u64),
    /// The audit log: a file position where reading resumes (every record
    /// before `offset` is in an entry already written), and the events
    /// already written whose records reach past it — their serial and
    /// where their last record ends — so that those records are not
    /// written twice when reading resumes.
    Audit {
        dev: u64,
        ino: u64,
        fingerprint: u64,
        offset: u64,
        done: Vec<(u32, u64)>,
    },
    /// A kind this version does not know, kept as it was.
    Other { kind: u8, bytes: Vec<u8> },
}

pub const POS_NONE: u8 = 0;
pub const POS_FILE: u8 = 1;
pub const POS_JOURNAL: u8 = 2;
pub const POS_COUNTER: u8 = 3;
pub const POS_AUDIT: u8 = 4;

/// A position as it lies in a record, not yet interpreted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PositionRef<'a> {
    pub kind: u8,
    pub bytes: &'a [u8],
}

impl<'a> PositionRef<'a> {
    pub fn decode(r: &mut Reader<'a>) -> Result<Self, CodecError> {
        let kind = r.u8()?;
        let bytes = r.bytes16()?;
        Ok(PositionRef { kind, bytes })
    }

    /// Interprets the position; a malformed known kind is an error.
    pub fn to_position(&self) -> Result<Position, CodecError> {
        let mut r = Reader::new(self.bytes);
        let p = match self.kind {
            POS_NONE => Position::None,
            POS_FILE => Position::File {
                dev: r.u64()?,
                ino: r.u64()?,
                fingerprint: r.u64()?,
                offset: r.u64()?,
            },
            POS_JOURNAL => {
                Position::Journal(String::from_utf8(r.rest().to_vec()).map_err(|_| {
                    CodecError::Invalid {
                        what: "journal cursor",
                    }
                })?)
            }
            POS_COUNTER => Position::Counter(r.u64()?),
            POS_AUDIT => {
                let (dev, ino, fingerprint, offset) = (r.u64()?, r.u64()?, r.u64()?, r.u64()?);
                let n = r.u16()?;
                let mut done = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    done.push((r.u32()?, r.u64()?));
                }
                Position::Audit {
                    dev,
                    ino,
                    fingerprint,
                    offset,
                    done,
                }
            }
            kind => Position::Other {
                kind,
                bytes: r.rest().to_vec(),
            },
        };
        r.finish()?;
        Ok(p)
    }
}

impl Position {
    pub fn kind(&self) -> u8 {
        match self {
            Position::None => POS_NONE,
            Position::File { .. } => POS_FILE,
            Position::Journal(_) => POS_JOURNAL,
            Position::Counter(_) => POS_COUNTER,
            Position::Audit { .. } => POS_AUDIT,
            Position::Other { kind, .. } => *kind,
        }
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        put_u8(out, self.kind());
        match self {
            Position::None => put_u16(out, 0),
            Position::File {
                dev,
                ino,
                fingerprint,
                offset,
            } => {
                put_u16(out, 32);
                put_u64(out, *dev);
                put_u64(out, *ino);
                put_u64(out, *fingerprint);
                put_u64(out, *offset);
            }
            Position::Journal(c) => crate::codec::put_bytes16(out, c.as_bytes()),
            Position::Counter(n) => {
                put_u16(out, 8);
                put_u64(out, *n);
            }
            Position::Audit {
                dev,
                ino,
                fingerprint,
                offset,
                done,
            } => {
                // At most this many events are listed (a position stays
                // small; more would mean thousands of events open at once).
                let done = &done[..done.len().min(4096)];
                put_u16(out, (34 + done.len() * 12) as u16);
                put_u64(out, *dev);
                put_u64(out, *ino);
                put_u64(out, *fingerprint);
                put_u64(out, *offset);
                put_u16(out, done.len() as u16);
                for (serial, end) in done {
                    out.extend_from_slice(&serial.to_le_bytes());
                    put_u64(out, *end);
                }
            }
            Position::Other { bytes, .. } => crate::codec::put_bytes16(out, bytes),
        }
    }

    /// What distinguishes one stream of a source from another: a file's
    /// device and inode (a glob source follows many files; the fingerprint
    /// is checked when a file is found again, it is not part of the key);
    /// other kinds have one stream per source. The third member is kept for
    /// kinds that need it and is 0 for files.
    pub fn stream_key(&self) -> (u64, u64, u64) {
        match self {
            Position::File { dev, ino, .. } | Position::Audit { dev, ino, .. } => (*dev, *ino, 0),
            _ => (0, 0, 0),
        }
    }
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Position::None => write!(f, "-"),
            Position::File {
                dev,
                ino,
                fingerprint,
                offset,
            } => write!(
                f,
                "file dev={dev} ino={ino} fp={fingerprint:016x} offset={offset}"
            ),
            Position::Journal(c) => write!(f, "cursor={c}"),
            Position::Counter(n) => write!(f, "#{n}"),
            Position::Audit {
                dev,
                ino,
                fingerprint,
                offset,
                done,
            } => write!(
                f,
                "audit dev={dev} ino={ino} fp={fingerprint:016x} offset={offset} done={}",
                done.len()
            ),
            Position::Other { kind, bytes } => write!(f, "kind{kind}:{}", crate::hash::hex(bytes)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips() {
        let all = [
            Position::None,
            Position::File {
                dev: 1,
                ino: 2,
                fingerprint: 3,
                offset: 4,
            },
            Position::Journal("s=1;i=2".into()),
            Position::Counter(9),
            Position::Audit {
                dev: 1,
                ino: 2,
                fingerprint: 3,
                offset: 4,
                done: vec![(77, 500), (78, 650)],
            },
            Position::Audit {
                dev: 1,
                ino: 2,
                fingerprint: 3,
                offset: 4,
                done: vec![],
            },
            Position::Other {
                kind: 200,
                bytes: vec![1, 2, 3],
            },
        ];
        for p in all {
            let mut b = Vec::new();
            p.encode(&mut b);
            let mut r = Reader::new(&b);
            let back = PositionRef::decode(&mut r).unwrap().to_position().unwrap();
            assert_eq!(back, p);
        }
        // A cut audit position is an error, not a panic.
        let mut b = Vec::new();
        Position::Audit {
            dev: 1,
            ino: 2,
            fingerprint: 3,
            offset: 4,
            done: vec![(1, 2)],
        }
        .encode(&mut b);
        b[1] -= 1;
        b.pop();
        let mut r = Reader::new(&b);
        assert!(PositionRef::decode(&mut r).unwrap().to_position().is_err());
    }
}
