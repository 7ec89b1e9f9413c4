//! Who may read: the users of the configuration (`[[users]]`), their
//! roles, the agents an auditor is limited to, and how a request proves it
//! is one of them — a bearer token (kept only as its SHA-256) or a client
//! certificate issued for the user's name (README: "Roles and users").

use base64::Engine;
use std::collections::BTreeSet;
use std::fmt;

/// What a user may do (docs/SECURITY.md "Roles").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Writes the chains of its agents (with a token; an agent's client
    /// certificate needs no user).
    Agent,
    /// Reads, searches, verifies, exports and discloses.
    Auditor,
    /// Registers agents and lists users; reads no body.
    Admin,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "agent" => Some(Role::Agent),
            "auditor" => Some(Role::Auditor),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Role::Agent => "agent",
            Role::Auditor => "auditor",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A configured user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub roles: BTreeSet<Role>,
    /// The agents this user may read (auditor) or write (agent); None: all
    /// (auditor only; an agent user must name its agents).
    pub agents: Option<BTreeSet<String>>,
    /// SHA-256 of the user's token.
    pub token_sha256: Option<[u8; 32]>,
    /// The DNS name a client certificate must be valid for.
    pub cert_name: Option<String>,
}

impl User {
    pub fn may_see(&self, agent: &str) -> bool {
        self.agents.as_ref().is_none_or(|a| a.contains(agent))
    }

    pub fn roles_text(&self) -> String {
        let v: Vec<&str> = self.roles.iter().map(|r| r.name()).collect();
        v.join(",")
    }
}

/// How a caller proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Token,
    Certificate,
}

impl Via {
    pub fn name(self) -> &'static str {
        match self {
            Via::Token => "token",
            Via::Certificate => "certificate",
        }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user: User,
    pub via: Via,
}

/// The prefix of every token this collector makes.
pub const TOKEN_PREFIX: &str = "wlt_";

/// A new random token (`wlt_` and 43 characters of base64url: 256 bits)
/// and its SHA-256 in hex, which is all the configuration keeps.
pub fn new_token() -> std::io::Result<(String, String)> {
    let mut raw = [0u8; 32];
    rustix::rand::getrandom(&mut raw, rustix::rand::GetRandomFlags::empty())
        .map_err(std::io::Error::from)?;
    let token = format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
    );
    let hash = wormlog_spool::hash::hex(&token_hash(&token));
    Ok((token, hash))
}

/// The SHA-256 of a token as presented.
pub fn token_hash(token: &str) -> [u8; 32] {
    wormlog_spool::hash::sha256(token.as_bytes())
}

/// Finds the user holding `token`: the hashes are compared in constant
/// time, every one of them, so the answer's timing says nothing of which
/// hash came close.
pub fn by_token<'a>(users: &'a [User], token: &str) -> Option<&'a User> {
    let h = token_hash(token);
    let mut found = None;
    for u in users {
        if let Some(t) = &u.token_sha256
            && constant_eq(t, &h)
        {
            found = Some(u);
        }
    }
    found
}

fn constant_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_found_by_their_hash_only() {
        let (t, h) = new_token().unwrap();
        assert!(t.starts_with(TOKEN_PREFIX) && t.len() == 4 + 43, "{t}");
        let u = User {
            name: "alice".into(),
            roles: BTreeSet::from([Role::Auditor]),
            agents: None,
            token_sha256: wormlog_spool::hash::parse_hex32(&h),
            cert_name: None,
        };
        let users = vec![u];
        assert_eq!(by_token(&users, &t).unwrap().name, "alice");
        assert!(by_token(&users, &format!("{t}x")).is_none());
        assert!(by_token(&users, &h).is_none(), "the hash is not the token");
        let (t2, _) = new_token().unwrap();
        assert_ne!(t, t2);
    }
}
