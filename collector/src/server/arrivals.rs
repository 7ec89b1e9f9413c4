//! The order an agent's requests arrived in. An agent may have more than
//! one batch in flight (`[forward] in_flight`, docs/FORMAT.md §10): batch
//! N+1 is sent before the answer to batch N, on another connection, and
//! its body may be read, decompressed and ready before N's. Stored first,
//! it would be a gap (409) and the agent would send it again. Instead, a
//! batch that starts past the store's end waits until every request of
//! the same agent that arrived before it has been answered, and is then
//! stored or refused as usual. The wait ends: each earlier request ends by
//! its body's deadline at the latest (`[limits]`).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// One agent's requests not yet answered, by arrival number.
#[derive(Debug, Default)]
struct Line {
    next: u64,
    open: BTreeSet<u64>,
    moved: Arc<Notify>,
}

/// Every agent's line; an agent with nothing in flight has none.
#[derive(Debug, Default)]
pub struct Arrivals {
    lines: Mutex<HashMap<String, Line>>,
}

/// A request's place in its agent's line, given up when dropped (answered,
/// refused early, or the client gone).
#[derive(Debug)]
pub struct Ticket {
    arrivals: Arc<Arrivals>,
    id: String,
    n: u64,
}

impl Arrivals {
    fn lines(&self) -> std::sync::MutexGuard<'_, HashMap<String, Line>> {
        self.lines.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A request of agent `id` has arrived (its headers read).
    pub fn arrive(self: &Arc<Self>, id: &str) -> Ticket {
        let mut lines = self.lines();
        let line = lines.entry(id.to_owned()).or_default();
        let n = line.next;
        line.next += 1;
        line.open.insert(n);
        Ticket {
            arrivals: self.clone(),
            id: id.to_owned(),
            n,
        }
    }
}

impl Ticket {
    /// Whether a request of the same agent that arrived before this one is
    /// still open; and what tells when that changes.
    fn earlier_open(&self) -> (bool, Option<Arc<Notify>>) {
        let lines = self.arrivals.lines();
        match lines.get(&self.id) {
            Some(line) => (
                line.open.first().is_some_and(|&first| first < self.n),
                Some(line.moved.clone()),
            ),
            None => (false, None),
        }
    }

    /// Whether a request that arrived before this one is still open.
    pub fn behind_another(&self) -> bool {
        self.earlier_open().0
    }

    /// Waits until every request of the same agent that arrived before
    /// this one has been answered.
    pub async fn wait_for_earlier(&self) {
        loop {
            let (open, moved) = self.earlier_open();
            let (true, Some(moved)) = (open, moved) else {
                return;
            };
            let notified = moved.notified();
            tokio::pin!(notified);
            // Registered before looking again, so a request answered in
            // between is not missed.
            notified.as_mut().enable();
            if !self.behind_another() {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut lines = self.arrivals.lines();
        if let Some(line) = lines.get_mut(&self.id) {
            line.open.remove(&self.n);
            line.moved.notify_waiters();
            if line.open.is_empty() {
                lines.remove(&self.id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_later_request_waits_for_the_earlier_ones_of_its_agent_only() {
        let a = Arc::new(Arrivals::default());
        let first = a.arrive("a");
        let second = a.arrive("a");
        let third = a.arrive("a");
        let other = a.arrive("b");
        assert!(!first.behind_another());
        assert!(second.behind_another() && third.behind_another());
        assert!(!other.behind_another(), "another agent's line is its own");
        other.wait_for_earlier().await;
        // The third waits for both earlier ones, answered in any order.
        let waiter = tokio::spawn(async move {
            third.wait_for_earlier().await;
            third
        });
        drop(second);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "the first is still open");
        drop(first);
        let third = tokio::time::timeout(Duration::from_secs(10), waiter)
            .await
            .expect("woken once the earlier ones are answered")
            .unwrap();
        assert!(!third.behind_another());
        // A line with nothing open is removed.
        drop(third);
        drop(other);
        assert!(a.lines().is_empty());
        // A request arriving after the line emptied is first again.
        assert!(!a.arrive("a").behind_another());
    }
}
