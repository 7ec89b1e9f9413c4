//! The subcommands, as library functions the thin `main.rs` calls and
//! tests can call without a process: `serve`, `check-config`, `verify`,
//! `cat` and `forks`.

use crate::{config, own_log, receipts, server};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub fn serve(path: &Path) -> anyhow::Result<ExitCode> {
    use anyhow::Context;
    let cfg = config::load(path)?;
    crate::access::check(&cfg)?;
    let config_sha256 = wormlog_spool::hash::sha256(&std::fs::read(path)?);
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
        tracing::warn!("{w}");
    }
    let tls = cfg
        .tls
        .as_ref()
        .map(|t| server::tls_config(t, cfg.token_users()))
        .transpose()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let (listen, metrics_listen) = (cfg.listen, cfg.metrics_listen);
    let receipt_key = wormlog_spool::keys::format_pubkey(&signer.pubkey());
    let read = crate::read::side::ReadSide::open(
        &cfg.store_dir,
        &cfg.key_dir,
        cfg.read_identity.as_deref(),
    )
    .context("the reading side ([read] identity, index key)")?;
    let remote = match cfg.s3.clone() {
        None => None,
        Some(c) => {
            let id = cfg.id.clone();
            let peer_receipt_keys = cfg.peer_receipt_keys.clone();
            // On a blocking thread of the runtime the server uses, so the
            // client's connections belong to it.
            let r = rt
                .block_on(rt.spawn_blocking(move || {
                    let s3 = crate::s3::S3::new(&c)?;
                    s3.check_conditional_writes(&id)?;
                    Ok::<_, crate::s3::S3Error>(crate::s3::sync::Remote {
                        s3,
                        collector: id,
                        peer_receipt_keys,
                    })
                }))?
                .context("[store] the S3 bucket")?;
            tracing::info!(
                "store kept in S3 bucket {} (claims in {})",
                r.s3.bucket,
                r.s3.heads_bucket
            );
            Some(std::sync::Arc::new(r))
        }
    };
    let notes = crate::note::NoteSigner::load_or_create(&cfg.key_dir, &cfg.origin, &cfg.id)
        .with_context(|| format!("checkpoint note key in {}", cfg.key_dir.display()))?;
    let app = server::App::new(cfg, signer, own_log.clone(), read, remote, notes);
    let held_back = app.clone();
    // The scheduled verification, on a blocking thread of the runtime (its
    // S3 reads share the server's client).
    let scrub_stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    if let Some(sc) = app.config.scrub.clone() {
        let (app, stop) = (app.clone(), scrub_stop.clone());
        rt.spawn_blocking(move || crate::scrub::run(app, sc, stop));
    }
    if app.remote.is_some() {
        let (app, stop) = (app.clone(), scrub_stop.clone());
        rt.spawn_blocking(move || crate::scrub::watch_landings(app, stop));
    }
    let notifier = wormlog_service::notify::Notifier::from_env();
    let r = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("listen on {listen}"))?;
        let metrics = match metrics_listen {
            Some(a) => Some(
                tokio::net::TcpListener::bind(a)
                    .await
                    .with_context(|| format!("[metrics] listen on {a}"))?,
            ),
            None => None,
        };
        let status = format!(
            "listening on {} ({}); receipt key {receipt_key}",
            listener.local_addr()?,
            if tls.is_some() {
                "https"
            } else {
                "http, loopback only"
            }
        );
        tracing::info!("{status}");
        if let Some(m) = &metrics {
            tracing::info!("metrics and health on http://{}", m.local_addr()?);
        }
        notifier.ready(&status);
        let shutdown = async {
            use tokio::signal::unix::{SignalKind, signal};
            let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
            let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
            tokio::select! {
                _ = term.recv() => {},
                _ = int.recv() => {},
            }
        };
        server::serve(app, listener, metrics, tls, shutdown).await;
        anyhow::Ok(())
    });
    notifier.stopping("stopping");
    tracing::info!("stopping");
    scrub_stop.store(true, std::sync::atomic::Ordering::Relaxed);
    // Requests still being stored finish first, so an alert they raise is
    // written before the stop record.
    rt.shutdown_timeout(std::time::Duration::from_secs(5));
    held_back.tell_held_back();
    own_log.close("collector stopped");
    r.map(|()| ExitCode::SUCCESS)
}

