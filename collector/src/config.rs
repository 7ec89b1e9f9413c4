//! The collector's configuration file (TOML). Unknown keys are refused;
//! every error names `file:line:column`.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;
use wormlog_text::humanize::{parse_duration, parse_size};
use wormlog_text::location::line_col;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    collector: Section,
    #[serde(default)]
    limits: LimitsSection,
    metrics: Option<MetricsSection>,
    #[serde(default)]
    agents: Vec<AgentEntry>,
    #[serde(default)]
    users: Vec<UserEntry>,
    read: Option<ReadSection>,
    store: Option<StoreSection>,
    verify: Option<VerifySection>,
    console: Option<ConsoleSection>,
}

/// `[console]`: the auditor's console in a browser (README "The console").
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsoleSection {
    /// Serve the console's pages at /console/ (default true).
    enabled: Option<bool>,
    /// An agent from which nothing arrived for this long is a problem of
    /// the overview ("3m"; at least twice its heartbeat interval).
    late_after: Option<Spanned<String>>,
}

/// The console's settings.
#[derive(Debug, Clone)]
pub struct ConsoleConfig {
    pub enabled: bool,
    pub late_after: Duration,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        ConsoleConfig {
            enabled: true,
            late_after: Duration::from_secs(180),
        }
    }
}

/// `[verify]`: the scheduled verification (README "Scheduled verification").
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct VerifySection {
    /// Time between two full passes ("7d"); "off" for none.
    every: Option<Spanned<String>>,
    /// Bytes read per second at most ("50MiB"; "0" for no limit).
    rate: Option<Spanned<String>>,
}

/// `[store]`: where what is kept goes (README "The store on S3").
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoreSection {
    /// "local" (the default) or "s3".
    kind: Spanned<String>,
    endpoint: Option<Spanned<String>>,
    region: Option<String>,
    bucket: Option<Spanned<String>>,
    heads_bucket: Option<Spanned<String>>,
    prefix: Option<Spanned<String>>,
    retention_days: Option<Spanned<u64>>,
    path_style: Option<bool>,
    credentials_file: Option<PathBuf>,
    /// The other collectors of the bucket: their checkpoint verifier keys.
    #[serde(default)]
    peers: Vec<Spanned<String>>,
    /// The other collectors' receipt keys (their `receipt.pub`).
    #[serde(default)]
    peer_receipt_keys: Vec<Spanned<String>>,
}

/// `[[users]]`: who may read (README: "Roles and users").
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserEntry {
    name: Spanned<String>,
    roles: Spanned<Vec<String>>,
    agents: Option<Spanned<Vec<String>>>,
    token_sha256: Option<Spanned<String>>,
    cert_name: Option<Spanned<String>>,
}

/// `[read]`: what the reading side may use.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadSection {
    /// An age identity file: sealed entries are opened with it for an
    /// auditor's search and disclosure.
    identity: Option<PathBuf>,
}

/// `[limits]`: what one request, one client and all of them together may
/// cost the collector (README: "The collector's limits").
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsSection {
    max_connections: Option<Spanned<u64>>,
    max_connections_per_client: Option<Spanned<u64>>,
    max_ingest_bytes: Option<Spanned<String>>,
    handshake_timeout: Option<Spanned<String>>,
    header_timeout: Option<Spanned<String>>,
    body_timeout: Option<Spanned<String>>,
    body_idle_timeout: Option<Spanned<String>>,
    min_body_rate: Option<Spanned<String>>,
}

