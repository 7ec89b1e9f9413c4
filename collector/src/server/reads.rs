//! The reading API (README: "Reading the store"): who the caller is, the
//! agents, search, verification, export, one-entry disclosure, the access
//! log, and the admin's registration of agents. Every call — allowed or
//! refused — is written to the collector's own chain as an `access` line:
//! who, with which role and credential, what was asked, the answer's
//! status, how many records it returned and how many it opened.

use super::auth::{Unknown, authenticate};
use super::routes::{error, refuse};
use super::{App, Peer};
use crate::read::search::Query;
use crate::read::side::ReadError;
use crate::server::limits::ClientKey;
use crate::users::{Principal, Role};
use axum::Router;
use axum::extract::{Path as UrlPath, Query as UrlQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use wormlog_spool::clock::parse_rfc3339;

pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/v1/whoami", get(whoami))
        .route("/v1/agents", get(agents))
        .route("/v1/agents/{id}/verify", get(verify))
        .route("/v1/agents/{id}/export", get(export))
        .route("/v1/agents/{id}/records/{seq}/disclosure", get(disclose))
        .route("/v1/agents/{id}/checkpoint", get(checkpoint))
        .route("/v1/access", get(access))
        .route("/v1/admin/users", get(users))
        .route("/v1/admin/agents/{id}", put(register))
}

pub(super) type Params = UrlQuery<HashMap<String, String>>;

/// What a call asked, for its access record.
pub(super) struct Asked {
    pub(super) action: &'static str,
    pub(super) agent: Option<String>,
    pub(super) params: Value,
}

fn client_text(c: &ClientKey) -> String {
    match c {
        ClientKey::Cert(h) => format!("certificate sha256:{}", wormlog_spool::hash::hex(h)),
        ClientKey::Addr(a) => a.to_string(),
    }
}

/// How a call ended: its status, the records returned, the sealed entries
/// opened, and why it was refused or failed.
pub(super) struct Outcome<'a> {
    status: StatusCode,
    returned: u64,
    opened: u64,
    reason: Option<&'a str>,
}

impl<'a> Outcome<'a> {
    /// Done, with no record returned.
    pub(super) const OK: Self = Self {
        status: StatusCode::OK,
        returned: 0,
        opened: 0,
        reason: None,
    };

    /// Done, with `returned` records of which `opened` were decrypted.
    pub(super) fn served(returned: u64, opened: u64) -> Self {
        Self {
            returned,
            opened,
            ..Self::OK
        }
    }

    /// Refused or failed, with no record returned.
    pub(super) fn refused(status: StatusCode, reason: Option<&'a str>) -> Self {
        Self {
            status,
            returned: 0,
            opened: 0,
            reason,
        }
    }
}

/// Writes the access record of a call.
pub(super) fn record(
    app: &App,
    peer: &Peer,
    who: Option<&Principal>,
    asked: &Asked,
    out: Outcome<'_>,
) {
    let Outcome {
        status,
        returned,
        opened,
        reason,
    } = out;
    let v = json!({
        "user": who.map(|p| p.user.name.clone()),
        "roles": who.map(|p| p.user.roles_text()),
        "via": who.map(|p| p.via.name()),
        "client": client_text(&peer.client),
        "action": asked.action,
        "agent": asked.agent,
        "params": asked.params,
        "status": status.as_u16(),
        "returned": returned,
        "decrypted": opened,
        "reason": reason,
    });
    app.own_log.event(&format!("access {v}"));
}

/// The caller, or the 401/403 answer (recorded; refusals without a valid
/// credential at most the access rate per client, the rest counted).
#[allow(clippy::result_large_err)]
fn caller(
    app: &App,
    peer: &Peer,
    headers: &HeaderMap,
    asked: &Asked,
) -> Result<Principal, Response> {
    match authenticate(app, peer, headers) {
        Ok(p) => Ok(p),
        Err(u) => {
            let (status, reason) = match &u {
                Unknown::Missing => (
                    StatusCode::UNAUTHORIZED,
                    "no credentials: a bearer token or a client certificate".to_string(),
                ),
                Unknown::BadToken(r) => (StatusCode::UNAUTHORIZED, r.clone()),
                Unknown::NotAUser => (
                    StatusCode::FORBIDDEN,
                    "the client certificate is not a user's".to_string(),
                ),
            };
            crate::metrics::refused(if status == StatusCode::UNAUTHORIZED {
                "unauthenticated"
            } else {
                "forbidden"
            });
            if app.access_limited(&client_text(&peer.client)) {
                record(
                    app,
                    peer,
                    None,
                    asked,
                    Outcome::refused(status, Some(&reason)),
                );
            }
            let mut r = refuse(
                status,
                json!({"error": if status == StatusCode::UNAUTHORIZED {"unauthenticated"} else {"forbidden"}, "reason": reason}),
            );
            if status == StatusCode::UNAUTHORIZED {
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"wormlog\""),
                );
            }
            Err(r)
        }
    }
}

