//! The forwarder: sends the spool to the collector, in order, from the spool
//! itself (the spool is the queue), and appends the collector's receipts to
//! the chain.
//!
//! Delivery is at least once; the collector is idempotent per (agent,
//! sequence number), so the result is exactly once. Where to start after a
//! restart comes from the chain: the newest receipt's tree size (the
//! `@forward` position). If the collector holds more, its 409 answer names
//! the sequence number it expects and the forwarder skips ahead; if it holds
//! less, the same answer makes it go back.
//!
//! Transient failures (network, TLS, timeouts, 5xx, 429, 408, 401/403) are
//! retried forever with exponential backoff and full jitter, honouring
//! `Retry-After`; nothing is dropped — the spool keeps every record. A fork,
//! an invalid record or a malformed request (409 fork, 422, 400) stops
//! forwarding, loudly: a log line, an alert record in the chain (code 5);
//! spooling goes on (docs/FORMAT.md §10.2).

mod body;
mod client;
mod prefetch;

use crate::config::ForwardSection;
use crate::sources::{Event, Shutdown};
use client::{Answer, Client};
use prefetch::{ReadAhead, Settings};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wormlog_spool::chain::Receipt;
use wormlog_spool::keys::parse_pubkey;
use wormlog_spool::reader::Span;
use wormlog_spool::record::AlertCode;
use wormlog_spool::writer::DurableSeq;

/// The writer's channel, taken away at shutdown so that the writer can stop
/// while a request is still out.
pub type WriterLink = Arc<Mutex<Option<crossbeam_channel::Sender<Event>>>>;

#[derive(Debug)]
pub struct Forwarder {
    pub cfg: ForwardSection,
    pub agent_id: String,
    pub spool_dir: std::path::PathBuf,
    /// The writer's durable end: only records below it are sent.
    pub durable: Arc<DurableSeq>,
    /// Where to start: the tree size of the newest receipt in the chain.
    pub start: u64,
    pub link: WriterLink,
    pub shutdown: Arc<Shutdown>,
}

impl Forwarder {
    fn to_writer(&self, ev: Event) {
        let tx = self.link.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(tx) = tx {
            let _ = tx.send(ev);
        }
    }

    fn alert(&self, detail: String) {
        tracing::error!("forward: {detail}");
        self.alert_record(detail);
    }

    /// An alert about the record at `seq` (the collector's answer to it).
    fn alert_at(&self, seq: u64, status: Option<u16>, detail: String) {
        match status {
            Some(status) => {
                tracing::error!(seq, status, "forward: {detail}");
            }
            None => tracing::error!(seq, "forward: {detail}"),
        }
        self.alert_record(detail);
    }

    fn alert_record(&self, detail: String) {
        self.to_writer(Event::Alert {
            code: AlertCode::ForwardRefused,
            detail,
        });
    }

