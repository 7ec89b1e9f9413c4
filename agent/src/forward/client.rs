//! One request to the collector: HTTPS with a pinned CA and an optional
//! client certificate (rustls, ring), the batch compressed with zstd, the
//! answer classified (docs/FORMAT.md §10).

use crate::config::ForwardSection;
use anyhow::Context;
use base64::Engine;
use std::time::Duration;
use wormlog_spool::chain::Receipt;
use wormlog_spool::reader::Span;

/// What the collector answered.
#[derive(Debug)]
pub enum Answer {
    Accepted {
        next_seq: u64,
        receipts: Vec<Receipt>,
    },
    /// 409 gap: send from `expected_seq`.
    Gap { expected_seq: u64 },
    /// 409 fork, 422 invalid or 400 malformed: retrying cannot help.
    Refused { status: u16, body: String },
    /// 413: the batch is too large for the collector.
    TooLarge,
    /// Worth retrying (5xx, 429, 408, 401/403, network, TLS, timeout), after
    /// at least `retry_after` when the collector said so.
    Transient {
        what: String,
        retry_after: Option<Duration>,
    },
}

/// The HTTP client and the collectors it sends to: one at a time, the
/// next when [`Client::fail_over`] is called. Requests run on the
/// forwarder's thread, in a runtime of its own.
#[derive(Debug)]
pub struct Client {
    http: reqwest::Client,
    /// Bodies are compressed with zstd.
    zstd: bool,
    runtime: tokio::runtime::Runtime,
    /// Each collector's base URL and its records URL.
    targets: Vec<(String, String)>,
    current: usize,
}

