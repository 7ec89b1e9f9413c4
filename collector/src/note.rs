//! Checkpoints the wider world can check: the latest countersigned
//! checkpoint of each agent as a C2SP `tlog-checkpoint` in the C2SP
//! `signed-note` form (README "Checkpoints as signed notes"):
//!
//! ```text
//! <origin>\n<tree size>\n<root, base64>\n
//! \n
//! — <key name> <base64(key hash (4 bytes) || Ed25519 signature (64))>\n
//! ```
//!
//! signed with a key of its own (`<key_dir>/checkpoint.key`, not the
//! receipt key: a note is text another format could resemble). The
//! origin is `<origin>/<agent id>`; the key name `<origin>/collector/<id>`;
//! the key hash the first 4 bytes of SHA-256(name || "\n" || 0x01 ||
//! public key); the verifier key (`<key_dir>/checkpoint.vkey`) is
//! `<name>+<key hash, hex>+<base64(0x01 || public key)>`, what Go's
//! `golang.org/x/mod/sumdb/note` and other tlog tools take.

use base64::Engine;
use ed25519_dalek::{Signer as _, SigningKey, Verifier as _, VerifyingKey};
use std::io;
use std::path::Path;

pub const NOTE_KEY_FILE: &str = "checkpoint.key";
pub const NOTE_VKEY_FILE: &str = "checkpoint.vkey";
const ED25519_ALG: u8 = 0x01;

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// The collector's note key.
#[derive(Debug)]
pub struct NoteSigner {
    key: SigningKey,
    /// The key's name in signature lines.
    pub name: String,
    /// Agents' origins start with this (`<origin>/<agent id>`).
    pub origin: String,
}

impl NoteSigner {
    /// Loads `<dir>/checkpoint.key`, or makes it; writes the verifier key.
    pub fn load_or_create(dir: &Path, origin: &str, collector_id: &str) -> io::Result<NoteSigner> {
        std::fs::create_dir_all(dir)?;
        let seed = crate::receipts::seed_file(&dir.join(NOTE_KEY_FILE))?;
        let s = NoteSigner {
            key: SigningKey::from_bytes(&seed),
            name: key_name(origin, collector_id),
            origin: origin.to_owned(),
        };
        let line = format!("{}\n", s.verifier_key());
        wormlog_spool::keys::write_atomic(&dir.join(NOTE_VKEY_FILE), line.as_bytes(), 0o644)
            .map_err(io::Error::other)?;
        Ok(s)
    }

    /// `<name>+<hash>+<base64(0x01 || key)>`.
    pub fn verifier_key(&self) -> String {
        let pk = self.key.verifying_key().to_bytes();
        let mut k = vec![ED25519_ALG];
        k.extend_from_slice(&pk);
        format!(
            "{}+{}+{}",
            self.name,
            wormlog_spool::hash::hex(&key_hash(&self.name, &pk)),
            b64().encode(k)
        )
    }

    /// The signed note of agent `agent`'s checkpoint.
    pub fn checkpoint(&self, agent: &str, tree_size: u64, root: &[u8; 32]) -> String {
        let text = format!(
            "{}/{agent}\n{tree_size}\n{}\n",
            self.origin,
            b64().encode(root)
        );
        let pk = self.key.verifying_key().to_bytes();
        let mut sig = key_hash(&self.name, &pk).to_vec();
        sig.extend_from_slice(&self.key.sign(text.as_bytes()).to_bytes());
        format!("{text}\n\u{2014} {} {}\n", self.name, b64().encode(sig))
    }
}

impl NoteSigner {
    /// `note` (another collector's, already checked) with this key's
    /// signature line added over the same text.
    pub fn cosign(&self, note: &str) -> String {
        let Some((text, sigs)) = note.split_once("\n\n") else {
            return note.to_owned();
        };
        let text = format!("{text}\n");
        let pk = self.key.verifying_key().to_bytes();
        let mut sig = key_hash(&self.name, &pk).to_vec();
        sig.extend_from_slice(&self.key.sign(text.as_bytes()).to_bytes());
        format!(
            "{text}\n{}\u{2014} {} {}\n",
            sigs.trim_end_matches('\n').to_owned() + "\n",
            self.name,
            b64().encode(sig)
        )
    }
}

