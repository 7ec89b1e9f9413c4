//! The agent's configuration file (TOML). Unknown keys are refused; every
//! error names `file:line:column`.

mod auditd;
mod journald;
mod syslog;
pub use auditd::AuditdSourceConfig;
pub use journald::JournaldSourceConfig;
pub use syslog::{Listen, SyslogSourceConfig};

use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;
use wormlog_spool::hash::{Hash, sha256};
use wormlog_spool::record::AppendOnly;
use wormlog_spool::writer::options as defaults;
use wormlog_text::humanize::{parse_duration, parse_size};
use wormlog_text::location::line_col;

/// A configuration error, located.
#[derive(Debug)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for ConfigError {}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub agent: AgentSection,
    #[serde(default)]
    pub spool: SpoolSection,
    #[serde(default)]
    pub sources: Sources,
    /// Where to send the spool (absent: the agent only spools).
    pub forward: Option<ForwardSection>,
    /// The Prometheus endpoint (absent: none).
    pub metrics: Option<MetricsSection>,
}

/// `[metrics]`: where `GET /metrics` is served.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
    /// `address:port`, e.g. `"127.0.0.1:9810"`.
    pub listen: std::net::SocketAddr,
}

/// `[forward]`: the collector the spool is forwarded to.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardSection {
    /// `https://host:port`, or `http://` to a loopback address only.
    #[serde(default)]
    pub url: String,
    /// Several collectors (of one store) instead of `url`: the agent sends
    /// to the first and moves to the next when one stops answering.
    #[serde(default)]
    pub urls: Vec<String>,
    /// The CA that issued the collector's certificate (pinned: the system's
    /// roots are not used).
    pub ca_file: Option<PathBuf>,
    /// The agent's client certificate and key (mutual TLS).
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// A file holding a bearer token of a collector user with the `agent`
    /// role for this agent (instead of, or beside, a client certificate).
    pub token_file: Option<PathBuf>,
    /// Accept receipts only from this collector key (`ed25519:...`, the
    /// collector's `receipt.pub`). Default: any key whose signature is valid.
    pub collector_pubkey: Option<String>,
    /// Accept receipts only from these collector keys (with `urls`: each
    /// collector's `receipt.pub`); together with `collector_pubkey`.
    #[serde(default)]
    pub collector_pubkeys: Vec<String>,
    #[serde(default = "d_batch_records")]
    pub batch_records: u64,
    #[serde(default = "d_batch_bytes")]
    pub batch_bytes: Size,
    /// Batches sent before the answer to the first of them (1 to 8): the
    /// next batch travels while the collector verifies and fsyncs the last.
    #[serde(default = "d_in_flight")]
    pub in_flight: usize,
    /// `"zstd"` (default) or `"none"`.
    #[serde(default = "d_compression")]
    pub compression: String,
    /// Time allowed for one request, answer included.
    #[serde(default = "d_timeout")]
    pub timeout: Human,
    #[serde(default = "d_backoff_min")]
    pub backoff_min: Human,
    #[serde(default = "d_backoff_max")]
    pub backoff_max: Human,
}

fn d_batch_records() -> u64 {
    20_000
}
fn d_batch_bytes() -> Size {
    Size(4 << 20)
}
fn d_in_flight() -> usize {
    2
}
fn d_compression() -> String {
    "zstd".into()
}
fn d_timeout() -> Human {
    Human(Duration::from_secs(30))
}
fn d_backoff_min() -> Human {
    Human(Duration::from_millis(100))
}
fn d_backoff_max() -> Human {
    Human(Duration::from_secs(30))
}

/// The `[sources]` tables: one list per kind of source.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Sources {
    #[serde(default)]
    pub file: Vec<FileSourceConfig>,
    #[serde(default)]
    pub journald: Vec<JournaldSourceConfig>,
    #[serde(default)]
    pub syslog: Vec<SyslogSourceConfig>,
    #[serde(default)]
    pub auditd: Vec<AuditdSourceConfig>,
}

/// Where to start in a file that the spool has no position for, when the
/// source starts for the first time.
#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ReadFrom {
    #[default]
    Beginning,
    End,
}

