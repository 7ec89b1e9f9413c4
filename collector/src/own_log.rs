//! The collector's own chain (`<store>/log`): a wormlog spool signed with the
//! collector's own forward-secure key, holding its start and stop, every
//! agent pinned on first use, and every fork or refused chain it saw — the
//! collector's evidence about itself, verifiable with `wormlog verify`.
//!
//! One thread owns the spool: the request handlers only queue what is to be
//! written ([`OwnLog::event`], [`OwnLog::alert`] never block on a disk), and
//! the thread appends everything queued and makes it durable with one
//! `fdatasync`, between its heartbeats, checkpoints and epochs.
//!
//! A spool writer that stops (its disk full or failing: see the spool's
//! fsync-failure path) is opened again every [`RETRY`] until that works.
//! Meanwhile what arrives is held (up to [`HELD_MAX`] messages), together
//! with what was appended but not yet durable when it stopped; once the
//! spool is open again a `gap` record says when the own log could not
//! write and why, and the held messages follow it. What did not fit is
//! counted in the gap's `lost_records`.

use std::collections::VecDeque;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use wormlog_spool::keys::HostKey;
use wormlog_spool::record::{AlertCode, AppendOnly, GapReason};
use wormlog_spool::{Position, Spool, SpoolOptions};

#[derive(Debug, Clone)]
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
        let (dir, key_dir, id) = (
            store_dir.join("log"),
            key_dir.to_owned(),
            collector_id.to_owned(),
        );
        let open = move || -> Result<_, String> {
            let key = HostKey::load(&key_dir).map_err(|e| e.to_string())?;
            let mut opts = SpoolOptions::new(&dir, &id);
            opts.append_only = append_only;
            opts.config_sha256 = config_sha256;
            Spool::open(opts, key).map_err(|e| e.to_string())
        };
        let (spool, report) = open().map_err(anyhow::Error::msg)?;
        let (tx, rx) = mpsc::channel();
        let reopen = Box::new(move || open().map(|(s, _)| s));
        let thread = std::thread::Builder::new()
            .name("own-log".into())
            .spawn(move || writer(spool, reopen, &rx))?;
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

/// How often a stopped own log tries to open its spool again.
const RETRY: Duration = Duration::from_secs(2);

/// Messages held while the own log cannot write; more are counted only.
pub const HELD_MAX: usize = 10_000;

/// Opens the own log's spool again.
type Reopen = Box<dyn FnMut() -> Result<Spool, String> + Send>;

/// A time the spool writer was stopped: since when, why, and what waits.
struct Outage {
    since_ns: i64,
    error: String,
    held: VecDeque<Msg>,
    dropped: u64,
    tried: Instant,
}

impl Outage {
    fn hold(&mut self, m: Msg) {
        if self.held.len() < HELD_MAX {
            self.held.push_back(m);
        } else {
            self.dropped += 1;
        }
    }
}

fn report(e: &dyn std::fmt::Display) {
    tracing::error!(error = %e, "own log: {e}");
}

/// Appends one queued message (not a close).
fn append(spool: &mut Spool, m: &Msg) -> Result<(), wormlog_spool::SpoolError> {
    match m {
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
        Msg::Alert(code, detail) => spool.append_alert(*code, detail).map(|_| ()),
        Msg::Close(_) => Ok(()),
    }
}

/// The gap record for an outage, then what it held. Err: the spool
/// stopped again (what is left stays held).
fn catch_up(spool: &mut Spool, o: &mut Outage) -> Result<(), String> {
    let now = wormlog_spool::clock::wall_ns();
    let detail = format!(
        "the collector's own log could not write from {} to {} ({}); the {} messages that arrived meanwhile or were not yet durable follow this record{}",
        wormlog_spool::clock::rfc3339(o.since_ns),
        wormlog_spool::clock::rfc3339(now),
        o.error,
        o.held.len(),
        match o.dropped {
            0 => String::new(),
            n => format!("; {n} more could not be held and are lost"),
        }
    );
    tracing::warn!("own log: {detail}");
    spool
        .append_gap(
            "collector",
            &Position::None,
            GapReason::Other,
            0,
            o.dropped,
            &detail,
            now,
        )
        .map_err(|e| e.to_string())?;
    o.dropped = 0;
    for m in &o.held {
        append(spool, m).map_err(|e| e.to_string())?;
    }
    spool.sync().map_err(|e| e.to_string())?;
    o.held.clear();
    Ok(())
}

