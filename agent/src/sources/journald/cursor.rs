//! Journal cursors (`s=…;i=…;b=…;m=…;t=…;x=…`): what a gap record needs to
//! say where the lost entries were — the boot, the time, the sequence
//! numbers. The cursor string itself stays opaque for `journalctl`.

/// The parts of a cursor this source reads, borrowed from the cursor text
/// (it is read for every entry); missing parts are None.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cursor<'a> {
    /// The sequence-number id of the journal file set (`s=`).
    pub seqnum_id: Option<&'a str>,
    /// The entry's sequence number within it (`i=`, hex).
    pub seqnum: Option<u64>,
    /// The boot id (`b=`).
    pub boot_id: Option<&'a str>,
    /// Wall-clock time of the entry, µs since the epoch (`t=`, hex).
    pub realtime_us: Option<u64>,
}

impl<'a> Cursor<'a> {
    pub fn parse(s: &'a str) -> Cursor<'a> {
        let mut c = Cursor::default();
        for part in s.split(';') {
            let Some((k, v)) = part.split_once('=') else {
                continue;
            };
            match k {
                "s" => c.seqnum_id = Some(v),
                "i" => c.seqnum = u64::from_str_radix(v, 16).ok(),
                "b" => c.boot_id = Some(v),
                "t" => c.realtime_us = u64::from_str_radix(v, 16).ok(),
                _ => {}
            }
        }
        c
    }

    /// Whether two cursors name the same entry.
    pub fn same_entry(a: &str, b: &str) -> bool {
        if a == b {
            return true;
        }
        let (x, y) = (Cursor::parse(a), Cursor::parse(b));
        x.seqnum_id.is_some()
            && x.seqnum.is_some()
            && (x.seqnum_id, x.seqnum, x.boot_id, x.realtime_us)
                == (y.seqnum_id, y.seqnum, y.boot_id, y.realtime_us)
    }

    /// How many entries lie strictly between `self` and `next`, when both
    /// are of one journal file set (None otherwise).
    pub fn entries_between(&self, next: &Cursor) -> Option<u64> {
        match (self.seqnum_id, self.seqnum, next.seqnum_id, next.seqnum) {
            (Some(a), Some(i), Some(b), Some(j)) if a == b && j > i => Some(j - i - 1),
            _ => None,
        }
    }
}

/// A time in µs since the epoch as RFC 3339.
pub fn rfc3339_us(us: u64) -> String {
    wormlog_spool::clock::rfc3339(i64::try_from(us).unwrap_or(i64::MAX).saturating_mul(1000))
}

#[cfg(test)]
mod tests {
    use super::*;

    const C: &str = "s=4691b9fc8d7b46548ea29aa439efa347;i=2;b=0123456789abcdef0123456789abcdef;m=7d0;t=60a24182d8240;x=5a3a61f117428e10";

    #[test]
    fn cursors_are_read_and_compared() {
        let c = Cursor::parse(C);
        assert_eq!(c.seqnum, Some(2));
        assert_eq!(c.realtime_us, Some(0x60a24182d8240));
        assert_eq!(c.boot_id, Some("0123456789abcdef0123456789abcdef"));
        assert!(Cursor::same_entry(C, C));
        assert!(Cursor::same_entry(
            C,
            &C.replace("x=5a3a61f117428e10", "x=0")
        ));
        assert!(!Cursor::same_entry(C, &C.replace("i=2", "i=3")));
        let (later, other) = (C.replace("i=2", "i=9"), C.replace("s=4691", "s=0000"));
        assert_eq!(c.entries_between(&Cursor::parse(&later)), Some(6));
        assert_eq!(c.entries_between(&Cursor::parse(&other)), None);
        assert_eq!(Cursor::parse("garbage"), Cursor::default());
    }
}
