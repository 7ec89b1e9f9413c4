//! The routes (docs/FORMAT.md §10): a request is admitted from its path,
//! its connection and its headers — the agent id, the client certificate,
//! the registration, the announced length against the limits — and only
//! then is its body read, within a deadline, verified and stored.

use super::auth::{Registration, authorised, registration};
use super::body::{self, BodyError};
use super::{App, Peer};
use crate::metrics::{self, agent, agent_result};
use crate::receipts::Receipt;
use crate::store::{AgentStore, Outcome, StoreError};
use axum::Router;
use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use serde_json::json;
use std::sync::Arc;
use wormlog_spool::hash::hex;
use wormlog_spool::keys::format_pubkey;
use wormlog_spool::record::{AlertCode, Payload, Record};

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route(
            "/v1/agents/{id}/records",
            post(ingest).get(super::reads::search),
        )
        .route("/v1/agents/{id}/state", get(state))
        .merge(super::reads::routes())
        .merge(super::console::routes())
        .merge(super::console_assets::routes(app.config.console.enabled))
        .merge(
            metrics_routes().route_layer(axum::middleware::from_fn_with_state(
                app.clone(),
                metrics_gate,
            )),
        )
        .layer(axum::middleware::map_response(
            super::console_assets::no_store,
        ))
        .with_state(app)
}

/// On the main listener, `/metrics` and `/health` need what every other
/// route needs once client certificates are optional (token users): a
/// client certificate from `client_ca` or a user's token.
async fn metrics_gate(
    State(app): State<Arc<App>>,
    peer: axum::Extension<Peer>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let open = !app.mtls()
        || peer.certs.is_some()
        || super::auth::authenticate(&app, &peer, req.headers()).is_ok();
    if open {
        next.run(req).await
    } else {
        metrics::refused("unauthenticated");
        refuse(
            StatusCode::UNAUTHORIZED,
            json!({"error": "unauthenticated", "reason": "a client certificate or a user's token (or use the [metrics] listener)"}),
        )
    }
}

/// `/metrics` and `/health` alone (the `[metrics]` listener).
pub fn metrics_router() -> Router {
    metrics_routes().with_state(())
}

