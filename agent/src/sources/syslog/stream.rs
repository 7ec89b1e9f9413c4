//! `tcp://` and `tls://`: one thread per connection (at most
//! `max_connections`; more wait in the listen backlog), each cutting its
//! stream into frames (RFC 6587, both framings) and handing them over. A
//! connection is not read while the writer is behind: that is TCP's own
//! backpressure on the sender, and nothing is dropped.

use super::batch::{Arrival, Batch};
use super::offset::LocalOffset;
use crate::config::SyslogSourceConfig;
use crate::sources::SourceContext;
use std::io::{self, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use wormlog_parse::syslog::StreamFramer;

/// How often a quiet connection or listener looks at the shutdown flag.
const TICK: Duration = Duration::from_millis(200);
pub fn run(
    name: &Arc<str>,
    cfg: &SyslogSourceConfig,
    addr: SocketAddr,
    tls: Option<Arc<rustls::ServerConfig>>,
    ctx: &SourceContext,
) -> io::Result<()> {
    let listener = TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    tracing::info!(
        source = %name,
        "source {name}: listening on {}://{}",
        if tls.is_some() { "tls" } else { "tcp" },
        listener.local_addr()?
    );
    let offset = Arc::new(LocalOffset::new());
    let open = Arc::new(AtomicUsize::new(0));
    let max_message = cfg.max_message_bytes.0 as usize;
    std::thread::scope(|scope| {
        let spawn = |conn: TcpStream, peer: SocketAddr| {
            open.fetch_add(1, Ordering::SeqCst);
            let (open, offset, tls) = (open.clone(), offset.clone(), tls.clone());
            scope.spawn(move || {
                let batch = Batch::new(name, ctx, &offset);
                match serve(conn, peer, tls, batch, max_message, ctx) {
                    Ok(n) => tracing::info!(
                        source = %name,
                        peer = %peer,
                        "source {name}: connection from {peer} closed after {n} messages handed to the spool writer"
                    ),
                    Err(e) => {
                        tracing::warn!(source = %name, peer = %peer, error = %e, "source {name}: connection from {peer}: {e}");
                    }
                }
                open.fetch_sub(1, Ordering::SeqCst);
            });
        };
        while !ctx.shutdown.is_set() {
            if open.load(Ordering::SeqCst) >= cfg.max_connections {
                ctx.shutdown.wait(TICK);
                continue;
            }
            match listener.accept() {
                Ok((conn, peer)) => spawn(conn, peer),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    ctx.shutdown.wait(TICK);
                }
                Err(e) => {
                    tracing::warn!(source = %name, error = %e, "source {name}: accept: {e}");
                    ctx.shutdown.wait(TICK);
                }
            }
        }
        // A stop: connections the kernel accepted but this source did not
        // yet may already carry messages (plain TCP); they are drained like
        // the others. A TLS client cannot have sent a message before its
        // handshake, so its waiting connection is only closed.
        while let Ok((conn, peer)) = listener.accept() {
            if tls.is_none() {
                spawn(conn, peer);
            }
        }
    });
    Ok(())
}

