//! The forwarder's read-ahead: one thread reads the next batch from the
//! spool and compresses it while the current one is on the wire and the
//! collector verifies and fsyncs it, so the agent's work and the collector's
//! overlap instead of taking turns. The thread hands a prepared batch over
//! only when the sender takes it (a rendezvous channel), so the forwarder
//! holds at most two compressed batches (the one being sent and the next)
//! and the one being read: a third, waiting in a channel slot, cost 2.5 MiB
//! of peak RSS and no throughput (docs/BENCHMARKS.md).

use crate::sources::Shutdown;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, SyncSender, TryRecvError};
use std::time::Duration;
use wormlog_spool::hash::Hash;
use wormlog_spool::reader::{Batch, RangeReader};
use wormlog_spool::writer::DurableSeq;

/// A batch ready to send: the request body (compressed when `zstd`) and
/// what the answer is checked against.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub first_seq: u64,
    pub records: u64,
    pub torn_len: usize,
    /// Uncompressed size, for messages.
    pub bytes: usize,
    /// (tree_size, root) of every checkpoint in the batch.
    pub checkpoints: Vec<(u64, Hash)>,
    pub body: bytes::Bytes,
    pub zstd: bool,
}

impl Prepared {
    pub fn end_seq(&self) -> u64 {
        self.first_seq + self.records
    }
}

/// zstd's fastest regular level ("--fast=1"): on the spool's records it
/// compresses 2.5x faster than level 1 (1.2-1.4 GB/s against 0.5 GB/s here)
/// at the same ratio (about 5.4:1); compression is the forwarder's largest
/// cost (docs/BENCHMARKS.md).
const ZSTD_LEVEL: i32 = -1;

/// Compresses a batch with `compressor` (one context kept for the thread,
/// not one made per batch); the body is kept at its compressed size (the
/// buffer zstd writes into is as big as the input could become, and up to
/// two bodies are alive at once, one read ahead and one sent).
fn prepare(
    batch: Batch,
    compressor: Option<&mut zstd::bulk::Compressor<'static>>,
) -> std::io::Result<Prepared> {
    let zstd = compressor.is_some();
    let body = if let Some(c) = compressor {
        let mut out = c.compress(&batch.bytes)?;
        out.shrink_to_fit();
        bytes::Bytes::from(out)
    } else {
        bytes::Bytes::from(batch.bytes.clone())
    };
    Ok(Prepared {
        first_seq: batch.first_seq,
        records: batch.records,
        torn_len: batch.torn_len,
        bytes: batch.bytes.len(),
        checkpoints: batch.checkpoints,
        body,
        zstd,
    })
}

/// What the read-ahead thread hands over, tagged with the generation of
/// the position it was read from (a seek starts a new generation).
#[derive(Debug)]
pub enum Ahead {
    Batch(u64, Prepared),
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
    ctl: Sender<Seek>,
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
        // Rendezvous: see the module's comment.
        let (tx, rx) = std::sync::mpsc::sync_channel(0);
        let (ctl, ctl_rx) = std::sync::mpsc::channel();
        let max_records = s.max_records;
        ctl.send(Seek {
            seq: s.start,
            generation: 0,
            max_records,
        })
        .expect("receiver alive");
        std::thread::Builder::new()
            .name("forward-read".into())
            .spawn(move || run(s, &tx, &ctl_rx))?;
        Ok(ReadAhead {
            rx,
            ctl,
            generation: 0,
            max_records,
        })
    }

    /// The next batch from the current position: Ok(None) after `timeout`
    /// with nothing new (so the caller can look around), Err when reading
    /// failed or the read-ahead thread is gone.
    pub fn next(&mut self, timeout: Duration) -> Result<Option<Prepared>, String> {
        loop {
            match self.rx.recv_timeout(timeout) {
                Ok(Ahead::Batch(g, p)) if g == self.generation => return Ok(Some(p)),
                Ok(Ahead::Failed(g, e)) if g == self.generation => return Err(e),
                Ok(_) => continue, // read before the last seek
                Err(RecvTimeoutError::Timeout) => return Ok(None),
                Err(RecvTimeoutError::Disconnected) => {
                    return Err("the read-ahead thread stopped".into());
                }
            }
        }
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

fn run(s: Settings, tx: &SyncSender<Ahead>, ctl: &Receiver<Seek>) {
    let mut reader = RangeReader::new(&s.spool_dir);
    let mut compressor = if s.zstd {
        match zstd::bulk::Compressor::new(ZSTD_LEVEL) {
            Ok(c) => Some(c),
            Err(e) => {
                let _ = tx.send(Ahead::Failed(0, format!("zstd: {e}")));
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
                let _ = tx.send(Ahead::Failed(generation, msg));
                true
            });
            continue;
        }
        if broken {
            continue;
        }
        let pos = reader.position().unwrap_or(0);
        let durable = s.durable.wait_beyond(pos, Duration::from_millis(200));
        if durable <= pos {
            continue;
        }
        let msg = match reader.read(durable, max_records, s.max_bytes) {
            Ok(b) if b.records == 0 => continue,
            Ok(b) => match prepare(b, compressor.as_mut()) {
                Ok(p) => Ahead::Batch(generation, p),
                Err(e) => Ahead::Failed(generation, format!("zstd: {e}")),
            },
            Err(e) => {
                broken = true;
                Ahead::Failed(generation, format!("reading the spool: {e}"))
            }
        };
        if tx.send(msg).is_err() {
            return;
        }
    }
}
