//! Receipts: the collector's countersignature of an agent's checkpoint
//! (docs/FORMAT.md §6.12 and §10.4), the key that signs them, and the log of
//! the receipts issued to each agent.

use ed25519_dalek::SigningKey;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use wormlog_spool::hash::Hash;
use zeroize::Zeroizing;

/// The receipt key's file in the key directory (32-byte seed, mode 0600).
pub const RECEIPT_KEY_FILE: &str = "receipt.key";
/// Its public half, as `ed25519:<base64>`.
pub const RECEIPT_PUB_FILE: &str = "receipt.pub";

pub use wormlog_spool::chain::Receipt;

/// The collector's receipt-signing key. It does not evolve: a receipt is a
/// statement by the collector, which keeps it off the agents' hosts.
#[derive(Debug)]
pub struct Signer {
    key: SigningKey,
    pub collector_id: String,
}

impl Signer {
    /// Loads the key from `dir`, creating it on first use.
    pub fn load_or_create(dir: &Path, collector_id: &str) -> io::Result<Signer> {
        std::fs::create_dir_all(dir)?;
        let seed = seed_file(&dir.join(RECEIPT_KEY_FILE))?;
        let key = SigningKey::from_bytes(&seed);
        let line = format!(
            "{}\n",
            wormlog_spool::keys::format_pubkey(&key.verifying_key().to_bytes())
        );
        wormlog_spool::keys::write_atomic(&dir.join(RECEIPT_PUB_FILE), line.as_bytes(), 0o644)
            .map_err(io::Error::other)?;
        Ok(Signer {
            key,
            collector_id: collector_id.to_owned(),
        })
    }

    pub fn pubkey(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// Signs a bundle (docs/FORMAT.md §12): every byte before its last line.
    pub fn sign_bundle(&self, bytes: &[u8]) -> [u8; 64] {
        wormlog_spool::keys::sign_with(&self.key, wormlog_spool::keys::BUNDLE_CONTEXT, bytes)
    }

    pub fn sign(&self, agent_id: &str, tree_size: u64, root: &Hash) -> Receipt {
        Receipt::sign(
            &self.key,
            &self.collector_id,
            agent_id,
            tree_size,
            root,
            wormlog_spool::clock::wall_ns(),
        )
    }
}

/// One entry of the receipt log: tree_size u64, root 32, ts i64, signature 64.
const ENTRY: usize = 112;

/// The 32-byte seed of an Ed25519 key in `path` (mode 0600), made when the
/// file is missing: the collector's keys (receipts, checkpoint notes).
pub(crate) fn seed_file(path: &Path) -> io::Result<Zeroizing<[u8; 32]>> {
    match std::fs::read(path) {
        Ok(b) => Ok(Zeroizing::new(b.as_slice().try_into().map_err(|_| {
            io::Error::other(format!("{}: not a 32-byte key", path.display()))
        })?)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let mut seed = Zeroizing::new([0u8; 32]);
            rustix::rand::getrandom(&mut seed[..], rustix::rand::GetRandomFlags::empty())
                .map_err(io::Error::from)?;
            wormlog_spool::keys::write_atomic(path, &seed[..], 0o600).map_err(io::Error::other)?;
            Ok(seed)
        }
        Err(e) => Err(e),
    }
}

/// The receipts issued to one agent, in tree-size order, fixed-size entries
/// (so a replayed batch gets the very receipts it got the first time).
#[derive(Debug)]
pub struct ReceiptLog {
    file: File,
    len: u64,
    /// The collector id and key of every receipt in the log.
    collector_id: String,
    collector_pubkey: [u8; 32],
}

impl ReceiptLog {
    pub fn open(
        path: &Path,
        collector_id: &str,
        collector_pubkey: [u8; 32],
    ) -> io::Result<ReceiptLog> {
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)?;
        let len = file.metadata()?.len();
        // A partial entry (a crash mid-append) is not a receipt anyone got.
        let len = len - len % ENTRY as u64;
        Ok(ReceiptLog {
            file,
            len,
            collector_id: collector_id.to_owned(),
            collector_pubkey,
        })
    }

    /// Appends and makes durable.
    pub fn append(&mut self, rs: &[Receipt]) -> io::Result<()> {
        if rs.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::with_capacity(rs.len() * ENTRY);
        for r in rs {
            buf.extend_from_slice(&r.tree_size.to_le_bytes());
            buf.extend_from_slice(&r.root);
            buf.extend_from_slice(&r.collector_ts.to_le_bytes());
            buf.extend_from_slice(&r.signature);
        }
        if self.file.metadata()?.len() != self.len {
            // Drop a partial entry left by a crash before appending.
            self.file.set_len(self.len)?;
        }
        self.file.write_all(&buf)?;
        self.file.sync_data()?;
        self.len += buf.len() as u64;
        Ok(())
    }

    fn entry(&self, i: u64) -> io::Result<(u64, [u8; ENTRY])> {
        let mut b = [0u8; ENTRY];
        self.file.read_exact_at(&mut b, i * ENTRY as u64)?;
        Ok((u64::from_le_bytes(b[..8].try_into().expect("8")), b))
    }

    /// The tree size of the newest receipt.
    pub fn last_tree_size(&self) -> io::Result<Option<u64>> {
        match self.len / ENTRY as u64 {
            0 => Ok(None),
            n => self.entry(n - 1).map(|(size, _)| Some(size)),
        }
    }

    /// The receipts for checkpoints with `from <= tree_size < to`.
    pub fn for_range(&self, from: u64, to: u64) -> io::Result<Vec<Receipt>> {
        let n = self.len / ENTRY as u64;
        // First entry with tree_size >= from.
        let (mut lo, mut hi) = (0u64, n);
        while lo < hi {
            let mid = (lo + hi) / 2;
            if self.entry(mid)?.0 < from {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        let mut out = Vec::new();
        for i in lo..n {
            let (size, b) = self.entry(i)?;
            if size >= to {
                break;
            }
            out.push(Receipt {
                collector_id: self.collector_id.clone(),
                tree_size: size,
                root: b[8..40].try_into().expect("32"),
                collector_ts: i64::from_le_bytes(b[40..48].try_into().expect("8")),
                collector_pubkey: self.collector_pubkey,
                signature: b[48..112].try_into().expect("64"),
            });
        }
        Ok(out)
    }
}