/// The caller if it holds one of `roles` (and may see `asked.agent`), or
/// the 403 answer (recorded).
#[allow(clippy::result_large_err)]
pub(super) fn allowed(
    app: &App,
    peer: &Peer,
    headers: &HeaderMap,
    asked: &Asked,
    roles: &[Role],
) -> Result<Principal, Response> {
    let p = caller(app, peer, headers, asked)?;
    let why = if !roles.iter().any(|r| p.user.roles.contains(r)) {
        Some(format!(
            "user {} ({}) may not {}: it needs the {} role",
            p.user.name,
            p.user.roles_text(),
            asked.action,
            roles
                .iter()
                .map(|r| r.name())
                .collect::<Vec<_>>()
                .join(" or ")
        ))
    } else if let Some(a) = &asked.agent
        && !p.user.may_see(a)
    {
        Some(format!("user {} may not read agent {a:?}", p.user.name))
    } else {
        None
    };
    match why {
        None => Ok(p),
        Some(reason) => {
            crate::metrics::refused("forbidden");
            Err(refuse_recorded(
                app,
                peer,
                Some(&p),
                asked,
                StatusCode::FORBIDDEN,
                "forbidden",
                &reason,
            ))
        }
    }
}

/// As [`allowed`], and then, with a bucket, what other collectors kept
/// for the call's agent is taken first (a failure answered and recorded).
#[allow(clippy::result_large_err)]
pub(super) async fn allowed_pulled(
    app: &Arc<App>,
    peer: &Peer,
    headers: &HeaderMap,
    asked: &Asked,
    roles: &[Role],
) -> Result<Principal, Response> {
    let p = allowed(app, peer, headers, asked, roles)?;
    if let Some(id) = &asked.agent
        && let Err(e) = super::routes::pull(app, id).await
    {
        return Err(failed(app, peer, &p, asked, &ReadError::Failed(e)));
    }
    Ok(p)
}

/// Records a refused call and answers it: `{"error": what, "reason": why}`.
pub(super) fn refuse_recorded(
    app: &App,
    peer: &Peer,
    p: Option<&Principal>,
    asked: &Asked,
    status: StatusCode,
    what: &str,
    reason: &str,
) -> Response {
    record(app, peer, p, asked, Outcome::refused(status, Some(reason)));
    error(status, json!({"error": what, "reason": reason}))
}

fn read_error(e: &ReadError) -> StatusCode {
    match e {
        ReadError::NotFound(_) => StatusCode::NOT_FOUND,
        ReadError::Refused(_) => StatusCode::CONFLICT,
        ReadError::Failed(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// Answers a failed read, recorded.
pub(super) fn failed(
    app: &App,
    peer: &Peer,
    p: &Principal,
    asked: &Asked,
    e: &ReadError,
) -> Response {
    let status = read_error(e);
    if status == StatusCode::INTERNAL_SERVER_ERROR {
        app.error_limited(
            &format!("read/{}", asked.action),
            &format!("{}: {e}", asked.action),
        );
    }
    record(
        app,
        peer,
        Some(p),
        asked,
        Outcome::refused(status, Some(&e.to_string())),
    );
    error(
        status,
        json!({"error": status.canonical_reason().unwrap_or("error").to_lowercase(), "reason": e.to_string()}),
    )
}

pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ReadError> + Send + 'static,
) -> Result<T, ReadError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(ReadError::Failed(e.to_string())))
}

async fn whoami(
    State(app): State<Arc<App>>,
    peer: axum::Extension<Peer>,
    headers: HeaderMap,
) -> Response {
    let asked = Asked {
        action: "whoami",
        agent: None,
        params: json!({}),
    };
    let p = match caller(&app, &peer, &headers, &asked) {
        Ok(p) => p,
        Err(r) => return r,
    };
    record(&app, &peer, Some(&p), &asked, Outcome::OK);
    axum::Json(json!({
        "user": p.user.name,
        "roles": p.user.roles.iter().map(|r| r.name()).collect::<Vec<_>>(),
        "agents": p.user.agents,
        "via": p.via.name(),
        "read_identity": app.read.has_identity(),
    }))
    .into_response()
}

