//! Where to resume an audit log whose events interleave.
//!
//! The records of one event need not be next to each other in the file, so
//! "the offset after the last line of the last event written" is not a safe
//! place to resume: an event still open may have records before it. The
//! safe place is the *watermark*: the first record of the oldest event still
//! open (or, with none open, the end of what was read). Events already
//! written may have records after the watermark; their serial and where
//! their last record ends travel with the position (`Position::Audit`), and
//! those records are passed over when they are read again.

use std::collections::HashMap;

/// An event as the source follows it: the audit serial and time.
pub type EventId = (u32, u64, u16);

/// The serial under which lines that are not records are listed.
pub const UNPARSED: u32 = u32::MAX;

#[derive(Debug, Default)]
pub struct Watermark {
    /// Open events: where their first record starts, where their last ends.
    open: HashMap<EventId, (u64, u64)>,
    /// Where the last line read ends.
    read_to: u64,
    /// Events written that have records at or after the watermark.
    done: Vec<(u32, u64)>,
    /// From the position resumed at: records to pass over (serial, up to
    /// where its event's records end).
    skip: Vec<(u32, u64)>,
}

impl Watermark {
    /// Resuming at `offset` with `done` from the spool.
    pub fn resume(offset: u64, done: Vec<(u32, u64)>) -> Watermark {
        Watermark {
            read_to: offset,
            skip: done.clone(),
            done,
            ..Watermark::default()
        }
    }

    /// Whether the record of `serial` spanning `start..end` was written
    /// before (it is read a second time after a restart).
    pub fn already_written(&mut self, serial: u32, end: u64) -> bool {
        // Lines are read in file order: an entry this line is past can
        // match no later line.
        self.skip.retain(|&(_, until)| until >= end);
        let hit = self
            .skip
            .iter()
            .any(|&(s, until)| s == serial && end <= until);
        self.read_to = self.read_to.max(end);
        hit
    }

    /// A record of event `id` spanning `start..end` was read.
    pub fn record(&mut self, id: EventId, start: u64, end: u64) {
        let e = self.open.entry(id).or_insert((start, end));
        e.1 = e.1.max(end);
        self.read_to = self.read_to.max(end);
    }

    /// A line that is no record (kept as it is, at once) was read and
    /// written. It is listed as serial `UNPARSED`: every such line up to
    /// there was written.
    pub fn unparsed_written(&mut self, end: u64) {
        self.read_to = self.read_to.max(end);
        if self.offset() < end {
            self.done.retain(|&(s, _)| s != UNPARSED);
            self.done.push((UNPARSED, end));
        }
    }

    /// Event `id` was handed to the writer.
    pub fn written(&mut self, id: EventId) {
        if let Some((_, end)) = self.open.remove(&id) {
            self.done.push((id.0, end));
        }
    }

    /// How many written events lie past the watermark.
    pub fn done_len(&self) -> usize {
        self.done.len()
    }

    /// Where to resume now.
    pub fn offset(&self) -> u64 {
        self.open
            .values()
            .map(|&(start, _)| start)
            .min()
            .unwrap_or(self.read_to)
    }

    /// The events written whose records reach past the watermark.
    pub fn done(&mut self) -> Vec<(u32, u64)> {
        let w = self.offset();
        self.done.retain(|&(_, end)| end > w);
        self.done.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interleaved_events_resume_before_the_open_one_and_skip_the_written() {
        let mut w = Watermark::default();
        let a = (10, 1, 0);
        let b = (11, 1, 0);
        w.record(a, 0, 100); // A starts
        w.record(b, 100, 200); // B starts
        w.record(b, 200, 300); // B ends
        w.written(b);
        assert_eq!(w.offset(), 0, "A is still open");
        assert_eq!(w.done(), vec![(11, 300)]);
        w.record(a, 300, 400);
        w.written(a);
        assert_eq!(w.offset(), 400);
        assert_eq!(w.done(), vec![], "nothing written lies past 400");

        // Resuming at 0 with B written: B's records are passed over, A's not.
        let mut r = Watermark::resume(0, vec![(11, 300)]);
        assert!(!r.already_written(10, 100));
        assert!(r.already_written(11, 200));
        assert!(r.already_written(11, 300));
        // A later event that happens to reuse serial 11 after 300 is new.
        assert!(!r.already_written(11, 400));
    }
}