/// `[metrics]`: `/metrics` and `/health` on their own plain-HTTP listener,
/// without a client certificate (for a Prometheus server).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct MetricsSection {
    listen: Spanned<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Section {
    listen: Spanned<String>,
    store_dir: PathBuf,
    /// Where the collector keeps its own keys (default: `<store_dir>/keys`).
    key_dir: Option<PathBuf>,
    /// The name written into receipts (default: the host name).
    id: Option<Spanned<String>>,
    /// The prefix of the origins of published checkpoints (default
    /// "wormlog"): `<origin>/<agent id>`.
    origin: Option<Spanned<String>>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    client_ca: Option<PathBuf>,
    /// Accept an unknown agent and pin the first public key it presents.
    #[serde(default)]
    trust_on_first_use: bool,
    /// Largest batch accepted, decompressed.
    max_batch_bytes: Option<Spanned<String>>,
    /// `chattr` flags on the store: "require", "try" (default) or "off".
    append_only: Option<Spanned<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentEntry {
    id: Spanned<String>,
    pubkey: Spanned<String>,
}

/// The checked configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub store_dir: PathBuf,
    pub key_dir: PathBuf,
    pub id: String,
    pub tls: Option<Tls>,
    pub trust_on_first_use: bool,
    pub max_batch_bytes: usize,
    pub append_only: wormlog_spool::record::AppendOnly,
    /// Registered agents: id → first public key.
    pub agents: BTreeMap<String, [u8; 32]>,
    pub limits: Limits,
    /// Where `/metrics` and `/health` are served in plain HTTP (None: only
    /// on the main listener, behind its TLS and client certificates).
    pub metrics_listen: Option<SocketAddr>,
    /// The users who may call the reading API.
    pub users: Vec<crate::users::User>,
    /// The age identity that opens sealed entries for auditors.
    pub read_identity: Option<PathBuf>,
    /// The S3 bucket the store is kept in (None: the local store only).
    pub s3: Option<crate::s3::S3Config>,
    /// The scheduled verification (None: off).
    pub scrub: Option<crate::scrub::ScrubConfig>,
    /// The prefix of published checkpoints' origins.
    pub origin: String,
    /// The checkpoint verifier keys of the other collectors of the bucket
    /// (`[store] peers`): their notes are checked and cosigned.
    pub peers: Vec<String>,
    /// The other collectors' receipt keys (`[store] peer_receipt_keys`).
    pub peer_receipt_keys: Vec<[u8; 32]>,
    pub console: ConsoleConfig,
}

/// The collector's resource limits (`[limits]`), with their defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Open connections, all clients together; more are closed at once.
    pub max_connections: usize,
    /// Open connections of one client (its certificate, or its address
    /// without one); more are answered 429 and closed.
    pub max_connections_per_client: usize,
    /// Request bytes being received, decompressed and checked at once, all
    /// clients together (one client: at most twice `max_batch_bytes`, a
    /// batch and its decompressed form); a request that does not fit is
    /// answered 429 before its body is read.
    pub max_ingest_bytes: usize,
    /// A TLS handshake must end within this.
    pub handshake_timeout: Duration,
    /// A request's headers must arrive within this.
    pub header_timeout: Duration,
    /// A body must arrive within this plus its length at `min_body_rate`.
    pub body_timeout: Duration,
    /// Bytes per second a body must keep up (see `body_timeout`).
    pub min_body_rate: u64,
    /// The longest pause between a body's bytes.
    pub body_idle_timeout: Duration,
}

