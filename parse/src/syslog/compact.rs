//! The parsed message as one compact binary field, stored beside the raw
//! message instead of a copy of every part: most of what parsing finds
//! (timestamp, host name, app name, …) *is* a piece of the raw bytes, so
//! the field says where each piece is rather than repeating it. A reader
//! expands it back into the named fields of [`Message::fields`] with
//! [`expand`] (what `wormlog cat` shows). A spool of syslog messages is
//! about a third smaller for it, and hashing and writing it that much
//! cheaper.
//!
//! Layout (version 1, little-endian), documented in docs/FORMAT.md:
//!
//! | size | field |
//! |---|---|
//! | 1 | version: 1 |
//! | 1 | format: 0 `unparsed`, 1 `rfc3164`, 2 `rfc5424` |
//! | 1 | PRI, 255 when not valid |
//! | 2 | RFC 5424 VERSION, 0 when none |
//! | 1 | flags: bit 0 `bom`, bit 1 `timestamp_unix_ns` present |
//! | 8 | `timestamp_unix_ns` (`i64`; 0 when not present) |
//! | 4 | `msg_offset` |
//! | 6 × 8 | spans of `timestamp`, `hostname`, `app_name`, `procid`, `msgid`, `sd`: `start u32, len u32` into the raw message; start `0xFFFFFFFF` when absent |
//! | 1 | number of defects, then one byte each: 0 `empty`, 1 `pri_missing`, 2 `pri_invalid`, 3 `timestamp_missing`, 4 `timestamp_invalid`, 5 `header_truncated`, 6 `header_malformed`, 7 `sd_invalid` |

use super::{Defect, Format, Message};

/// The name of the field.
pub const FIELD: &str = "syslog";
const VERSION: u8 = 1;
const ABSENT: u32 = u32::MAX;
const DEFECTS: [Defect; 8] = [
    Defect::Empty,
    Defect::PriMissing,
    Defect::PriInvalid,
    Defect::TimestampMissing,
    Defect::TimestampInvalid,
    Defect::HeaderTruncated,
    Defect::HeaderMalformed,
    Defect::StructuredDataInvalid,
];
const SPANS: [&str; 6] = ["timestamp", "hostname", "app_name", "procid", "msgid", "sd"];

/// Where `part` lies in `raw` (it borrows from it).
fn span(raw: &[u8], part: Option<&[u8]>) -> (u32, u32) {
    let Some(p) = part else {
        return (ABSENT, 0);
    };
    let start = (p.as_ptr() as usize).wrapping_sub(raw.as_ptr() as usize);
    if start > raw.len() || p.len() > raw.len() - start {
        return (ABSENT, 0); // not a piece of the raw bytes (cannot happen)
    }
    (start as u32, p.len() as u32)
}

impl Message<'_> {
    /// Appends the compact field for this message to `out`.
    pub fn encode_compact(&self, out: &mut Vec<u8>) {
        out.push(VERSION);
        out.push(match self.format {
            Format::Unparsed => 0,
            Format::Rfc3164 => 1,
            Format::Rfc5424 => 2,
        });
        out.push(self.pri.unwrap_or(255));
        out.extend_from_slice(&self.version.unwrap_or(0).to_le_bytes());
        let ns = self.timestamp.as_ref().and_then(|t| t.unix_ns);
        out.push(u8::from(self.bom) | (u8::from(ns.is_some()) << 1));
        out.extend_from_slice(&ns.unwrap_or(0).to_le_bytes());
        out.extend_from_slice(&(self.msg_offset as u32).to_le_bytes());
        let parts = [
            self.timestamp.as_ref().map(|t| t.text),
            self.hostname,
            self.app_name,
            self.procid,
            self.msgid,
            self.structured_data.as_ref().map(|sd| sd.raw),
        ];
        for p in parts {
            let (start, len) = span(self.raw, p);
            out.extend_from_slice(&start.to_le_bytes());
            out.extend_from_slice(&len.to_le_bytes());
        }
        out.push(self.defects.len().min(255) as u8);
        for d in self.defects.iter().take(255) {
            out.push(DEFECTS.iter().position(|x| x == d).unwrap_or(0) as u8);
        }
    }
}

