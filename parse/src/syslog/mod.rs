//! Syslog: one message parsed from its raw bytes ([`parse`]: RFC 5424, RFC
//! 3164 and what senders really emit), and a TCP stream cut into messages
//! ([`StreamFramer`]: RFC 6587 octet counting and LF framing).
//!
//! The raw bytes of a message are the evidence: the spool chains them
//! untouched. What is parsed here only adds structured fields beside them,
//! so parsing never rejects and never panics: a message that is not syslog
//! at all comes back as [`Format::Unparsed`] with all its bytes as MSG, and
//! a message that is syslog with faults keeps every field that could be
//! read and lists the faults as [`Defect`]s. All parsed fields borrow from
//! the raw bytes and are bytes, not text: non-UTF-8 and NUL survive.
//!
//! # Which format
//!
//! * No `<` at the start: no PRI ([`Defect::PriMissing`]); the message is
//!   RFC 3164 if it opens with a timestamp, else [`Format::Unparsed`].
//! * `<` not followed by 1–3 digits and `>`, or a value above 191
//!   (`<999>`, `<abc>`, `<>`, `<13`): [`Defect::PriInvalid`],
//!   [`Format::Unparsed`]. A PRI with leading zeros (`<013>`) is accepted.
//! * PRI, then `VERSION SP` (1–3 digits, not starting with 0) and a
//!   timestamp starting with a digit or `-`: RFC 5424.
//! * Any other PRI'd message: RFC 3164 (with [`Defect::TimestampMissing`]
//!   when no timestamp follows the PRI).
//!
//! The RFC 3164 heuristics (host name or not, tag or not) are described in
//! `rfc3164.rs`; in short: a first token ending in `:` or shaped
//! `name[pid]` is the TAG and there is no HOSTNAME (glibc's local
//! messages); otherwise a host-name-shaped token is the HOSTNAME, and a TAG
//! follows only if it is shaped like one. An RFC 3164 TAG becomes
//! `app_name`, its `[PID]` `procid`. A trailing `\n`, `\r\n` or NUL is
//! part of MSG (nothing is trimmed); the framer already removes the LF or
//! NUL that ended a TCP frame.
//!
//! # Timestamps and the year of an RFC 3164 timestamp
//!
//! RFC 3339 timestamps (RFC 5424, and rsyslog's RFC 3339 templates in
//! BSD-style messages) state their zone. A BSD timestamp (`Oct 11
//! 22:14:15`) has neither zone nor year: the zone is taken to be
//! [`Context::local_utc_offset_secs`], and the year is **the latest year in
//! which the date exists and the timestamp is at most 31 days after the
//! receive time** (both in local time), searching from the receive year + 1
//! down. So:
//!
//! * a message stamped earlier this year, or up to 31 days ahead (clock
//!   skew), gets the receive year;
//! * `Dec 31 23:59:59` received on Jan 1 gets the previous year (it would
//!   otherwise be almost a year in the future);
//! * `Jan  1 00:00:03` received on Dec 31 at 23:59:58 from a sender whose
//!   clock is a little ahead gets the next year (rather than being dated
//!   almost a year back);
//! * `Feb 29` gets the last leap year not more than 31 days ahead.
//!
//! The inferred instant is a best effort: the text as received is always
//! kept in the `timestamp` field, and a reader can tell it was inferred
//! from its shape (no year, no zone). The offset is the one in force when
//! the message was received, so a message delayed across a daylight-saving
//! change is off by the change.
//!
//! # Structured fields
//!
//! [`Message::fields`] gives the fields to store beside the raw bytes. The
//! names are stable; a field is absent when there is nothing to say (no
//! `"-"`, no empty placeholders). Numbers are ASCII decimal.
//!
//! | field | value | present when |
//! |---|---|---|
//! | `format` | `rfc5424`, `rfc3164` or `unparsed` | always |
//! | `facility` | 0–23 | the PRI is valid |
//! | `severity` | 0–7 | the PRI is valid |
//! | `version` | the RFC 5424 VERSION (`1`) | RFC 5424 |
//! | `timestamp` | the timestamp byte for byte as received (RFC 3339, or BSD `Mmm dd hh:mm:ss`) | there is one (not `-`) |
//! | `timestamp_unix_ns` | the instant, ns since the Unix epoch, UTC (may be negative); for a BSD timestamp with the inferred year and the local offset | the timestamp is valid and within 1677–2262 |
//! | `hostname` | HOSTNAME as received | present, not `-` |
//! | `app_name` | RFC 5424 APP-NAME, or the RFC 3164 TAG | present, not `-` |
//! | `procid` | RFC 5424 PROCID, or the RFC 3164 `[PID]` | present, not `-` |
//! | `msgid` | RFC 5424 MSGID | present, not `-` |
//! | `sd` | the RFC 5424 STRUCTURED-DATA as received, escapes and all (parsed: [`Message::structured_data`]) | RFC 5424 with structured data (not `-`) |
//! | `bom` | `1` | MSG opened with a UTF-8 BOM (MSG is then taken after it) |
//! | `msg_offset` | where MSG starts in the raw bytes (after the BOM, if any); MSG runs to the end | always |
//! | `defects` | comma-separated [`Defect`] names, e.g. `pri_missing,timestamp_missing` | there are any |
//!
//! MSG itself is not a field: it is the tail of the raw bytes, which the
//! record holds anyway (`msg_offset` says where it starts).
//!
//! # TCP framing (RFC 6587)
//!
//! [`StreamFramer`] cuts a connection's bytes into frames, deciding the
//! framing per frame as rsyslog does: a frame starting with `1`–`9` is
//! octet-counted (`LEN SP MSG`, LEN at most 9 digits), anything else runs
//! to the next LF or NUL (either ends a frame; a CR before the LF stays in
//! the message, as for file lines). A frame longer than `max_frame` comes
//! out in parts flagged `more_parts` / `continuation`, so memory stays
//! bounded and no byte is dropped; the unfinished frame at the end of the
//! stream comes out flagged `incomplete`. Details on [`StreamFramer`].
//!
//! # Why hand-written and not `syslog_loose`
//!
//! `syslog_loose` (nom + chrono) parses `&str`: a message that is not
//! UTF-8 — which syslog allows for RFC 3164 and for an RFC 5424 MSG without
//! a BOM, and which hostile senders produce at will — would have to be
//! rejected or lossily converted before parsing, and offsets into a
//! converted string are not offsets into the evidence. It also trims the
//! input, returns owned/converted values (chrono `DateTime`s) rather than
//! the bytes as received, does not report a BOM, and resolves the year
//! through a callback without the receive time. It would bring `nom` and
//! `chrono` into the agent. The formats are small enough that a
//! byte-oriented parser of a few hundred lines, tested against the RFC
//! examples and fuzzed with proptest, is easier to trust: every field is a
//! subslice of the raw bytes, and every fault is named.

