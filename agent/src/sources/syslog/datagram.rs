//! `udp://` and `unix:` (datagram): one message per datagram.
//!
//! UDP cannot push back on its senders. What the kernel drops because the
//! socket's receive buffer was full is counted by the kernel per socket —
//! the `drops` column of /proc/net/udp (and udp6), found by the socket's
//! inode — and read every second; each increase becomes a `gap` record
//! (reason `kernel_drop`) with the count. On a Unix datagram socket senders
//! block instead (or are told, if they do not wait), and each message
//! carries the sender's pid, uid and gid (SCM_CREDENTIALS).

use super::batch::{Arrival, Batch};
use super::offset::LocalOffset;
use crate::config::SyslogSourceConfig;
use crate::sources::{Event, SourceContext};
use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
use std::io::{self, IoSliceMut};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wormlog_spool::Position;
use wormlog_spool::clock::wall_ns;
use wormlog_spool::record::{GapReason, UNKNOWN_COUNT};

const TICK: Duration = Duration::from_millis(200);
const DROPS_EVERY: Duration = Duration::from_secs(1);
/// Larger than any UDP datagram; a Unix datagram longer than this is cut
/// by the kernel, which this source notices and records.
const DATAGRAM_MAX: usize = 256 << 10;

/// Splits a datagram longer than `max` into parts that say so.
fn push_message(batch: &mut Batch<'_>, data: &[u8], max: usize, extra: &[(&'static str, Vec<u8>)]) {
    if data.len() <= max {
        batch.push(data, Arrival::default(), extra);
        return;
    }
    let parts: Vec<&[u8]> = data.chunks(max).collect();
    let last = parts.len() - 1;
    for (i, p) in parts.into_iter().enumerate() {
        let arrival = Arrival {
            continuation: i > 0,
            more_parts: i < last,
            incomplete: false,
        };
        batch.push(p, arrival, extra);
    }
}

pub fn run_udp(
    name: &Arc<str>,
    cfg: &SyslogSourceConfig,
    addr: SocketAddr,
    ctx: &SourceContext,
) -> io::Result<()> {
    let sock = UdpSocket::bind(addr)?;
    let _ = rustix::net::sockopt::set_socket_recv_buffer_size(&sock, cfg.receive_buffer.0 as usize);
    sock.set_read_timeout(Some(TICK))?;
    tracing::info!(
        source = %name,
        "source {name}: listening on udp://{}",
        sock.local_addr()?
    );
    let inode = rustix::fs::fstat(&sock).map(|s| s.st_ino).unwrap_or(0);
    let mut drops = KernelDrops::new(inode);
    let offset = LocalOffset::new();
    let mut batch = Batch::new(name, ctx, &offset);
    let max = cfg.max_message_bytes.0 as usize;
    let mut buf = vec![0u8; DATAGRAM_MAX];
    while !ctx.shutdown.is_set() {
        match sock.recv_from(&mut buf) {
            Ok((n, peer)) => {
                push_message(
                    &mut batch,
                    &buf[..n],
                    max,
                    &[("peer", peer.to_string().into_bytes())],
                );
                // Take what else is waiting, then hand it over together.
                sock.set_nonblocking(true)?;
                while !batch.is_full() {
                    match sock.recv_from(&mut buf) {
                        Ok((n, peer)) => push_message(
                            &mut batch,
                            &buf[..n],
                            max,
                            &[("peer", peer.to_string().into_bytes())],
                        ),
                        Err(_) => break,
                    }
                }
                sock.set_nonblocking(false)?;
            }
            Err(e) if super::nothing_yet(&e) => {}
            Err(e) => return Err(e),
        }
        if !batch.flush() {
            return Ok(());
        }
        if let Some(lost) = drops.new_drops()
            && !kernel_drop_gap(name, ctx, lost)
        {
            return Ok(());
        }
    }
    // A stop: what the kernel already queued for this socket is read too,
    // and its drops since the last look are recorded.
    sock.set_nonblocking(true)?;
    let drained = drain_at_stop(name, ctx, &mut batch, max, &mut buf, |buf| {
        let (n, peer) = sock.recv_from(buf)?;
        Ok((n, vec![("peer", peer.to_string().into_bytes())], false))
    });
    if let Some(lost) = drops.drops_now() {
        kernel_drop_gap(name, ctx, lost);
    }
    drained
}

