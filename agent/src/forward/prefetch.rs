//! The forwarder's read-ahead: one thread reads the next batch from the
//! spool and compresses it while the collector verifies and fsyncs the
//! current one, so the agent's work and the collector's overlap instead of
//! taking turns.
//!
//! Memory: the batch is compressed as it is read (body.rs), and the thread
//! starts on the next batch only once the body of the last one it handed
//! over is gone, written to the connection or dropped ([`Owned`] says so
//! when it is dropped), or once the sender asks for the next batch (it is
//! done with the last one, whatever holds its body: a collector that
//! answers before reading a body leaves it with the connection, and
//! forwarding must not wait on that). A body is not kept for a retry: the
//! spool is the queue, and a batch that failed is read again. So the
//! forwarder holds one compressed body at a time: the one on the wire, or
//! the next one while the collector works on the last (docs/BENCHMARKS.md).
//! With several requests in flight (`[forward] in_flight`) that stays so:
//! the bodies of the requests out are gone once written. A prepared batch
//! waits in a channel of one, and the thread says so ([`ReadAhead::ready`])
//! to a sender that waits for an answer and for the next batch at once.

use super::body::BodyCompressor;
use crate::sources::Shutdown;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, SyncSender, TryRecvError};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;
use wormlog_spool::reader::{RangeReader, ReadError, Span};
use wormlog_spool::writer::DurableSeq;

/// A batch's request body (compressed unless `compression = "none"`): its
/// bytes, and what tells the read-ahead thread when they are gone (the
/// last `Bytes` that shares them dropped, once the HTTP client has written
/// them or given up).
#[derive(Debug)]
struct Owned {
    body: Vec<u8>,
    _gone: Gone,
}

impl AsRef<[u8]> for Owned {
    fn as_ref(&self) -> &[u8] {
        &self.body
    }
}

/// The read-ahead's gate (the module's comment). Batches are numbered in
/// the order they are handed over (1, 2, ...); the gate keeps the highest
/// number whose body is gone and the most batches the sender had taken
/// when it last asked for more. Two numbers, not a queue of events: the
/// sender asks each time it waits (twice a second while the spool is
/// quiet), and nothing of that may pile up.
#[derive(Debug, Default)]
struct Gate {
    /// (gone, taken when asking)
    state: Mutex<(u64, u64)>,
    moved: Condvar,
}

impl Gate {
    fn update(&self, f: impl FnOnce(&mut (u64, u64))) {
        f(&mut self.state.lock().unwrap_or_else(|p| p.into_inner()));
        self.moved.notify_all();
    }

    /// The body of batch `n` is gone.
    fn body_gone(&self, n: u64) {
        self.update(|s| s.0 = s.0.max(n));
    }

    /// The sender has taken `taken` batches and waits for the next.
    fn sender_asks(&self, taken: u64) {
        self.update(|s| s.1 = s.1.max(taken));
    }

    /// Waits at most `timeout` for the gate to open behind batch `n` (its
    /// body gone, or the sender asking for the next); whether it is open.
    fn wait_open(&self, n: u64, timeout: Duration) -> bool {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (state, _) = self
            .moved
            .wait_timeout_while(state, timeout, |s| s.0 < n && s.1 < n)
            .unwrap_or_else(|p| p.into_inner());
        state.0 >= n || state.1 >= n
    }
}

/// Tells the gate its batch's body is gone when dropped.
#[derive(Debug)]
struct Gone(u64, Arc<Gate>);

impl Drop for Gone {
    fn drop(&mut self) {
        self.1.body_gone(self.0);
    }
}

/// zstd's fastest regular level ("--fast=1"): on the spool's records it
/// compresses 2.5x faster than level 1 (1.2-1.4 GB/s against 0.5 GB/s here)
/// at the same ratio (about 5.4:1); compression is the forwarder's largest
/// cost (docs/BENCHMARKS.md).
const ZSTD_LEVEL: i32 = -1;