mod compact;
mod framing;
mod rfc3164;
mod rfc5424;
mod timestamp;

pub use compact::{FIELD as COMPACT_FIELD, expand as expand_compact};
pub use framing::{DEFAULT_MAX_FRAME, Frame, Framing, MAX_OCTET_COUNT_DIGITS, StreamFramer};
pub use rfc5424::{SdElement, SdParam, StructuredData};
pub use timestamp::{Timestamp, TimestampKind, YEAR_INFERENCE_FUTURE_TOLERANCE_SECS};

/// What the syslog formats leave out and the receiver knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Context {
    /// When the message was received, ns since the Unix epoch (UTC): the
    /// reference for the year of an RFC 3164 timestamp.
    pub received_unix_ns: i64,
    /// The local offset from UTC in seconds (east positive, e.g. 3600 for
    /// CET) at the receive time: the zone of an RFC 3164 timestamp.
    pub local_utc_offset_secs: i32,
}

/// Which syslog format a message was parsed as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// RFC 5424 (`<PRI>1 TIMESTAMP HOSTNAME …`).
    Rfc5424,
    /// RFC 3164 / BSD syslog, including its common deviations.
    Rfc3164,
    /// Neither: no usable PRI and nothing recognisable. All the bytes are
    /// MSG.
    Unparsed,
}

