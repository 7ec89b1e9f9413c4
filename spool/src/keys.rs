//! The forward-secure host key (docs/FORMAT.md §5, §9).
//!
//! `seed_{e+1} = H("wormlog seed v1" 0x00 || seed_e)`; the epoch's Ed25519
//! key is derived from `seed_e` under a different context. Advancing an
//! epoch replaces `host.key` atomically and zeroizes the old seed in memory.

use base64::Engine as _;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use zeroize::{Zeroize, Zeroizing};

pub const KEY_FILE: &str = "host.key";
pub const PUB_FILE: &str = "host.pub";
const KEY_MAGIC: &[u8; 8] = b"WLHOSTK\0";
const KEY_FILE_LEN: usize = 94;
const SEED_CONTEXT: &[u8] = b"wormlog seed v1\0";
const KEY_CONTEXT: &[u8] = b"wormlog key v1\0";
pub const CHECKPOINT_CONTEXT: &[u8] = b"wormlog checkpoint v1\0";
pub const EPOCH_KEY_CONTEXT: &[u8] = b"wormlog epoch-key v1\0";
pub const RECEIPT_CONTEXT: &[u8] = b"wormlog receipt v1\0";
pub const BUNDLE_CONTEXT: &[u8] = b"wormlog bundle v1\0";
const PUBKEY_PREFIX: &str = "ed25519:";

/// Errors about keys.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{0}: a host key already exists; refusing to overwrite it")]
    Exists(PathBuf),
    #[error("{0}: no host key; create one with `wormlog keygen --key-dir {1}`")]
    Missing(PathBuf, String),
    #[error("{0}: not a valid wormlog host key ({1})")]
    Corrupt(PathBuf, &'static str),
    #[error("public key must look like `ed25519:<base64 of 32 bytes>`")]
    PubkeySyntax,
    #[error("the random number generator failed: {0}")]
    Random(io::Error),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> KeyError + '_ {
    move |source| KeyError::Io {
        path: path.to_owned(),
        source,
    }
}

/// `seed_{e+1}` from `seed_e`.
pub fn next_seed(seed: &[u8; 32]) -> Zeroizing<[u8; 32]> {
    let mut h = Sha256::new();
    h.update(SEED_CONTEXT);
    h.update(seed);
    Zeroizing::new(h.finalize().into())
}

/// The epoch's signing key from its seed.
pub fn epoch_signing_key(seed: &[u8; 32]) -> SigningKey {
    let mut h = Sha256::new();
    h.update(KEY_CONTEXT);
    h.update(seed);
    let mut secret: [u8; 32] = h.finalize().into();
    let key = SigningKey::from_bytes(&secret);
    secret.zeroize();
    key
}

/// The text form of a public key: `ed25519:<base64>`.
pub fn format_pubkey(pk: &[u8; 32]) -> String {
    format!(
        "{PUBKEY_PREFIX}{}",
        base64::engine::general_purpose::STANDARD.encode(pk)
    )
}

/// Parses the text form of a public key (surrounding whitespace allowed).
pub fn parse_pubkey(s: &str) -> Result<[u8; 32], KeyError> {
    let b64 = s
        .trim()
        .strip_prefix(PUBKEY_PREFIX)
        .ok_or(KeyError::PubkeySyntax)?;
    let v = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| KeyError::PubkeySyntax)?;
    v.try_into().map_err(|_| KeyError::PubkeySyntax)
}

/// Checks an Ed25519 signature over `context || message`, strictly
/// (docs/FORMAT.md §5.3): the public key and the signature's R must be
/// canonical encodings of points that are not of small order, S must be
/// below the group order, and `[S]B - [k]A` must encode to R exactly.
pub fn verify_signature(pk: &[u8; 32], context: &[u8], message: &[u8], sig: &[u8; 64]) -> bool {
    // A key's y coordinate at or above p = 2^255 - 19 (2^255 - 19 ..=
    // 2^255 - 1, sign bit aside) is not canonical; dalek would reduce it
    // mod p. (R needs no such check: verify_strict compares R's bytes with
    // the canonical encoding of [S]B - [k]A.)
    let canonical = pk[0] < 0xed || pk[1..31].iter().any(|&b| b != 0xff) || pk[31] & 0x7f != 0x7f;
    if !canonical {
        return false;
    }
    // verify_strict refuses small-order keys and R, an S not below the
    // group order, and any R but the canonical encoding of [S]B - [k]A.
    let Ok(vk) = VerifyingKey::from_bytes(pk) else {
        return false;
    };
    let mut m = Vec::with_capacity(context.len() + message.len());
    m.extend_from_slice(context);
    m.extend_from_slice(message);
    vk.verify_strict(&m, &Signature::from_bytes(sig)).is_ok()
}