async fn agents(
    State(app): State<Arc<App>>,
    peer: axum::Extension<Peer>,
    headers: HeaderMap,
) -> Response {
    let asked = Asked {
        action: "agents",
        agent: None,
        params: json!({}),
    };
    let p = match allowed(&app, &peer, &headers, &asked, &[Role::Auditor, Role::Admin]) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let app2 = app.clone();
    let r = blocking(move || {
        let mut out = Vec::new();
        for id in app2.read.agents()? {
            let dir = app2.read.agent_dir(&id);
            let pubkey = std::fs::read_to_string(dir.join("pubkey")).unwrap_or_default();
            let receipts = crate::receipts::ReceiptLog::open(&dir.join("receipts"), &app2.signer.collector_id, app2.signer.pubkey())?;
            let last = receipts.last_tree_size()?;
            let last_receipt = match last {
                Some(n) => receipts.for_range(n, n + 1)?.first().map(|r| wormlog_spool::clock::rfc3339(r.collector_ts)),
                None => None,
            };
            out.push(json!({
                "agent": id,
                "pubkey": pubkey.trim(),
                "registered": if app2.config.agents.contains_key(&id) { "configuration" } else { "store" },
                "countersigned_tree_size": last,
                "last_receipt": last_receipt,
            }));
        }
        // With a bucket: agents only other collectors have seen so far
        // (read one, and this collector takes it from the bucket).
        if let Some(remote) = &app2.remote {
            let known: Vec<String> = out.iter().filter_map(|a| a["agent"].as_str().map(str::to_owned)).collect();
            for id in remote.agents().map_err(|e| ReadError::Failed(e.to_string()))? {
                if known.contains(&id) {
                    continue;
                }
                let pubkey = remote.pinned(&id).ok().flatten().map(|k| wormlog_spool::keys::format_pubkey(&k));
                out.push(json!({
                    "agent": id,
                    "pubkey": pubkey,
                    "registered": "bucket",
                    "countersigned_tree_size": null,
                    "last_receipt": null,
                }));
            }
        }
        Ok(out)
    })
    .await;
    match r {
        Ok(v) => {
            let v: Vec<Value> = v
                .into_iter()
                .filter(|a| {
                    p.user.roles.contains(&Role::Admin)
                        || p.user.may_see(a["agent"].as_str().unwrap_or(""))
                })
                .collect();
            record(&app, &peer, Some(&p), &asked, Outcome::OK);
            axum::Json(json!({"agents": v})).into_response()
        }
        Err(e) => failed(&app, &peer, &p, &asked, &e),
    }
}

/// A search's query from the URL.
fn query_of(id: &str, q: &HashMap<String, String>) -> Result<Query, String> {
    let time = |k: &str| -> Result<Option<i64>, String> {
        q.get(k)
            .map(|v| {
                v.parse::<i64>()
                    .or_else(|_| parse_rfc3339(v))
                    .map_err(|e| format!("{k}: {e}"))
            })
            .transpose()
    };
    let num = |k: &str| -> Result<Option<u64>, String> {
        q.get(k)
            .map(|v| {
                v.parse::<u64>()
                    .map_err(|_| format!("{k}: {v:?} is not a number"))
            })
            .transpose()
    };
    for k in q.keys() {
        if ![
            "from", "to", "source", "kind", "text", "order", "limit", "cursor",
        ]
        .contains(&k.as_str())
        {
            return Err(format!("unknown parameter {k:?}"));
        }
    }
    let newest_first = match q.get("order").map(String::as_str) {
        None | Some("newest") => true,
        Some("oldest") => false,
        Some(o) => return Err(format!("order: {o:?} is not \"newest\" or \"oldest\"")),
    };
    if let Some(k) = q.get("kind")
        && !(1..=16)
            .any(|n| wormlog_spool::record::Kind::from_u8(n).is_some_and(|kk| kk.name() == k))
    {
        return Err(format!("kind: {k:?} is not a record kind"));
    }
    Ok(Query {
        agent: id.to_owned(),
        from_ts: time("from")?,
        to_ts: time("to")?,
        source: q.get("source").cloned(),
        kind: q.get("kind").cloned(),
        text: q.get("text").cloned(),
        newest_first,
        limit: num("limit")?.unwrap_or(100) as usize,
        cursor: num("cursor")?,
    })
}

