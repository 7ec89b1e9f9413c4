//! `wormlog verify --bundle FILE --pubkey KEY [--collector-pubkey KEY]`
//! and `wormlog cat --bundle FILE …`: a bundle from a collector checked
//! offline (docs/FORMAT.md §12).

use std::path::Path;
use std::process::ExitCode;
use wormlog_spool::bundle::Trust;

#[derive(Debug)]
pub struct Args<'a> {
    pub bundle: &'a Path,
    pub pubkey: Option<&'a str>,
    pub collector_pubkey: Option<&'a str>,
    pub identity: Option<&'a Path>,
    pub json: bool,
    /// Print every record (cat), not only a disclosure's entry.
    pub records: bool,
}

pub fn run(a: &Args<'_>) -> anyhow::Result<ExitCode> {
    let Some(pk) = a.pubkey else {
        eprintln!(
            "wormlog: error: --bundle needs --pubkey: the agent's first public key is what the bundle is checked against"
        );
        return Ok(ExitCode::from(2));
    };
    let agent_key = super::read_pubkey(pk)?;
    let collector_key = a.collector_pubkey.map(super::read_pubkey).transpose()?;
    let identities = a
        .identity
        .map(wormlog_spool::crypt::Identities::from_file)
        .transpose()?;
    let text = match std::fs::read(a.bundle) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("wormlog: error: {}: {e}", a.bundle.display());
            return Ok(ExitCode::from(2));
        }
    };
    let trust = Trust {
        agent_key,
        collector_key,
        identities,
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let c = wormlog_text::bundle::check(&text, trust, a.json, a.records, &mut out);
    drop(out);
    // cat prints the records; verify the verdict (its report with --json).
    Ok(wormlog_text::bundle::verdict(
        "wormlog",
        &c,
        &agent_key,
        a.json && !a.records,
    ))
}
