//! Settings of the spool writer, with the defaults documented in README.md.

use crate::hash::{Hash, ZERO32};
use crate::record::AppendOnly;
use crate::writer::flusher::FaultInjector;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How the writer is set up.
#[derive(Debug, Clone)]
pub struct SpoolOptions {
    pub dir: PathBuf,
    pub agent_id: String,
    /// `chattr +a` on the active segment, `+i` on sealed ones.
    pub append_only: AppendOnly,
    /// A segment is sealed once it holds this many bytes.
    pub segment_max_bytes: u64,
    /// …or once it is this old.
    pub segment_max_age: Duration,
    /// The longest a record waits before its batch is handed to `fdatasync`.
    pub commit_interval: Duration,
    /// A batch is handed over once it holds this many bytes.
    pub commit_bytes: usize,
    /// A checkpoint is written this often while records arrive…
    pub checkpoint_interval: Duration,
    /// …and after this many bytes of records, whichever comes first.
    pub checkpoint_bytes: u64,
    /// When idle this long, a heartbeat and a checkpoint are written.
    pub heartbeat_interval: Duration,
    /// The signing key evolves this often.
    pub epoch_duration: Duration,
    /// Recorded in `start` records, e.g. `wormlog 0.1.0 append`.
    pub program: String,
    /// SHA-256 of the configuration file in force.
    pub config_sha256: Hash,
    /// Encrypt entries to these age recipients (`age1…`; empty: no
    /// encryption). Takes effect at the next segment (docs/FORMAT.md §6.16).
    pub encrypt_to: Vec<String>,
    /// Test hook: fail chosen fsyncs. Never set in production.
    pub fault: Option<Arc<FaultInjector>>,
    /// Told how long each group commit (`write` + `fdatasync`) took, e.g.
    /// for a latency histogram.
    pub on_commit: Option<CommitObserver>,
}

/// A function told the duration of each group commit.
#[derive(Clone)]
pub struct CommitObserver(pub Arc<dyn Fn(Duration) + Send + Sync>);

impl std::fmt::Debug for CommitObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CommitObserver")
    }
}

pub const DEFAULT_SEGMENT_MAX_BYTES: u64 = 32 << 20;
pub const DEFAULT_SEGMENT_MAX_AGE: Duration = Duration::from_secs(24 * 3600);
pub const DEFAULT_COMMIT_INTERVAL: Duration = Duration::from_millis(5);
pub const DEFAULT_COMMIT_BYTES: usize = 1 << 20;
pub const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(5);
pub const DEFAULT_CHECKPOINT_BYTES: u64 = 1 << 20;
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(60);
pub const DEFAULT_EPOCH_DURATION: Duration = Duration::from_secs(15 * 60);

impl SpoolOptions {
    pub fn new(dir: impl Into<PathBuf>, agent_id: impl Into<String>) -> Self {
        SpoolOptions {
            dir: dir.into(),
            agent_id: agent_id.into(),
            append_only: AppendOnly::Try,
            segment_max_bytes: DEFAULT_SEGMENT_MAX_BYTES,
            segment_max_age: DEFAULT_SEGMENT_MAX_AGE,
            commit_interval: DEFAULT_COMMIT_INTERVAL,
            commit_bytes: DEFAULT_COMMIT_BYTES,
            checkpoint_interval: DEFAULT_CHECKPOINT_INTERVAL,
            checkpoint_bytes: DEFAULT_CHECKPOINT_BYTES,
            heartbeat_interval: DEFAULT_HEARTBEAT_INTERVAL,
            epoch_duration: DEFAULT_EPOCH_DURATION,
            program: format!("wormlog {}", env!("CARGO_PKG_VERSION")),
            config_sha256: ZERO32,
            encrypt_to: Vec::new(),
            fault: None,
            on_commit: None,
        }
    }
}
