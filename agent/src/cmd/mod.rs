//! One module per subcommand.

pub mod append;
pub mod bundle;
pub mod cat;
pub mod check_config;
pub mod keygen;
pub mod status;
pub mod verify;

use anyhow::Context as _;

/// Reads a public key given as text or as a file holding it.
pub fn read_pubkey(arg: &str) -> anyhow::Result<[u8; 32]> {
    let text = if arg.trim_start().starts_with("ed25519:") {
        arg.to_owned()
    } else {
        std::fs::read_to_string(arg).with_context(|| format!("reading public key file {arg}"))?
    };
    Ok(wormlog_spool::keys::parse_pubkey(&text)?)
}
