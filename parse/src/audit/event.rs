//! Records grouped into events: the [`EventAssembler`].
//!
//! The completion rule, its sources and the field names are in the
//! [module documentation](super).

use super::AuditRecord;
use super::record::{Header, RecordError, parse_header, parse_record};
use super::serial::{LossReport, SerialTracker, SerialTrackerConfig};
use super::types::{self, CONFIG_CHANGE, DAEMON_START, END_OF_EVENT, PROCTITLE};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};

/// The most fields [`CompletedEvent::fields`] gives (the spool's limit is
/// 65535); past it the rest are counted in `audit_fields_omitted`.
pub const MAX_FIELDS_PER_EVENT: usize = 4096;

/// The longest field name, in bytes (the spool's limit).
pub const MAX_FIELD_NAME_LEN: usize = 255;

/// The limits and the timeout of an [`EventAssembler`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssemblerConfig {
    /// An open event is complete ("idle") once the stream's clock — the
    /// newest record timestamp seen — is this much past the clock at its
    /// last record. auditd's `end_of_event_timeout` defaults to 2 s.
    pub idle_timeout_ms: u64,
    /// The most events open at once; past it the oldest is completed as
    /// forced.
    pub max_open_events: usize,
    /// The most records in one event; the record that reaches it completes
    /// the event as forced (later records of the event form a
    /// continuation).
    pub max_records_per_event: usize,
    /// The most bytes of lines in one event, likewise.
    pub max_event_bytes: usize,
    /// The most bytes of lines held in all open events; past it the oldest
    /// events are completed as forced.
    pub max_buffered_bytes: usize,
    /// How many completed event ids are remembered, to flag a record that
    /// arrives after its event was completed (`audit_continues`).
    pub remembered_events: usize,
    /// Serial tracking (loss detection).
    pub serials: SerialTrackerConfig,
}

impl Default for AssemblerConfig {
    fn default() -> Self {
        AssemblerConfig {
            idle_timeout_ms: 2_000,
            max_open_events: 4_096,
            max_records_per_event: 1_024,
            max_event_bytes: 4 << 20,
            max_buffered_bytes: 64 << 20,
            remembered_events: 4_096,
            serials: SerialTrackerConfig::default(),
        }
    }
}

/// What [`EventAssembler::flush`] completes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flush {
    /// The events that received no record since the previous
    /// `flush(Flush::Idle)`: call it from a timer (every second or two),
    /// so an event that waits for a record that never comes is written
    /// after one to two periods (so is an event held at its `PROCTITLE`
    /// for an `EOE` that did not come). It also lets the serial tracker
    /// report holes that stayed open for a whole period.
    Idle,
    /// Every open event (shutdown, or a file read to its end).
    All,
}

/// Why an event was completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completion {
    /// Its `EOE` record arrived (the last record of the event).
    EndOfEvent,
    /// Its `PROCTITLE` record arrived, in a stream not known to carry
    /// `EOE` records (as `audit.log` is not): the kernel writes it last.
    FinalRecord,
    /// Its first record is of a type that is a whole event.
    Standalone,
    /// No record for it while the stream's clock moved on by the idle
    /// timeout.
    Idle,
    /// The caller's [`flush`](EventAssembler::flush).
    Flushed,
    /// A limit made the assembler let go of it; a later record of the same
    /// event becomes a continuation.
    Forced(ForcedBy),
}

/// The limit that forced an event out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForcedBy {
    /// [`AssemblerConfig::max_open_events`] (it was the oldest).
    OpenEvents,
    /// [`AssemblerConfig::max_records_per_event`].
    Records,
    /// [`AssemblerConfig::max_event_bytes`].
    EventBytes,
    /// [`AssemblerConfig::max_buffered_bytes`] (it was the oldest).
    BufferedBytes,
}

