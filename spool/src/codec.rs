//! Explicit, bounds-checked little-endian encoding (docs/FORMAT.md §1).
//!
//! Every read checks its bounds and returns a typed error; nothing panics on
//! hostile input.

use thiserror::Error;

/// A decoding failure: the bytes are not a well-formed value.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CodecError {
    #[error("truncated: needed {need} more bytes at offset {at}")]
    Truncated { at: usize, need: usize },
    #[error("{trailing} trailing bytes after the payload")]
    Trailing { trailing: usize },
    #[error("invalid {what}")]
    Invalid { what: &'static str },
}

/// A cursor over a byte slice.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub fn position(&self) -> usize {
        self.pos
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        if self.remaining() < n {
            return Err(CodecError::Truncated {
                at: self.pos,
                need: n - self.remaining(),
            });
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], CodecError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub fn u8(&mut self) -> Result<u8, CodecError> {
        Ok(self.take(1)?[0])
    }

    pub fn u16(&mut self) -> Result<u16, CodecError> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    pub fn u32(&mut self) -> Result<u32, CodecError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub fn u64(&mut self) -> Result<u64, CodecError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    pub fn i64(&mut self) -> Result<i64, CodecError> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    pub fn bytes8(&mut self) -> Result<&'a [u8], CodecError> {
        let n = self.u8()? as usize;
        self.take(n)
    }

    pub fn bytes16(&mut self) -> Result<&'a [u8], CodecError> {
        let n = self.u16()? as usize;
        self.take(n)
    }

    pub fn bytes32(&mut self) -> Result<&'a [u8], CodecError> {
        let n = self.u32()? as usize;
        self.take(n)
    }

    /// A `bytes8` that must be UTF-8 text.
    pub fn text8(&mut self, what: &'static str) -> Result<&'a str, CodecError> {
        std::str::from_utf8(self.bytes8()?).map_err(|_| CodecError::Invalid { what })
    }

    /// A `bytes16` that must be UTF-8 text.
    pub fn text16(&mut self, what: &'static str) -> Result<&'a str, CodecError> {
        std::str::from_utf8(self.bytes16()?).map_err(|_| CodecError::Invalid { what })
    }

    /// Everything that is left.
    pub fn rest(&mut self) -> &'a [u8] {
        let out = &self.buf[self.pos..];
        self.pos = self.buf.len();
        out
    }

    /// Fails unless every byte was consumed.
    pub fn finish(&self) -> Result<(), CodecError> {
        match self.remaining() {
            0 => Ok(()),
            trailing => Err(CodecError::Trailing { trailing }),
        }
    }
}

pub fn put_u8(out: &mut Vec<u8>, v: u8) {
    out.push(v);
}
pub fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_le_bytes());
}
pub fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}
pub fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}
pub fn put_i64(out: &mut Vec<u8>, v: i64) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// Writes a `bytes8`; the caller guarantees `v.len() <= 255`.
pub fn put_bytes8(out: &mut Vec<u8>, v: &[u8]) {
    debug_assert!(v.len() <= u8::MAX as usize);
    out.push(v.len().min(u8::MAX as usize) as u8);
    out.extend_from_slice(&v[..v.len().min(u8::MAX as usize)]);
}

/// Writes a `bytes16`, cutting text longer than 65,535 bytes.
pub fn put_bytes16(out: &mut Vec<u8>, v: &[u8]) {
    let n = v.len().min(u16::MAX as usize);
    put_u16(out, n as u16);
    out.extend_from_slice(&v[..n]);
}

/// Writes a `bytes32`; the caller guarantees `v.len() <= u32::MAX`.
pub fn put_bytes32(out: &mut Vec<u8>, v: &[u8]) {
    put_u32(out, v.len() as u32);
    out.extend_from_slice(v);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_was_written_and_checks_bounds() {
        let mut b = Vec::new();
        put_u8(&mut b, 7);
        put_u16(&mut b, 0x1234);
        put_u32(&mut b, 0xdead_beef);
        put_u64(&mut b, u64::MAX - 1);
        put_i64(&mut b, -5);
        put_bytes8(&mut b, b"abc");
        put_bytes16(&mut b, b"de");
        put_bytes32(&mut b, b"");
        let mut r = Reader::new(&b);
        assert_eq!(r.u8().unwrap(), 7);
        assert_eq!(r.u16().unwrap(), 0x1234);
        assert_eq!(r.u32().unwrap(), 0xdead_beef);
        assert_eq!(r.u64().unwrap(), u64::MAX - 1);
        assert_eq!(r.i64().unwrap(), -5);
        assert_eq!(r.bytes8().unwrap(), b"abc");
        assert_eq!(r.bytes16().unwrap(), b"de");
        assert_eq!(r.bytes32().unwrap(), b"");
        r.finish().unwrap();
        assert!(matches!(r.u8(), Err(CodecError::Truncated { .. })));
        let mut r = Reader::new(&[5, 1, 2]);
        assert!(matches!(
            r.bytes8(),
            Err(CodecError::Truncated { need: 3, .. })
        ));
    }
}