/// `[[sources.file]]`: log files named by globs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSourceConfig {
    /// The source name recorded with every line (1–255 bytes, unique).
    pub name: String,
    /// Absolute glob patterns, e.g. `/var/log/app/*.log`.
    pub paths: Vec<String>,
    /// Glob patterns of paths or file names never read. Default: compressed
    /// rotations (`*.gz`, `*.bz2`, `*.xz`, `*.zst`, `*.zip`).
    #[serde(default = "d_exclude")]
    pub exclude: Vec<String>,
    /// For files found at the source's first start: `"beginning"` or `"end"`.
    #[serde(default)]
    pub read_from: ReadFrom,
    /// Default: `[spool] max_line_bytes`.
    pub max_line_bytes: Option<Size>,
    /// A last line without a newline is written (flagged) after this idle time.
    #[serde(default = "d_partial")]
    pub partial_line_timeout: Human,
    /// How often files are checked for new data, rotation and truncation
    /// (inotify wakes the source sooner when it can).
    #[serde(default = "d_poll")]
    pub poll_interval: Human,
    /// A file renamed out of the globs or deleted is still read this long
    /// after its last data (the program writing it may not have reopened
    /// its log yet).
    #[serde(default = "d_rotate_wait")]
    pub rotate_wait: Human,
}

fn d_exclude() -> Vec<String> {
    ["*.gz", "*.bz2", "*.xz", "*.zst", "*.zip"]
        .map(String::from)
        .to_vec()
}
fn d_partial() -> Human {
    Human(Duration::from_secs(5))
}
fn d_rotate_wait() -> Human {
    Human(Duration::from_secs(5))
}
fn d_poll() -> Human {
    Human(Duration::from_secs(1))
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSection {
    /// Default: the host name.
    pub id: Option<String>,
    #[serde(default = "default_spool_dir")]
    pub spool_dir: PathBuf,
    #[serde(default = "default_key_dir")]
    pub key_dir: PathBuf,
    /// The daemon's control socket, for `wormlog status` (mode 0600: the
    /// agent's user and root).
    #[serde(default = "default_control_socket")]
    pub control_socket: PathBuf,
}

fn default_control_socket() -> PathBuf {
    "/run/wormlog/control.sock".into()
}

impl Default for AgentSection {
    fn default() -> Self {
        AgentSection {
            id: None,
            spool_dir: default_spool_dir(),
            key_dir: default_key_dir(),
            control_socket: default_control_socket(),
        }
    }
}

fn default_spool_dir() -> PathBuf {
    "/var/lib/wormlog/spool".into()
}
fn default_key_dir() -> PathBuf {
    "/var/lib/wormlog/keys".into()
}

/// `"off"`, `"try"` or `"require"`.
#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AppendOnlyMode {
    Off,
    #[default]
    Try,
    Require,
}

/// A byte size written like `"64MiB"` (or a bare integer of bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size(pub u64);

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(Size(n)),
            Raw::S(s) => parse_size(&s).map(Size).map_err(serde::de::Error::custom),
        }
    }
}

/// A duration written like `"15m"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Human(pub Duration);

impl<'de> Deserialize<'de> for Human {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s)
            .map(Human)
            .map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpoolSection {
    #[serde(default)]
    pub append_only: AppendOnlyMode,
    #[serde(default = "d_seg_bytes")]
    pub segment_max_bytes: Size,
    #[serde(default = "d_seg_age")]
    pub segment_max_age: Human,
    #[serde(default = "d_commit_interval")]
    pub commit_interval: Human,
    #[serde(default = "d_commit_bytes")]
    pub commit_bytes: Size,
    #[serde(default = "d_cp_interval")]
    pub checkpoint_interval: Human,
    #[serde(default = "d_cp_bytes")]
    pub checkpoint_bytes: Size,
    #[serde(default = "d_heartbeat")]
    pub heartbeat_interval: Human,
    #[serde(default = "d_epoch")]
    pub epoch: Human,
    #[serde(default = "d_max_line")]
    pub max_line_bytes: Size,
    /// The most the spool may hold on disk.
    #[serde(default = "d_disk_budget")]
    pub disk_budget: Size,
    /// Warn (log line and alert record) when the spool passes this share of
    /// its budget, e.g. `"75%"`.
    #[serde(default = "d_budget_warning")]
    pub budget_warning: Percent,
    /// The spool is also full when its file system has less free than this.
    #[serde(default = "d_min_free")]
    pub min_free: Size,
    /// What the agent does when the spool is full.
    #[serde(default)]
    pub on_full: OnFull,
    /// Segments the collector acknowledged are removed once they are this
    /// old (sooner when the budget needs the room).
    #[serde(default = "d_retention")]
    pub retention: Human,
    /// Encrypt entries' fields and bodies to these age recipients
    /// (`age1…`); empty: in clear (docs/FORMAT.md §6.16).
    #[serde(default)]
    pub encrypt_to: Vec<String>,
}