fn metrics_routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(
            "/health",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "application/json")],
                    "{\"status\":\"ok\"}\n",
                )
            }),
        )
        .route(
            "/metrics",
            get(|| async {
                (
                    [(
                        header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    metrics::render(),
                )
            }),
        )
}

pub(super) fn error(status: StatusCode, body: serde_json::Value) -> Response {
    (status, axum::Json(body)).into_response()
}

/// An answer given without reading the body: the connection is closed
/// after it, so the unread body costs nothing.
pub(super) fn refuse(status: StatusCode, body: serde_json::Value) -> Response {
    let mut r = error(status, body);
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

/// 429 with `Retry-After: 1`, and the connection closed.
pub fn busy(reason: &str) -> Response {
    let mut r = refuse(
        StatusCode::TOO_MANY_REQUESTS,
        json!({"error": "unavailable", "reason": reason}),
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

fn unavailable(reason: &str) -> Response {
    let mut r = error(
        StatusCode::SERVICE_UNAVAILABLE,
        json!({"error": "unavailable", "reason": reason}),
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    r
}

/// Admits a request for agent `id` from what is known before its body:
/// the id's form, the client certificate, the registration. A refusal is
/// counted without the id as a label (it may be anything a client sent).
#[allow(clippy::result_large_err)] // a Response is what the handler returns anyway
fn admit(app: &App, peer: &Peer, headers: &HeaderMap, id: &str) -> Result<Registration, Response> {
    if wormlog_spool::agent_id::check(id).is_err() {
        metrics::refused("agent_id");
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            json!({"error": "malformed", "reason": "not an agent id"}),
        ));
    }
    if let Err(e) = authorised(app, peer, headers, id) {
        metrics::refused("forbidden");
        app.warn_limited("forbidden", &format!("agent {id:?}: refused: {e}"));
        return Err(refuse(
            StatusCode::FORBIDDEN,
            json!({"error": "forbidden", "reason": e}),
        ));
    }
    registration(app, id).ok_or_else(|| {
        metrics::refused("not_registered");
        app.warn_limited(
            "not_registered",
            &format!("agent {id:?}: refused: not registered"),
        );
        refuse(
            StatusCode::FORBIDDEN,
            json!({"error": "forbidden", "reason": "this agent is not registered"}),
        )
    })
}

async fn state(
    State(app): State<Arc<App>>,
    UrlPath(id): UrlPath<String>,
    peer: axum::Extension<Peer>,
    headers: HeaderMap,
) -> Response {
    match admit(&app, &peer, &headers, &id) {
        Err(r) => r,
        Ok(Registration::FirstUse) => {
            axum::Json(json!({"agent": id, "next_seq": 0})).into_response()
        }
        Ok(Registration::Known(pubkey)) => match open_store(&app, &id, pubkey, false).await {
            Ok(next) => axum::Json(json!({"agent": id, "next_seq": next})).into_response(),
            Err(r) => r,
        },
    }
}

/// Opens agent `id`'s store if it is not open; its next seq. For an agent
/// trusted on first use (`first_use`), opening the store pins its key: that
/// is recorded here, where it happens, whatever becomes of the batch.
#[allow(clippy::result_large_err)]
async fn open_store(
    app: &Arc<App>,
    id: &str,
    pubkey: [u8; 32],
    first_use: bool,
) -> Result<u64, Response> {
    let slot = app.slot(id);
    let mut guard = slot.lock_owned().await;
    if let Some(s) = guard.as_ref() {
        return Ok(s.durable_next_seq());
    }
    let app2 = app.clone();
    let idc = id.to_owned();
    let opened = tokio::task::spawn_blocking(move || {
        let c = &app2.config;
        let pinned_before = c
            .store_dir
            .join("agents")
            .join(&idc)
            .join("pubkey")
            .exists();
        let s = open_kept(&app2, &idc, pubkey);
        (s, pinned_before)
    })
    .await
    .map_err(|e| unavailable(&e.to_string()))?;
    match opened {
        (Ok(mut s), pinned_before) => {
            record_repairs(app, id, s.take_repairs());
            if first_use && !pinned_before {
                let msg = format!(
                    "agent {id} pinned on first use with key {}",
                    format_pubkey(&pubkey)
                );
                tracing::warn!("{msg}");
                app.own_log.event(&msg);
            }
            let next = s.next_seq();
            *guard = Some(s);
            Ok(next)
        }
        (Err(e), _) => {
            app.error_limited(
                &format!("store/{id}"),
                &format!("agent {id}: cannot open its store: {e}"),
            );
            Err(unavailable(&e.to_string()))
        }
    }
}

/// An agent's checkpoint is published at most this often; the newest is
/// always published within this time of its receipt.
const PUBLISH_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Publishes agent `id`'s newest countersigned checkpoint as a signed note
/// (`<store_dir>/checkpoints/<id>`, and `checkpoints/<id>` in the heads
/// bucket), off the request's path. One publisher per agent writes, so an
/// older checkpoint can never replace a newer one; it publishes at most
/// every `PUBLISH_EVERY` and then the newest that arrived meanwhile (a
/// thousand agents' receipts would otherwise cost two fsyncs each).
fn publish_checkpoint(app: &Arc<App>, id: &str, tree_size: u64, root: [u8; 32]) {
    {
        let mut waiting = app.publishing.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(slot) = waiting.get_mut(id) {
            if slot.is_none_or(|(s, _)| s < tree_size) {
                *slot = Some((tree_size, root));
            }
            return;
        }
        waiting.insert(id.to_owned(), None);
    }
    let path = app.config.store_dir.join("checkpoints").join(id);
    let (app, id) = (app.clone(), id.to_owned());
    tokio::spawn(async move {
        let mut next = Some((tree_size, root));
        while let Some((tree_size, root)) = next {
            let (app2, id2, path2) = (app.clone(), id.clone(), path.clone());
            let _ = tokio::task::spawn_blocking(move || {
                write_note(&app2, &id2, &path2, tree_size, root);
            })
            .await;
            tokio::time::sleep(PUBLISH_EVERY).await;
            let mut waiting = app.publishing.lock().unwrap_or_else(|p| p.into_inner());
            next = waiting.get_mut(&id).and_then(Option::take);
            if next.is_none() {
                waiting.remove(&id);
            }
        }
    });
}

/// Writes the note of (`tree_size`, `root`) to `path` unless a larger one
/// is there, then to the heads bucket, then runs the cross-witness check.
fn write_note(app: &Arc<App>, id: &str, path: &std::path::Path, tree_size: u64, root: [u8; 32]) {
    let published = std::fs::read_to_string(path)
        .ok()
        .and_then(|t| t.lines().nth(1)?.parse::<u64>().ok());
    if published.is_some_and(|p| p >= tree_size) {
        return;
    }
    let note = app.notes.checkpoint(id, tree_size, &root);
    let written = path
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .map_err(|e| e.to_string())
        .and_then(|()| {
            wormlog_spool::keys::write_atomic(path, note.as_bytes(), 0o644)
                .map_err(|e| e.to_string())
        });
    if let Err(e) = written {
        app.warn_limited(
            "checkpoint-note",
            &format!("{}: not written: {e}", path.display()),
        );
    }
    if let Some(remote) = &app.remote {
        let key = format!("{}checkpoints/{id}/{}", remote.s3.prefix, app.config.id);
        if let Err(e) = remote.s3.put_head(&key, note.as_bytes()) {
            app.warn_limited("checkpoint-note", &format!("{key}: not written: {e}"));
        }
        crate::witness::run(app, id);
    }
}

/// With a bucket: brings agent `id`'s local copy up to what the bucket
/// holds (before a read, so that what other collectors kept is seen).
pub(super) async fn pull(app: &Arc<App>, id: &str) -> Result<(), String> {
    if app.remote.is_none() {
        return Ok(());
    }
    let Some(Registration::Known(pubkey)) = registration(app, id) else {
        return Ok(());
    };
    open_store(app, id, pubkey, false)
        .await
        .map_err(|_| format!("agent {id}: its store cannot be opened"))?;
    let slot = app.slot(id);
    let mut guard = slot.lock_owned().await;
    let app2 = app.clone();
    tokio::task::spawn_blocking(move || match guard.as_mut() {
        Some(s) => s.pull(&app2.signer).map_err(|e| e.to_string()),
        None => Ok(()),
    })
    .await
    .map_err(|e| e.to_string())?
}

/// Opens an agent's store; with a bucket, pins its key there (or checks it
/// against the pin another collector made) and takes what the bucket holds
/// beyond the local copy.
fn open_kept(app: &App, id: &str, pubkey: [u8; 32]) -> Result<AgentStore, StoreError> {
    let c = &app.config;
    if let Some(remote) = &app.remote {
        let pinned = remote
            .pin(id, &pubkey)
            .map_err(|e| StoreError::Remote(e.to_string()))?;
        if pinned != pubkey {
            return Err(StoreError::Damaged(format!(
                "agent {id}: the bucket holds the first key {}, not {}",
                format_pubkey(&pinned),
                format_pubkey(&pubkey)
            )));
        }
    }
    let mut s = AgentStore::open(&c.store_dir, id, pubkey, c.append_only, &app.signer)?;
    if let Some(remote) = &app.remote {
        s.set_remote(remote.clone(), &app.signer)?;
    }
    Ok(s)
}

/// Tells what opening or reloading a store cut or removed: a line in the
/// collector's own chain and a count per agent (the log line is written
/// where it happens).
fn record_repairs(app: &App, id: &str, repairs: Vec<String>) {
    for r in repairs {
        metrics::get().store_repairs.get_or_create(&agent(id)).inc();
        app.own_log.event(&format!(
            "agent {id}: store repaired (after a crash or a failed write): {r}"
        ));
    }
}

fn receipt_json(r: &Receipt) -> serde_json::Value {
    let b64 = base64::engine::general_purpose::STANDARD;
    json!({
        "collector_id": r.collector_id,
        "tree_size": r.tree_size,
        "root": hex(&r.root),
        "collector_ts": r.collector_ts,
        "collector_pubkey": format_pubkey(&r.collector_pubkey),
        "signature": b64.encode(r.signature),
    })
}

fn header_u64(h: &HeaderMap, name: &str) -> Result<Option<u64>, String> {
    match h.get(name) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .map(Some)
            .ok_or_else(|| format!("header {name} is not a number")),
    }
}

/// What the headers of a batch say.
struct BatchHead {
    seq: u64,
    /// The agent's durable end when it sent the batch (optional).
    spool_end: Option<u64>,
    torn_len: usize,
    zstd: bool,
    len: usize,
}

#[allow(clippy::result_large_err)]
fn batch_head(app: &App, headers: &HeaderMap) -> Result<BatchHead, Response> {
    let bad = |reason: String| {
        refuse(
            StatusCode::BAD_REQUEST,
            json!({"error": "malformed", "reason": reason}),
        )
    };
    let seq = header_u64(headers, "wormlog-seq")
        .map_err(&bad)?
        .ok_or_else(|| bad("missing Wormlog-Seq header".into()))?;
    let torn_len = header_u64(headers, "wormlog-torn-len")
        .map_err(&bad)?
        .unwrap_or(0);
    let zstd = match headers.get(header::CONTENT_ENCODING).map(|v| v.as_bytes()) {
        None | Some(b"identity") => false,
        Some(b"zstd") => true,
        Some(other) => {
            return Err(refuse(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                json!({"error": "encoding", "reason": format!("Content-Encoding {:?} (use zstd or identity)", String::from_utf8_lossy(other))}),
            ));
        }
    };
    let max = app.config.max_batch_bytes;
    let Some(len) = header_u64(headers, "content-length").map_err(&bad)? else {
        return Err(refuse(
            StatusCode::LENGTH_REQUIRED,
            json!({"error": "malformed", "reason": "a batch needs a Content-Length"}),
        ));
    };
    if len > max as u64 {
        return Err(refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            json!({"error": "too_large", "max_bytes": max}),
        ));
    }
    Ok(BatchHead {
        seq,
        spool_end: header_u64(headers, "wormlog-spool-end").map_err(&bad)?,
        torn_len: usize::try_from(torn_len).unwrap_or(usize::MAX),
        zstd,
        len: len as usize,
    })
}

async fn ingest(
    State(app): State<Arc<App>>,
    UrlPath(id): UrlPath<String>,
    peer: axum::Extension<Peer>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let reg = match admit(&app, &peer, &headers, &id) {
        Ok(r) => r,
        Err(r) => return r,
    };
    // From here on the agent is registered (or, trusted on first use, is
    // about to prove itself with a signed genesis): its id may be a label
    // once it is known.
    let m = metrics::get();
    let count = |result: &'static str| {
        if matches!(reg, Registration::Known(_)) {
            m.batches.get_or_create(&agent_result(&id, result)).inc();
        } else {
            metrics::refused(result);
        }
    };
    let head = match batch_head(&app, &headers) {
        Ok(h) => h,
        Err(r) => {
            count("malformed");
            return r;
        }
    };
    if reg == Registration::FirstUse && head.seq != 0 {
        count("gap");
        return refuse(
            StatusCode::CONFLICT,
            json!({"error": "gap", "expected_seq": 0, "reason": "unknown agent: send from its genesis record"}),
        );
    }
    // Its place among the agent's requests in flight: a batch that arrives
    // before an earlier one is stored waits for it (arrivals.rs).
    let ticket = app.arrivals.arrive(&id);
    let Some(mut permit) = app.gate.bytes(&peer.client, head.len) else {
        count("busy");
        return busy(&app.gate.busy_reason(&peer.client, head.len));
    };
    let limits = &app.config.limits;
    let deadline = limits.body_deadline(head.len as u64);
    let body = match body::read(body, head.len, deadline, limits.body_idle_timeout).await {
        Ok(b) => b,
        Err(e) => {
            // A body that did not all arrive is a timeout to the agent
            // (it retries); only one longer than announced is malformed
            // (a 400 stops an agent's forwarding: resending cannot help).
            let timeout = !matches!(e, BodyError::TooLong);
            count(if timeout { "timeout" } else { "malformed" });
            app.warn_limited(
                if timeout { "body_timeout" } else { "body" },
                &format!("agent {id}: {e}"),
            );
            return if timeout {
                let mut r = refuse(
                    StatusCode::REQUEST_TIMEOUT,
                    json!({"error": "timeout", "reason": e.to_string()}),
                );
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                r
            } else {
                refuse(
                    StatusCode::BAD_REQUEST,
                    json!({"error": "malformed", "reason": e.to_string()}),
                )
            };
        }
    };
    let max = app.config.max_batch_bytes;
    let (raw, permit) = if head.zstd {
        // The decompressed size is the one the frame header announces (at
        // most max_batch_bytes; max_batch_bytes when it announces none),
        // reserved first, and the output can be no larger.
        let announced = match zstd::zstd_safe::get_frame_content_size(&body) {
            Ok(n) => n,
            Err(_) => {
                count("malformed");
                return error(
                    StatusCode::BAD_REQUEST,
                    json!({"error": "malformed", "reason": "the body is not a zstd frame"}),
                );
            }
        };
        if announced.is_some_and(|n| n > max as u64) {
            count("too_large");
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                json!({"error": "too_large", "max_bytes": max, "reason": "the zstd frame announces more than max_batch_bytes"}),
            );
        }
        let out_len = announced.map_or(max, |n| n as usize);
        if !permit.grow(out_len) {
            count("busy");
            return busy(&app.gate.busy_reason(&peer.client, out_len));
        }
        let body_len = body.len();
        // Off the async workers: a batch is megabytes. The permit goes with
        // the work, so a client that hangs up does not free what the work
        // still holds.
        let done = tokio::task::spawn_blocking(move || {
            let r = decompress(&body, out_len);
            drop(body);
            permit.shrink(body_len);
            (r, permit)
        })
        .await;
        match done {
            Ok((Ok(raw), permit)) => (raw, permit),
            Ok((Err(e), _)) if announced.is_none() && out_len >= max => {
                count("too_large");
                return error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    json!({"error": "too_large", "max_bytes": max, "reason": format!("zstd: {e}")}),
                );
            }
            Ok((Err(e), _)) => {
                count("malformed");
                return error(
                    StatusCode::BAD_REQUEST,
                    json!({"error": "malformed", "reason": format!("zstd (the frame header announced {out_len} bytes): {e}")}),
                );
            }
            Err(e) => {
                count("unavailable");
                return unavailable(&e.to_string());
            }
        }
    } else {
        (body, permit)
    };
    if head.torn_len > raw.len() {
        count("malformed");
        return error(
            StatusCode::BAD_REQUEST,
            json!({"error": "malformed", "reason": "Wormlog-Torn-Len is longer than the body"}),
        );
    }
    let pubkey = match reg {
        Registration::Known(k) => k,
        Registration::FirstUse => match genesis_key(&id, &raw, head.torn_len) {
            Some(k) => k,
            None => {
                count("gap");
                return error(
                    StatusCode::CONFLICT,
                    json!({"error": "gap", "expected_seq": 0, "reason": "unknown agent: send from its genesis record"}),
                );
            }
        },
    };
    if let Err(r) = open_store(&app, &id, pubkey, reg == Registration::FirstUse).await {
        count("unavailable");
        return r;
    }
    let raw_len = raw.len() as u64;
    // Storing and answering run as their own task: an agent that hangs up
    // (one stopping while its batch is in flight) drops this handler, and
    // a batch stored must still have its metrics counted and its newest
    // checkpoint published.
    let peer = peer.0.clone();
    let done = tokio::spawn(async move {
        let batch = Batch {
            seq: head.seq,
            torn_len: head.torn_len,
            raw,
            permit,
            ticket,
        };
        let result = store_batch(&app, &id, batch, &peer).await;
        if let Ok(Outcome::Accepted { next_seq, .. }) = &result {
            app.console.forwarded(&id, *next_seq, head.spool_end);
        }
        answer(&app, &id, head.seq, raw_len, result)
    });
    match done.await {
        Ok(r) => r,
        Err(e) => unavailable(&e.to_string()),
    }
}

