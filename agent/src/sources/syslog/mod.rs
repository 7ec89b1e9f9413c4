//! `[[sources.syslog]]`: syslog over UDP, TCP (LF and octet-counting
//! framing, RFC 6587), TLS (RFC 5425) and a Unix datagram socket.
//!
//! * The raw bytes of each message are what is chained, byte-exact; RFC
//!   5424 and RFC 3164 are parsed (wormlog-parse) into one compact field
//!   beside them (`syslog`: where each part lies in the raw bytes; readers
//!   expand it into named fields), with the peer and — on a Unix socket —
//!   the sender's pid, uid and gid (SCM_CREDENTIALS).
//! * TCP and TLS push back: a connection is not read while the spool
//!   writer is behind (or the spool is full), so the sender waits; nothing
//!   is dropped.
//! * UDP cannot push back. The kernel's count of datagrams it dropped for
//!   this socket (the `drops` column of /proc/net/udp) is read every second,
//!   and every increase becomes a `gap` record (reason `kernel_drop`).
//! * A message longer than `max_message_bytes` is kept in parts flagged
//!   `more_parts` / `continuation`, like a long line of a file.

mod batch;
mod datagram;
mod offset;
mod stream;

use crate::config::{Listen, SyslogSourceConfig};
use crate::metrics::SourceState;
use crate::sources::{Source, SourceContext};
use std::sync::Arc;

#[derive(Debug)]
pub struct SyslogSource {
    name: Arc<str>,
    cfg: SyslogSourceConfig,
}

impl SyslogSource {
    pub fn new(cfg: &SyslogSourceConfig) -> SyslogSource {
        SyslogSource {
            name: cfg.name.as_str().into(),
            cfg: cfg.clone(),
        }
    }
}

impl Source for SyslogSource {
    fn run(self: Box<Self>, ctx: SourceContext) {
        let listen = match self.cfg.listen() {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(source = %self.name, error = %e, "source {}: {e}", self.name);
                crate::metrics::source_state(&self.name, SourceState::Failed, &e.to_string());
                return;
            }
        };
        // A socket that cannot be bound ends the run at once (below).
        crate::metrics::source_state(&self.name, SourceState::Listening, &self.cfg.listen);
        let result = match &listen {
            Listen::Udp(addr) => datagram::run_udp(&self.name, &self.cfg, *addr, &ctx),
            Listen::Unix(path) => datagram::run_unix(&self.name, &self.cfg, path, &ctx),
            Listen::Tcp(addr) => stream::run(&self.name, &self.cfg, *addr, None, &ctx),
            Listen::Tls(addr) => match wormlog_tls::server_config(
                self.cfg.tls_cert.as_deref().expect("validated"),
                self.cfg.tls_key.as_deref().expect("validated"),
                self.cfg.tls_client_ca.as_deref(),
            ) {
                Ok(tls) => stream::run(&self.name, &self.cfg, *addr, Some(Arc::new(tls)), &ctx),
                Err(e) => Err(std::io::Error::other(e.to_string())),
            },
        };
        if let Err(e) = result {
            crate::metrics::source_state(
                &self.name,
                SourceState::Failed,
                &format!("{}: {e}", self.cfg.listen),
            );
            // The daemon notices the source stopped and stops loudly.
            tracing::error!(
                source = %self.name,
                listen = %self.cfg.listen,
                error = %e,
                "source {}: {}: {e}",
                self.name, self.cfg.listen
            );
        }
    }
}

/// How long a stop keeps reading what the kernel already took from the
/// senders (who believe it delivered): sockets, connections, the backlog.
const STOP_DRAIN: std::time::Duration = std::time::Duration::from_secs(1);

/// Records that a sender was still sending when the stop's drain ended:
/// what came after was not read (count unknown) — an error line and a
/// `not_written_at_stop` gap (the writer counts it in `source_lost_total`).
fn cut_at_stop(ctx: &crate::sources::SourceContext, source: &std::sync::Arc<str>, detail: String) {
    tracing::error!(source = %source, "source {source}: {detail}");
    ctx.send(crate::sources::Event::Gap {
        source: source.clone(),
        position: wormlog_spool::Position::None,
        reason: wormlog_spool::record::GapReason::NotWrittenAtStop,
        lost_bytes: wormlog_spool::record::UNKNOWN_COUNT,
        lost_records: wormlog_spool::record::UNKNOWN_COUNT,
        detail,
        ts: wormlog_spool::clock::wall_ns(),
    });
}

/// A read that found nothing yet (a timeout or an interruption), as
/// opposed to a failure.
fn nothing_yet(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock
            | std::io::ErrorKind::TimedOut
            | std::io::ErrorKind::Interrupted
    )
}
