//! The console's reads (README, "The console"): the fleet overview, an
//! agent's timeline, one record with its checkpoint and receipts, and a
//! verification run in the background whose progress the page follows.
//! Each is a call of the reading API like the others: authenticated, held
//! to the roles, and written to the collector's own chain as an `access`
//! line (actions `overview`, `timeline`, `record`, `verify_start`,
//! `verify_progress`).

use super::reads::{
    Asked, Outcome, Params, allowed, allowed_pulled, blocking, failed, record, refuse_recorded,
};
use super::{App, Peer};
use crate::read::side::ReadError;
use crate::users::Role;
use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use wormlog_spool::clock::{parse_rfc3339, rfc3339, wall_ns};

pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/v1/overview", get(overview))
        .route("/v1/agents/{id}/timeline", get(timeline))
        .route("/v1/agents/{id}/records/{seq}", get(detail))
        .route(
            "/v1/agents/{id}/verifications",
            axum::routing::post(verify_start),
        )
        .route("/v1/agents/{id}/verifications/latest", get(verify_progress))
}

/// What the console keeps in memory: the agents' last batches (for the
/// forwarding lag) and the verifications run from it.
#[derive(Debug, Default)]
pub struct ConsoleState {
    forwarded: Mutex<HashMap<String, Forwarded>>,
    jobs: Mutex<HashMap<String, Arc<Job>>>,
}

/// An agent's last accepted batch.
#[derive(Debug, Clone, Copy)]
struct Forwarded {
    at_ns: i64,
    /// The store's end after it.
    stored: u64,
    /// The agent's durable end when it sent it (`Wormlog-Spool-End`).
    spool_end: Option<u64>,
}

impl ConsoleState {
    /// Notes an accepted batch of a registered agent.
    pub fn forwarded(&self, id: &str, stored: u64, spool_end: Option<u64>) {
        self.forwarded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                id.to_owned(),
                Forwarded {
                    at_ns: wall_ns(),
                    stored,
                    spool_end,
                },
            );
    }

    /// The newest verification of agent `id` run from the console.
    fn job(&self, id: &str) -> Option<Arc<Job>> {
        self.jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    fn last_forwarded(&self, id: &str) -> Option<Forwarded> {
        self.forwarded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .copied()
    }
}

/// A verification started from the console.
#[derive(Debug)]
struct Job {
    user: String,
    started_ns: i64,
    records: AtomicU64,
    bytes: AtomicU64,
    total_bytes: u64,
    result: Mutex<Option<Value>>,
}