impl Format {
    /// The name used in the `format` field.
    pub fn name(self) -> &'static str {
        match self {
            Format::Rfc5424 => "rfc5424",
            Format::Rfc3164 => "rfc3164",
            Format::Unparsed => "unparsed",
        }
    }
}

/// Something about a message that is not as its format says it should be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Defect {
    /// The message is empty.
    Empty,
    /// No PRI: the message does not start with `<`.
    PriMissing,
    /// A PRI that is not `<` 1–3 digits `>` with a value of at most 191.
    PriInvalid,
    /// RFC 3164: no timestamp after the PRI (RFC 3164 §4.3.3: all of it is
    /// then CONTENT; a TAG is still recognised).
    TimestampMissing,
    /// A timestamp shaped like one but with impossible values (month 13,
    /// Feb 30, hour 24, offset +25:00) or, in RFC 5424, not RFC 3339 at
    /// all. Its text is kept; it has no instant.
    TimestampInvalid,
    /// RFC 5424: the message ends inside the header (before the structured
    /// data).
    HeaderTruncated,
    /// RFC 5424: an empty header field (two spaces in a row), or no space
    /// between the structured data and MSG.
    HeaderMalformed,
    /// RFC 5424: the structured data is neither `-` nor well-formed
    /// elements; from there on everything is MSG.
    StructuredDataInvalid,
}

impl Defect {
    /// The name used in the `defects` field.
    pub fn name(self) -> &'static str {
        match self {
            Defect::Empty => "empty",
            Defect::PriMissing => "pri_missing",
            Defect::PriInvalid => "pri_invalid",
            Defect::TimestampMissing => "timestamp_missing",
            Defect::TimestampInvalid => "timestamp_invalid",
            Defect::HeaderTruncated => "header_truncated",
            Defect::HeaderMalformed => "header_malformed",
            Defect::StructuredDataInvalid => "sd_invalid",
        }
    }
}

/// One syslog message: its raw bytes and what could be parsed from them.
/// Every byte field is a subslice of [`raw`](Message::raw) (only an SD
/// parameter value with escapes is a copy, unescaped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message<'a> {
    /// The message exactly as received.
    pub raw: &'a [u8],
    /// The format it was parsed as.
    pub format: Format,
    /// PRI (facility × 8 + severity), when valid.
    pub pri: Option<u8>,
    /// RFC 5424 VERSION.
    pub version: Option<u16>,
    /// The timestamp, when there was one (not `-`).
    pub timestamp: Option<Timestamp<'a>>,
    /// HOSTNAME.
    pub hostname: Option<&'a [u8]>,
    /// RFC 5424 APP-NAME, or the RFC 3164 TAG.
    pub app_name: Option<&'a [u8]>,
    /// RFC 5424 PROCID, or the RFC 3164 `[PID]`.
    pub procid: Option<&'a [u8]>,
    /// RFC 5424 MSGID.
    pub msgid: Option<&'a [u8]>,
    /// RFC 5424 STRUCTURED-DATA, unless `-` (or invalid: see
    /// [`Defect::StructuredDataInvalid`]).
    pub structured_data: Option<StructuredData<'a>>,
    /// MSG opened with a UTF-8 BOM (RFC 5424 only); [`msg`](Message::msg)
    /// starts after it.
    pub bom: bool,
    /// Where MSG starts in `raw`; it runs to the end.
    pub msg_offset: usize,
    /// What is wrong with the message, in the order found; empty for a
    /// well-formed one.
    pub defects: Vec<Defect>,
}