/// Signs `context || message` with a key.
pub fn sign_with(key: &SigningKey, context: &[u8], message: &[u8]) -> [u8; 64] {
    let mut m = Vec::with_capacity(context.len() + message.len());
    m.extend_from_slice(context);
    m.extend_from_slice(message);
    key.sign(&m).to_bytes()
}

/// The host's forward-secure signing key, at its current epoch.
#[derive(Debug)]
pub struct HostKey {
    dir: PathBuf,
    epoch: u64,
    epoch_started_ns: i64,
    seed: Zeroizing<[u8; 32]>,
    first_pubkey: [u8; 32],
    signing: SigningKey,
}

impl HostKey {
    /// Creates a new host key in `dir` (refusing to overwrite one) and
    /// returns its first public key.
    pub fn generate(dir: &Path, now_ns: i64) -> Result<[u8; 32], KeyError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let path = dir.join(KEY_FILE);
        if path.exists() {
            return Err(KeyError::Exists(path));
        }
        let mut seed = Zeroizing::new([0u8; 32]);
        let mut filled = 0;
        while filled < 32 {
            filled +=
                rustix::rand::getrandom(&mut seed[filled..], rustix::rand::GetRandomFlags::empty())
                    .map_err(|e| KeyError::Random(e.into()))?;
        }
        let first_pubkey = epoch_signing_key(&seed).verifying_key().to_bytes();
        let key = HostKey {
            dir: dir.to_owned(),
            epoch: 0,
            epoch_started_ns: now_ns,
            signing: epoch_signing_key(&seed),
            seed,
            first_pubkey,
        };
        key.persist()?;
        let pub_path = dir.join(PUB_FILE);
        write_atomic(
            &pub_path,
            format!("{}\n", format_pubkey(&first_pubkey)).as_bytes(),
            0o644,
        )?;
        Ok(first_pubkey)
    }

    /// Loads the host key from `dir`.
    pub fn load(dir: &Path) -> Result<HostKey, KeyError> {
        let path = dir.join(KEY_FILE);
        let mut bytes = Zeroizing::new(match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(KeyError::Missing(path, dir.display().to_string()));
            }
            Err(e) => return Err(io_err(&path)(e)),
        });
        if bytes.len() != KEY_FILE_LEN {
            return Err(KeyError::Corrupt(path, "wrong length"));
        }
        if &bytes[..8] != KEY_MAGIC || bytes[8..10] != 1u16.to_le_bytes() {
            return Err(KeyError::Corrupt(path, "bad magic or version"));
        }
        let crc = u32::from_le_bytes(bytes[90..94].try_into().expect("4 bytes"));
        if crc != crc32c::crc32c(&bytes[..90]) {
            return Err(KeyError::Corrupt(path, "CRC mismatch"));
        }
        let epoch = u64::from_le_bytes(bytes[10..18].try_into().expect("8 bytes"));
        let epoch_started_ns = i64::from_le_bytes(bytes[18..26].try_into().expect("8 bytes"));
        let mut seed = Zeroizing::new([0u8; 32]);
        seed.copy_from_slice(&bytes[26..58]);
        let first_pubkey: [u8; 32] = bytes[58..90].try_into().expect("32 bytes");
        bytes.zeroize();
        Ok(HostKey {
            dir: dir.to_owned(),
            epoch,
            epoch_started_ns,
            signing: epoch_signing_key(&seed),
            seed,
            first_pubkey,
        })
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    pub fn epoch_started_ns(&self) -> i64 {
        self.epoch_started_ns
    }

    pub fn first_pubkey(&self) -> [u8; 32] {
        self.first_pubkey
    }

    /// The current epoch's public key.
    pub fn pubkey(&self) -> [u8; 32] {
        self.signing.verifying_key().to_bytes()
    }

    /// The next epoch's public key.
    pub fn next_pubkey(&self) -> [u8; 32] {
        epoch_signing_key(&next_seed(&self.seed))
            .verifying_key()
            .to_bytes()
    }

    /// Signs `context || message` with the current epoch's key.
    pub fn sign(&self, context: &[u8], message: &[u8]) -> [u8; 64] {
        sign_with(&self.signing, context, message)
    }

    /// Moves to the next epoch: the new seed replaces the old one on disk
    /// (atomically, durably) and the old one is erased from memory.
    pub fn advance(&mut self, now_ns: i64) -> Result<(), KeyError> {
        self.advance_in_memory(now_ns);
        self.save()
    }

    /// Moves to the next epoch in memory only (the old seed is erased from
    /// memory); [`HostKey::save`] writes it.
    pub fn advance_in_memory(&mut self, now_ns: i64) {
        self.advance_to(self.epoch + 1, now_ns);
    }

    /// Moves to `epoch` (not before the current one) in memory only, seed
    /// by seed — each erased as the next is made — deriving the signing key
    /// once, at the end.
    pub fn advance_to(&mut self, epoch: u64, now_ns: i64) {
        if epoch <= self.epoch {
            return;
        }
        for _ in self.epoch..epoch {
            let next = next_seed(&self.seed);
            let old = std::mem::replace(&mut self.seed, next);
            drop(old); // Zeroizing wipes it
        }
        self.signing = epoch_signing_key(&self.seed);
        self.epoch = epoch;
        self.epoch_started_ns = now_ns;
    }

    /// Writes the current seed over the one on disk (atomically, durably).
    pub fn save(&self) -> Result<(), KeyError> {
        self.persist()
    }

    fn persist(&self) -> Result<(), KeyError> {
        let mut b = Zeroizing::new(Vec::with_capacity(KEY_FILE_LEN));
        b.extend_from_slice(KEY_MAGIC);
        b.extend_from_slice(&1u16.to_le_bytes());
        b.extend_from_slice(&self.epoch.to_le_bytes());
        b.extend_from_slice(&self.epoch_started_ns.to_le_bytes());
        b.extend_from_slice(&*self.seed);
        b.extend_from_slice(&self.first_pubkey);
        let crc = crc32c::crc32c(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        write_atomic(&self.dir.join(KEY_FILE), &b, 0o600)
    }
}

