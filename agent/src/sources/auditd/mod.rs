//! `[[sources.auditd]]`: the Linux audit log (`/var/log/audit/audit.log`).
//!
//! * The log and its rotations (`audit.log.1`, …) are tailed by the file
//!   source, running inside this one: identity, rotation, truncation and
//!   resume are the file source's.
//! * Its lines are grouped into events (wormlog-parse's `EventAssembler`:
//!   same serial; complete at `EOE` in a log that has them, else at
//!   `PROCTITLE` (the first such event of a stream is held until the next
//!   line, in case that is its `EOE`), for standalone record types at
//!   once, otherwise after 2 s without a record of the event): one chained
//!   entry per event, its lines byte-exact joined with `\n`, with
//!   structured fields (hex-encoded values decoded beside them, for
//!   display).
//! * A jump in event serials, and a reset of the kernel's lost counter
//!   (`auditctl --reset-lost`), become `gap` records (reason `audit_lost`).
//! * Exactly once across restarts although events interleave: each entry's
//!   position (`Position::Audit`) is the start of the oldest event still
//!   open, plus the events already written past it (watermark.rs).

mod watermark;

use crate::config::AuditdSourceConfig;
use crate::sources::file::FileSource;
use crate::sources::{EntryBatch, Event, Source, SourceContext, StreamKey};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};
use watermark::{EventId, UNPARSED, Watermark};
use wormlog_parse::audit::{Assembled, EventAssembler, Flush, LossReport, parse_record};
use wormlog_spool::Position;
use wormlog_spool::clock::wall_ns;
use wormlog_spool::record::{GapReason, UNKNOWN_COUNT};

/// Open events are looked at this often (an event without an end marker is
/// complete after this long without a record of it).
const IDLE_EVERY: Duration = Duration::from_secs(2);
/// The longest audit record kept whole (longer ones are cut into parts by
/// the file source and are kept unparsed).
const MAX_RECORD: u64 = 1 << 20;

#[derive(Debug)]
pub struct AuditdSource {
    name: Arc<str>,
    cfg: AuditdSourceConfig,
}

impl AuditdSource {
    pub fn new(cfg: &AuditdSourceConfig) -> AuditdSource {
        AuditdSource {
            name: cfg.name.as_str().into(),
            cfg: cfg.clone(),
        }
    }
}

/// One file of the log (the current one, or a rotated one still read).
struct Stream {
    file: (u64, u64, u64),
    assembler: EventAssembler,
    watermark: Watermark,
    /// Serials passed over after a restart (already in the spool): a hole
    /// in the serials they fill is no loss (the tracker never saw them).
    skipped: std::collections::BTreeSet<u32>,
}

/// When this many events written lie past the watermark (one old event
/// still open), every open event is completed (flagged `flush`) so that
/// the position stays small.
const MAX_DONE: usize = 256;

/// Hands the results of one stream to the writer.
struct Output<'a> {
    name: &'a Arc<str>,
    ctx: &'a SourceContext,
    batch: EntryBatch,
}

impl Output<'_> {
    fn flush(&mut self) -> bool {
        self.ctx.send_entries(self.name, &mut self.batch)
    }

    /// Assembled events, unparsed lines and loss reports, in their order.
    fn take(&mut self, s: &mut Stream, out: Vec<Assembled>) -> bool {
        for a in out {
            match a {
                Assembled::Event(e) => {
                    s.watermark.written((e.serial(), e.seconds(), e.millis()));
                    let pos = position(s);
                    self.batch.begin(pos, 0);
                    for (k, v) in e.fields() {
                        self.batch.field(k, &v);
                    }
                    self.batch.body(e.body());
                }
                Assembled::Unparsed(u) => {
                    // The line's end is already accounted for.
                    let pos = position(s);
                    self.batch.begin(pos, 0);
                    self.batch
                        .field("audit_unparsed", u.error.to_string().as_bytes());
                    self.batch.body(&u.line);
                }
                Assembled::Loss(report) => {
                    if !self.loss(s, &report) {
                        return false;
                    }
                }
            }
        }
        true
    }

    fn loss(&mut self, s: &mut Stream, report: &LossReport) -> bool {
        let lost = match report {
            LossReport::Gap(g) => {
                // Serials passed over because they were already written
                // (a restart) are not missing.
                let known = s
                    .skipped
                    .range(g.after_serial.saturating_add(1)..g.before_serial)
                    .count() as u64;
                if known >= g.missing {
                    return true;
                }
                g.missing - known
            }
            LossReport::KernelLostCounter { lost, .. } => *lost,
            _ => {
                // Not a loss (a reset, a late arrival): said, not recorded.
                tracing::info!(source = %self.name, "source {}: {report}", self.name);
                return true;
            }
        };
        let detail = report.to_string();
        tracing::warn!(source = %self.name, lost, "source {}: {detail}", self.name);
        if !self.flush() {
            return false;
        }
        self.ctx.send(Event::Gap {
            source: self.name.clone(),
            position: position(s),
            reason: GapReason::AuditLost,
            lost_bytes: UNKNOWN_COUNT,
            lost_records: lost,
            detail,
            ts: wall_ns(),
        })
    }
}

fn position(s: &mut Stream) -> Position {
    let (dev, ino, fingerprint) = s.file;
    Position::Audit {
        dev,
        ino,
        fingerprint,
        offset: s.watermark.offset(),
        done: s.watermark.done(),
    }
}