impl Limits {
    /// The deadline for a body of `len` bytes.
    pub fn body_deadline(&self, len: u64) -> Duration {
        self.body_timeout + Duration::from_secs(len / self.min_body_rate.max(1))
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 1024,
            max_connections_per_client: 8,
            max_ingest_bytes: 4 * DEFAULT_MAX_BATCH,
            handshake_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            min_body_rate: 64 << 10,
            body_idle_timeout: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Tls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
}

/// A configuration error, located.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// The largest batch by default (a record may be 64 MiB).
pub const DEFAULT_MAX_BATCH: usize = 80 << 20;

pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let bytes = std::fs::read(path)
        .map_err(|e| ConfigError(format!("{}: cannot read: {e}", path.display())))?;
    let text = std::str::from_utf8(&bytes).map_err(|_| {
        ConfigError(format!(
            "{}:1:1: the file is not valid UTF-8",
            path.display()
        ))
    })?;
    let at = |offset: usize, msg: String| {
        let (l, c) = line_col(text.as_bytes(), offset);
        ConfigError(format!("{}:{l}:{c}: {msg}", path.display()))
    };
    let f: File = toml::from_str(text).map_err(|e| {
        at(
            e.span().map_or(0, |s| s.start),
            e.message().trim().replace('\n', " "),
        )
    })?;
    let c = f.collector;
    let listen: SocketAddr = c.listen.get_ref().parse().map_err(|_| {
        at(
            c.listen.span().start,
            format!("listen: {:?} is not an address:port", c.listen.get_ref()),
        )
    })?;
    let tls = match (c.tls_cert, c.tls_key) {
        (Some(cert), Some(key)) => Some(Tls {
            cert,
            key,
            client_ca: c.client_ca,
        }),
        (None, None) => {
            if c.client_ca.is_some() {
                return Err(at(
                    c.listen.span().start,
                    "client_ca needs tls_cert and tls_key".into(),
                ));
            }
            None
        }
        _ => {
            return Err(at(
                c.listen.span().start,
                "tls_cert and tls_key go together".into(),
            ));
        }
    };
    // Off loopback every writer must authenticate: a stranger must not be
    // able to write, or to claim, any agent's chain.
    if !listen.ip().is_loopback() {
        match &tls {
            None => {
                return Err(at(
                    c.listen.span().start,
                    format!(
                        "listen: plain HTTP (no tls_cert/tls_key) is allowed only on a loopback address, not {listen}"
                    ),
                ));
            }
            Some(t) if t.client_ca.is_none() => {
                return Err(at(
                    c.listen.span().start,
                    format!(
                        "listen: on {listen}, which is not a loopback address, agents must authenticate: set client_ca (mutual TLS)"
                    ),
                ));
            }
            Some(_) => {}
        }
    }
    let metrics_listen = match &f.metrics {
        None => None,
        Some(m) => Some(m.listen.get_ref().parse::<SocketAddr>().map_err(|_| {
            at(
                m.listen.span().start,
                format!("listen: {:?} is not an address:port", m.listen.get_ref()),
            )
        })?),
    };
    let limits = limits(&f.limits, &at)?;
    let max_batch_bytes = match &c.max_batch_bytes {
        None => DEFAULT_MAX_BATCH,
        Some(s) => parse_size(s.get_ref())
            .ok()
            .and_then(|n| usize::try_from(n).ok())
            .filter(|n| *n >= 1 << 20)
            .ok_or_else(|| {
                at(
                    s.span().start,
                    format!(
                        "max_batch_bytes: {:?} is not a size of at least 1MiB",
                        s.get_ref()
                    ),
                )
            })?,
    };
    let append_only = match c
        .append_only
        .as_ref()
        .map(|s| (s.get_ref().as_str(), s.span()))
    {
        None | Some(("try", _)) => wormlog_spool::record::AppendOnly::Try,
        Some(("require", _)) => wormlog_spool::record::AppendOnly::Require,
        Some(("off", _)) => wormlog_spool::record::AppendOnly::Off,
        Some((v, span)) => {
            return Err(at(
                span.start,
                format!("append_only: {v:?} is not one of \"require\", \"try\", \"off\""),
            ));
        }
    };
    let id = match c.id {
        Some(s) if s.get_ref().is_empty() || s.get_ref().len() > 255 => {
            return Err(at(s.span().start, "id must be 1-255 bytes".into()));
        }
        Some(s) => s.into_inner(),
        None => hostname(),
    };
    let mut agents = BTreeMap::new();
    for a in f.agents {
        let id = a.id.get_ref();
        if let Err(e) = wormlog_spool::agent_id::check(id) {
            return Err(at(a.id.span().start, format!("agent id {id:?}: {e}")));
        }
        let pk = wormlog_spool::keys::parse_pubkey(a.pubkey.get_ref().trim())
            .map_err(|e| at(a.pubkey.span().start, format!("pubkey: {e}")))?;
        if agents.insert(id.clone(), pk).is_some() {
            return Err(at(
                a.id.span().start,
                format!("agent {id:?} is registered twice"),
            ));
        }
    }
    // Unset, it follows max_batch_bytes (four batches in flight); set, it
    // must hold at least one batch and its decompressed form.
    let limits = match &f.limits.max_ingest_bytes {
        None => Limits {
            max_ingest_bytes: max_batch_bytes.saturating_mul(4),
            ..limits
        },
        Some(_) => limits,
    };
    if let Some(set) = &f.limits.max_ingest_bytes
        && limits.max_ingest_bytes < max_batch_bytes.saturating_mul(2)
    {
        return Err(at(
            set.span().start,
            format!(
                "max_ingest_bytes must be at least twice max_batch_bytes ({max_batch_bytes} bytes): a batch and its decompressed form must fit"
            ),
        ));
    }
    let users = users(&f.users, &at)?;
    let s3 = match &f.store {
        Some(st) => s3_section(st, &at)?,
        None => None,
    };
    let mut peers = Vec::new();
    for p in f.store.iter().flat_map(|st| &st.peers) {
        if let Err(e) = crate::note::parse_verifier_key(p.get_ref()) {
            return Err(at(
                p.span().start,
                format!(
                    "peers: {:?} is not a checkpoint verifier key (name+hash+key): {e}",
                    p.get_ref()
                ),
            ));
        }
        peers.push(p.get_ref().clone());
    }
    let mut peer_receipt_keys = Vec::new();
    for k in f.store.iter().flat_map(|st| &st.peer_receipt_keys) {
        let key = wormlog_spool::keys::parse_pubkey(k.get_ref().trim())
            .map_err(|e| at(k.span().start, format!("peer_receipt_keys: {e}")))?;
        peer_receipt_keys.push(key);
    }
    let scrub = scrub_section(f.verify.as_ref(), &at)?;
    let mut console = ConsoleConfig::default();
    if let Some(c) = &f.console {
        console.enabled = c.enabled.unwrap_or(true);
        if let Some(l) = &c.late_after {
            console.late_after = parse_duration(l.get_ref())
                .ok()
                .filter(|d| !d.is_zero())
                .ok_or_else(|| {
                    at(
                        l.span().start,
                        format!("late_after: {:?} is not a duration (\"3m\")", l.get_ref()),
                    )
                })?;
        }
    }
    let origin = match &c.origin {
        None => "wormlog".to_owned(),
        Some(o)
            if o.get_ref().is_empty()
                || o.get_ref().ends_with('/')
                || o.get_ref()
                    .chars()
                    .any(|ch| ch.is_whitespace() || ch == '+' || ch.is_control()) =>
        {
            return Err(at(
                o.span().start,
                format!(
                    "origin: {:?} must be non-empty, without spaces, '+' or a trailing '/'",
                    o.get_ref()
                ),
            ));
        }
        Some(o) => o.get_ref().clone(),
    };
    Ok(Config {
        console,
        peer_receipt_keys,
        peers,
        origin,
        scrub,
        s3,
        read_identity: f.read.and_then(|r| r.identity),
        users,
        listen,
        key_dir: c.key_dir.unwrap_or_else(|| c.store_dir.join("keys")),
        store_dir: c.store_dir,
        id,
        tls,
        trust_on_first_use: c.trust_on_first_use,
        max_batch_bytes,
        append_only,
        agents,
        limits,
        metrics_listen,
    })
}