impl Job {
    fn done(&self) -> bool {
        self.result
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    fn json(&self) -> Value {
        let result = self
            .result
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        json!({
            "state": if result.is_some() { "done" } else { "running" },
            "user": self.user,
            "started": rfc3339(self.started_ns),
            "records": self.records.load(Ordering::Relaxed),
            "bytes": self.bytes.load(Ordering::Relaxed),
            "total_bytes": self.total_bytes,
            "result": result,
        })
    }
}

/// Where the last verification run from the console is kept (derived
/// data, beside the agent's index).
fn last_verification_path(app: &App, id: &str) -> PathBuf {
    app.config
        .store_dir
        .join("index")
        .join(id)
        .join("verified.json")
}

fn last_verification(app: &App, id: &str) -> Option<Value> {
    std::fs::read(last_verification_path(app, id))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
}

/// The problems an overview shows for one agent, most serious first:
/// `(severity, text)`, 3 evidence at risk, 2 not watching or alerting,
/// 1 worth a look.
fn problems(a: &Value, late_after_ns: i64, now: i64) -> Vec<(u8, String)> {
    let mut out = Vec::new();
    if let Some(n) = a["forks"].as_u64().filter(|n| *n > 0) {
        out.push((3, format!("{n} fork(s) of the chain received")));
    }
    if a["scheduled_verification"]["ok"] == json!(false) {
        out.push((3, "the scheduled verification failed".into()));
    }
    if a["verification"]["ok"] == json!(false) {
        out.push((3, "the last verification from the console failed".into()));
    }
    let seen = a["last_seen_ns"].as_i64();
    match seen {
        Some(t) if now - t > late_after_ns => {
            let ago = wormlog_text::humanize::format_duration(std::time::Duration::from_nanos(
                (now - t) as u64,
            ));
            if a["stopped"] == json!(true) {
                out.push((
                    2,
                    format!(
                        "stopped {ago} ago ({}): nothing received since",
                        a["stop_reason"].as_str().unwrap_or("clean stop")
                    ),
                ));
            } else {
                out.push((
                    2,
                    format!("nothing received for {ago}: the agent stopped forwarding"),
                ));
            }
        }
        None => out.push((2, "no record received yet".into())),
        _ => {}
    }
    if let Some(n) = a["alerts_24h"].as_u64().filter(|n| *n > 0) {
        out.push((2, format!("{n} alert(s) in the last 24 hours")));
    }
    if let Some(n) = a["recoveries_24h"].as_u64().filter(|n| *n > 0) {
        out.push((2, format!("{n} recovery record(s) in the last 24 hours")));
    }
    if let Some(n) = a["unclean_24h"].as_u64().filter(|n| *n > 0) {
        out.push((1, format!("{n} unclean stop(s) in the last 24 hours")));
    }
    if let Some(n) = a["gaps_24h"].as_u64().filter(|n| *n > 0) {
        out.push((1, format!("{n} gap(s) in the last 24 hours")));
    }
    if let Some(n) = a["clock_steps_24h"].as_u64().filter(|n| *n > 0) {
        out.push((1, format!("{n} clock step(s) in the last 24 hours")));
    }
    out.sort_by_key(|p| std::cmp::Reverse(p.0));
    out
}

/// One agent of the overview.
fn agent_overview(app: &App, id: &str, now: i64, scrub: &crate::scrub::State) -> Value {
    let mut a = json!({"agent": id});
    match app.read.summary(id, now) {
        Ok(s) => {
            a["records"] = json!(s.records);
            a["first_ts"] = json!(s.first_ts.map(rfc3339));
            a["last_record"] = json!(s.last_ts.map(rfc3339));
            a["heartbeat_ns"] = json!(s.heartbeat_ns);
            a["stopped"] = json!(s.stopped);
            a["stop_reason"] = json!(s.stop_reason);
            a["gaps_24h"] = json!(s.gaps_24h);
            a["alerts_24h"] = json!(s.alerts_24h);
            a["recoveries_24h"] = json!(s.recoveries_24h);
            a["unclean_24h"] = json!(s.unclean_24h);
            a["clock_steps_24h"] = json!(s.clock_steps_24h);
            a["last_problem"] = json!(s.last_problem.as_ref().map(crate::read::views::event_json));
            a["last_seen_ns"] = json!(s.last_ts);
        }
        Err(e) => a["error"] = json!(e.to_string()),
    }
    let dir = app.read.agent_dir(id);
    if let Ok(receipts) = crate::receipts::ReceiptLog::open(
        &dir.join("receipts"),
        &app.signer.collector_id,
        app.signer.pubkey(),
    ) && let Ok(Some(n)) = receipts.last_tree_size()
        && let Ok(rs) = receipts.for_range(n, n + 1)
        && let Some(r) = rs.first()
    {
        a["last_receipt"] = json!(rfc3339(r.collector_ts));
        a["countersigned_tree_size"] = json!(n);
        let seen = a["last_seen_ns"].as_i64().unwrap_or(i64::MIN);
        a["last_seen_ns"] = json!(seen.max(r.collector_ts));
    }
    if let Some(f) = app.console.last_forwarded(id) {
        a["last_batch"] = json!(rfc3339(f.at_ns));
        a["behind_records"] = json!(f.spool_end.map(|e| e.saturating_sub(f.stored)));
        let seen = a["last_seen_ns"].as_i64().unwrap_or(i64::MIN);
        a["last_seen_ns"] = json!(seen.max(f.at_ns));
    }
    let failed: Vec<&crate::scrub::Failure> = scrub
        .failures
        .iter()
        .chain(&scrub.last_failures)
        .filter(|f| f.agent == id)
        .collect();
    a["scheduled_verification"] = match (scrub.last_pass_end_ns, failed.first()) {
        (_, Some(f)) => {
            json!({"ok": false, "at": rfc3339(f.found_ns), "reason": f.reason, "seq": f.seq})
        }
        (Some(t), None) => json!({"ok": true, "at": rfc3339(t)}),
        (None, None) => Value::Null,
    };
    a["verification"] = last_verification(app, id).unwrap_or(Value::Null);
    let forks = crate::forks::list(&app.config.store_dir, Some(id)).unwrap_or_default();
    a["forks"] = json!(forks.len());
    let late = i64::try_from(app.config.console.late_after.as_nanos()).unwrap_or(i64::MAX);
    let heartbeat2 = a["heartbeat_ns"].as_i64().unwrap_or(0).saturating_mul(2);
    let ps = problems(&a, late.max(heartbeat2), now);
    a["severity"] = json!(ps.first().map_or(0, |p| p.0));
    a["problems"] = json!(
        ps.iter()
            .map(|p| json!({"severity": p.0, "text": p.1}))
            .collect::<Vec<_>>()
    );
    a
}

async fn overview(
    State(app): State<Arc<App>>,
    peer: axum::Extension<Peer>,
    headers: HeaderMap,
) -> Response {
    let asked = Asked {
        action: "overview",
        agent: None,
        params: json!({}),
    };
    let p = match allowed(&app, &peer, &headers, &asked, &[Role::Auditor, Role::Admin]) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let app2 = app.clone();
    let user = p.user.clone();
    let r = blocking(move || {
        let now = wall_ns();
        let scrub = crate::scrub::load(&app2.config.store_dir);
        let mut out: Vec<Value> = app2
            .read
            .agents()?
            .iter()
            .filter(|id| user.roles.contains(&Role::Admin) || user.may_see(id))
            .map(|id| agent_overview(&app2, id, now, &scrub))
            .collect();
        // With a bucket: agents only other collectors have kept so far
        // (opening one's timeline takes it here).
        let mut bucket_error = None;
        if let Some(remote) = &app2.remote {
            match remote.agents() {
                Ok(ids) => {
                    for id in ids {
                        let seen = out.iter().any(|a| a["agent"] == json!(id));
                        if !seen && (user.roles.contains(&Role::Admin) || user.may_see(&id)) {
                            let text = "kept by another collector of the bucket only: open its timeline to take it here";
                            out.push(json!({"agent": id, "severity": 1,
                                "problems": [{"severity": 1, "text": text}]}));
                        }
                    }
                }
                Err(e) => bucket_error = Some(e.to_string()),
            }
        }
        out.sort_by(|x, y| {
            y["severity"]
                .as_u64()
                .cmp(&x["severity"].as_u64())
                .then_with(|| x["agent"].as_str().cmp(&y["agent"].as_str()))
        });
        Ok(json!({
            "collector": app2.signer.collector_id,
            "collector_pubkey": wormlog_spool::keys::format_pubkey(&app2.signer.pubkey()),
            "now": rfc3339(now),
            "late_after_seconds": app2.config.console.late_after.as_secs_f64(),
            "scheduled_verification": {
                "passes": scrub.passes,
                "last_pass_end": scrub.last_pass_end_ns.map(rfc3339),
            },
            "agents": out,
            "bucket_error": bucket_error,
        }))
    })
    .await;
    match r {
        Ok(v) => {
            let n = v["agents"].as_array().map_or(0, Vec::len) as u64;
            record(&app, &peer, Some(&p), &asked, Outcome::served(n, 0));
            axum::Json(v).into_response()
        }
        Err(e) => failed(&app, &peer, &p, &asked, &e),
    }
}

/// `from`/`to` of a timeline: RFC 3339 or nanoseconds; by default the last
/// 24 hours.
fn range_of(q: &HashMap<String, String>, now: i64) -> Result<(i64, i64), String> {
    let time = |k: &str| -> Result<Option<i64>, String> {
        q.get(k)
            .map(|v| {
                v.parse::<i64>()
                    .or_else(|_| parse_rfc3339(v))
                    .map_err(|e| format!("{k}: {e}"))
            })
            .transpose()
    };
    for k in q.keys() {
        if !["from", "to", "buckets", "limit"].contains(&k.as_str()) {
            return Err(format!("unknown parameter {k:?}"));
        }
    }
    let to = time("to")?.unwrap_or(now);
    let from = time("from")?.unwrap_or(to - 86_400_000_000_000);
    if from >= to {
        return Err("from must be before to".into());
    }
    Ok((from, to))
}

async fn timeline(
    State(app): State<Arc<App>>,
    UrlPath(id): UrlPath<String>,
    peer: axum::Extension<Peer>,
    headers: HeaderMap,
    q: Params,
) -> Response {
    let asked = Asked {
        action: "timeline",
        agent: Some(id.clone()),
        params: json!(q.0),
    };
    let p = match allowed(&app, &peer, &headers, &asked, &[Role::Auditor, Role::Admin]) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let now = wall_ns();
    let num = |k: &str, d: usize| {
        q.0.get(k).map_or(Ok(d), |v| {
            v.parse::<usize>()
                .map_err(|_| format!("{k}: {v:?} is not a number"))
        })
    };
    let parsed =
        range_of(&q.0, now).and_then(|r| Ok((r, num("buckets", 240)?, num("limit", 2000)?)));
    let (range, buckets, limit) = match parsed {
        Ok(x) => x,
        Err(e) => {
            return refuse_recorded(
                &app,
                &peer,
                Some(&p),
                &asked,
                StatusCode::BAD_REQUEST,
                "malformed",
                &e,
            );
        }
    };
    if let Err(e) = super::routes::pull(&app, &id).await {
        return failed(&app, &peer, &p, &asked, &ReadError::Failed(e));
    }
    let app2 = app.clone();
    let idc = id.clone();
    let r = blocking(move || {
        let mut v = app2
            .read
            .timeline(&idc, range, buckets, limit.min(10_000), now)?;
        let forks = crate::forks::list(&app2.config.store_dir, Some(&idc)).unwrap_or_default();
        v["forks"] = json!(
            forks
                .iter()
                .map(|f| json!({
                    "ts": f.meta["received_ns"],
                    "time": f.meta["received_ns"].as_i64().map(rfc3339),
                    "first_differing_seq": f.meta["first_differing_seq"],
                    "from": f.meta["from"],
                }))
                .collect::<Vec<_>>()
        );
        v["agent"] = json!(idc);
        Ok(v)
    })
    .await;
    match r {
        Ok(v) => {
            record(&app, &peer, Some(&p), &asked, Outcome::OK);
            axum::Json(v).into_response()
        }
        Err(e) => failed(&app, &peer, &p, &asked, &e),
    }
}

async fn detail(
    State(app): State<Arc<App>>,
    UrlPath((id, seq)): UrlPath<(String, u64)>,
    peer: axum::Extension<Peer>,
    headers: HeaderMap,
) -> Response {
    let asked = Asked {
        action: "record",
        agent: Some(id.clone()),
        params: json!({"seq": seq}),
    };
    let p = match allowed_pulled(&app, &peer, &headers, &asked, &[Role::Auditor]).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let app2 = app.clone();
    let idc = id.clone();
    match blocking(move || app2.read.detail(&idc, seq, &app2.signer)).await {
        Ok((v, opened)) => {
            record(
                &app,
                &peer,
                Some(&p),
                &asked,
                Outcome::served(1, u64::from(opened)),
            );
            axum::Json(v).into_response()
        }
        Err(e) => failed(&app, &peer, &p, &asked, &e),
    }
}

/// Bytes of the segment files of a store directory.
fn store_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| {
                    wormlog_spool::segment::parse_segment_file_name(
                        &e.file_name().to_string_lossy(),
                    )
                    .is_some()
                })
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

