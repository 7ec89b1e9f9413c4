//! The writer thread: the only code that touches the spool while the daemon
//! runs. It takes the sources' events from one bounded channel and the
//! forwarder's (receipts, alerts) from another, so that receipts — which
//! let acknowledged segments be pruned — still arrive while a full spool
//! holds the sources back.

use super::capacity::{Capacity, Verdict};
use crate::sources::{Event, Shutdown};
use crossbeam_channel::{Receiver, select};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wormlog_spool::record::{GapReason, UNKNOWN_COUNT};
use wormlog_spool::writer::EntrySink;
use wormlog_spool::{Position, Spool, SpoolError};

/// While the sources are held back, how often the writer looks again.
const BLOCKED_RECHECK: Duration = Duration::from_millis(200);
/// While entries are being sealed on the second core, how long the writer
/// waits for the next source event before it finishes the batch.
const BATCH_WAIT: Duration = Duration::from_millis(1);
/// The longest a batch runs: the spool's timers, the budget, receipts and
/// the watchdog are seen to between batches.
const BATCH_TIME: Duration = Duration::from_millis(50);

/// Why the writer stopped other than by a clean shutdown.
#[derive(Debug, thiserror::Error)]
pub enum WriterStop {
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error("{0}")]
    Halt(String),
}

/// The writer's inputs.
#[derive(Debug)]
pub struct Inputs {
    pub sources: Receiver<Event>,
    pub control: Receiver<Event>,
    pub shutdown: Arc<Shutdown>,
    /// What sources read and could not hand over.
    pub unwritten: Arc<crate::sources::Unwritten>,
    pub progress: Arc<wormlog_service::notify::Progress>,
    /// With a systemd watchdog the writer turns at least this often, busy
    /// or idle: each turn is progress the watchdog sees (notify.rs).
    /// Without one it sleeps until its next deadline.
    pub turn_at_least: Option<Duration>,
    /// Test hook (`WORMLOG_TEST_WEDGE_FILE`): once this file exists the
    /// writer stops turning, as a writer stuck in the kernel would.
    pub wedge: Option<std::path::PathBuf>,
}

