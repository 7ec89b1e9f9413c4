//! The agent's Prometheus metrics, and the small HTTP endpoint that serves
//! them (`[metrics] listen`): `GET /metrics` in the OpenMetrics text format.
//! One thread, one connection at a time, two seconds for a request — a
//! scrape endpoint, not a web server.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Every metric of the agent.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Bytes the spool holds on disk (segments and key ledger).
    pub spool_disk_bytes: Gauge,
    pub spool_disk_budget_bytes: Gauge,
    /// 1 while the spool is full (sources held back or the agent halting).
    pub spool_full: Gauge,
    /// Times the spool passed its budget warning level.
    pub spool_budget_warnings: Counter,
    /// Times the spool became full.
    pub spool_full_events: Counter,
    pub spool_pruned_segments: Counter,
    pub spool_pruned_bytes: Counter,
    /// Records the collector accepted (from this run).
    pub forward_records: Counter,
    /// Failed attempts to deliver a batch.
    pub forward_retries: Counter,
    /// Moves to the next of several collectors after a failure.
    pub forward_failovers: Counter,
    /// The tree size of the newest receipt kept.
    pub forward_acknowledged_seq: Gauge,
    /// Messages a source could not keep (the kernel's UDP drops, by
    /// source): each is also a gap record.
    pub source_lost: Family<Labels, Counter>,
    /// Entries and their body bytes written, by source.
    pub source_entries: Family<Labels, Counter>,
    pub source_bytes: Family<Labels, Counter>,
    /// Gap records written, by source.
    pub source_gaps: Family<Labels, Counter>,
    /// When a source's last entry was written (Unix seconds).
    pub source_last_entry: Family<Labels, Gauge>,
    /// The chain: records, segment files, checkpoints, key epoch.
    pub spool_records: Gauge,
    pub spool_segments: Gauge,
    pub chain_checkpoints: Gauge,
    pub chain_epoch: Gauge,
    /// How long each group commit (write + fdatasync) took.
    pub spool_commit_seconds: Histogram,
    /// Records written but not yet acknowledged by the collector.
    pub forward_lag_records: Gauge,
    /// When the last receipt was written into the chain (Unix seconds).
    pub forward_last_receipt: Gauge,
    /// 1 for each source's current state, 0 for its other states.
    pub source_state: Family<Labels, Gauge>,
    /// What `wormlog status` shows of each source.
    pub sources: Mutex<BTreeMap<String, SourceStatus>>,
    /// Sequence numbers of the receipt records this run wrote.
    receipt_seqs: Mutex<Vec<u64>>,
}

type Labels = Vec<(&'static str, String)>;

/// Where a configured source stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SourceState {
    /// Configured; its thread has not reported yet.
    #[default]
    Starting,
    /// Has what it reads open (files, a journalctl) and follows it.
    Reading,
    /// A syslog source's socket is bound.
    Listening,
    /// Nothing it names exists (yet): no file matches its paths.
    WaitingForPath,
    /// It cannot read; the detail says why (it tries again, or the daemon
    /// stops).
    Failed,
}

impl SourceState {
    pub const ALL: [SourceState; 5] = [
        SourceState::Starting,
        SourceState::Reading,
        SourceState::Listening,
        SourceState::WaitingForPath,
        SourceState::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SourceState::Starting => "starting",
            SourceState::Reading => "reading",
            SourceState::Listening => "listening",
            SourceState::WaitingForPath => "waiting-for-path",
            SourceState::Failed => "failed",
        }
    }
}

/// A source as `wormlog status` shows it: every configured source, from
/// its start, whether or not it wrote anything.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SourceStatus {
    /// `file`, `journald`, `syslog` or `auditd`.
    pub kind: String,
    pub state: SourceState,
    /// Why it is in that state (what it waits for, why it failed).
    pub state_detail: String,
    /// Unix seconds since it is in that state.
    pub state_since: i64,
    pub entries: u64,
    pub bytes: u64,
    pub gaps: u64,
    /// Unix seconds of the last entry and of the last gap record (0: none).
    pub last_entry: i64,
    pub last_gap: i64,
    pub last_gap_detail: String,
}

fn source(name: &str) -> Labels {
    vec![("source", name.to_owned())]
}

fn now_secs() -> i64 {
    wormlog_spool::clock::wall_ns() / 1_000_000_000
}