impl Completion {
    /// The value of the `audit_completion` field.
    pub fn as_str(&self) -> &'static str {
        match self {
            Completion::EndOfEvent => "eoe",
            Completion::FinalRecord => "proctitle",
            Completion::Standalone => "standalone",
            Completion::Idle => "idle",
            Completion::Flushed => "flush",
            Completion::Forced(ForcedBy::OpenEvents) => "forced_open_events",
            Completion::Forced(ForcedBy::Records) => "forced_records",
            Completion::Forced(ForcedBy::EventBytes) => "forced_event_bytes",
            Completion::Forced(ForcedBy::BufferedBytes) => "forced_buffered_bytes",
        }
    }

    /// Whether the end of the event was seen (`EOE`, `PROCTITLE`) or is
    /// implied by its type (standalone). After `idle` or `flush` the event
    /// is most likely whole — most multi-record events in `audit.log` have
    /// no other end — but nothing proves it.
    pub fn is_complete(&self) -> bool {
        matches!(
            self,
            Completion::EndOfEvent | Completion::FinalRecord | Completion::Standalone
        )
    }

    /// Whether a limit cut the event short.
    pub fn is_forced(&self) -> bool {
        matches!(self, Completion::Forced(_))
    }
}

/// A line that is not an audit record, handed back as it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnparsedLine {
    /// The line, byte-exact.
    pub line: Vec<u8>,
    /// Why it was not read.
    pub error: RecordError,
}

/// What the assembler produces, in the order to write it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Assembled {
    /// A completed event: one spool entry.
    Event(CompletedEvent),
    /// A line that is not a record: one spool entry of its own.
    Unparsed(UnparsedLine),
    /// Evidence of loss, or of a serial reset.
    Loss(LossReport),
}

/// One event: its records' lines, byte-exact and in arrival order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletedEvent {
    node: Option<String>,
    seconds: u64,
    millis: u16,
    serial: u32,
    /// The lines joined with `\n`.
    body: Vec<u8>,
    /// Where each line ends in `body`.
    line_ends: Vec<usize>,
    completion: Completion,
    continues_earlier: bool,
}

impl CompletedEvent {
    /// The `node=` name of its records.
    pub fn node(&self) -> Option<&str> {
        self.node.as_deref()
    }

    /// Seconds of `audit(SECONDS.MILLIS:SERIAL)`.
    pub fn seconds(&self) -> u64 {
        self.seconds
    }

    /// Milliseconds of `audit(SECONDS.MILLIS:SERIAL)`.
    pub fn millis(&self) -> u16 {
        self.millis
    }

    /// The serial of `audit(SECONDS.MILLIS:SERIAL)`.
    pub fn serial(&self) -> u32 {
        self.serial
    }

    /// The lines joined with `\n` (none of them holds one): what is chained.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The lines, byte-exact, in the order they arrived.
    pub fn lines(&self) -> impl Iterator<Item = &[u8]> + '_ {
        let mut start = 0;
        self.line_ends.iter().map(move |&end| {
            let line = &self.body[start..end];
            start = end + 1;
            line
        })
    }

    /// The number of records (lines).
    pub fn record_count(&self) -> usize {
        self.line_ends.len()
    }

    /// The records, parsed again from the lines.
    pub fn records(&self) -> impl Iterator<Item = AuditRecord<'_>> + '_ {
        // Every line was a record when it was pushed.
        self.lines().filter_map(|line| parse_record(line).ok())
    }

    /// Why it was completed.
    pub fn completion(&self) -> Completion {
        self.completion
    }

    /// Whether records of this event (same node, time and serial) were
    /// already given out in an earlier event: this one continues it.
    pub fn continues_earlier(&self) -> bool {
        self.continues_earlier
    }

    /// The structured fields for the spool, named as in the module
    /// documentation's table.
    pub fn fields(&self) -> Vec<(String, Vec<u8>)> {
        let records: Vec<AuditRecord<'_>> = self.records().collect();
        let mut out = FieldList::default();
        out.push(
            "audit_time".into(),
            format!("{}.{:03}", self.seconds, self.millis).into_bytes(),
        );
        out.push("audit_serial".into(), self.serial.to_string().into_bytes());
        if let Some(node) = &self.node {
            out.push("audit_node".into(), node.clone().into_bytes());
        }
        let types: Vec<&str> = records.iter().map(AuditRecord::record_type).collect();
        out.push("audit_types".into(), types.join(",").into_bytes());
        out.push(
            "audit_records".into(),
            records.len().to_string().into_bytes(),
        );
        out.push("audit_completion".into(), self.completion.as_str().into());
        if self.continues_earlier {
            out.push("audit_continues".into(), b"true".to_vec());
        }
        let mut of_type: HashMap<&str, usize> = HashMap::new();
        for t in &types {
            *of_type.entry(t).or_default() += 1;
        }
        let mut index_of_type: HashMap<&str, usize> = HashMap::new();
        for record in &records {
            let t = record.record_type();
            let index = index_of_type.entry(t).or_default();
            let prefix = if of_type[t] > 1 {
                format!("{t}[{index}]")
            } else {
                t.to_owned()
            };
            *index += 1;
            for field in record.fields() {
                out.push(
                    format!("{prefix}.{}", field.key()),
                    field.value().as_bytes().to_vec(),
                );
                if let Some(decoded) = field.decoded_value() {
                    out.push(
                        format!("{prefix}.{}.decoded", field.key()),
                        decoded.into_bytes(),
                    );
                }
            }
            for field in record.enriched_fields() {
                out.push(
                    format!("{prefix}.{}", field.key()),
                    field.value().as_bytes().to_vec(),
                );
            }
        }
        out.finish()
    }
}

