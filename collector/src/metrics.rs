//! Prometheus metrics of the collector (`GET /metrics`).

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::OnceLock;
use std::time::Duration;

type Labels = Vec<(&'static str, String)>;

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Batches of registered agents by result (accepted, gap, fork, invalid,
    /// malformed, too_large, busy, timeout, error).
    pub batches: Family<Labels, Counter>,
    pub records: Family<Labels, Counter>,
    pub bytes: Family<Labels, Counter>,
    pub receipts: Family<Labels, Counter>,
    pub forks: Family<Labels, Counter>,
    pub next_seq: Family<Labels, Gauge>,
    pub fsync: Histogram,
    /// Batches that arrived before an earlier request of the same agent
    /// was stored and waited for it.
    pub batches_waited: Counter,
    /// Requests and connections refused before any agent was known, by
    /// reason (a fixed set: never a label from the request).
    pub refused: Family<Labels, Counter>,
    pub connections: Gauge,
    pub ingest_bytes: Gauge,
    /// Forks claimed that no checkpoint of the agent proves, by agent.
    pub unproven_forks: Family<Labels, Counter>,
    /// Unacknowledged crash leftovers the store cut or removed, by agent.
    pub store_repairs: Family<Labels, Counter>,
    /// S3 backend: range objects written (by result: claimed, lost_race),
    /// failures, records pulled from other collectors' objects, and the
    /// time of a write (object and claim).
    pub s3_writes: Family<Labels, Counter>,
    pub s3_write_bytes: Counter,
    pub s3_failures: Counter,
    pub s3_pulled_records: Counter,
    pub s3_write_seconds: Histogram,
    /// Kept objects found written again over (their first version read).
    pub s3_overwritten: Counter,
    /// The scheduled verification: failures found (by agent), agents
    /// failing in the last pass, records and bytes checked, the end of the
    /// last whole pass.
    pub verify_failures: Family<Labels, Counter>,
    pub verify_failed_agents: Gauge,
    pub verify_records: Counter,
    pub verify_bytes: Counter,
    pub verify_last_pass: Gauge,
    /// Checkpoints another collector published that the chain this one
    /// verified does not hold (by agent and collector).
    pub witness_conflicts: Family<Labels, Counter>,
}

pub fn get() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(|| {
        let mut registry = Registry::with_prefix("wormlog_collector");
        let m = Metrics {
            registry: Registry::default(),
            batches: Family::default(),
            records: Family::default(),
            bytes: Family::default(),
            receipts: Family::default(),
            forks: Family::default(),
            next_seq: Family::default(),
            fsync: Histogram::new(exponential_buckets(0.000_05, 2.0, 16)),
            batches_waited: Counter::default(),
            refused: Family::default(),
            connections: Gauge::default(),
            ingest_bytes: Gauge::default(),
            unproven_forks: Family::default(),
            store_repairs: Family::default(),
            s3_writes: Family::default(),
            s3_write_bytes: Counter::default(),
            s3_failures: Counter::default(),
            s3_pulled_records: Counter::default(),
            s3_write_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 14)),
            s3_overwritten: Counter::default(),
            verify_failures: Family::default(),
            verify_failed_agents: Gauge::default(),
            verify_records: Counter::default(),
            verify_bytes: Counter::default(),
            verify_last_pass: Gauge::default(),
            witness_conflicts: Family::default(),
        };
        registry.register(
            "store_repairs",
            "Unacknowledged leftovers of a crash or a failed write cut from or removed from an agent's store when it was opened or reloaded",
            m.store_repairs.clone(),
        );
        registry.register(
            "batches",
            "Batches received, by agent and result",
            m.batches.clone(),
        );
        registry.register("records", "Records stored, by agent", m.records.clone());
        registry.register("bytes", "Record bytes stored, by agent", m.bytes.clone());
        registry.register("receipts", "Receipts issued, by agent", m.receipts.clone());
        registry.register(
            "forks",
            "Forks detected: an agent sent a record that differs from the one stored",
            m.forks.clone(),
        );
        registry.register(
            "next_seq",
            "The next sequence number expected from each agent",
            m.next_seq.clone(),
        );
        registry.register(
            "fsync_seconds",
            "Time of one fdatasync of a store segment",
            m.fsync.clone(),
        );
        registry.register(
            "batches_waited",
            "Batches that arrived before an earlier request of the same agent was stored and waited for it (an agent with several batches in flight)",
            m.batches_waited.clone(),
        );
        registry.register(
            "refused",
            "Requests and connections refused by a limit or before an agent was known, by reason",
            m.refused.clone(),
        );
        registry.register(
            "connections",
            "Connections open (limits.max_connections)",
            m.connections.clone(),
        );
        registry.register(
            "ingest_bytes",
            "Request bytes being received and checked (limits.max_ingest_bytes)",
            m.ingest_bytes.clone(),
        );
        registry.register(
            "unproven_forks",
            "Batches that differ from the stored chain without a checkpoint of the agent to prove it (refused, not a fork)",
            m.unproven_forks.clone(),
        );
        registry.register(
            "s3_writes",
            "Batches written to the S3 bucket, by result (claimed; lost_race: another collector claimed the sequence number first)",
            m.s3_writes.clone(),
        );
        registry.register(
            "s3_write_bytes",
            "Bytes of range objects written to the S3 bucket",
            m.s3_write_bytes.clone(),
        );
        registry.register(
            "s3_failures",
            "Batches not stored because the S3 bucket failed (the agent sends them again)",
            m.s3_failures.clone(),
        );
        registry.register(
            "s3_pulled_records",
            "Records taken from range objects other collectors kept in the bucket",
            m.s3_pulled_records.clone(),
        );
        registry.register(
            "s3_write_seconds",
            "Time to write one range object and its claim",
            m.s3_write_seconds.clone(),
        );
        registry.register(
            "s3_overwritten",
            "Kept objects found written again after they were kept (the locked first version is read; someone with the bucket's credentials tried)",
            m.s3_overwritten.clone(),
        );
        registry.register(
            "verify_failures",
            "Failures the scheduled verification found, by agent (each is also an alert record and an error line)",
            m.verify_failures.clone(),
        );
        registry.register(
            "verify_failed_agents",
            "Agents whose chain failed the last whole scheduled verification pass (alert when > 0)",
            m.verify_failed_agents.clone(),
        );
        registry.register(
            "verify_records",
            "Records checked by the scheduled verification",
            m.verify_records.clone(),
        );
        registry.register(
            "verify_bytes",
            "Bytes read by the scheduled verification",
            m.verify_bytes.clone(),
        );
        registry.register(
            "verify_last_pass_timestamp_seconds",
            "When the last whole scheduled verification pass ended (alert when older than the period)",
            m.verify_last_pass.clone(),
        );
        registry.register(
            "witness_conflicts",
            "Checkpoints another collector of the bucket published that are not in the chain this one verified (alert when it grows)",
            m.witness_conflicts.clone(),
        );
        Metrics { registry, ..m }
    })
}