    pub fn run(self) {
        let mut client = match Client::new(&self.cfg, &self.agent_id) {
            Ok(c) => c,
            Err(e) => {
                self.alert(format!("cannot set up the connection to {}: {e:#}; forwarding stopped, spooling goes on", self.cfg.targets().join(", ")));
                return;
            }
        };
        tracing::info!(
            url = %client.url(),
            seq = self.start,
            "forwarding to {} from seq {}",
            self.cfg.targets().join(", "), self.start
        );
        let mut ahead = match ReadAhead::start(Settings {
            spool_dir: self.spool_dir.clone(),
            durable: self.durable.clone(),
            shutdown: self.shutdown.clone(),
            start: self.start,
            max_records: self.cfg.batch_records,
            max_bytes: self.cfg.batch_bytes.0 as usize,
            zstd: self.cfg.zstd(),
        }) {
            Ok(a) => a,
            Err(e) => {
                self.alert(format!(
                    "cannot start the read-ahead thread: {e}; forwarding stopped"
                ));
                return;
            }
        };
        let mut last_receipt = self.start;
        let mut backoff = Backoff::new(self.cfg.backoff_min.0, self.cfg.backoff_max.0);
        let mut failing_since: Option<Instant> = None;
        // Transient failures in a row (a full round of the collectors
        // before each backoff step).
        let mut tried = 0usize;
        // The last failure logged, and when: a failure is logged when it
        // starts, when its cause changes, and at least once a minute while
        // it lasts.
        let mut last_logged: Option<(Instant, String)> = None;
        let metrics = crate::metrics::get();
        crate::metrics::set(&metrics.forward_acknowledged_seq, last_receipt);
        while !self.shutdown.is_set() {
            let (b, body) = match ahead.next(Duration::from_millis(500)) {
                Ok(None) => continue,
                Ok(Some(batch)) => batch,
                // At shutdown the read-ahead thread stops first: that is
                // not a failure.
                Err(_) if self.shutdown.is_set() => return,
                Err(e) => {
                    self.alert(format!("{e}; forwarding stopped"));
                    return;
                }
            };
            let sent_at = Instant::now();
            match client.send(&b, body, self.durable.get()) {
                Answer::Accepted { next_seq, receipts } => {
                    metrics.forward_records.inc_by(b.records);
                    last_logged = None;
                    if let Some(since) = failing_since.take() {
                        tracing::info!(
                            url = %client.url(),
                            "forward: delivered again after {:.1}s of failures",
                            since.elapsed().as_secs_f64()
                        );
                    }
                    backoff.reset();
                    tried = 0;
                    for r in receipts {
                        if r.tree_size <= last_receipt {
                            continue; // already in the chain
                        }
                        match self.check_receipt(&b, &r) {
                            Ok(()) => {
                                last_receipt = r.tree_size;
                                crate::metrics::set(
                                    &metrics.forward_acknowledged_seq,
                                    last_receipt,
                                );
                                self.to_writer(Event::Receipt(Box::new(r)));
                            }
                            Err(why) => tracing::warn!(
                                url = %client.url(),
                                seq = r.tree_size,
                                "forward: receipt for tree size {} not kept: {why}",
                                r.tree_size
                            ),
                        }
                    }
                    if next_seq > b.end_seq() {
                        // The collector holds more than this batch: skip.
                        ahead.seek(next_seq);
                    }
                }
                Answer::Gap { expected_seq } => {
                    let durable = self.durable.get();
                    if expected_seq > durable {
                        self.alert_at(expected_seq, None, format!(
                            "the collector expects seq {expected_seq} but the spool ends at {durable}: it holds records this spool does not (a different spool under the same agent id?); forwarding stopped"
                        ));
                        return;
                    }
                    tracing::info!(
                        url = %client.url(),
                        seq = expected_seq,
                        "forward: collector expects seq {expected_seq} (sent {}); resending from there",
                        b.first_seq
                    );
                    ahead.seek(expected_seq);
                }
                Answer::Refused { status, body } => {
                    let what = if status == 400 {
                        "a request it cannot read (a malformed batch)"
                    } else {
                        "a rewritten spool or a bad record"
                    };
                    self.alert_at(b.first_seq, Some(status), format!(
                        "the collector refused the chain at seq {} (HTTP {status}: {body}); forwarding stopped, spooling goes on — investigate: {what}",
                        b.first_seq
                    ));
                    return;
                }
                Answer::TooLarge if b.records == 1 => {
                    self.alert_at(b.first_seq, None, format!(
                        "record {} ({} bytes) is larger than the collector accepts (its max_batch_bytes); forwarding stopped, spooling goes on",
                        b.first_seq, b.len
                    ));
                    return;
                }
                Answer::TooLarge => {
                    let max_records = (b.records / 2).max(1);
                    tracing::warn!(
                        url = %client.url(),
                        seq = b.first_seq,
                        "forward: batch too large for the collector; now at most {max_records} records"
                    );
                    ahead.shrink(max_records, b.first_seq);
                }
                Answer::Transient { what, retry_after } => {
                    metrics.forward_retries.inc();
                    // The failure began when the failed attempt did (a
                    // timeout is seconds long).
                    let since = *failing_since.get_or_insert(sent_at);
                    let failed_at = client.url().to_owned();
                    // With several collectors, the next one is tried at
                    // once; the backoff runs once every one has failed.
                    let mut wait = if client.targets() > 1 {
                        client.fail_over();
                        metrics.forward_failovers.inc();
                        tried += 1;
                        if tried.is_multiple_of(client.targets()) {
                            backoff.next()
                        } else {
                            Duration::from_millis(10)
                        }
                    } else {
                        backoff.next()
                    };
                    if let Some(ra) = retry_after
                        && client.targets() == 1
                    {
                        wait = wait.max(ra);
                    }
                    let what = if client.targets() > 1 {
                        format!("{failed_at}: {what}; now trying {}", client.url())
                    } else {
                        what
                    };
                    let due = last_logged.as_ref().is_none_or(|(at, w)| {
                        at.elapsed() >= Duration::from_secs(60) || *w != what
                    });
                    if due {
                        tracing::warn!(
                            url = %client.url(),
                            seq = b.first_seq,
                            attempt = backoff.attempts,
                            "forward: {what} (attempt {}, failing for {:.0}s); retrying in {:.1}s; records stay in the spool",
                            backoff.attempts,
                            since.elapsed().as_secs_f64(),
                            wait.as_secs_f64()
                        );
                        last_logged = Some((Instant::now(), what));
                    }
                    // The body is gone: the batch is read from the spool
                    // again.
                    ahead.seek(b.first_seq);
                    if self.shutdown.wait(wait) {
                        return;
                    }
                }
            }
        }
    }

