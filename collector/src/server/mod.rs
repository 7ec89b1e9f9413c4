//! The HTTP(S) side: TLS (and mutual TLS) with tokio-rustls, HTTP/1.1 with
//! hyper, routes with axum (docs/FORMAT.md §10 is the wire protocol), and
//! the limits that keep one client from holding what others need
//! (`[limits]`, docs/SECURITY.md "The collector's attack surface").

mod arrivals;
mod auth;
mod body;
mod console;
mod console_assets;
pub mod limits;
mod reads;
mod routes;

use crate::config::Config;
use crate::own_log::OwnLog;
use crate::ratelimit::{RateLimit, Verdict, held_back_note};
use crate::receipts::Signer;
use crate::store::AgentStore;
use axum::Router;
use limits::{ClientKey, ConnPermit, Gate};
use rustls_pki_types::CertificateDer;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use routes::{metrics_router, router};

/// The connection a request came on: its client certificate chain (None:
/// no TLS or no certificate) and who it counts against.
#[derive(Debug, Clone)]
pub struct Peer {
    pub certs: Option<Arc<Vec<CertificateDer<'static>>>>,
    pub client: ClientKey,
}

type Slot = Arc<tokio::sync::Mutex<Option<AgentStore>>>;

pub struct App {
    pub config: Config,
    pub signer: Signer,
    pub own_log: OwnLog,
    pub gate: Arc<Gate>,
    /// Alert records for refused requests, per agent.
    alerts: RateLimit,
    /// Warning lines for refused requests and connections.
    warnings: RateLimit,
    /// Open stores, registered agents only.
    stores: Mutex<HashMap<String, Slot>>,
    /// The reading side: indexes, search, bundles.
    pub read: crate::read::side::ReadSide,
    /// Access records of calls without valid credentials, per client.
    access: RateLimit,
    /// The S3 bucket the store is kept in (`[store] kind = "s3"`).
    pub remote: Option<Arc<crate::s3::sync::Remote>>,
    /// Signs the published checkpoints (C2SP signed notes).
    pub notes: crate::note::NoteSigner,
    /// The console's agents' last batches and verifications.
    pub console: console::ConsoleState,
    /// Checkpoint notes being published: per agent, the newest checkpoint
    /// (tree size, root) waiting for its publisher (see
    /// `routes::publish_checkpoint`); an agent listed has one running.
    publishing: Mutex<HashMap<String, Option<Checkpoint>>>,
    /// The order each agent's requests arrived in (arrivals.rs).
    pub(super) arrivals: Arc<arrivals::Arrivals>,
}

/// A checkpoint to publish: tree size and root.
type Checkpoint = (u64, [u8; 32]);

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App").finish_non_exhaustive()
    }
}

impl App {
    pub fn new(
        config: Config,
        signer: Signer,
        own_log: OwnLog,
        read: crate::read::side::ReadSide,
        remote: Option<Arc<crate::s3::sync::Remote>>,
        notes: crate::note::NoteSigner,
    ) -> Arc<App> {
        let gate = Gate::new(config.limits.clone(), config.max_batch_bytes);
        Arc::new(App {
            config,
            signer,
            own_log,
            gate,
            alerts: RateLimit::new(5, Duration::from_secs(60)),
            warnings: RateLimit::new(10, Duration::from_secs(60)),
            stores: Mutex::new(HashMap::new()),
            read,
            access: RateLimit::new(20, Duration::from_secs(60)),
            remote,
            notes,
            console: console::ConsoleState::default(),
            publishing: Mutex::new(HashMap::new()),
            arrivals: Arc::default(),
        })
    }

    /// Whether a call without valid credentials from `client` is recorded
    /// one by one (the rest are counted and told each minute).
    fn access_limited(&self, client: &str) -> bool {
        match self.access.check(client) {
            Verdict::Pass { held_back } => {
                if held_back > 0 {
                    self.own_log.event(&format!(
                        "access: {held_back} more calls without valid credentials from {client} were refused and not recorded one by one"
                    ));
                }
                true
            }
            Verdict::Hold => false,
        }
    }

    pub(crate) fn mtls(&self) -> bool {
        self.config
            .tls
            .as_ref()
            .is_some_and(|t| t.client_ca.is_some())
    }

    /// The slot of a registered agent's store.
    /// The agents whose stores are open.
    pub fn open_agents(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .stores
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect();
        v.sort();
        v
    }

