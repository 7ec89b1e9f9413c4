//! The collector's own chain (`<store>/log`): a wormlog spool signed with the
//! collector's own forward-secure key, holding its start and stop, every
//! agent pinned on first use, and every fork or refused chain it saw — the
//! collector's evidence about itself, verifiable with `wormlog verify`.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;
use wormlog_spool::keys::HostKey;
use wormlog_spool::record::{AlertCode, AppendOnly};
use wormlog_spool::{Position, Spool, SpoolOptions};

#[derive(Debug)]
struct Inner {
    spool: Option<Spool>,
    stop: bool,
}

/// A handle to the collector's own log; a thread keeps its heartbeats,
/// checkpoints and epochs.
#[derive(Debug, Clone)]
pub struct OwnLog {
    inner: Arc<(Mutex<Inner>, Condvar)>,
}

impl OwnLog {
    pub fn open(
        store_dir: &std::path::Path,
        key_dir: &std::path::Path,
        collector_id: &str,
        append_only: AppendOnly,
        config_sha256: [u8; 32],
    ) -> anyhow::Result<(OwnLog, Vec<String>)> {
        if !key_dir.join(wormlog_spool::keys::KEY_FILE).exists() {
            HostKey::generate(key_dir, wormlog_spool::clock::wall_ns())?;
        }
        let key = HostKey::load(key_dir)?;
        let mut opts = SpoolOptions::new(store_dir.join("log"), collector_id);
        opts.append_only = append_only;
        opts.config_sha256 = config_sha256;
        let (spool, report) = Spool::open(opts, key)?;
        let log = OwnLog {
            inner: Arc::new((
                Mutex::new(Inner {
                    spool: Some(spool),
                    stop: false,
                }),
                Condvar::new(),
            )),
        };
        let l2 = log.clone();
        std::thread::Builder::new()
            .name("own-log".into())
            .spawn(move || l2.ticker())?;
        Ok((log, report.warnings))
    }

    fn ticker(&self) {
        let (m, cv) = &*self.inner;
        let mut g = m.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if g.stop {
                return;
            }
            let Some(s) = g.spool.as_mut() else { return };
            if let Err(e) = s.tick() {
                eprintln!("wormlog-collector: error: own log: {e}");
            }
            let wait = s.next_deadline().saturating_duration_since(Instant::now());
            g = cv
                .wait_timeout(g, wait.max(std::time::Duration::from_millis(5)))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Appends a line (source `collector`) and makes it durable.
    pub fn event(&self, line: &str) {
        self.with(|s| {
            s.append_entry(
                "collector",
                &Position::None,
                0,
                &[],
                line.as_bytes(),
                wormlog_spool::clock::wall_ns(),
            )?;
            s.sync().map(|_| ())
        });
    }

    /// Appends an alert record and makes it durable.
    pub fn alert(&self, code: AlertCode, detail: &str) {
        self.with(|s| {
            s.append_alert(code, detail)?;
            s.sync().map(|_| ())
        });
    }

    fn with(&self, f: impl FnOnce(&mut Spool) -> Result<(), wormlog_spool::SpoolError>) {
        let (m, _) = &*self.inner;
        let mut g = m.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = g.spool.as_mut()
            && let Err(e) = f(s)
        {
            eprintln!("wormlog-collector: error: own log: {e}");
        }
    }

    /// Writes the stop record and closes.
    pub fn close(&self, reason: &str) {
        let (m, cv) = &*self.inner;
        let mut g = m.lock().unwrap_or_else(|p| p.into_inner());
        g.stop = true;
        if let Some(s) = g.spool.take()
            && let Err(e) = s.close(reason)
        {
            eprintln!("wormlog-collector: error: own log: {e}");
        }
        cv.notify_all();
    }
}