/// The sources configured now, with their kinds: each is shown (in
/// `wormlog status` and the metrics) from now on, also while it writes
/// nothing; a source that is new or changed starts as `starting`, sources no
/// longer configured are dropped.
pub fn sources_configured(list: &[(&str, &'static str, bool)]) {
    let m = get();
    let now = now_secs();
    let mut s = m.sources.lock().unwrap_or_else(|p| p.into_inner());
    let gone: Vec<String> = s
        .keys()
        .filter(|k| !list.iter().any(|(n, _, _)| n == k))
        .cloned()
        .collect();
    for name in gone {
        s.remove(&name);
        for st in SourceState::ALL {
            m.source_state.remove(&state_labels(&name, st));
        }
    }
    for &(name, kind, restarted) in list {
        let l = source(name);
        // Shown at 0 before the first entry.
        let _ = m.source_entries.get_or_create(&l);
        let _ = m.source_bytes.get_or_create(&l);
        let _ = m.source_gaps.get_or_create(&l);
        let e = s.entry(name.to_owned()).or_default();
        e.kind = kind.to_owned();
        if restarted || e.state_since == 0 {
            set_state(m, name, e, SourceState::Starting, String::new(), now);
        }
    }
}

/// A source's state changed (`detail`: why; empty when it says nothing
/// more than the state).
pub fn source_state(name: &str, state: SourceState, detail: &str) {
    let m = get();
    let mut s = m.sources.lock().unwrap_or_else(|p| p.into_inner());
    // A source no longer configured (stopping after a reload) is not
    // brought back.
    if let Some(e) = s.get_mut(name) {
        set_state(
            m,
            name,
            e,
            state,
            detail.chars().take(300).collect(),
            now_secs(),
        );
    }
}

fn set_state(
    m: &Metrics,
    name: &str,
    e: &mut SourceStatus,
    state: SourceState,
    detail: String,
    now: i64,
) {
    if e.state != state || e.state_since == 0 {
        e.state_since = now;
    }
    e.state = state;
    e.state_detail = detail;
    for st in SourceState::ALL {
        m.source_state
            .get_or_create(&state_labels(name, st))
            .set(i64::from(st == state));
    }
}

fn state_labels(name: &str, st: SourceState) -> Labels {
    vec![
        ("source", name.to_owned()),
        ("state", st.as_str().to_owned()),
    ]
}

/// A source's entries were written.
pub fn source_wrote(name: &str, entries: u64, bytes: u64) {
    let m = get();
    let l = source(name);
    m.source_entries.get_or_create(&l).inc_by(entries);
    m.source_bytes.get_or_create(&l).inc_by(bytes);
    let now = now_secs();
    m.source_last_entry.get_or_create(&l).set(now);
    let mut s = m.sources.lock().unwrap_or_else(|p| p.into_inner());
    let e = s.entry(name.to_owned()).or_default();
    e.entries += entries;
    e.bytes += bytes;
    e.last_entry = now;
}

/// A source's gap record was written.
pub fn source_gap(name: &str, detail: &str) {
    let m = get();
    m.source_gaps.get_or_create(&source(name)).inc();
    let mut s = m.sources.lock().unwrap_or_else(|p| p.into_inner());
    let e = s.entry(name.to_owned()).or_default();
    e.gaps += 1;
    e.last_gap = now_secs();
    e.last_gap_detail = detail.chars().take(300).collect();
}

/// The writer's view after a turn.
pub fn spool_state(st: &wormlog_spool::writer::SpoolStats, segments: u64) {
    let m = get();
    set(&m.spool_records, st.next_seq);
    set(&m.spool_segments, segments);
    set(&m.chain_checkpoints, st.checkpoints);
    set(&m.chain_epoch, st.epoch);
    let acked = m.forward_acknowledged_seq.get().max(0) as u64;
    let receipts = m.receipt_seqs.lock().unwrap_or_else(|p| p.into_inner());
    set(
        &m.forward_lag_records,
        unacknowledged(st.next_seq, acked, &receipts),
    );
}

/// Records the collector has not yet acknowledged: those after the newest
/// receipt's tree size, except the checkpoint that receipt countersigned
/// (the record at the tree size: the collector had it to sign it) and the
/// receipts written since (the collector's own answers, which only the
/// next checkpoint can cover). An agent whose collector holds everything
/// is 0 behind, not the checkpoint and receipt that every exchange ends with.
pub fn unacknowledged(next_seq: u64, acked: u64, receipt_seqs: &[u64]) -> u64 {
    if next_seq <= acked {
        return 0;
    }
    let countersigned = u64::from(acked > 0);
    let receipts = receipt_seqs
        .iter()
        .filter(|&&r| r > acked && r < next_seq)
        .count() as u64;
    (next_seq - acked).saturating_sub(countersigned + receipts)
}

/// A receipt was written into the chain as record `seq`.
pub fn receipt_written(seq: u64) {
    let m = get();
    m.forward_last_receipt.set(now_secs());
    let acked = m.forward_acknowledged_seq.get().max(0) as u64;
    let mut r = m.receipt_seqs.lock().unwrap_or_else(|p| p.into_inner());
    r.retain(|&s| s > acked);
    r.push(seq);
}

pub fn get() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(|| {
        let mut registry = Registry::with_prefix("wormlog");
        let m = Metrics {
            registry: Registry::default(),
            spool_disk_bytes: Gauge::default(),
            spool_disk_budget_bytes: Gauge::default(),
            spool_full: Gauge::default(),
            spool_budget_warnings: Counter::default(),
            spool_full_events: Counter::default(),
            spool_pruned_segments: Counter::default(),
            spool_pruned_bytes: Counter::default(),
            forward_records: Counter::default(),
            forward_retries: Counter::default(),
            forward_failovers: Counter::default(),
            forward_acknowledged_seq: Gauge::default(),
            source_lost: Family::default(),
            source_entries: Family::default(),
            source_bytes: Family::default(),
            source_gaps: Family::default(),
            source_last_entry: Family::default(),
            spool_records: Gauge::default(),
            spool_segments: Gauge::default(),
            chain_checkpoints: Gauge::default(),
            chain_epoch: Gauge::default(),
            spool_commit_seconds: Histogram::new(exponential_buckets(0.000_1, 2.0, 16)),
            forward_lag_records: Gauge::default(),
            forward_last_receipt: Gauge::default(),
            source_state: Family::default(),
            sources: Mutex::new(BTreeMap::new()),
            receipt_seqs: Mutex::new(Vec::new()),
        };
        let r = &mut registry;
        r.register(
            "spool_disk_bytes",
            "Bytes the spool holds on disk",
            m.spool_disk_bytes.clone(),
        );
        r.register(
            "spool_disk_budget_bytes",
            "The spool's disk budget ([spool] disk_budget)",
            m.spool_disk_budget_bytes.clone(),
        );
        r.register(
            "spool_full",
            "1 while the spool is full (budget or min_free reached)",
            m.spool_full.clone(),
        );
        r.register(
            "spool_budget_warnings",
            "Times the spool passed [spool] budget_warning",
            m.spool_budget_warnings.clone(),
        );
        r.register(
            "spool_full_events",
            "Times the spool became full",
            m.spool_full_events.clone(),
        );
        r.register(
            "spool_pruned_segments",
            "Acknowledged segments removed",
            m.spool_pruned_segments.clone(),
        );
        r.register(
            "spool_pruned_bytes",
            "Bytes of acknowledged segments removed",
            m.spool_pruned_bytes.clone(),
        );
        r.register(
            "forward_records",
            "Records the collector accepted",
            m.forward_records.clone(),
        );
        r.register(
            "forward_retries",
            "Failed attempts to deliver a batch (each is retried)",
            m.forward_retries.clone(),
        );
        r.register(
            "forward_failovers",
            "Moves to the next collector of [forward] urls after a failed attempt",
            m.forward_failovers.clone(),
        );
        r.register(
            "forward_acknowledged_seq",
            "Tree size of the newest receipt in the chain",
            m.forward_acknowledged_seq.clone(),
        );
        r.register(
            "source_entries",
            "Entries written into the chain, by source",
            m.source_entries.clone(),
        );
        r.register(
            "source_bytes",
            "Bytes of entry bodies written, by source",
            m.source_bytes.clone(),
        );
        r.register(
            "source_gaps",
            "Gap records written (something could not be read), by source",
            m.source_gaps.clone(),
        );
        r.register(
            "source_last_entry_timestamp_seconds",
            "When a source's last entry was written",
            m.source_last_entry.clone(),
        );
        r.register(
            "spool_records",
            "Records in the chain",
            m.spool_records.clone(),
        );
        r.register(
            "spool_segments",
            "Segment files in the spool",
            m.spool_segments.clone(),
        );
        r.register(
            "chain_checkpoints",
            "Signed checkpoints written by this process",
            m.chain_checkpoints.clone(),
        );
        r.register(
            "chain_epoch",
            "The signing key's epoch",
            m.chain_epoch.clone(),
        );
        r.register(
            "spool_commit_seconds",
            "Time of one group commit (write and fdatasync)",
            m.spool_commit_seconds.clone(),
        );
        r.register(
            "forward_lag_records",
            "Records not yet acknowledged by the collector",
            m.forward_lag_records.clone(),
        );
        r.register(
            "forward_last_receipt_timestamp_seconds",
            "When the last receipt was written into the chain",
            m.forward_last_receipt.clone(),
        );
        r.register(
            "source_lost",
            "Records lost where a gap record counts them (UDP datagrams the kernel dropped, audit events, journal entries, messages not written at a stop), by source",
            m.source_lost.clone(),
        );
        r.register(
            "source_state",
            "1 for the state each configured source is in (starting, reading, listening, waiting-for-path, failed), 0 for the others",
            m.source_state.clone(),
        );
        Metrics { registry, ..m }
    })
}

/// Sets a gauge from a byte count or sequence number.
pub fn set(g: &Gauge, v: u64) {
    g.set(i64::try_from(v).unwrap_or(i64::MAX));
}

/// The text exposition format.
pub fn render() -> String {
    let mut out = String::new();
    encode(&mut out, &get().registry).expect("writing to a String");
    out
}

/// Binds `addr` and serves `/metrics` on a thread of its own.
pub fn serve(addr: SocketAddr) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let local = listener.local_addr()?;
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            for conn in listener.incoming() {
                match conn {
                    Ok(c) => {
                        let _ = answer(c);
                    }
                    // E.g. out of file descriptors: do not spin.
                    Err(_) => std::thread::sleep(Duration::from_millis(100)),
                }
            }
        })?;
    Ok(local)
}

