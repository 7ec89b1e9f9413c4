//! Encryption at rest (docs/FORMAT.md §6.2.1, §6.16): a data key per
//! segment, wrapped to age X25519 recipients with the `age` crate; a key per
//! entry derived from it with HKDF-SHA256; each entry's fields and body
//! sealed with ChaCha20-Poly1305 under its own key, the clear part of the
//! record as associated data. Verification never needs any of it: the
//! chain covers the ciphertext.

use crate::codec::Reader;
use hkdf::Hkdf;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};
use sha2_v010::Sha256;
use std::io::{Read, Write};
use std::str::FromStr;
use zeroize::Zeroizing;

/// The HKDF salt of the per-entry keys (§6.2.1).
pub const ENTRY_KEY_SALT: &[u8] = b"wormlog entry key v1";

/// The associated data of a sealed entry (§6.2.1) from its clear part (the
/// record's bytes before `sealed`): those bytes without `prev` — the
/// record header's first 20 bytes (version, kind, flags, seq, ts), then
/// source, position and entry_flags. `prev` is left out so that an entry
/// can be sealed before the record before it is final; the chain covers
/// it anyway.
pub fn entry_aad(clear: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&clear[..crate::record::PREV_OFFSET]);
    out.extend_from_slice(&clear[crate::record::RECORD_HEADER_LEN..]);
}

/// Seals an entry record in place (§6.2.1): `rec` is the whole record,
/// its clear part `rec[..split]`, then the plaintext, then
/// [`crate::record::SEAL_TAG_LEN`] bytes reserved for the tag. `aad` is
/// scratch. `prev` may still be a placeholder: it is not authenticated.
pub fn seal_entry(keys: &EntryKeys, seq: u64, rec: &mut [u8], split: usize, aad: &mut Vec<u8>) {
    entry_aad(&rec[..split], aad);
    let tag_at = rec.len() - crate::record::SEAL_TAG_LEN;
    let tag = keys.key(seq).seal_detached(aad, &mut rec[split..tag_at]);
    rec[tag_at..].copy_from_slice(&tag);
}

#[derive(Debug, thiserror::Error)]
pub enum CryptError {
    #[error("{0:?} is not an age X25519 recipient (age1…): {1}")]
    Recipient(String, String),
    #[error("{0}: {1}")]
    Identity(String, String),
    #[error("no identity given opens this segment's data key (encrypted to {0})")]
    NoMatchingIdentity(String),
    #[error("the wrapped data key cannot be opened: {0}")]
    Unwrap(String),
    #[error("wrapping the data key: {0}")]
    Wrap(String),
    #[error("the sealed entry does not open under its key (wrong key, or altered)")]
    Open,
    #[error("the opened entry is malformed: {0}")]
    Plaintext(String),
    #[error("the system's random source: {0}")]
    Random(String),
}

/// The age recipients a spool encrypts to.
#[derive(Clone)]
pub struct Recipients(Vec<age::x25519::Recipient>);

impl std::fmt::Debug for Recipients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

impl Recipients {
    /// Parses `age1…` strings; the same recipient given twice (in any
    /// case) counts once.
    pub fn parse<S: AsRef<str>>(list: &[S]) -> Result<Recipients, CryptError> {
        let mut out: Vec<age::x25519::Recipient> = Vec::with_capacity(list.len());
        for s in list {
            let r = age::x25519::Recipient::from_str(s.as_ref().trim())
                .map_err(|e| CryptError::Recipient(s.as_ref().to_owned(), e.to_string()))?;
            if !out.iter().any(|o| o.to_string() == r.to_string()) {
                out.push(r);
            }
        }
        Ok(Recipients(out))
    }

    pub fn names(&self) -> Vec<String> {
        self.0.iter().map(|r| r.to_string()).collect()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Age identities (an identity file: `AGE-SECRET-KEY-1…` lines).
pub struct Identities(Vec<Box<dyn age::Identity + Send + Sync>>);

impl std::fmt::Debug for Identities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Identities({})", self.0.len())
    }
}