impl<'a> Message<'a> {
    fn unparsed(raw: &'a [u8]) -> Self {
        Message {
            raw,
            format: Format::Unparsed,
            pri: None,
            version: None,
            timestamp: None,
            hostname: None,
            app_name: None,
            procid: None,
            msgid: None,
            structured_data: None,
            bom: false,
            msg_offset: 0,
            defects: Vec::new(),
        }
    }

    fn add_defect(&mut self, defect: Defect) {
        if !self.defects.contains(&defect) {
            self.defects.push(defect);
        }
    }

    /// The facility (PRI / 8), when the PRI is valid.
    pub fn facility(&self) -> Option<u8> {
        self.pri.map(|pri| pri >> 3)
    }

    /// The severity (PRI % 8), when the PRI is valid.
    pub fn severity(&self) -> Option<u8> {
        self.pri.map(|pri| pri & 7)
    }

    /// MSG: the raw bytes from [`msg_offset`](Message::msg_offset) on.
    pub fn msg(&self) -> &'a [u8] {
        self.raw.get(self.msg_offset..).unwrap_or_default()
    }

    /// The structured fields to store beside the raw bytes, in a fixed
    /// order; names and values as in the table of the [module docs](self).
    pub fn fields(&self) -> Vec<(&'static str, Vec<u8>)> {
        let mut fields = Vec::new();
        self.visit_fields(|k, v| fields.push((k, v.to_vec())));
        fields
    }

    /// The fields of [`Message::fields`], in the same order, handed to `f`
    /// one by one without allocating (for a receiver that copies them into
    /// its own buffer).
    pub fn visit_fields(&self, mut f: impl FnMut(&'static str, &[u8])) {
        let mut num = Decimal::default();
        f("format", self.format.name().as_bytes());
        if let (Some(facility), Some(severity)) = (self.facility(), self.severity()) {
            f("facility", num.of(i64::from(facility)));
            f("severity", num.of(i64::from(severity)));
        }
        if let Some(version) = self.version {
            f("version", num.of(i64::from(version)));
        }
        if let Some(timestamp) = &self.timestamp {
            f("timestamp", timestamp.text);
            if let Some(ns) = timestamp.unix_ns {
                f("timestamp_unix_ns", num.of(ns));
            }
        }
        for (name, value) in [
            ("hostname", self.hostname),
            ("app_name", self.app_name),
            ("procid", self.procid),
            ("msgid", self.msgid),
        ] {
            if let Some(value) = value {
                f(name, value);
            }
        }
        if let Some(sd) = &self.structured_data {
            f("sd", sd.raw);
        }
        if self.bom {
            f("bom", b"1");
        }
        f("msg_offset", num.of(self.msg_offset as i64));
        if !self.defects.is_empty() {
            let mut names = Vec::with_capacity(64);
            for (i, d) in self.defects.iter().enumerate() {
                if i > 0 {
                    names.push(b',');
                }
                names.extend_from_slice(d.name().as_bytes());
            }
            f("defects", &names);
        }
    }
}

/// Parses one syslog message: a UDP or unix datagram, or one frame of a TCP
/// stream (its [`message`](Frame::message) bytes). Never fails: see the
/// [module docs](self) for what comes back for what input.
pub fn parse<'a>(raw: &'a [u8], ctx: &Context) -> Message<'a> {
    let mut message = Message::unparsed(raw);
    if raw.is_empty() {
        message.add_defect(Defect::Empty);
        return message;
    }
    let after_pri = match pri(raw) {
        Pri::Valid { value, len } => {
            message.pri = Some(value);
            len
        }
        Pri::Missing => {
            message.add_defect(Defect::PriMissing);
            0
        }
        Pri::Invalid => {
            message.add_defect(Defect::PriInvalid);
            return message;
        }
    };
    if message.pri.is_some()
        && let Some((version, len)) = rfc5424::version(&raw[after_pri..])
    {
        rfc5424::parse_into(&mut message, after_pri + len, version);
    } else {
        rfc3164::parse_into(&mut message, after_pri, ctx);
    }
    message
}