/// The `[verify]` section (absent: the defaults, on).
fn scrub_section(
    v: Option<&VerifySection>,
    at: &impl Fn(usize, String) -> ConfigError,
) -> Result<Option<crate::scrub::ScrubConfig>, ConfigError> {
    let mut c = crate::scrub::ScrubConfig::default();
    let Some(v) = v else { return Ok(Some(c)) };
    if let Some(e) = &v.every {
        if e.get_ref() == "off" {
            return Ok(None);
        }
        c.every = parse_duration(e.get_ref())
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or_else(|| {
                at(
                    e.span().start,
                    format!(
                        "every: {:?} is not a duration (\"7d\") or \"off\"",
                        e.get_ref()
                    ),
                )
            })?;
    }
    if let Some(r) = &v.rate {
        c.rate = parse_size(r.get_ref()).map_err(|_| {
            at(
                r.span().start,
                format!(
                    "rate: {:?} is not a size per second (\"50MiB\")",
                    r.get_ref()
                ),
            )
        })?;
    }
    Ok(Some(c))
}

/// The `[store]` section: None for the local store.
fn s3_section(
    st: &StoreSection,
    at: &impl Fn(usize, String) -> ConfigError,
) -> Result<Option<crate::s3::S3Config>, ConfigError> {
    match st.kind.get_ref().as_str() {
        "local" => return Ok(None),
        "s3" => {}
        other => {
            return Err(at(
                st.kind.span().start,
                format!("kind: {other:?} is not one of \"local\", \"s3\""),
            ));
        }
    }
    let bucket = st.bucket.as_ref().ok_or_else(|| {
        at(
            st.kind.span().start,
            "kind = \"s3\" needs bucket (with Object Lock)".into(),
        )
    })?;
    let name_ok = |b: &Spanned<String>| {
        let n = b.get_ref();
        if (3..=63).contains(&n.len())
            && n.bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'.')
        {
            Ok(n.clone())
        } else {
            Err(at(
                b.span().start,
                format!("{n:?} is not a bucket name (3-63 of a-z, 0-9, '-', '.')"),
            ))
        }
    };
    let endpoint = match &st.endpoint {
        Some(e) if !(e.get_ref().starts_with("http://") || e.get_ref().starts_with("https://")) => {
            return Err(at(
                e.span().start,
                format!(
                    "endpoint: {:?} is not an http:// or https:// URL",
                    e.get_ref()
                ),
            ));
        }
        e => e
            .as_ref()
            .map(|e| e.get_ref().trim_end_matches('/').to_owned()),
    };
    let prefix = match &st.prefix {
        Some(p) if !p.get_ref().is_empty() && !p.get_ref().ends_with('/') => {
            return Err(at(p.span().start, "prefix must end with '/'".into()));
        }
        p => p.as_ref().map(|p| p.get_ref().clone()).unwrap_or_default(),
    };
    let retention = match &st.retention_days {
        Some(d) if *d.get_ref() == 0 || *d.get_ref() > 36_500 => {
            return Err(at(d.span().start, "retention_days must be 1..36500".into()));
        }
        Some(d) => std::time::Duration::from_secs(d.get_ref() * 86_400),
        None => crate::s3::DEFAULT_RETENTION,
    };
    Ok(Some(crate::s3::S3Config {
        path_style: st.path_style.unwrap_or(endpoint.is_some()),
        endpoint,
        region: st.region.clone().unwrap_or_else(|| "us-east-1".into()),
        bucket: name_ok(bucket)?,
        heads_bucket: match &st.heads_bucket {
            Some(h) => name_ok(h)?,
            None => bucket.get_ref().clone(),
        },
        prefix,
        retention,
        credentials_file: st.credentials_file.clone(),
    }))
}