    /// With a bucket: takes what other collectors kept for agent `id`
    /// (each batch verified as it is taken), from a blocking thread. A
    /// batch that does not continue the chain is an alert.
    pub fn pull_blocking(&self, id: &str) {
        let slot = self.slot(id);
        let mut guard = slot.blocking_lock();
        let Some(store) = guard.as_mut() else { return };
        match store.pull(&self.signer) {
            Ok(()) => {}
            Err(crate::store::StoreError::Bucket(e)) => self.alert_limited(
                &format!("bucket/{id}"),
                wormlog_spool::record::AlertCode::Other,
                &format!("agent {id}: an object in the bucket does not continue the chain: {e}"),
            ),
            Err(e) => self.warn_limited(&format!("pull/{id}"), &format!("agent {id}: {e}")),
        }
    }

    /// Writes the snapshot of every open store that stored batches and
    /// has been quiet for `store::QUIET` since (one busy with a batch now
    /// is left for later): `state.json` trails a quiet agent's store by a
    /// second or two, a busy one's by at most `SNAPSHOT_EVERY`.
    async fn snapshot_quiet_stores(&self) {
        let slots: Vec<Slot> = self
            .stores
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        for slot in slots {
            let Ok(mut guard) = slot.try_lock_owned() else {
                continue;
            };
            if guard.as_ref().is_none_or(|s| !s.snapshot_wanted()) {
                continue;
            }
            // The lock is held from the look to the write.
            let _ = tokio::task::spawn_blocking(move || {
                if let Some(s) = guard.as_mut() {
                    s.write_snapshot();
                }
            })
            .await;
        }
    }

    pub(super) fn slot(&self, id: &str) -> Slot {
        self.stores
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(id.to_owned())
            .or_default()
            .clone()
    }

    /// A warning line, at most `warnings`' rate per `key` (a registered
    /// agent or a fixed name).
    pub(super) fn warn_limited(&self, key: &str, msg: &str) {
        if let Verdict::Pass { held_back } = self.warnings.check(key) {
            tracing::warn!("{msg}{}", held_back_note(held_back));
        }
    }

    /// An error line, at most `warnings`' rate per `key`.
    fn error_limited(&self, key: &str, msg: &str) {
        if let Verdict::Pass { held_back } = self.warnings.check(key) {
            tracing::error!("{msg}{}", held_back_note(held_back));
        }
    }

    /// Tells what the rate limits held back and no later message told: an
    /// alert record (and an error line) per agent whose alerts were held
    /// back, a warning line per kind of warning. Run every minute and at
    /// the stop.
    pub fn tell_held_back(&self) {
        for (key, n) in self.alerts.drain() {
            let msg = format!("{n} more alerts ({key}) were held back by the rate limit");
            tracing::error!("{msg}");
            self.own_log
                .alert(wormlog_spool::record::AlertCode::Other, &msg);
        }
        for (client, n) in self.access.drain() {
            self.own_log.event(&format!(
                "access: {n} more calls without valid credentials from {client} were refused and not recorded one by one"
            ));
        }
        for (key, n) in self.warnings.drain() {
            tracing::warn!("{n} more log lines ({key}) were held back by the rate limit");
        }
    }

    /// An alert record in the collector's own chain (and an error line),
    /// at most `alerts`' rate per agent.
    pub(crate) fn alert_limited(
        &self,
        key: &str,
        code: wormlog_spool::record::AlertCode,
        msg: &str,
    ) {
        if let Verdict::Pass { held_back } = self.alerts.check(key) {
            let msg = format!("{msg}{}", held_back_note(held_back));
            tracing::error!("{msg}");
            self.own_log.alert(code, &msg);
        }
    }
}

/// How often what the rate limits held back is told, when nothing let
/// through told it first (their window).
const HELD_BACK_EVERY: Duration = Duration::from_secs(60);

/// Serves until `shutdown` resolves: agents on `listener`, and `/metrics`
/// and `/health` in plain HTTP on `metrics` when it is given.
pub async fn serve(
    app: Arc<App>,
    listener: tokio::net::TcpListener,
    metrics: Option<tokio::net::TcpListener>,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    if let Some(m) = metrics {
        tokio::spawn(serve_metrics(m, app.config.limits.header_timeout));
    }
    let router = router(app.clone());
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let teller = app.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(HELD_BACK_EVERY);
        every.tick().await;
        loop {
            every.tick().await;
            teller.tell_held_back();
        }
    });
    let sweeper = app.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(crate::store::QUIET);
        loop {
            every.tick().await;
            sweeper.snapshot_quiet_stores().await;
        }
    });
    tokio::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    app.warn_limited("accept", &format!("accept: {e}"));
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => return,
        };
        let Some(permit) = app.gate.connection() else {
            crate::metrics::refused("connections");
            app.warn_limited(
                "connections",
                &format!(
                    "{} connections are open (limits.max_connections): closed the one from {remote}",
                    app.config.limits.max_connections
                ),
            );
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (router, acceptor, app) = (router.clone(), acceptor.clone(), app.clone());
        tokio::spawn(async move {
            connection(app, router, acceptor, stream, remote, permit).await;
        });
    }
}