pub fn agent(id: &str) -> Labels {
    vec![("agent", id.to_owned())]
}

pub fn agent_result(id: &str, result: &'static str) -> Labels {
    vec![("agent", id.to_owned()), ("result", result.to_owned())]
}

/// Counts a refusal with one of a fixed set of reasons.
pub fn refused(reason: &'static str) {
    get()
        .refused
        .get_or_create(&vec![("reason", reason.to_owned())])
        .inc();
}

pub fn observe_s3_write(d: Duration, bytes: u64, claimed: bool) {
    let m = get();
    m.s3_write_seconds.observe(d.as_secs_f64());
    m.s3_write_bytes.inc_by(bytes);
    let result = if claimed { "claimed" } else { "lost_race" };
    m.s3_writes
        .get_or_create(&vec![("result", result.to_owned())])
        .inc();
}

/// A batch found claimed by another collector before it was written.
pub fn s3_lost_race() {
    get()
        .s3_writes
        .get_or_create(&vec![("result", "lost_race".to_owned())])
        .inc();
}

pub fn s3_failed() {
    get().s3_failures.inc();
}

pub fn verify_failed(agent_id: &str) {
    get().verify_failures.get_or_create(&agent(agent_id)).inc();
}

pub fn verify_checked(records: u64, bytes: u64) {
    let m = get();
    m.verify_records.inc_by(records);
    m.verify_bytes.inc_by(bytes);
}

pub fn verify_pass_done(failed_agents: u64) {
    let m = get();
    m.verify_failed_agents.set(failed_agents as i64);
    m.verify_last_pass
        .set(wormlog_spool::clock::wall_ns() / 1_000_000_000);
}

pub fn witness_conflict(agent_id: &str, peer: &str) {
    get()
        .witness_conflicts
        .get_or_create(&vec![
            ("agent", agent_id.to_owned()),
            ("peer", peer.to_owned()),
        ])
        .inc();
}

pub fn s3_overwritten() {
    get().s3_overwritten.inc();
}

pub fn s3_pulled(records: u64) {
    get().s3_pulled_records.inc_by(records);
}

pub fn observe_fsync(d: Duration) {
    get().fsync.observe(d.as_secs_f64());
}

/// The text exposition format.
pub fn render() -> String {
    let mut out = String::new();
    let _ = encode(&mut out, &get().registry);
    out
}
