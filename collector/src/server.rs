//! The HTTP(S) side: TLS (and mutual TLS) with tokio-rustls, HTTP/1.1 with
//! hyper, routes with axum (docs/FORMAT.md §10 is the wire protocol).

use crate::config::{Config, valid_agent_id};
use crate::metrics::{self, agent, agent_result};
use crate::own_log::OwnLog;
use crate::receipts::{Receipt, Signer};
use crate::store::{AgentStore, Outcome};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use rustls_pki_types::{CertificateDer, ServerName};
use serde_json::json;
use std::collections::HashMap;
use std::io::Read;
use std::sync::{Arc, Mutex};
use wormlog_spool::hash::hex;
use wormlog_spool::keys::format_pubkey;
use wormlog_spool::record::{AlertCode, Payload, Record};

/// The client certificate chain of a connection (None: no TLS or no
/// certificate), put into every request's extensions.
#[derive(Debug, Clone, Default)]
pub struct Peer(pub Option<Arc<Vec<CertificateDer<'static>>>>);

pub struct App {
    pub config: Config,
    pub signer: Signer,
    pub own_log: OwnLog,
    stores: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<AgentStore>>>>>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App").finish_non_exhaustive()
    }
}

impl App {
    pub fn new(config: Config, signer: Signer, own_log: OwnLog) -> Arc<App> {
        Arc::new(App {
            config,
            signer,
            own_log,
            stores: Mutex::new(HashMap::new()),
        })
    }

    fn slot(&self, id: &str) -> Arc<tokio::sync::Mutex<Option<AgentStore>>> {
        self.stores
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(id.to_owned())
            .or_default()
            .clone()
    }
}

pub fn router(app: Arc<App>) -> Router {
    let limit = app.config.max_batch_bytes;
    Router::new()
        .route("/v1/agents/{id}/records", post(ingest))
        .route("/v1/agents/{id}/state", get(state))
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
        .layer(DefaultBodyLimit::max(limit))
        .with_state(app)
}

fn error(status: StatusCode, body: serde_json::Value) -> Response {
    (status, axum::Json(body)).into_response()
}

fn log(level: &str, msg: &str) {
    eprintln!("wormlog-collector: {level}: {msg}");
}

/// Whether the connection may write the chain of agent `id`: with mutual
/// TLS the client certificate must be valid for the DNS name `id`.
fn authorised(app: &App, peer: &Peer, id: &str) -> Result<(), String> {
    let mtls = app
        .config
        .tls
        .as_ref()
        .is_some_and(|t| t.client_ca.is_some());
    if !mtls {
        return Ok(());
    }
    let Some(chain) = &peer.0 else {
        return Err("no client certificate".into());
    };
    let leaf = chain.first().ok_or("no client certificate")?;
    let cert =
        webpki::EndEntityCert::try_from(leaf).map_err(|e| format!("bad certificate: {e:?}"))?;
    let name = ServerName::try_from(id.to_owned())
        .map_err(|_| format!("agent id {id:?} is not a DNS name, so no certificate can name it"))?;
    cert.verify_is_valid_for_subject_name(&name)
        .map_err(|_| format!("the client certificate is not issued to agent {id:?}"))
}

async fn state(
    State(app): State<Arc<App>>,
    UrlPath(id): UrlPath<String>,
    peer: axum::Extension<Peer>,
) -> Response {
    if let Err(e) = authorised(&app, &peer, &id) {
        return error(
            StatusCode::FORBIDDEN,
            json!({"error": "forbidden", "reason": e}),
        );
    }
    if !valid_agent_id(&id) || !app.config.store_dir.join("agents").join(&id).exists() {
        return axum::Json(json!({"agent": id, "next_seq": 0})).into_response();
    }
    match open_store(&app, &id, None).await {
        Ok(next) => axum::Json(json!({"agent": id, "next_seq": next})).into_response(),
        Err(r) => r,
    }
}

