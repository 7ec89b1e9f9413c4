//! An agent's timeline: when it was watching and when it was not, as the
//! console draws it. Derived data kept beside the search index (and built in
//! the same pass over the store): every record that tells about the agent's
//! life — a start, a stop, a configuration, a clock step, a gap, a
//! recovery, an alert, a key epoch, a prune — becomes an [`Event`], and
//! every stretch between two consecutive records longer than twice the
//! heartbeat interval in force becomes a *silence* (the agent promises a
//! record at least every interval while it runs, FORMAT §6.8). Heartbeats,
//! checkpoints and entries leave nothing here: a year of them is a handful
//! of silences and a few tens of thousands of events.
//!
//! File `<store_dir>/index/<agent>/timeline`: a 48-byte header (magic, the
//! state after the last record taken in, CRC32C), then the events, each
//! `len u16` and `len` bytes ending in their CRC32C. The header is written
//! after the events it covers; events beyond it (a crash in between) are
//! cut at load and found again.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use wormlog_spool::record::{AlertCode, GapReason, Kind, Payload, Record, UNKNOWN_COUNT};

const MAGIC: &[u8; 8] = b"WLTLN001";
const HEADER: usize = 48;
/// The heartbeat interval assumed before the first `start` record (the
/// agent's default).
const DEFAULT_HEARTBEAT_NS: u64 = 60_000_000_000;
/// The most bytes of an event's text.
const TEXT_MAX: usize = 512;

/// What an event is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Class {
    /// `code`: 0 the previous run did not stop cleanly, 1 it did, 2 the
    /// first start of the log.
    Start = 1,
    Stop = 2,
    Config = 3,
    /// `a` the expected wall time, `b` the observed one.
    ClockStep = 4,
    /// `code` the gap reason, `a` lost bytes, `b` lost records (-1 unknown).
    Gap = 5,
    /// `code` the recovery cause.
    Recovery = 6,
    /// `code` the alert code.
    Alert = 7,
    /// `a` the new epoch.
    EpochKey = 8,
    Prune = 9,
    /// No record between `a` (the record before) and `ts`; `code` says what
    /// ended it: 0 a record of the running agent, 1 a start after a clean
    /// stop, 2 a start after an unclean one.
    Silence = 10,
}

impl Class {
    fn from_u8(v: u8) -> Option<Class> {
        use Class::*;
        Some(match v {
            1 => Start,
            2 => Stop,
            3 => Config,
            4 => ClockStep,
            5 => Gap,
            6 => Recovery,
            7 => Alert,
            8 => EpochKey,
            9 => Prune,
            10 => Silence,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        use Class::*;
        match self {
            Start => "start",
            Stop => "stop",
            Config => "config",
            ClockStep => "clock_step",
            Gap => "gap",
            Recovery => "recovery",
            Alert => "alert",
            EpochKey => "epoch_key",
            Prune => "prune",
            Silence => "silence",
        }
    }
}

/// One event of the timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The record that tells it.
    pub seq: u64,
    pub ts: i64,
    pub class: Class,
    pub code: u16,
    pub a: i64,
    pub b: i64,
    pub text: String,
}

impl Event {
    fn encode(&self, out: &mut Vec<u8>) {
        let text = wormlog_spool::record::truncate_utf8(&self.text, TEXT_MAX);
        let len = 8 + 8 + 1 + 2 + 8 + 8 + text.len() + 4;
        let start = out.len();
        out.extend_from_slice(&(len as u16).to_le_bytes());
        out.extend_from_slice(&self.seq.to_le_bytes());
        out.extend_from_slice(&self.ts.to_le_bytes());
        out.push(self.class as u8);
        out.extend_from_slice(&self.code.to_le_bytes());
        out.extend_from_slice(&self.a.to_le_bytes());
        out.extend_from_slice(&self.b.to_le_bytes());
        out.extend_from_slice(text.as_bytes());
        let crc = crc32c::crc32c(&out[start + 2..]);
        out.extend_from_slice(&crc.to_le_bytes());
    }