impl Config {
    /// Whether some user authenticates with a token (then a TLS client
    /// may come without a certificate).
    pub fn token_users(&self) -> bool {
        self.users.iter().any(|u| u.token_sha256.is_some())
    }
}

/// `[[users]]`, each checked where it stands.
fn users(
    list: &[UserEntry],
    at: &dyn Fn(usize, String) -> ConfigError,
) -> Result<Vec<crate::users::User>, ConfigError> {
    use crate::users::{Role, User};
    use std::collections::BTreeSet;
    let mut out: Vec<User> = Vec::new();
    for u in list {
        let name = u.name.get_ref();
        if name.is_empty()
            || name.len() > 64
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-@".contains(&b))
        {
            return Err(at(
                u.name.span().start,
                format!("user name {name:?}: 1-64 letters, digits, '.', '_', '-', '@'"),
            ));
        }
        if out.iter().any(|o| &o.name == name) {
            return Err(at(
                u.name.span().start,
                format!("user {name:?} is defined twice"),
            ));
        }
        let mut roles = BTreeSet::new();
        for r in u.roles.get_ref() {
            roles.insert(Role::parse(r).ok_or_else(|| {
                at(
                    u.roles.span().start,
                    format!("roles: {r:?} is not one of \"agent\", \"auditor\", \"admin\""),
                )
            })?);
        }
        if roles.is_empty() {
            return Err(at(u.roles.span().start, "roles: give at least one".into()));
        }
        let agents = match &u.agents {
            None => None,
            Some(a) => {
                for id in a.get_ref() {
                    wormlog_spool::agent_id::check(id)
                        .map_err(|e| at(a.span().start, format!("agents: {id:?}: {e}")))?;
                }
                Some(a.get_ref().iter().cloned().collect::<BTreeSet<_>>())
            }
        };
        if roles.contains(&Role::Agent) && agents.is_none() {
            return Err(at(
                u.roles.span().start,
                "a user with the agent role must name its agents (agents = [...])".into(),
            ));
        }
        let token_sha256 = match &u.token_sha256 {
            None => None,
            Some(t) => Some(
                wormlog_spool::hash::parse_hex32(t.get_ref())
                    .filter(|_| t.get_ref().bytes().all(|b| !b.is_ascii_uppercase()))
                    .ok_or_else(|| at(t.span().start, "token_sha256: not 64 lowercase hex digits (what `wormlog-collector token` prints)".into()))?,
            ),
        };
        if token_sha256.is_some_and(|t| out.iter().any(|o| o.token_sha256 == Some(t))) {
            return Err(at(
                u.name.span().start,
                "token_sha256: the same token is given to two users".into(),
            ));
        }
        let cert_name = match &u.cert_name {
            None => None,
            Some(c) => {
                rustls_pki_types::ServerName::try_from(c.get_ref().clone()).map_err(|_| {
                    at(
                        c.span().start,
                        format!("cert_name: {:?} is not a DNS name", c.get_ref()),
                    )
                })?;
                Some(c.get_ref().clone())
            }
        };
        if token_sha256.is_none() && cert_name.is_none() {
            return Err(at(
                u.name.span().start,
                format!("user {name:?}: give token_sha256 or cert_name, or both"),
            ));
        }
        out.push(User {
            name: name.clone(),
            roles,
            agents,
            token_sha256,
            cert_name,
        });
    }
    Ok(out)
}