/// The genesis record's first public key, for an agent trusted on first
/// use: only from a batch whose first record is a valid genesis record for
/// `id` (checked in memory, before anything is pinned or opened).
fn genesis_key(id: &str, raw: &[u8], torn_len: usize) -> Option<[u8; 32]> {
    use wormlog_spool::frame::{FrameAt, frame_at};
    let FrameAt::Frame { start, end } = frame_at(raw, torn_len) else {
        return None;
    };
    let Ok(Record {
        payload: Payload::Genesis { first_pubkey, .. },
        ..
    }) = Record::decode(&raw[start..end])
    else {
        return None;
    };
    let mut f = wormlog_spool::follow::Follower::new(id, Some(first_pubkey));
    f.accept(&[], &raw[torn_len..end]).ok()?;
    Some(first_pubkey)
}

/// A batch read and ready to store.
struct Batch {
    seq: u64,
    torn_len: usize,
    raw: Vec<u8>,
    /// The bytes it holds of the client's share.
    permit: super::limits::BytesPermit,
    /// Its place among the agent's requests in flight.
    ticket: super::arrivals::Ticket,
}

/// Verifies and stores a batch off the async workers: checked under the
/// agent's lock, written (store/commit.rs) after it, answered once durable.
/// A panic while checking drops the open store, so the next request
/// reloads it from disk (which cuts back whatever a half-done write left);
/// a write that fails or panics makes the store reload before the next
/// batch. A batch that starts past the store's
/// end while an earlier request of the agent is still open waits for it
/// first (arrivals.rs).
async fn store_batch(
    app: &Arc<App>,
    id: &str,
    batch: Batch,
    peer: &Peer,
) -> Result<Outcome, String> {
    let Batch {
        seq,
        torn_len,
        raw,
        permit,
        ticket,
    } = batch;
    let slot = app.slot(id);
    let mut guard = loop {
        let guard = slot.clone().lock_owned().await;
        let past_end = guard.as_ref().is_some_and(|s| seq > s.next_seq());
        if !(past_end && ticket.behind_another()) {
            break guard;
        }
        drop(guard);
        metrics::get().batches_waited.inc();
        ticket.wait_for_earlier().await;
    };
    let app2 = app.clone();
    let from = crate::forks::Sender::of(peer);
    let r = tokio::task::spawn_blocking(move || {
        // The permit is held until the work is done, even if the client
        // hangs up meanwhile.
        let _permit = permit;
        let (torn, frames) = raw.split_at(torn_len);
        let r = crate::store::ingest_or_reload(&mut guard, seq, torn, frames, &app2.signer, &from);
        let repairs = guard.as_mut().map(|s| s.take_repairs()).unwrap_or_default();
        // Written after the store is released: the agent's next batch is
        // checked meanwhile (store/commit.rs).
        drop(guard);
        let r = r.and_then(|(outcome, next, commit)| match commit {
            Some(c) => c
                .run(torn, frames)
                .map(|()| (outcome, next))
                .map_err(|e| e.to_string()),
            None => Ok((outcome, next)),
        });
        (r, repairs)
    })
    .await
    .map_err(|e| e.to_string())?;
    let (r, repairs) = r;
    record_repairs(app, id, repairs);
    // A batch not stored (a failing disk, an unreachable bucket): an error
    // line and an alert record in the own chain, rate-limited per agent.
    let (outcome, next) = r.inspect_err(|e| {
        app.alert_limited(
            &format!("store/{id}"),
            wormlog_spool::record::AlertCode::Other,
            &format!("agent {id}: a batch was not stored (the agent sends it again): {e}"),
        )
    })?;
    // Only forward: the answers to an agent's batches in flight may be
    // given out of order.
    let gauge = metrics::get().next_seq.get_or_create(&agent(id));
    if next as i64 > gauge.get() {
        gauge.set(next as i64);
    }
    Ok(outcome)
}