impl Identities {
    /// Reads an age identity file.
    pub fn from_file(path: &std::path::Path) -> Result<Identities, CryptError> {
        let name = path.display().to_string();
        let text = Zeroizing::new(
            std::fs::read(path).map_err(|e| CryptError::Identity(name.clone(), e.to_string()))?,
        );
        Self::from_bytes(&text, &name)
    }

    /// Parses the text of an age identity file (`name` for errors).
    pub fn from_bytes(text: &[u8], name: &str) -> Result<Identities, CryptError> {
        let file = age::IdentityFile::from_buffer(text)
            .map_err(|e| CryptError::Identity(name.to_owned(), e.to_string()))?;
        let ids = file
            .into_identities()
            .map_err(|e| CryptError::Identity(name.to_owned(), e.to_string()))?;
        if ids.is_empty() {
            return Err(CryptError::Identity(
                name.to_owned(),
                "no identity in the file".into(),
            ));
        }
        Ok(Identities(ids))
    }
}

/// A segment's data key `D`; erased when dropped.
pub struct DataKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(..)")
    }
}

impl DataKey {
    /// A new key from the operating system's random source.
    pub fn generate() -> Result<DataKey, CryptError> {
        let mut k = Zeroizing::new([0u8; 32]);
        let mut filled = 0;
        while filled < 32 {
            filled +=
                rustix::rand::getrandom(&mut k[filled..], rustix::rand::GetRandomFlags::empty())
                    .map_err(|e| CryptError::Random(e.to_string()))?;
        }
        Ok(DataKey(k))
    }

    /// A data key from its 32 bytes (e.g. what `age -d` printed).
    pub fn from_bytes(k: [u8; 32]) -> DataKey {
        DataKey(Zeroizing::new(k))
    }

    /// The age file (binary) that holds this key for `to`.
    pub fn wrap(&self, to: &Recipients) -> Result<Vec<u8>, CryptError> {
        let e = age::Encryptor::with_recipients(to.0.iter().map(|r| r as &dyn age::Recipient))
            .map_err(|e| CryptError::Wrap(e.to_string()))?;
        let mut out = Vec::with_capacity(256 + 64 * to.0.len());
        let mut w = e
            .wrap_output(&mut out)
            .map_err(|e| CryptError::Wrap(e.to_string()))?;
        w.write_all(&self.0[..])
            .and_then(|()| w.finish().map(|_| ()))
            .map_err(|e| CryptError::Wrap(e.to_string()))?;
        Ok(out)
    }

    /// Opens a wrapped key with `ids`; `recipients` names them for errors.
    pub fn unwrap(
        wrapped: &[u8],
        ids: &Identities,
        recipients: &[&str],
    ) -> Result<DataKey, CryptError> {
        let d = age::Decryptor::new(wrapped).map_err(|e| CryptError::Unwrap(e.to_string()))?;
        let mut r = d
            .decrypt(ids.0.iter().map(|i| i.as_ref() as &dyn age::Identity))
            .map_err(|e| match e {
                age::DecryptError::NoMatchingKeys => {
                    CryptError::NoMatchingIdentity(recipients.join(", "))
                }
                other => CryptError::Unwrap(other.to_string()),
            })?;
        let mut k = Zeroizing::new(Vec::with_capacity(33));
        r.read_to_end(&mut k)
            .map_err(|e| CryptError::Unwrap(e.to_string()))?;
        let key: [u8; 32] = k[..]
            .try_into()
            .map_err(|_| CryptError::Unwrap(format!("{} bytes, not 32", k.len())))?;
        Ok(DataKey(Zeroizing::new(key)))
    }

    /// The per-entry key schedule of this segment.
    pub fn entry_keys(&self) -> EntryKeys {
        EntryKeys(Hkdf::<Sha256>::new(Some(ENTRY_KEY_SALT), &self.0[..]))
    }
}

