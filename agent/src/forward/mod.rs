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
//! Up to `in_flight` requests are out at once, each on its own connection;
//! their answers are taken in the order they were sent. An answer other
//! than 200 gives up the requests behind it, and what they carried is read
//! from the spool again (docs/FORMAT.md §10.2, "Several batches in flight").
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
use client::{Answer, Client, Pending};
use prefetch::{ReadAhead, Settings};
use std::collections::VecDeque;
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
        let mut st = State::new(self.start, &self.cfg);
        crate::metrics::set(&crate::metrics::get().forward_acknowledged_seq, self.start);
        // The requests out, oldest first; their answers are taken in that
        // order.
        let mut out: VecDeque<Out> = VecDeque::new();
        while !self.shutdown.is_set() {
            if out.is_empty() {
                match ahead.next(Duration::from_millis(500)) {
                    Ok(None) => {}
                    Ok(Some((b, body))) => self.send(&mut client, &mut out, b, body),
                    // At shutdown the read-ahead thread stops first: that
                    // is not a failure.
                    Err(_) if self.shutdown.is_set() => return,
                    Err(e) => return self.alert(format!("{e}; forwarding stopped")),
                }
                continue;
            }
            // With room for another request, the next batch is sent as
            // soon as it is ready, before the oldest answer.
            let room = out.len() < st.in_flight(self.cfg.in_flight);
            let Some(answer) = client.wait(&mut out[0].pending, room.then(|| ahead.ready())) else {
                match ahead.try_next() {
                    Ok(None) => {}
                    Ok(Some((b, body))) => self.send(&mut client, &mut out, b, body),
                    Err(_) if self.shutdown.is_set() => return,
                    Err(e) => return self.alert(format!("{e}; forwarding stopped")),
                }
                continue;
            };
            let sent = out.pop_front().expect("a request out");
            if !self.on_answer(&mut st, &mut client, &mut ahead, &mut out, sent, answer) {
                return;
            }
        }
    }

    /// Starts sending batch `b`.
    fn send(&self, client: &mut Client, out: &mut VecDeque<Out>, b: Span, body: bytes::Bytes) {
        let pending = client.start(&b, body, self.durable.get());
        out.push_back(Out {
            behind: !out.is_empty(),
            span: b,
            pending,
            sent_at: Instant::now(),
        });
    }

    /// Acts on the answer to the oldest request out; false when forwarding
    /// stops.
    fn on_answer(
        &self,
        st: &mut State,
        client: &mut Client,
        ahead: &mut ReadAhead,
        out: &mut VecDeque<Out>,
        sent: Out,
        answer: Answer,
    ) -> bool {
        let b = &sent.span;
        if !matches!(answer, Answer::Accepted { .. }) {
            // The client closed its connections, and the later requests
            // with them: they are read again from the spool.
            let ends = out.drain(..).map(|o| o.span.end_seq());
            st.given_up_end = ends.fold(st.given_up_end.max(b.end_seq()), u64::max);
        }
        match answer {
            Answer::Accepted { next_seq, receipts } => {
                self.accepted(st, client, b, receipts);
                // The collector holds more than this batch. When that is
                // what this run sent and gave up (stored, but the answers
                // not taken), it is sent on: the collector answers it as a
                // replay, with its receipts. Otherwise (a restart after
                // answers were lost) it is skipped, and the requests out
                // behind this one are given up.
                if next_seq > b.end_seq() && st.given_up_end <= b.end_seq() {
                    for o in out.drain(..) {
                        o.pending.abort();
                    }
                    ahead.seek(next_seq);
                }
                true
            }
            Answer::Gap { expected_seq } if sent.behind && expected_seq < b.first_seq => {
                // Sent before the answer to the batch before it, and read
                // by a collector that had not stored that one yet (one
                // that does not wait for it, or whose requests arrived out
                // of order): sent again on its own.
                st.one_at_a_time = ONE_AT_A_TIME_AFTER_REORDER;
                tracing::info!(
                    url = %client.url(),
                    seq = b.first_seq,
                    "forward: the collector read batch {} before the one it follows; sending it again, and the next {ONE_AT_A_TIME_AFTER_REORDER} batches one at a time",
                    b.first_seq
                );
                ahead.seek(b.first_seq);
                true
            }
            Answer::Gap { expected_seq } => self.gap(client, ahead, b, expected_seq),
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
                false
            }
            Answer::TooLarge if b.records == 1 => {
                self.alert_at(b.first_seq, None, format!(
                    "record {} ({} bytes) is larger than the collector accepts (its max_batch_bytes); forwarding stopped, spooling goes on",
                    b.first_seq, b.len
                ));
                false
            }
            Answer::TooLarge => {
                let max_records = (b.records / 2).max(1);
                tracing::warn!(
                    url = %client.url(),
                    seq = b.first_seq,
                    "forward: batch too large for the collector; now at most {max_records} records"
                );
                ahead.shrink(max_records, b.first_seq);
                true
            }
            Answer::Transient { what, retry_after } => {
                let wait = st.failed(client, &sent, what, retry_after);
                // The body is gone: the batch is read from the spool
                // again.
                ahead.seek(b.first_seq);
                !self.shutdown.wait(wait)
            }
        }
    }

    /// Batch `b` is stored: its receipts go into the chain.
    fn accepted(&self, st: &mut State, client: &Client, b: &Span, receipts: Vec<Receipt>) {
        let metrics = crate::metrics::get();
        metrics.forward_records.inc_by(b.records);
        st.last_logged = None;
        if let Some(since) = st.failing_since.take() {
            tracing::info!(
                url = %client.url(),
                "forward: delivered again after {:.1}s of failures",
                since.elapsed().as_secs_f64()
            );
        }
        st.backoff.reset();
        st.tried = 0;
        st.one_at_a_time = st.one_at_a_time.saturating_sub(1);
        for r in receipts {
            if r.tree_size <= st.last_receipt {
                continue; // already in the chain
            }
            match self.check_receipt(b, &r) {
                Ok(()) => {
                    st.last_receipt = r.tree_size;
                    crate::metrics::set(&metrics.forward_acknowledged_seq, st.last_receipt);
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
    }

    /// The collector expects `expected_seq`: send from there, unless the
    /// spool does not reach it. False when forwarding stops.
    fn gap(&self, client: &Client, ahead: &mut ReadAhead, b: &Span, expected_seq: u64) -> bool {
        let durable = self.durable.get();
        if expected_seq > durable {
            self.alert_at(expected_seq, None, format!(
                "the collector expects seq {expected_seq} but the spool ends at {durable}: it holds records this spool does not (a different spool under the same agent id?); forwarding stopped"
            ));
            return false;
        }
        tracing::info!(
            url = %client.url(),
            seq = expected_seq,
            "forward: collector expects seq {expected_seq} (sent {}); resending from there",
            b.first_seq
        );
        ahead.seek(expected_seq);
        true
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

/// A request out.
#[derive(Debug)]
struct Out {
    span: Span,
    pending: Pending,
    sent_at: Instant,
    /// Sent while an earlier request was still out.
    behind: bool,
}

/// What the forwarder keeps between answers.
#[derive(Debug)]
struct State {
    /// The tree size of the newest receipt in the chain.
    last_receipt: u64,
    backoff: Backoff,
    failing_since: Option<Instant>,
    /// Transient failures in a row (a full round of the collectors before
    /// each backoff step).
    tried: usize,
    /// The last failure logged, and when: a failure is logged when it
    /// starts, when its cause changes, and at least once a minute while it
    /// lasts.
    last_logged: Option<(Instant, String)>,
    /// The end of the requests given up after a failure (the collector
    /// may have stored them): up to there, records the collector holds
    /// already are sent again for their receipts, not skipped.
    given_up_end: u64,
    /// Batches still to send one at a time, after a collector read a batch
    /// before the one it follows (one that does not make it wait).
    one_at_a_time: u32,
}

/// How many batches go one at a time after a collector read a batch before
/// the one it follows: a collector that does not make it wait would do so
/// again and again, and each time the batch is sent twice.
const ONE_AT_A_TIME_AFTER_REORDER: u32 = 100;

impl State {
    fn new(start: u64, cfg: &ForwardSection) -> State {
        State {
            last_receipt: start,
            backoff: Backoff::new(cfg.backoff_min.0, cfg.backoff_max.0),
            failing_since: None,
            tried: 0,
            last_logged: None,
            given_up_end: 0,
            one_at_a_time: 0,
        }
    }

    /// How many requests may be out now.
    fn in_flight(&self, configured: usize) -> usize {
        if self.one_at_a_time > 0 {
            1
        } else {
            configured
        }
    }

    /// A transient failure of `sent`: logged (see `last_logged`), the next
    /// collector chosen; how long to wait before sending again.
    fn failed(
        &mut self,
        client: &mut Client,
        sent: &Out,
        what: String,
        retry_after: Option<Duration>,
    ) -> Duration {
        crate::metrics::get().forward_retries.inc();
        // The failure began when the failed attempt did (a timeout is
        // seconds long).
        let since = *self.failing_since.get_or_insert(sent.sent_at);
        let failed_at = client.url().to_owned();
        // With several collectors, the next one is tried at once; the
        // backoff runs once every one has failed.
        let mut wait = if client.targets() > 1 {
            client.fail_over();
            crate::metrics::get().forward_failovers.inc();
            self.tried += 1;
            if self.tried.is_multiple_of(client.targets()) {
                self.backoff.next()
            } else {
                Duration::from_millis(10)
            }
        } else {
            self.backoff.next()
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
        let due = self
            .last_logged
            .as_ref()
            .is_none_or(|(at, w)| at.elapsed() >= Duration::from_secs(60) || *w != what);
        if due {
            tracing::warn!(
                url = %client.url(),
                seq = sent.span.first_seq,
                attempt = self.backoff.attempts,
                "forward: {what} (attempt {}, failing for {:.0}s); retrying in {:.1}s; records stay in the spool",
                self.backoff.attempts,
                since.elapsed().as_secs_f64(),
                wait.as_secs_f64()
            );
            self.last_logged = Some((Instant::now(), what));
        }
        wait
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
