//! Rate limits for what a hostile client could otherwise multiply: alert
//! records in the collector's own chain and warning lines in its log. Each
//! key (a registered agent, or one key for everyone unauthenticated) may
//! pass `burst` times per `window`; what is held back is counted and told
//! with the next one let through, so nothing is hidden, only summed.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct RateLimit {
    window: Duration,
    burst: u32,
    keys: Mutex<HashMap<String, Slot>>,
}

#[derive(Debug)]
struct Slot {
    since: Instant,
    passed: u32,
    held_back: u64,
}

/// What a caller may do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Go ahead; this many like it were held back since the last one.
    Pass { held_back: u64 },
    /// Held back (counted).
    Hold,
}

impl RateLimit {
    pub fn new(burst: u32, window: Duration) -> RateLimit {
        RateLimit {
            window,
            burst: burst.max(1),
            keys: Mutex::new(HashMap::new()),
        }
    }

    /// Keys must come from a bounded set (registered agents and fixed
    /// names), never from what a client sent.
    pub fn check(&self, key: &str) -> Verdict {
        self.check_at(key, Instant::now())
    }

    fn check_at(&self, key: &str, now: Instant) -> Verdict {
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        let slot = keys.entry(key.to_owned()).or_insert(Slot {
            since: now,
            passed: 0,
            held_back: 0,
        });
        if now.duration_since(slot.since) >= self.window {
            slot.since = now;
            slot.passed = 0;
        }
        if slot.passed < self.burst {
            slot.passed += 1;
            let held_back = std::mem::take(&mut slot.held_back);
            Verdict::Pass { held_back }
        } else {
            slot.held_back += 1;
            Verdict::Hold
        }
    }
}

impl RateLimit {
    /// What was held back since it was last told, per key; counted from
    /// zero again (so that a flood that stops is still told once).
    pub fn drain(&self) -> Vec<(String, u64)> {
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        keys.iter_mut()
            .filter(|(_, s)| s.held_back > 0)
            .map(|(k, s)| (k.clone(), std::mem::take(&mut s.held_back)))
            .collect()
    }
}

/// The words added to a message let through after others were held back.
pub fn held_back_note(n: u64) -> String {
    if n == 0 {
        String::new()
    } else {
        format!(" ({n} more like it were held back by the rate limit)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_a_burst_then_counts_what_it_holds() {
        let r = RateLimit::new(2, Duration::from_secs(60));
        let t0 = Instant::now();
        assert_eq!(r.check_at("a", t0), Verdict::Pass { held_back: 0 });
        assert_eq!(r.check_at("a", t0), Verdict::Pass { held_back: 0 });
        assert_eq!(r.check_at("a", t0), Verdict::Hold);
        assert_eq!(r.check_at("a", t0), Verdict::Hold);
        // Another key is not held back by the first.
        assert_eq!(r.check_at("b", t0), Verdict::Pass { held_back: 0 });
        // A new window: the first one through tells what was held back.
        let t1 = t0 + Duration::from_secs(61);
        assert_eq!(r.check_at("a", t1), Verdict::Pass { held_back: 2 });
        assert_eq!(r.check_at("a", t1), Verdict::Pass { held_back: 0 });
        // Held back and never followed by one let through: drained once.
        assert_eq!(r.check_at("a", t1), Verdict::Hold);
        assert_eq!(r.drain(), vec![("a".to_owned(), 1)]);
        assert!(r.drain().is_empty());
        assert_eq!(r.check_at("a", t1), Verdict::Hold);
        let t2 = t1 + Duration::from_secs(61);
        assert_eq!(r.check_at("a", t2), Verdict::Pass { held_back: 1 });
    }
}