    /// One event from the start of `b`, and its length; None when it is
    /// cut short or damaged.
    fn decode(b: &[u8]) -> Option<(Event, usize)> {
        let len = usize::from(u16::from_le_bytes(b.get(..2)?.try_into().ok()?));
        let body = b.get(2..2 + len)?;
        if len < 39 {
            return None;
        }
        let (data, crc) = body.split_at(len - 4);
        if crc32c::crc32c(data) != u32::from_le_bytes(crc.try_into().ok()?) {
            return None;
        }
        let u = |i: usize| u64::from_le_bytes(data[i..i + 8].try_into().expect("8"));
        let e = Event {
            seq: u(0),
            ts: u(8) as i64,
            class: Class::from_u8(data[16])?,
            code: u16::from_le_bytes(data[17..19].try_into().expect("2")),
            a: u(19) as i64,
            b: u(27) as i64,
            text: String::from_utf8_lossy(&data[35..]).into_owned(),
        };
        Some((e, 2 + len))
    }

    /// What the event says, in a word or two (the cause of a gap, …).
    pub fn cause(&self) -> String {
        match self.class {
            Class::Gap => GapReason::from_u16(self.code)
                .map_or_else(|| format!("reason {}", self.code), |g| g.name().to_owned()),
            Class::Alert => AlertCode::name_of(self.code).to_owned(),
            Class::Recovery => wormlog_spool::record::RecoveryCause::from_u8(self.code as u8)
                .map_or("unknown", |c| c.name())
                .to_owned(),
            Class::Start => ["after an unclean stop", "after a clean stop", "first start"]
                .get(usize::from(self.code))
                .copied()
                .unwrap_or("")
                .to_owned(),
            Class::Silence => [
                "no record from the running agent",
                "stopped",
                "not running (unclean stop)",
            ]
            .get(usize::from(self.code))
            .copied()
            .unwrap_or("")
            .to_owned(),
            _ => String::new(),
        }
    }
}

/// Where taking records in stands: what the next record is compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct State {
    /// The seq of the next record to take in.
    pub next_seq: u64,
    /// The time of the last record taken in (None before the first).
    pub last_ts: Option<i64>,
    pub heartbeat_ns: u64,
    /// A `stop` record since the last `start`.
    pub stopped: bool,
    /// A `start` record taken in.
    pub started: bool,
    /// Where the events this state covers end in the file (events past
    /// it are what a crash left before the header was written).
    pub events_end: u64,
}

impl State {
    const NEW: State = State {
        next_seq: 0,
        last_ts: None,
        heartbeat_ns: DEFAULT_HEARTBEAT_NS,
        stopped: false,
        started: false,
        events_end: HEADER as u64,
    };

    fn encode(&self) -> [u8; HEADER] {
        let mut b = [0u8; HEADER];
        b[..8].copy_from_slice(MAGIC);
        b[8..16].copy_from_slice(&self.next_seq.to_le_bytes());
        b[16..24].copy_from_slice(&self.last_ts.unwrap_or(i64::MIN).to_le_bytes());
        b[24..32].copy_from_slice(&self.heartbeat_ns.to_le_bytes());
        b[32] = u8::from(self.stopped);
        b[33] = u8::from(self.started);
        b[36..44].copy_from_slice(&self.events_end.to_le_bytes());
        let crc = crc32c::crc32c(&b[..44]);
        b[44..48].copy_from_slice(&crc.to_le_bytes());
        b
    }

    fn decode(b: &[u8]) -> Option<State> {
        if b.len() < HEADER
            || &b[..8] != MAGIC
            || crc32c::crc32c(&b[..44]) != u32::from_le_bytes(b[44..48].try_into().ok()?)
        {
            return None;
        }
        let u = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8"));
        let ts = u(16) as i64;
        Some(State {
            next_seq: u(8),
            last_ts: (ts != i64::MIN).then_some(ts),
            heartbeat_ns: u(24),
            stopped: b[32] == 1,
            started: b[33] == 1,
            events_end: u(36),
        })
    }
}

/// The timeline of one agent, as it is being taken in.
#[derive(Debug)]
pub struct Timeline {
    path: PathBuf,
    state: State,
    fresh: Vec<Event>,
    /// The events of the last [`RECENT_NS`] (key epochs left out), kept
    /// in memory for the fleet overview, so that it reads no file.
    recent: Vec<Event>,
    /// The reason of the newest `stop` record.
    last_stop: Option<String>,
}