/// The thread that owns the spool: writes what is queued (one sync for all
/// of it) and keeps heartbeats, checkpoints and epochs on time; opens the
/// spool again when its writer stopped.
fn writer(spool: Spool, reopen: Reopen, rx: &mpsc::Receiver<Msg>) {
    let mut w = Writer {
        spool: Some(spool),
        reopen,
        outage: None,
        unsynced: Vec::new(),
    };
    loop {
        let wait = match (&w.spool, &w.outage) {
            (Some(s), None) => s
                .next_deadline()
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(5)),
            _ => RETRY / 4,
        };
        let mut batch: Vec<Msg> = match rx.recv_timeout(wait) {
            Ok(m) => vec![m],
            Err(RecvTimeoutError::Timeout) => Vec::new(),
            Err(RecvTimeoutError::Disconnected) => return,
        };
        batch.extend(rx.try_iter());
        let done = if w.outage.is_some() {
            w.retry(batch)
        } else {
            w.write(batch)
        };
        if done {
            return;
        }
    }
}

struct Writer {
    /// None only while it is being opened again.
    spool: Option<Spool>,
    reopen: Reopen,
    outage: Option<Outage>,
    /// Appended since the last durable sync: held again if the writer stops.
    unsynced: Vec<Msg>,
}

impl Writer {
    /// Appends `batch`, makes it durable and does what is due; true once
    /// closed. A writer that stops begins an outage.
    fn write(&mut self, batch: Vec<Msg>) -> bool {
        let Some(s) = self.spool.as_mut() else {
            return true;
        };
        let mut failed: Option<String> = None;
        for m in batch {
            if let Msg::Close(reason) = &m {
                if let Err(e) = self.spool.take().expect("open").close(reason) {
                    report(&e);
                }
                return true;
            }
            match append(s, &m) {
                Ok(()) => self.unsynced.push(m),
                Err(e) => {
                    report(&e);
                    if s.is_stopped() {
                        failed = Some(e.to_string());
                        self.unsynced.push(m);
                    }
                }
            }
        }
        if failed.is_none() && !self.unsynced.is_empty() {
            match s.sync() {
                Ok(_) => self.unsynced.clear(),
                Err(e) if s.is_stopped() => {
                    report(&e);
                    failed = Some(e.to_string());
                }
                Err(e) => {
                    // Written again by the spool's own recovery.
                    report(&e);
                    self.unsynced.clear();
                }
            }
        }
        if failed.is_none()
            && let Err(e) = s.tick()
        {
            report(&e);
            failed = Some(e.to_string());
        }
        if let Some(error) = failed.filter(|_| s.is_stopped()) {
            self.outage = Some(Outage {
                since_ns: wormlog_spool::clock::wall_ns(),
                error,
                held: self.unsynced.drain(..).collect(),
                dropped: 0,
                tried: Instant::now(),
            });
        }
        false
    }

    /// During an outage: holds `batch`, and every `RETRY` (or at a close)
    /// opens the spool again and catches up; true once closed.
    fn retry(&mut self, batch: Vec<Msg>) -> bool {
        let o = self.outage.as_mut().expect("an outage");
        let mut close = None;
        for m in batch {
            match m {
                Msg::Close(r) => close = Some(r),
                m => o.hold(m),
            }
        }
        if close.is_none() && o.tried.elapsed() < RETRY {
            return false;
        }
        o.tried = Instant::now();
        drop(self.spool.take());
        match (self.reopen)() {
            Ok(mut s) => match catch_up(&mut s, o) {
                Ok(()) => {
                    self.outage = None;
                    self.spool = Some(s);
                }
                Err(e) => {
                    report(&e);
                    o.error = e;
                }
            },
            Err(e) if close.is_some() => report(&format!(
                "closing while the own log cannot write ({e}): {} messages are not in the collector's chain",
                o.held.len() as u64 + o.dropped
            )),
            Err(_) => {}
        }
        match close {
            Some(reason) if self.outage.is_none() => self.write(vec![Msg::Close(reason)]),
            Some(_) => true,
            None => false,
        }
    }
}
