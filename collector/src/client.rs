//! The remote client of the reading API: `wormlog-collector query`,
//! `export` and `disclose` against a running collector, over HTTPS with a
//! bearer token or a client certificate.

use anyhow::{Context, bail};
use serde_json::Value;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

/// Where the collector is and how to prove who we are.
#[derive(Debug, Clone, Default)]
pub struct Remote {
    pub url: String,
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub token: Option<String>,
    pub token_file: Option<PathBuf>,
}

impl Remote {
    fn token(&self) -> anyhow::Result<Option<String>> {
        if let Some(t) = &self.token {
            return Ok(Some(t.clone()));
        }
        if let Some(p) = &self.token_file {
            let t = std::fs::read_to_string(p).with_context(|| format!("{}", p.display()))?;
            return Ok(Some(t.trim().to_owned()));
        }
        Ok(std::env::var("WORMLOG_TOKEN")
            .ok()
            .filter(|t| !t.is_empty()))
    }

    fn client(&self) -> anyhow::Result<reqwest::blocking::Client> {
        let client = match (&self.cert, &self.key) {
            (Some(c), Some(k)) => Some((c.as_path(), k.as_path())),
            (None, None) => None,
            _ => bail!("--cert and --key go together"),
        };
        let tls = wormlog_tls::client_config(self.ca.as_deref(), client)?;
        Ok(reqwest::blocking::Client::builder()
            .tls_backend_preconfigured(tls)
            .timeout(std::time::Duration::from_secs(300))
            .user_agent(concat!("wormlog-collector/", env!("CARGO_PKG_VERSION")))
            .build()?)
    }

    /// GET `path` (with `query`): the answer's status and body.
    fn get(&self, path: &str, query: &[(&str, String)]) -> anyhow::Result<(u16, Vec<u8>)> {
        let url = reqwest::Url::parse_with_params(
            &format!("{}{path}", self.url.trim_end_matches('/')),
            query.iter().map(|(k, v)| (*k, v.as_str())),
        )
        .with_context(|| format!("--url {}", self.url))?;
        let mut req = self.client()?.get(url);
        if let Some(t) = self.token()? {
            req = req.bearer_auth(t);
        }
        let resp = req
            .send()
            .map_err(|e| anyhow::anyhow!("{}: {}", self.url, chain(&e)))?;
        let status = resp.status().as_u16();
        Ok((status, resp.bytes()?.to_vec()))
    }
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// The exit code for an answer that is not 200, with its reason printed.
fn refused(status: u16, body: &[u8]) -> ExitCode {
    let reason = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v["reason"].as_str().map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
    eprintln!("wormlog-collector: the collector answered {status}: {reason}");
    ExitCode::from(2)
}

/// What `query` asks.
#[derive(Debug, Clone, Default)]
pub struct Search {
    pub agent: String,
    pub from: Option<String>,
    pub to: Option<String>,
    pub source: Option<String>,
    pub kind: Option<String>,
    pub text: Option<String>,
    pub oldest_first: bool,
    pub limit: Option<u64>,
    pub cursor: Option<u64>,
    /// Follow the pages to the end.
    pub all: bool,
}

/// `query`: the records as JSON lines on standard output (the shape of
/// `wormlog cat --json`, with `agent`); the cursor of the next page and
/// any note on standard error.
pub fn query(r: &Remote, s: &Search) -> anyhow::Result<ExitCode> {
    let mut q: Vec<(&str, String)> = Vec::new();
    for (k, v) in [
        ("from", &s.from),
        ("to", &s.to),
        ("source", &s.source),
        ("kind", &s.kind),
        ("text", &s.text),
    ] {
        if let Some(v) = v {
            q.push((k, v.clone()));
        }
    }
    q.push((
        "order",
        if s.oldest_first { "oldest" } else { "newest" }.into(),
    ));
    if let Some(l) = s.limit {
        q.push(("limit", l.to_string()));
    }
    let mut cursor = s.cursor;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let path = format!("/v1/agents/{}/records", s.agent);
    loop {
        let mut qq = q.clone();
        if let Some(c) = cursor {
            qq.push(("cursor", c.to_string()));
        }
        let (status, body) = r.get(&path, &qq)?;
        if status != 200 {
            return Ok(refused(status, &body));
        }
        let v: Value = serde_json::from_slice(&body).context("the collector's answer")?;
        for rec in v["records"].as_array().into_iter().flatten() {
            writeln!(out, "{rec}")?;
        }
        if let Some(n) = v["note"].as_str() {
            eprintln!("wormlog-collector: note: {n}");
        }
        cursor = v["next_cursor"].as_u64();
        match cursor {
            Some(_) if s.all => continue,
            Some(c) => {
                out.flush()?;
                eprintln!("wormlog-collector: more: --cursor {c}");
                break;
            }
            None => break,
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// `export` and `disclose`: the bundle written to `out`.
pub fn fetch_bundle(
    r: &Remote,
    path: &str,
    query: &[(&str, String)],
    out: &std::path::Path,
) -> anyhow::Result<ExitCode> {
    let (status, body) = r.get(path, query)?;
    if status != 200 {
        return Ok(refused(status, &body));
    }
    std::fs::write(out, &body).with_context(|| format!("{}", out.display()))?;
    eprintln!(
        "wormlog-collector: wrote {} ({} bytes); check it with: wormlog verify --bundle {} --pubkey AGENT_FIRST_KEY --collector-pubkey COLLECTOR_RECEIPT_KEY",
        out.display(),
        body.len(),
        out.display()
    );
    Ok(ExitCode::SUCCESS)
}
