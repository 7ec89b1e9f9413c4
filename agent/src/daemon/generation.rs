//! What one configuration runs: its sources and its forwarder. A reload
//! (SIGHUP) stops a generation — the sources hand over what they read, the
//! forwarder is told to stop — and starts the next from where the spool
//! says each source stands; the spool writer runs on throughout.

use crate::config::Loaded;
use crate::forward::{Forwarder, WriterLink};
use crate::sources::auditd::AuditdSource;
use crate::sources::file::FileSource;
use crate::sources::journald::JournaldSource;
use crate::sources::syslog::SyslogSource;
use crate::sources::{Event, Shutdown, Source, SourceContext};
use crossbeam_channel::Sender;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::thread::JoinHandle;
use wormlog_spool::writer::{DurableSeq, FORWARD_POSITION, Positions};

/// What every generation shares with the writer.
#[derive(Debug, Clone)]
pub struct Shared {
    pub tx: Sender<Event>,
    pub unwritten: Arc<crate::sources::Unwritten>,
    pub link: WriterLink,
    pub durable: Arc<DurableSeq>,
}

/// A source thread and what it was started with.
#[derive(Debug)]
pub struct RunningSource {
    pub name: String,
    /// Its settings, as written out: a reload keeps a source whose
    /// settings did not change running, untouched.
    settings: String,
    shutdown: Arc<Shutdown>,
    handle: JoinHandle<()>,
}

#[derive(Debug)]
pub struct Generation {
    pub sources: Vec<RunningSource>,
    forwarder: Option<JoinHandle<()>>,
    forwarder_settings: String,
    forwarder_shutdown: Arc<Shutdown>,
}

/// The collector has acknowledged every record below this seq.
pub fn acknowledged(positions: &Positions) -> u64 {
    match positions
        .get(FORWARD_POSITION)
        .and_then(|m| m.values().next())
    {
        Some(wormlog_spool::Position::Counter(n)) => *n,
        _ => 0,
    }
}

