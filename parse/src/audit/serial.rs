//! Loss detection from event serials: the [`SerialTracker`].
//!
//! What a jump in the serials proves, and what it cannot, is in the
//! [module documentation](super).

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fmt;

/// Serials this close to the top of the 32-bit counter, followed by serials
/// this close to zero, are a wrap of the counter, not a reset.
const WRAP_ZONE: u64 = 1 << 20;

/// A serial that goes back (within the reorder window) at a time more than
/// this past the newest seen is a restarted counter, not a straggler.
const RESET_AFTER_MS: u64 = 60_000;

/// The limits of a [`SerialTracker`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SerialTrackerConfig {
    /// How far serials may arrive out of order: a missing serial is
    /// reported once one this much higher has arrived (or after a whole
    /// idle period, or at the end). The kernel numbers an event when its
    /// first record is started and queues it when that record ends, so
    /// events of different CPUs reach the log slightly out of order.
    pub reorder_window: u32,
    /// The most nodes (`node=` names) tracked; past it the least recently
    /// seen is dropped, with a [`LossReport::TrackingDropped`].
    pub max_nodes: usize,
    /// How many reported gaps are remembered per node, to recognise a
    /// serial that arrives after it was reported missing.
    pub remembered_gaps: usize,
}

impl Default for SerialTrackerConfig {
    fn default() -> Self {
        SerialTrackerConfig {
            reorder_window: 512,
            max_nodes: 1_024,
            remembered_gaps: 64,
        }
    }
}

/// Serials that never arrived, between two that did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    /// The node the serials belong to.
    pub node: Option<String>,
    /// The serial seen just before the hole.
    pub after_serial: u32,
    /// The serial seen just after it.
    pub before_serial: u32,
    /// How many serials are missing (each one an event, not a record).
    pub missing: u64,
}

/// What the serials (and the kernel's lost counter) say about loss.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LossReport {
    /// Events that were numbered by the kernel and never reached the log
    /// as read (see the module documentation for what this proves).
    Gap(Gap),
    /// The serial went back and time went on (a reboot restarts the
    /// counter at 1), or it went back by more than the reorder window (an
    /// older file read again): tracking starts over from `serial`. Not a
    /// loss by itself.
    SerialReset {
        node: Option<String>,
        /// The highest serial seen before.
        previous: u32,
        serial: u32,
    },
    /// A serial already reported missing arrived after all: the earlier
    /// gap overstated the loss by one.
    LateArrival { node: Option<String>, serial: u32 },
    /// A new event with a serial already seen, at an older time: the same
    /// event logged (or read) twice, or a forged line.
    RepeatedSerial { node: Option<String>, serial: u32 },
    /// `CONFIG_CHANGE … op=set lost=0 old=N`: someone reset the kernel's
    /// lost counter (`auditctl --reset-lost`), which stood at `lost`: that
    /// many records were dropped in the kernel since boot or the previous
    /// reset.
    KernelLostCounter {
        node: Option<String>,
        serial: u32,
        lost: u64,
    },
    /// More nodes than [`SerialTrackerConfig::max_nodes`]: this node's
    /// tracking was dropped; a gap of it before this point may go
    /// unreported.
    TrackingDropped { node: Option<String> },
}