/// Reads one connection to its end (or to shutdown); the number of
/// messages (and parts) kept.
fn serve(
    conn: TcpStream,
    peer: SocketAddr,
    tls: Option<Arc<rustls::ServerConfig>>,
    mut batch: Batch<'_>,
    max_message: usize,
    ctx: &SourceContext,
) -> io::Result<u64> {
    conn.set_nonblocking(false)?;
    conn.set_read_timeout(Some(TICK))?;
    // The same socket, to make it non-blocking at a stop.
    let socket = conn.try_clone()?;
    let mut stream: Box<dyn Read> = match tls {
        Some(cfg) => {
            let mut conn = conn;
            let server = handshake(cfg, &mut conn, ctx)?;
            Box::new(rustls::StreamOwned::new(server, conn))
        }
        None => Box::new(conn),
    };
    let peer_field = [("peer", peer.to_string().into_bytes())];
    let mut framer = StreamFramer::new(max_message);
    let mut ended = false;
    let mut kept = 0u64;
    // At a stop: read on, without waiting, what the kernel has already
    // taken from the sender (who believes it delivered), for super::STOP_DRAIN.
    let mut draining_until: Option<Instant> = None;
    let mut still_sending = false;
    while !ended {
        if draining_until.is_none() && ctx.shutdown.is_set() {
            socket.set_nonblocking(true)?;
            draining_until = Some(Instant::now() + super::STOP_DRAIN);
        }
        let space = framer.read_space(64 << 10);
        match stream.read(space) {
            Ok(0) => ended = true,
            Ok(n) => {
                framer.commit(n);
                if draining_until.is_some_and(|d| Instant::now() >= d) {
                    (ended, still_sending) = (true, true);
                }
            }
            Err(e) if draining_until.is_some() && e.kind() == io::ErrorKind::WouldBlock => {
                ended = true; // all that had arrived is read
            }
            Err(e) if super::nothing_yet(&e) => {}
            Err(e) => {
                // The frames before the error are kept.
                framer.finish();
                take_frames(&mut framer, &mut batch, &peer_field, &mut kept);
                batch.flush();
                return Err(e);
            }
        }
        if ended {
            // What arrived is handed over; an unfinished frame with it.
            framer.finish();
        }
        if !take_frames(&mut framer, &mut batch, &peer_field, &mut kept) || !batch.flush() {
            // The writer is gone or took nothing while stopping: what was
            // not handed over is not kept (a gap record counts it), nor is
            // what the connection still had to send (count unknown).
            if !ended {
                super::cut_at_stop(
                    ctx,
                    batch.name(),
                    format!(
                        "the writer took nothing while the agent stopped: what the connection from {peer} still had to send was not read (count unknown)"
                    ),
                );
            }
            return Ok(kept - batch.not_written());
        }
    }
    if still_sending {
        let detail = format!(
            "the connection from {peer} was still sending when the agent stopped: what it sent after {:?} of reading on was not read (count unknown)",
            super::STOP_DRAIN
        );
        super::cut_at_stop(ctx, batch.name(), detail);
    }
    Ok(kept)
}

/// A client gets this long for its TLS handshake.
const HANDSHAKE_TIME: Duration = Duration::from_secs(10);

/// The TLS handshake, a record at a time, within [`HANDSHAKE_TIME`] (a
/// client that trickles its handshake cannot hold a connection thread, nor
/// a stop, for longer) and no longer than the source runs.
fn handshake(
    cfg: Arc<rustls::ServerConfig>,
    conn: &mut TcpStream,
    ctx: &SourceContext,
) -> io::Result<rustls::ServerConnection> {
    let mut server = rustls::ServerConnection::new(cfg).map_err(io::Error::other)?;
    let deadline = std::time::Instant::now() + HANDSHAKE_TIME;
    while server.is_handshaking() {
        if ctx.shutdown.is_set() {
            return Err(io::Error::other("stopping during the TLS handshake"));
        }
        if std::time::Instant::now() >= deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no TLS handshake within {}s", HANDSHAKE_TIME.as_secs()),
            ));
        }
        if server.wants_write() {
            server.write_tls(conn)?;
            continue;
        }
        match server.read_tls(conn) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "closed during the TLS handshake",
                ));
            }
            Ok(_) => {
                if let Err(e) = server.process_new_packets() {
                    // Tell the client why (an alert), then give up.
                    let _ = server.write_tls(conn);
                    return Err(io::Error::other(e));
                }
            }
            Err(e) if super::nothing_yet(&e) => {}
            Err(e) => return Err(e),
        }
    }
    // The last flight (e.g. the server's Finished) goes out now.
    while server.wants_write() {
        server.write_tls(conn)?;
    }
    Ok(server)
}

/// Moves the complete frames into the batch, handing full batches over.
/// False when the writer is gone.
fn take_frames(
    framer: &mut StreamFramer,
    batch: &mut Batch<'_>,
    extra: &[(&'static str, Vec<u8>)],
    kept: &mut u64,
) -> bool {
    while let Some(f) = framer.next_frame() {
        if f.message.is_empty() && f.header.is_empty() && !f.continuation {
            continue; // an empty line between messages
        }
        let arrival = Arrival {
            continuation: f.continuation,
            more_parts: f.more_parts,
            incomplete: f.incomplete,
        };
        batch.push(f.message, arrival, extra);
        *kept += 1;
        if batch.is_full() && !batch.flush() {
            return false;
        }
    }
    true
}