/// Writes a file by temp file, fsync, rename and directory fsync.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), KeyError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = path.with_extension("tmp");
    let res = (|| -> io::Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    res.map_err(io_err(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_signs_and_evolves() {
        let dir = tempfile::tempdir().unwrap();
        let pk0 = HostKey::generate(dir.path(), 1).unwrap();
        assert!(matches!(
            HostKey::generate(dir.path(), 1),
            Err(KeyError::Exists(_))
        ));
        let mut k = HostKey::load(dir.path()).unwrap();
        assert_eq!(k.pubkey(), pk0);
        let sig = k.sign(CHECKPOINT_CONTEXT, b"m");
        assert!(verify_signature(&pk0, CHECKPOINT_CONTEXT, b"m", &sig));
        assert!(!verify_signature(&pk0, EPOCH_KEY_CONTEXT, b"m", &sig));
        let next = k.next_pubkey();
        k.advance(2).unwrap();
        assert_eq!(k.pubkey(), next);
        let reloaded = HostKey::load(dir.path()).unwrap();
        assert_eq!(reloaded.epoch(), 1);
        assert_eq!(reloaded.pubkey(), next);
        assert_eq!(reloaded.first_pubkey(), pk0);
        let text = format_pubkey(&pk0);
        assert_eq!(parse_pubkey(&format!(" {text}\n")).unwrap(), pk0);
        assert!(parse_pubkey("ed25519:AAAA").is_err());
        assert_eq!(
            fs::read_to_string(dir.path().join(PUB_FILE))
                .unwrap()
                .trim(),
            text
        );
    }

    #[test]
    fn advancing_many_epochs_at_once_is_advancing_one_by_one() {
        let dir = tempfile::tempdir().unwrap();
        HostKey::generate(dir.path(), 1).unwrap();
        let mut stepped = HostKey::load(dir.path()).unwrap();
        let mut jumped = HostKey::load(dir.path()).unwrap();
        for _ in 0..7 {
            stepped.advance_in_memory(2);
        }
        jumped.advance_to(7, 2);
        assert_eq!((jumped.epoch(), jumped.pubkey()), (7, stepped.pubkey()));
        jumped.advance_to(3, 2);
        assert_eq!(jumped.epoch(), 7, "never backwards");
        assert_eq!(
            HostKey::load(dir.path()).unwrap().epoch(),
            0,
            "in memory only"
        );
    }
}
