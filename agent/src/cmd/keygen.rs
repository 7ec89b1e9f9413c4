//! `wormlog keygen --key-dir DIR`

use std::path::Path;
use std::process::ExitCode;
use wormlog_spool::clock::wall_ns;
use wormlog_spool::keys::{HostKey, KeyError, PUB_FILE, format_pubkey};

pub fn run(key_dir: &Path) -> anyhow::Result<ExitCode> {
    match HostKey::generate(key_dir, wall_ns()) {
        Ok(pk) => {
            println!("{}", format_pubkey(&pk));
            // Standard output may be redirected (the packages' scripts
            // print the key themselves): say where it is, not "above".
            eprintln!(
                "wormlog: host key written to {}; its public key {} is also in {}",
                key_dir.display(),
                format_pubkey(&pk),
                key_dir.join(PUB_FILE).display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(KeyError::Exists(p)) => {
            let existing = std::fs::read_to_string(key_dir.join(PUB_FILE)).unwrap_or_default();
            eprintln!(
                "wormlog: error: {} already exists; refusing to replace a host key (its public key: {})",
                p.display(),
                existing.trim()
            );
            Ok(ExitCode::from(1))
        }
        Err(e) => Err(e.into()),
    }
}
