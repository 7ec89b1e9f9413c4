//! What connections and request bodies may hold at once (`[limits]`): open
//! connections, all together and per client, and request bytes being
//! received and checked, all together and per client. Every grant is a
//! permit that gives its share back when dropped, so no path can leak one.

use crate::config::Limits;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Who a connection belongs to: its client certificate when it showed one
/// (SHA-256 of the leaf), its address otherwise.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ClientKey {
    Cert([u8; 32]),
    Addr(IpAddr),
}

#[derive(Debug, Default)]
struct Counts {
    connections: usize,
    /// Connections per address before the client is known (TLS handshakes
    /// under way).
    unknown_per_addr: HashMap<IpAddr, usize>,
    per_client: HashMap<ClientKey, usize>,
    bytes: usize,
    bytes_per_client: HashMap<ClientKey, usize>,
}

/// The shared accounting.
#[derive(Debug)]
pub struct Gate {
    limits: Limits,
    /// Bytes one client may have in flight: a batch and its decompressed
    /// form.
    per_client_bytes: usize,
    counts: Mutex<Counts>,
}

/// An open connection, counted until dropped.
#[derive(Debug)]
pub struct ConnPermit {
    gate: Arc<Gate>,
    /// Counted as an address not yet known as a client.
    unknown: Option<IpAddr>,
    client: Option<ClientKey>,
}

/// Request bytes in flight, counted until dropped.
#[derive(Debug)]
pub struct BytesPermit {
    gate: Arc<Gate>,
    client: ClientKey,
    n: usize,
}

impl Gate {
    pub fn new(limits: Limits, max_batch_bytes: usize) -> Arc<Gate> {
        Arc::new(Gate {
            limits,
            per_client_bytes: max_batch_bytes.saturating_mul(2),
            counts: Mutex::new(Counts::default()),
        })
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new connection, if fewer than `max_connections` are open.
    pub fn connection(self: &Arc<Self>) -> Option<ConnPermit> {
        let mut c = self.counts();
        if c.connections >= self.limits.max_connections {
            return None;
        }
        c.connections += 1;
        crate::metrics::get().connections.set(c.connections as i64);
        Some(ConnPermit {
            gate: self.clone(),
            unknown: None,
            client: None,
        })
    }

    /// Reserves `n` request bytes for `client`; None: over the client's or
    /// the collector's share (answer 429).
    pub fn bytes(self: &Arc<Self>, client: &ClientKey, n: usize) -> Option<BytesPermit> {
        let mut c = self.counts();
        let mine = c.bytes_per_client.get(client).copied().unwrap_or(0);
        if c.bytes.saturating_add(n) > self.limits.max_ingest_bytes
            || mine.saturating_add(n) > self.per_client_bytes
        {
            return None;
        }
        c.bytes += n;
        *c.bytes_per_client.entry(client.clone()).or_default() += n;
        crate::metrics::get().ingest_bytes.set(c.bytes as i64);
        Some(BytesPermit {
            gate: self.clone(),
            client: client.clone(),
            n,
        })
    }
}

impl Gate {
    /// Why `n` more bytes for `client` do not fit, for the 429 answer.
    pub fn busy_reason(&self, client: &ClientKey, n: usize) -> String {
        let c = self.counts();
        format!(
            "the collector is receiving as much as it takes at once: {n} more bytes would make this client's {} (of at most {}) and everyone's {} (of at most {}, limits.max_ingest_bytes)",
            c.bytes_per_client.get(client).copied().unwrap_or(0) + n,
            self.per_client_bytes,
            c.bytes + n,
            self.limits.max_ingest_bytes
        )
    }
}

impl ConnPermit {
    /// Counts the connection against its address until its client is
    /// known (the TLS handshake); false if the address already has
    /// `max_connections_per_client` connections whose client is not known
    /// yet (close it at once).
    pub fn handshaking(&mut self, addr: IpAddr) -> bool {
        let mut c = self.gate.counts();
        let n = c.unknown_per_addr.entry(addr).or_default();
        if *n >= self.gate.limits.max_connections_per_client {
            if *n == 0 {
                c.unknown_per_addr.remove(&addr);
            }
            return false;
        }
        *n += 1;
        self.unknown = Some(addr);
        true
    }

    fn known(&mut self, c: &mut Counts) {
        if let Some(a) = self.unknown.take()
            && let Some(n) = c.unknown_per_addr.get_mut(&a)
        {
            *n -= 1;
            if *n == 0 {
                c.unknown_per_addr.remove(&a);
            }
        }
    }

