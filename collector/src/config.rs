//! The collector's configuration file (TOML). Unknown keys are refused;
//! every error names `file:line:column`.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use toml::Spanned;
use wormlog_text::humanize::parse_size;
use wormlog_text::location::line_col;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    collector: Section,
    #[serde(default)]
    agents: Vec<AgentEntry>,
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

/// Whether `id` may name an agent: 1–255 bytes of `A-Z a-z 0-9 . _ -`, not
/// starting with a dot (it is a directory name in the store).
pub fn valid_agent_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 255
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

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
            if !listen.ip().is_loopback() {
                return Err(at(
                    c.listen.span().start,
                    format!(
                        "listen: plain HTTP (no tls_cert/tls_key) is allowed only on a loopback address, not {listen}"
                    ),
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
        if !valid_agent_id(id) {
            return Err(at(
                a.id.span().start,
                format!("agent id {id:?}: use 1-255 of A-Z a-z 0-9 . _ - (not starting with '.')"),
            ));
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
    Ok(Config {
        listen,
        key_dir: c.key_dir.unwrap_or_else(|| c.store_dir.join("keys")),
        store_dir: c.store_dir,
        id,
        tls,
        trust_on_first_use: c.trust_on_first_use,
        max_batch_bytes,
        append_only,
        agents,
    })
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
        ];
        for (text, want) in cases {
            let e = load_text(text).unwrap_err().0;
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