/// The named fields of a compact field, as [`Message::fields`] gives them
/// (None if `enc` is not a well-formed compact field for `raw`).
pub fn expand(raw: &[u8], enc: &[u8]) -> Option<Vec<(&'static str, Vec<u8>)>> {
    let mut r = enc;
    let mut take = |n: usize| -> Option<&[u8]> {
        let (a, b) = r.split_at_checked(n)?;
        r = b;
        Some(a)
    };
    let u32_at = |b: &[u8]| u32::from_le_bytes(b.try_into().expect("4 bytes"));
    if take(1)? != [VERSION] {
        return None;
    }
    let format = match take(1)?[0] {
        0 => Format::Unparsed,
        1 => Format::Rfc3164,
        2 => Format::Rfc5424,
        _ => return None,
    };
    let pri = take(1)?[0];
    let version = u16::from_le_bytes(take(2)?.try_into().ok()?);
    let flags = take(1)?[0];
    let ns = i64::from_le_bytes(take(8)?.try_into().ok()?);
    let msg_offset = u32_at(take(4)?);
    let mut parts = [None; 6];
    for p in &mut parts {
        let (start, len) = (u32_at(take(4)?), u32_at(take(4)?));
        if start != ABSENT {
            let (s, l) = (start as usize, len as usize);
            *p = Some(raw.get(s..s.checked_add(l)?)?);
        }
    }
    let n = take(1)?[0] as usize;
    let defects: Vec<&str> = take(n)?
        .iter()
        .map(|&c| DEFECTS.get(c as usize).map(|d| d.name()))
        .collect::<Option<_>>()?;
    if !r.is_empty() {
        return None;
    }
    let mut f: Vec<(&'static str, Vec<u8>)> = vec![("format", format.name().as_bytes().to_vec())];
    if pri != 255 {
        f.push(("facility", (pri >> 3).to_string().into_bytes()));
        f.push(("severity", (pri & 7).to_string().into_bytes()));
    }
    if version != 0 {
        f.push(("version", version.to_string().into_bytes()));
    }
    if let Some(ts) = parts[0] {
        f.push(("timestamp", ts.to_vec()));
        if flags & 2 != 0 {
            f.push(("timestamp_unix_ns", ns.to_string().into_bytes()));
        }
    }
    for (name, part) in SPANS.iter().zip(parts).skip(1) {
        if let Some(p) = part {
            f.push((name, p.to_vec()));
        }
    }
    if flags & 1 != 0 {
        f.push(("bom", b"1".to_vec()));
    }
    f.push(("msg_offset", msg_offset.to_string().into_bytes()));
    if !defects.is_empty() {
        f.push(("defects", defects.join(",").into_bytes()));
    }
    Some(f)
}

#[cfg(test)]
mod tests {
    use super::super::{Context, parse};
    use super::*;
    use proptest::prelude::*;

    const CTX: Context = Context {
        received_unix_ns: 1_764_000_000_000_000_000,
        local_utc_offset_secs: 3600,
    };

    fn round_trip(raw: &[u8]) {
        let m = parse(raw, &CTX);
        let mut enc = Vec::new();
        m.encode_compact(&mut enc);
        assert_eq!(
            expand(raw, &enc),
            Some(m.fields()),
            "{:?}",
            String::from_utf8_lossy(raw)
        );
    }

    #[test]
    fn expands_to_the_named_fields() {
        for raw in [
            &b"<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - BOM'su root' failed"[..],
            b"<165>1 2003-10-11T22:14:15.003Z host app 123 ID1 [x@1 a=\"b\\]\"] \xef\xbb\xbfmsg",
            b"<34>Oct 11 22:14:15 mymachine su: 'su root' failed",
            b"<999>bad",
            b"",
            b"no pri \xff",
            b"<13>",
        ] {
            round_trip(raw);
        }
        let mut enc = Vec::new();
        parse(b"<13>Jan  1 00:00:00 h t: m", &CTX).encode_compact(&mut enc);
        assert!(expand(b"short", &enc).is_none(), "spans past the raw bytes");
        assert!(expand(b"<13>Jan  1 00:00:00 h t: m", &enc[..enc.len() - 1]).is_none());
        assert!(expand(b"x", &[2]).is_none());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn any_message_round_trips(raw in proptest::collection::vec(any::<u8>(), 0..300)) {
            round_trip(&raw);
        }

        #[test]
        fn any_syslog_shaped_message_round_trips(
            pri in 0u16..200, v in 0u8..3, body in "[ -~]{0,120}"
        ) {
            let raw = match v {
                0 => format!("<{pri}>1 2026-11-26T07:00:01.5+01:00 host app 42 ID [a b=\"c\"] {body}"),
                1 => format!("<{pri}>Nov 26 07:00:01 host tag[9]: {body}"),
                _ => format!("<{pri}>{body}"),
            };
            round_trip(raw.as_bytes());
        }

        #[test]
        fn expand_never_panics(raw in proptest::collection::vec(any::<u8>(), 0..64),
                               enc in proptest::collection::vec(any::<u8>(), 0..120)) {
            let _ = expand(&raw, &enc);
        }
    }
}
