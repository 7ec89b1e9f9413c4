//! RFC 5424: `<PRI>VERSION SP TIMESTAMP SP HOSTNAME SP APP-NAME SP PROCID SP
//! MSGID SP STRUCTURED-DATA [SP MSG]`, with `-` (NILVALUE) for an absent
//! field, structured data as `[SD-ID PARAM="VALUE" …]` elements (`\"`,
//! `\\` and `\]` escaped in values), and an optional UTF-8 BOM opening MSG.
//!
//! Loose where the RFC's strictness would only lose information: header
//! fields are taken as space-separated tokens whatever their length or
//! bytes; SD parameters may be separated by several spaces; an unescaped
//! `]` inside a quoted value is part of the value. Where the structure
//! itself is broken the message keeps what came before, records a
//! [`Defect`], and the rest becomes MSG.

use std::borrow::Cow;

use super::timestamp;
use super::{Defect, Format, Message};

/// The UTF-8 byte order mark RFC 5424 §6.4 puts before a UTF-8 MSG.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// The STRUCTURED-DATA of an RFC 5424 message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StructuredData<'a> {
    /// The structured data byte for byte as received, from the first `[`
    /// to the last `]`.
    pub raw: &'a [u8],
    /// The elements, in order.
    pub elements: Vec<SdElement<'a>>,
}

/// One `[SD-ID PARAM="VALUE" …]` element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdElement<'a> {
    /// The SD-ID, e.g. `exampleSDID@32473` or `timeQuality`.
    pub id: &'a str,
    /// The parameters, in order (a name may repeat, as RFC 5424 allows).
    pub params: Vec<SdParam<'a>>,
}

/// One `NAME="VALUE"` parameter of an [`SdElement`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdParam<'a> {
    /// The PARAM-NAME.
    pub name: &'a str,
    /// The PARAM-VALUE with its escapes (`\"`, `\\`, `\]`) resolved; a
    /// backslash before any other byte stays, as RFC 5424 §6.3.3 says.
    /// Borrowed when there was nothing to unescape. Bytes, not text: RFC
    /// 5424 asks for UTF-8 but senders do not always comply.
    pub value: Cow<'a, [u8]>,
}

/// Whether what follows a valid PRI opens an RFC 5424 message: a VERSION
/// (1–3 digits, the first not 0), a space, then a TIMESTAMP that starts
/// with a digit or is `-`. Returns the version and the bytes up to the
/// TIMESTAMP. Anything else is left to the RFC 3164 parser (whose
/// example 4, `<0>1990 Oct 22 …`, has 4 digits).
pub(super) fn version(after_pri: &[u8]) -> Option<(u16, usize)> {
    let count = after_pri
        .iter()
        .take(4)
        .take_while(|b| b.is_ascii_digit())
        .count();
    if !(1..=3).contains(&count) || after_pri[0] == b'0' || after_pri.get(count) != Some(&b' ') {
        return None;
    }
    match after_pri.get(count + 1) {
        Some(b) if *b == b'-' || b.is_ascii_digit() => {}
        _ => return None,
    }
    let version = after_pri[..count]
        .iter()
        .fold(0u16, |n, b| n * 10 + u16::from(b - b'0'));
    Some((version, count + 1))
}

