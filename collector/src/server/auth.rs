//! Who may write which chain, decided from the request's headers and the
//! connection alone, before a byte of the body is read.

use super::App;
use crate::server::Peer;
use crate::users::{Principal, Role, User, Via, by_token};
use axum::http::{HeaderMap, header};
use rustls_pki_types::ServerName;

/// Why a caller is not known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unknown {
    /// No token and no client certificate (401).
    Missing,
    /// A token no user holds, or a malformed Authorization header (401).
    BadToken(String),
    /// A valid client certificate that is no user's, an agent's say (403).
    NotAUser,
}

/// The `Authorization: Bearer` token, if the header is there.
fn bearer(headers: &HeaderMap) -> Option<Result<&str, String>> {
    let v = headers.get(header::AUTHORIZATION)?;
    Some(
        v.to_str()
            .ok()
            .and_then(|s| s.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| "the Authorization header is not \"Bearer <token>\"".to_string()),
    )
}

/// Who is calling: the user whose token the request carries, or whose
/// name the client certificate (already checked against `client_ca`) is
/// issued for.
pub fn authenticate(app: &App, peer: &Peer, headers: &HeaderMap) -> Result<Principal, Unknown> {
    let users = &app.config.users;
    if let Some(t) = bearer(headers) {
        let t = t.map_err(Unknown::BadToken)?;
        return by_token(users, t)
            .map(|u| Principal {
                user: u.clone(),
                via: Via::Token,
            })
            .ok_or_else(|| Unknown::BadToken("the token is not valid".into()));
    }
    let Some(leaf) = peer.certs.as_ref().and_then(|c| c.first().cloned()) else {
        return Err(Unknown::Missing);
    };
    let Ok(cert) = webpki::EndEntityCert::try_from(&leaf) else {
        return Err(Unknown::NotAUser);
    };
    let named = |u: &&User| {
        u.cert_name.as_ref().is_some_and(|n| {
            ServerName::try_from(n.clone())
                .is_ok_and(|name| cert.verify_is_valid_for_subject_name(&name).is_ok())
        })
    };
    users
        .iter()
        .find(named)
        .map(|u| Principal {
            user: u.clone(),
            via: Via::Certificate,
        })
        .ok_or(Unknown::NotAUser)
}

/// Whether the request may write the chain of agent `id`: a bearer token
/// of a user with the agent role for `id`; otherwise, with mutual TLS,
/// the client certificate must be valid for the DNS name `id`.
pub fn authorised(app: &App, peer: &Peer, headers: &HeaderMap, id: &str) -> Result<(), String> {
    if let Some(token) = bearer(headers) {
        let u = by_token(&app.config.users, token?).ok_or("the token is not valid")?;
        return if u.roles.contains(&Role::Agent) && u.may_see(id) {
            Ok(())
        } else {
            Err(format!(
                "user {} may not write agent {id:?}'s chain",
                u.name
            ))
        };
    }
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
    // Registered by an admin (`PUT /v1/admin/agents/{id}`) or pinned on
    // first use: the key in the store.
    let pinned =
        std::fs::read_to_string(app.config.store_dir.join("agents").join(id).join("pubkey"))
            .ok()
            .and_then(|s| wormlog_spool::keys::parse_pubkey(s.trim()).ok());
    // Pinned or registered through another collector of the same bucket.
    let pinned = pinned.or_else(|| {
        let remote = app.remote.as_ref()?;
        remote.pinned(id).unwrap_or_else(|e| {
            tracing::warn!("agent {id}: the bucket's pin cannot be read: {e}");
            None
        })
    });
    match pinned {
        Some(k) => Some(Registration::Known(k)),
        None if app.config.trust_on_first_use => Some(Registration::FirstUse),
        None => None,
    }
}
