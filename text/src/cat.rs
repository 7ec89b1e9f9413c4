//! `cat`, shared by `wormlog cat` and `wormlog-collector cat`: a spool's
//! records, verified on the way, one line (or JSON object) each; with age
//! identities, sealed entries opened (docs/FORMAT.md §6.2.1). Without them
//! a sealed entry is shown as encrypted, never its ciphertext as a line.

use crate::render::{record_json, record_line};
use std::io::Write;
use std::path::Path;
use wormlog_spool::crypt::{Identities, Opener};
use wormlog_spool::record::{Entry, Payload};
use wormlog_spool::verify::{Report, VerifyError, verify_spool};

/// What `cat` printed.
#[derive(Debug)]
pub struct CatResult {
    pub report: Report,
    /// Sealed entries opened, and those that could not be (with the first
    /// reason).
    pub opened: u64,
    pub not_opened: u64,
    pub first_problem: Option<String>,
    /// Sealed entries shown as encrypted (no identity given).
    pub sealed_shown: u64,
}

/// Prints the records of `dir` from `from` on.
pub fn cat(
    dir: &Path,
    key: Option<[u8; 32]>,
    from: u64,
    json: bool,
    identities: Option<Identities>,
    out: &mut dyn Write,
) -> Result<CatResult, VerifyError> {
    let mut opener = identities.map(Opener::new);
    let (mut opened, mut not_opened, mut sealed_shown) = (0, 0, 0);
    let mut first_problem = None;
    let mut broken = false;
    let report = verify_spool(dir, key, &mut |loc, rec, bytes| {
        if let (
            Some(o),
            Payload::DataKey {
                recipients,
                wrapped,
            },
        ) = (opener.as_mut(), &rec.payload)
        {
            o.data_key(loc.segment, recipients, wrapped);
        }
        if broken || rec.seq < from {
            return;
        }
        let sealed = match &rec.payload {
            Payload::Entry(Entry {
                sealed: Some(s), ..
            }) => Some(s.len()),
            _ => None,
        };
        let r = match (sealed, opener.as_ref()) {
            (Some(n), Some(o)) => match o.open(loc.segment, rec.seq, bytes, n) {
                Ok(p) => {
                    opened += 1;
                    if json {
                        let v = crate::render::record_json_opened(
                            rec,
                            Some(&p),
                            loc.segment,
                            loc.offset,
                        );
                        writeln!(out, "{v}")
                    } else {
                        let clear =
                            crate::render::with_opened(rec, &p).expect("sealed only on entries");
                        writeln!(out, "{}", record_line(&clear))
                    }
                }
                Err(why) => {
                    not_opened += 1;
                    first_problem.get_or_insert_with(|| why.clone());
                    if json {
                        let mut v = record_json(rec, loc.segment, loc.offset);
                        v["decrypt_error"] = serde_json::Value::String(why);
                        writeln!(out, "{v}")
                    } else {
                        writeln!(
                            out,
                            "{} (cannot open: {})",
                            record_line(rec),
                            crate::render::escape_bytes(why.as_bytes())
                        )
                    }
                }
            },
            (s, _) => {
                sealed_shown += u64::from(s.is_some());
                if json {
                    writeln!(out, "{}", record_json(rec, loc.segment, loc.offset))
                } else {
                    writeln!(out, "{}", record_line(rec))
                }
            }
        };
        broken = r.is_err();
    })?;
    let _ = out.flush();
    Ok(CatResult {
        report,
        opened,
        not_opened,
        first_problem,
        sealed_shown,
    })
}

/// The exit code and the lines on standard error for a `cat` that ran:
/// 1 on tampering or loss; 2 when an identity was given and opened no
/// sealed entry at all (the wrong identity); 0 otherwise, with a warning
/// when some entries could not be opened.
pub fn verdict(program: &str, r: &CatResult) -> std::process::ExitCode {
    if let Some(f) = &r.report.failure {
        eprintln!(
            "{program}: TAMPERING OR LOSS at segment {}, byte offset {}, seq {}: {}",
            f.segment, f.offset, f.seq, f.reason
        );
        return std::process::ExitCode::from(1);
    }
    let why = r.first_problem.as_deref().unwrap_or("");
    if r.not_opened > 0 && r.opened == 0 {
        eprintln!(
            "{program}: error: the identity opens none of the {} encrypted entries: {why}",
            r.not_opened
        );
        return std::process::ExitCode::from(2);
    }
    if r.not_opened > 0 {
        eprintln!(
            "{program}: warning: {} encrypted entries could not be opened (the first: {why}); {} were",
            r.not_opened, r.opened
        );
    }
    if r.sealed_shown > 0 {
        eprintln!(
            "{program}: {} entries are encrypted; give --identity FILE (an age identity of a recipient) to read them",
            r.sealed_shown
        );
    }
    std::process::ExitCode::SUCCESS
}
