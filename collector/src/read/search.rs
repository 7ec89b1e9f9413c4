//! A search of one agent's stored records: by time range, source, kind
//! and text (whole words, ASCII case-insensitive, in bodies and field
//! values — opened ones when the collector holds a read identity), oldest
//! or newest first,
//! a page at a time. The cursor is a sequence number, so a page never
//! moves when records arrive after the first one was asked for.

use super::index::{AgentIndex, Block};
use super::scan::{Scan, peek};
use super::words::Needle;
use super::{Bodies, EntryText, open_record};
use serde_json::Value;
use std::path::Path;
use wormlog_spool::record::{FLAGS_OFFSET, Kind, Payload, RECORD_FLAG_SEALED, Record};

/// The most records one page holds.
pub const MAX_LIMIT: usize = 1000;

#[derive(Debug, Clone, Default)]
pub struct Query {
    pub agent: String,
    /// Records with `from_ts <= ts < to_ts` (ns since the epoch).
    pub from_ts: Option<i64>,
    pub to_ts: Option<i64>,
    pub source: Option<String>,
    /// A record kind's name (`entry`, `gap`, `checkpoint`, …).
    pub kind: Option<String>,
    pub text: Option<String>,
    pub newest_first: bool,
    pub limit: usize,
    /// Oldest first: records from this seq on; newest first: records
    /// before it.
    pub cursor: Option<u64>,
}

/// One page of results.
#[derive(Debug, Default)]
pub struct Page {
    /// `cat --json` objects, with `agent`.
    pub records: Vec<Value>,
    /// Where the next page starts (None: this is the last).
    pub next_cursor: Option<u64>,
    pub blocks_read: u64,
    pub blocks_skipped: u64,
    pub records_read: u64,
    /// Sealed entries the text could not be matched in (no read identity,
    /// or not one of their recipients).
    pub sealed_unsearched: u64,
}

impl Query {
    fn wants_block(&self, b: &Block) -> bool {
        let time =
            self.from_ts.is_none_or(|f| b.max_ts >= f) && self.to_ts.is_none_or(|t| b.min_ts < t);
        let cursor = match (self.cursor, self.newest_first) {
            (None, _) => true,
            (Some(c), false) => b.end_seq() > c,
            (Some(c), true) => b.seq < c,
        };
        time && cursor
    }

    fn wants_seq(&self, seq: u64) -> bool {
        match (self.cursor, self.newest_first) {
            (None, _) => true,
            (Some(c), false) => seq >= c,
            (Some(c), true) => seq < c,
        }
    }

    fn wants_record(&self, r: &Record<'_>) -> bool {
        self.from_ts.is_none_or(|f| r.ts >= f)
            && self.to_ts.is_none_or(|t| r.ts < t)
            && self.kind.as_deref().is_none_or(|k| r.kind.name() == k)
            && self
                .source
                .as_deref()
                .is_none_or(|s| source_of(r) == Some(s))
    }
}

fn source_of<'a>(r: &Record<'a>) -> Option<&'a str> {
    match &r.payload {
        Payload::Entry(e) => Some(e.source),
        Payload::Gap { source, .. } => Some(source),
        _ => None,
    }
}

/// Runs `q` on the store `store` with its (refreshed) index.
pub fn run(
    store: &Path,
    index: &AgentIndex,
    q: &Query,
    bodies: &mut Bodies,
    word_key: &[u8; 32],
) -> Result<Page, super::scan::ScanError> {
    let needle = q
        .text
        .as_deref()
        .filter(|t| !t.is_empty())
        .map(|t| Needle::new(t, word_key));
    let limit = q.limit.clamp(1, MAX_LIMIT);
    let mut blocks: Vec<Block> = index.all().filter(|b| q.wants_block(b)).collect();
    if q.newest_first {
        blocks.reverse();
    }
    let mut page = Page::default();
    let mut scratch = Vec::new();
    for b in blocks {
        if let Some(n) = &needle
            && let Some(bm) = index.filter(&b).map_err(|e| super::scan::ScanError::Io {
                path: store.to_owned(),
                source: e,
            })?
            && !bm.may_hold(n)
        {
            page.blocks_skipped += 1;
            page.sealed_unsearched += b.sealed_unindexed;
            continue;
        }
        page.blocks_read += 1;
        let before = bodies.sealed_unopened;
        let mut hits = read_block(
            store,
            &b,
            q,
            needle.as_ref(),
            bodies,
            &mut scratch,
            &mut page.records_read,
        )?;
        if needle.is_some() {
            page.sealed_unsearched += bodies.sealed_unopened - before;
        }
        if q.newest_first {
            hits.reverse();
        }
        for (seq, v) in hits {
            if page.records.len() == limit {
                page.next_cursor = Some(if q.newest_first { seq + 1 } else { seq });
                return Ok(page);
            }
            let mut v = v;
            v["agent"] = Value::String(q.agent.clone());
            page.records.push(v);
        }
    }
    Ok(page)
}

/// The records of block `b` that `q` wants, in seq order.
fn read_block(
    store: &Path,
    b: &Block,
    q: &Query,
    needle: Option<&Needle>,
    bodies: &mut Bodies,
    scratch: &mut Vec<u8>,
    read: &mut u64,
) -> Result<Vec<(u64, Value)>, super::scan::ScanError> {
    bodies.prime(store, b.at.segment)?;
    let mut scan = Scan::from(store, b.at)?;
    let mut out = Vec::new();
    let entry = Kind::Entry as u8;
    for _ in 0..b.records {
        let Some((at, rec)) = scan.next_record()? else {
            break;
        };
        *read += 1;
        // From the record's header first: most records are passed over
        // without being decoded.
        let (kind, seq, ts) = peek(rec);
        if kind == Kind::DataKey as u8 {
            open_record(bodies, at.segment, rec);
            continue;
        }
        if !q.wants_seq(seq)
            || q.from_ts.is_some_and(|f| ts < f)
            || q.to_ts.is_some_and(|t| ts >= t)
        {
            continue;
        }
        let sealed = rec[FLAGS_OFFSET] & RECORD_FLAG_SEALED as u8 != 0;
        if let Some(n) = needle {
            // A clear entry's body and fields are in its bytes: without the
            // text there, it is not in them.
            if kind != entry || (!sealed && !n.found_in(rec, scratch)) {
                continue;
            }
        }
        let text = if kind == entry {
            open_record(bodies, at.segment, rec)
        } else {
            None
        };
        let decoded;
        let (r, opened) = match &text {
            Some(EntryText::Clear(r)) => (r, None),
            Some(EntryText::Opened(r, o)) => (r, Some(o)),
            None => {
                if needle.is_some() {
                    continue;
                }
                let Ok(d) = Record::decode(rec) else { continue };
                decoded = d;
                (&decoded, None)
            }
        };
        if !q.wants_record(r) {
            continue;
        }
        if let (Some(n), Some(t)) = (needle, &text)
            && !t.texts().iter().any(|h| n.found_in(h, scratch))
        {
            continue;
        }
        out.push((
            r.seq,
            wormlog_text::render::record_json_opened(r, opened, at.segment, at.offset),
        ));
    }
    Ok(out)
}