pub fn run(mut spool: Spool, io: Inputs, mut cap: Capacity) -> Result<(), WriterStop> {
    let never = crossbeam_channel::never::<Event>();
    let mut control = io.control.clone();
    let mut verdict = cap.check(&mut spool)?;
    // The sources' channel closes when every source has stopped: at
    // shutdown, or at once when none is configured (a forward-only agent).
    let mut sources_open = true;
    loop {
        if verdict == Verdict::Halt {
            let reason = "spool full (on_full = \"halt\"): the agent stops";
            spool.close(reason)?;
            return Err(WriterStop::Halt(reason.into()));
        }
        // A stop while full: what the sources still hand over is not
        // written. A file's lines, a journal entry, an audit event are read
        // again at the next start (positions move only with what is
        // written); messages without a position (syslog) are counted, and
        // a gap record says how many before the spool closes.
        let discard = verdict == Verdict::Block && io.shutdown.is_set();
        let blocked = verdict == Verdict::Block && !discard;
        io.progress.tick(spool.next_seq());
        crate::metrics::spool_state(&spool.stats(), spool.segment_files());
        if let Some(w) = &io.wedge
            && w.exists()
        {
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
        let mut wait = spool
            .next_deadline()
            .saturating_duration_since(Instant::now())
            .min(io.turn_at_least.unwrap_or(Duration::MAX));
        if blocked {
            wait = wait.min(BLOCKED_RECHECK);
        }
        let sources = if blocked || !sources_open {
            &never
        } else {
            &io.sources
        };
        select! {
            recv(sources) -> ev => match ev {
                Ok(ev) if discard => {
                    for ev in std::iter::once(ev).chain(io.sources.try_iter()) {
                        match ev {
                            // Writes nothing: a released file must not
                            // look lost at the next start.
                            Event::Forget { source, key } => spool.forget_position(&source, key),
                            ev => io.unwritten.note(&ev),
                        }
                    }
                }
                Ok(ev) => spool.append_entries(|sink| {
                    // One batch for what is waiting, so that entries are
                    // sealed on a second core while others are chained.
                    // The budget is looked at again after this many bytes
                    // (one event can add up to `max_line_bytes` more).
                    let check_every = cap.check_every();
                    let until = Instant::now() + BATCH_TIME;
                    apply(sink, &mut cap, ev)?;
                    while sink.pushed_bytes() < check_every && Instant::now() < until {
                        // Entries on their way through the sealing thread:
                        // worth a short wait for the source's next event.
                        let next = if sink.in_flight() {
                            io.sources.recv_timeout(BATCH_WAIT).ok()
                        } else {
                            io.sources.try_recv().ok()
                        };
                        let Some(ev) = next else { break };
                        apply(sink, &mut cap, ev)?;
                    }
                    Ok::<_, SpoolError>(())
                })?,
                Err(_) => sources_open = false,
            },
            recv(control) -> ev => match ev {
                Ok(ev) => spool.append_entries(|sink| apply(sink, &mut cap, ev))?,
                // The forwarder is gone (or was never there).
                Err(_) => control = never.clone(),
            },
            default(wait) => {}
        }
        // The daemon takes the forwarder's link away at shutdown, which
        // wakes this loop even when no source is left to close its channel.
        if !sources_open && io.shutdown.is_set() {
            break;
        }
        // Sources stopped by a reload while the spool was full (at a stop,
        // one record per source after they all stopped).
        if !io.shutdown.is_set() {
            record_unwritten(&mut spool, &io.unwritten)?;
        }
        match spool.tick() {
            Err(e @ SpoolError::KeyNotSaved { .. }) => {
                // Loud, in the chain too, and a clean close: the next start
                // catches the key up once its directory takes it again.
                let why = e.to_string();
                spool.append_alert(wormlog_spool::record::AlertCode::Other, &why)?;
                spool.close("the host key cannot be saved")?;
                return Err(WriterStop::Halt(why));
            }
            r => r?,
        }
        verdict = cap.check(&mut spool)?;
    }
    for ev in control.try_iter() {
        spool.append_entries(|sink| apply(sink, &mut cap, ev))?;
    }
    record_unwritten(&mut spool, &io.unwritten)?;
    spool.close("shutdown")?;
    Ok(())
}

/// A `not_written_at_stop` gap record per source that read messages it
/// could not hand over, with their count; loud.
fn record_unwritten(
    spool: &mut Spool,
    unwritten: &crate::sources::Unwritten,
) -> Result<(), SpoolError> {
    for (source, lost) in unwritten.take() {
        let n = lost.counted;
        let (what, records) = match (n, lost.unknown_more) {
            (n, false) => (format!("{n} messages"), n),
            (0, true) => ("an unknown number of messages".to_owned(), UNKNOWN_COUNT),
            (n, true) => (
                format!("{n} messages and an unknown number more"),
                UNKNOWN_COUNT,
            ),
        };
        let detail = format!(
            "{what} read by this source were not written: the agent was stopping while the spool was full or behind, and they have no position to be read again from"
        );
        tracing::error!(source = %source, lost = n, "source {source}: {detail}");
        record_loss(
            spool,
            &source,
            GapReason::NotWrittenAtStop,
            records,
            &detail,
        )?;
    }
    Ok(())
}

/// A loss the writer itself finds (not a source): a gap record without a
/// position, counted in the source's metrics. The caller logs it.
pub(super) fn record_loss(
    spool: &mut Spool,
    source: &str,
    reason: GapReason,
    lost_records: u64,
    detail: &str,
) -> Result<(), SpoolError> {
    count_gap(source, detail, lost_records);
    spool.append_gap(
        source,
        &Position::None,
        reason,
        UNKNOWN_COUNT,
        lost_records,
        detail,
        wormlog_spool::clock::wall_ns(),
    )?;
    Ok(())
}

/// A gap record in the metrics: one more gap for the source, and what it
/// lost when that is counted. Counted here, where the record is written,
/// and nowhere else.
fn count_gap(source: &str, detail: &str, lost_records: u64) {
    crate::metrics::source_gap(source, detail);
    if lost_records != UNKNOWN_COUNT {
        crate::metrics::get()
            .source_lost
            .get_or_create(&vec![("source", source.to_owned())])
            .inc_by(lost_records);
    }
}

/// Writes one event. Entries go into the batch; anything else is written
/// once the entries before it are.
fn apply(sink: &mut EntrySink<'_>, cap: &mut Capacity, ev: Event) -> Result<(), SpoolError> {
    match ev {
        Event::Lines {
            source,
            file: (dev, ino, fingerprint),
            ts,
            data,
            lines,
        } => {
            let bytes: u64 = lines.iter().map(|l| u64::from(l.1 - l.0)).sum();
            crate::metrics::source_wrote(&source, lines.len() as u64, bytes);
            for (s, e, flags, offset) in lines {
                let pos = Position::File {
                    dev,
                    ino,
                    fingerprint,
                    offset,
                };
                sink.push(&source, &pos, flags, &[], &data[s as usize..e as usize], ts)?;
            }
        }
        Event::Entries { source, ts, batch } => {
            let mut fields: Vec<(&str, &[u8])> = Vec::new();
            let (mut n, mut bytes) = (0u64, 0u64);
            for e in batch.iter() {
                n += 1;
                bytes += e.body.len() as u64;
                fields.clear();
                fields.extend(e.fields());
                sink.push(&source, e.position, e.flags, &fields, e.body, ts)?;
            }
            crate::metrics::source_wrote(&source, n, bytes);
        }
        Event::Capacity {
            spool: settings,
            reply,
        } => {
            let spool = sink.settled()?;
            cap.reconfigure(&settings);
            let full = cap.check(spool)? != Verdict::Accept;
            let _ = reply.send(full);
        }
        Event::Reload {
            sha256,
            spool: settings,
            reply,
        } => {
            let spool = sink.settled()?;
            spool.append_config(sha256)?;
            cap.reconfigure(&settings);
            let _ = reply.send(spool.positions().clone());
        }
        Event::Gap {
            source,
            position,
            reason,
            lost_bytes,
            lost_records,
            detail,
            ts,
        } => {
            let spool = sink.settled()?;
            count_gap(&source, &detail, lost_records);
            spool.append_gap(
                &source,
                &position,
                reason,
                lost_bytes,
                lost_records,
                &detail,
                ts,
            )?;
        }
        Event::Forget { source, key } => {
            let spool = sink.settled()?;
            spool.forget_position(&source, key);
        }
        Event::Receipt(r) => {
            let spool = sink.settled()?;
            let seq = spool.append_receipt(&r)?;
            crate::metrics::receipt_written(seq);
        }
        Event::Alert { code, detail } => {
            let spool = sink.settled()?;
            spool.append_alert(code, &detail)?;
        }
    }
    Ok(())
}
