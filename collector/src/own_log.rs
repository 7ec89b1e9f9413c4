//! The collector's own chain (`<store>/log`): a wormlog spool signed with the
//! collector's own forward-secure key, holding its start and stop, every
//! agent pinned on first use, and every fork or refused chain it saw — the
//! collector's evidence about itself, verifiable with `wormlog verify`.
//!
//! One thread owns the spool: the request handlers only queue what is to be
//! written ([`OwnLog::event`], [`OwnLog::alert`] never block on a disk), and
//! the thread appends everything queued and makes it durable with one
//! `fdatasync`, between its heartbeats, checkpoints and epochs.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use wormlog_spool::keys::HostKey;
use wormlog_spool::record::{AlertCode, AppendOnly};
use wormlog_spool::{Position, Spool, SpoolOptions};

#[derive(Debug)]
enum Msg {
    Event(String),
    Alert(AlertCode, String),
    Close(String),
}

/// A handle to the collector's own log.
#[derive(Debug, Clone)]
pub struct OwnLog {
    tx: mpsc::Sender<Msg>,
    thread: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl OwnLog {
    pub fn open(
        store_dir: &std::path::Path,
        key_dir: &std::path::Path,
        collector_id: &str,
        append_only: AppendOnly,
        config_sha256: [u8; 32],
    ) -> anyhow::Result<(OwnLog, Vec<String>)> {
        if !key_dir.join(wormlog_spool::keys::KEY_FILE).exists() {
            HostKey::generate(key_dir, wormlog_spool::clock::wall_ns())?;
        }
        let key = HostKey::load(key_dir)?;
        let mut opts = SpoolOptions::new(store_dir.join("log"), collector_id);
        opts.append_only = append_only;
        opts.config_sha256 = config_sha256;
        let (spool, report) = Spool::open(opts, key)?;
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("own-log".into())
            .spawn(move || writer(spool, &rx))?;
        let log = OwnLog {
            tx,
            thread: Arc::new(Mutex::new(Some(thread))),
        };
        Ok((log, report.warnings))
    }

    /// Queues a line (source `collector`); it is durable within moments.
    pub fn event(&self, line: &str) {
        if self.tx.send(Msg::Event(line.to_owned())).is_err() {
            tracing::error!("own log closed: this event is not in the collector's chain: {line}");
        }
    }

    /// Queues an alert record; it is durable within moments.
    pub fn alert(&self, code: AlertCode, detail: &str) {
        if self.tx.send(Msg::Alert(code, detail.to_owned())).is_err() {
            tracing::error!("own log closed: this alert is not in the collector's chain: {detail}");
        }
    }

    /// Writes everything queued, then the stop record, and closes; waits
    /// for it.
    pub fn close(&self, reason: &str) {
        let _ = self.tx.send(Msg::Close(reason.to_owned()));
        let t = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = t {
            let _ = t.join();
        }
    }
}

/// The thread that owns the spool: writes what is queued (one sync for all
/// of it) and keeps heartbeats, checkpoints and epochs on time.
fn writer(mut spool: Spool, rx: &mpsc::Receiver<Msg>) {
    let report = |e: wormlog_spool::SpoolError| {
        tracing::error!(error = %e, "own log: {e}");
    };
    loop {
        let wait = spool
            .next_deadline()
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(5));
        let mut msg = match rx.recv_timeout(wait) {
            Ok(m) => Some(m),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let mut dirty = false;
        while let Some(m) = msg.take() {
            let r = match m {
                Msg::Event(line) => spool
                    .append_entry(
                        "collector",
                        &Position::None,
                        0,
                        &[],
                        line.as_bytes(),
                        wormlog_spool::clock::wall_ns(),
                    )
                    .map(|_| ()),
                Msg::Alert(code, detail) => spool.append_alert(code, &detail).map(|_| ()),
                Msg::Close(reason) => {
                    if let Err(e) = spool.close(&reason) {
                        report(e);
                    }
                    return;
                }
            };
            match r {
                Ok(()) => dirty = true,
                Err(e) => report(e),
            }
            msg = rx.try_recv().ok();
        }
        if dirty && let Err(e) = spool.sync() {
            report(e);
        }
        if let Err(e) = spool.tick() {
            report(e);
        }
    }
}
