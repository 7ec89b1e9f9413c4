//! `wormlog run`: the daemon. Sources feed one spool writer through a
//! bounded channel; the forwarder's receipts and alerts reach it through a
//! second one, which a full spool does not hold back (writer.rs, with the
//! disk budget in capacity.rs). SIGHUP reloads the configuration
//! (reload.rs). SIGTERM or SIGINT stops the sources, which hand over what
//! they read (partial lines flagged), and the writer drains the channel,
//! writes a `stop` record and a final signed checkpoint.

mod capacity;
mod control;
mod generation;
use wormlog_service::notify;
mod reload;
mod writer;

use crate::sources::Shutdown;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use wormlog_spool::Spool;
use wormlog_spool::keys::HostKey;

/// Events in flight between the sources and the writer (each at most about
/// 64 KiB of lines). Four keep the writer busy as well as sixteen did (the
/// file-source benchmark: the same lines per second) and hold 3 MiB less
/// at peak (docs/BENCHMARKS.md, issue 17).
const CHANNEL_EVENTS: usize = 4;

pub fn run(config: &Path) -> anyhow::Result<ExitCode> {
    // Take SIGTERM and SIGINT first: a stop requested while the spool is
    // still being opened is then a clean stop too.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (mut term, mut int, mut hup) = {
        let _guard = rt.enter();
        use tokio::signal::unix::{SignalKind, signal};
        (
            signal(SignalKind::terminate())?,
            signal(SignalKind::interrupt())?,
            signal(SignalKind::hangup())?,
        )
    };
    let cfg = match crate::config::load(config) {
        Ok(c) => c,
        Err(e) => {
            // `FILE:LINE:COLUMN: …` first, as `check-config` prints it
            // (and as editors and tests read it); before the daemon runs.
            eprintln!("{e}");
            return Ok(ExitCode::from(2));
        }
    };
    let key = match HostKey::load(&cfg.config.agent.key_dir) {
        Ok(k) => k,
        Err(e) => {
            tracing::error!(error = %e, "{e}");
            return Ok(ExitCode::from(1));
        }
    };
    let (mut spool, report) = match Spool::open(cfg.spool_options("run"), key) {
        Ok(x) => x,
        Err(e) => {
            tracing::error!(spool = %cfg.config.agent.spool_dir.display(), error = %e, "{e}");
            return Ok(ExitCode::from(1));
        }
    };
    for w in &report.warnings {
        tracing::warn!("{w}");
    }
    tracing::info!(
        "spool {} open at seq {} (segment {}){}",
        cfg.config.agent.spool_dir.display(),
        report.next_seq,
        report.segment_no,
        if report.unclean_shutdown && !report.created {
            "; the previous run did not stop cleanly"
        } else {
            ""
        }
    );
    if report.unclean_shutdown
        && !report.created
        && let Err(e) = record_in_flight_loss(&mut spool, &cfg.config.sources.syslog)
    {
        tracing::error!(error = %e, "{e}");
        return Ok(ExitCode::from(1));
    }
    if let Some(m) = &cfg.config.metrics {
        match crate::metrics::serve(m.listen) {
            Ok(addr) => tracing::info!("metrics on http://{addr}/metrics"),
            Err(e) => {
                // Loud, but no reason to stop reading logs.
                let detail = format!(
                    "cannot serve metrics on {}: {e}; running without them",
                    m.listen
                );
                tracing::error!(listen = %m.listen, error = %e, "{detail}");
                if let Err(e) = spool.append_alert(wormlog_spool::record::AlertCode::Other, &detail)
                {
                    tracing::error!(error = %e, "{e}");
                    return Ok(ExitCode::from(1));
                }
            }
        }
    }
    let positions = spool.positions().clone();
    let (tx, rx) = crossbeam_channel::bounded(CHANNEL_EVENTS);
    // Receipts and alerts from the forwarder: few, small, and taken even
    // while a full spool holds the sources back.
    let (control_tx, control_rx) = crossbeam_channel::unbounded();
    let shutdown = Arc::new(Shutdown::default());
    let link: crate::forward::WriterLink = Arc::new(std::sync::Mutex::new(Some(control_tx)));
    let unwritten = Arc::new(crate::sources::Unwritten::default());
    let shared = generation::Shared {
        tx,
        unwritten: unwritten.clone(),
        link: link.clone(),
        durable: spool.durable_seq(),
    };
    let progress = Arc::new(notify::Progress::default());
    let mut notifier = notify::Notifier::from_env();
    let inputs = writer::Inputs {
        sources: rx,
        control: control_rx,
        shutdown: shutdown.clone(),
        unwritten,
        progress: progress.clone(),
        turn_at_least: notifier.turn_at_least(),
        wedge: std::env::var_os("WORMLOG_TEST_WEDGE_FILE").map(Into::into),
    };
    let capacity = capacity::Capacity::new(cfg.config.agent.spool_dir.clone(), &cfg.config.spool);
    let writer = std::thread::Builder::new()
        .name("wormlog-writer".into())
        .spawn(move || writer::run(spool, inputs, capacity))?;
    let mut cfg = cfg;
    let limits = Arc::new(std::sync::Mutex::new(control::Limits::of(&cfg)));
    let _control = match control::serve(
        &cfg.config.agent.control_socket,
        limits.clone(),
        link.clone(),
    ) {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!(
                socket = %cfg.config.agent.control_socket.display(),
                error = %e,
                "no control socket at {} ({e}): `wormlog status` cannot ask this daemon",
                cfg.config.agent.control_socket.display()
            );
            None
        }
    };
    let mut generation = generation::Generation::start(&cfg, &positions, &shared)?;
    tracing::info!("running with {} sources", generation.sources.len());
    let status = |p: &notify::Progress, forwarding: bool| {
        let acked = crate::metrics::get().forward_acknowledged_seq.get();
        let lag = if forwarding {
            format!(
                ", forward lag {} records",
                p.records().saturating_sub(acked.max(0) as u64)
            )
        } else {
            String::new()
        };
        format!("{} records in the chain{lag}", p.records())
    };
    notifier.ready(&format!(
        "running with {} sources; {}",
        generation.sources.len(),
        status(&progress, cfg.config.forward.is_some())
    ));
    let tick = notifier.tick_interval();
    let mut status_at = std::time::Instant::now();

    // Runs until a signal, or until the writer or a source stops on its
    // own — which must not go unnoticed: a source that stopped reads
    // nothing more, so the daemon stops loudly and systemd restarts it.
    let signal = rt.block_on(async {
        loop {
            tokio::select! {
                _ = term.recv() => return Some("SIGTERM"),
                _ = int.recv() => return Some("SIGINT"),
                _ = hup.recv() => {
                    if !reload::reload(config, &mut cfg, &mut generation, &shared) {
                        return None;
                    }
                    *limits.lock().unwrap_or_else(|p| p.into_inner()) = control::Limits::of(&cfg);
                    notifier.status(&status(&progress, cfg.config.forward.is_some()));
                }
                _ = tokio::time::sleep(tick) => {
                    if writer.is_finished() {
                        return None;
                    }
                    notifier.watchdog(&progress);
                    if status_at.elapsed() >= Duration::from_secs(10) {
                        status_at = std::time::Instant::now();
                        notifier.status(&status(&progress, cfg.config.forward.is_some()));
                    }
                    if generation.forwarder_panicked() {
                        let detail = "the forwarder thread panicked; forwarding stopped, spooling goes on (restart the agent)".to_owned();
                        tracing::error!("{detail}");
                        if let Some(tx) = link.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
                            let _ = tx.send(crate::sources::Event::Alert {
                                code: wormlog_spool::record::AlertCode::ForwardRefused,
                                detail,
                            });
                        }
                    }
                    if let Some(name) = generation.finished_source() {
                        tracing::error!(source = %name, "source {name} stopped unexpectedly; stopping the daemon");
                        return None;
                    }
                }
            }
        }
    });
    if let Some(sig) = signal {
        tracing::info!(signal = sig, "{sig}: stopping; handing over what was read");
        notifier.stopping(&format!("{sig}: stopping"));
    } else {
        notifier.stopping("stopping after a failure");
    }
    shutdown.trigger();
    generation.stop_forwarder();
    link.lock().unwrap_or_else(|p| p.into_inner()).take();
    let source_failed = !generation.stop_sources();
    drop(shared);
    match writer.join() {
        Ok(Ok(())) if signal.is_some() && !source_failed => {
            tracing::info!("stopped cleanly");
            Ok(ExitCode::SUCCESS)
        }
        Ok(Ok(())) => {
            tracing::error!("the spool writer stopped");
            Ok(ExitCode::from(1))
        }
        Ok(Err(writer::WriterStop::Halt(why))) => {
            tracing::error!("{why}");
            Ok(ExitCode::from(1))
        }
        Ok(Err(writer::WriterStop::Spool(
            e @ wormlog_spool::SpoolError::FsyncFailed { segment, .. },
        ))) => {
            tracing::error!(segment, error = %e, "the spool writer failed: {e}");
            Ok(ExitCode::from(1))
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "the spool writer failed: {e}");
            Ok(ExitCode::from(1))
        }
        Err(_) => {
            tracing::error!("the spool writer panicked");
            Ok(ExitCode::from(1))
        }
    }
}

/// After a start that finds the previous run did not stop cleanly (a
/// crash, `kill -9`, power loss): a network source has no position to
/// resume from, and what the kernel held in its socket buffers, or what
/// was on its way, then is gone — syslog over UDP, TCP and TLS has no
/// acknowledgement (RFC 5426, RFC 6587, RFC 5425), so the senders do not
/// send it again. One gap record per such source says so.
fn record_in_flight_loss(
    spool: &mut Spool,
    sources: &[crate::config::SyslogSourceConfig],
) -> Result<(), wormlog_spool::SpoolError> {
    for s in sources {
        let detail = format!(
            "the previous run of the agent did not stop cleanly (crash, kill -9 or power loss): messages for {} that were in the socket buffers or on their way then are lost (count unknown; syslog senders get no acknowledgement and do not send them again)",
            s.listen
        );
        tracing::warn!(source = %s.name, "source {}: {detail}", s.name);
        writer::record_loss(
            spool,
            &s.name,
            wormlog_spool::record::GapReason::UncleanStop,
            wormlog_spool::record::UNKNOWN_COUNT,
            &detail,
        )?;
    }
    Ok(())
}