pub async fn search(
    State(app): State<Arc<App>>,
    UrlPath(id): UrlPath<String>,
    peer: axum::Extension<Peer>,
    headers: HeaderMap,
    q: Params,
) -> Response {
    let asked = Asked {
        action: "search",
        agent: Some(id.clone()),
        params: json!(q.0),
    };
    let p = match allowed_pulled(&app, &peer, &headers, &asked, &[Role::Auditor]).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let query = match query_of(&id, &q.0) {
        Ok(q) => q,
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
    let app2 = app.clone();
    match blocking(move || app2.read.search(&query)).await {
        Ok((page, identity)) => {
            let opened = page
                .records
                .iter()
                .filter(|r| r["decrypted"] == Value::Bool(true))
                .count() as u64;
            record(
                &app,
                &peer,
                Some(&p),
                &asked,
                Outcome::served(page.records.len() as u64, opened),
            );
            let note = (page.sealed_unsearched > 0).then(|| {
                if identity {
                    format!("{} encrypted entries could not be opened with the read identity, so the text was not matched in them", page.sealed_unsearched)
                } else {
                    format!("{} encrypted entries were not searched: this collector has no read identity ([read] identity), so the text is matched in clear entries only", page.sealed_unsearched)
                }
            });
            axum::Json(json!({
                "records": page.records,
                "next_cursor": page.next_cursor,
                "encrypted_not_searched": page.sealed_unsearched,
                "note": note,
                "blocks_read": page.blocks_read,
                "blocks_skipped": page.blocks_skipped,
                "records_read": page.records_read,
            }))
            .into_response()
        }
        Err(e) => failed(&app, &peer, &p, &asked, &e),
    }
}

async fn verify(
    State(app): State<Arc<App>>,
    UrlPath(id): UrlPath<String>,
    peer: axum::Extension<Peer>,
    headers: HeaderMap,
) -> Response {
    let asked = Asked {
        action: "verify",
        agent: Some(id.clone()),
        params: json!({}),
    };
    let p = match allowed_pulled(&app, &peer, &headers, &asked, &[Role::Auditor]).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let app2 = app.clone();
    let idc = id.clone();
    let r = blocking(move || {
        let dir = app2.read.agent_dir(&idc);
        let pk = std::fs::read_to_string(dir.join("pubkey"))
            .ok()
            .and_then(|s| wormlog_spool::keys::parse_pubkey(s.trim()).ok())
            .ok_or_else(|| ReadError::NotFound(format!("no agent {idc:?} in this store")))?;
        wormlog_spool::verify::verify_spool(&dir, Some(pk), &mut |_, _, _| {})
            .map_err(|e| ReadError::Failed(e.to_string()))
    })
    .await;
    match r {
        Ok(rep) => {
            record(&app, &peer, Some(&p), &asked, Outcome::OK);
            axum::Json(json!({
                "agent": id,
                "ok": rep.ok(),
                "records": rep.records,
                "entries": rep.entries,
                "checkpoints": rep.checkpoints,
                "tree_size": rep.tree_size,
                "root": wormlog_spool::hash::hex(&rep.root),
                "first_ts": rep.first_ts.map(wormlog_spool::clock::rfc3339),
                "last_ts": rep.last_ts.map(wormlog_spool::clock::rfc3339),
                "failure": rep.failure.as_ref().map(|f| json!({"segment": f.segment, "offset": f.offset, "seq": f.seq, "reason": f.reason})),
                "verified_at": wormlog_spool::clock::rfc3339(wormlog_spool::clock::wall_ns()),
            }))
            .into_response()
        }
        Err(e) => failed(&app, &peer, &p, &asked, &e),
    }
}

fn bundle_response(name: String, bytes: Vec<u8>) -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/x-ndjson"),
            ),
            (
                header::CONTENT_DISPOSITION,
                HeaderValue::from_str(&format!("attachment; filename=\"{name}\""))
                    .unwrap_or(HeaderValue::from_static("attachment")),
            ),
        ],
        bytes,
    )
        .into_response()
}