/// Opens agent `id`'s store if it is not open; returns its next seq.
#[allow(clippy::result_large_err)]
async fn open_store(
    app: &Arc<App>,
    id: &str,
    genesis_key: Option<[u8; 32]>,
) -> Result<u64, Response> {
    let slot = app.slot(id);
    let mut guard = slot.lock_owned().await;
    if let Some(s) = guard.as_ref() {
        return Ok(s.next_seq());
    }
    let dir = app.config.store_dir.join("agents").join(id);
    let pinned = std::fs::read_to_string(dir.join("pubkey"))
        .ok()
        .and_then(|s| wormlog_spool::keys::parse_pubkey(s.trim()).ok());
    let pubkey = match (app.config.agents.get(id), pinned) {
        (Some(k), _) => *k,
        (None, Some(k)) if app.config.trust_on_first_use => k,
        (None, None) if app.config.trust_on_first_use => match genesis_key {
            Some(k) => {
                let msg = format!(
                    "agent {id} pinned on first use with key {}",
                    format_pubkey(&k)
                );
                log("warning", &msg);
                app.own_log.event(&msg);
                k
            }
            None => {
                return Err(error(
                    StatusCode::CONFLICT,
                    json!({"error": "gap", "expected_seq": 0, "reason": "unknown agent: send from its genesis record"}),
                ));
            }
        },
        _ => {
            return Err(error(
                StatusCode::FORBIDDEN,
                json!({"error": "forbidden", "reason": format!("agent {id:?} is not registered")}),
            ));
        }
    };
    let app2 = app.clone();
    let idc = id.to_owned();
    let opened = tokio::task::spawn_blocking(move || {
        let c = &app2.config;
        AgentStore::open(&c.store_dir, &idc, pubkey, c.append_only, &app2.signer)
    })
    .await
    .map_err(|e| {
        error(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"error": "internal", "reason": e.to_string()}),
        )
    })?;
    match opened {
        Ok(s) => {
            let next = s.next_seq();
            *guard = Some(s);
            Ok(next)
        }
        Err(e) => {
            log("error", &format!("agent {id}: cannot open its store: {e}"));
            Err(unavailable(&e.to_string()))
        }
    }
}

fn unavailable(reason: &str) -> Response {
    let mut r = error(
        StatusCode::SERVICE_UNAVAILABLE,
        json!({"error": "unavailable", "reason": reason}),
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, "5".parse().expect("header"));
    r
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

#[allow(clippy::result_large_err)] // a Response is what the handler returns anyway
fn header_u64(h: &HeaderMap, name: &str) -> Result<Option<u64>, Response> {
    match h.get(name) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .map(Some)
            .ok_or_else(|| {
                error(
                    StatusCode::BAD_REQUEST,
                    json!({"error": "malformed", "reason": format!("header {name} is not a number")}),
                )
            }),
    }
}

async fn ingest(
    State(app): State<Arc<App>>,
    UrlPath(id): UrlPath<String>,
    peer: axum::Extension<Peer>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let m = metrics::get();
    let bad = |reason: String| {
        m.batches
            .get_or_create(&agent_result(&id, "malformed"))
            .inc();
        error(
            StatusCode::BAD_REQUEST,
            json!({"error": "malformed", "reason": reason}),
        )
    };
    if !valid_agent_id(&id) {
        return bad(format!("{id:?} is not an agent id"));
    }
    if let Err(e) = authorised(&app, &peer, &id) {
        m.batches.get_or_create(&agent_result(&id, "refused")).inc();
        log("warning", &format!("agent {id}: refused: {e}"));
        return error(
            StatusCode::FORBIDDEN,
            json!({"error": "forbidden", "reason": e}),
        );
    }
    let seq = match header_u64(&headers, "wormlog-seq") {
        Ok(Some(s)) => s,
        Ok(None) => return bad("missing Wormlog-Seq header".into()),
        Err(r) => return r,
    };
    let torn_len = match header_u64(&headers, "wormlog-torn-len") {
        Ok(n) => n.unwrap_or(0) as usize,
        Err(r) => return r,
    };
    let max = app.config.max_batch_bytes;
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .map(|v| v.as_bytes().to_vec());
    let raw = match encoding.as_deref() {
        None | Some(b"identity") => body.to_vec(),
        Some(b"zstd") => {
            // Off the async workers: a batch is megabytes.
            match tokio::task::spawn_blocking(move || decompress(&body, max)).await {
                Ok(Ok(Some(raw))) => raw,
                Ok(Ok(None)) => {
                    return error(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        json!({"error": "too_large", "max_bytes": max}),
                    );
                }
                Ok(Err(e)) => return bad(format!("zstd: {e}")),
                Err(e) => return bad(format!("zstd: {e}")),
            }
        }
        Some(other) => {
            return error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                json!({"error": "encoding", "reason": format!("Content-Encoding {:?} (use zstd or identity)", String::from_utf8_lossy(other))}),
            );
        }
    };
    if torn_len > raw.len() {
        return bad("Wormlog-Torn-Len is longer than the body".into());
    }
    // The genesis key, for an agent trusted on first use.
    let genesis_key = if seq == 0 {
        match wormlog_spool::frame::frame_at(&raw, torn_len) {
            wormlog_spool::frame::FrameAt::Frame { start, end } => {
                match Record::decode(&raw[start..end]) {
                    Ok(Record {
                        payload: Payload::Genesis { first_pubkey, .. },
                        ..
                    }) => Some(first_pubkey),
                    _ => None,
                }
            }
            _ => None,
        }
    } else {
        None
    };
    if let Err(r) = open_store(&app, &id, genesis_key).await {
        return r;
    }
    let slot = app.slot(&id);
    let mut guard = slot.lock_owned().await;
    let app2 = app.clone();
    let bytes_in = raw.len() as u64;
    let (result, guard_back) = match tokio::task::spawn_blocking(move || {
        let s = guard.as_mut().expect("opened");
        let r = s.ingest(seq, &raw[..torn_len], &raw[torn_len..], &app2.signer);
        (r, guard)
    })
    .await
    {
        Ok(x) => x,
        Err(e) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({"error": "internal", "reason": e.to_string()}),
            );
        }
    };
    let next_now = guard_back.as_ref().map_or(0, |s| s.next_seq());
    drop(guard_back);
    m.next_seq.get_or_create(&agent(&id)).set(next_now as i64);
    match result {
        Ok(Outcome::Accepted { next_seq, receipts }) => {
            let stored = next_seq.saturating_sub(seq);
            m.batches
                .get_or_create(&agent_result(&id, "accepted"))
                .inc();
            m.records.get_or_create(&agent(&id)).inc_by(stored);
            m.bytes.get_or_create(&agent(&id)).inc_by(bytes_in);
            m.receipts
                .get_or_create(&agent(&id))
                .inc_by(receipts.len() as u64);
            axum::Json(json!({
                "next_seq": next_seq,
                "receipts": receipts.iter().map(receipt_json).collect::<Vec<_>>(),
            }))
            .into_response()
        }
        Ok(Outcome::Gap { expected_seq }) => {
            m.batches.get_or_create(&agent_result(&id, "gap")).inc();
            error(
                StatusCode::CONFLICT,
                json!({"error": "gap", "expected_seq": expected_seq}),
            )
        }
        Ok(Outcome::Fork {
            seq: at,
            expected_seq,
        }) => {
            m.batches.get_or_create(&agent_result(&id, "fork")).inc();
            m.forks.get_or_create(&agent(&id)).inc();
            let msg = format!(
                "FORK: agent {id} sent a record {at} that differs from the one stored: its history was rewritten after the collector received it; the stored chain is kept"
            );
            log("error", &msg);
            app.own_log.alert(AlertCode::ForkDetected, &msg);
            error(
                StatusCode::CONFLICT,
                json!({"error": "fork", "seq": at, "expected_seq": expected_seq}),
            )
        }
        Ok(Outcome::Invalid { seq: at, reason }) => {
            m.batches.get_or_create(&agent_result(&id, "invalid")).inc();
            let msg = format!("agent {id}: record {at} refused: {reason}");
            log("error", &msg);
            app.own_log.alert(AlertCode::Other, &msg);
            error(
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({"error": "invalid", "seq": at, "reason": reason}),
            )
        }
        Ok(Outcome::Malformed(reason)) => bad(reason),
        Err(e) => {
            m.batches.get_or_create(&agent_result(&id, "error")).inc();
            log("error", &format!("agent {id}: store: {e}"));
            unavailable(&e.to_string())
        }
    }
}

