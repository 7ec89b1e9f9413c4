//! The systemd notify protocol (`Type=notify`, sd_notify(3)): datagrams to
//! `$NOTIFY_SOCKET` — `READY=1` once the spool is open and the sources run,
//! `STATUS=` with a one-line summary, `WATCHDOG=1` while the writer makes
//! progress, `STOPPING=1` at a stop. Without `$NOTIFY_SOCKET` (not under
//! systemd) every call does nothing.
//!
//! The watchdog pings come from the writer's own progress, not from a
//! timer: the writer thread counts its loop turns (it turns at least once a
//! second, busy or idle), and a ping is sent only if the count moved since
//! the last one. A writer stuck in a system call or a lock stops the pings,
//! and systemd restarts the agent (`WatchdogSec=`).

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The writer's progress, counted by the writer and read by the pinger:
/// loop turns, and the chain's length.
#[derive(Debug, Default)]
pub struct Progress {
    turns: AtomicU64,
    records: AtomicU64,
}

impl Progress {
    pub fn tick(&self, next_seq: u64) {
        self.turns.fetch_add(1, Ordering::Relaxed);
        self.records.store(next_seq, Ordering::Relaxed);
    }
    fn get(&self) -> u64 {
        self.turns.load(Ordering::Relaxed)
    }
    /// Records in the chain.
    pub fn records(&self) -> u64 {
        self.records.load(Ordering::Relaxed)
    }
}

#[derive(Debug)]
pub struct Notifier {
    socket: Option<(UnixDatagram, SocketAddr)>,
    /// Half of `$WATCHDOG_USEC`, when the watchdog is on.
    ping_every: Option<Duration>,
    pinged_at: Instant,
    seen: u64,
}

impl Notifier {
    pub fn from_env() -> Notifier {
        let socket = std::env::var_os("NOTIFY_SOCKET").and_then(|path| {
            let path = path.into_string().ok()?;
            let addr = match path.strip_prefix('@') {
                Some(name) => SocketAddr::from_abstract_name(name.as_bytes()).ok()?,
                None => SocketAddr::from_pathname(&path).ok()?,
            };
            Some((UnixDatagram::unbound().ok()?, addr))
        });
        // WATCHDOG_PID, when set, must name this process.
        let ours = std::env::var("WATCHDOG_PID")
            .ok()
            .is_none_or(|p| p.parse::<u32>().ok() == Some(std::process::id()));
        let ping_every = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|u| u.parse::<u64>().ok())
            .filter(|u| *u > 0 && ours)
            .map(|u| Duration::from_micros(u / 2));
        Notifier {
            socket,
            ping_every,
            pinged_at: Instant::now(),
            seen: 0,
        }
    }

    fn send(&self, msg: &str) {
        if let Some((sock, addr)) = &self.socket {
            let _ = sock.send_to_addr(msg.as_bytes(), addr);
        }
    }

    /// How often the writer must turn for the pings to keep coming (None:
    /// no watchdog).
    pub fn turn_at_least(&self) -> Option<Duration> {
        self.ping_every.map(|e| (e / 2).min(Duration::from_secs(1)))
    }

    /// How often [`Notifier::watchdog`] must be called.
    pub fn tick_interval(&self) -> Duration {
        self.ping_every
            .map_or(Duration::from_secs(1), |e| e.min(Duration::from_secs(1)))
    }

    pub fn ready(&self, status: &str) {
        self.send(&format!("READY=1\nSTATUS={status}"));
    }

    pub fn status(&self, status: &str) {
        self.send(&format!("STATUS={status}"));
    }

    pub fn stopping(&self, status: &str) {
        self.send(&format!("STOPPING=1\nSTATUS={status}"));
    }

    /// Called about once a second: pings the watchdog when it is due and
    /// the writer has made progress since the last ping.
    pub fn watchdog(&mut self, progress: &Arc<Progress>) {
        let Some(every) = self.ping_every else {
            return;
        };
        if self.pinged_at.elapsed() < every / 2 {
            return;
        }
        let now = progress.get();
        if now != self.seen {
            self.seen = now;
            self.pinged_at = Instant::now();
            self.send("WATCHDOG=1");
        }
    }
}