impl LossReport {
    /// The name of the report (the `audit_loss` field).
    pub fn kind(&self) -> &'static str {
        match self {
            LossReport::Gap(_) => "gap",
            LossReport::SerialReset { .. } => "serial_reset",
            LossReport::LateArrival { .. } => "late_arrival",
            LossReport::RepeatedSerial { .. } => "repeated_serial",
            LossReport::KernelLostCounter { .. } => "kernel_lost_counter",
            LossReport::TrackingDropped { .. } => "tracking_dropped",
        }
    }

    /// The node the report is about.
    pub fn node(&self) -> Option<&str> {
        match self {
            LossReport::Gap(gap) => gap.node.as_deref(),
            LossReport::SerialReset { node, .. }
            | LossReport::LateArrival { node, .. }
            | LossReport::RepeatedSerial { node, .. }
            | LossReport::KernelLostCounter { node, .. }
            | LossReport::TrackingDropped { node } => node.as_deref(),
        }
    }

    /// Whether the report is evidence that events are missing (a gap, or a
    /// non-zero lost counter).
    pub fn is_loss(&self) -> bool {
        matches!(
            self,
            LossReport::Gap(_) | LossReport::KernelLostCounter { .. }
        )
    }

    /// Structured fields: `audit_loss` (the [`kind`](Self::kind)),
    /// `audit_node` when there is one, and per kind `audit_gap_after`,
    /// `audit_gap_before`, `audit_gap_missing`; `audit_serial_previous`,
    /// `audit_serial`; `audit_lost`.
    pub fn fields(&self) -> Vec<(String, Vec<u8>)> {
        let mut fields = vec![("audit_loss".to_owned(), self.kind().as_bytes().to_vec())];
        if let Some(node) = self.node() {
            fields.push(("audit_node".to_owned(), node.as_bytes().to_vec()));
        }
        let mut number =
            |name: &str, n: u64| fields.push((name.to_owned(), n.to_string().into_bytes()));
        match self {
            LossReport::Gap(gap) => {
                number("audit_gap_after", gap.after_serial.into());
                number("audit_gap_before", gap.before_serial.into());
                number("audit_gap_missing", gap.missing);
            }
            LossReport::SerialReset {
                previous, serial, ..
            } => {
                number("audit_serial_previous", (*previous).into());
                number("audit_serial", (*serial).into());
            }
            LossReport::LateArrival { serial, .. } | LossReport::RepeatedSerial { serial, .. } => {
                number("audit_serial", (*serial).into());
            }
            LossReport::KernelLostCounter { serial, lost, .. } => {
                number("audit_serial", (*serial).into());
                number("audit_lost", *lost);
            }
            LossReport::TrackingDropped { .. } => {}
        }
        fields
    }
}

impl fmt::Display for LossReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(node) = self.node() {
            write!(f, "node {node}: ")?;
        }
        match self {
            LossReport::Gap(gap) => write!(
                f,
                "{} audit event(s) missing between serial {} and serial {}",
                gap.missing, gap.after_serial, gap.before_serial
            ),
            LossReport::SerialReset {
                previous, serial, ..
            } => {
                write!(
                    f,
                    "audit serial went back from {previous} to {serial} (reboot or older log): tracking restarts"
                )
            }
            LossReport::LateArrival { serial, .. } => {
                write!(f, "audit serial {serial}, reported missing, arrived late")
            }
            LossReport::RepeatedSerial { serial, .. } => {
                write!(f, "audit serial {serial} seen again in another event")
            }
            LossReport::KernelLostCounter { lost, .. } => {
                write!(
                    f,
                    "the kernel's audit lost counter was reset at {lost}: {lost} record(s) dropped in the kernel"
                )
            }
            LossReport::TrackingDropped { .. } => {
                write!(f, "too many nodes: serial tracking of this node dropped")
            }
        }
    }
}

/// Per node: which serials have been seen. Positions are serials made
/// 64-bit across wraps of the 32-bit counter (`epoch << 32 | serial`).
#[derive(Debug)]
struct NodeSerials {
    /// Every position up to here was seen or reported missing.
    floor: u64,
    /// The first position seen: what came before is unknown.
    origin: u64,
    /// Positions above `floor` that were seen.
    seen_above: BTreeSet<u64>,
    /// The highest position seen.
    high: u64,
    /// The newest timestamp seen (ms).
    newest_ms: u64,
    /// At the previous tick, holes below this position were open.
    marked: Option<u64>,
    /// Ranges of positions reported missing, oldest first.
    missing: VecDeque<(u64, u64)>,
    /// For dropping the least recently seen node.
    last_used: u64,
    /// auditd (re)started since the last serial: a serial that goes back
    /// is a new boot.
    reset_expected: bool,
}

impl NodeSerials {
    /// A node whose first serial (or first after a reset) is `serial`.
    fn starting_at(serial: u32, timestamp_ms: u64, uses: u64) -> Self {
        let start = u64::from(serial);
        NodeSerials {
            floor: start,
            origin: start,
            seen_above: BTreeSet::new(),
            high: start,
            newest_ms: timestamp_ms,
            marked: None,
            missing: VecDeque::new(),
            last_used: uses,
            reset_expected: false,
        }
    }
}

/// Follows the serials of events per node and reports gaps and resets.
/// Feed it the first record of each event, in arrival order, except
/// auditd's own `DAEMON_*` records (their serials are auditd's).
#[derive(Debug)]
pub struct SerialTracker {
    config: SerialTrackerConfig,
    nodes: HashMap<Option<Box<str>>, NodeSerials>,
    uses: u64,
}

impl Default for SerialTracker {
    fn default() -> Self {
        SerialTracker::new(SerialTrackerConfig::default())
    }
}

impl SerialTracker {
    /// A tracker with these limits.
    pub fn new(config: SerialTrackerConfig) -> Self {
        SerialTracker {
            config,
            nodes: HashMap::new(),
            uses: 0,
        }
    }

