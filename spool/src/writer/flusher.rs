//! The group-commit thread: one `write` and one `fdatasync` per batch, off
//! the writer's core. Only one batch is in flight at a time, so at most one
//! batch can be torn by a crash.

use std::fs::File;
use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

/// A test hook that makes chosen `fdatasync` calls fail, standing in for a
/// failing disk (which cannot be produced on the test machine without
/// device-mapper). Production code never sets it.
#[derive(Debug, Default)]
pub struct FaultInjector {
    syncs: AtomicU64,
    /// Fail the N-th `fdatasync` (1-based); 0 never.
    pub fail_sync_at: AtomicU64,
    /// Fail every `fdatasync` from the N-th on (1-based); 0 never.
    pub fail_from: AtomicU64,
}

impl FaultInjector {
    /// How many `fdatasync` calls were made so far.
    pub fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::SeqCst)
    }

    fn should_fail(&self) -> bool {
        let n = self.syncs.fetch_add(1, Ordering::SeqCst) + 1;
        let from = self.fail_from.load(Ordering::SeqCst);
        self.fail_sync_at.load(Ordering::SeqCst) == n || (from != 0 && n >= from)
    }
}

/// One batch to make durable.
#[derive(Debug)]
pub struct Job {
    pub file: Arc<File>,
    pub buf: Vec<u8>,
    pub segment_no: u64,
    /// Segment size once this batch is written.
    pub end_offset: u64,
    /// Records appended through the public API once this batch is durable.
    pub end_count: u64,
    /// The chain's next sequence number once this batch is durable.
    pub end_seq: u64,
}

/// How far the chain is durable: every record below [`DurableSeq::get`] has
/// reached the disk. Shared with readers of the spool (the forwarder), which
/// must never send a record that a crash could still take back.
#[derive(Debug, Default)]
pub struct DurableSeq {
    seq: Mutex<u64>,
    cv: Condvar,
}

impl DurableSeq {
    pub fn get(&self) -> u64 {
        *self.seq.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn set(&self, seq: u64) {
        let mut s = self.seq.lock().unwrap_or_else(|p| p.into_inner());
        if seq > *s {
            *s = seq;
            self.cv.notify_all();
        }
    }

    /// Waits until the durable end passes `seq` or `timeout` elapses;
    /// returns the durable end.
    pub fn wait_beyond(&self, seq: u64, timeout: std::time::Duration) -> u64 {
        let s = self.seq.lock().unwrap_or_else(|p| p.into_inner());
        let (s, _) = self
            .cv
            .wait_timeout_while(s, timeout, |s| *s <= seq)
            .unwrap_or_else(|p| p.into_inner());
        *s
    }
}

/// What has been made durable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Durable {
    pub segment_no: u64,
    pub end_offset: u64,
    pub end_count: u64,
}

/// A batch that could not be made durable.
#[derive(Debug)]
pub struct FlushFailure {
    pub error: io::Error,
    pub segment_no: u64,
    pub buf: Vec<u8>,
}

#[derive(Debug, Default)]
struct State {
    job: Option<Job>,
    busy: bool,
    durable: Durable,
    failure: Option<FlushFailure>,
    spare: Option<Vec<u8>>,
    shutdown: bool,
    syncs: u64,
    sync_ns_total: u64,
    sync_ns_max: u64,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    cv: Condvar,
    /// Mirrors `State::busy` for a check without the lock on the hot path.
    busy: std::sync::atomic::AtomicBool,
}

/// Statistics of the flusher.
#[derive(Debug, Clone, Copy, Default)]
pub struct FlushStats {
    pub syncs: u64,
    pub sync_ns_total: u64,
    pub sync_ns_max: u64,
}