/// Every configured source: name, settings, the source.
/// A configured source: name, settings (compared at a reload), kind, the
/// source.
type Configured = (String, String, &'static str, Box<dyn Source>);

fn configured(cfg: &Loaded) -> Vec<Configured> {
    let c = &cfg.config;
    let max_line = c.spool.max_line_bytes.0;
    let mut v: Vec<Configured> = Vec::new();
    for f in &c.sources.file {
        v.push((
            f.name.clone(),
            format!("{f:?} {max_line}"),
            "file",
            Box::new(FileSource::new(f, max_line)),
        ));
    }
    for j in &c.sources.journald {
        v.push((
            j.name.clone(),
            format!("{j:?}"),
            "journald",
            Box::new(JournaldSource::new(j)),
        ));
    }
    for s in &c.sources.syslog {
        v.push((
            s.name.clone(),
            format!("{s:?}"),
            "syslog",
            Box::new(SyslogSource::new(s)),
        ));
    }
    for a in &c.sources.auditd {
        v.push((
            a.name.clone(),
            format!("{a:?}"),
            "auditd",
            Box::new(AuditdSource::new(a)),
        ));
    }
    v
}

fn forwarder_settings(cfg: &Loaded) -> String {
    format!(
        "{:?} {} {:?}",
        cfg.config.forward,
        cfg.agent_id(),
        cfg.config.agent.spool_dir
    )
}

impl Generation {
    pub fn start(cfg: &Loaded, positions: &Positions, shared: &Shared) -> std::io::Result<Self> {
        let mut g = Generation {
            sources: Vec::new(),
            forwarder: None,
            forwarder_settings: String::new(),
            forwarder_shutdown: Arc::new(Shutdown::default()),
        };
        g.start_forwarder(cfg, positions, shared)?;
        g.start_missing(cfg, positions, shared)?;
        Ok(g)
    }

    fn start_forwarder(
        &mut self,
        cfg: &Loaded,
        positions: &Positions,
        shared: &Shared,
    ) -> std::io::Result<()> {
        self.forwarder_settings = forwarder_settings(cfg);
        self.forwarder_shutdown = Arc::new(Shutdown::default());
        if let Some(f) = &cfg.config.forward {
            let fw = Forwarder {
                cfg: f.clone(),
                agent_id: cfg.agent_id(),
                spool_dir: cfg.config.agent.spool_dir.clone(),
                durable: shared.durable.clone(),
                start: acknowledged(positions),
                link: shared.link.clone(),
                shutdown: self.forwarder_shutdown.clone(),
            };
            // Not joined at a stop: a request may still be out; the writer
            // stops without it (its channel is taken away).
            self.forwarder = Some(
                std::thread::Builder::new()
                    .name("forwarder".into())
                    .spawn(move || fw.run())?,
            );
        }
        Ok(())
    }

    /// Starts the configured sources that are not running.
    pub fn start_missing(
        &mut self,
        cfg: &Loaded,
        positions: &Positions,
        shared: &Shared,
    ) -> std::io::Result<()> {
        let all = configured(cfg);
        // Every configured source is shown from now on (status, metrics),
        // the ones about to start as `starting`, before their threads
        // report anything.
        let shown: Vec<(&str, &'static str, bool)> = all
            .iter()
            .map(|(n, _, kind, _)| {
                (
                    n.as_str(),
                    *kind,
                    !self.sources.iter().any(|r| r.name == *n),
                )
            })
            .collect();
        crate::metrics::sources_configured(&shown);
        for (name, settings, _, src) in all {
            if self.sources.iter().any(|r| r.name == name) {
                continue;
            }
            let shutdown = Arc::new(Shutdown::default());
            let ctx = SourceContext {
                tx: shared.tx.clone(),
                unwritten: shared.unwritten.clone(),
                shutdown: shutdown.clone(),
                positions: positions.get(&name).cloned().unwrap_or_else(BTreeMap::new),
            };
            let handle = std::thread::Builder::new()
                .name(format!("src-{name}"))
                .spawn(move || src.run(ctx))?;
            self.sources.push(RunningSource {
                name,
                settings,
                shutdown,
                handle,
            });
        }
        Ok(())
    }

    /// Stops the sources that `cfg` removes or changes (they hand over what
    /// they read) and waits for them; the others run on. False if one of
    /// them panicked.
    pub fn stop_changed(&mut self, cfg: &Loaded) -> bool {
        let wanted: Vec<(String, String)> = configured(cfg)
            .into_iter()
            .map(|(n, s, _, _)| (n, s))
            .collect();
        let (keep, stop): (Vec<_>, Vec<_>) = std::mem::take(&mut self.sources)
            .into_iter()
            .partition(|r| wanted.iter().any(|(n, s)| *n == r.name && *s == r.settings));
        self.sources = keep;
        stop_all(stop)
    }

    /// Restarts the forwarder if its settings changed.
    pub fn update_forwarder(
        &mut self,
        cfg: &Loaded,
        positions: &Positions,
        shared: &Shared,
    ) -> std::io::Result<()> {
        if forwarder_settings(cfg) == self.forwarder_settings {
            return Ok(());
        }
        self.stop_forwarder();
        self.start_forwarder(cfg, positions, shared)
    }

    /// Stops every source and waits for them; false if one panicked.
    pub fn stop_sources(&mut self) -> bool {
        stop_all(std::mem::take(&mut self.sources))
    }

    /// Tells the forwarder to stop (not waited for).
    pub fn stop_forwarder(&mut self) {
        self.forwarder_shutdown.trigger();
        self.forwarder.take();
    }

    /// A source that stopped on its own.
    pub fn finished_source(&self) -> Option<&str> {
        self.sources
            .iter()
            .find(|r| r.handle.is_finished())
            .map(|r| r.name.as_str())
    }

    /// The forwarder stopped by panicking (one that returned has said why).
    pub fn forwarder_panicked(&mut self) -> bool {
        self.forwarder.as_ref().is_some_and(|h| h.is_finished())
            && self.forwarder.take().is_some_and(|h| h.join().is_err())
    }
}

/// Stops sources (all told first, so they stop together) and waits.
fn stop_all(sources: Vec<RunningSource>) -> bool {
    for r in &sources {
        r.shutdown.trigger();
    }
    let mut ok = true;
    for r in sources {
        if r.handle.join().is_err() {
            tracing::error!(source = %r.name, "source {} panicked", r.name);
            ok = false;
        }
    }
    ok
}
