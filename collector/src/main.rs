//! `wormlog-collector`: receives agents' chains over HTTPS, verifies every
//! batch before storing it, keeps byte-exact write-once copies, and
//! countersigns each checkpoint with a receipt.
//!
//! Exit codes: 0 success; 1 tampering or loss found (verify, cat); 2 usage,
//! configuration or I/O error.

#![forbid(unsafe_code)]

mod config;
mod metrics;
mod own_log;
mod receipts;
mod server;
mod snapshot;
mod store;

use clap::{Parser, Subcommand};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(name = "wormlog-collector", version, about = "The wormlog collector")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Serve agents (HTTPS, or HTTP on loopback only).
    Serve {
        #[arg(long)]
        config: PathBuf,
    },
    /// Check the configuration; exit 2 with file:line:column if it is wrong.
    CheckConfig {
        #[arg(long)]
        config: PathBuf,
    },
    /// Verify every agent's chain in a store (and the collector's own log).
    Verify {
        #[arg(long)]
        store: PathBuf,
        /// Only this agent.
        #[arg(long)]
        agent: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Print an agent's records (the same output as `wormlog cat`).
    Cat {
        #[arg(long)]
        store: PathBuf,
        #[arg(long)]
        agent: String,
        #[arg(long, default_value_t = 0)]
        from: u64,
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let r = match cli.cmd {
        Cmd::Serve { config } => serve(&config),
        Cmd::CheckConfig { config } => config::load(&config)
            .map(|c| {
                println!(
                    "{}: ok ({} agents registered{})",
                    config.display(),
                    c.agents.len(),
                    if c.trust_on_first_use {
                        ", trust on first use"
                    } else {
                        ""
                    }
                );
                ExitCode::SUCCESS
            })
            .map_err(anyhow::Error::from),
        Cmd::Verify { store, agent, json } => verify(&store, agent.as_deref(), json),
        Cmd::Cat {
            store,
            agent,
            from,
            json,
        } => cat(&store, &agent, from, json),
    };
    match r {
        Ok(c) => c,
        Err(e) => {
            eprintln!("wormlog-collector: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn serve(path: &Path) -> anyhow::Result<ExitCode> {
    use anyhow::Context;
    let cfg = config::load(path)?;
    let config_sha256 = wormlog_spool::hash::sha256(&std::fs::read(path)?);
    std::fs::create_dir_all(cfg.store_dir.join("agents"))
        .with_context(|| format!("{}", cfg.store_dir.display()))?;
    let signer = receipts::Signer::load_or_create(&cfg.key_dir, &cfg.id)
        .with_context(|| format!("receipt key in {}", cfg.key_dir.display()))?;
    let (own_log, warnings) = own_log::OwnLog::open(
        &cfg.store_dir,
        &cfg.key_dir,
        &cfg.id,
        cfg.append_only,
        config_sha256,
    )
    .context("the collector's own log")?;
    for w in warnings {
        eprintln!("wormlog-collector: warning: {w}");
    }
    let tls = cfg.tls.as_ref().map(server::tls_config).transpose()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let listen = cfg.listen;
    let receipt_key = wormlog_spool::keys::format_pubkey(&signer.pubkey());
    let app = server::App::new(cfg, signer, own_log.clone());
    let r = rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("listen on {listen}"))?;
        eprintln!(
            "wormlog-collector: listening on {} ({}); receipt key {receipt_key}",
            listener.local_addr()?,
            if tls.is_some() {
                "https"
            } else {
                "http, loopback only"
            }
        );
        let shutdown = async {
            use tokio::signal::unix::{SignalKind, signal};
            let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
            let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
            tokio::select! {
                _ = term.recv() => {},
                _ = int.recv() => {},
            }
        };
        server::serve(app, listener, tls, shutdown).await;
        anyhow::Ok(())
    });
    own_log.close("collector stopped");
    rt.shutdown_timeout(std::time::Duration::from_secs(5));
    r.map(|()| ExitCode::SUCCESS)
}

/// A chain in a store: its name, directory and first public key if known.
type Chain = (String, PathBuf, Option<[u8; 32]>);

/// The chains in a store: every agent, then the collector's own log.
fn chains(store: &Path, only: Option<&str>) -> anyhow::Result<Vec<Chain>> {
    let mut out = Vec::new();
    let agents = store.join("agents");
    let mut names: Vec<String> = match std::fs::read_dir(&agents) {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(e) => anyhow::bail!("{}: {e} (not a collector store?)", agents.display()),
    };
    names.sort();
    for n in names {
        if only.is_some_and(|o| o != n) {
            continue;
        }
        let dir = agents.join(&n);
        let pk = std::fs::read_to_string(dir.join("pubkey"))
            .ok()
            .and_then(|s| wormlog_spool::keys::parse_pubkey(s.trim()).ok());
        out.push((n, dir, pk));
    }
    if only.is_none() && store.join("log").is_dir() {
        out.push(("(collector log)".into(), store.join("log"), None));
    }
    if let Some(o) = only
        && out.is_empty()
    {
        anyhow::bail!("no agent {o:?} in {}", store.display());
    }
    Ok(out)
}

fn verify(store: &Path, only: Option<&str>, json: bool) -> anyhow::Result<ExitCode> {
    let mut bad = false;
    let mut reports = Vec::new();
    for (name, dir, pk) in chains(store, only)? {
        let r = wormlog_spool::verify::verify_spool(&dir, pk, &mut |_, _, _| {})?;
        bad |= !r.ok();
        if json {
            reports.push(serde_json::json!({
                "chain": name,
                "ok": r.ok(),
                "records": r.records,
                "entries": r.entries,
                "checkpoints": r.checkpoints,
                "receipts": r.receipts,
                "tree_size": r.tree_size,
                "root": wormlog_spool::hash::hex(&r.root),
                "key_authenticated": r.key_authenticated,
                "failure": r.failure.as_ref().map(|f| serde_json::json!({
                    "segment": f.segment, "offset": f.offset, "seq": f.seq, "reason": f.reason,
                })),
            }));
        } else {
            match &r.failure {
                None => println!(
                    "{name}: OK: {} records ({} entries) in {} segments, {} checkpoints, root {}{}",
                    r.records,
                    r.entries,
                    r.segments,
                    r.checkpoints,
                    wormlog_spool::hash::hex(&r.root),
                    if r.key_authenticated {
                        ", first key as registered"
                    } else {
                        ""
                    }
                ),
                Some(f) => println!(
                    "{name}: TAMPERING OR LOSS at segment {}, byte offset {}, seq {}: {}",
                    f.segment, f.offset, f.seq, f.reason
                ),
            }
        }
    }
    if json {
        println!("{}", serde_json::Value::Array(reports));
    }
    Ok(ExitCode::from(if bad { 1 } else { 0 }))
}

fn cat(store: &Path, agent: &str, from: u64, json: bool) -> anyhow::Result<ExitCode> {
    let chains = chains(store, Some(agent))?;
    let (_, dir, pk) = &chains[0];
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
    let mut broken = false;
    let report = wormlog_spool::verify::verify_spool(dir, *pk, &mut |loc, rec, _| {
        if broken || rec.seq < from {
            return;
        }
        let r = if json {
            writeln!(
                out,
                "{}",
                wormlog_text::render::record_json(rec, loc.segment, loc.offset)
            )
        } else {
            writeln!(out, "{}", wormlog_text::render::record_line(rec))
        };
        broken = r.is_err();
    })?;
    let _ = out.flush();
    Ok(match &report.failure {
        None => ExitCode::SUCCESS,
        Some(f) => {
            eprintln!(
                "wormlog-collector: TAMPERING OR LOSS at segment {}, byte offset {}, seq {}: {}",
                f.segment, f.offset, f.seq, f.reason
            );
            ExitCode::from(1)
        }
    })
}