    /// A receipt goes into the chain only if it names a checkpoint this batch
    /// carried, with its root, and its signature holds (under the pinned
    /// collector key when one is configured). Otherwise the chain would fail
    /// verification.
    fn check_receipt(&self, b: &Span, r: &Receipt) -> Result<(), String> {
        if b.checkpoints
            .iter()
            .all(|(size, root)| (*size, root) != (r.tree_size, &r.root))
        {
            return Err("it names no checkpoint of the batch".into());
        }
        let keys = self.cfg.receipt_keys();
        if !keys.is_empty()
            && !keys
                .iter()
                .any(|k| parse_pubkey(k).ok() == Some(r.collector_pubkey))
        {
            return Err("signed by a key other than collector_pubkey(s)".into());
        }
        if !r.signature_valid(&self.agent_id) {
            return Err("bad signature".into());
        }
        Ok(())
    }
}

/// Exponential backoff (from backon) with full jitter: each wait is uniform
/// in [0, d] where d doubles from `min` up to `max`.
#[derive(Debug)]
struct Backoff {
    min: Duration,
    max: Duration,
    inner: backon::ExponentialBackoff,
    attempts: u32,
}

impl Backoff {
    fn new(min: Duration, max: Duration) -> Self {
        Backoff {
            min,
            max,
            inner: Self::build(min, max),
            attempts: 0,
        }
    }

    fn build(min: Duration, max: Duration) -> backon::ExponentialBackoff {
        use backon::BackoffBuilder;
        backon::ExponentialBuilder::default()
            .with_min_delay(min)
            .with_max_delay(max)
            .with_factor(2.0)
            .without_max_times()
            .build()
    }

    fn reset(&mut self) {
        self.inner = Self::build(self.min, self.max);
        self.attempts = 0;
    }

    fn next(&mut self) -> Duration {
        self.attempts += 1;
        let d = self.inner.next().unwrap_or(self.max);
        let mut r = [0u8; 8];
        let _ = rustix::rand::getrandom(&mut r, rustix::rand::GetRandomFlags::empty());
        let frac = (u64::from_le_bytes(r) >> 11) as f64 / (1u64 << 53) as f64;
        // Full jitter, but never a busy loop.
        d.mul_f64(frac).max(Duration::from_millis(10))
    }
}