/// Parses the RFC 5424 message in `m.raw` whose TIMESTAMP starts at `pos`.
pub(super) fn parse_into(m: &mut Message<'_>, mut pos: usize, version: u16) {
    let raw = m.raw;
    m.format = Format::Rfc5424;
    m.version = Some(version);
    m.msg_offset = raw.len();

    // TIMESTAMP HOSTNAME APP-NAME PROCID MSGID, each followed by a space.
    let mut header: [Option<&[u8]>; 5] = [None; 5];
    let mut truncated = false;
    for slot in &mut header {
        if pos >= raw.len() {
            truncated = true;
            break;
        }
        let end = memchr::memchr(b' ', &raw[pos..]).map_or(raw.len(), |i| pos + i);
        let token = &raw[pos..end];
        if token.is_empty() {
            m.add_defect(Defect::HeaderMalformed);
        } else if token != b"-" {
            *slot = Some(token);
        }
        pos = end + 1;
    }
    let [timestamp, hostname, app_name, procid, msgid] = header;
    if let Some(text) = timestamp {
        let (timestamp, valid) = timestamp::rfc3339(text);
        if !valid {
            m.add_defect(Defect::TimestampInvalid);
        }
        m.timestamp = Some(timestamp);
    }
    m.hostname = hostname;
    m.app_name = app_name;
    m.procid = procid;
    m.msgid = msgid;
    if truncated || pos >= raw.len() {
        m.add_defect(Defect::HeaderTruncated);
        return;
    }

    // STRUCTURED-DATA.
    let after_sd = match raw[pos] {
        b'-' if matches!(raw.get(pos + 1), None | Some(b' ')) => pos + 1,
        b'[' => match structured_data(raw, pos) {
            Some((elements, end)) => {
                m.structured_data = Some(StructuredData {
                    raw: &raw[pos..end],
                    elements,
                });
                end
            }
            None => {
                m.add_defect(Defect::StructuredDataInvalid);
                m.msg_offset = pos;
                return;
            }
        },
        _ => {
            m.add_defect(Defect::StructuredDataInvalid);
            m.msg_offset = pos;
            return;
        }
    };

    // [SP MSG]
    m.msg_offset = match raw.get(after_sd) {
        None => after_sd,
        Some(b' ') => after_sd + 1,
        Some(_) => {
            m.add_defect(Defect::HeaderMalformed);
            after_sd
        }
    };
    if raw[m.msg_offset..].starts_with(BOM) {
        m.bom = true;
        m.msg_offset += BOM.len();
    }
}

/// Parses one or more SD-ELEMENTs starting at `raw[start] == b'['`:
/// the elements and the index just after the last `]`, or `None` when they
/// are malformed.
fn structured_data(raw: &[u8], start: usize) -> Option<(Vec<SdElement<'_>>, usize)> {
    let mut elements = Vec::new();
    let mut i = start;
    while raw.get(i) == Some(&b'[') {
        let (id, next) = sd_name(raw, i + 1)?;
        i = next;
        let mut params = Vec::new();
        loop {
            match raw.get(i)? {
                b']' => {
                    i += 1;
                    break;
                }
                b' ' => {
                    while raw.get(i) == Some(&b' ') {
                        i += 1;
                    }
                    if raw.get(i) == Some(&b']') {
                        continue;
                    }
                    let (name, next) = sd_name(raw, i)?;
                    if raw.get(next) != Some(&b'=') || raw.get(next + 1) != Some(&b'"') {
                        return None;
                    }
                    let (value, next) = sd_value(raw, next + 2)?;
                    params.push(SdParam { name, value });
                    i = next;
                }
                _ => return None,
            }
        }
        elements.push(SdElement { id, params });
    }
    Some((elements, i))
}

/// An SD-NAME (SD-ID or PARAM-NAME) at `raw[start..]`: printable US-ASCII
/// except `=`, space, `]` and `"`, at least one byte. Returns it and the
/// index after it.
fn sd_name(raw: &[u8], start: usize) -> Option<(&str, usize)> {
    let rest = raw.get(start..)?;
    let len = rest
        .iter()
        .take_while(|&&b| matches!(b, b'!'..=b'~') && !matches!(b, b'=' | b']' | b'"'))
        .count();
    if len == 0 {
        return None;
    }
    let name = std::str::from_utf8(&rest[..len]).ok()?;
    Some((name, start + len))
}