    /// How many nodes are tracked.
    pub fn tracked_nodes(&self) -> usize {
        self.nodes.len()
    }

    /// A new event's serial, and its timestamp in milliseconds.
    pub fn observe(
        &mut self,
        node: Option<&str>,
        serial: u32,
        timestamp_ms: u64,
    ) -> Vec<LossReport> {
        let mut out = Vec::new();
        self.uses += 1;
        let uses = self.uses;
        let key: Option<Box<str>> = node.map(Box::from);
        if !self.nodes.contains_key(&key) {
            if self.nodes.len() >= self.config.max_nodes.max(1) {
                let victim = self
                    .nodes
                    .iter()
                    .min_by_key(|(_, n)| n.last_used)
                    .map(|(k, _)| k.clone());
                if let Some(victim) = victim {
                    self.nodes.remove(&victim);
                    out.push(LossReport::TrackingDropped {
                        node: victim.map(String::from),
                    });
                }
            }
            self.nodes
                .insert(key, NodeSerials::starting_at(serial, timestamp_ms, uses));
            return out;
        }
        let window = u64::from(self.config.reorder_window);
        let remembered = self.config.remembered_gaps;
        let state = self.nodes.get_mut(&key).expect("tracked");
        state.last_used = uses;
        let node = || node.map(str::to_owned);
        let position = state.position(serial);
        let reset_expected = std::mem::take(&mut state.reset_expected);
        if position > state.floor {
            if !state.seen_above.insert(position) {
                out.push(LossReport::RepeatedSerial {
                    node: node(),
                    serial,
                });
                return out;
            }
            state.high = state.high.max(position);
            state.newest_ms = state.newest_ms.max(timestamp_ms);
            state.advance();
            while state.high - state.floor > window {
                state.declare_next(node(), remembered, &mut out);
            }
        } else if state.take_missing(position) {
            out.push(LossReport::LateArrival {
                node: node(),
                serial,
            });
        } else if state.floor - position > window
            || reset_expected
            || timestamp_ms > state.newest_ms.saturating_add(RESET_AFTER_MS)
        {
            // Far back, or back after auditd started, or back while the
            // clock went on by more than a minute: the counter restarted.
            let previous = (state.high & 0xffff_ffff) as u32;
            state.declare_all(node(), remembered, &mut out);
            out.push(LossReport::SerialReset {
                node: node(),
                previous,
                serial,
            });
            *state = NodeSerials::starting_at(serial, timestamp_ms, uses);
        } else if position < state.origin {
            // Before the first serial seen: nothing is known there.
        } else {
            out.push(LossReport::RepeatedSerial {
                node: node(),
                serial,
            });
        }
        out
    }

    /// auditd wrote `DAEMON_START`: it starts after a boot, so the next
    /// serial of this node that goes back, even a little, is a new boot.
    pub fn daemon_started(&mut self, node: Option<&str>) {
        let key: Option<Box<str>> = node.map(Box::from);
        if let Some(state) = self.nodes.get_mut(&key) {
            state.reset_expected = true;
        }
    }

    /// Called once per idle period: holes that were already open at the
    /// previous call are reported missing.
    pub fn tick(&mut self) -> Vec<LossReport> {
        let mut out = Vec::new();
        let remembered = self.config.remembered_gaps;
        for (node, state) in &mut self.nodes {
            let name = || node.as_deref().map(str::to_owned);
            if let Some(mark) = state.marked {
                while state.seen_above.first().is_some_and(|&next| next <= mark) {
                    state.declare_next(name(), remembered, &mut out);
                }
            }
            state.marked = state.seen_above.last().copied();
        }
        sort_by_node(&mut out);
        out
    }

    /// The end of the input: every hole still open is reported missing.
    pub fn finish(&mut self) -> Vec<LossReport> {
        let mut out = Vec::new();
        let remembered = self.config.remembered_gaps;
        for (node, state) in &mut self.nodes {
            state.declare_all(node.as_deref().map(str::to_owned), remembered, &mut out);
        }
        sort_by_node(&mut out);
        out
    }
}

/// Reports of several nodes in a stable order.
fn sort_by_node(reports: &mut [LossReport]) {
    reports.sort_by(|a, b| a.node().cmp(&b.node()));
}

impl NodeSerials {
    /// The 64-bit position of `serial`, next to the highest seen.
    fn position(&self, serial: u32) -> u64 {
        let epoch = self.high >> 32;
        let high = self.high & 0xffff_ffff;
        let serial = u64::from(serial);
        let position = (epoch << 32) | serial;
        if high >= u64::from(u32::MAX) - WRAP_ZONE && serial <= WRAP_ZONE {
            position + (1 << 32)
        } else if epoch > 0 && high <= WRAP_ZONE && serial >= u64::from(u32::MAX) - WRAP_ZONE {
            position - (1 << 32)
        } else {
            position
        }
    }