/// Decompresses a zstd body of at most `max` bytes (None: larger). The
/// output is sized from the frame header when the sender wrote the content
/// size (the agent does), so it is not grown and copied along the way.
fn decompress(body: &[u8], max: usize) -> std::io::Result<Option<Vec<u8>>> {
    let hint = zstd::zstd_safe::get_frame_content_size(body)
        .ok()
        .flatten()
        .unwrap_or(0)
        .min(max as u64) as usize;
    let mut out = Vec::with_capacity(hint);
    zstd::stream::read::Decoder::new(body)?
        .take(max as u64 + 1)
        .read_to_end(&mut out)?;
    Ok((out.len() <= max).then_some(out))
}

/// Serves until `shutdown` resolves.
pub async fn serve(
    app: Arc<App>,
    listener: tokio::net::TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let router = router(app);
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    tokio::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    log("warning", &format!("accept: {e}"));
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => return,
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            match acceptor {
                Some(a) => {
                    let hs =
                        tokio::time::timeout(std::time::Duration::from_secs(30), a.accept(stream))
                            .await;
                    let tls = match hs {
                        Ok(Ok(t)) => t,
                        Ok(Err(e)) => {
                            log(
                                "warning",
                                &format!("TLS handshake with {remote} failed: {e}"),
                            );
                            return;
                        }
                        Err(_) => {
                            log("warning", &format!("TLS handshake with {remote} timed out"));
                            return;
                        }
                    };
                    let certs = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .map(|c| Arc::new(c.iter().map(|c| c.clone().into_owned()).collect()));
                    serve_conn(tls, router, Peer(certs)).await;
                }
                None => serve_conn(stream, router, Peer(None)).await,
            }
        });
    }
}

async fn serve_conn<S>(stream: S, router: Router, peer: Peer)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use tower::ServiceExt;
    let svc = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(peer.clone());
        router.clone().oneshot(req)
    });
    let io = hyper_util::rt::TokioIo::new(stream);
    let _ = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(std::time::Duration::from_secs(60))
        .serve_connection(io, svc)
        .await;
}

/// The TLS configuration: TLS 1.2 and 1.3, a client certificate from
/// `client_ca` required when it is set.
pub fn tls_config(t: &crate::config::Tls) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let mut cfg = wormlog_tls::server_config(&t.cert, &t.key, t.client_ca.as_deref())?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}
