//! The agent's Prometheus metrics, and the small HTTP endpoint that serves
//! them (`[metrics] listen`): `GET /metrics` in the OpenMetrics text format.
//! One thread, one connection at a time, two seconds for a request — a
//! scrape endpoint, not a web server.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::OnceLock;
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
    /// The tree size of the newest receipt kept.
    pub forward_acknowledged_seq: Gauge,
    /// Messages a source could not keep (the kernel's UDP drops, by
    /// source): each is also a gap record.
    pub source_lost: Family<Vec<(&'static str, String)>, Counter>,
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
            forward_acknowledged_seq: Gauge::default(),
            source_lost: Family::default(),
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
            "forward_acknowledged_seq",
            "Tree size of the newest receipt in the chain",
            m.forward_acknowledged_seq.clone(),
        );
        r.register(
            "source_lost",
            "Messages a source could not keep (UDP datagrams the kernel dropped), by source",
            m.source_lost.clone(),
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
