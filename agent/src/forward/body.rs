//! A batch's request body, compressed as the spool is read: zstd's
//! streaming API takes the batch a read at a time, so the forwarder never
//! holds the raw batch beside its compressed body (4.4 MiB of the agent's
//! peak RSS while forwarding, docs/BENCHMARKS.md).
//!
//! A streamed frame does not know its size when its header is written, and
//! the collector reserves memory for a body by the size its frame header
//! announces (`max_batch_bytes` when it announces none). So the size is
//! written into the frame header at the end: the frame is written 8 bytes
//! into the body, and [`write_content_size`] moves its 6-byte header
//! forward into those 8 bytes with an 8-byte Frame_Content_Size field (RFC
//! 8878, 3.1.1.1). Tests check the result against zstd's own decoder and an
//! independent one (ruzstd).

use std::io;
use zstd::zstd_safe::zstd_sys::ZSTD_EndDirective;
use zstd::zstd_safe::{CCtx, CParameter, InBuffer, OutBuffer, ResetDirective};

/// Room kept in front of the frame for its content size.
const SPARE: usize = 8;
/// zstd's frame magic number, as it is written (little-endian).
const MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
/// Frame_Header_Descriptor bits a streamed frame of ours must have clear:
/// the content-size flag (bits 7-6), Single_Segment (bit 5), the reserved
/// bit 3 and the dictionary-id flag (bits 1-0).
const FHD_MUST_BE_CLEAR: u8 = 0b1110_1011;
/// Frame_Content_Size_flag 3: the size in 8 bytes.
const FHD_SIZE_IN_8_BYTES: u8 = 0b1100_0000;

fn zstd_error(code: usize) -> io::Error {
    io::Error::other(format!("zstd: {}", zstd::zstd_safe::get_error_name(code)))
}

/// One compression context, kept for the forwarder's life and used for one
/// body at a time: `begin`, `push` each piece, `finish`.
pub struct BodyCompressor {
    cctx: CCtx<'static>,
}

impl BodyCompressor {
    pub fn new(level: i32) -> io::Result<BodyCompressor> {
        let mut cctx = CCtx::try_create().ok_or_else(|| io::Error::other("zstd: no context"))?;
        cctx.set_parameter(CParameter::CompressionLevel(level))
            .map_err(zstd_error)?;
        Ok(BodyCompressor { cctx })
    }

    /// Starts a body in `out` (emptied).
    pub fn begin(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
        self.cctx
            .reset(ResetDirective::SessionOnly)
            .map_err(zstd_error)?;
        out.clear();
        out.extend_from_slice(&[0; SPARE]);
        Ok(())
    }

    /// Compresses the next piece of the batch into `out`.
    pub fn push(&mut self, out: &mut Vec<u8>, piece: &[u8]) -> io::Result<()> {
        let mut input = InBuffer::around(piece);
        while input.pos() < piece.len() {
            out.reserve(CCtx::out_size());
            let pos = out.len();
            let mut output = OutBuffer::around_pos(out, pos);
            self.cctx
                .compress_stream2(&mut output, &mut input, ZSTD_EndDirective::ZSTD_e_continue)
                .map_err(zstd_error)?;
        }
        Ok(())
    }

    /// Ends the frame and writes `raw_len`, the bytes pushed, into its
    /// header; returns the body.
    pub fn finish(&mut self, mut out: Vec<u8>, raw_len: u64) -> io::Result<Vec<u8>> {
        loop {
            out.reserve(CCtx::out_size());
            let pos = out.len();
            let mut output = OutBuffer::around_pos(&mut out, pos);
            if self.cctx.end_stream(&mut output).map_err(zstd_error)? == 0 {
                break;
            }
        }
        match zstd::zstd_safe::get_frame_content_size(&out[SPARE..]) {
            // A frame whose whole input came at its end (an empty one)
            // already announces its size.
            Ok(Some(n)) if n == raw_len => {
                out.drain(..SPARE);
            }
            Ok(None) => write_content_size(&mut out, raw_len)?,
            other => {
                return Err(io::Error::other(format!(
                    "zstd: the frame announces {other:?}, not {raw_len} bytes"
                )));
            }
        }
        out.shrink_to_fit();
        Ok(out)
    }
}

