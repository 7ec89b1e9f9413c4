//! Verification that runs by itself (`[verify]`; README "Scheduled
//! verification"): every `every`, a full pass over every agent's chain in
//! the store — and, with an S3 store, over the bucket's claims and objects
//! — read at most `rate` bytes a second. A pass is resumable: the agents
//! already done are kept in `<store_dir>/verify.json`, and a restarted
//! collector goes on with the rest. A failure is loud: an `alert` record in
//! the collector's own chain, an error line, and the metrics
//! `verify_failures_total` and `verify_failed_agents`.

use crate::server::App;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wormlog_spool::record::AlertCode;

/// How often the objects other collectors kept are taken and verified.
pub const LANDED_EVERY: Duration = Duration::from_secs(10);

/// `[verify]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScrubConfig {
    /// Time between the starts of two full passes.
    pub every: Duration,
    /// Bytes read per second at most (0: as fast as the disk goes).
    pub rate: u64,
}

impl Default for ScrubConfig {
    fn default() -> Self {
        ScrubConfig {
            every: Duration::from_secs(7 * 86_400),
            rate: 50 << 20,
        }
    }
}

/// What a pass found wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub agent: String,
    /// `store` (the local copy) or `bucket`.
    pub place: String,
    pub seq: u64,
    pub reason: String,
    /// When it was found (ns since the epoch).
    pub found_ns: i64,
}

/// `<store_dir>/verify.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct State {
    /// The pass under way: when it started and the agents it has done.
    pub pass_started_ns: Option<i64>,
    pub done: Vec<String>,
    /// Records and bytes checked in the pass under way.
    pub records: u64,
    pub bytes: u64,
    /// The last whole pass.
    pub last_pass_end_ns: Option<i64>,
    pub last_pass_records: u64,
    pub last_pass_bytes: u64,
    pub last_pass_seconds: f64,
    pub passes: u64,
    /// Failures of the pass under way, then of the last whole one.
    pub failures: Vec<Failure>,
    pub last_failures: Vec<Failure>,
}

pub fn state_path(store: &Path) -> PathBuf {
    store.join("verify.json")
}

pub fn load(store: &Path) -> State {
    std::fs::read(state_path(store))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn save(store: &Path, s: &State) {
    let bytes = serde_json::to_vec_pretty(s).expect("a state serializes");
    if let Err(e) = wormlog_spool::keys::write_atomic(&state_path(store), &bytes, 0o640) {
        tracing::warn!("verify: {} not written: {e}", state_path(store).display());
    }
}

fn now_ns() -> i64 {
    wormlog_spool::clock::wall_ns()
}

/// Reads are held to `rate` bytes a second.
struct Throttle {
    rate: u64,
    started: Instant,
    bytes: u64,
}

impl Throttle {
    fn take(&mut self, n: u64) {
        self.bytes += n;
        if self.rate == 0 {
            return;
        }
        let due = Duration::from_secs_f64(self.bytes as f64 / self.rate as f64);
        let spent = self.started.elapsed();
        if due > spent + Duration::from_millis(20) {
            std::thread::sleep(due - spent);
        }
    }
}

/// With a bucket: what other collectors kept for the agents this one has
/// open is taken and verified as it lands (every [`LANDED_EVERY`]), not
/// only at the next batch or read. Runs until `stop` is set.
pub fn watch_landings(app: Arc<App>, stop: Arc<std::sync::atomic::AtomicBool>) {
    use std::sync::atomic::Ordering;
    let mut last = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(250));
        if last.elapsed() < LANDED_EVERY {
            continue;
        }
        for id in app.open_agents() {
            app.pull_blocking(&id);
        }
        last = Instant::now();
    }
}

/// Runs passes until `stop` is set (on its own thread).
pub fn run(app: Arc<App>, cfg: ScrubConfig, stop: Arc<std::sync::atomic::AtomicBool>) {
    use std::sync::atomic::Ordering;
    let store = app.config.store_dir.clone();
    while !stop.load(Ordering::Relaxed) {
        let state = load(&store);
        let due = match (state.pass_started_ns, state.last_pass_end_ns) {
            (Some(_), _) | (None, None) => true,
            (None, Some(end)) => {
                let started = end - (state.last_pass_seconds * 1e9) as i64;
                now_ns() >= started + cfg.every.as_nanos() as i64
            }
        };
        if !due {
            std::thread::sleep(Duration::from_millis(250));
            continue;
        }
        pass(&app, &cfg, state, &stop);
    }
}