async fn verify_start(
    State(app): State<Arc<App>>,
    UrlPath(id): UrlPath<String>,
    peer: axum::Extension<Peer>,
    headers: HeaderMap,
) -> Response {
    let asked = Asked {
        action: "verify_start",
        agent: Some(id.clone()),
        params: json!({}),
    };
    let p = match allowed(&app, &peer, &headers, &asked, &[Role::Auditor]) {
        Ok(p) => p,
        Err(r) => return r,
    };
    // A request another site's page could make cannot carry this type
    // without the browser asking first (and nothing here answers that).
    if headers
        .get(header::CONTENT_TYPE)
        .is_none_or(|v| !v.as_bytes().starts_with(b"application/json"))
    {
        return refuse_recorded(
            &app,
            &peer,
            Some(&p),
            &asked,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "malformed",
            "a verification is started with Content-Type: application/json",
        );
    }
    let dir = app.read.agent_dir(&id);
    if !dir.join("pubkey").exists() && app.remote.is_none() {
        return failed(
            &app,
            &peer,
            &p,
            &asked,
            &ReadError::NotFound(format!("no agent {id:?} in this store")),
        );
    }
    // One verification of an agent at a time: the look and the start are
    // one step, so two auditors asking at once share one.
    let job = {
        let mut jobs = app.console.jobs.lock().unwrap_or_else(|p| p.into_inner());
        match jobs.get(&id).filter(|j| !j.done()) {
            Some(j) => j.clone(),
            None => {
                let job = Arc::new(Job {
                    user: p.user.name.clone(),
                    started_ns: wall_ns(),
                    records: AtomicU64::new(0),
                    bytes: AtomicU64::new(0),
                    total_bytes: store_bytes(&dir),
                    result: Mutex::new(None),
                });
                jobs.insert(id.clone(), job.clone());
                tokio::spawn(run_job(app.clone(), id.clone(), job.clone()));
                job
            }
        }
    };
    record(&app, &peer, Some(&p), &asked, Outcome::OK);
    (StatusCode::ACCEPTED, axum::Json(job.json())).into_response()
}