    /// Names the connection's client; false (and not counted for it) if
    /// the client already has `max_connections_per_client` open.
    pub fn claim(&mut self, client: ClientKey) -> bool {
        let gate = self.gate.clone();
        let mut c = gate.counts();
        self.known(&mut c);
        let n = c.per_client.entry(client.clone()).or_default();
        if *n >= self.gate.limits.max_connections_per_client {
            if *n == 0 {
                c.per_client.remove(&client);
            }
            return false;
        }
        *n += 1;
        self.client = Some(client);
        true
    }
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        let gate = self.gate.clone();
        let mut c = gate.counts();
        self.known(&mut c);
        c.connections -= 1;
        if let Some(k) = self.client.take()
            && let Some(n) = c.per_client.get_mut(&k)
        {
            *n -= 1;
            if *n == 0 {
                c.per_client.remove(&k);
            }
        }
        crate::metrics::get().connections.set(c.connections as i64);
    }
}

impl BytesPermit {
    /// Grows this reservation by `n` (a body's decompressed form); false if
    /// that does not fit.
    pub fn grow(&mut self, n: usize) -> bool {
        let Some(more) = self.gate.bytes(&self.client, n) else {
            return false;
        };
        self.n += more.n;
        // `more` is now part of this permit: forget it without giving back.
        let mut more = more;
        more.n = 0;
        true
    }
}

impl BytesPermit {
    /// Gives back `n` of the bytes this permit holds (a body freed once
    /// decompressed).
    pub fn shrink(&mut self, n: usize) {
        let n = n.min(self.n);
        let mut c = self.gate.counts();
        c.bytes -= n;
        if let Some(m) = c.bytes_per_client.get_mut(&self.client) {
            *m -= n;
        }
        self.n -= n;
        crate::metrics::get().ingest_bytes.set(c.bytes as i64);
    }
}

impl Drop for BytesPermit {
    fn drop(&mut self) {
        if self.n == 0 {
            return;
        }
        let mut c = self.gate.counts();
        c.bytes -= self.n;
        if let Some(m) = c.bytes_per_client.get_mut(&self.client) {
            *m -= self.n;
            if *m == 0 {
                c.bytes_per_client.remove(&self.client);
            }
        }
        crate::metrics::get().ingest_bytes.set(c.bytes as i64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permits_count_and_give_back() {
        let limits = Limits {
            max_connections: 2,
            max_connections_per_client: 1,
            max_ingest_bytes: 100,
            ..Limits::default()
        };
        let g = Gate::new(limits, 30);
        let a = ClientKey::Addr("10.0.0.1".parse().unwrap());
        let b = ClientKey::Addr("10.0.0.2".parse().unwrap());
        let mut c1 = g.connection().unwrap();
        let mut c2 = g.connection().unwrap();
        assert!(g.connection().is_none(), "global cap");
        assert!(c1.claim(a.clone()));
        assert!(!c2.claim(a.clone()), "per-client cap");
        assert!(c2.claim(b.clone()));
        drop(c1);
        let mut c3 = g.connection().unwrap();
        assert!(c3.claim(a.clone()), "a's slot was given back");
        // Bytes: per client 60 (twice the batch), all together 100.
        let mut p1 = g.bytes(&a, 50).unwrap();
        assert!(g.bytes(&a, 11).is_none(), "over a's share");
        assert!(!p1.grow(11));
        assert!(p1.grow(10));
        p1.shrink(5);
        assert!(g.bytes(&a, 6).is_none());
        assert!(p1.grow(5));
        let p2 = g.bytes(&b, 40).unwrap();
        assert!(g.bytes(&b, 1).is_none(), "over the collector's share");
        drop(p1);
        assert!(g.bytes(&b, 20).is_some());
        drop(p2);
        assert_eq!(g.counts().bytes, 0);
        assert!(g.counts().bytes_per_client.is_empty());
        drop((c2, c3));
        assert_eq!(g.counts().connections, 0);
        assert!(g.counts().per_client.is_empty());
        // Before the handshake: one address, max_connections_per_client.
        let ip: IpAddr = "10.0.0.9".parse().unwrap();
        let mut h1 = g.connection().unwrap();
        assert!(h1.handshaking(ip));
        let mut h2 = g.connection().unwrap();
        assert!(!h2.handshaking(ip), "a second handshake from the address");
        assert!(h1.claim(ClientKey::Cert([1; 32])));
        assert!(h2.handshaking(ip), "the first is known now");
        drop((h1, h2));
        assert!(g.counts().unknown_per_addr.is_empty());
        assert!(g.counts().per_client.is_empty());
    }
}