/// `on_full`: `"block"` (sources stop reading until there is room) or
/// `"halt"` (the agent stops, with exit code 1).
#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OnFull {
    #[default]
    Block,
    Halt,
}

/// A share written like `"75%"`, 1 to 99.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Percent(pub u8);

impl<'de> Deserialize<'de> for Percent {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.strip_suffix('%')
            .and_then(|n| n.trim().parse::<u8>().ok())
            .filter(|n| (1..=99).contains(n))
            .map(Percent)
            .ok_or_else(|| {
                serde::de::Error::custom(format!("{s:?}: write a percentage from 1% to 99%"))
            })
    }
}

/// The default disk budget.
pub const DEFAULT_DISK_BUDGET: u64 = 4 << 30;
fn d_disk_budget() -> Size {
    Size(DEFAULT_DISK_BUDGET)
}
fn d_budget_warning() -> Percent {
    Percent(75)
}
fn d_min_free() -> Size {
    Size(256 << 20)
}
fn d_retention() -> Human {
    Human(Duration::from_secs(7 * 86400))
}

fn d_seg_bytes() -> Size {
    Size(defaults::DEFAULT_SEGMENT_MAX_BYTES)
}
fn d_seg_age() -> Human {
    Human(defaults::DEFAULT_SEGMENT_MAX_AGE)
}
fn d_commit_interval() -> Human {
    Human(defaults::DEFAULT_COMMIT_INTERVAL)
}
fn d_commit_bytes() -> Size {
    Size(defaults::DEFAULT_COMMIT_BYTES as u64)
}
fn d_cp_interval() -> Human {
    Human(defaults::DEFAULT_CHECKPOINT_INTERVAL)
}
fn d_cp_bytes() -> Size {
    Size(defaults::DEFAULT_CHECKPOINT_BYTES)
}
fn d_heartbeat() -> Human {
    Human(defaults::DEFAULT_HEARTBEAT_INTERVAL)
}
fn d_epoch() -> Human {
    Human(defaults::DEFAULT_EPOCH_DURATION)
}
/// Lines longer than this are split into parts that say so.
pub const DEFAULT_MAX_LINE_BYTES: u64 = 1 << 20;
fn d_max_line() -> Size {
    Size(DEFAULT_MAX_LINE_BYTES)
}

impl Default for SpoolSection {
    fn default() -> Self {
        toml::from_str("").expect("defaults parse")
    }
}

/// A loaded configuration, with its file's hash.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    pub sha256: Hash,
}

impl Loaded {
    /// The agent id: configured, or the host name.
    pub fn agent_id(&self) -> String {
        self.config.agent.id.clone().unwrap_or_else(hostname)
    }

    /// The writer's options.
    pub fn spool_options(&self, program: &str) -> wormlog_spool::SpoolOptions {
        let s = &self.config.spool;
        let mut o = wormlog_spool::SpoolOptions::new(&self.config.agent.spool_dir, self.agent_id());
        o.append_only = match s.append_only {
            AppendOnlyMode::Off => AppendOnly::Off,
            AppendOnlyMode::Try => AppendOnly::Try,
            AppendOnlyMode::Require => AppendOnly::Require,
        };
        o.segment_max_bytes = s.segment_max_bytes.0;
        o.segment_max_age = s.segment_max_age.0;
        o.commit_interval = s.commit_interval.0;
        o.commit_bytes = s.commit_bytes.0 as usize;
        o.checkpoint_interval = s.checkpoint_interval.0;
        o.checkpoint_bytes = s.checkpoint_bytes.0;
        o.heartbeat_interval = s.heartbeat_interval.0;
        o.epoch_duration = s.epoch.0;
        o.program = format!("wormlog {} {program}", env!("CARGO_PKG_VERSION"));
        o.config_sha256 = self.sha256;
        o.encrypt_to = s.encrypt_to.clone();
        o.on_commit = Some(wormlog_spool::writer::CommitObserver(std::sync::Arc::new(
            |d| {
                crate::metrics::get()
                    .spool_commit_seconds
                    .observe(d.as_secs_f64())
            },
        )));
        o
    }
}