/// Reads the next batch into its request body (compressed as it is read
/// when there is a `compressor`): what it holds (what the answer is checked
/// against) and the body, or None when nothing new is durable. A
/// compression failure is a `ReadError::Sink`; the reader has not moved.
fn read_batch(
    reader: &mut RangeReader,
    durable: u64,
    max_records: u64,
    max_bytes: usize,
    compressor: Option<&mut BodyCompressor>,
) -> Result<Option<(Span, Vec<u8>)>, ReadError> {
    let mut out = Vec::new();
    let span = if let Some(c) = compressor {
        c.begin(&mut out).map_err(ReadError::Sink)?;
        let span = reader.read_into(durable, max_records, max_bytes, &mut |piece| {
            c.push(&mut out, piece)
        })?;
        if span.records > 0 {
            out = c.finish(out, span.len as u64).map_err(ReadError::Sink)?;
        }
        span
    } else {
        reader.read_into(durable, max_records, max_bytes, &mut |piece| {
            out.extend_from_slice(piece);
            Ok(())
        })?
    };
    Ok((span.records > 0).then_some((span, out)))
}

/// What the read-ahead thread hands over, tagged with the generation of
/// the position it was read from (a seek starts a new generation).
#[derive(Debug)]
pub enum Ahead {
    Batch(u64, Span, bytes::Bytes),
    Failed(u64, String),
}

/// A new position (and batch size) for the read-ahead.
#[derive(Debug)]
struct Seek {
    seq: u64,
    generation: u64,
    max_records: u64,
}

/// The sender's end of the read-ahead.
#[derive(Debug)]
pub struct ReadAhead {
    rx: Receiver<Ahead>,
    /// Notified when something was handed over.
    ready: Arc<tokio::sync::Notify>,
    ctl: Sender<Seek>,
    gate: Arc<Gate>,
    /// Batches taken from the thread (those read before a seek included).
    taken: u64,
    /// Batches the thread has read (for tests of the gate).
    #[cfg_attr(not(test), expect(dead_code, reason = "read by the tests of the gate"))]
    read: Arc<AtomicU64>,
    generation: u64,
    max_records: u64,
}

#[derive(Debug)]
pub struct Settings {
    pub spool_dir: std::path::PathBuf,
    pub durable: Arc<DurableSeq>,
    pub shutdown: Arc<Shutdown>,
    pub start: u64,
    pub max_records: u64,
    pub max_bytes: usize,
    pub zstd: bool,
}

impl ReadAhead {
    /// Starts the read-ahead thread at `start`.
    pub fn start(s: Settings) -> std::io::Result<ReadAhead> {
        // One prepared batch at a time: see the module's comment.
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let ready = Arc::new(tokio::sync::Notify::new());
        let (ctl, ctl_rx) = std::sync::mpsc::channel();
        let gate = Arc::new(Gate::default());
        let max_records = s.max_records;
        ctl.send(Seek {
            seq: s.start,
            generation: 0,
            max_records,
        })
        .expect("receiver alive");
        let read = Arc::new(AtomicU64::new(0));
        let (counted, thread_gate) = (read.clone(), gate.clone());
        let handover = Handover {
            tx,
            ready: ready.clone(),
        };
        std::thread::Builder::new()
            .name("forward-read".into())
            .spawn(move || run(s, &handover, &ctl_rx, &thread_gate, &counted))?;
        Ok(ReadAhead {
            rx,
            ready,
            ctl,
            gate,
            taken: 0,
            read,
            generation: 0,
            max_records,
        })
    }

    /// The next batch from the current position: Ok(None) after `timeout`
    /// with nothing new (so the caller can look around), Err when reading
    /// failed or the read-ahead thread is gone.
    pub fn next(&mut self, timeout: Duration) -> Result<Option<(Span, bytes::Bytes)>, String> {
        loop {
            self.gate.sender_asks(self.taken);
            let got = match self.rx.recv_timeout(timeout) {
                Ok(a) => self.take(a),
                Err(RecvTimeoutError::Timeout) => return Ok(None),
                Err(RecvTimeoutError::Disconnected) => return Err(STOPPED.into()),
            };
            if let Some(got) = got {
                return got.map(Some);
            }
        }
    }