/// The key name of collector `id`: `<origin>/collector/<id>`, with what a
/// note forbids (space, `+`, control characters) replaced by `_`.
pub fn key_name(origin: &str, id: &str) -> String {
    format!("{origin}/collector/{id}")
        .chars()
        .map(|c| {
            if c.is_whitespace() || c == '+' || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect()
}

fn key_hash(name: &str, pk: &[u8; 32]) -> [u8; 4] {
    let mut m = name.as_bytes().to_vec();
    m.push(b'\n');
    m.push(ED25519_ALG);
    m.extend_from_slice(pk);
    wormlog_spool::hash::sha256(&m)[..4]
        .try_into()
        .expect("4 bytes")
}

/// A verifier key's name and Ed25519 key (its hash checked).
pub fn parse_verifier_key(vkey: &str) -> Result<(String, VerifyingKey), String> {
    let mut parts = vkey.trim().splitn(3, '+');
    let (name, hash, key) = match (parts.next(), parts.next(), parts.next()) {
        (Some(n), Some(h), Some(k)) => (n, h, k),
        _ => return Err("not a verifier key".into()),
    };
    let key = b64().decode(key).map_err(|e| e.to_string())?;
    if key.len() != 33 || key[0] != ED25519_ALG {
        return Err("not an Ed25519 verifier key".into());
    }
    let pk: [u8; 32] = key[1..].try_into().expect("32");
    if wormlog_spool::hash::hex(&key_hash(name, &pk)) != hash {
        return Err("the verifier key's hash does not match its name and key".into());
    }
    let vk = VerifyingKey::from_bytes(&pk).map_err(|e| e.to_string())?;
    Ok((name.to_owned(), vk))
}

/// Checks a note against a verifier key: its text when a signature line of
/// that key verifies.
pub fn open(note: &str, vkey: &str) -> Result<String, String> {
    let (name, vk) = parse_verifier_key(vkey)?;
    let name = name.as_str();
    let pk = vk.to_bytes();
    let (text, sigs) = note
        .split_once("\n\n")
        .map(|(t, s)| (format!("{t}\n"), s))
        .ok_or("no signature block")?;
    for line in sigs.lines() {
        let Some(rest) = line.strip_prefix("\u{2014} ") else {
            return Err(format!("not a signature line: {line:?}"));
        };
        let Some((n, sig)) = rest.split_once(' ') else {
            continue;
        };
        let sig = b64().decode(sig).map_err(|e| e.to_string())?;
        if n != name || sig.len() != 68 || sig[..4] != key_hash(name, &pk) {
            continue;
        }
        let s = ed25519_dalek::Signature::from_bytes(&sig[4..].try_into().expect("64"));
        if vk.verify(text.as_bytes(), &s).is_ok() {
            return Ok(text);
        }
        return Err("the signature does not verify".into());
    }
    Err(format!("no signature by {name}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_note_opens_with_its_verifier_key_and_not_when_changed() {
        let d = tempfile::tempdir().unwrap();
        let s = NoteSigner::load_or_create(d.path(), "example.org/wormlog", "c 1").unwrap();
        assert_eq!(s.name, "example.org/wormlog/collector/c_1");
        let n = s.checkpoint("web-01", 42, &[7u8; 32]);
        let vkey = std::fs::read_to_string(d.path().join(NOTE_VKEY_FILE)).unwrap();
        let text = open(&n, &vkey).unwrap();
        assert_eq!(
            text,
            format!(
                "example.org/wormlog/web-01\n42\n{}\n",
                b64().encode([7u8; 32])
            )
        );
        assert!(open(&n.replace("\n42\n", "\n43\n"), &vkey).is_err());
        // The same key again after a restart.
        let again = NoteSigner::load_or_create(d.path(), "example.org/wormlog", "c 1").unwrap();
        assert_eq!(again.verifier_key(), s.verifier_key());
    }
}