/// The host name, as the kernel has it.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// The agent id must be one the collector takes (docs/FORMAT.md §10.1,
/// [`wormlog_spool::agent_id`]), whether written or the host name's.
fn check_agent_id(id: Option<&str>, hostname: impl FnOnce() -> String) -> Result<(), String> {
    match id {
        Some(id) => wormlog_spool::agent_id::check(id).map_err(|e| format!("agent id {id:?}: {e}")),
        None => {
            let host = hostname();
            wormlog_spool::agent_id::check(&host).map_err(|e| {
                format!(
                    "the agent id defaults to the host name, {host:?}, which is not a valid agent id: {e}; set [agent] id"
                )
            })
        }
    }
}

/// Reads and checks a configuration file.
pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
    load_on_host(path, hostname)
}

/// [`load`] on a host named by `hostname` (the agent id's default).
fn load_on_host(path: &Path, hostname: fn() -> String) -> Result<Loaded, ConfigError> {
    let bytes = std::fs::read(path).map_err(|e| ConfigError(format!("{}: {e}", path.display())))?;
    let text = std::str::from_utf8(&bytes).map_err(|e| {
        let (line, col) = line_col(&bytes, e.valid_up_to());
        ConfigError(format!(
            "{}:{line}:{col}: the file is not valid UTF-8",
            path.display()
        ))
    })?;
    let config: Config = toml::from_str(text).map_err(|e| locate(path, text, &e))?;
    validate(path, text, &config, hostname)?;
    Ok(Loaded {
        config,
        sha256: sha256(&bytes),
    })
}

fn locate(path: &Path, text: &str, e: &toml::de::Error) -> ConfigError {
    let (line, col) = e
        .span()
        .map_or((1, 1), |span| line_col(text.as_bytes(), span.start));
    let msg = e.message().trim().replace('\n', " ");
    ConfigError(format!("{}:{line}:{col}: {msg}", path.display()))
}

impl ForwardSection {
    /// Whether batches are sent compressed with zstd (`compression`).
    pub fn zstd(&self) -> bool {
        self.compression == "zstd"
    }

    /// The collectors' URLs, in the order they are tried.
    pub fn targets(&self) -> Vec<&str> {
        if self.urls.is_empty() {
            vec![self.url.as_str()]
        } else {
            self.urls.iter().map(String::as_str).collect()
        }
    }

    /// The collector keys receipts must be signed with (empty: any).
    pub fn receipt_keys(&self) -> Vec<&str> {
        self.collector_pubkey
            .iter()
            .chain(&self.collector_pubkeys)
            .map(String::as_str)
            .collect()
    }
}

/// Checks `[forward]`; an error names the key it is about.
fn validate_forward(f: &ForwardSection) -> Result<(), (&'static str, String)> {
    match (f.url.is_empty(), f.urls.is_empty()) {
        (true, true) => return Err(("url", "[forward] needs url (or urls)".into())),
        (false, false) => return Err(("urls", "url and urls: set one of them".into())),
        _ => {}
    }
    let key = if f.urls.is_empty() { "url" } else { "urls" };
    for url in f.targets() {
        validate_url(key, url)?;
    }
    validate_forward_rest(f)
}

/// Checks one collector URL.
fn validate_url(key: &'static str, url: &str) -> Result<(), (&'static str, String)> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| (key, format!("{key}: {url:?} is not a URL")))?;
    let host = rest.split('/').next().unwrap_or("");
    let hostname = match host.rsplit_once(':') {
        Some((h, p)) if p.parse::<u16>().is_ok() => h,
        _ => host,
    };
    match scheme {
        "https" => {}
        "http" => {
            let h = hostname.trim_start_matches('[').trim_end_matches(']');
            let loopback = h == "localhost"
                || h.parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback());
            if !loopback {
                return Err((
                    key,
                    format!(
                        "{key}: {url:?}: plain http is allowed only to a loopback address; use https"
                    ),
                ));
            }
        }
        _ => {
            return Err((
                key,
                format!("{key}: {url:?}: use https:// (or http:// to loopback)"),
            ));
        }
    }
    if hostname.is_empty() {
        return Err((key, format!("{key}: {url:?} names no host")));
    }
    Ok(())
}