    /// The next batch if one is ready now, without asking for more: the
    /// sender still has requests out, and the thread reads on only once
    /// their bodies are gone (the module's comment).
    pub fn try_next(&mut self) -> Result<Option<(Span, bytes::Bytes)>, String> {
        loop {
            let got = match self.rx.try_recv() {
                Ok(a) => self.take(a),
                Err(TryRecvError::Empty) => return Ok(None),
                Err(TryRecvError::Disconnected) => return Err(STOPPED.into()),
            };
            if let Some(got) = got {
                return got.map(Some);
            }
        }
    }

    /// What was handed over, unless it was read before the last seek.
    fn take(&mut self, a: Ahead) -> Option<Result<(Span, bytes::Bytes), String>> {
        match a {
            Ahead::Batch(g, p, body) => {
                self.taken += 1;
                // Read before the last seek: dropped.
                (g == self.generation).then_some(Ok((p, body)))
            }
            Ahead::Failed(g, e) => (g == self.generation).then_some(Err(e)),
        }
    }

    /// Notified each time the thread hands something over (a permit is
    /// kept when nobody waits, so a wakeup may find it taken already).
    pub fn ready(&self) -> &tokio::sync::Notify {
        &self.ready
    }

    /// Goes on from `seq` (batches read ahead of it are dropped).
    pub fn seek(&mut self, seq: u64) {
        self.generation += 1;
        let _ = self.ctl.send(Seek {
            seq,
            generation: self.generation,
            max_records: self.max_records,
        });
    }

    /// Smaller batches from now on, starting again at `seq`.
    pub fn shrink(&mut self, max_records: u64, seq: u64) {
        self.max_records = max_records;
        self.seek(seq);
    }
}

const STOPPED: &str = "the read-ahead thread stopped";

/// The thread's end of the handover.
struct Handover {
    tx: SyncSender<Ahead>,
    ready: Arc<tokio::sync::Notify>,
}

impl Handover {
    /// Hands `a` over (waits while the last is not taken); false when the
    /// sender is gone.
    fn send(&self, a: Ahead) -> bool {
        let sent = self.tx.send(a).is_ok();
        self.ready.notify_one();
        sent
    }
}

