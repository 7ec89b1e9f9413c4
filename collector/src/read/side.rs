//! The reading side as the server holds it: one index per agent (kept
//! open, refreshed before each read), the key its word filters are
//! hashed with, and the read identity that opens sealed entries.

use super::Bodies;
use super::bundle::{BundleError, Made, Source};
use super::index::AgentIndex;
use super::scan::ScanError;
use super::search::{Page, Query};
use super::words::WordSet;
use crate::receipts::{ReceiptLog, Signer};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use wormlog_spool::crypt::Identities;

/// The file in the key directory holding the index's hashing key.
pub const INDEX_KEY_FILE: &str = "index.key";

#[derive(Debug)]
pub struct ReadSide {
    store_dir: PathBuf,
    identity: Option<PathBuf>,
    /// SHA-256 of the identity file (zeros without one): an index built
    /// with another is rebuilt.
    fingerprint: [u8; 32],
    word_key: [u8; 32],
    indexes: Mutex<HashMap<String, Arc<Mutex<AgentIndex>>>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Failed(String),
}

impl From<ScanError> for ReadError {
    fn from(e: ScanError) -> Self {
        ReadError::Failed(e.to_string())
    }
}

impl From<std::io::Error> for ReadError {
    fn from(e: std::io::Error) -> Self {
        ReadError::Failed(e.to_string())
    }
}

impl From<BundleError> for ReadError {
    fn from(e: BundleError) -> Self {
        match e {
            BundleError::NotFound(s) => ReadError::NotFound(s),
            BundleError::Refused(s) => ReadError::Refused(s),
            e => ReadError::Failed(e.to_string()),
        }
    }
}