/// Checks the rest of `[forward]`.
fn validate_forward_rest(f: &ForwardSection) -> Result<(), (&'static str, String)> {
    if f.cert_file.is_some() != f.key_file.is_some() {
        let key = if f.cert_file.is_some() {
            "cert_file"
        } else {
            "key_file"
        };
        return Err((key, "cert_file and key_file go together".into()));
    }
    if !matches!(f.compression.as_str(), "zstd" | "none") {
        return Err((
            "compression",
            format!("compression {:?}: use \"zstd\" or \"none\"", f.compression),
        ));
    }
    if f.batch_records == 0 {
        return Err(("batch_records", "batch_records must be at least 1".into()));
    }
    if !(1..=8).contains(&f.in_flight) {
        return Err(("in_flight", "in_flight must be 1 to 8".into()));
    }
    if f.batch_bytes.0 < 4096 || f.batch_bytes.0 > 64 << 20 {
        return Err(("batch_bytes", "batch_bytes must be 4KiB to 64MiB".into()));
    }
    if let Some(k) = &f.collector_pubkey
        && let Err(e) = wormlog_spool::keys::parse_pubkey(k)
    {
        return Err(("collector_pubkey", format!("collector_pubkey: {e}")));
    }
    for k in &f.collector_pubkeys {
        if let Err(e) = wormlog_spool::keys::parse_pubkey(k) {
            return Err((
                "collector_pubkeys",
                format!("collector_pubkeys: {k:?}: {e}"),
            ));
        }
    }
    if f.backoff_min.0.is_zero() || f.backoff_max.0 < f.backoff_min.0 {
        return Err((
            "backoff_min",
            "backoff_min must be more than 0 and at most backoff_max".into(),
        ));
    }
    if f.timeout.0.is_zero() {
        return Err(("timeout", "timeout must be more than 0".into()));
    }
    Ok(())
}