/// Runs a verification of `id`'s store, counting what it read into `job`;
/// the result is kept (`verified.json`) and told in the own chain — an
/// alert when it failed.
async fn run_job(app: Arc<App>, id: String, job: Arc<Job>) {
    let pulled = super::routes::pull(&app, &id).await;
    let app2 = app.clone();
    let (idc, jobc) = (id.clone(), job.clone());
    let r = blocking(move || {
        pulled.map_err(ReadError::Failed)?;
        let dir = app2.read.agent_dir(&idc);
        let pk = std::fs::read_to_string(dir.join("pubkey"))
            .ok()
            .and_then(|s| wormlog_spool::keys::parse_pubkey(s.trim()).ok())
            .ok_or_else(|| ReadError::NotFound(format!("no agent {idc:?} in this store")))?;
        wormlog_spool::verify::verify_spool(&dir, Some(pk), &mut |_, _, bytes| {
            jobc.records.fetch_add(1, Ordering::Relaxed);
            jobc.bytes
                .fetch_add(bytes.len() as u64 + 8, Ordering::Relaxed);
        })
        .map_err(|e| ReadError::Failed(e.to_string()))
    })
    .await;
    let now = wall_ns();
    let v = match &r {
        Ok(rep) => json!({
            "agent": id,
            "ok": rep.ok(),
            "at": rfc3339(now),
            "user": job.user,
            "records": rep.records,
            "entries": rep.entries,
            "checkpoints": rep.checkpoints,
            "tree_size": rep.tree_size,
            "root": wormlog_spool::hash::hex(&rep.root),
            "first_ts": rep.first_ts.map(rfc3339),
            "last_ts": rep.last_ts.map(rfc3339),
            "failure": rep.failure.as_ref().map(|f| json!({"segment": f.segment, "offset": f.offset, "seq": f.seq, "reason": f.reason})),
            "seconds": (now - job.started_ns) as f64 / 1e9,
        }),
        Err(e) => {
            json!({"agent": id, "ok": false, "at": rfc3339(now), "user": job.user, "error": e.to_string()})
        }
    };
    let ok = v["ok"] == json!(true);
    let path = last_verification_path(&app, &id);
    if let Some(d) = path.parent()
        && std::fs::create_dir_all(d).is_ok()
    {
        let _ = wormlog_spool::keys::write_atomic(&path, v.to_string().as_bytes(), 0o640);
    }
    if ok {
        app.own_log.event(&format!(
            "verification of agent {id} requested by {}: ok, {} records",
            job.user, v["records"]
        ));
    } else {
        app.alert_limited(
            &id,
            wormlog_spool::record::AlertCode::Other,
            &format!(
                "verification of agent {id} requested by {} FAILED: {}",
                job.user,
                v["failure"]["reason"]
                    .as_str()
                    .or(v["error"].as_str())
                    .unwrap_or("see verified.json")
            ),
        );
    }
    *job.result.lock().unwrap_or_else(|p| p.into_inner()) = Some(v);
}