/// Fields with the spool's limits: names of at most 255 bytes, at most
/// [`MAX_FIELDS_PER_EVENT`] fields; what does not fit is counted.
#[derive(Default)]
struct FieldList {
    fields: Vec<(String, Vec<u8>)>,
    omitted: usize,
}

impl FieldList {
    fn push(&mut self, name: String, value: Vec<u8>) {
        // One place is kept for `audit_fields_omitted`.
        if name.len() > MAX_FIELD_NAME_LEN || self.fields.len() >= MAX_FIELDS_PER_EVENT - 1 {
            self.omitted += 1;
        } else {
            self.fields.push((name, value));
        }
    }

    fn finish(mut self) -> Vec<(String, Vec<u8>)> {
        if self.omitted > 0 {
            self.fields.push((
                "audit_fields_omitted".into(),
                self.omitted.to_string().into_bytes(),
            ));
        }
        self.fields
    }
}

/// What identifies an event: node, timestamp and serial (as auparse's
/// `events_are_equal()` compares them).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct EventKey {
    node: Option<Box<str>>,
    seconds: u64,
    millis: u16,
    serial: u32,
}

impl EventKey {
    fn of(record: &AuditRecord<'_>) -> Self {
        EventKey {
            node: record.node().map(Box::from),
            seconds: record.seconds(),
            millis: record.millis(),
            serial: record.serial(),
        }
    }

    fn of_header(header: &Header<'_>) -> Self {
        EventKey {
            node: header.node.map(|n| String::from_utf8_lossy(n).into()),
            seconds: header.seconds,
            millis: header.millis,
            serial: header.serial,
        }
    }
}

/// What a stream has shown of `EOE` records: it decides whether
/// `PROCTITLE` ends an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EndMarkers {
    /// Nothing yet. An event completed by its `PROCTITLE` is held until the
    /// next line: its `EOE` joins it; anything else lets it go and shows
    /// the stream has none.
    Unknown,
    /// A `PROCTITLE` was not followed by its `EOE` (as in `audit.log`):
    /// `PROCTITLE` ends an event at once.
    Absent,
    /// An `EOE` was seen: `EOE` alone ends events.
    Present,
}

struct OpenEvent {
    /// Creation order.
    seq: u64,
    body: Vec<u8>,
    line_ends: Vec<usize>,
    /// The stream clock at its last record.
    last_activity_ms: u64,
    /// The idle-flush period of its last record.
    last_period: u64,
    continues_earlier: bool,
}