fn validate(
    path: &Path,
    text: &str,
    c: &Config,
    hostname: fn() -> String,
) -> Result<(), ConfigError> {
    let at = |key: &str, msg: String| {
        let (line, col) = find_assignment(text, key, None, 0);
        ConfigError(format!("{}:{line}:{col}: {msg}", path.display()))
    };
    if c.agent.id.is_some() {
        check_agent_id(c.agent.id.as_deref(), hostname).map_err(|m| at("id", m))?;
    }
    let s = &c.spool;
    if s.segment_max_bytes.0 < 1 << 20 {
        return Err(at(
            "segment_max_bytes",
            "segment_max_bytes must be at least 1MiB".into(),
        ));
    }
    if s.commit_bytes.0 < 4096 || s.commit_bytes.0 > 256 << 20 {
        return Err(at(
            "commit_bytes",
            "commit_bytes must be between 4KiB and 256MiB".into(),
        ));
    }
    if s.checkpoint_interval.0.is_zero() || s.heartbeat_interval.0 < s.checkpoint_interval.0 {
        return Err(at(
            "heartbeat_interval",
            "heartbeat_interval must be at least checkpoint_interval, which must not be zero"
                .into(),
        ));
    }
    if let Err(e) = wormlog_spool::crypt::Recipients::parse(&s.encrypt_to) {
        return Err(at("encrypt_to", e.to_string()));
    }
    if s.epoch.0 < Duration::from_secs(1) {
        return Err(at("epoch", "epoch must be at least 1s".into()));
    }
    if s.max_line_bytes.0 < 16 || s.max_line_bytes.0 > 16 << 20 {
        return Err(at(
            "max_line_bytes",
            "max_line_bytes must be between 16B and 16MiB".into(),
        ));
    }
    if s.disk_budget.0 < 4 * s.segment_max_bytes.0 {
        return Err(at(
            "disk_budget",
            format!(
                "disk_budget must be at least 4 segments (4 x segment_max_bytes = {} bytes)",
                4 * s.segment_max_bytes.0
            ),
        ));
    }
    if let Some(f) = &c.forward {
        validate_forward(f).map_err(|(key, m)| at(key, m))?;
    }
    // Every source's name, in the order written (a duplicate is reported
    // where it is written, not at the first one).
    let all_names: Vec<&str> = c
        .sources
        .file
        .iter()
        .map(|f| f.name.as_str())
        .chain(c.sources.journald.iter().map(|j| j.name.as_str()))
        .chain(c.sources.syslog.iter().map(|j| j.name.as_str()))
        .chain(c.sources.auditd.iter().map(|j| j.name.as_str()))
        .collect();
    // Where source `name` (its `nth` occurrence) is written.
    let source_at = |name: &str, nth: usize, msg: String| {
        let (line, col) = find_assignment(text, "name", Some(name), nth);
        ConfigError(format!(
            "{}:{line}:{col}: source {name:?}: {msg}",
            path.display()
        ))
    };
    let mut names = std::collections::BTreeSet::new();
    for (i, name) in all_names.iter().enumerate() {
        let nth = all_names[..i].iter().filter(|n| *n == name).count();
        if name.is_empty() || name.len() > 255 || name.chars().any(char::is_control) {
            return Err(source_at(
                name,
                nth,
                "the name must be 1 to 255 bytes without control characters".into(),
            ));
        }
        if name.starts_with('@') {
            return Err(source_at(
                name,
                nth,
                "names starting with '@' are reserved".into(),
            ));
        }
        if !names.insert(*name) {
            return Err(source_at(
                name,
                nth,
                "another source has the same name".into(),
            ));
        }
    }
    // Names are unique from here on: each is written once.
    for f in &c.sources.file {
        let here = |msg: String| source_at(&f.name, 0, msg);
        if f.paths.is_empty() {
            return Err(here("`paths` must name at least one glob".into()));
        }
        for p in f.paths.iter().chain(&f.exclude) {
            if let Err(e) = glob::Pattern::new(p) {
                return Err(here(format!("invalid glob {p:?}: {e}")));
            }
        }
        if let Some(p) = f.paths.iter().find(|p| !p.starts_with('/')) {
            return Err(here(format!("path {p:?} must be absolute")));
        }
        if let Some(m) = f.max_line_bytes
            && (m.0 < 16 || m.0 > 16 << 20)
        {
            return Err(here("max_line_bytes must be between 16B and 16MiB".into()));
        }
        if f.poll_interval.0 < Duration::from_millis(10) {
            return Err(here("poll_interval must be at least 10ms".into()));
        }
    }
    for j in &c.sources.journald {
        j.validate().map_err(|msg| source_at(&j.name, 0, msg))?;
    }
    for s in &c.sources.syslog {
        s.validate().map_err(|msg| source_at(&s.name, 0, msg))?;
    }
    for a in &c.sources.auditd {
        a.validate().map_err(|msg| source_at(&a.name, 0, msg))?;
    }
    // Last: this one is about the host, not about a line of the file.
    if c.agent.id.is_none() {
        check_agent_id(None, hostname).map_err(|m| at("id", m))?;
    }
    Ok(())
}