/// HKDF-SHA256 extracted once per segment; expands to each entry's key.
#[derive(Clone)]
pub struct EntryKeys(Hkdf<Sha256>);

impl std::fmt::Debug for EntryKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EntryKeys(..)")
    }
}

impl EntryKeys {
    /// `K_seq`.
    pub fn key(&self, seq: u64) -> EntryKey {
        let mut k = Zeroizing::new([0u8; 32]);
        self.0
            .expand(&seq.to_le_bytes(), &mut k[..])
            .expect("32 bytes is a valid HKDF-SHA256 length");
        EntryKey(k)
    }
}

/// One entry's key `K_seq`: all a disclosure of that entry reveals.
pub struct EntryKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for EntryKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EntryKey(..)")
    }
}

impl EntryKey {
    pub fn from_bytes(k: [u8; 32]) -> EntryKey {
        EntryKey(Zeroizing::new(k))
    }

    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }

    fn cipher(&self) -> LessSafeKey {
        LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, &self.0[..]).expect("a 32-byte key"))
    }

    /// Seals `buf` in place (the plaintext becomes the ciphertext) and
    /// appends the tag.
    pub fn seal(&self, aad: &[u8], buf: &mut Vec<u8>, from: usize) {
        let tag = self.seal_detached(aad, &mut buf[from..]);
        buf.extend_from_slice(&tag);
    }

    /// Seals `buf` in place; returns the tag (to append after it). The
    /// nonce is zero: each key seals one message (§6.2.1).
    pub fn seal_detached(&self, aad: &[u8], buf: &mut [u8]) -> [u8; 16] {
        let tag = self
            .cipher()
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key([0; 12]), Aad::from(aad), buf)
            .expect("a message well under ChaCha20-Poly1305's limit");
        tag.as_ref().try_into().expect("a 16-byte tag")
    }

    /// Opens `sealed` (ciphertext then tag) under `aad`.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, CryptError> {
        if sealed.len() < crate::record::SEAL_TAG_LEN {
            return Err(CryptError::Open);
        }
        let mut out = sealed.to_vec();
        let n = self
            .cipher()
            .open_in_place(
                Nonce::assume_unique_for_key([0; 12]),
                Aad::from(aad),
                &mut out,
            )
            .map_err(|_| CryptError::Open)?
            .len();
        out.truncate(n);
        Ok(out)
    }
}

/// An entry's opened fields and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    pub fields: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

/// Parses an opened plaintext: `field_count u16`, the fields, the body.
pub fn parse_plaintext(p: &[u8]) -> Result<Opened, CryptError> {
    let mut r = Reader::new(p);
    let bad = |e: crate::codec::CodecError| CryptError::Plaintext(e.to_string());
    let n = r.u16().map_err(bad)? as usize;
    let mut fields = Vec::with_capacity(n.min(64));
    for _ in 0..n {
        let k = r.text8("field name").map_err(bad)?;
        let v = r.bytes32().map_err(bad)?;
        fields.push((k.to_owned(), v.to_vec()));
    }
    Ok(Opened {
        fields,
        body: r.rest().to_vec(),
    })
}

/// Opens the sealed entries of a spool as its records are read in order:
/// each segment's `data_key` record is opened with the identities once.
#[derive(Debug)]
pub struct Opener {
    ids: Identities,
    /// The segment whose data key is known, and its key schedule (or why
    /// it could not be opened).
    current: Option<(u64, Result<EntryKeys, String>)>,
}

impl Opener {
    pub fn new(ids: Identities) -> Opener {
        Opener { ids, current: None }
    }

    /// Takes the `data_key` record of segment `segment`.
    pub fn data_key(&mut self, segment: u64, recipients: &[&str], wrapped: &[u8]) {
        let keys = DataKey::unwrap(wrapped, &self.ids, recipients)
            .map(|d| d.entry_keys())
            .map_err(|e| e.to_string());
        self.current = Some((segment, keys));
    }