    /// Moves the floor over the positions seen right above it.
    fn advance(&mut self) {
        while self.seen_above.first() == Some(&(self.floor + 1)) {
            self.seen_above.pop_first();
            self.floor += 1;
        }
    }

    /// Reports the hole below the lowest position seen above the floor.
    fn declare_next(&mut self, node: Option<String>, remembered: usize, out: &mut Vec<LossReport>) {
        let Some(next) = self.seen_above.pop_first() else {
            return;
        };
        let missing = next - self.floor - 1;
        if missing > 0 {
            out.push(LossReport::Gap(Gap {
                node,
                after_serial: (self.floor & 0xffff_ffff) as u32,
                before_serial: (next & 0xffff_ffff) as u32,
                missing,
            }));
            self.missing.push_back((self.floor + 1, next - 1));
            while self.missing.len() > remembered {
                self.missing.pop_front();
            }
        }
        self.floor = next;
        self.advance();
    }

    fn declare_all(&mut self, node: Option<String>, remembered: usize, out: &mut Vec<LossReport>) {
        while !self.seen_above.is_empty() {
            self.declare_next(node.clone(), remembered, out);
        }
        self.marked = None;
    }

    /// Whether `position` was reported missing; if so it no longer is.
    fn take_missing(&mut self, position: u64) -> bool {
        let Some(i) = self
            .missing
            .iter()
            .position(|&(lo, hi)| (lo..=hi).contains(&position))
        else {
            return false;
        };
        let (lo, hi) = self.missing[i];
        self.missing.remove(i);
        if position > lo {
            self.missing.push_back((lo, position - 1));
        }
        if position < hi {
            self.missing.push_back((position + 1, hi));
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gap(after: u32, before: u32, missing: u64) -> LossReport {
        LossReport::Gap(Gap {
            node: None,
            after_serial: after,
            before_serial: before,
            missing,
        })
    }

    fn feed(tracker: &mut SerialTracker, serials: &[u32]) -> Vec<LossReport> {
        serials
            .iter()
            .flat_map(|&s| tracker.observe(None, s, 1_000))
            .collect()
    }

    fn small_window() -> SerialTracker {
        SerialTracker::new(SerialTrackerConfig {
            reorder_window: 4,
            ..SerialTrackerConfig::default()
        })
    }

    #[test]
    fn consecutive_and_slightly_reordered_serials_are_no_loss() {
        let mut t = small_window();
        assert!(
            feed(
                &mut t,
                &[100, 101, 103, 102, 104, 106, 105, 107, 108, 109, 110, 111]
            )
            .is_empty()
        );
        assert!(t.tick().is_empty() && t.tick().is_empty() && t.finish().is_empty());
    }

    #[test]
    fn a_hole_is_reported_once_the_window_has_passed() {
        let mut t = small_window();
        assert!(
            feed(&mut t, &[10, 11, 15]).is_empty(),
            "within the window: 12–14 may still come"
        );
        assert_eq!(feed(&mut t, &[16]), [gap(11, 15, 3)]);
        assert!(feed(&mut t, &[17, 18, 20]).is_empty());
        // Serial 19 is still within the window; the end of input reports it.
        assert_eq!(t.finish(), [gap(18, 20, 1)]);
    }

    #[test]
    fn a_hole_that_survives_a_whole_idle_period_is_reported() {
        let mut t = small_window();
        assert!(feed(&mut t, &[1, 2, 4]).is_empty());
        assert!(t.tick().is_empty(), "first tick: the hole is only marked");
        assert!(feed(&mut t, &[5]).is_empty());
        assert_eq!(t.tick(), [gap(2, 4, 1)]);
        assert!(t.tick().is_empty());
    }

    #[test]
    fn a_late_serial_corrects_its_gap() {
        let mut t = small_window();
        assert_eq!(feed(&mut t, &[1, 2, 8]), [gap(2, 8, 5)]);
        assert_eq!(
            feed(&mut t, &[4]),
            [LossReport::LateArrival {
                node: None,
                serial: 4
            }]
        );
        assert_eq!(
            feed(&mut t, &[4]),
            [LossReport::RepeatedSerial {
                node: None,
                serial: 4
            }]
        );
        assert_eq!(
            feed(&mut t, &[8]),
            [LossReport::RepeatedSerial {
                node: None,
                serial: 8
            }]
        );
    }

    #[test]
    fn going_back_is_a_reset_not_a_huge_gap() {
        let mut t = small_window();
        assert!(t.observe(None, 98_765, 1_000_000).is_empty());
        assert!(t.observe(None, 98_766, 1_000_001).is_empty());
        // Reboot: the counter restarts, the clock goes on.
        assert_eq!(
            t.observe(None, 3, 1_090_000),
            [LossReport::SerialReset {
                node: None,
                previous: 98_766,
                serial: 3
            }]
        );
        for serial in 4..=20 {
            assert!(t.observe(None, serial, 1_090_001).is_empty());
        }
        // An older file read again: far back, at an older time.
        let reports = t.observe(None, 1, 5);
        assert_eq!(
            reports,
            [LossReport::SerialReset {
                node: None,
                previous: 20,
                serial: 1
            }]
        );
        // A holes still open at a reset is reported before it.
        let mut t = small_window();
        feed(&mut t, &[50, 52]);
        assert_eq!(
            t.observe(None, 1, 9_000),
            [
                gap(50, 52, 1),
                LossReport::SerialReset {
                    node: None,
                    previous: 52,
                    serial: 1
                }
            ]
        );
    }

    #[test]
    fn after_daemon_start_a_small_step_back_is_a_reset() {
        let mut t = SerialTracker::default();
        assert!(feed(&mut t, &[298, 299, 300]).is_empty());
        // Without a hint, a step back within the window is a repeat.
        assert_eq!(
            feed(&mut t, &[299]),
            [LossReport::RepeatedSerial {
                node: None,
                serial: 299
            }]
        );
        t.daemon_started(None);
        assert_eq!(
            feed(&mut t, &[1]),
            [LossReport::SerialReset {
                node: None,
                previous: 300,
                serial: 1
            }]
        );
        assert!(feed(&mut t, &[2, 3]).is_empty());
        // The hint is used once: an auditd restart without a reboot
        // changes nothing.
        t.daemon_started(None);
        assert!(feed(&mut t, &[4, 5]).is_empty());
        assert_eq!(
            feed(&mut t, &[5]),
            [LossReport::RepeatedSerial {
                node: None,
                serial: 5
            }]
        );
    }

    #[test]
    fn the_32_bit_counter_wraps_without_a_reset() {
        let mut t = small_window();
        assert!(feed(&mut t, &[u32::MAX - 1, u32::MAX, 0, 1, 2]).is_empty());
        assert_eq!(feed(&mut t, &[9]), [gap(2, 9, 6)]);
        let mut t = small_window();
        assert_eq!(
            feed(&mut t, &[u32::MAX - 1, 3, 4, 5, 6, 7, 8]),
            [gap(u32::MAX - 1, 3, 4)]
        );
    }

    #[test]
    fn nodes_are_tracked_apart_and_bounded() {
        let mut t = SerialTracker::new(SerialTrackerConfig {
            reorder_window: 1,
            max_nodes: 2,
            remembered_gaps: 4,
        });
        assert!(t.observe(Some("a"), 10, 1).is_empty());
        assert!(t.observe(Some("b"), 500, 1).is_empty());
        assert!(t.observe(Some("a"), 11, 2).is_empty());
        assert!(t.observe(Some("b"), 501, 2).is_empty());
        assert_eq!(
            t.observe(Some("c"), 7, 3),
            [LossReport::TrackingDropped {
                node: Some("a".into())
            }],
            "the least recently seen node is dropped"
        );
        assert_eq!(t.tracked_nodes(), 2);
        let reports = t.observe(Some("b"), 505, 4);
        assert_eq!(
            reports,
            [LossReport::Gap(Gap {
                node: Some("b".into()),
                after_serial: 501,
                before_serial: 505,
                missing: 3
            })]
        );
        assert_eq!(
            reports[0].to_string(),
            "node b: 3 audit event(s) missing between serial 501 and serial 505"
        );
        assert_eq!(
            reports[0].fields(),
            [
                ("audit_loss".to_owned(), b"gap".to_vec()),
                ("audit_node".to_owned(), b"b".to_vec()),
                ("audit_gap_after".to_owned(), b"501".to_vec()),
                ("audit_gap_before".to_owned(), b"505".to_vec()),
                ("audit_gap_missing".to_owned(), b"3".to_vec()),
            ]
        );
    }

    #[test]
    fn stragglers_from_before_the_first_serial_are_not_alarms() {
        let mut t = small_window();
        assert!(feed(&mut t, &[100, 99, 101]).is_empty());
    }
}
