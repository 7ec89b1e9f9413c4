//! Messages as spool entries, gathered into events for the writer: the raw
//! bytes as the body, the parsed message as one compact field, and the
//! transport's fields (peer, sender credentials).

use super::offset::LocalOffset;
use crate::sources::{EntryBatch, SourceContext};
use std::sync::Arc;
use wormlog_parse::syslog::{COMPACT_FIELD, Context, parse};
use wormlog_spool::Position;
use wormlog_spool::clock::wall_ns;
use wormlog_spool::record::{ENTRY_CONTINUATION, ENTRY_MORE_PARTS, ENTRY_NO_NEWLINE};

/// An event is handed over once it holds about this much.
const EVENT_BYTES: usize = 64 << 10;

/// How a message arrived, beyond its bytes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Arrival {
    /// A later part of a long message (not parsed on its own).
    pub continuation: bool,
    /// More parts of this message follow.
    pub more_parts: bool,
    /// The stream ended before the message did.
    pub incomplete: bool,
}

/// Entries waiting to be handed to the writer.
pub struct Batch<'a> {
    name: &'a Arc<str>,
    ctx: &'a SourceContext,
    offset: &'a LocalOffset,
    entries: EntryBatch,
    /// Receive time and local offset, read once per batch of reads.
    now: Context,
    scratch: Vec<u8>,
    /// Messages that could not be handed over (the writer gone, or a stop
    /// while it took nothing): counted as lost, see `Unwritten`.
    not_written: u64,
}

impl<'a> Batch<'a> {
    pub fn new(name: &'a Arc<str>, ctx: &'a SourceContext, offset: &'a LocalOffset) -> Self {
        Batch {
            name,
            ctx,
            offset,
            entries: EntryBatch::default(),
            now: Context {
                received_unix_ns: wall_ns(),
                local_utc_offset_secs: offset.secs(),
            },
            scratch: Vec::with_capacity(128),
            not_written: 0,
        }
    }

    /// One message (or part of one); `extra` are the transport's fields
    /// (peer, credentials).
    pub fn push(&mut self, raw: &[u8], arrival: Arrival, extra: &[(&'static str, Vec<u8>)]) {
        if self.entries.is_empty() {
            self.now = Context {
                received_unix_ns: wall_ns(),
                local_utc_offset_secs: self.offset.secs(),
            };
        }
        let mut flags = 0;
        if arrival.more_parts {
            flags |= ENTRY_MORE_PARTS;
        }
        if arrival.continuation {
            flags |= ENTRY_CONTINUATION;
        }
        if arrival.incomplete {
            flags |= ENTRY_NO_NEWLINE;
        }
        let b = &mut self.entries;
        b.begin(Position::None, flags);
        if !arrival.continuation {
            // The parsed message as one compact field (where each part lies
            // in the raw bytes), expanded into named fields by readers.
            self.scratch.clear();
            parse(raw, &self.now).encode_compact(&mut self.scratch);
            b.field(COMPACT_FIELD, &self.scratch);
        }
        for (k, v) in extra {
            b.field(*k, v);
        }
        b.body(raw);
    }

    pub fn is_full(&self) -> bool {
        self.entries.bytes() >= EVENT_BYTES
    }

    /// Hands the entries to the writer (waiting while it is behind). False
    /// when the writer is gone.
    pub fn flush(&mut self) -> bool {
        let n = self.entries.len() as u64;
        let sent = self.ctx.send_entries(self.name, &mut self.entries);
        if !sent {
            self.not_written += n;
        }
        sent
    }

    /// The source's name.
    pub fn name(&self) -> &Arc<str> {
        self.name
    }

    /// Messages read that could not be handed over.
    pub fn not_written(&self) -> u64 {
        self.not_written
    }
}