/// `check-config`: the file, then every file and directory it names,
/// opened as this process (under systemd's `ExecStartPre=` that is the
/// service's user).
pub fn check_config(path: &Path) -> anyhow::Result<ExitCode> {
    let c = config::load(path)?;
    crate::access::check(&c)?;
    println!(
        "{}: ok ({} agents registered{}; every file it names can be opened)",
        path.display(),
        c.agents.len(),
        if c.trust_on_first_use {
            ", trust on first use"
        } else {
            ""
        }
    );
    Ok(ExitCode::SUCCESS)
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

pub fn verify(store: &Path, only: Option<&str>, json: bool) -> anyhow::Result<ExitCode> {
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

pub fn cat(
    store: &Path,
    agent: &str,
    from: u64,
    json: bool,
    identity: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let chains = chains(store, Some(agent))?;
    let (_, dir, pk) = &chains[0];
    let ids = identity
        .map(wormlog_spool::crypt::Identities::from_file)
        .transpose()?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
    let r = wormlog_text::cat::cat(dir, *pk, from, json, ids, &mut out)?;
    drop(out);
    Ok(wormlog_text::cat::verdict("wormlog-collector", &r))
}

/// `forks`: the forks this collector proved, with their evidence; exit 1
/// when there is any (tampering found), 0 when there is none.
pub fn forks(store: &Path, only: Option<&str>, json: bool) -> anyhow::Result<ExitCode> {
    let list = crate::forks::list(store, only)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for f in &list {
        if json {
            writeln!(out, "{}", f.to_json())?;
        } else {
            f.print(&mut out)?;
        }
    }
    if !json && list.is_empty() {
        writeln!(out, "no forks proven in {}", store.display())?;
    }
    out.flush()?;
    // A proven fork is tampering found, as for `verify`.
    Ok(ExitCode::from(if list.is_empty() { 0 } else { 1 }))
}

/// `token`: a new bearer token and the line that registers its hash.
pub fn token() -> anyhow::Result<ExitCode> {
    let (token, hash) = crate::users::new_token()?;
    println!("{token}");
    eprintln!(
        "wormlog-collector: give the token above to the user (it is shown once, and kept nowhere); put its hash in the user's [[users]] entry:"
    );
    eprintln!("token_sha256 = \"{hash}\"");
    Ok(ExitCode::SUCCESS)
}

/// `access`: the access log, oldest first.
pub fn access(
    store: &Path,
    user: Option<String>,
    agent: Option<String>,
    limit: usize,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let list = match crate::audit::read(store, &crate::audit::Filter { user, agent, limit }) {
        Ok(l) => l,
        Err(e @ crate::audit::AuditError::Tampered { .. }) => {
            eprintln!("wormlog-collector: {e}");
            return Ok(ExitCode::from(1));
        }
        Err(e) => return Err(e.into()),
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for v in &list {
        if json {
            writeln!(out, "{v}")?;
        } else {
            let s = |k: &str| v[k].as_str().unwrap_or("-").to_owned();
            writeln!(
                out,
                "{} {} user={} roles={} via={} client={:?} agent={} status={} returned={} decrypted={} params={}{}",
                s("ts"),
                s("action"),
                s("user"),
                s("roles"),
                s("via"),
                s("client"),
                s("agent"),
                v["status"],
                v["returned"],
                v["decrypted"],
                v["params"],
                v["reason"]
                    .as_str()
                    .map(|r| format!(" reason={r:?}"))
                    .unwrap_or_default()
            )?;
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// The bucket of a configuration with `[store] kind = "s3"`.
fn remote_of(cfg: &config::Config) -> anyhow::Result<crate::s3::sync::Remote> {
    let c = cfg
        .s3
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("the configuration has no [store] kind = \"s3\""))?;
    Ok(crate::s3::sync::Remote {
        s3: crate::s3::S3::new(c)?,
        collector: cfg.id.clone(),
        peer_receipt_keys: cfg.peer_receipt_keys.clone(),
    })
}

/// `sync`: the local store brought up to the bucket.
pub fn sync(path: &Path, only: Option<&str>) -> anyhow::Result<ExitCode> {
    use anyhow::Context;
    let cfg = config::load(path)?;
    let remote = std::sync::Arc::new(remote_of(&cfg)?);
    let signer = receipts::Signer::load_or_create(&cfg.key_dir, &cfg.id)
        .with_context(|| format!("receipt key in {}", cfg.key_dir.display()))?;
    let agents = match only {
        Some(a) => vec![a.to_owned()],
        None => remote.agents()?,
    };
    let mut bad = false;
    for id in agents {
        let Some(pk) = remote.pinned(&id)? else {
            println!("{id}: no such agent in the bucket");
            bad = true;
            continue;
        };
        let mut s =
            crate::store::AgentStore::open(&cfg.store_dir, &id, pk, cfg.append_only, &signer)?;
        let before = s.next_seq();
        match s.set_remote(remote.clone(), &signer) {
            Ok(()) => println!(
                "{id}: {} records taken from the bucket; {} in all",
                s.next_seq() - before,
                s.next_seq()
            ),
            Err(crate::store::StoreError::Bucket(e)) => {
                println!(
                    "{id}: THE BUCKET DOES NOT CONTINUE THE CHAIN at {}: {e}",
                    s.next_seq()
                );
                bad = true;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(if bad {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// `create-buckets`.
pub fn create_buckets(path: &Path) -> anyhow::Result<ExitCode> {
    let cfg = config::load(path)?;
    let remote = remote_of(&cfg)?;
    remote.s3.create_buckets()?;
    remote.s3.check_conditional_writes(&cfg.id)?;
    println!(
        "bucket {} (Object Lock) and heads bucket {} ready; conditional writes honoured",
        remote.s3.bucket, remote.s3.heads_bucket
    );
    Ok(ExitCode::SUCCESS)
}

/// `status`: the scheduled verification's state.
pub fn status(store: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let s = crate::scrub::load(store);
    if json {
        println!("{}", serde_json::to_string_pretty(&s)?);
    } else {
        let at = |ns: Option<i64>| ns.map_or("never".to_owned(), wormlog_spool::clock::rfc3339);
        println!("scheduled verification: {} whole passes", s.passes);
        println!(
            "last pass: ended {}, {} records, {} bytes in {:.1} s, {} failures",
            at(s.last_pass_end_ns),
            s.last_pass_records,
            s.last_pass_bytes,
            s.last_pass_seconds,
            s.last_failures.len()
        );
        for f in s.last_failures.iter().chain(&s.failures) {
            println!(
                "FAILED: agent {} ({}) at seq {}: {} (found {})",
                f.agent,
                f.place,
                f.seq,
                wormlog_text::render::escape_bytes(f.reason.as_bytes()),
                at(Some(f.found_ns))
            );
        }
        if let Some(started) = s.pass_started_ns {
            println!(
                "pass under way since {}: {} agents done, {} records",
                at(Some(started)),
                s.done.len(),
                s.records
            );
        }
    }
    Ok(if s.last_failures.is_empty() && s.failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