/// The PRI at the start of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pri {
    /// `<N>` with N ≤ 191; `len` bytes long.
    Valid { value: u8, len: usize },
    /// The message does not start with `<`.
    Missing,
    /// It starts with `<` but no valid PRI follows.
    Invalid,
}

fn pri(raw: &[u8]) -> Pri {
    if raw.first() != Some(&b'<') {
        return Pri::Missing;
    }
    let digits = raw[1..]
        .iter()
        .take(4)
        .take_while(|b| b.is_ascii_digit())
        .count();
    if !(1..=3).contains(&digits) || raw.get(1 + digits) != Some(&b'>') {
        return Pri::Invalid;
    }
    let value = raw[1..=digits]
        .iter()
        .fold(0u16, |n, b| n * 10 + u16::from(b - b'0'));
    match u8::try_from(value) {
        Ok(value) if value <= 191 => Pri::Valid {
            value,
            len: digits + 2,
        },
        _ => Pri::Invalid,
    }
}

/// An integer as ASCII decimal, written into a buffer on the stack.
#[derive(Default)]
struct Decimal([u8; 20]);

impl Decimal {
    fn of(&mut self, n: i64) -> &[u8] {
        let mut i = self.0.len();
        let mut v = n.unsigned_abs();
        loop {
            i -= 1;
            self.0[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        if n < 0 {
            i -= 1;
            self.0[i] = b'-';
        }
        &self.0[i..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const CTX: Context = Context {
        received_unix_ns: 1_718_452_800_000_000_000,
        local_utc_offset_secs: 0,
    };

    fn field_map(m: &Message<'_>) -> Vec<(&'static str, String)> {
        m.fields()
            .into_iter()
            .map(|(name, value)| (name, String::from_utf8_lossy(&value).into_owned()))
            .collect()
    }

    #[test]
    fn pri_values() {
        assert_eq!(pri(b"<0>"), Pri::Valid { value: 0, len: 3 });
        assert_eq!(pri(b"<191>x"), Pri::Valid { value: 191, len: 5 });
        assert_eq!(pri(b"<013>"), Pri::Valid { value: 13, len: 5 });
        for invalid in [
            &b"<192>"[..],
            b"<999>",
            b"<1000>",
            b"<abc>",
            b"<>",
            b"<13",
            b"<",
            b"<-1>",
            b"< 13>",
        ] {
            assert_eq!(pri(invalid), Pri::Invalid, "{invalid:?}");
        }
        assert_eq!(pri(b"13>"), Pri::Missing);
    }

    #[test]
    fn malformed_pri_is_unparsed_with_all_bytes_as_msg() {
        for raw in [
            &b"<999>Oct 11 22:14:15 host su: x"[..],
            b"<abc>hello",
            b"<>hello",
            b"<13 Oct 11 22:14:15 host su: x",
            b"<1234>1 - - - - - -",
        ] {
            let m = parse(raw, &CTX);
            assert_eq!(m.format, Format::Unparsed, "{raw:?}");
            assert_eq!(m.pri, None);
            assert_eq!(m.defects, vec![Defect::PriInvalid]);
            assert_eq!(m.msg(), raw);
            assert_eq!(m.timestamp, None);
            assert_eq!(
                field_map(&m),
                vec![
                    ("format", "unparsed".into()),
                    ("msg_offset", "0".into()),
                    ("defects", "pri_invalid".into())
                ]
            );
        }
    }

    #[test]
    fn empty_garbage_nul_and_non_utf8() {
        let m = parse(b"", &CTX);
        assert_eq!((m.format, m.msg()), (Format::Unparsed, &b""[..]));
        assert_eq!(m.defects, vec![Defect::Empty]);
        for raw in [
            &b"\0\0\0"[..],
            b"\xff\xfe\xfd garbage",
            b"hello world\n",
            b" <13>x",
        ] {
            let m = parse(raw, &CTX);
            assert_eq!(m.format, Format::Unparsed, "{raw:?}");
            assert_eq!(m.defects, vec![Defect::PriMissing]);
            assert_eq!(m.msg(), raw);
        }
        let raw = b"<13>Jun 15 11:00:00 host app[1]: bad \xff\xfe and NUL \0 end\n";
        let m = parse(raw, &CTX);
        assert_eq!(m.format, Format::Rfc3164);
        assert_eq!(m.msg(), b"bad \xff\xfe and NUL \0 end\n");
        let raw = b"<13>1 - ho\xffst a\0p - - - \xc3\x28\0";
        let m = parse(raw, &CTX);
        assert_eq!(m.format, Format::Rfc5424);
        assert_eq!(m.hostname, Some(&b"ho\xffst"[..]));
        assert_eq!(m.app_name, Some(&b"a\0p"[..]));
        assert_eq!(m.msg(), b"\xc3\x28\0");
        assert!(m.defects.is_empty());
    }

    #[test]
    fn messages_of_64_kib() {
        let body = vec![b'x'; 64 * 1024];
        let mut raw = b"<165>1 2003-10-11T22:14:15.003Z host app - - [a@1 k=\"v\"] ".to_vec();
        raw.extend_from_slice(&body);
        let m = parse(&raw, &CTX);
        assert_eq!(m.format, Format::Rfc5424);
        assert_eq!(m.msg(), &body[..]);
        let mut raw = b"<13>Jun 15 11:00:00 host app: ".to_vec();
        raw.extend_from_slice(&body);
        let m = parse(&raw, &CTX);
        assert_eq!(m.format, Format::Rfc3164);
        assert_eq!(m.msg(), &body[..]);
        // A 64 KiB structured data value, and 64 KiB of garbage.
        let mut raw = b"<13>1 - - - - - [a@1 k=\"".to_vec();
        raw.extend(std::iter::repeat_n(b"\\\"".iter().copied(), 32 * 1024).flatten());
        raw.extend_from_slice(b"\"] m");
        let m = parse(&raw, &CTX);
        assert_eq!(
            m.structured_data.unwrap().elements[0].params[0].value.len(),
            32 * 1024
        );
        let garbage: Vec<u8> = (0..64 * 1024).map(|i| (i * 7 % 251) as u8).collect();
        let m = parse(&garbage, &CTX);
        assert_eq!(m.msg().len() + m.msg_offset, garbage.len());
    }

    #[test]
    fn fields_of_a_full_rfc5424_message() {
        let raw = b"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog 77 ID47 [exampleSDID@32473 iut=\"3\"] \xEF\xBB\xBFAn application event";
        let m = parse(raw, &CTX);
        assert_eq!(
            field_map(&m),
            vec![
                ("format", "rfc5424".into()),
                ("facility", "20".into()),
                ("severity", "5".into()),
                ("version", "1".into()),
                ("timestamp", "2003-10-11T22:14:15.003Z".into()),
                ("timestamp_unix_ns", "1065910455003000000".into()),
                ("hostname", "mymachine.example.com".into()),
                ("app_name", "evntslog".into()),
                ("procid", "77".into()),
                ("msgid", "ID47".into()),
                ("sd", "[exampleSDID@32473 iut=\"3\"]".into()),
                ("bom", "1".into()),
                ("msg_offset", (raw.len() - 20).to_string()),
            ]
        );
    }

    #[test]
    fn fields_of_a_defective_rfc3164_message() {
        let m = parse(b"Jun 15 11:00:00 host app: m", &CTX);
        assert_eq!(
            field_map(&m),
            vec![
                ("format", "rfc3164".into()),
                ("timestamp", "Jun 15 11:00:00".into()),
                ("timestamp_unix_ns", "1718449200000000000".into()),
                ("hostname", "host".into()),
                ("app_name", "app".into()),
                ("msg_offset", "26".into()),
                ("defects", "pri_missing".into()),
            ]
        );
        let m = parse(b"<13>1 2003-99-11T22:14:15Z  a - - x", &CTX);
        assert_eq!(
            field_map(&m).last().unwrap(),
            &(
                "defects",
                "header_malformed,timestamp_invalid,sd_invalid".into()
            )
        );
    }

    /// Whether `part` lies within `whole` (the same memory, not equal bytes).
    fn within(whole: &[u8], part: &[u8]) -> bool {
        let start = whole.as_ptr() as usize;
        let part_start = part.as_ptr() as usize;
        part_start >= start && part_start + part.len() <= start + whole.len()
    }

    fn check_invariants(raw: &[u8]) {
        let m = parse(raw, &CTX);
        assert!(m.msg_offset <= raw.len());
        assert_eq!(m.msg().len(), raw.len() - m.msg_offset);
        for part in [m.hostname, m.app_name, m.procid, m.msgid]
            .into_iter()
            .flatten()
        {
            assert!(within(raw, part));
        }
        if let Some(timestamp) = &m.timestamp {
            assert!(within(raw, timestamp.text));
        }
        if let Some(sd) = &m.structured_data {
            assert!(within(raw, sd.raw));
            assert!(!sd.elements.is_empty());
            assert!(sd.raw.len() + m.msg().len() <= raw.len());
        }
        if let Some(pri) = m.pri {
            assert!(pri <= 191);
        } else {
            assert!(!m.defects.is_empty());
        }
        if m.format == Format::Unparsed {
            assert_eq!(m.msg(), raw);
            assert!(!m.defects.is_empty());
        }
        let mut defects = m.defects.clone();
        defects.dedup();
        assert_eq!(defects.len(), m.defects.len());
        let fields = m.fields();
        assert_eq!(fields[0].0, "format");
        let mut names: Vec<_> = fields.iter().map(|(name, _)| *name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), fields.len());
    }

    /// Syslog-shaped inputs: pieces that steer the parser into its deeper
    /// paths, interleaved with arbitrary bytes.
    fn syslogish() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            Just(&b"<13>"[..]),
            Just(&b"<165>1 "[..]),
            Just(&b"1 "[..]),
            Just(&b"- "[..]),
            Just(&b"2003-10-11T22:14:15.003Z "[..]),
            Just(&b"2003-10-11T22:14:15+01:00"[..]),
            Just(&b"Oct 11 22:14:15 "[..]),
            Just(&b"Feb  5 17:32:18"[..]),
            Just(&b"host "[..]),
            Just(&b"app[12]: "[..]),
            Just(&b"app: "[..]),
            Just(&b"[id@1 a=\"v\\\"\"]"[..]),
            Just(&b"[x"[..]),
            Just(&b" k=\""[..]),
            Just(&b"\\"[..]),
            Just(&b"]"[..]),
            Just(&b"\""[..]),
            Just(&b" "[..]),
            Just(&b"\xEF\xBB\xBF"[..]),
        ]
        .prop_map(<[u8]>::to_vec);
        let chunk = prop_oneof![piece, proptest::collection::vec(any::<u8>(), 0..8)];
        proptest::collection::vec(chunk, 0..12).prop_map(|chunks| chunks.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn parse_never_panics_on_arbitrary_bytes(raw in proptest::collection::vec(any::<u8>(), 0..300)) {
            check_invariants(&raw);
        }

        #[test]
        fn parse_never_panics_on_syslogish_bytes(raw in syslogish()) {
            check_invariants(&raw);
        }

        #[test]
        fn parse_never_panics_with_any_context(
            raw in syslogish(),
            received_unix_ns in any::<i64>(),
            local_utc_offset_secs in -86_400i32..=86_400,
        ) {
            let ctx = Context { received_unix_ns, local_utc_offset_secs };
            let m = parse(&raw, &ctx);
            let _ = m.fields();
        }
    }
}
