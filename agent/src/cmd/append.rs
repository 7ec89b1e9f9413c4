//! `wormlog append --config PATH --source NAME`: standard input, line by
//! line, into the spool. Lines longer than `max_line_bytes` are split into
//! parts flagged `more_parts` / `continuation`; a last line without a newline
//! is kept and flagged `no_newline`. Memory stays bounded by
//! `max_line_bytes` whatever the input.

use crate::lines::LineSplitter;
use anyhow::Context as _;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::ExitCode;
use wormlog_spool::clock::wall_ns;
use wormlog_spool::keys::HostKey;
use wormlog_spool::{Position, Spool, SpoolError};

pub fn run(config: &Path, source: &str, quiet: bool) -> anyhow::Result<ExitCode> {
    let cfg = match crate::config::load(config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::from(2));
        }
    };
    if source.is_empty() || source.len() > 255 {
        anyhow::bail!("--source must be 1 to 255 bytes");
    }
    let key = HostKey::load(&cfg.config.agent.key_dir)?;
    let opts = cfg.spool_options("append");
    let (mut spool, report) = match Spool::open(opts, key) {
        Ok(x) => x,
        Err(e @ SpoolError::Locked(_)) => {
            eprintln!(
                "wormlog: error: {e}; is `wormlog run` using this spool? Stop it, or send the lines to the running agent"
            );
            return Ok(ExitCode::from(1));
        }
        Err(e) => {
            eprintln!("wormlog: error: {e}");
            return Ok(ExitCode::from(1));
        }
    };
    for w in &report.warnings {
        eprintln!("wormlog: warning: {w}");
    }
    let first = spool.next_seq();
    let max = cfg.config.spool.max_line_bytes.0 as usize;
    let stdin = std::io::stdin();
    let mut reader = BufReader::with_capacity(1 << 20, stdin.lock());
    let mut since_tick = 0u32;
    let lines = spool.append_entries(|sink| {
        feed(&mut reader, max, |body, flags, offset| {
            sink.push(
                source,
                &Position::Counter(offset),
                flags,
                &[],
                body,
                wall_ns(),
            )?;
            since_tick += 1;
            if since_tick == 1024 {
                since_tick = 0;
                sink.tick()?;
            }
            Ok(())
        })
    });
    let lines = match lines {
        Ok(n) => n,
        Err(e) => {
            eprintln!("wormlog: error: {e:#}");
            // What was appended before the error is still made durable.
            let _ = spool.close("error while reading input");
            return Ok(ExitCode::from(1));
        }
    };
    let last = spool.next_seq();
    spool.close("end of input").context("closing the spool")?;
    if !quiet {
        eprintln!("wormlog: appended {lines} lines as source {source:?} (records {first}..{last})");
    }
    Ok(ExitCode::SUCCESS)
}

/// Splits `r` into lines of at most `max` bytes and hands each to `emit`
/// with its flags and the input offset after it. Returns the number of
/// entries emitted.
pub fn feed<R: BufRead>(
    r: &mut R,
    max: usize,
    mut emit: impl FnMut(&[u8], u8, u64) -> Result<(), SpoolError>,
) -> anyhow::Result<u64> {
    let mut splitter = LineSplitter::new(max);
    let mut offset: u64 = 0;
    let mut n = 0u64;
    {
        let mut counted = |b: &[u8], f: u8, o: u64| {
            n += 1;
            emit(b, f, o)
        };
        loop {
            let avail = r.fill_buf().context("reading standard input")?;
            if avail.is_empty() {
                splitter.flush(offset, &mut counted)?;
                break;
            }
            let len = avail.len();
            splitter.push(avail, offset, &mut counted)?;
            offset += len as u64;
            r.consume(len);
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use wormlog_spool::record::{ENTRY_MORE_PARTS, ENTRY_NO_NEWLINE};

    #[test]
    fn feeds_lines_parts_and_the_tail() {
        // The splitting itself is tested in lines.rs; this checks the glue.
        let mut out = Vec::new();
        let mut r = BufReader::with_capacity(3, &b"ab\ncdefg\nh"[..]);
        let n = feed(&mut r, 4, |b, f, o| {
            out.push((b.to_vec(), f, o));
            Ok(())
        })
        .unwrap();
        assert_eq!(n, 4);
        assert_eq!(out[0], (b"ab".to_vec(), 0, 3));
        assert_eq!(out[1].1, ENTRY_MORE_PARTS);
        assert_eq!(out[3], (b"h".to_vec(), ENTRY_NO_NEWLINE, 10));
    }
}