/// A PARAM-VALUE starting just after its opening quote: the unescaped value
/// and the index after the closing quote, or `None` when it does not close.
fn sd_value(raw: &[u8], start: usize) -> Option<(Cow<'_, [u8]>, usize)> {
    let mut unescaped: Option<Vec<u8>> = None;
    let mut segment_start = start;
    let mut i = start;
    loop {
        let j = i + memchr::memchr2(b'"', b'\\', raw.get(i..)?)?;
        if raw[j] == b'"' {
            let segment = &raw[segment_start..j];
            let value = match unescaped {
                None => Cow::Borrowed(segment),
                Some(mut value) => {
                    value.extend_from_slice(segment);
                    Cow::Owned(value)
                }
            };
            return Some((value, j + 1));
        }
        match raw.get(j + 1)? {
            &escaped @ (b'"' | b'\\' | b']') => {
                let value = unescaped.get_or_insert_with(Vec::new);
                value.extend_from_slice(&raw[segment_start..j]);
                value.push(escaped);
                i = j + 2;
                segment_start = i;
            }
            // Any other byte: the backslash is an ordinary byte.
            _ => i = j + 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Context, Defect, Format, TimestampKind, parse};
    use super::*;

    const CTX: Context = Context {
        received_unix_ns: 1_700_000_000_000_000_000,
        local_utc_offset_secs: 0,
    };

    fn param<'a>(name: &'a str, value: &'a [u8]) -> SdParam<'a> {
        SdParam {
            name,
            value: Cow::Borrowed(value),
        }
    }

    #[test]
    fn rfc5424_example_1_bom_and_nil_sd() {
        let raw = b"<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - \xEF\xBB\xBF'su root' failed for lonvick on /dev/pts/8";
        let m = parse(raw, &CTX);
        assert_eq!(m.format, Format::Rfc5424);
        assert_eq!(
            (m.pri, m.facility(), m.severity()),
            (Some(34), Some(4), Some(2))
        );
        assert_eq!(m.version, Some(1));
        let timestamp = m.timestamp.unwrap();
        assert_eq!(timestamp.text, b"2003-10-11T22:14:15.003Z");
        assert_eq!(timestamp.kind, TimestampKind::Rfc3339);
        assert_eq!(timestamp.unix_ns, Some(1_065_910_455_003_000_000));
        assert_eq!(m.hostname, Some(&b"mymachine.example.com"[..]));
        assert_eq!(m.app_name, Some(&b"su"[..]));
        assert_eq!(m.procid, None);
        assert_eq!(m.msgid, Some(&b"ID47"[..]));
        assert_eq!(m.structured_data, None);
        assert!(m.bom);
        assert_eq!(m.msg(), b"'su root' failed for lonvick on /dev/pts/8");
        assert_eq!(&raw[m.msg_offset - 3..m.msg_offset], BOM);
        assert!(m.defects.is_empty());
    }

    #[test]
    fn rfc5424_example_2_no_bom_nil_msgid() {
        let raw = b"<165>1 2003-08-24T05:14:15.000003-07:00 192.0.2.1 myproc 8710 - - %% It's time to make the do-nuts.";
        let m = parse(raw, &CTX);
        assert_eq!(m.format, Format::Rfc5424);
        assert_eq!((m.facility(), m.severity()), (Some(20), Some(5)));
        assert_eq!(
            m.timestamp.unwrap().unix_ns,
            Some(1_061_727_255_000_003_000)
        );
        assert_eq!(m.hostname, Some(&b"192.0.2.1"[..]));
        assert_eq!(m.app_name, Some(&b"myproc"[..]));
        assert_eq!(m.procid, Some(&b"8710"[..]));
        assert_eq!(m.msgid, None);
        assert!(!m.bom);
        assert_eq!(m.msg(), b"%% It's time to make the do-nuts.");
        assert!(m.defects.is_empty());
    }

    #[test]
    fn rfc5424_example_3_sd_and_bom_msg() {
        let raw = b"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut=\"3\" eventSource=\"Application\" eventID=\"1011\"] \xEF\xBB\xBFAn application event log entry...";
        let m = parse(raw, &CTX);
        assert_eq!(m.format, Format::Rfc5424);
        let sd = m.structured_data.as_ref().unwrap();
        assert_eq!(
            sd.raw,
            &b"[exampleSDID@32473 iut=\"3\" eventSource=\"Application\" eventID=\"1011\"]"[..]
        );
        assert_eq!(
            sd.elements,
            vec![SdElement {
                id: "exampleSDID@32473",
                params: vec![
                    param("iut", b"3"),
                    param("eventSource", b"Application"),
                    param("eventID", b"1011"),
                ],
            }]
        );
        assert!(m.bom);
        assert_eq!(m.msg(), b"An application event log entry...");
        assert!(m.defects.is_empty());
    }

    #[test]
    fn rfc5424_example_4_two_elements_no_msg() {
        let raw = b"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut=\"3\" eventSource=\"Application\" eventID=\"1011\"][examplePriority@32473 class=\"high\"]";
        let m = parse(raw, &CTX);
        let sd = m.structured_data.as_ref().unwrap();
        assert_eq!(sd.elements.len(), 2);
        assert_eq!(sd.elements[1].id, "examplePriority@32473");
        assert_eq!(sd.elements[1].params, vec![param("class", b"high")]);
        assert_eq!(sd.raw.len(), raw.len() - 70);
        assert_eq!(m.msg(), b"");
        assert_eq!(m.msg_offset, raw.len());
        assert!(!m.bom);
        assert!(m.defects.is_empty());
    }

    #[test]
    fn all_nil() {
        let m = parse(b"<14>1 - - - - - -", &CTX);
        assert_eq!(m.format, Format::Rfc5424);
        assert_eq!(m.timestamp, None);
        assert_eq!(
            (m.hostname, m.app_name, m.procid, m.msgid),
            (None, None, None, None)
        );
        assert_eq!(m.structured_data, None);
        assert_eq!(m.msg(), b"");
        assert!(m.defects.is_empty());
        let m = parse(b"<14>1 - - - - - - hello", &CTX);
        assert_eq!(m.msg(), b"hello");
        assert!(m.defects.is_empty());
    }

    #[test]
    fn sd_escapes() {
        let raw = br#"<14>1 - h a - - [id@1 a="q\"uote" b="back\\slash" c="br\]acket" d="other\n" e="un]escaped" f="" g="\\\""] msg"#;
        let m = parse(raw, &CTX);
        assert!(m.defects.is_empty(), "{:?}", m.defects);
        let params = &m.structured_data.as_ref().unwrap().elements[0].params;
        let values: Vec<&[u8]> = params.iter().map(|p| &*p.value).collect();
        assert_eq!(
            values,
            vec![
                &b"q\"uote"[..],
                b"back\\slash",
                b"br]acket",
                b"other\\n",
                b"un]escaped",
                b"",
                b"\\\"",
            ]
        );
        assert!(matches!(params[0].value, Cow::Owned(_)));
        assert!(matches!(params[3].value, Cow::Borrowed(_)));
        assert!(matches!(params[4].value, Cow::Borrowed(_)));
        assert_eq!(m.msg(), b"msg");
        // The raw SD is kept with its escapes.
        assert!(m.structured_data.unwrap().raw.ends_with(br#"g="\\\""]"#));
    }

    #[test]
    fn sd_element_without_params_and_non_utf8_values() {
        let m = parse(b"<14>1 - - - - - [timeQuality][x@1 v=\"\xff\xfe\"] m", &CTX);
        let sd = m.structured_data.unwrap();
        assert_eq!(sd.elements[0].id, "timeQuality");
        assert!(sd.elements[0].params.is_empty());
        assert_eq!(&*sd.elements[1].params[0].value, b"\xff\xfe");
        assert!(m.defects.is_empty());
    }

    #[test]
    fn malformed_sd_becomes_msg() {
        for (raw, msg) in [
            (
                &b"<14>1 - h a - - [id@1 a=\"unterminated] rest"[..],
                &b"[id@1 a=\"unterminated] rest"[..],
            ),
            (
                b"<14>1 - h a - - [id@1 a=unquoted] rest",
                b"[id@1 a=unquoted] rest",
            ),
            (b"<14>1 - h a - - [] rest", b"[] rest"),
            (b"<14>1 - h a - - [id@1", b"[id@1"),
            (b"<14>1 - h a - - [id@1 a=\"x\\", b"[id@1 a=\"x\\"),
            (b"<14>1 - h a - - hello world", b"hello world"),
            (b"<14>1 - h a - - -hello", b"-hello"),
        ] {
            let m = parse(raw, &CTX);
            assert_eq!(m.format, Format::Rfc5424);
            assert_eq!(m.defects, vec![Defect::StructuredDataInvalid], "{raw:?}");
            assert_eq!(m.structured_data, None);
            assert_eq!(m.msg(), msg);
            assert_eq!(m.hostname, Some(&b"h"[..]));
        }
        // SD directly followed by MSG without the space.
        let m = parse(b"<14>1 - h a - - [x@1]msg", &CTX);
        assert_eq!(m.defects, vec![Defect::HeaderMalformed]);
        assert_eq!(m.msg(), b"msg");
        assert!(m.structured_data.is_some());
    }

    #[test]
    fn truncated_and_malformed_headers() {
        for raw in [
            &b"<14>1 -"[..],
            b"<14>1 - ",
            b"<14>1 - host",
            b"<14>1 - host app 12 ID",
            b"<14>1 - host app 12 ID ",
        ] {
            let m = parse(raw, &CTX);
            assert_eq!(m.format, Format::Rfc5424, "{raw:?}");
            assert_eq!(m.defects, vec![Defect::HeaderTruncated], "{raw:?}");
            assert_eq!(m.msg(), b"");
        }
        let m = parse(b"<14>1 - host app 12 ID", &CTX);
        assert_eq!(m.msgid, Some(&b"ID"[..]));
        let m = parse(b"<14>1 -  app 12 ID - m", &CTX);
        assert_eq!(m.defects, vec![Defect::HeaderMalformed]);
        assert_eq!(m.hostname, None);
        assert_eq!(m.app_name, Some(&b"app"[..]));
        assert_eq!(m.msg(), b"m");
    }

    #[test]
    fn invalid_timestamp_is_kept_as_text() {
        let m = parse(b"<14>1 2003-13-45T99:99:99Z host app - - - m", &CTX);
        assert_eq!(m.format, Format::Rfc5424);
        assert_eq!(m.defects, vec![Defect::TimestampInvalid]);
        let timestamp = m.timestamp.unwrap();
        assert_eq!(timestamp.text, b"2003-13-45T99:99:99Z");
        assert_eq!(timestamp.unix_ns, None);
        assert_eq!(m.hostname, Some(&b"host"[..]));
        assert_eq!(m.msg(), b"m");
    }

    #[test]
    fn versions() {
        assert_eq!(version(b"1 2003"), Some((1, 2)));
        assert_eq!(version(b"1 -"), Some((1, 2)));
        assert_eq!(version(b"12 -"), Some((12, 3)));
        assert_eq!(version(b"1 "), None);
        assert_eq!(version(b"0 -"), None);
        assert_eq!(version(b"1990 Oct"), None);
        assert_eq!(version(b"1 Oct"), None);
        assert_eq!(version(b"1-"), None);
        assert_eq!(version(b""), None);
        let m = parse(b"<14>2 - h - - - - m", &CTX);
        assert_eq!((m.format, m.version), (Format::Rfc5424, Some(2)));
    }

    #[test]
    fn bom_only_counts_at_the_start_of_msg() {
        let m = parse(b"<14>1 - - - - - - x\xEF\xBB\xBF", &CTX);
        assert!(!m.bom);
        assert_eq!(m.msg(), b"x\xEF\xBB\xBF");
        let m = parse(b"<14>1 - - - - - - \xEF\xBB\xBF", &CTX);
        assert!(m.bom);
        assert_eq!(m.msg(), b"");
        let m = parse(b"<14>1 - - - - - - \xEF\xBB", &CTX);
        assert!(!m.bom);
        assert_eq!(m.msg(), b"\xEF\xBB");
    }
}