/// A client gets this long for its whole request.
const REQUEST_TIME: Duration = Duration::from_secs(2);
const REQUEST_BYTES: usize = 16 << 10;

fn answer(mut conn: TcpStream) -> std::io::Result<()> {
    // Read the request head within REQUEST_TIME in all (a client that
    // trickles bytes cannot hold the one serving thread).
    let deadline = Instant::now() + REQUEST_TIME;
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || head.len() > REQUEST_BYTES {
            return Ok(());
        }
        conn.set_read_timeout(Some(left))?;
        match conn.read(&mut buf)? {
            0 => break,
            n => head.extend_from_slice(&buf[..n]),
        }
    }
    conn.set_write_timeout(Some(REQUEST_TIME))?;
    let request = String::from_utf8_lossy(&head);
    let mut parts = request.split_whitespace();
    let (status, kind, body) = match (parts.next(), parts.next()) {
        (Some("GET"), Some("/metrics")) => (
            "200 OK",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            render(),
        ),
        (Some("GET"), _) => ("404 Not Found", "text/plain", "not found\n".into()),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            "GET /metrics\n".into(),
        ),
    };
    write!(
        conn,
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    conn.flush()
}

#[cfg(test)]
mod tests {
    use super::unacknowledged;

    #[test]
    fn a_collector_holding_everything_leaves_nothing_unacknowledged() {
        // Nothing acknowledged yet: every record waits.
        assert_eq!(unacknowledged(5, 0, &[]), 5);
        // Checkpoint at seq 10 (tree size 10) countersigned, its receipt
        // at 11: the exchange's own two records are not "behind".
        assert_eq!(unacknowledged(12, 10, &[11]), 0);
        // Two receipts after it (a batch with two checkpoints).
        assert_eq!(unacknowledged(13, 10, &[11, 12]), 0);
        // Entries written since are.
        assert_eq!(unacknowledged(15, 10, &[11]), 3);
        // Receipts for older tree sizes do not count.
        assert_eq!(unacknowledged(15, 10, &[4, 11]), 3);
        assert_eq!(unacknowledged(10, 10, &[]), 0);
        assert_eq!(unacknowledged(3, 10, &[]), 0);
    }
}
