//! Who may write which chain, decided from the request's headers and the
//! connection alone, before a byte of the body is read.

use super::App;
use crate::server::Peer;
use rustls_pki_types::ServerName;

/// Whether the connection may write the chain of agent `id`: with mutual
/// TLS the client certificate must be valid for the DNS name `id`.
pub fn authorised(app: &App, peer: &Peer, id: &str) -> Result<(), String> {
    if !app.mtls() {
        return Ok(());
    }
    let Some(chain) = &peer.certs else {
        return Err("no client certificate".into());
    };
    let leaf = chain.first().ok_or("no client certificate")?;
    let cert =
        webpki::EndEntityCert::try_from(leaf).map_err(|e| format!("bad certificate: {e:?}"))?;
    let name = ServerName::try_from(id.to_owned())
        .map_err(|_| format!("agent id {id:?} is not a DNS name, so no certificate can name it"))?;
    cert.verify_is_valid_for_subject_name(&name)
        .map_err(|_| format!("the client certificate is not issued to agent {id:?}"))
}

/// What the collector knows of an agent before it opens its store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registration {
    /// Registered in the configuration, or pinned on first use: its first
    /// public key.
    Known([u8; 32]),
    /// Unknown, and the collector trusts on first use: it may send its
    /// genesis record (seq 0) and nothing else.
    FirstUse,
}

/// The agent's registration; None: not registered (403).
pub fn registration(app: &App, id: &str) -> Option<Registration> {
    if let Some(k) = app.config.agents.get(id) {
        return Some(Registration::Known(*k));
    }
    if !app.config.trust_on_first_use {
        return None;
    }
    let pinned =
        std::fs::read_to_string(app.config.store_dir.join("agents").join(id).join("pubkey"))
            .ok()
            .and_then(|s| wormlog_spool::keys::parse_pubkey(s.trim()).ok());
    Some(pinned.map_or(Registration::FirstUse, Registration::Known))
}