async fn export(
    State(app): State<Arc<App>>,
    UrlPath(id): UrlPath<String>,
    peer: axum::Extension<Peer>,
    headers: HeaderMap,
    q: Params,
) -> Response {
    let asked = Asked {
        action: "export",
        agent: Some(id.clone()),
        params: json!(q.0),
    };
    let p = match allowed_pulled(&app, &peer, &headers, &asked, &[Role::Auditor]).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let range = (|| -> Result<(u64, u64), String> {
        let get = |k: &str| {
            q.0.get(k)
                .ok_or(format!("missing {k}"))?
                .parse::<u64>()
                .map_err(|_| format!("{k} is not a number"))
        };
        Ok((get("from_seq")?, get("to_seq")?))
    })();
    let (from, to) = match range {
        Ok(r) => r,
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
    let app2 = app.clone();
    let idc = id.clone();
    match blocking(move || app2.read.export(&idc, from, to, &app2.signer)).await {
        Ok(m) => {
            record(&app, &peer, Some(&p), &asked, Outcome::served(m.records, 0));
            bundle_response(
                format!("{id}-{}-{}.wlbundle", m.first_seq, m.last_seq),
                m.bytes,
            )
        }
        Err(e) => failed(&app, &peer, &p, &asked, &e),
    }
}

async fn disclose(
    State(app): State<Arc<App>>,
    UrlPath((id, seq)): UrlPath<(String, u64)>,
    peer: axum::Extension<Peer>,
    headers: HeaderMap,
) -> Response {
    let asked = Asked {
        action: "disclose",
        agent: Some(id.clone()),
        params: json!({"seq": seq}),
    };
    let p = match allowed_pulled(&app, &peer, &headers, &asked, &[Role::Auditor]).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let app2 = app.clone();
    let idc = id.clone();
    match blocking(move || app2.read.disclose(&idc, seq, &app2.signer)).await {
        Ok(m) => {
            let opened = u64::from(
                m.bytes.windows(12).any(|w| w == b"\"entry_key\":")
                    && !m.bytes.windows(17).any(|w| w == b"\"entry_key\":null"),
            );
            record(&app, &peer, Some(&p), &asked, Outcome::served(1, opened));
            bundle_response(format!("{id}-{seq}.disclosure.wlbundle"), m.bytes)
        }
        Err(e) => failed(&app, &peer, &p, &asked, &e),
    }
}

async fn access(
    State(app): State<Arc<App>>,
    peer: axum::Extension<Peer>,
    headers: HeaderMap,
    q: Params,
) -> Response {
    let asked = Asked {
        action: "access_log",
        agent: None,
        params: json!(q.0),
    };
    let p = match allowed(&app, &peer, &headers, &asked, &[Role::Auditor]) {
        Ok(p) => p,
        Err(r) => return r,
    };
    if p.user.agents.is_some() {
        let reason = format!(
            "user {} is limited to some agents; the access log is for auditors of all of them",
            p.user.name
        );
        return refuse_recorded(
            &app,
            &peer,
            Some(&p),
            &asked,
            StatusCode::FORBIDDEN,
            "forbidden",
            &reason,
        );
    }
    let filter = crate::audit::Filter {
        user: q.0.get("user").cloned(),
        agent: q.0.get("agent").cloned(),
        limit: q.0.get("limit").and_then(|l| l.parse().ok()).unwrap_or(100),
    };
    let store = app.config.store_dir.clone();
    match blocking(move || {
        crate::audit::read(&store, &filter).map_err(|e| ReadError::Failed(e.to_string()))
    })
    .await
    {
        Ok(list) => {
            record(
                &app,
                &peer,
                Some(&p),
                &asked,
                Outcome::served(list.len() as u64, 0),
            );
            axum::Json(json!({"access": list})).into_response()
        }
        Err(e) => failed(&app, &peer, &p, &asked, &e),
    }
}

/// The agent's newest countersigned checkpoint as a C2SP signed note
/// (`text/plain`), for transparency-log tools.
async fn checkpoint(
    State(app): State<Arc<App>>,
    UrlPath(id): UrlPath<String>,
    peer: axum::Extension<Peer>,
    headers: HeaderMap,
) -> Response {
    let asked = Asked {
        action: "checkpoint",
        agent: Some(id.clone()),
        params: json!({}),
    };
    let p = match allowed(&app, &peer, &headers, &asked, &[Role::Auditor]) {
        Ok(p) => p,
        Err(r) => return r,
    };
    if wormlog_spool::agent_id::check(&id).is_err() {
        return failed(
            &app,
            &peer,
            &p,
            &asked,
            &ReadError::NotFound(format!("no agent {id:?}")),
        );
    }
    match std::fs::read_to_string(app.config.store_dir.join("checkpoints").join(&id)) {
        Ok(note) => {
            record(&app, &peer, Some(&p), &asked, Outcome::served(1, 0));
            ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], note).into_response()
        }
        Err(_) => failed(
            &app,
            &peer,
            &p,
            &asked,
            &ReadError::NotFound(format!("no countersigned checkpoint of agent {id:?} yet")),
        ),
    }
}