impl Source for AuditdSource {
    fn run(self: Box<Self>, ctx: SourceContext) {
        // The file source reads; it resumes at each file's watermark.
        let mut resume: HashMap<StreamKey, (u64, Vec<(u32, u64)>)> = HashMap::new();
        let mut inner_positions = BTreeMap::new();
        for (key, p) in &ctx.positions {
            if let Position::Audit {
                dev,
                ino,
                fingerprint,
                offset,
                done,
            } = p
            {
                resume.insert(*key, (*offset, done.clone()));
                inner_positions.insert(
                    *key,
                    Position::File {
                        dev: *dev,
                        ino: *ino,
                        fingerprint: *fingerprint,
                        offset: *offset,
                    },
                );
            } else {
                inner_positions.insert(*key, p.clone());
            }
        }
        let (tx, rx) = crossbeam_channel::bounded(16);
        let inner = SourceContext {
            tx,
            unwritten: ctx.unwritten.clone(),
            shutdown: ctx.shutdown.clone(),
            positions: inner_positions,
        };
        let file = Box::new(FileSource::new(&self.cfg.file_source(), MAX_RECORD));
        let reader = match std::thread::Builder::new()
            .name(format!("src-{}-file", self.name))
            .spawn(move || file.run(inner))
        {
            Ok(h) => h,
            Err(e) => {
                tracing::error!(source = %self.name, error = %e, "source {}: {e}", self.name);
                return;
            }
        };
        let mut streams: HashMap<StreamKey, Stream> = HashMap::new();
        let mut out = Output {
            name: &self.name,
            ctx: &ctx,
            batch: EntryBatch::default(),
        };
        let mut idle_at = Instant::now() + IDLE_EVERY;
        loop {
            let wait = idle_at.saturating_duration_since(Instant::now());
            match rx.recv_timeout(wait) {
                Ok(Event::Lines {
                    file, data, lines, ..
                }) => {
                    let key = (file.0, file.1, 0);
                    let s = streams.entry(key).or_insert_with(|| {
                        let (offset, done) = resume.remove(&key).unwrap_or((0, Vec::new()));
                        Stream {
                            file,
                            assembler: EventAssembler::default(),
                            watermark: Watermark::resume(offset, done),
                            skipped: std::collections::BTreeSet::new(),
                        }
                    });
                    s.file = file;
                    for (start, end, flags, offset) in lines {
                        if flags & wormlog_spool::record::ENTRY_NO_NEWLINE != 0 {
                            // A last line still being written: read again
                            // next time (the position never passed it).
                            continue;
                        }
                        let line = &data[start as usize..end as usize];
                        let line_start = offset.saturating_sub(line.len() as u64 + 1);
                        let rec = parse_record(line).ok();
                        let serial = rec.as_ref().map_or(UNPARSED, |r| r.serial());
                        if s.watermark.already_written(serial, offset) {
                            if s.skipped.len() < 65_536 {
                                s.skipped.insert(serial);
                            }
                            continue;
                        }
                        let result = s.assembler.push(line);
                        match rec {
                            Some(r) => {
                                let id: EventId = (r.serial(), r.seconds(), r.millis());
                                s.watermark.record(id, line_start, offset);
                            }
                            None => s.watermark.unparsed_written(offset),
                        }
                        if !out.take(s, result) {
                            return;
                        }
                        if s.watermark.done_len() > MAX_DONE {
                            let all = s.assembler.flush(Flush::All);
                            if !out.take(s, all) {
                                return;
                            }
                        }
                    }
                    if !out.flush() {
                        return;
                    }
                }
                Ok(gap @ Event::Gap { .. }) => {
                    // Truncation or replacement: the file starts over. Its
                    // open events are written as they are; a position from
                    // before is no longer where this file resumes.
                    let Event::Gap { position, .. } = &gap else {
                        unreachable!("matched above")
                    };
                    let key = position.stream_key();
                    resume.remove(&key);
                    if let Some(mut s) = streams.remove(&key) {
                        let rest = s.assembler.flush(Flush::All);
                        if !out.take(&mut s, rest) {
                            return;
                        }
                    }
                    if !out.flush() || !ctx.send(gap) {
                        return;
                    }
                }
                Ok(Event::Forget { source, key }) => {
                    resume.remove(&key);
                    // A rotated file read to its end: its open events are
                    // complete.
                    if let Some(mut s) = streams.remove(&key) {
                        let rest = s.assembler.flush(Flush::All);
                        if !out.take(&mut s, rest) || !out.flush() {
                            return;
                        }
                    }
                    if !ctx.send(Event::Forget { source, key }) {
                        return;
                    }
                }
                Ok(other) => {
                    if !ctx.send(other) {
                        return;
                    }
                }
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                    idle_at = Instant::now() + IDLE_EVERY;
                    for s in streams.values_mut() {
                        let done = s.assembler.flush(Flush::Idle);
                        if !out.take(s, done) {
                            return;
                        }
                    }
                    if !out.flush() {
                        return;
                    }
                }
                // The file source stopped (shutdown). Open events are not
                // written (nor one held at its PROCTITLE for an EOE): the
                // watermark is before them, they are read again at the
                // next start.
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
            }
        }
        out.flush();
        if reader.join().is_err() {
            tracing::error!(
                source = %self.name,
                "source {}: its file reader panicked",
                self.name
            );
        }
    }
}
