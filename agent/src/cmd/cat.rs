//! `wormlog cat --spool DIR [--from SEQ] [--json]`: the records, verified
//! on the way; stops at the first problem (exit 1).

use crate::render::{record_json, record_line};
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use wormlog_spool::verify::verify_spool;

pub fn run(spool: &Path, from: u64, json: bool, pubkey: Option<&str>) -> anyhow::Result<ExitCode> {
    let key = pubkey.map(super::read_pubkey).transpose()?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
    let mut broken = false;
    let result = verify_spool(spool, key, &mut |loc, rec, _| {
        if broken || rec.seq < from {
            return;
        }
        let r = if json {
            writeln!(out, "{}", record_json(rec, loc.segment, loc.offset))
        } else {
            writeln!(out, "{}", record_line(rec))
        };
        broken = r.is_err();
    });
    let _ = out.flush();
    drop(out);
    match result {
        Ok(report) => match &report.failure {
            None => Ok(ExitCode::SUCCESS),
            Some(f) => {
                eprintln!(
                    "wormlog: TAMPERING OR LOSS at segment {}, byte offset {}, seq {}: {}",
                    f.segment, f.offset, f.seq, f.reason
                );
                Ok(ExitCode::from(1))
            }
        },
        Err(e) => {
            eprintln!("wormlog: error: {e}");
            Ok(ExitCode::from(2))
        }
    }
}