async fn connection(
    app: Arc<App>,
    router: Router,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    stream: tokio::net::TcpStream,
    remote: SocketAddr,
    mut permit: ConnPermit,
) {
    let limits = &app.config.limits;
    if !permit.handshaking(remote.ip()) {
        crate::metrics::refused("connections_per_address");
        app.warn_limited(
            "connections_per_address",
            &format!(
                "{remote}: {} connections from this address whose client is not known yet (limits.max_connections_per_client): closed",
                limits.max_connections_per_client
            ),
        );
        return;
    }
    let Some(a) = acceptor else {
        let ok = permit.claim(ClientKey::Addr(remote.ip()));
        let peer = Peer {
            certs: None,
            client: ClientKey::Addr(remote.ip()),
        };
        return serve_conn(stream, router, peer, ok, &app).await;
    };
    let tls = match tokio::time::timeout(limits.handshake_timeout, a.accept(stream)).await {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => {
            app.warn_limited("tls", &format!("TLS handshake with {remote} failed: {e}"));
            return;
        }
        Err(_) => {
            app.warn_limited("tls", &format!("TLS handshake with {remote} timed out"));
            return;
        }
    };
    let certs: Option<Arc<Vec<CertificateDer<'static>>>> = tls
        .get_ref()
        .1
        .peer_certificates()
        .map(|c| Arc::new(c.iter().map(|c| c.clone().into_owned()).collect()));
    let client = match certs.as_ref().and_then(|c| c.first()) {
        Some(leaf) => ClientKey::Cert(wormlog_spool::hash::sha256(leaf)),
        None => ClientKey::Addr(remote.ip()),
    };
    let ok = permit.claim(client.clone());
    serve_conn(tls, router, Peer { certs, client }, ok, &app).await;
    drop(permit);
}

/// HTTP/1.1 on one connection; `within_limit` false: the client has too
/// many connections open, and every request is answered 429 and the
/// connection closed.
async fn serve_conn<S>(stream: S, router: Router, peer: Peer, within_limit: bool, app: &App)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use tower::ServiceExt;
    let io = hyper_util::rt::TokioIo::new(stream);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(app.config.limits.header_timeout);
    if !within_limit {
        crate::metrics::refused("connections_per_client");
        app.warn_limited(
            "connections_per_client",
            &format!(
                "a client has {} connections open (limits.max_connections_per_client): answered 429",
                app.config.limits.max_connections_per_client
            ),
        );
        let svc = hyper::service::service_fn(|_req| async {
            Ok::<_, std::convert::Infallible>(routes::busy("too many connections from this client"))
        });
        // The answer waits for the request's headers one second at most.
        let _ = http
            .keep_alive(false)
            .header_read_timeout(std::time::Duration::from_secs(1))
            .serve_connection(io, svc)
            .await;
        return;
    }
    let svc = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(peer.clone());
        router.clone().oneshot(req)
    });
    let _ = http.serve_connection(io, svc).await;
}

/// `/metrics` and `/health` on their own listener: plain HTTP, no client
/// certificate, nothing else.
async fn serve_metrics(listener: tokio::net::TcpListener, header_timeout: Duration) {
    let router = metrics_router();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let router = router.clone();
        tokio::spawn(async move {
            use tower::ServiceExt;
            let svc = hyper::service::service_fn(move |req| router.clone().oneshot(req));
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(header_timeout)
                .keep_alive(false)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                .await;
        });
    }
}

/// The TLS configuration: TLS 1.2 and 1.3, a client certificate from
/// `client_ca` required when it is set.
/// With token users, a client may come without a certificate: each route
/// then decides (an agent's route still requires one).
pub fn tls_config(
    t: &crate::config::Tls,
    token_users: bool,
) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let mut cfg =
        wormlog_tls::server_config_with(&t.cert, &t.key, t.client_ca.as_deref(), token_users)?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}