/// Handle to the group-commit thread.
#[derive(Debug)]
pub struct Flusher {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Flusher {
    pub fn start(
        fault: Option<Arc<FaultInjector>>,
        durable_seq: Arc<DurableSeq>,
        on_commit: Option<super::options::CommitObserver>,
    ) -> io::Result<Flusher> {
        let shared = Arc::new(Shared::default());
        let s2 = shared.clone();
        let thread = std::thread::Builder::new()
            .name("wormlog-fsync".into())
            .spawn(move || run(&s2, fault.as_deref(), &durable_seq, on_commit))?;
        Ok(Flusher {
            shared,
            thread: Some(thread),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a batch is in flight.
    #[inline]
    pub fn busy(&self) -> bool {
        self.shared.busy.load(Ordering::Acquire)
    }

    /// Hands a batch over, first waiting for the one in flight. Returns a
    /// recycled buffer for the next batch, or the failure of the previous
    /// batch (in which case `job` was not taken and is returned).
    pub fn submit(&self, job: Job) -> Result<Vec<u8>, (FlushFailure, Job)> {
        let mut st = self.lock();
        while st.busy {
            st = self.shared.cv.wait(st).unwrap_or_else(|p| p.into_inner());
        }
        if let Some(f) = st.failure.take() {
            return Err((f, job));
        }
        st.job = Some(job);
        st.busy = true;
        self.shared.busy.store(true, Ordering::Release);
        let spare = st.spare.take().unwrap_or_default();
        self.shared.cv.notify_all();
        Ok(spare)
    }

    /// Waits until nothing is in flight; returns the failure if the last
    /// batch failed.
    pub fn wait_idle(&self) -> Result<Durable, FlushFailure> {
        let mut st = self.lock();
        while st.busy {
            st = self.shared.cv.wait(st).unwrap_or_else(|p| p.into_inner());
        }
        match st.failure.take() {
            Some(f) => Err(f),
            None => Ok(st.durable),
        }
    }

    pub fn durable(&self) -> Durable {
        self.lock().durable
    }

    /// Sets the durable mark (after recovery, before any batch).
    pub fn set_durable(&self, d: Durable) {
        self.lock().durable = d;
    }

    pub fn stats(&self) -> FlushStats {
        let st = self.lock();
        FlushStats {
            syncs: st.syncs,
            sync_ns_total: st.sync_ns_total,
            sync_ns_max: st.sync_ns_max,
        }
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        {
            let mut st = self.lock();
            st.shutdown = true;
            self.shared.cv.notify_all();
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(
    shared: &Shared,
    fault: Option<&FaultInjector>,
    durable_seq: &DurableSeq,
    on_commit: Option<super::options::CommitObserver>,
) {
    loop {
        let job = {
            let mut st = shared.state.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                if let Some(job) = st.job.take() {
                    break job;
                }
                if st.shutdown {
                    return;
                }
                st = shared.cv.wait(st).unwrap_or_else(|p| p.into_inner());
            }
        };
        let started = Instant::now();
        let result = (&*job.file).write_all(&job.buf).and_then(|()| {
            if fault.is_some_and(FaultInjector::should_fail) {
                Err(io::Error::from_raw_os_error(5)) // EIO
            } else {
                job.file.sync_data()
            }
        });
        let elapsed = started.elapsed();
        if let Some(o) = &on_commit {
            (o.0)(elapsed);
        }
        let took = elapsed.as_nanos() as u64;
        let mut st = shared.state.lock().unwrap_or_else(|p| p.into_inner());
        st.syncs += 1;
        st.sync_ns_total += took;
        st.sync_ns_max = st.sync_ns_max.max(took);
        match result {
            Ok(()) => {
                st.durable = Durable {
                    segment_no: job.segment_no,
                    end_offset: job.end_offset,
                    end_count: job.end_count,
                };
                durable_seq.set(job.end_seq);
                let mut buf = job.buf;
                buf.clear();
                st.spare = Some(buf);
            }
            Err(error) => {
                st.failure = Some(FlushFailure {
                    error,
                    segment_no: job.segment_no,
                    buf: job.buf,
                });
            }
        }
        st.busy = false;
        shared.busy.store(false, Ordering::Release);
        shared.cv.notify_all();
    }
}
