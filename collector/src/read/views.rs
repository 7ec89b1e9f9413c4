//! What the console's views read from one agent's index (README, "The
//! console"): the summary of the fleet overview, the timeline of when the
//! agent was watching, and one record with its place, its checkpoint and
//! the receipt for it. Each is built from the derived index and the
//! receipts log only: never used to verify anything.

use super::Bodies;
use super::bundle::{BundleError, Source};
use super::index::AgentIndex;
use super::timeline::{Class, Event};
use serde_json::{Value, json};
use wormlog_spool::clock::rfc3339;
use wormlog_spool::record::{Payload, Record};

const DAY_NS: i64 = 86_400_000_000_000;

/// An agent at a glance, for the fleet overview.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// Records in the store.
    pub records: u64,
    pub first_ts: Option<i64>,
    pub last_ts: Option<i64>,
    pub heartbeat_ns: u64,
    /// Its last `start` was followed by a `stop`.
    pub stopped: bool,
    pub stop_reason: Option<String>,
    /// Events of the last 24 hours.
    pub gaps_24h: u64,
    pub alerts_24h: u64,
    pub recoveries_24h: u64,
    pub unclean_24h: u64,
    pub clock_steps_24h: u64,
    /// The newest gap, alert or recovery.
    pub last_problem: Option<Event>,
}

pub fn summary(ix: &AgentIndex, now: i64) -> Summary {
    let st = ix.timeline().state();
    let mut s = Summary {
        records: ix.all().last().map_or(0, |b| b.end_seq()),
        first_ts: ix.all().next().map(|b| b.min_ts),
        last_ts: st.last_ts,
        heartbeat_ns: st.heartbeat_ns,
        stopped: st.stopped,
        ..Summary::default()
    };
    // From memory: the overview of a thousand agents reads no file.
    for e in ix.timeline().recent(now - DAY_NS) {
        match e.class {
            Class::Gap => s.gaps_24h += 1,
            Class::Alert => s.alerts_24h += 1,
            Class::Recovery => s.recoveries_24h += 1,
            Class::ClockStep => s.clock_steps_24h += 1,
            Class::Start if e.code == 0 => s.unclean_24h += 1,
            _ => {}
        }
        if matches!(e.class, Class::Gap | Class::Alert | Class::Recovery) {
            s.last_problem = Some(e.clone());
        }
    }
    if s.stopped {
        s.stop_reason = ix.timeline().last_stop().map(str::to_owned);
    }
    s
}

/// One event as the console shows it.
pub fn event_json(e: &Event) -> Value {
    json!({
        "seq": e.seq,
        "ts": e.ts,
        "time": rfc3339(e.ts),
        "class": e.class.name(),
        "code": e.code,
        "cause": e.cause(),
        "a": e.a,
        "b": e.b,
        "text": e.text,
    })
}

/// A stretch of time nobody was watching.
fn span(from: i64, to: i64, cause: &str, seq: Option<u64>) -> Value {
    json!({
        "from": from, "to": to,
        "from_time": rfc3339(from), "to_time": rfc3339(to),
        "cause": cause, "seq": seq,
    })
}

/// The timeline of `[from, to)`: the stretches nobody was watching (before
/// the log began, each silence, and since the last record when it is older
/// than twice the heartbeat interval), the events (at most `limit`, key
/// epochs dropped first), and the records per bucket of `buckets` equal
/// parts of the range.
pub fn timeline(
    ix: &AgentIndex,
    from: i64,
    to: i64,
    buckets: usize,
    limit: usize,
    now: i64,
) -> std::io::Result<Value> {
    let st = ix.timeline().state();
    let (events, total) = ix.timeline().events(from, to, limit)?;
    let first_ts = ix.all().next().map(|b| b.min_ts);
    let mut spans = Vec::new();
    if let Some(f) = first_ts
        && from < f
    {
        spans.push(span(from, f.min(to), "before the log began", None));
    }
    for e in events.iter().filter(|e| e.class == Class::Silence) {
        spans.push(span(e.a.max(from), e.ts.min(to), &e.cause(), Some(e.seq)));
    }
    let limit_ns = i64::try_from(st.heartbeat_ns.saturating_mul(2)).unwrap_or(i64::MAX);
    if let Some(last) = st.last_ts
        && now.saturating_sub(last) > limit_ns
        && last < to
    {
        let cause = if st.stopped {
            "stopped"
        } else {
            "nothing received since"
        };
        spans.push(span(last.max(from), now.min(to), cause, None));
    }
    Ok(json!({
        "from": from,
        "to": to,
        "now": now,
        "first_ts": first_ts,
        "last_ts": st.last_ts,
        "records": ix.all().last().map_or(0, |b| b.end_seq()),
        "heartbeat_ns": st.heartbeat_ns,
        "stopped": st.stopped,
        "uncovered": spans,
        "events": events.iter().map(event_json).collect::<Vec<_>>(),
        "events_total": total,
        "events_shown": events.len(),
        "activity": activity(ix, from, to, buckets),
    }))
}