/// `[limits]`, each key checked where it stands.
fn limits(
    l: &LimitsSection,
    at: &dyn Fn(usize, String) -> ConfigError,
) -> Result<Limits, ConfigError> {
    let mut out = Limits::default();
    let count = |v: &Option<Spanned<u64>>, key: &str, into: &mut usize| {
        if let Some(v) = v {
            match usize::try_from(*v.get_ref()) {
                Ok(n) if n >= 1 => *into = n,
                _ => return Err(at(v.span().start, format!("{key}: must be at least 1"))),
            }
        }
        Ok(())
    };
    count(
        &l.max_connections,
        "max_connections",
        &mut out.max_connections,
    )?;
    count(
        &l.max_connections_per_client,
        "max_connections_per_client",
        &mut out.max_connections_per_client,
    )?;
    let size = |v: &Option<Spanned<String>>, key: &str| -> Result<Option<u64>, ConfigError> {
        v.as_ref()
            .map(|s| {
                parse_size(s.get_ref())
                    .ok()
                    .filter(|n| *n >= 1)
                    .ok_or_else(|| {
                        at(
                            s.span().start,
                            format!("{key}: {:?} is not a size", s.get_ref()),
                        )
                    })
            })
            .transpose()
    };
    if let Some(n) = size(&l.max_ingest_bytes, "max_ingest_bytes")? {
        out.max_ingest_bytes = usize::try_from(n).unwrap_or(usize::MAX);
    }
    if let Some(n) = size(&l.min_body_rate, "min_body_rate")? {
        out.min_body_rate = n;
    }
    let duration = |v: &Option<Spanned<String>>, key: &str, into: &mut Duration| {
        if let Some(s) = v {
            *into = parse_duration(s.get_ref())
                .ok()
                .filter(|d| !d.is_zero())
                .ok_or_else(|| {
                    at(
                        s.span().start,
                        format!("{key}: {:?} is not a duration such as \"10s\"", s.get_ref()),
                    )
                })?;
        }
        Ok(())
    };
    duration(
        &l.handshake_timeout,
        "handshake_timeout",
        &mut out.handshake_timeout,
    )?;
    duration(&l.header_timeout, "header_timeout", &mut out.header_timeout)?;
    duration(&l.body_timeout, "body_timeout", &mut out.body_timeout)?;
    duration(
        &l.body_idle_timeout,
        "body_idle_timeout",
        &mut out.body_idle_timeout,
    )?;
    Ok(out)
}

