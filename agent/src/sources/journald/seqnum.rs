//! The journal's own sequence numbers as a loss check.
//!
//! journald numbers every entry it writes: a sequence number (`i=` in the
//! cursor) that goes up by one per entry within a journal file set, the
//! set being named by its `seqnum_id` (`s=`). Rotation keeps the set (the
//! new file continues its numbers), and so does a reboot when journald
//! reopens the same file set; a new set (a file written from scratch, a
//! journal that was not closed cleanly, another host's files) starts with a
//! new `seqnum_id`. So, read without a filter, the entries of one set come
//! with numbers that go up by one: a jump means entries that journald
//! wrote and this source never got.

use super::cursor::Cursor;
use std::collections::VecDeque;

/// File sets remembered at most (the oldest seen is forgotten first).
const MAX_SETS: usize = 64;

/// Entries of one journal file set that were passed over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeqnumJump {
    pub seqnum_id: String,
    /// The last sequence number read before the jump …
    pub after: u64,
    /// … and the one read next.
    pub next: u64,
}

impl SeqnumJump {
    /// How many entries lie between.
    pub fn missing(&self) -> u64 {
        self.next - self.after - 1
    }
}

/// The last sequence number read of each journal file set.
#[derive(Debug, Clone, Default)]
pub struct SeqnumCheck {
    /// Off for a source with a filter (units, matches): the entries it
    /// leaves out have sequence numbers too.
    off: bool,
    last: VecDeque<(String, u64)>,
}

impl SeqnumCheck {
    pub fn new(filtered: bool) -> SeqnumCheck {
        SeqnumCheck {
            off: filtered,
            last: VecDeque::new(),
        }
    }

    /// Notes an entry read; the jump, if its number is more than one past
    /// the last one read of its file set. A new file set, a cursor without
    /// sequence numbers, and a number that goes back are no jump.
    pub fn read(&mut self, cursor: &Cursor) -> Option<SeqnumJump> {
        let (Some(id), Some(i)) = (cursor.seqnum_id, cursor.seqnum) else {
            return None;
        };
        if self.off {
            return None;
        }
        match self.last.iter_mut().find(|(s, _)| s == id) {
            Some((_, last)) => {
                let after = *last;
                *last = after.max(i);
                (i > after.saturating_add(1)).then(|| SeqnumJump {
                    seqnum_id: id.to_owned(),
                    after,
                    next: i,
                })
            }
            None => {
                if self.last.len() == MAX_SETS {
                    self.last.pop_front();
                }
                self.last.push_back((id.to_owned(), i));
                None
            }
        }
    }

    /// Notes an entry whose loss before it was already recorded another
    /// way (a vacuumed cursor): no jump is reported for it.
    pub fn restart_at(&mut self, cursor: &Cursor) {
        let (Some(id), Some(i)) = (cursor.seqnum_id, cursor.seqnum) else {
            return;
        };
        self.last.retain(|(s, _)| s != id);
        if self.last.len() == MAX_SETS {
            self.last.pop_front();
        }
        self.last.push_back((id.to_owned(), i));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str, i: u64) -> Cursor<'static> {
        // A test's few cursors may live for the test run.
        Cursor::parse(format!("s={s};i={i:x};b=b0;t=1").leak())
    }

    #[test]
    fn a_missing_number_in_one_set_is_a_jump_with_its_count() {
        let mut k = SeqnumCheck::new(false);
        assert_eq!(k.read(&c("a", 1)), None);
        assert_eq!(k.read(&c("a", 2)), None);
        let j = k.read(&c("a", 6)).expect("a jump");
        assert_eq!((j.after, j.next, j.missing()), (2, 6, 3));
        assert_eq!(j.seqnum_id, "a");
        assert_eq!(k.read(&c("a", 7)), None);
    }

    #[test]
    fn a_new_set_interleaved_sets_and_going_back_are_no_jump() {
        let mut k = SeqnumCheck::new(false);
        assert_eq!(k.read(&c("a", 10)), None);
        // A new journal file set starts anywhere.
        assert_eq!(k.read(&c("b", 500)), None);
        assert_eq!(k.read(&c("a", 11)), None);
        assert_eq!(k.read(&c("b", 501)), None);
        // Back: not a loss, and the highest number read stays the mark.
        assert_eq!(k.read(&c("a", 5)), None);
        assert_eq!(k.read(&c("a", 12)), None);
        assert_eq!(k.read(&Cursor::parse("garbage")), None);
    }

    #[test]
    fn a_filtered_source_checks_nothing_and_a_restart_point_resets() {
        let mut k = SeqnumCheck::new(true);
        assert_eq!(k.read(&c("a", 1)), None);
        assert_eq!(k.read(&c("a", 9)), None);
        let mut k = SeqnumCheck::new(false);
        k.read(&c("a", 1));
        k.restart_at(&c("a", 9));
        assert_eq!(k.read(&c("a", 10)), None);
    }

    #[test]
    fn memory_is_bounded() {
        let mut k = SeqnumCheck::new(false);
        for s in 0..1000 {
            k.read(&c(&s.to_string(), 1));
        }
        assert_eq!(k.last.len(), MAX_SETS);
    }
}