impl Client {
    pub fn new(f: &ForwardSection, agent_id: &str) -> anyhow::Result<Client> {
        let client = match (&f.cert_file, &f.key_file) {
            (Some(c), Some(k)) => Some((c.as_path(), k.as_path())),
            _ => None,
        };
        let tls = wormlog_tls::client_config(f.ca_file.as_deref(), client)?;
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(p) = &f.token_file {
            let token = std::fs::read_to_string(p)
                .with_context(|| format!("[forward] token_file {}", p.display()))?;
            let mut v = reqwest::header::HeaderValue::from_str(&format!("Bearer {}", token.trim()))
                .with_context(|| format!("[forward] token_file {}: not a token", p.display()))?;
            v.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, v);
        }
        let runtime = new_runtime().context("the forwarder's runtime")?;
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .default_headers(headers)
            .timeout(f.timeout.0)
            .connect_timeout(f.timeout.0.min(Duration::from_secs(10)))
            .pool_idle_timeout(Duration::from_secs(50))
            .user_agent(concat!("wormlog/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("HTTP client")?;
        let targets = f
            .targets()
            .into_iter()
            .map(|u| {
                let base = u.trim_end_matches('/').to_owned();
                let records = format!("{base}/v1/agents/{agent_id}/records");
                (base, records)
            })
            .collect();
        Ok(Client {
            http,
            zstd: f.zstd(),
            runtime,
            targets,
            current: 0,
        })
    }

    /// The collector requests go to now.
    pub fn url(&self) -> &str {
        &self.targets[self.current].0
    }

    /// How many collectors there are.
    pub fn targets(&self) -> usize {
        self.targets.len()
    }

    /// Moves to the next collector (after the last, the first again).
    pub fn fail_over(&mut self) {
        self.current = (self.current + 1) % self.targets.len();
    }

    /// Starts sending `batch`; `spool_end` (the writer's durable end) tells
    /// the collector how far behind the agent it is. The request runs on
    /// the forwarder's runtime while the forwarder waits in
    /// [`Client::wait`]; several may be out at once.
    pub fn start(&mut self, batch: &Span, body: bytes::Bytes, spool_end: u64) -> Pending {
        let mut req = self
            .http
            .post(&self.targets[self.current].1)
            .header("content-type", "application/octet-stream")
            .header("wormlog-seq", batch.first_seq.to_string())
            .header("wormlog-spool-end", spool_end.to_string());
        if batch.torn_len > 0 {
            req = req.header("wormlog-torn-len", batch.torn_len.to_string());
        }
        if self.zstd {
            req = req.header("content-encoding", "zstd");
        }
        // Dropped once written, not kept until the answer: reqwest keeps a
        // copy of a body it can reuse (for redirects and retries), and it
        // cannot reuse this one.
        let req = req.body(reqwest::Body::wrap(http_body_util::Full::new(body)));
        Pending(self.runtime.spawn(exchange(req)))
    }

    /// Waits for the answer to `pending`, or (with `ready`) until `ready`
    /// is notified first (None: `pending` is still out). After an answer
    /// other than 200 every connection is closed, and with them the other
    /// requests still out (see [`Client::drop_connections`]).
    pub fn wait(
        &mut self,
        pending: &mut Pending,
        ready: Option<&tokio::sync::Notify>,
    ) -> Option<Answer> {
        let answer = self.runtime.block_on(async {
            match ready {
                Some(ready) => tokio::select! {
                    biased;
                    a = &mut pending.0 => Some(a),
                    () = ready.notified() => None,
                },
                None => Some((&mut pending.0).await),
            }
        })?;
        let answer = answer.unwrap_or_else(|e| Answer::Transient {
            what: format!("the request's task: {e}"),
            retry_after: None,
        });
        if !matches!(answer, Answer::Accepted { .. }) {
            self.drop_connections();
        }
        Some(answer)
    }

    /// Closes every connection by replacing the runtime they run on. After
    /// an answer other than 200 a body may still be held by a connection
    /// whose collector answered without reading it and neither reads nor
    /// closes: each retry (a new connection) would leave one more. (A
    /// collector that answers early closes the connection anyway, so this
    /// costs a handshake only after the rarer late refusals.) The requests
    /// still out end with their runtime. The old runtime is not waited for:
    /// a name lookup it may still run on its blocking pool must not hold up
    /// forwarding.
    fn drop_connections(&mut self) {
        match new_runtime() {
            Ok(r) => std::mem::replace(&mut self.runtime, r).shutdown_background(),
            Err(e) => tracing::warn!("forward: a new runtime for the connections: {e}"),
        }
    }
}

/// A request out: its answer comes from [`Client::wait`]. Dropped, the
/// request goes on unless it is aborted.
#[derive(Debug)]
pub struct Pending(tokio::task::JoinHandle<Answer>);

impl Pending {
    /// Gives the request up (its connection is closed).
    pub fn abort(&self) {
        self.0.abort();
    }
}

/// Sends one request and classifies the answer.
async fn exchange(req: reqwest::RequestBuilder) -> Answer {
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) => {
            return Answer::Transient {
                what: error_chain(&e),
                retry_after: None,
            };
        }
    };
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let text = match resp.text().await {
        Ok(t) => t,
        Err(e) => {
            return Answer::Transient {
                what: format!("reading the answer: {}", error_chain(&e)),
                retry_after: None,
            };
        }
    };
    let json: Option<serde_json::Value> = serde_json::from_str(&text).ok();
    match status {
        200 => match json.as_ref().and_then(parse_accepted) {
            Some(a) => a,
            None => Answer::Transient {
                what: format!("unreadable answer: {}", short(&text)),
                retry_after: None,
            },
        },
        409 if json.as_ref().and_then(|j| j["error"].as_str()) == Some("gap") => {
            match json.as_ref().and_then(|j| j["expected_seq"].as_u64()) {
                Some(e) => Answer::Gap { expected_seq: e },
                None => Answer::Refused { status, body: text },
            }
        }
        // 400: the collector cannot read the request (not whole frames,
        // bad headers). The same bytes would be sent again, so it is
        // as final as a fork (docs/FORMAT.md §10.2).
        400 | 409 | 422 => Answer::Refused { status, body: text },
        413 => Answer::TooLarge,
        // 408: the body did not arrive in time (a slow link); like 429
        // and 5xx it is retried, after at least Retry-After.
        _ => Answer::Transient {
            what: format!("HTTP {status}: {}", short(&text)),
            retry_after,
        },
    }
}

fn parse_accepted(j: &serde_json::Value) -> Option<Answer> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let next_seq = j["next_seq"].as_u64()?;
    let mut receipts = Vec::new();
    for r in j["receipts"].as_array()? {
        receipts.push(Receipt {
            collector_id: r["collector_id"].as_str()?.to_owned(),
            tree_size: r["tree_size"].as_u64()?,
            root: wormlog_spool::hash::parse_hex32(r["root"].as_str()?)?,
            collector_ts: r["collector_ts"].as_i64()?,
            collector_pubkey: wormlog_spool::keys::parse_pubkey(r["collector_pubkey"].as_str()?)
                .ok()?,
            signature: b64.decode(r["signature"].as_str()?).ok()?.try_into().ok()?,
        });
    }
    Some(Answer::Accepted { next_seq, receipts })
}

fn short(s: &str) -> String {
    let s = s.trim();
    match s.char_indices().nth(300) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

/// An error with its causes (a TLS refusal is several levels down).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

/// The runtime the forwarder's requests (and its connections) run on.
fn new_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}