fn answer(
    app: &Arc<App>,
    id: &str,
    seq: u64,
    bytes_in: u64,
    result: Result<Outcome, String>,
) -> Response {
    let m = metrics::get();
    let count = |r: &'static str| m.batches.get_or_create(&agent_result(id, r)).inc();
    match result {
        Ok(Outcome::Accepted { next_seq, receipts }) => {
            count("accepted");
            m.records
                .get_or_create(&agent(id))
                .inc_by(next_seq.saturating_sub(seq));
            m.bytes.get_or_create(&agent(id)).inc_by(bytes_in);
            m.receipts
                .get_or_create(&agent(id))
                .inc_by(receipts.len() as u64);
            if let Some(newest) = receipts.iter().max_by_key(|r| r.tree_size) {
                publish_checkpoint(app, id, newest.tree_size, newest.root);
            }
            axum::Json(json!({
                "next_seq": next_seq,
                "receipts": receipts.iter().map(receipt_json).collect::<Vec<_>>(),
            }))
            .into_response()
        }
        Ok(Outcome::Gap { expected_seq }) => {
            count("gap");
            error(
                StatusCode::CONFLICT,
                json!({"error": "gap", "expected_seq": expected_seq}),
            )
        }
        Ok(Outcome::Fork {
            seq: at,
            expected_seq,
            evidence,
        }) => {
            count("fork");
            m.forks.get_or_create(&agent(id)).inc();
            let kept = match &evidence {
                crate::forks::Kept::New(d) => {
                    format!(
                        "the agent's differing records are kept as evidence in {}",
                        d.display()
                    )
                }
                crate::forks::Kept::Already(d) => format!(
                    "the same batch was kept as evidence before, in {}",
                    d.display()
                ),
                crate::forks::Kept::Full => format!(
                    "this batch is not kept: {} forks of this agent are kept already",
                    crate::forks::KEPT_PER_AGENT
                ),
                crate::forks::Kept::Failed(e) => {
                    format!("this batch could not be kept as evidence: {e}")
                }
            };
            let msg = format!(
                "FORK: agent {id} sent a record {at} that differs from the one stored, under a checkpoint signed with its own key: its history was rewritten after the collector received it; the stored chain is kept; {kept}"
            );
            // The first is always told; a client resending forks is held to
            // the alert rate.
            app.alert_limited(&format!("fork/{id}"), AlertCode::ForkDetected, &msg);
            error(
                StatusCode::CONFLICT,
                json!({"error": "fork", "seq": at, "expected_seq": expected_seq}),
            )
        }
        Ok(Outcome::Unproven { seq: at, reason }) => {
            count("invalid");
            m.unproven_forks.get_or_create(&agent(id)).inc();
            let reason =
                format!("record {at} differs from the one stored, and {reason}: not a proven fork");
            app.alert_limited(
                &format!("unproven/{id}"),
                AlertCode::Other,
                &format!("agent {id}: batch refused: {reason}"),
            );
            error(
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({"error": "invalid", "seq": at, "reason": reason}),
            )
        }
        Ok(Outcome::Invalid { seq: at, reason }) => {
            count("invalid");
            app.alert_limited(
                &format!("invalid/{id}"),
                AlertCode::Other,
                &format!("agent {id}: record {at} refused: {reason}"),
            );
            error(
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({"error": "invalid", "seq": at, "reason": reason}),
            )
        }
        Ok(Outcome::Malformed(reason)) => {
            count("malformed");
            error(
                StatusCode::BAD_REQUEST,
                json!({"error": "malformed", "reason": reason}),
            )
        }
        Ok(Outcome::Contended(reason)) => {
            count("contended");
            app.warn_limited(&format!("contended/{id}"), &format!("agent {id}: {reason}"));
            let mut r = unavailable(&reason);
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            r
        }
        Ok(Outcome::Busy(reason)) => {
            count("proof_deferred");
            app.warn_limited(
                &format!("proof/{id}"),
                &format!("agent {id}: a batch differs from the stored chain; its fork proof is deferred: {reason}"),
            );
            let mut r = unavailable(&reason);
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
            r
        }
        Err(e) => {
            count("error");
            unavailable(&e)
        }
    }
}

/// Decompresses a zstd body into at most `capacity` bytes (an error if it
/// holds more): one allocation of that size, no streaming window beside it.
fn decompress(body: &[u8], capacity: usize) -> std::io::Result<Vec<u8>> {
    zstd::bulk::Decompressor::new()?.decompress(body, capacity)
}