impl ReadSide {
    pub fn open(
        store_dir: &Path,
        key_dir: &Path,
        identity: Option<&Path>,
    ) -> std::io::Result<ReadSide> {
        let key_path = key_dir.join(INDEX_KEY_FILE);
        let word_key: [u8; 32] = match std::fs::read(&key_path) {
            Ok(b) => b.as_slice().try_into().map_err(|_| {
                std::io::Error::other(format!("{}: not a 32-byte key", key_path.display()))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut k = [0u8; 32];
                rustix::rand::getrandom(&mut k, rustix::rand::GetRandomFlags::empty())
                    .map_err(std::io::Error::from)?;
                wormlog_spool::keys::write_atomic(&key_path, &k, 0o600)
                    .map_err(std::io::Error::other)?;
                k
            }
            Err(e) => return Err(e),
        };
        let fingerprint = match identity {
            Some(p) => wormlog_spool::hash::sha256(&std::fs::read(p)?),
            None => [0; 32],
        };
        // The identity must parse now, not at the first search.
        if let Some(p) = identity {
            Identities::from_file(p).map_err(std::io::Error::other)?;
        }
        Ok(ReadSide {
            store_dir: store_dir.to_owned(),
            identity: identity.map(Path::to_owned),
            fingerprint,
            word_key,
            indexes: Mutex::new(HashMap::new()),
        })
    }

    pub fn has_identity(&self) -> bool {
        self.identity.is_some()
    }

    fn bodies(&self) -> Result<Bodies, ReadError> {
        let ids = match &self.identity {
            Some(p) => {
                Some(Identities::from_file(p).map_err(|e| ReadError::Failed(e.to_string()))?)
            }
            None => None,
        };
        Ok(Bodies::new(ids))
    }

    pub fn agent_dir(&self, agent: &str) -> PathBuf {
        self.store_dir.join("agents").join(agent)
    }

    /// The agents with a store.
    pub fn agents(&self) -> std::io::Result<Vec<String>> {
        let mut v = Vec::new();
        match std::fs::read_dir(self.store_dir.join("agents")) {
            Ok(rd) => {
                for e in rd {
                    let e = e?;
                    if e.path().is_dir() && !e.file_name().to_string_lossy().starts_with('.') {
                        v.push(e.file_name().to_string_lossy().into_owned());
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        v.sort();
        Ok(v)
    }

    /// The refreshed index of `agent`, held while `f` runs.
    fn with_index<T>(
        &self,
        agent: &str,
        f: impl FnOnce(&AgentIndex, &Path, &mut Bodies) -> Result<T, ReadError>,
    ) -> Result<T, ReadError> {
        let store = self.agent_dir(agent);
        if !store.join("pubkey").exists() {
            return Err(ReadError::NotFound(format!(
                "no agent {agent:?} in this store"
            )));
        }
        let slot = self
            .indexes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(agent.to_owned())
            .or_insert_with(|| Arc::new(Mutex::new(AgentIndex::empty())))
            .clone();
        let mut ix = slot.lock().unwrap_or_else(|p| p.into_inner());
        if !ix.is_open() {
            *ix = AgentIndex::open(
                &store,
                &self.store_dir.join("index").join(agent),
                self.fingerprint,
            )?;
        }
        let mut bodies = self.bodies()?;
        let mut set = WordSet::default();
        if let Err(e) = ix.refresh(&mut bodies, &self.word_key, &mut set) {
            // Derived data that disagrees with the store is built again.
            tracing::warn!("agent {agent}: search index rebuilt: {e}");
            ix.reset()?;
            let mut bodies = self.bodies()?;
            ix.refresh(&mut bodies, &self.word_key, &mut set)?;
        }
        let mut bodies = self.bodies()?;
        f(&ix, &store, &mut bodies)
    }

    pub fn search(&self, q: &Query) -> Result<(Page, bool), ReadError> {
        let key = self.word_key;
        let opened = self.has_identity();
        self.with_index(&q.agent, |ix, store, bodies| {
            Ok((super::search::run(store, ix, q, bodies, &key)?, opened))
        })
    }

    fn receipts(&self, agent: &str, signer: &Signer) -> Result<ReceiptLog, ReadError> {
        Ok(ReceiptLog::open(
            &self.agent_dir(agent).join("receipts"),
            &signer.collector_id,
            signer.pubkey(),
        )?)
    }

    /// Runs `f` on a bundle source for `agent` (its index, store and
    /// receipts) and the bodies opener.
    fn with_source<T>(
        &self,
        agent: &str,
        signer: &Signer,
        f: impl FnOnce(&Source<'_>, &mut Bodies) -> Result<T, BundleError>,
    ) -> Result<T, ReadError> {
        let receipts = self.receipts(agent, signer)?;
        self.with_index(agent, |ix, store, bodies| {
            let src = Source {
                agent,
                store,
                index: ix,
                receipts: &receipts,
                signer,
            };
            Ok(f(&src, bodies)?)
        })
    }

    /// The fleet overview's summary of `agent` (README, "The console").
    pub fn summary(&self, agent: &str, now: i64) -> Result<super::views::Summary, ReadError> {
        self.with_index(agent, |ix, _, _| Ok(super::views::summary(ix, now)))
    }

    /// The timeline of `agent` over `[from, to)` (README, "The console").
    pub fn timeline(
        &self,
        agent: &str,
        (from, to): (i64, i64),
        buckets: usize,
        limit: usize,
        now: i64,
    ) -> Result<serde_json::Value, ReadError> {
        self.with_index(agent, |ix, _, _| {
            Ok(super::views::timeline(ix, from, to, buckets, limit, now)?)
        })
    }

    /// Record `seq` of `agent` with its checkpoint and receipts, and
    /// whether it was decrypted for the answer.
    pub fn detail(
        &self,
        agent: &str,
        seq: u64,
        signer: &Signer,
    ) -> Result<(serde_json::Value, bool), ReadError> {
        self.with_source(agent, signer, |src, bodies| src.detail(seq, bodies))
    }

    pub fn disclose(&self, agent: &str, seq: u64, signer: &Signer) -> Result<Made, ReadError> {
        self.with_source(agent, signer, |src, bodies| src.disclose(seq, bodies))
    }

    pub fn export(
        &self,
        agent: &str,
        from: u64,
        to: u64,
        signer: &Signer,
    ) -> Result<Made, ReadError> {
        self.with_source(agent, signer, |src, _| src.export(from, to))
    }
}
