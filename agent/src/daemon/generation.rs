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
    pub link: WriterLink,
    pub durable: Arc<DurableSeq>,
}

#[derive(Debug)]
pub struct Generation {
    pub sources: Vec<(String, JoinHandle<()>)>,
    shutdown: Arc<Shutdown>,
    forwarder: Option<JoinHandle<()>>,
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

impl Generation {
    pub fn start(cfg: &Loaded, positions: &Positions, shared: &Shared) -> std::io::Result<Self> {
        let shutdown = Arc::new(Shutdown::default());
        let forwarder_shutdown = Arc::new(Shutdown::default());
        let mut forwarder = None;
        if let Some(f) = &cfg.config.forward {
            let fw = Forwarder {
                cfg: f.clone(),
                agent_id: cfg.agent_id(),
                spool_dir: cfg.config.agent.spool_dir.clone(),
                durable: shared.durable.clone(),
                start: acknowledged(positions),
                link: shared.link.clone(),
                shutdown: forwarder_shutdown.clone(),
            };
            // Not joined at a stop: a request may still be out; the writer
            // stops without it (its channel is taken away).
            forwarder = Some(
                std::thread::Builder::new()
                    .name("forwarder".into())
                    .spawn(move || fw.run())?,
            );
        }
        let c = &cfg.config;
        let configured = c
            .sources
            .file
            .iter()
            .map(|f| {
                let src: Box<dyn Source> = Box::new(FileSource::new(f, c.spool.max_line_bytes.0));
                (f.name.clone(), src)
            })
            .chain(c.sources.journald.iter().map(|j| {
                let src: Box<dyn Source> = Box::new(JournaldSource::new(j));
                (j.name.clone(), src)
            }))
            .chain(c.sources.syslog.iter().map(|s| {
                let src: Box<dyn Source> = Box::new(SyslogSource::new(s));
                (s.name.clone(), src)
            }))
            .chain(c.sources.auditd.iter().map(|a| {
                let src: Box<dyn Source> = Box::new(AuditdSource::new(a));
                (a.name.clone(), src)
            }));
        let mut sources = Vec::new();
        for (name, src) in configured {
            let ctx = SourceContext {
                tx: shared.tx.clone(),
                shutdown: shutdown.clone(),
                positions: positions.get(&name).cloned().unwrap_or_else(BTreeMap::new),
            };
            let thread = std::thread::Builder::new()
                .name(format!("src-{name}"))
                .spawn(move || src.run(ctx))?;
            sources.push((name, thread));
        }
        Ok(Generation {
            sources,
            shutdown,
            forwarder,
            forwarder_shutdown,
        })
    }

    /// Stops the sources (they hand over what they read) and waits for
    /// them; false if one of them panicked.
    pub fn stop_sources(&mut self) -> bool {
        self.shutdown.trigger();
        let mut ok = true;
        for (name, s) in self.sources.drain(..) {
            if s.join().is_err() {
                tracing::error!(source = %name, "source {name} panicked");
                ok = false;
            }
        }
        ok
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
            .find(|(_, h)| h.is_finished())
            .map(|(n, _)| n.as_str())
    }

    /// The forwarder stopped by panicking (one that returned has said why).
    pub fn forwarder_panicked(&mut self) -> bool {
        self.forwarder.as_ref().is_some_and(|h| h.is_finished())
            && self.forwarder.take().is_some_and(|h| h.join().is_err())
    }
}