/// How far back [`Timeline::recent`] keeps events: two days.
const RECENT_NS: i64 = 2 * 86_400_000_000_000;

impl Timeline {
    /// A placeholder until [`Timeline::load`] or [`Timeline::reset`].
    pub fn empty(path: PathBuf) -> Timeline {
        Timeline {
            path,
            state: State::NEW,
            fresh: Vec::new(),
            recent: Vec::new(),
            last_stop: None,
        }
    }

    /// The events since `since` (at most [`RECENT_NS`] ago), key epochs
    /// left out.
    pub fn recent(&self, since: i64) -> impl Iterator<Item = &Event> {
        self.recent.iter().filter(move |e| e.ts >= since)
    }

    /// The reason of the newest `stop` record.
    pub fn last_stop(&self) -> Option<&str> {
        self.last_stop.as_deref()
    }

    /// Notes an event in the in-memory summaries.
    fn remember(&mut self, e: &Event, now: i64) {
        if e.class == Class::Stop {
            self.last_stop = Some(e.text.clone());
        }
        if e.class != Class::EpochKey && e.ts >= now - RECENT_NS {
            self.recent.push(e.clone());
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// Whether its file is still there (derived data someone removed is
    /// built again).
    pub fn present(&self) -> bool {
        self.path.exists()
    }

    /// Loads the file; false when it is missing or damaged (then it must
    /// be built again from the store): every event the header covers must
    /// be whole. What lies past them (a crash between writing events and
    /// the header) is cut.
    pub fn load(&mut self) -> std::io::Result<bool> {
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        let Some(state) = State::decode(&bytes) else {
            return Ok(false);
        };
        let Ok(end) = usize::try_from(state.events_end) else {
            return Ok(false);
        };
        if end < HEADER || end > bytes.len() {
            return Ok(false);
        }
        let mut at = HEADER;
        let now = wormlog_spool::clock::wall_ns();
        self.recent.clear();
        self.last_stop = None;
        while at < end {
            match Event::decode(&bytes[at..end]) {
                Some((e, n)) if e.seq < state.next_seq => {
                    self.remember(&e, now);
                    at += n;
                }
                _ => return Ok(false),
            }
        }
        if end != bytes.len() {
            OpenOptions::new()
                .write(true)
                .open(&self.path)?
                .set_len(end as u64)?;
        }
        self.state = state;
        self.fresh.clear();
        Ok(true)
    }

    /// Starts again from nothing.
    pub fn reset(&mut self) -> std::io::Result<()> {
        self.state = State::NEW;
        self.fresh.clear();
        self.recent.clear();
        self.last_stop = None;
        std::fs::write(&self.path, self.state.encode())
    }

    /// Takes in record `rec` (seq `seq`, kind `kind`, time `ts`); records
    /// already taken in (the index reads its tail again) are passed over.
    pub fn take(&mut self, kind: u8, seq: u64, ts: i64, rec: &[u8]) {
        if seq < self.state.next_seq {
            return;
        }
        let st = &mut self.state;
        let is_start = kind == Kind::Start as u8;
        if let Some(last) = st.last_ts {
            let limit = i64::try_from(st.heartbeat_ns.saturating_mul(2)).unwrap_or(i64::MAX);
            if ts.saturating_sub(last) > limit {
                let code = match (is_start, st.stopped) {
                    (false, _) => 0,
                    (true, true) => 1,
                    (true, false) => 2,
                };
                self.fresh.push(Event {
                    seq,
                    ts,
                    class: Class::Silence,
                    code,
                    a: last,
                    b: 0,
                    text: String::new(),
                });
            }
        }
        st.next_seq = seq + 1;
        st.last_ts = Some(ts);
        if let Some(e) = event_of(kind, seq, ts, rec, st) {
            self.fresh.push(e);
        }
    }

    /// Writes the events taken in since the last call, then the state.
    pub fn flush(&mut self) -> std::io::Result<()> {
        let mut out = Vec::new();
        let now = wormlog_spool::clock::wall_ns();
        for e in std::mem::take(&mut self.fresh) {
            e.encode(&mut out);
            self.remember(&e, now);
        }
        self.recent.retain(|e| e.ts >= now - RECENT_NS);
        let f = OpenOptions::new().write(true).open(&self.path)?;
        f.write_all_at(&out, self.state.events_end)?;
        self.state.events_end += out.len() as u64;
        f.write_all_at(&self.state.encode(), 0)
    }

    /// The events whose time meets `[from, to)` (a silence meets it when
    /// its stretch does), in seq order; at most `limit` of them, the more
    /// telling classes kept first. Also: how many there were in all.
    pub fn events(&self, from: i64, to: i64, limit: usize) -> std::io::Result<(Vec<Event>, u64)> {
        let mut f = File::open(&self.path)?;
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut f, &mut bytes)?;
        let end = usize::try_from(self.state.events_end)
            .unwrap_or(usize::MAX)
            .min(bytes.len());
        let mut at = HEADER.min(end);
        let mut out = Vec::new();
        while let Some((e, n)) = Event::decode(&bytes[at..end]) {
            at += n;
            let start = if e.class == Class::Silence { e.a } else { e.ts };
            if e.ts >= from && start < to {
                out.push(e);
            }
        }
        let total = out.len() as u64;
        if out.len() > limit {
            // Key epochs and configurations go first, then the rest by class.
            let rank = |c: Class| match c {
                Class::EpochKey => 0,
                Class::Config | Class::Prune => 1,
                _ => 2,
            };
            let mut by_rank: Vec<usize> = (0..out.len()).collect();
            by_rank.sort_by_key(|&i| std::cmp::Reverse(rank(out[i].class)));
            let mut keep = vec![false; out.len()];
            for &i in by_rank.iter().take(limit) {
                keep[i] = true;
            }
            let mut i = 0;
            out.retain(|_| {
                i += 1;
                keep[i - 1]
            });
        }
        Ok((out, total))
    }
}

/// The event record `rec` tells, if any (and the state it changes).
fn event_of(kind: u8, seq: u64, ts: i64, rec: &[u8], st: &mut State) -> Option<Event> {
    let interesting = [
        Kind::Start,
        Kind::Stop,
        Kind::Config,
        Kind::ClockStep,
        Kind::Gap,
        Kind::Recovery,
        Kind::Alert,
        Kind::EpochKey,
        Kind::Prune,
    ];
    if !interesting.iter().any(|k| *k as u8 == kind) {
        return None;
    }
    let r = Record::decode(rec).ok()?;
    let ev = |class, code, a, b, text: String| Event {
        seq,
        ts,
        class,
        code,
        a,
        b,
        text,
    };
    let count = |n: u64| if n == UNKNOWN_COUNT { -1 } else { n as i64 };
    Some(match r.payload {
        Payload::Start {
            heartbeat_ns,
            program,
            pid,
            ..
        } => {
            let code = if st.started { u16::from(st.stopped) } else { 2 };
            st.started = true;
            if heartbeat_ns > 0 {
                st.heartbeat_ns = heartbeat_ns;
            }
            st.stopped = false;
            ev(
                Class::Start,
                code,
                i64::from(pid),
                heartbeat_ns as i64,
                program.to_owned(),
            )
        }
        Payload::Stop { reason, .. } => {
            st.stopped = true;
            ev(Class::Stop, 0, 0, 0, reason.to_owned())
        }
        Payload::Config { config_sha256, .. } => ev(
            Class::Config,
            0,
            0,
            0,
            wormlog_spool::hash::hex(&config_sha256),
        ),
        Payload::ClockStep {
            expected_ts,
            observed_ts,
            ..
        } => ev(Class::ClockStep, 0, expected_ts, observed_ts, String::new()),
        Payload::Gap {
            source,
            reason,
            lost_bytes,
            lost_records,
            detail,
            ..
        } => ev(
            Class::Gap,
            reason,
            count(lost_bytes),
            count(lost_records),
            format!("{source}: {detail}"),
        ),
        Payload::Recovery { cause, detail, .. } => {
            ev(Class::Recovery, cause as u16, 0, 0, detail.to_owned())
        }
        Payload::Alert { code, detail } => ev(Class::Alert, code, 0, 0, detail.to_owned()),
        Payload::EpochKey { to_epoch, .. } => {
            ev(Class::EpochKey, 0, to_epoch as i64, 0, String::new())
        }
        Payload::Prune { detail, .. } => ev(Class::Prune, 0, 0, 0, detail.to_owned()),
        _ => return None,
    })
}

/// The timeline file of the index directory `dir`.
pub fn path_in(dir: &Path) -> PathBuf {
    dir.join("timeline")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn ev(seq: u64, class: Class, text: &str) -> Event {
        Event {
            seq,
            ts: seq as i64 * 1000,
            class,
            code: 9,
            a: -1,
            b: 7,
            text: text.into(),
        }
    }

    #[test]
    fn events_round_trip_and_a_damaged_one_ends_the_list() {
        let mut out = Vec::new();
        let a = ev(3, Class::Gap, "app: /var/log/app.log deleted");
        let b = ev(4, Class::Stop, "SIGTERM");
        a.encode(&mut out);
        let cut = out.len();
        b.encode(&mut out);
        let (d, n) = Event::decode(&out).expect("first");
        assert_eq!((d, n), (a, cut));
        assert_eq!(Event::decode(&out[cut..]).expect("second").0, b);
        let mut bad = out.clone();
        bad[cut + 5] ^= 1;
        assert!(Event::decode(&bad[cut..]).is_none());
        assert!(Event::decode(&out[cut..out.len() - 1]).is_none());
    }

    #[test]
    fn the_state_round_trips_and_damage_is_refused() {
        let s = State {
            next_seq: 77,
            last_ts: Some(-5),
            heartbeat_ns: 1_000_000_000,
            stopped: true,
            started: true,
            events_end: 1234,
        };
        let b = s.encode();
        assert_eq!(State::decode(&b), Some(s));
        let mut bad = b;
        bad[9] ^= 1;
        assert_eq!(State::decode(&bad), None);
        assert_eq!(State::decode(&State::NEW.encode()), Some(State::NEW));
    }

    #[test]
    fn events_beyond_the_state_are_cut_at_load() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut t = Timeline::empty(path_in(dir.path()));
        t.reset().expect("reset");
        t.fresh.push(ev(1, Class::Gap, "a"));
        t.state.next_seq = 2;
        t.flush().expect("flush");
        // A crash after the events of a later flush, before its header.
        let mut more = Vec::new();
        ev(5, Class::Alert, "b").encode(&mut more);
        let f = OpenOptions::new().append(true).open(&t.path).expect("open");
        (&f).write_all(&more).expect("write");
        let mut u = Timeline::empty(path_in(dir.path()));
        assert!(u.load().expect("load"));
        assert_eq!(u.state.next_seq, 2);
        let (evs, total) = u.events(i64::MIN, i64::MAX, 10).expect("events");
        assert_eq!(total, 1);
        assert_eq!(evs[0].text, "a");
        assert_eq!(
            std::fs::metadata(&t.path).expect("meta").len(),
            u.state.events_end
        );
        // A damaged event the header covers: built again.
        let mut bytes = std::fs::read(&t.path).expect("read");
        let last = bytes.len() - 3;
        bytes[last] ^= 1;
        std::fs::write(&t.path, &bytes).expect("write");
        assert!(!Timeline::empty(path_in(dir.path())).load().expect("load"));
    }

    #[test]
    fn over_the_limit_key_epochs_go_first() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut t = Timeline::empty(path_in(dir.path()));
        t.reset().expect("reset");
        for s in 0..10 {
            t.fresh.push(ev(
                s,
                if s % 2 == 0 {
                    Class::EpochKey
                } else {
                    Class::Gap
                },
                "",
            ));
        }
        t.state.next_seq = 10;
        t.flush().expect("flush");
        let (evs, total) = t.events(i64::MIN, i64::MAX, 5).expect("events");
        assert_eq!(total, 10);
        assert_eq!(evs.len(), 5);
        assert!(evs.iter().all(|e| e.class == Class::Gap));
        assert!(evs.windows(2).all(|w| w[0].seq < w[1].seq));
    }
}
