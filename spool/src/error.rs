//! Errors of the spool writer.

use crate::keys::KeyError;
use std::io;
use std::path::PathBuf;

/// Why the spool could not be opened or written.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("{0}: the spool is in use by another process (lock held)")]
    Locked(PathBuf),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(
        "{path}: append_only = \"require\" but the append-only flag cannot be set ({source}); \
         the spool needs a file system with chattr support (ext4, xfs, btrfs) and CAP_LINUX_IMMUTABLE"
    )]
    AppendOnlyRequired { path: PathBuf, source: io::Error },
    #[error(
        "the host key is at epoch {key_epoch} but the spool's last epoch is {spool_epoch}: \
         the key cannot sign for the spool (was the spool restored from a backup, or is this \
         another host's key?)"
    )]
    KeyEpochMismatch { key_epoch: u64, spool_epoch: u64 },
    #[error(
        "the host key file could not be replaced for {failing_for:.0?} ({source}): an old seed \
         on disk could sign for every epoch since; stopping (fix the key directory; the next start \
         catches the key up)"
    )]
    KeyNotSaved {
        failing_for: std::time::Duration,
        source: crate::keys::KeyError,
    },
    #[error("the host key does not match this spool: {0}")]
    WrongKey(&'static str),
    #[error(
        "the spool is empty but the host key has already evolved to epoch {0}: the spool it \
         signed is gone; restore it, or create a new identity with `wormlog keygen` in an empty \
         key directory and enroll it"
    )]
    FreshSpoolEvolvedKey(u64),
    #[error("the spool's agent id is {found:?}, the configuration says {configured:?}")]
    AgentIdMismatch { found: String, configured: String },
    #[error(
        "{path}: {reason}; the spool cannot be continued safely (move it aside and run `wormlog verify` on it)"
    )]
    Corrupt { path: PathBuf, reason: String },
    #[error(
        "fsync failed on segment {segment} ({source}) and the records could not be rewritten \
         into a new segment; the writer stopped"
    )]
    FsyncFailed { segment: u64, source: io::Error },
    #[error("encryption at rest: {0}")]
    Encryption(String),
    #[error("record of {0} bytes is larger than the 64 MiB limit")]
    RecordTooLarge(usize),
    #[error("the agent id must be 1 to 255 bytes")]
    BadAgentId,
    #[error("the source name must be 1 to 255 bytes")]
    BadSourceName,
    #[error("the spool writer stopped after an earlier error")]
    Stopped,
}

pub(crate) fn io_at(
    op: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(io::Error) -> SpoolError {
    let path = path.into();
    move |source| SpoolError::Io { op, path, source }
}