/// The read-ahead thread; `gate` is shared with the sender and with the
/// bodies it hands over.
fn run(s: Settings, tx: &Handover, ctl: &Receiver<Seek>, gate: &Arc<Gate>, read: &AtomicU64) {
    let mut reader = RangeReader::new(&s.spool_dir);
    let mut compressor = if s.zstd {
        match BodyCompressor::new(ZSTD_LEVEL) {
            Ok(c) => Some(c),
            Err(e) => {
                tx.send(Ahead::Failed(0, format!("zstd: {e}")));
                return;
            }
        }
    } else {
        None
    };
    let mut generation = 0;
    let mut max_records = s.max_records;
    // After a failure, nothing is read until the sender says where to go.
    let mut broken = false;
    // Batches handed over; the last one's number while its body is held
    // and the sender has not asked for more (the module's comment).
    let mut handed = 0u64;
    let mut held = None;
    while !s.shutdown.is_set() {
        let seek = if broken {
            match ctl.recv_timeout(Duration::from_millis(500)) {
                Ok(seek) => Some(seek),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return, // the forwarder stopped
            }
        } else {
            match ctl.try_recv() {
                Ok(seek) => Some(seek),
                Err(TryRecvError::Empty) => None,
                Err(TryRecvError::Disconnected) => return,
            }
        };
        if let Some(seek) = seek {
            generation = seek.generation;
            max_records = seek.max_records;
            broken = reader.seek(seek.seq).is_err_and(|e| {
                let msg = format!("cannot find seq {} in the spool: {e}", seek.seq);
                tx.send(Ahead::Failed(generation, msg));
                true
            });
            continue;
        }
        if broken {
            continue;
        }
        if let Some(n) = held {
            if gate.wait_open(n, Duration::from_millis(200)) {
                held = None;
            }
            continue;
        }
        let pos = reader.position().unwrap_or(0);
        let durable = s.durable.wait_beyond(pos, Duration::from_millis(200));
        if durable <= pos {
            continue;
        }
        let msg = match read_batch(
            &mut reader,
            durable,
            max_records,
            s.max_bytes,
            compressor.as_mut(),
        ) {
            Ok(None) => continue,
            Ok(Some((p, body))) => {
                read.fetch_add(1, Ordering::Relaxed);
                let body = bytes::Bytes::from_owner(Owned {
                    body,
                    _gone: Gone(handed + 1, gate.clone()),
                });
                Ahead::Batch(generation, p, body)
            }
            Err(ReadError::Sink(e)) => Ahead::Failed(generation, format!("compressing: {e}")),
            Err(e) => {
                broken = true;
                Ahead::Failed(generation, format!("reading the spool: {e}"))
            }
        };
        let batch = matches!(msg, Ahead::Batch(..));
        if !tx.send(msg) {
            return;
        }
        if batch {
            handed += 1;
            held = Some(handed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wormlog_spool::keys::HostKey;
    use wormlog_spool::record::AppendOnly;
    use wormlog_spool::{Position, Spool, SpoolOptions};

    /// A spool of `records` small entries, all durable.
    fn spool(dir: &std::path::Path, records: u64) -> Spool {
        let keys = dir.join("keys");
        HostKey::generate(&keys, wormlog_spool::clock::wall_ns()).unwrap();
        let mut o = SpoolOptions::new(dir.join("spool"), "test-agent");
        o.append_only = AppendOnly::Off;
        o.checkpoint_interval = Duration::from_secs(3600);
        o.heartbeat_interval = Duration::from_secs(7200);
        let mut s = Spool::open(o, HostKey::load(&keys).unwrap()).unwrap().0;
        // The genesis records come first; entries until `records`.
        let mut n = 0;
        while s.durable_seq().get() < records {
            let body = format!("line {n}");
            let ts = wormlog_spool::clock::wall_ns();
            s.append_entry("app", &Position::Counter(n), 0, &[], body.as_bytes(), ts)
                .unwrap();
            s.sync().unwrap();
            n += 1;
        }
        s
    }

    fn read_ahead(dir: &std::path::Path, s: &Spool, zstd: bool) -> ReadAhead {
        ReadAhead::start(Settings {
            spool_dir: dir.join("spool"),
            durable: s.durable_seq(),
            shutdown: Arc::new(Shutdown::default()),
            start: 0,
            max_records: 10,
            max_bytes: 1 << 20,
            zstd,
        })
        .unwrap()
    }

    /// Waits (10 s at most) until the thread has read `n` batches.
    fn wait_read(ra: &ReadAhead, n: u64) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while ra.read.load(Ordering::Relaxed) < n {
            assert!(std::time::Instant::now() < deadline, "{n} batches not read");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn the_next_batch_is_read_once_the_last_body_is_gone_or_the_sender_asks() {
        let t = tempfile::tempdir().unwrap();
        let s = spool(t.path(), 50);
        let mut ra = read_ahead(t.path(), &s, true);
        let wait = Duration::from_secs(10);
        let (first, body) = ra.next(wait).unwrap().expect("a batch");
        assert_eq!((first.first_seq, first.records), (0, 10));
        // While its body is alive and nobody asks, nothing more is read.
        std::thread::sleep(Duration::from_secs(1));
        assert_eq!(ra.read.load(Ordering::Relaxed), 1);
        // The body is what the spool holds, and announces its size.
        let raw = wormlog_spool::reader::RangeReader::new(t.path().join("spool"))
            .read(u64::MAX, 10, 1 << 20)
            .unwrap()
            .bytes;
        let size = zstd::zstd_safe::get_frame_content_size(&body).unwrap();
        assert_eq!(size, Some(raw.len() as u64));
        assert_eq!(zstd::bulk::decompress(&body, raw.len()).unwrap(), raw);
        // Gone: the next batch is read before anyone asks for it.
        drop(body);
        wait_read(&ra, 2);
        let (second, stuck) = ra.next(wait).unwrap().expect("the next batch");
        assert_eq!((second.first_seq, second.records), (10, 10));
        // A body something else still holds (a connection the collector
        // answered before reading it) does not stop forwarding: the
        // sender asks, and the next batch comes.
        let (third, body) = ra.next(wait).unwrap().expect("a batch past a held body");
        assert_eq!(third.first_seq, 20);
        drop(stuck);
        // A failed batch is read again from the spool.
        ra.seek(20);
        drop(body);
        let (again, _body) = ra.next(wait).unwrap().expect("the batch again");
        assert_eq!((again.first_seq, again.records), (20, 10));
    }

    #[test]
    fn with_a_request_out_the_next_batch_is_taken_when_ready_without_asking_for_more() {
        let t = tempfile::tempdir().unwrap();
        let s = spool(t.path(), 50);
        let mut ra = read_ahead(t.path(), &s, true);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (first, body) = ra.next(Duration::from_secs(10)).unwrap().expect("a batch");
        assert_eq!(first.first_seq, 0);
        // The first body written: the thread reads the next batch and says
        // it is ready; it is taken without asking for more.
        drop(body);
        let second = rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(10), async {
                loop {
                    ra.ready().notified().await;
                    if let Some(b) = ra.try_next().unwrap() {
                        return b;
                    }
                }
            })
            .await
            .expect("the next batch ready")
        });
        assert_eq!((second.0.first_seq, second.0.records), (10, 10));
        // Its body still out and nobody asking: nothing more is read.
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(ra.read.load(Ordering::Relaxed), 2);
        assert!(ra.try_next().unwrap().is_none());
        // Gone: the third comes.
        drop(second);
        wait_read(&ra, 3);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let third = loop {
            if let Some(b) = ra.try_next().unwrap() {
                break b;
            }
            assert!(std::time::Instant::now() < deadline, "the third batch");
            std::thread::sleep(Duration::from_millis(5));
        };
        assert_eq!(third.0.first_seq, 20);
    }

    #[test]
    fn the_gate_opens_behind_a_batch_on_its_body_gone_or_the_sender_asking() {
        let gate = Arc::new(Gate::default());
        let short = Duration::from_millis(1);
        // The sender asking while it had taken 2 batches does not open
        // the gate behind batch 3; nor does an earlier body going.
        gate.sender_asks(2);
        gate.body_gone(2);
        assert!(!gate.wait_open(3, short));
        // Asked again and again (a quiet spool): still two numbers.
        for _ in 0..100_000 {
            gate.sender_asks(2);
        }
        assert_eq!(*gate.state.lock().unwrap(), (2, 2));
        // Batch 3's body going, from another thread, wakes a waiter.
        let (g, t0) = (gate.clone(), std::time::Instant::now());
        let waker = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            drop(Gone(3, g));
        });
        assert!(gate.wait_open(3, Duration::from_secs(10)));
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "woken, not timed out"
        );
        waker.join().unwrap();
        // Or the sender asking after taking batch 4.
        assert!(!gate.wait_open(4, short));
        gate.sender_asks(4);
        assert!(gate.wait_open(4, short));
    }

    #[test]
    fn without_compression_the_body_is_the_spool_bytes() {
        let t = tempfile::tempdir().unwrap();
        let s = spool(t.path(), 25);
        let mut ra = read_ahead(t.path(), &s, false);
        let mut reader = wormlog_spool::reader::RangeReader::new(t.path().join("spool"));
        for _ in 0..3 {
            let (p, body) = ra.next(Duration::from_secs(10)).unwrap().expect("a batch");
            let want = reader.read(u64::MAX, 10, 1 << 20).unwrap();
            assert_eq!(p, want.span);
            assert_eq!(&body[..], &want.bytes[..]);
        }
    }
}