/// Moves the frame header at `body[SPARE..]` (magic, descriptor, window
/// descriptor: a streamed frame without a size, a dictionary or a single
/// segment) to the front of `body`, with `size` as an 8-byte
/// Frame_Content_Size after it; the blocks that follow stay where they are.
fn write_content_size(body: &mut [u8], size: u64) -> io::Result<()> {
    let header = body
        .get(SPARE..SPARE + 6)
        .ok_or_else(|| io::Error::other("zstd: frame shorter than its header"))?;
    if header[..4] != MAGIC || header[4] & FHD_MUST_BE_CLEAR != 0 {
        return Err(io::Error::other(format!(
            "zstd: unexpected frame header {header:02x?}"
        )));
    }
    let (descriptor, window) = (header[4], header[5]);
    body[..4].copy_from_slice(&MAGIC);
    body[4] = descriptor | FHD_SIZE_IN_8_BYTES;
    body[5] = window;
    body[6..SPARE + 6].copy_from_slice(&size.to_le_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Spool-like records: repetitive, with numbers that change.
    fn batch(len: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(len + 100);
        let mut i = 0u64;
        while v.len() < len {
            v.extend_from_slice(
                format!("{i:08} host app[{}]: request {} done\n", i % 97, i * 7919).as_bytes(),
            );
            i += 1;
        }
        v.truncate(len);
        v
    }

    fn compress(c: &mut BodyCompressor, raw: &[u8], piece: usize) -> Vec<u8> {
        let mut out = Vec::new();
        c.begin(&mut out).unwrap();
        for p in raw.chunks(piece.max(1)) {
            c.push(&mut out, p).unwrap();
        }
        c.finish(out, raw.len() as u64).unwrap()
    }

    #[test]
    fn the_frame_announces_its_size_and_zstd_decodes_it() {
        let mut c = BodyCompressor::new(-1).unwrap();
        // One context for every body, as the forwarder uses it.
        for (len, piece) in [
            (0, 1),
            (1, 1),
            (100, 7),
            (4096, 4096),
            (300_000, 65_536),
            (4_600_000, 262_144),
        ] {
            let raw = batch(len);
            let body = compress(&mut c, &raw, piece);
            assert_eq!(
                zstd::zstd_safe::get_frame_content_size(&body).unwrap(),
                Some(len as u64),
                "{len} bytes"
            );
            // The collector's decoder: exactly as large as announced.
            let back = zstd::bulk::Decompressor::new()
                .unwrap()
                .decompress(&body, len)
                .unwrap();
            assert_eq!(back, raw, "{len} bytes");
            // An independent decoder (ruzstd, pure Rust) reads the same
            // size from the header and the same bytes from the blocks.
            let mut d = ruzstd::decoding::StreamingDecoder::new(&body[..]).unwrap();
            assert_eq!(d.decoder.content_size(), len as u64, "{len} bytes");
            let mut back = Vec::new();
            std::io::Read::read_to_end(&mut d, &mut back).unwrap();
            assert_eq!(back, raw, "{len} bytes");
        }
    }

    #[test]
    fn a_wrong_size_is_caught_by_the_decoder() {
        let mut c = BodyCompressor::new(-1).unwrap();
        let raw = batch(50_000);
        let mut out = Vec::new();
        c.begin(&mut out).unwrap();
        c.push(&mut out, &raw).unwrap();
        let body = c.finish(out, 49_999).unwrap();
        assert!(
            zstd::bulk::Decompressor::new()
                .unwrap()
                .decompress(&body, 60_000)
                .is_err()
        );
    }

    #[test]
    fn compresses_as_well_as_the_one_shot_compressor() {
        let mut c = BodyCompressor::new(-1).unwrap();
        let raw = batch(4_600_000);
        let streamed = compress(&mut c, &raw, 262_144).len();
        let one_shot = zstd::bulk::compress(&raw, -1).unwrap().len();
        assert!(
            streamed <= one_shot + one_shot / 20,
            "{streamed} against {one_shot}"
        );
    }

    #[test]
    fn an_unexpected_header_is_refused() {
        let mut body = vec![0u8; 20];
        body[SPARE..SPARE + 4].copy_from_slice(&MAGIC);
        body[SPARE + 4] = 0b0010_0000; // Single_Segment
        assert!(write_content_size(&mut body, 5).is_err());
        body[SPARE + 4] = 0;
        body[SPARE] = 0;
        assert!(write_content_size(&mut body, 5).is_err());
        assert!(write_content_size(&mut [0u8; 10], 5).is_err());
    }
}
