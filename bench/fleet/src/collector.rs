//! The collector under test: its configuration (every simulated agent
//! registered, mutual TLS), the process, and what `/proc` says of it.

use anyhow::{Context, bail};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct Collector {
    pub child: Child,
    pub port: u16,
    log: std::path::PathBuf,
}

impl Collector {
    /// Starts `bin` on a fresh store for the first `agents` agents of the
    /// fleet in `dir`.
    pub fn start(
        bin: &Path,
        dir: &Path,
        agents: usize,
        pubkeys: &[String],
    ) -> anyhow::Result<Self> {
        let work = dir.join("run");
        remove_store(&work)?;
        std::fs::create_dir_all(&work)?;
        let p = |x: &str| dir.join(x).display().to_string();
        let mut cfg = format!(
            "[collector]\nlisten = \"127.0.0.1:0\"\nstore_dir = \"{}\"\nkey_dir = \"{}\"\n\
             tls_cert = \"{}\"\ntls_key = \"{}\"\nclient_ca = \"{}\"\n\n\
             [limits]\nmax_connections = {}\n\n",
            work.join("store").display(),
            work.join("keys").display(),
            p("pki/collector.pem"),
            p("pki/collector-key.pem"),
            p("pki/ca.pem"),
            agents + 64,
        );
        for (i, pk) in pubkeys.iter().take(agents).enumerate() {
            cfg.push_str(&format!(
                "[[agents]]\nid = \"{}\"\npubkey = \"{pk}\"\n\n",
                crate::prepare::agent_id(i)
            ));
        }
        let cfg_path = work.join("collector.toml");
        std::fs::write(&cfg_path, cfg)?;
        let log = work.join("collector.log");
        let child = Command::new(bin)
            .arg("serve")
            .arg("--config")
            .arg(&cfg_path)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(rest) = text.split("listening on 127.0.0.1:").nth(1) {
                let port = rest
                    .split(|c: char| !c.is_ascii_digit())
                    .next()
                    .unwrap_or_default()
                    .parse()?;
                return Ok(Collector { child, port, log });
            }
            if Instant::now() > deadline {
                bail!("the collector did not start:\n{text}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn stats(&self) -> ProcStats {
        ProcStats::of(self.child.id())
    }

    /// SIGTERM, and waits for it to exit.
    pub fn stop(mut self) -> anyhow::Result<()> {
        Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()?;
        let status = self.child.wait()?;
        if !status.success() {
            bail!("the collector exited with {status}:\n{}", self.log());
        }
        Ok(())
    }
}

/// Removes a previous run's store; its segments are append-only (and
/// sealed ones immutable) where the file system allows, so the flags are
/// taken off first.
pub fn remove_store(work: &Path) -> anyhow::Result<()> {
    if !work.exists() {
        return Ok(());
    }
    let _ = Command::new("chattr")
        .arg("-R")
        .arg("-ia")
        .arg(work)
        .stderr(Stdio::null())
        .status();
    std::fs::remove_dir_all(work).with_context(|| format!("removing {}", work.display()))
}

/// CPU seconds (user + system) and memory of a process.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcStats {
    pub cpu_s: f64,
    pub rss_kib: u64,
    pub hwm_kib: u64,
    pub threads: u64,
}

impl ProcStats {
    pub fn of(pid: u32) -> ProcStats {
        let mut s = ProcStats::default();
        if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            && let Some((_, rest)) = stat.rsplit_once(')')
        {
            let f: Vec<&str> = rest.split_whitespace().collect();
            let ticks: f64 = f
                .get(11..13)
                .into_iter()
                .flatten()
                .filter_map(|v| v.parse::<f64>().ok())
                .sum();
            s.cpu_s = ticks / 100.0;
        }
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
                .unwrap_or(0)
        };
        s.rss_kib = field("VmRSS:");
        s.hwm_kib = field("VmHWM:");
        s.threads = field("Threads:");
        s
    }

    /// This process.
    pub fn own() -> ProcStats {
        ProcStats::of(std::process::id())
    }
}