/// Groups the records of `audit.log`, fed line by line in file order, into
/// events; hands back lines that are not records, and reports loss.
///
/// Memory is bounded whatever the input: at most
/// [`max_open_events`](AssemblerConfig::max_open_events) events and
/// [`max_buffered_bytes`](AssemblerConfig::max_buffered_bytes) of lines are
/// held, plus the remembered ids and the serial tracker's bounded state.
/// Every line pushed comes out exactly once, in an event or unparsed.
#[derive(Debug)]
pub struct EventAssembler {
    config: AssemblerConfig,
    open: HashMap<EventKey, OpenEvent>,
    by_creation: BTreeMap<u64, EventKey>,
    /// (last activity, creation seq) of every open event.
    by_activity: BTreeSet<(u64, u64)>,
    next_seq: u64,
    /// The newest record timestamp seen, in milliseconds.
    stream_clock_ms: u64,
    /// How many `flush(Flush::Idle)` calls so far.
    period: u64,
    buffered_bytes: usize,
    recent: VecDeque<EventKey>,
    recent_set: HashSet<EventKey>,
    /// Whether the stream carries `EOE` records.
    end_markers: EndMarkers,
    /// The event completed by its `PROCTITLE` while `end_markers` is
    /// `Unknown` (its creation seq): still open, so that its `EOE` in the
    /// next line joins it.
    held: Option<u64>,
    serials: SerialTracker,
}

impl std::fmt::Debug for OpenEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenEvent")
            .field("seq", &self.seq)
            .field("records", &self.line_ends.len())
            .finish()
    }
}

impl Default for EventAssembler {
    fn default() -> Self {
        EventAssembler::new(AssemblerConfig::default())
    }
}

impl EventAssembler {
    /// An assembler with these limits.
    pub fn new(config: AssemblerConfig) -> Self {
        let serials = SerialTracker::new(config.serials.clone());
        EventAssembler {
            config,
            open: HashMap::new(),
            by_creation: BTreeMap::new(),
            by_activity: BTreeSet::new(),
            next_seq: 0,
            stream_clock_ms: 0,
            period: 0,
            buffered_bytes: 0,
            recent: VecDeque::new(),
            recent_set: HashSet::new(),
            end_markers: EndMarkers::Unknown,
            held: None,
            serials,
        }
    }

    /// How many events are open (an event held at its `PROCTITLE` for an
    /// `EOE` among them).
    pub fn open_events(&self) -> usize {
        self.open.len()
    }

    /// How many bytes of lines the open events hold.
    pub fn buffered_bytes(&self) -> usize {
        self.buffered_bytes
    }

    /// Feeds one line (without its `\n`), in file order. Returns what that
    /// completed, in order.
    pub fn push(&mut self, line: &[u8]) -> Vec<Assembled> {
        let mut out = Vec::new();
        let parsed = parse_record(line);
        self.release_held_unless_ended_by(parsed.as_ref().ok(), &mut out);
        match parsed {
            Ok(record) => self.add(&record, &mut out),
            Err(error) => {
                // A line whose header is readable but whose text is not
                // UTF-8 still used its serial: count it, or it would show
                // as a gap.
                if let Ok(header) = parse_header(line) {
                    self.observe_unparsed(&header, &mut out);
                }
                out.push(Assembled::Unparsed(UnparsedLine {
                    line: line.to_vec(),
                    error,
                }));
            }
        }
        self.enforce_limits(&mut out);
        out
    }

    /// Completes events as [`Flush`] says.
    pub fn flush(&mut self, scope: Flush) -> Vec<Assembled> {
        let mut out = Vec::new();
        match scope {
            Flush::Idle => {
                let period = self.period;
                let idle: Vec<u64> = self
                    .by_creation
                    .iter()
                    .filter(|(_, key)| self.open[*key].last_period < period)
                    .map(|(seq, _)| *seq)
                    .collect();
                for seq in idle {
                    self.complete_seq(seq, Completion::Flushed, &mut out);
                }
                self.period += 1;
                out.extend(self.serials.tick().into_iter().map(Assembled::Loss));
            }
            Flush::All => {
                let all: Vec<u64> = self.by_creation.keys().copied().collect();
                for seq in all {
                    self.complete_seq(seq, Completion::Flushed, &mut out);
                }
            }
        }
        out
    }

    /// The end of the input: completes every event and reports every hole
    /// in the serials still open (they can no longer be filled).
    pub fn finish(mut self) -> Vec<Assembled> {
        let mut out = self.flush(Flush::All);
        out.extend(self.serials.finish().into_iter().map(Assembled::Loss));
        out
    }