async fn verify_progress(
    State(app): State<Arc<App>>,
    UrlPath(id): UrlPath<String>,
    peer: axum::Extension<Peer>,
    headers: HeaderMap,
) -> Response {
    let asked = Asked {
        action: "verify_progress",
        agent: Some(id.clone()),
        params: json!({}),
    };
    let p = match allowed(&app, &peer, &headers, &asked, &[Role::Auditor]) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let job = app.console.job(&id);
    record(&app, &peer, Some(&p), &asked, Outcome::OK);
    match job {
        Some(j) => axum::Json(j.json()).into_response(),
        None => axum::Json(json!({
            "state": "none",
            "result": last_verification(&app, &id),
        }))
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_silent_agent_is_a_problem_and_a_fork_comes_first() {
        let now = 1_000_000_000_000;
        let a = json!({"last_seen_ns": now - 600_000_000_000, "gaps_24h": 2, "forks": 1});
        let ps = problems(&a, 180_000_000_000, now);
        assert_eq!(ps[0].0, 3);
        assert!(ps[1].1.contains("stopped forwarding"), "{ps:?}");
        assert_eq!(ps[2], (1, "2 gap(s) in the last 24 hours".to_string()));
        let fresh = json!({"last_seen_ns": now - 1_000_000_000});
        assert!(problems(&fresh, 180_000_000_000, now).is_empty());
        let stopped = json!({"last_seen_ns": now - 600_000_000_000, "stopped": true, "stop_reason": "SIGTERM"});
        assert!(
            problems(&stopped, 180_000_000_000, now)[0]
                .1
                .starts_with("stopped 10m")
        );
    }

    #[test]
    fn a_timeline_range_defaults_to_the_last_day_and_refuses_nonsense() {
        let q = |p: &[(&str, &str)]| {
            p.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<HashMap<_, _>>()
        };
        let now = 100 * 86_400_000_000_000;
        assert_eq!(range_of(&q(&[]), now), Ok((now - 86_400_000_000_000, now)));
        assert!(range_of(&q(&[("from", "5"), ("to", "5")]), now).is_err());
        assert!(range_of(&q(&[("frm", "5")]), now).is_err());
        assert_eq!(
            range_of(
                &q(&[("from", "1970-01-01T00:00:01Z"), ("to", "2000000000")]),
                now
            ),
            Ok((1_000_000_000, 2_000_000_000))
        );
    }
}
