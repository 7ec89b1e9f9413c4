//! A checked batch's write, done after the agent's store is released.
//!
//! Checking a batch (its leaf hashes and signatures) and writing it
//! (the page-cache copy and `fdatasync`) take about as long as each other.
//! Done one after the other under the agent's lock, the next batch of the
//! same agent (one sent while this one is in flight) waits for both. So a
//! batch that only appends to the active segment is checked under the lock,
//! and what remains to do is handed back as a [`Commit`]: the caller
//! releases the lock, runs it (write, `fdatasync`, the receipts written and
//! made durable) and only then answers. Meanwhile the next batch is
//! checked.
//!
//! The store keeps a [`Pending`] of the newest commit and waits for it
//! ([`Pending::wait`]) before it writes anything else, compares a replay
//! with what it stored, answers anything but the next batch's own 200, or
//! writes its snapshot: at most one batch is checked but not yet durable,
//! and nothing is ever written behind a write that failed (after a failed
//! `fdatasync` a later one may succeed without the lost pages). A commit
//! that failed, or did not run to its end (never run, a panic), makes the
//! store reload itself: the active segment is first cut back to the end of
//! the last durable batch (the page cache is not trusted), then loaded from
//! disk. The batch was never answered, so its agent sends it again. (The
//! collector's read API reads segment files directly, as before: it may
//! see a batch being written.)

use super::StoreError;
use crate::receipts::{Receipt, ReceiptLog};
use std::fs::File;
use std::io::Write;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};

/// The bytes a commit appends, in order: the batch's torn bytes or a range
/// of its frames.
#[derive(Debug, Clone)]
pub(super) enum Piece {
    Torn,
    Frames(Range<usize>),
}

#[derive(Debug, Clone, PartialEq)]
enum State {
    Running,
    Durable,
    Failed(String),
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    /// Tests: how many [`Pending::wait`] calls block on it now.
    #[cfg(test)]
    waiting: std::sync::atomic::AtomicUsize,
}

impl Shared {
    fn set(&self, s: State) {
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = s;
        self.changed.notify_all();
    }
}

/// What is left of storing a batch once it was checked: run it with the
/// batch's bytes, outside the agent's lock, before the batch is answered.
#[must_use = "a batch is stored only once its commit has run"]
#[derive(Debug)]
pub struct Commit {
    /// A handle on the active segment (the store's, duplicated).
    file: File,
    path: PathBuf,
    pieces: Vec<Piece>,
    receipts: Vec<Receipt>,
    log: Arc<Mutex<ReceiptLog>>,
    shared: Arc<Shared>,
    /// Tests: panic when run.
    #[cfg(test)]
    pub(super) panic_in_run: bool,
}

/// Where a store is (or will be) durable up to.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct DurableEnd {
    /// The seq after the last durable record.
    pub seq: u64,
    /// Where that record ends in the active segment (its number and
    /// length); None without an active segment.
    pub at: Option<(u64, u64)>,
}

/// The store's view of its newest commit.
#[derive(Debug)]
pub(super) struct Pending {
    shared: Arc<Shared>,
    /// The store's durable end once the commit has run.
    pub end: DurableEnd,
}

impl Commit {
    pub(super) fn new(
        end: DurableEnd,
        file: File,
        path: PathBuf,
        pieces: Vec<Piece>,
        receipts: Vec<Receipt>,
        log: Arc<Mutex<ReceiptLog>>,
    ) -> (Commit, Pending) {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::Running),
            changed: Condvar::new(),
            #[cfg(test)]
            waiting: Default::default(),
        });
        let pending = Pending {
            shared: shared.clone(),
            end,
        };
        let commit = Commit {
            file,
            path,
            pieces,
            receipts,
            log,
            shared,
            #[cfg(test)]
            panic_in_run: false,
        };
        (commit, pending)
    }

    /// Appends the batch (`torn`, `frames`: the bytes it was checked
    /// with), makes it durable, then appends the batch's receipts and
    /// makes them durable.
    pub fn run(mut self, torn: &[u8], frames: &[u8]) -> Result<(), StoreError> {
        #[cfg(test)]
        if self.panic_in_run {
            panic!("a test's panic inside a commit");
        }
        let r = self.write(torn, frames);
        self.shared.set(match &r {
            Ok(()) => State::Durable,
            Err(e) => State::Failed(e.to_string()),
        });
        r
    }

    fn write(&mut self, torn: &[u8], frames: &[u8]) -> Result<(), StoreError> {
        let at = |e| super::io_at(&self.path)(e);
        for p in &self.pieces {
            let bytes = match p {
                Piece::Torn => torn,
                Piece::Frames(r) => frames.get(r.clone()).ok_or_else(|| {
                    StoreError::Damaged(format!("a commit's range {r:?} is not in its batch"))
                })?,
            };
            self.file.write_all(bytes).map_err(at)?;
        }
        super::sync_segment(&self.file, &self.path)?;
        let appended = self
            .log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .append(&self.receipts);
        appended.map_err(|e| super::io_at(self.path.parent().unwrap_or(&self.path))(e))
    }
}

impl Drop for Commit {
    /// Dropped before it ran to the end (never run, a panic while it ran):
    /// nothing of the batch was answered; the store reloads itself.
    fn drop(&mut self) {
        let mut s = self.shared.state.lock().unwrap_or_else(|p| p.into_inner());
        if *s == State::Running {
            *s = State::Failed("the batch's write did not run to its end".into());
            self.shared.changed.notify_all();
        }
    }
}

impl Pending {
    /// Whether the commit has run and made its batch durable (without
    /// waiting).
    pub(super) fn is_durable(&self) -> bool {
        *self.shared.state.lock().unwrap_or_else(|p| p.into_inner()) == State::Durable
    }

    /// Waits until the commit has run: Ok once the batch and its receipts
    /// are durable, else why not.
    pub(super) fn wait(&self) -> Result<(), String> {
        let mut s = self.shared.state.lock().unwrap_or_else(|p| p.into_inner());
        #[cfg(test)]
        let _waiting = Waiting::new(&self.shared, *s == State::Running);
        while *s == State::Running {
            s = self
                .shared
                .changed
                .wait(s)
                .unwrap_or_else(|p| p.into_inner());
        }
        match &*s {
            State::Failed(e) => Err(e.clone()),
            _ => Ok(()),
        }
    }
}

/// Tests: counts a [`Pending::wait`] that blocks while it does.
#[cfg(test)]
struct Waiting<'a>(Option<&'a Shared>);

#[cfg(test)]
impl<'a> Waiting<'a> {
    fn new(shared: &'a Shared, blocks: bool) -> Waiting<'a> {
        use std::sync::atomic::Ordering::SeqCst;
        Waiting(blocks.then(|| {
            shared.waiting.fetch_add(1, SeqCst);
            shared
        }))
    }
}

#[cfg(test)]
impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if let Some(s) = self.0 {
            s.waiting.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        }
    }
}

#[cfg(test)]
impl Commit {
    /// How many calls wait for this commit to run.
    pub(super) fn waiters(&self) -> usize {
        self.shared
            .waiting
            .load(std::sync::atomic::Ordering::SeqCst)
    }
}
