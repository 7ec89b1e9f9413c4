//! `wormlog cat --spool DIR [--from SEQ] [--json] [--identity FILE]`: the
//! records, verified on the way; stops at the first problem (exit 1). With
//! an age identity, sealed entries are opened; without, they are shown as
//! encrypted.

use std::path::Path;
use std::process::ExitCode;

pub fn run(
    spool: &Path,
    from: u64,
    json: bool,
    pubkey: Option<&str>,
    identity: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let key = pubkey.map(super::read_pubkey).transpose()?;
    let ids = identity
        .map(wormlog_spool::crypt::Identities::from_file)
        .transpose()?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
    let result = wormlog_text::cat::cat(spool, key, from, json, ids, &mut out);
    drop(out);
    match result {
        Ok(r) => Ok(wormlog_text::cat::verdict("wormlog", &r)),
        Err(e) => {
            eprintln!("wormlog: error: {e}");
            Ok(ExitCode::from(2))
        }
    }
}