    /// The key of entry `seq` of segment `segment` alone (for a
    /// disclosure: it opens that entry and no other).
    pub fn entry_key(&self, segment: u64, seq: u64) -> Result<EntryKey, String> {
        match &self.current {
            Some((s, k)) if *s == segment => Ok(k.as_ref().map_err(|e| e.clone())?.key(seq)),
            _ => Err("no data_key record was read for this segment".into()),
        }
    }

    /// Opens the sealed entry `record` (its bytes) of segment `segment`,
    /// whose `sealed` part is the last `sealed_len` bytes.
    pub fn open(
        &self,
        segment: u64,
        seq: u64,
        record: &[u8],
        sealed_len: usize,
    ) -> Result<Opened, String> {
        let keys = match &self.current {
            Some((s, k)) if *s == segment => k.as_ref().map_err(|e| e.clone())?,
            _ => return Err("no data_key record was read for this segment".into()),
        };
        let split = record.len() - sealed_len;
        if split < crate::record::RECORD_HEADER_LEN {
            return Err("a sealed entry shorter than a record header".into());
        }
        let mut aad = Vec::with_capacity(split);
        entry_aad(&record[..split], &mut aad);
        let p = keys
            .key(seq)
            .open(&aad, &record[split..])
            .map_err(|e| e.to_string())?;
        parse_plaintext(&p).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_derives_seals_and_opens() {
        let id = age::x25519::Identity::generate();
        let text = format!(
            "# a test key\n{}\n",
            age::secrecy::ExposeSecret::expose_secret(&id.to_string())
        );
        let ids = Identities::from_bytes(text.as_bytes(), "test").unwrap();
        let to = Recipients::parse(&[id.to_public().to_string()]).unwrap();
        let d = DataKey::generate().unwrap();
        let wrapped = d.wrap(&to).unwrap();
        assert!(wrapped.starts_with(crate::record::AGE_MAGIC));
        let d2 = DataKey::unwrap(&wrapped, &ids, &[]).unwrap();
        assert_eq!(*d.0, *d2.0);
        let keys = d.entry_keys();
        let (k5, k6) = (keys.key(5), keys.key(6));
        assert_ne!(k5.bytes(), k6.bytes());
        // HKDF per RFC 5869 with our salt and the seq as info.
        let again = Hkdf::<Sha256>::new(Some(ENTRY_KEY_SALT), &d.0[..]);
        let mut want = [0u8; 32];
        again.expand(&5u64.to_le_bytes(), &mut want).unwrap();
        assert_eq!(k5.bytes(), &want);
        let mut buf = b"header".to_vec();
        buf.extend_from_slice(b"\x00\x00a line\xff\x00");
        k5.seal(b"aad", &mut buf, 6);
        let sealed = &buf[6..];
        assert_eq!(k5.open(b"aad", sealed).unwrap(), b"\x00\x00a line\xff\x00");
        assert!(k6.open(b"aad", sealed).is_err(), "another entry's key");
        assert!(k5.open(b"aaX", sealed).is_err(), "other associated data");
        // A wrong identity: a clear error naming the recipients.
        let other = age::x25519::Identity::generate();
        let other_text = age::secrecy::ExposeSecret::expose_secret(&other.to_string()).to_owned();
        let wrong = Identities::from_bytes(other_text.as_bytes(), "wrong").unwrap();
        let e = DataKey::unwrap(&wrapped, &wrong, &["age1xyz"]).unwrap_err();
        assert!(e.to_string().contains("no identity given opens"), "{e}");
        assert!(Recipients::parse(&["age1nope"]).is_err());
        // The same recipient twice, once in upper case: one.
        let r = id.to_public().to_string();
        let twice = Recipients::parse(&[r.clone(), r.to_uppercase()]).unwrap();
        assert_eq!(twice.names(), vec![r]);
    }
}