    fn add(&mut self, record: &AuditRecord<'_>, out: &mut Vec<Assembled>) {
        let key = EventKey::of(record);
        let number = record.type_number();
        self.stream_clock_ms = self.stream_clock_ms.max(record.timestamp_millis());
        match number {
            Some(END_OF_EVENT) => self.end_markers = EndMarkers::Present,
            Some(DAEMON_START) => self.serials.daemon_started(record.node()),
            _ => {}
        }
        let is_new = !self.open.contains_key(&key);
        if is_new {
            let continues_earlier = self.recent_set.contains(&key);
            if !continues_earlier && !number.is_some_and(types::has_auditd_serial) {
                let reports =
                    self.serials
                        .observe(record.node(), record.serial(), record.timestamp_millis());
                out.extend(reports.into_iter().map(Assembled::Loss));
            }
            let seq = self.next_seq;
            self.next_seq += 1;
            self.by_creation.insert(seq, key.clone());
            self.by_activity.insert((self.stream_clock_ms, seq));
            self.open.insert(
                key.clone(),
                OpenEvent {
                    seq,
                    body: Vec::new(),
                    line_ends: Vec::new(),
                    last_activity_ms: self.stream_clock_ms,
                    last_period: self.period,
                    continues_earlier,
                },
            );
        }
        let line = record.line().as_bytes();
        let event = self.open.get_mut(&key).expect("the event is open");
        if !event.body.is_empty() || !event.line_ends.is_empty() {
            event.body.push(b'\n');
            self.buffered_bytes += 1;
        }
        event.body.extend_from_slice(line);
        event.line_ends.push(event.body.len());
        self.buffered_bytes += line.len();
        self.by_activity
            .remove(&(event.last_activity_ms, event.seq));
        event.last_activity_ms = self.stream_clock_ms;
        event.last_period = self.period;
        self.by_activity.insert((event.last_activity_ms, event.seq));
        let (seq, records, bytes) = (event.seq, event.line_ends.len(), event.body.len());

        if number == Some(CONFIG_CHANGE)
            && let Some(lost) = lost_counter_reset(record)
        {
            out.push(Assembled::Loss(LossReport::KernelLostCounter {
                node: record.node().map(str::to_owned),
                serial: record.serial(),
                lost,
            }));
        }

        match self.completion_by(number, is_new, records, bytes) {
            Some(Completion::FinalRecord) if self.end_markers == EndMarkers::Unknown => {
                self.held = Some(seq);
            }
            Some(completion) => self.complete_seq(seq, completion, out),
            None => {}
        }
        self.complete_idle(out);
    }

    /// What the record just added to an event (of type `number`, the
    /// event's first when `is_new`, which now has `records` records and
    /// `bytes` bytes) completes it with, if anything.
    fn completion_by(
        &self,
        number: Option<u16>,
        is_new: bool,
        records: usize,
        bytes: usize,
    ) -> Option<Completion> {
        if number == Some(END_OF_EVENT) {
            Some(Completion::EndOfEvent)
        } else if number == Some(PROCTITLE) && self.end_markers != EndMarkers::Present {
            Some(Completion::FinalRecord)
        } else if is_new && number.is_some_and(types::is_standalone_type) {
            Some(Completion::Standalone)
        } else if records >= self.config.max_records_per_event {
            Some(Completion::Forced(ForcedBy::Records))
        } else if bytes >= self.config.max_event_bytes {
            Some(Completion::Forced(ForcedBy::EventBytes))
        } else {
            None
        }
    }

    /// Lets the held event go before the next line, unless that line is
    /// its `EOE` (`record` is the line, when it is a record).
    fn release_held_unless_ended_by(
        &mut self,
        record: Option<&AuditRecord<'_>>,
        out: &mut Vec<Assembled>,
    ) {
        let Some(seq) = self.held else {
            return;
        };
        let its_eoe = record.is_some_and(|r| {
            r.type_number() == Some(END_OF_EVENT)
                && self.by_creation.get(&seq) == Some(&EventKey::of(r))
        });
        if !its_eoe {
            self.complete_seq(seq, Completion::FinalRecord, out);
        }
    }