fn hostname() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_text(text: &str) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("collector.toml");
        std::fs::write(&p, text).unwrap();
        load(&p).map_err(|e| ConfigError(e.0.replace(&p.display().to_string(), "F")))
    }

    #[test]
    fn errors_name_file_line_and_column() {
        let cases = [
            (
                "[collector]\nlisten = \"0.0.0.0:8080\"\nstore_dir = \"/s\"\n",
                "F:2:10: listen: plain HTTP",
            ),
            (
                "[collector]\nlisten = \"127.0.0.1:8080\"\nstore_dir = \"/s\"\n\n[[agents]]\nid = \"web-01\"\npubkey = \"nope\"\n",
                "F:7:10: pubkey:",
            ),
            (
                "[collector]\nlisten = \"127.0.0.1:8080\"\nstore_dir = \"/s\"\n\n[[agents]]\nid = \"../x\"\npubkey = \"nope\"\n",
                "F:6:6: agent id",
            ),
            (
                "[collector]\nlisten = \"127.0.0.1:8080\"\nstore_dir = \"/s\"\ncolour = 1\n",
                "F:4:1: unknown field `colour`",
            ),
            (
                "[collector]\nlisten = \"127.0.0.1:8080\"\nstore_dir = \"/s\"\n\n[store]\nkind = \"s3\"\nbucket = \"b-1\"\npeer_receipt_keys = [\"nope\"]\n",
                "F:8:22: peer_receipt_keys:",
            ),
            (
                "[collector]\nlisten = \"127.0.0.1:8080\"\nstore_dir = \"/s\"\n\n[store]\nkind = \"s3\"\nbucket = \"b-1\"\npeers = [\"x+y\"]\n",
                "F:8:10: peers:",
            ),
            (
                "[collector]\nlisten = \"127.0.0.1:8080\"\nstore_dir = \"/s\"\n\n[store]\nkind = \"s4\"\n",
                "F:6:8: kind:",
            ),
        ];
        for (text, want) in cases {
            let e = load_text(text).unwrap_err().0;
            assert!(e.starts_with(want), "{e:?} should start with {want:?}");
        }
    }

    #[test]
    fn off_loopback_writers_must_authenticate() {
        let tls = "tls_cert = \"/c.pem\"\ntls_key = \"/k.pem\"\n";
        let e = load_text(&format!(
            "[collector]\nlisten = \"0.0.0.0:8443\"\nstore_dir = \"/s\"\n{tls}"
        ))
        .unwrap_err()
        .0;
        assert!(e.starts_with("F:2:10: listen: on 0.0.0.0:8443"), "{e}");
        assert!(e.contains("set client_ca"), "{e}");
        let c = load_text(&format!(
            "[collector]\nlisten = \"0.0.0.0:8443\"\nstore_dir = \"/s\"\n{tls}client_ca = \"/ca.pem\"\n"
        ))
        .unwrap();
        assert!(c.tls.unwrap().client_ca.is_some());
    }

    #[test]
    fn the_console_section() {
        let base = "[collector]\nlisten = \"127.0.0.1:1\"\nstore_dir = \"/s\"\n\n";
        let c = load_text(base).unwrap();
        assert!(c.console.enabled);
        assert_eq!(c.console.late_after, Duration::from_secs(180));
        let c = load_text(&format!(
            "{base}[console]\nenabled = false\nlate_after = \"10m\"\n"
        ))
        .unwrap();
        assert!(!c.console.enabled);
        assert_eq!(c.console.late_after, Duration::from_secs(600));
        for (text, want) in [
            ("[console]\nlate_after = \"soon\"\n", "F:6:14: late_after:"),
            ("[console]\nlate_after = \"0s\"\n", "F:6:14: late_after:"),
            ("[console]\ntheme = 1\n", "F:6:1: unknown field `theme`"),
        ] {
            let e = load_text(&format!("{base}{text}")).unwrap_err().0;
            assert!(e.starts_with(want), "{e:?} should start with {want:?}");
        }
    }

    #[test]
    fn limits_and_the_metrics_listener() {
        let c = load_text(
            "[collector]\nlisten = \"127.0.0.1:1\"\nstore_dir = \"/s\"\n\n[limits]\nmax_connections = 10\nmax_connections_per_client = 2\nmax_ingest_bytes = \"200MiB\"\nbody_timeout = \"5s\"\nmin_body_rate = \"1MiB\"\nheader_timeout = \"3s\"\nhandshake_timeout = \"4s\"\nbody_idle_timeout = \"2s\"\n\n[metrics]\nlisten = \"127.0.0.1:9102\"\n",
        )
        .unwrap();
        let l = &c.limits;
        assert_eq!((l.max_connections, l.max_connections_per_client), (10, 2));
        assert_eq!(l.max_ingest_bytes, 200 << 20);
        assert_eq!(l.body_deadline(3 << 20), Duration::from_secs(8));
        assert_eq!(l.header_timeout, Duration::from_secs(3));
        assert_eq!(l.handshake_timeout, Duration::from_secs(4));
        assert_eq!(l.body_idle_timeout, Duration::from_secs(2));
        assert_eq!(c.metrics_listen, Some("127.0.0.1:9102".parse().unwrap()));
        assert_eq!(
            load_text("[collector]\nlisten = \"127.0.0.1:1\"\nstore_dir = \"/s\"\n")
                .unwrap()
                .limits,
            Limits::default()
        );
        // Unset, max_ingest_bytes follows a larger max_batch_bytes.
        let c = load_text(
            "[collector]\nlisten = \"127.0.0.1:1\"\nstore_dir = \"/s\"\nmax_batch_bytes = \"200MiB\"\n",
        )
        .unwrap();
        assert_eq!(c.limits.max_ingest_bytes, 800 << 20);
        for (text, want) in [
            (
                "[limits]\nmax_connections = 0\n",
                "F:6:19: max_connections: must be at least 1",
            ),
            (
                "[limits]\nbody_timeout = \"soon\"\n",
                "F:6:16: body_timeout:",
            ),
            (
                "[limits]\nmin_body_rate = \"fast\"\n",
                "F:6:17: min_body_rate:",
            ),
            (
                "[limits]\nslowloris = 1\n",
                "F:6:1: unknown field `slowloris`",
            ),
            ("[metrics]\nlisten = \"here\"\n", "F:6:10: listen:"),
            (
                "[limits]\nmax_ingest_bytes = \"100MiB\"\n",
                "F:6:20: max_ingest_bytes must be at least twice",
            ),
        ] {
            let e = load_text(&format!(
                "[collector]\nlisten = \"127.0.0.1:1\"\nstore_dir = \"/s\"\n\n{text}"
            ))
            .unwrap_err()
            .0;
            assert!(e.starts_with(want), "{e:?} should start with {want:?}");
        }
    }

    #[test]
    fn a_loopback_collector_may_speak_plain_http() {
        let c = load_text("[collector]\nlisten = \"127.0.0.1:8080\"\nstore_dir = \"/s\"\ntrust_on_first_use = true\n").unwrap();
        assert!(c.tls.is_none() && c.trust_on_first_use);
        assert_eq!(c.key_dir, PathBuf::from("/s/keys"));
        assert_eq!(c.max_batch_bytes, DEFAULT_MAX_BATCH);
    }
}