/// Records per bucket of `[from, to)`, from the blocks' time spans (a
/// block's records spread evenly over its span).
fn activity(ix: &AgentIndex, from: i64, to: i64, buckets: usize) -> Vec<u64> {
    let n = buckets.clamp(1, 2000);
    let mut out = vec![0f64; n];
    let width = ((to - from) as f64 / n as f64).max(1.0);
    for b in ix.all().filter(|b| b.max_ts >= from && b.min_ts < to) {
        let (lo, hi) = (b.min_ts.max(from), b.max_ts.min(to - 1));
        let span = (b.max_ts - b.min_ts).max(1) as f64;
        let first = (((lo - from) as f64) / width) as usize;
        let last = ((((hi - from) as f64) / width) as usize).min(n - 1);
        if first == last || b.max_ts == b.min_ts {
            out[first.min(n - 1)] += b.records as f64 * ((hi - lo).max(1) as f64 / span).min(1.0);
            continue;
        }
        for (i, slot) in out.iter_mut().enumerate().take(last + 1).skip(first) {
            let s = from as f64 + i as f64 * width;
            let overlap = (s + width).min(hi as f64) - s.max(lo as f64);
            *slot += b.records as f64 * overlap.max(0.0) / span;
        }
    }
    out.into_iter().map(|v| v.round() as u64).collect()
}

impl Source<'_> {
    /// Record `seq` with where it is stored, the first countersigned
    /// checkpoint after it (the one a disclosure proves it in) and the
    /// receipts for that checkpoint; a sealed entry opened with `bodies`'
    /// identity when it can be.
    pub fn detail(&self, seq: u64, bodies: &mut Bodies) -> Result<(Value, bool), BundleError> {
        let (at, bytes) = self.record(seq)?;
        let rec = Record::decode(&bytes).map_err(|e| BundleError::Refused(e.to_string()))?;
        bodies.prime(self.store, at.segment)?;
        let opened = match super::open_record(bodies, at.segment, &bytes) {
            Some(super::EntryText::Opened(_, o)) => Some(o),
            _ => None,
        };
        let mut v =
            wormlog_text::render::record_json_opened(&rec, opened.as_ref(), at.segment, at.offset);
        v["agent"] = json!(self.agent);
        v["frame_bytes"] = json!(bytes.len());
        v["record_sha256"] = json!(wormlog_spool::hash::hex(&wormlog_spool::hash::sha256(
            &bytes
        )));
        let countersigned = match self.countersigned_from(seq + 1) {
            Ok((cp_seq, receipts)) => {
                let (_, cp) = self.record(cp_seq)?;
                let cp = Record::decode(&cp).map_err(|e| BundleError::Refused(e.to_string()))?;
                let (epoch, root) = match &cp.payload {
                    Payload::Checkpoint(c) => (c.epoch, wormlog_spool::hash::hex(&c.root)),
                    _ => (0, String::new()),
                };
                json!({
                    "checkpoint": {"seq": cp_seq, "ts": rfc3339(cp.ts), "tree_size": cp_seq, "epoch": epoch, "root": root},
                    "receipts": receipts.iter().map(|r| serde_json::to_value(r).unwrap_or(Value::Null)).collect::<Vec<_>>(),
                })
            }
            Err(BundleError::NotFound(why)) => json!({"pending": why}),
            Err(e) => return Err(e),
        };
        v["countersigned"] = countersigned;
        // Records up to here can be exported now (the newest countersigned
        // checkpoint).
        v["countersigned_tree_size"] = json!(self.receipts.last_tree_size()?);
        Ok((v, opened.is_some()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_shown_with_their_cause() {
        let e = Event {
            seq: 9,
            ts: 1_764_000_000_000_000_000,
            class: Class::Gap,
            code: 9,
            a: -1,
            b: -1,
            text: "app: /var/log/app.log is gone".into(),
        };
        let v = event_json(&e);
        assert_eq!(v["class"], "gap");
        assert_eq!(v["cause"], "deleted");
        assert_eq!(v["time"], "2025-11-24T16:00:00.000000000Z");
    }
}