    /// Completes the events the stream's clock has left behind.
    fn complete_idle(&mut self, out: &mut Vec<Assembled>) {
        while let Some(&(activity, seq)) = self.by_activity.first() {
            if activity.saturating_add(self.config.idle_timeout_ms) > self.stream_clock_ms {
                break;
            }
            self.complete_seq(seq, Completion::Idle, out);
        }
    }

    fn enforce_limits(&mut self, out: &mut Vec<Assembled>) {
        while self.open.len() > self.config.max_open_events {
            let Some((&oldest, _)) = self.by_creation.first_key_value() else {
                break;
            };
            self.complete_seq(oldest, Completion::Forced(ForcedBy::OpenEvents), out);
        }
        while self.buffered_bytes > self.config.max_buffered_bytes {
            let Some((&oldest, _)) = self.by_creation.first_key_value() else {
                break;
            };
            self.complete_seq(oldest, Completion::Forced(ForcedBy::BufferedBytes), out);
        }
    }

    fn complete_seq(&mut self, seq: u64, completion: Completion, out: &mut Vec<Assembled>) {
        let Some(key) = self.by_creation.remove(&seq) else {
            return;
        };
        let Some(event) = self.open.remove(&key) else {
            return;
        };
        let completion = self.unhold(seq, completion);
        self.by_activity
            .remove(&(event.last_activity_ms, event.seq));
        self.buffered_bytes -= event.body.len();
        self.remember(key.clone());
        out.push(Assembled::Event(CompletedEvent {
            node: key.node.map(String::from),
            seconds: key.seconds,
            millis: key.millis,
            serial: key.serial,
            body: event.body,
            line_ends: event.line_ends,
            completion,
            continues_earlier: event.continues_earlier,
        }));
    }

    /// How an event completed with `completion` leaves: a held event was
    /// complete at its `PROCTITLE`, and unless its `EOE` ends it, the stream
    /// has shown it carries none.
    fn unhold(&mut self, seq: u64, completion: Completion) -> Completion {
        if self.held != Some(seq) {
            return completion;
        }
        self.held = None;
        if completion == Completion::EndOfEvent {
            return completion;
        }
        self.end_markers = EndMarkers::Absent;
        Completion::FinalRecord
    }

    fn remember(&mut self, key: EventKey) {
        if self.config.remembered_events == 0 || !self.recent_set.insert(key.clone()) {
            return;
        }
        self.recent.push_back(key);
        while self.recent.len() > self.config.remembered_events {
            if let Some(old) = self.recent.pop_front() {
                self.recent_set.remove(&old);
            }
        }
    }

    fn observe_unparsed(&mut self, header: &Header<'_>, out: &mut Vec<Assembled>) {
        let key = EventKey::of_header(header);
        let number = std::str::from_utf8(header.record_type)
            .ok()
            .and_then(types::record_type_number);
        if self.open.contains_key(&key)
            || self.recent_set.contains(&key)
            || number.is_some_and(types::has_auditd_serial)
        {
            return;
        }
        let timestamp = header
            .seconds
            .saturating_mul(1000)
            .saturating_add(u64::from(header.millis));
        let reports = self
            .serials
            .observe(key.node.as_deref(), header.serial, timestamp);
        out.extend(reports.into_iter().map(Assembled::Loss));
        self.remember(key);
    }
}

/// `CONFIG_CHANGE … op=set lost=0 old=N`: the kernel's lost counter was
/// reset (`auditctl --reset-lost`) and stood at N (`audit_receive_msg`,
/// `AUDIT_STATUS_LOST`, in `kernel/audit.c`). `Some(N)` when N > 0.
fn lost_counter_reset(record: &AuditRecord<'_>) -> Option<u64> {
    let mut lost_field = false;
    let mut old = None;
    for field in record.fields() {
        match field.key() {
            "lost" => lost_field = true,
            "old" => old = field.value().parse::<u64>().ok(),
            _ => {}
        }
    }
    old.filter(|&n| lost_field && n > 0)
}