async fn users(
    State(app): State<Arc<App>>,
    peer: axum::Extension<Peer>,
    headers: HeaderMap,
) -> Response {
    let asked = Asked {
        action: "users",
        agent: None,
        params: json!({}),
    };
    let p = match allowed(&app, &peer, &headers, &asked, &[Role::Admin]) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let list: Vec<Value> = app
        .config
        .users
        .iter()
        .map(|u| {
            json!({
                "user": u.name,
                "roles": u.roles.iter().map(|r| r.name()).collect::<Vec<_>>(),
                "agents": u.agents,
                "token": u.token_sha256.is_some(),
                "cert_name": u.cert_name,
            })
        })
        .collect();
    record(&app, &peer, Some(&p), &asked, Outcome::OK);
    axum::Json(json!({"users": list})).into_response()
}

/// `PUT /v1/admin/agents/{id}` with the agent's first public key as the
/// body: registers it in the store (it is never replaced).
async fn register(
    State(app): State<Arc<App>>,
    UrlPath(id): UrlPath<String>,
    peer: axum::Extension<Peer>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let asked = Asked {
        action: "register_agent",
        agent: None,
        params: json!({"agent": id}),
    };
    let p = match allowed(&app, &peer, &headers, &asked, &[Role::Admin]) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let answer = |status: StatusCode, v: Value, reason: Option<&str>| {
        record(
            &app,
            &peer,
            Some(&p),
            &asked,
            Outcome::refused(status, reason),
        );
        error(status, v)
    };
    if let Err(e) = wormlog_spool::agent_id::check(&id) {
        return answer(
            StatusCode::BAD_REQUEST,
            json!({"error": "malformed", "reason": e.to_string()}),
            Some("not an agent id"),
        );
    }
    let Some(pk) = std::str::from_utf8(&body)
        .ok()
        .and_then(|s| wormlog_spool::keys::parse_pubkey(s.trim()).ok())
    else {
        return answer(
            StatusCode::BAD_REQUEST,
            json!({"error": "malformed", "reason": "the body must be the agent's public key (ed25519:…)"}),
            Some("not a public key"),
        );
    };
    let line = format!("{}\n", wormlog_spool::keys::format_pubkey(&pk));
    if let Some(k) = app.config.agents.get(&id) {
        return if *k == pk {
            answer(
                StatusCode::OK,
                json!({"agent": id, "registered": "configuration"}),
                None,
            )
        } else {
            answer(
                StatusCode::CONFLICT,
                json!({"error": "conflict", "reason": "registered in the configuration with another key"}),
                Some("another key"),
            )
        };
    }
    let dir = app.config.store_dir.join("agents").join(&id);
    let path = dir.join("pubkey");
    match std::fs::read_to_string(&path) {
        Ok(s) if s == line => {
            return answer(
                StatusCode::OK,
                json!({"agent": id, "registered": "store"}),
                None,
            );
        }
        Ok(_) => {
            return answer(
                StatusCode::CONFLICT,
                json!({"error": "conflict", "reason": "this agent is registered with another key, which is never replaced"}),
                Some("another key"),
            );
        }
        Err(_) => {}
    }
    let written = std::fs::create_dir_all(&dir)
        .map_err(|e| e.to_string())
        .and_then(|()| {
            wormlog_spool::keys::write_atomic(&path, line.as_bytes(), 0o644)
                .map_err(|e| e.to_string())
        });
    match written {
        Ok(()) => {
            let msg = format!(
                "agent {id} registered by {} with key {}",
                p.user.name,
                line.trim()
            );
            tracing::info!("{msg}");
            app.own_log.event(&msg);
            answer(
                StatusCode::CREATED,
                json!({"agent": id, "registered": "store"}),
                None,
            )
        }
        Err(e) => answer(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"error": "failed", "reason": e}),
            Some("write failed"),
        ),
    }
}