/// A datagram's length, the transport's fields, and whether the kernel
/// cut it.
type Datagram = (usize, Vec<(&'static str, Vec<u8>)>, bool);

/// The writer took nothing while stopping: the datagrams still queued on
/// the socket (how many is not known) are not read. The batch that was not
/// handed over is counted already ([`crate::sources::Unwritten`]).
fn writer_gone_at_stop(name: &Arc<str>, ctx: &SourceContext) {
    super::cut_at_stop(
        ctx,
        name,
        "the writer took nothing while the agent stopped: datagrams still queued on the socket were not read (count unknown)".into(),
    );
}

/// Reads what is queued on a datagram socket at a stop, without waiting,
/// for at most [`super::STOP_DRAIN`]: the senders believe it delivered. If
/// datagrams still arrive after that, a gap record says the rest was not
/// read.
fn drain_at_stop(
    name: &Arc<str>,
    ctx: &SourceContext,
    batch: &mut Batch<'_>,
    max: usize,
    buf: &mut [u8],
    mut recv: impl FnMut(&mut [u8]) -> io::Result<Datagram>,
) -> io::Result<()> {
    let until = Instant::now() + super::STOP_DRAIN;
    loop {
        match recv(buf) {
            Ok((n, extra, truncated)) => {
                push_message(batch, &buf[..n], max, &extra);
                if truncated && !(batch.flush() && truncated_gap(name, ctx)) {
                    writer_gone_at_stop(name, ctx);
                    return Ok(());
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                batch.flush();
                return Err(e);
            }
        }
        if batch.is_full() && !batch.flush() {
            writer_gone_at_stop(name, ctx);
            return Ok(());
        }
        if Instant::now() >= until {
            let detail = format!(
                "datagrams were still arriving when the agent stopped: those after {:?} of reading on were not read (count unknown)",
                super::STOP_DRAIN
            );
            batch.flush();
            super::cut_at_stop(ctx, name, detail);
            return Ok(());
        }
    }
    batch.flush();
    Ok(())
}

fn kernel_drop_gap(name: &Arc<str>, ctx: &SourceContext, lost: u64) -> bool {
    let detail = format!(
        "the kernel dropped {lost} UDP datagrams for this socket (its receive buffer was full: raise receive_buffer, or use tcp://)"
    );
    tracing::warn!(source = %name, lost, "source {name}: {detail}");
    ctx.send(Event::Gap {
        source: name.clone(),
        position: Position::None,
        reason: GapReason::KernelDrop,
        lost_bytes: UNKNOWN_COUNT,
        lost_records: lost,
        detail,
        ts: wall_ns(),
    })
}

/// The kernel's drop count of one UDP socket.
struct KernelDrops {
    inode: u64,
    seen: Option<u64>,
    read_at: Instant,
}

impl KernelDrops {
    fn new(inode: u64) -> Self {
        let mut d = KernelDrops {
            inode,
            seen: None,
            read_at: Instant::now(),
        };
        d.seen = d.read();
        d
    }

    /// The drops since the last look, if it is time to look and any.
    fn new_drops(&mut self) -> Option<u64> {
        if self.read_at.elapsed() < DROPS_EVERY {
            return None;
        }
        self.drops_now()
    }

    /// The drops since the last look, if any, looking now.
    fn drops_now(&mut self) -> Option<u64> {
        self.read_at = Instant::now();
        let now = self.read()?;
        let before = self.seen.replace(now).unwrap_or(now);
        (now > before).then(|| now - before)
    }

    fn read(&self) -> Option<u64> {
        ["/proc/net/udp", "/proc/net/udp6"]
            .iter()
            .filter_map(|p| std::fs::read_to_string(p).ok())
            .find_map(|table| drops_of(&table, self.inode))
    }
}

/// The `drops` column of the socket with this inode in a /proc/net/udp
/// table (columns: sl local rem st tx:rx tr:when retrnsmt uid timeout inode
/// ref pointer drops).
fn drops_of(table: &str, inode: u64) -> Option<u64> {
    table.lines().skip(1).find_map(|l| {
        let cols: Vec<&str> = l.split_whitespace().collect();
        (cols.get(9)?.parse::<u64>().ok()? == inode)
            .then(|| cols.get(12)?.parse().ok())
            .flatten()
    })
}

pub fn run_unix(
    name: &Arc<str>,
    cfg: &SyslogSourceConfig,
    path: &Path,
    ctx: &SourceContext,
) -> io::Result<()> {
    // A socket left by an earlier run is replaced; anything else there is
    // refused, and so is a directory others may write to.
    crate::unix_socket::prepare(path)?;
    let sock = UnixDatagram::bind(path)?;
    std::fs::set_permissions(
        path,
        std::fs::Permissions::from_mode(cfg.mode().unwrap_or(0o666)),
    )?;
    rustix::net::sockopt::set_socket_passcred(&sock, true)?;
    let _ = rustix::net::sockopt::set_socket_recv_buffer_size(&sock, cfg.receive_buffer.0 as usize);
    sock.set_read_timeout(Some(TICK))?;
    tracing::info!(
        source = %name,
        "source {name}: listening on unix:{}",
        path.display()
    );
    let offset = LocalOffset::new();
    let mut batch = Batch::new(name, ctx, &offset);
    let max = cfg.max_message_bytes.0 as usize;
    let mut buf = vec![0u8; DATAGRAM_MAX];
    let mut cmsg = [std::mem::MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmCredentials(1))];
    while !ctx.shutdown.is_set() {
        match recv_unix(&sock, &mut buf, &mut cmsg, RecvFlags::empty()) {
            Ok((n, extra, truncated)) => {
                push_message(&mut batch, &buf[..n], max, &extra);
                if truncated && !(batch.flush() && truncated_gap(name, ctx)) {
                    return Ok(());
                }
            }
            Err(e) if super::nothing_yet(&e) => {}
            Err(e) => return Err(e),
        }
        if !batch.flush() {
            return Ok(());
        }
    }
    let drained = drain_at_stop(name, ctx, &mut batch, max, &mut buf, |buf| {
        recv_unix(&sock, buf, &mut cmsg, RecvFlags::DONTWAIT)
    });
    let _ = std::fs::remove_file(path);
    drained
}

/// One datagram from a Unix socket, with the sender's credentials.
fn recv_unix(
    sock: &UnixDatagram,
    buf: &mut [u8],
    cmsg: &mut [std::mem::MaybeUninit<u8>],
    flags: RecvFlags,
) -> io::Result<Datagram> {
    let mut control = RecvAncillaryBuffer::new(cmsg);
    let msg = rustix::net::recvmsg(
        sock.as_fd(),
        &mut [IoSliceMut::new(buf)],
        &mut control,
        flags,
    )?;
    let mut extra: Vec<(&'static str, Vec<u8>)> = Vec::with_capacity(3);
    for m in control.drain() {
        if let RecvAncillaryMessage::ScmCredentials(c) = m {
            extra.push(("pid", c.pid.as_raw_nonzero().to_string().into_bytes()));
            extra.push(("uid", c.uid.as_raw().to_string().into_bytes()));
            extra.push(("gid", c.gid.as_raw().to_string().into_bytes()));
        }
    }
    let truncated = msg.flags.contains(rustix::net::ReturnFlags::TRUNC);
    Ok((msg.bytes.min(buf.len()), extra, truncated))
}

/// A Unix datagram longer than the buffer was cut by the kernel: said in
/// the log and the chain. False when the writer is gone.
fn truncated_gap(name: &Arc<str>, ctx: &SourceContext) -> bool {
    let detail = format!(
        "a datagram longer than {} KiB was cut by the kernel; its first {} KiB are kept",
        DATAGRAM_MAX >> 10,
        DATAGRAM_MAX >> 10
    );
    tracing::warn!(source = %name, "source {name}: {detail}");
    ctx.send(Event::Gap {
        source: name.clone(),
        position: Position::None,
        reason: GapReason::Other,
        lost_bytes: UNKNOWN_COUNT,
        lost_records: 0,
        detail,
        ts: wall_ns(),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_drop_count_is_found_by_inode() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
                     1234: 0100007F:0202 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 4242 2 0000000000000000 17\n\
                     1235: 0100007F:0203 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 99 2 0000000000000000 3\n";
        assert_eq!(super::drops_of(table, 4242), Some(17));
        assert_eq!(super::drops_of(table, 99), Some(3));
        assert_eq!(super::drops_of(table, 1), None);
    }
}