/// Where the `nth` (from 0) `key = …` (with that value, when given) is
/// written: (line, column), or 1:1.
fn find_assignment(text: &str, key: &str, value: Option<&str>, nth: usize) -> (usize, usize) {
    let mut seen = 0;
    for (i, line) in text.lines().enumerate() {
        let t = line.trim_start();
        if let Some(rest) = t.strip_prefix(key)
            && let Some(v) = rest.trim_start().strip_prefix('=')
            && value.is_none_or(|want| v.trim().trim_matches('"') == want)
        {
            if seen == nth {
                return (i + 1, line.len() - t.len() + 1);
            }
            seen += 1;
        }
    }
    (1, 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_str(s: &str) -> Result<Loaded, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("agent.toml");
        std::fs::write(&p, s).unwrap();
        // Whatever this machine is called.
        load_on_host(&p, || "test-host".into())
            .map_err(|e| ConfigError(e.0.replace(&p.display().to_string(), "F")))
    }

    #[test]
    fn defaults_and_locations() {
        let c = load_str("[agent]\nid = \"web-01\"\n").unwrap();
        assert_eq!(c.agent_id(), "web-01");
        assert_eq!(c.config.spool.segment_max_bytes.0, 32 << 20);
        let e = load_str("[agent]\nid = \"a\"\nbogus = 1\n").unwrap_err();
        assert!(e.0.starts_with("F:3:1: "), "{e}");
        let e = load_str("[spool]\nsegment_max_bytes = \"12XB\"\n").unwrap_err();
        assert!(e.0.starts_with("F:2:21: "), "{e}");
        assert!(e.0.contains("XB"), "{e}");
        let e = load_str("[spool]\ncommit_bytes = \"1KiB\"\n").unwrap_err();
        assert!(e.0.starts_with("F:2:1: "), "{e}");
        let e = load_str("[agent\n").unwrap_err();
        assert!(e.0.starts_with("F:1:"), "{e}");
    }

    #[test]
    fn an_agent_id_the_collector_would_refuse_is_refused_where_it_is_written() {
        let e = load_str("[agent]\nspool_dir = \"/s\"\nid = \"Web_01\"\n").unwrap_err();
        assert!(e.0.starts_with("F:3:1: agent id \"Web_01\": "), "{e}");
        assert!(e.0.contains("lower case"), "{e}");
        let e = load_str("[agent]\nid = \"web_01\"\n").unwrap_err();
        assert!(e.0.starts_with("F:2:1: "), "{e}");
        assert!(e.0.contains("'_'"), "{e}");
        for bad in ["", ".web", "web.", "-web", "10.0.0.1", "a..b"] {
            let e = load_str(&format!("[agent]\nid = {bad:?}\n")).unwrap_err();
            assert!(e.0.starts_with("F:2:1: agent id"), "{bad:?}: {e}");
        }
        assert!(load_str("[agent]\nid = \"web-01.example.com\"\n").is_ok());
        // Without an id, the host name must pass the same rule.
        assert_eq!(check_agent_id(None, || "web-01".into()), Ok(()));
        let e = check_agent_id(None, || "Build_Host".into()).unwrap_err();
        assert!(e.contains("\"Build_Host\""), "{e}");
        assert!(e.contains("set [agent] id"), "{e}");
        // An explicit id is checked, not the host name.
        assert_eq!(check_agent_id(Some("web-01"), || unreachable!()), Ok(()));
    }

    /// Whatever the rule accepts, rustls takes as a DNS name: a client
    /// certificate can carry it, and the collector's mutual-TLS check
    /// (`ServerName::try_from`) does not refuse it.
    #[test]
    fn every_agent_id_is_a_dns_name_for_tls() {
        use proptest::prelude::*;
        use rustls_pki_types::ServerName;
        proptest!(ProptestConfig::with_cases(512), |(id in "[a-z0-9.-]{1,70}")| {
            if wormlog_spool::agent_id::check(&id).is_ok() {
                prop_assert!(
                    matches!(ServerName::try_from(id.as_str()), Ok(ServerName::DnsName(_))),
                    "{id:?}"
                );
            }
        });
        for id in ["web-01", "x1.2y", "0xg", "1web", "a.b-c.d"] {
            assert!(wormlog_spool::agent_id::check(id).is_ok());
            assert!(matches!(
                ServerName::try_from(id),
                Ok(ServerName::DnsName(_))
            ));
        }
    }

    #[test]
    fn forward_errors_name_the_key_they_are_about() {
        let base = "[forward]\nurl = \"https://c.example:8443\"\n";
        assert!(load_str(base).unwrap().config.forward.is_some());
        let cases = [
            (
                "[forward]\nurl = \"http://10.0.0.1:80\"\n",
                "F:2:1: ",
                "loopback",
            ),
            ("[forward]\nurl = \"ftp://x\"\n", "F:2:1: ", "https"),
            (
                "[forward]\nurl = \"http://127.0.0.1:80\"\ncert_file = \"/a\"\n",
                "F:3:1: ",
                "go together",
            ),
            (
                "[forward]\nurl = \"https://c\"\n\ncompression = \"lz4\"\n",
                "F:4:1: ",
                "zstd",
            ),
            (
                "[forward]\nurl = \"https://c\"\nbatch_bytes = \"1KiB\"\n",
                "F:3:1: ",
                "batch_bytes",
            ),
            (
                "[forward]\nurl = \"https://c\"\ncollector_pubkey = \"x\"\n",
                "F:3:1: ",
                "collector_pubkey",
            ),
            (
                "[forward]\nurl = \"https://c\"\nbackoff_min = \"1m\"\n",
                "F:3:1: ",
                "backoff_max",
            ),
            (
                "[forward]\nurl = \"https://c\"\ntimeout = \"0s\"\n",
                "F:3:1: ",
                "timeout",
            ),
            (
                "[forward]\nbatch_records = 5\nurls = [\"https://a\", \"http://10.0.0.2\"]\n",
                "F:3:1: ",
                "loopback",
            ),
            (
                "[forward]\nurl = \"https://c\"\nurls = [\"https://a\"]\n",
                "F:3:1: ",
                "set one",
            ),
            (
                "[forward]\nurls = [\"https://a\"]\ncollector_pubkeys = [\"x\"]\n",
                "F:3:1: ",
                "collector_pubkeys",
            ),
        ];
        for (text, at, says) in [
            (
                "[spool]\nbudget_warning = \"75\"\n",
                "F:2:18: ",
                "percentage",
            ),
            (
                "[spool]\nbudget_warning = \"100%\"\n",
                "F:2:18: ",
                "1% to 99%",
            ),
            ("[spool]\non_full = \"drop\"\n", "F:2:11: ", "block"),
            (
                "[spool]\ndisk_budget = \"64MiB\"\n",
                "F:2:1: ",
                "4 segments",
            ),
        ] {
            let e = load_str(text).unwrap_err().0;
            assert!(e.starts_with(at) && e.contains(says), "{text:?}: {e}");
        }
        let c =
            load_str("[spool]\nbudget_warning = \"80%\"\non_full = \"halt\"\nretention = \"1d\"\n")
                .unwrap()
                .config;
        assert_eq!(c.spool.budget_warning, Percent(80));
        assert_eq!(c.spool.on_full, OnFull::Halt);
        assert_eq!(c.spool.disk_budget.0, DEFAULT_DISK_BUDGET);
        for (text, at, says) in [
            (
                "[[sources.journald]]\nname = \"j\"\ndirectory = \"rel\"\n",
                "F:2:1: ",
                "absolute",
            ),
            (
                "[[sources.journald]]\nname = \"j\"\nmatches = [\"bad match\"]\n",
                "F:2:1: ",
                "FIELD=value",
            ),
            (
                "[[sources.syslog]]\nname = \"s\"\nlisten = \"http://x\"\n",
                "F:2:1: ",
                "udp://",
            ),
            (
                "[[sources.syslog]]\nname = \"s\"\nlisten = \"tls://0.0.0.0:6514\"\n",
                "F:2:1: ",
                "tls_cert",
            ),
            (
                "[[sources.syslog]]\nname = \"s\"\nlisten = \"udp://1.2.3.4\"\n",
                "F:2:1: ",
                "ADDRESS:PORT",
            ),
            (
                "[[sources.auditd]]\nname = \"a\"\npath = \"/var/log/audit/*.log\"\n",
                "F:2:1: ",
                "not a glob",
            ),
            (
                "[[sources.file]]\nname = \"x\"\npaths = [\"/a\"]\n[[sources.syslog]]\nname = \"x\"\nlisten = \"udp://127.0.0.1:514\"\n",
                "F:5:1: ",
                "same name",
            ),
        ] {
            let e = load_str(text).unwrap_err().0;
            assert!(e.starts_with(at) && e.contains(says), "{text:?}: {e}");
        }
        let e = load_str("[[sources.file]]\nname = \"@forward\"\npaths = [\"/x\"]\n").unwrap_err();
        assert!(
            e.0.starts_with("F:2:1: ") && e.0.contains("reserved"),
            "{e}"
        );
        for (text, at, says) in cases {
            let e = load_str(text).unwrap_err().0;
            assert!(e.starts_with(at) && e.contains(says), "{text:?}: {e}");
        }
    }
}