/// One pass (or the rest of one).
fn pass(app: &App, cfg: &ScrubConfig, mut state: State, stop: &std::sync::atomic::AtomicBool) {
    use std::sync::atomic::Ordering;
    let store = app.config.store_dir.clone();
    let started = Instant::now();
    if state.pass_started_ns.is_none() {
        state.pass_started_ns = Some(now_ns());
        state.done.clear();
        state.failures.clear();
        state.records = 0;
        state.bytes = 0;
        save(&store, &state);
    }
    let mut throttle = Throttle {
        rate: cfg.rate,
        started: Instant::now(),
        bytes: 0,
    };
    for (agent, pubkey) in agents(&store) {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        if state.done.contains(&agent) {
            continue;
        }
        let mut found = Vec::new();
        let (records, bytes) = check_store(&store, &agent, pubkey, &mut throttle, &mut found);
        state.records += records;
        state.bytes += bytes;
        if let Some(remote) = &app.remote {
            // The bucket must hold what the local copy holds (a batch is
            // kept there before it is written here): claims deleted or
            // never written leave it shorter. The local end is read first.
            let local = crate::snapshot::next_seq(&store.join("agents").join(&agent));
            let own = app.signer.pubkey();
            let bucket_end = check_bucket(remote, &agent, (pubkey, own), &mut throttle, &mut found);
            if let (Some(end), Some(local)) = (bucket_end, local)
                && end < local
            {
                found.push(Failure {
                    agent: agent.clone(),
                    place: "bucket".into(),
                    seq: end,
                    reason: format!(
                        "the bucket's claims end at seq {end}, the local copy at {local}"
                    ),
                    found_ns: now_ns(),
                });
            }
        }
        for f in found {
            let msg = format!(
                "scheduled verification: agent {} ({}) fails at seq {}: {}",
                f.agent, f.place, f.seq, f.reason
            );
            tracing::error!("{msg}");
            app.own_log.alert(AlertCode::Other, &msg);
            crate::metrics::verify_failed(&f.agent);
            state.failures.push(f);
        }
        crate::metrics::verify_checked(records, bytes);
        state.done.push(agent);
        save(&store, &state);
    }
    let failed: std::collections::BTreeSet<&str> =
        state.failures.iter().map(|f| f.agent.as_str()).collect();
    let msg = format!(
        "scheduled verification: pass {} done: {} agents, {} records, {} bytes, {} failing",
        state.passes + 1,
        state.done.len(),
        state.records,
        state.bytes,
        failed.len()
    );
    crate::metrics::verify_pass_done(failed.len() as u64);
    if failed.is_empty() {
        tracing::info!("{msg}");
    } else {
        tracing::error!("{msg}");
    }
    app.own_log.event(&msg);
    state.passes += 1;
    state.last_pass_end_ns = Some(now_ns());
    state.last_pass_seconds = started.elapsed().as_secs_f64();
    state.last_pass_records = state.records;
    state.last_pass_bytes = state.bytes;
    state.last_failures = std::mem::take(&mut state.failures);
    state.pass_started_ns = None;
    state.done.clear();
    save(&store, &state);
}

/// Every agent of the store with its first key, in order.
fn agents(store: &Path) -> Vec<(String, [u8; 32])> {
    let mut out: Vec<(String, [u8; 32])> = std::fs::read_dir(store.join("agents"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let id = e.file_name().to_str()?.to_owned();
            let pk = std::fs::read_to_string(e.path().join("pubkey")).ok()?;
            Some((id, wormlog_spool::keys::parse_pubkey(pk.trim()).ok()?))
        })
        .collect();
    out.sort();
    out
}

/// The local copy of one agent's chain: records and bytes read.
fn check_store(
    store: &Path,
    agent: &str,
    pubkey: [u8; 32],
    throttle: &mut Throttle,
    found: &mut Vec<Failure>,
) -> (u64, u64) {
    let dir = store.join("agents").join(agent);
    let mut bytes = 0u64;
    let r = wormlog_spool::verify::verify_spool(&dir, Some(pubkey), &mut |_, _, raw| {
        bytes += raw.len() as u64;
        throttle.take(raw.len() as u64);
    });
    let failure = |seq, reason| Failure {
        agent: agent.to_owned(),
        place: "store".into(),
        seq,
        reason,
        found_ns: now_ns(),
    };
    match r {
        Ok(rep) => {
            if let Some(f) = &rep.failure {
                found.push(failure(
                    f.seq,
                    format!("segment {} offset {}: {}", f.segment, f.offset, f.reason),
                ));
            }
            (rep.records, bytes)
        }
        // No segment yet: nothing to check.
        Err(wormlog_spool::verify::VerifyError::NotASpool(_)) => (0, 0),
        Err(e) => {
            found.push(failure(0, e.to_string()));
            (0, bytes)
        }
    }
}

/// The bucket's claims and objects of one agent, followed as a collector
/// follows an agent's batches: where they end (None: a failure, in
/// `found`).
fn check_bucket(
    remote: &crate::s3::sync::Remote,
    agent: &str,
    (pubkey, own): ([u8; 32], [u8; 32]),
    throttle: &mut Throttle,
    found: &mut Vec<Failure>,
) -> Option<u64> {
    let mut follower = wormlog_spool::follow::Follower::new(agent, Some(pubkey));
    // As the ingest path: receipts of the collectors of the bucket are
    // taken once their checkpoint left the window of roots.
    follower.chain.own_receipt_key = Some(own);
    follower.chain.peer_receipt_keys = remote.peer_receipt_keys.clone();
    let mut fail = |seq, reason: String| {
        found.push(Failure {
            agent: agent.to_owned(),
            place: "bucket".into(),
            seq,
            reason,
            found_ns: now_ns(),
        })
    };
    loop {
        let seq = follower.next_seq();
        let range = match remote.claimed_at(agent, seq) {
            Ok(Some(r)) => r,
            Ok(None) => return Some(seq),
            Err(e) => {
                fail(seq, e.to_string());
                return None;
            }
        };
        throttle.take((range.torn.len() + range.frames.len()) as u64);
        if let Err(e) = follower.accept(&range.torn, &range.frames) {
            fail(seq, format!("the range claimed at {seq}: {e:?}"));
            return None;
        }
        if follower.next_seq() != range.next_seq {
            fail(
                seq,
                format!(
                    "the range claimed at {seq} ends at {}, its claim says {}",
                    follower.next_seq(),
                    range.next_seq
                ),
            );
            return None;
        }
    }
}
