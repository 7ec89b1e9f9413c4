//! One line of `audit.log`: its header, its fields, and the display
//! decoding of hex-encoded values.
//!
//! ```text
//! [node=NAME ]type=TYPE msg=audit(SECONDS.MILLIS:SERIAL): FIELDS[<0x1D>ENRICHED]
//! ```
//!
//! `node=` is there when auditd's `name_format` is not `NONE`; the part
//! after 0x1D (`AUDIT_INTERP_SEPARATOR`) when its `log_format` is
//! `ENRICHED`: the interpreted values, with upper-case names (`ARCH=x86_64
//! SYSCALL=execve AUID="alice"`).

use memchr::{memchr, memrchr};
use std::fmt;

/// The byte auditd writes between a record's fields and the interpreted
/// ones when `log_format = ENRICHED` (`AUDIT_INTERP_SEPARATOR`).
pub const ENRICHED_SEPARATOR: u8 = 0x1d;

/// The longest `node=` name accepted, in bytes (it becomes a field value).
pub const MAX_NODE_LEN: usize = 255;

/// The longest record type name accepted, in bytes (`UNKNOWN[1420]` is 13).
pub const MAX_TYPE_LEN: usize = 64;

/// Why a line is not an audit record. The line itself is never lost: the
/// assembler hands it back unparsed, byte for byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordError {
    /// The line is empty.
    Empty,
    /// The line holds a line feed (lines are passed without their
    /// terminator); at this byte offset.
    ContainsNewline { offset: usize },
    /// `node=` not followed by a name of 1 to 255 bytes and a space.
    BadNode,
    /// The line (after an optional `node=NAME `) does not start with `type=`.
    MissingType,
    /// The type name is empty, longer than 64 bytes, or has a byte that is
    /// not printable ASCII.
    BadType,
    /// The type is not followed by ` msg=audit(`.
    MissingStamp,
    /// The seconds of `audit(SECONDS.MILLIS:SERIAL)` are not 1 to 20 digits
    /// that fit in 64 bits.
    BadSeconds,
    /// The milliseconds are not `.` and exactly three digits, then `:`.
    BadMillis,
    /// The serial is not 1 to 10 digits that fit in 32 bits, then `)`.
    BadSerial,
    /// The line ends inside `audit(…)`.
    Truncated,
    /// `)` is followed by something other than `:`, a space or the end.
    TrailingAfterStamp,
    /// The line is not UTF-8 (valid up to this byte offset). The kernel
    /// hex-encodes every untrusted string, but the text of a user-space
    /// message (`msg='…'`) is copied as sent.
    NotUtf8 { valid_up_to: usize },
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordError::Empty => write!(f, "empty line"),
            RecordError::ContainsNewline { offset } => {
                write!(
                    f,
                    "line feed at byte {offset} (lines are passed without their terminator)"
                )
            }
            RecordError::BadNode => write!(
                f,
                "node= is not followed by a name of 1 to 255 bytes and a space"
            ),
            RecordError::MissingType => write!(f, "no type= at the start of the line"),
            RecordError::BadType => write!(f, "bad record type name"),
            RecordError::MissingStamp => write!(f, "no msg=audit( after the type"),
            RecordError::BadSeconds => write!(f, "bad seconds in audit(SECONDS.MILLIS:SERIAL)"),
            RecordError::BadMillis => write!(f, "bad milliseconds in audit(SECONDS.MILLIS:SERIAL)"),
            RecordError::BadSerial => write!(f, "bad serial in audit(SECONDS.MILLIS:SERIAL)"),
            RecordError::Truncated => write!(f, "the line ends inside audit(…)"),
            RecordError::TrailingAfterStamp => write!(f, "unexpected text right after audit(…)"),
            RecordError::NotUtf8 { valid_up_to } => {
                write!(f, "not UTF-8 (valid up to byte {valid_up_to})")
            }
        }
    }
}

impl std::error::Error for RecordError {}

/// The part of a line before its fields, read from bytes: enough to group
/// the line with its event even when the rest is not text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header<'a> {
    pub(crate) node: Option<&'a [u8]>,
    pub(crate) record_type: &'a [u8],
    pub(crate) seconds: u64,
    pub(crate) millis: u16,
    pub(crate) serial: u32,
    /// Where the fields start.
    pub(crate) body_start: usize,
}

/// Reads the header of `line` (ASCII by construction).
pub(crate) fn parse_header(line: &[u8]) -> Result<Header<'_>, RecordError> {
    if line.is_empty() {
        return Err(RecordError::Empty);
    }
    if let Some(offset) = memchr(b'\n', line) {
        return Err(RecordError::ContainsNewline { offset });
    }
    let mut pos = 0;
    let mut node = None;
    if let Some(rest) = line.strip_prefix(b"node=") {
        let end = memchr(b' ', rest).ok_or(RecordError::BadNode)?;
        if end == 0 || end > MAX_NODE_LEN {
            return Err(RecordError::BadNode);
        }
        node = Some(&rest[..end]);
        pos = 5 + end + 1;
    }
    let after_type = line[pos..]
        .strip_prefix(b"type=")
        .ok_or(RecordError::MissingType)?;
    let type_start = pos + 5;
    let no_stamp = if after_type.is_empty() {
        RecordError::BadType
    } else {
        RecordError::MissingStamp
    };
    let type_len = memchr(b' ', after_type).ok_or(no_stamp)?;
    let record_type = &after_type[..type_len];
    if record_type.is_empty()
        || record_type.len() > MAX_TYPE_LEN
        || !record_type.iter().all(|b| (0x21..=0x7e).contains(b))
    {
        return Err(RecordError::BadType);
    }
    pos = type_start + type_len + 1;
    let stamp = line[pos..]
        .strip_prefix(b"msg=audit(")
        .ok_or(RecordError::MissingStamp)?;
    pos += 10;

    let (seconds, used) =
        digits(stamp, 20).ok_or_else(|| end_or(stamp, RecordError::BadSeconds))?;
    let seconds = parse_u64(seconds).ok_or(RecordError::BadSeconds)?;
    let rest = &stamp[used..];
    let rest = match rest.first() {
        None => return Err(RecordError::Truncated),
        Some(b'.') => &rest[1..],
        Some(_) => return Err(RecordError::BadSeconds),
    };
    if rest.len() < 4 {
        return Err(if rest.iter().all(u8::is_ascii_digit) {
            RecordError::Truncated
        } else {
            RecordError::BadMillis
        });
    }
    if !rest[..3].iter().all(u8::is_ascii_digit) || rest[3] != b':' {
        return Err(RecordError::BadMillis);
    }
    let millis = rest[..3]
        .iter()
        .fold(0u16, |m, d| m * 10 + u16::from(d - b'0'));
    let rest = &rest[4..];
    let (serial, used_serial) =
        digits(rest, 10).ok_or_else(|| end_or(rest, RecordError::BadSerial))?;
    let serial = u32::try_from(parse_u64(serial).ok_or(RecordError::BadSerial)?)
        .map_err(|_| RecordError::BadSerial)?;
    let rest = &rest[used_serial..];
    match rest.first() {
        None => return Err(RecordError::Truncated),
        Some(b')') => {}
        Some(_) => return Err(RecordError::BadSerial),
    }
    pos += used + 1 + 4 + used_serial + 1;
    // `): ` (the kernel's form), `):` (an empty EOE), or `)` alone.
    match line.get(pos) {
        None => {}
        Some(b':') => {
            pos += 1;
            if line.get(pos) == Some(&b' ') {
                pos += 1;
            }
        }
        Some(b' ') => pos += 1,
        Some(_) => return Err(RecordError::TrailingAfterStamp),
    }
    Ok(Header {
        node,
        record_type,
        seconds,
        millis,
        serial,
        body_start: pos,
    })
}

/// The leading ASCII digits of `b`, 1 to `max` of them, and how many.
fn digits(b: &[u8], max: usize) -> Option<(&[u8], usize)> {
    let n = b.iter().take_while(|c| c.is_ascii_digit()).count();
    (1..=max).contains(&n).then(|| (&b[..n], n))
}

/// `Truncated` when `b` is empty (the line stopped there), else `err`.
fn end_or(b: &[u8], err: RecordError) -> RecordError {
    if b.is_empty() {
        RecordError::Truncated
    } else {
        err
    }
}

fn parse_u64(digits: &[u8]) -> Option<u64> {
    digits.iter().try_fold(0u64, |n, d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// One record: one line of `audit.log`, borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditRecord<'a> {
    line: &'a str,
    node: Option<&'a str>,
    record_type: &'a str,
    seconds: u64,
    millis: u16,
    serial: u32,
    body: &'a str,
    enriched: Option<&'a str>,
}

/// Parses one line (without its `\n`) as an audit record.
pub fn parse_record(line: &[u8]) -> Result<AuditRecord<'_>, RecordError> {
    let header = parse_header(line)?;
    let text = std::str::from_utf8(line).map_err(|e| RecordError::NotUtf8 {
        valid_up_to: e.valid_up_to(),
    })?;
    // The header is ASCII: its byte offsets are char boundaries of `text`.
    let node = header.node.map(|n| &text[5..5 + n.len()]);
    let type_start = node.map_or(0, |n| 6 + n.len()) + 5;
    let record_type = &text[type_start..type_start + header.record_type.len()];
    let fields = &text[header.body_start..];
    let (body, enriched) = match memchr(ENRICHED_SEPARATOR, fields.as_bytes()) {
        Some(at) => (&fields[..at], Some(&fields[at + 1..])),
        None => (fields, None),
    };
    Ok(AuditRecord {
        line: text,
        node,
        record_type,
        seconds: header.seconds,
        millis: header.millis,
        serial: header.serial,
        body,
        enriched,
    })
}

impl<'a> AuditRecord<'a> {
    /// The whole line, as given.
    pub fn line(&self) -> &'a str {
        self.line
    }

    /// The `node=` name, when the line has one.
    pub fn node(&self) -> Option<&'a str> {
        self.node
    }

    /// The type name as written: `SYSCALL`, `USER_LOGIN`, `UNKNOWN[1420]`.
    pub fn record_type(&self) -> &'a str {
        self.record_type
    }

    /// The type's number (see [`record_type_number`](super::record_type_number)).
    pub fn type_number(&self) -> Option<u16> {
        super::types::record_type_number(self.record_type)
    }

    /// Seconds since the epoch, as the kernel stamped the event.
    pub fn seconds(&self) -> u64 {
        self.seconds
    }

    /// Milliseconds (0–999).
    pub fn millis(&self) -> u16 {
        self.millis
    }

    /// The event's serial: the kernel's per-boot counter (`audit_serial()`
    /// in `kernel/audit.c`), or auditd's own for `DAEMON_*` records.
    pub fn serial(&self) -> u32 {
        self.serial
    }

    /// Seconds and milliseconds as milliseconds (saturating).
    pub fn timestamp_millis(&self) -> u64 {
        self.seconds
            .saturating_mul(1000)
            .saturating_add(u64::from(self.millis))
    }

    /// The raw field text: everything after `): `, up to the 0x1D
    /// separator of the ENRICHED format if there is one.
    pub fn body(&self) -> &'a str {
        self.body
    }

    /// The interpreted fields of the ENRICHED format (after 0x1D), raw.
    pub fn enriched(&self) -> Option<&'a str> {
        self.enriched
    }

    /// The fields of [`body`](Self::body), in order.
    pub fn fields(&self) -> Fields<'a> {
        Fields::new(self.record_type, self.body)
    }

    /// The interpreted fields of the ENRICHED format, in order (none
    /// without it).
    pub fn enriched_fields(&self) -> Fields<'a> {
        Fields::new(self.record_type, self.enriched.unwrap_or(""))
    }

    /// The first field named `key` in [`body`](Self::body).
    pub fn field(&self, key: &str) -> Option<Field<'a>> {
        self.fields().find(|f| f.key() == key)
    }
}

/// How a field's value was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quoting {
    /// `key=value`: a number, a word, `(null)`, or hex-encoded text.
    Bare,
    /// `key="value"` (the quotes are not part of the value).
    Double,
    /// `key='value'` for a key other than `msg` (whose single-quoted text
    /// is read as fields of its own).
    Single,
    /// `key={ … }` (ENRICHED `SADDR`): the value keeps its braces.
    Braces,
    /// An opening quote or brace without its closing one: the value is the
    /// rest of the text (a truncated line).
    Unterminated,
}

/// One `key=value` of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field<'a> {
    record_type: &'a str,
    key: &'a str,
    value: &'a str,
    quoting: Quoting,
}

impl<'a> Field<'a> {
    /// The key as written (`uid`, `a0`, `a1[0]`, `AUID`).
    pub fn key(&self) -> &'a str {
        self.key
    }

    /// The value as written, without its quotes; hex stays hex.
    pub fn value(&self) -> &'a str {
        self.value
    }

    /// How the value was written.
    pub fn quoting(&self) -> Quoting {
        self.quoting
    }

    /// The type of the record the field belongs to.
    pub fn record_type(&self) -> &'a str {
        self.record_type
    }

    /// Whether the kernel or libaudit hex-encodes this field when its text
    /// has a space, a double quote, a control character or a byte above
    /// 0x7E (`audit_log_untrustedstring()`): the `AUPARSE_TYPE_ESCAPED`
    /// fields of auparse's `typetab.h` (`name`, `exe`, `comm`, `cwd`,
    /// `cmd`, `acct`, `key`, …), `proctitle`, the TTY `data`, and the
    /// arguments `aN` and `aN[i]` of an `EXECVE` record (but not the
    /// `a0`…`a3` of a `SYSCALL` record: those are numbers in hex).
    pub fn is_hex_encodable(&self) -> bool {
        HEX_ENCODABLE_FIELDS.binary_search(&self.key).is_ok()
            || (self.record_type == "EXECVE" && is_execve_argument(self.key))
    }

    /// For display only: the text of a hex-encoded value, or `None` when
    /// the field is not one that is hex-encoded, or its value is quoted or
    /// not an even number of hex digits (`(null)`, a quoted path). The raw
    /// value is what is kept and chained; this is never a substitute.
    ///
    /// The decoded bytes are shown as text: in `proctitle` the NUL bytes
    /// between the arguments become spaces (trailing NULs are dropped), so
    /// `2F62696E2F6C73002D6C` reads `/bin/ls -l` (an argument that itself
    /// contains a space is then not told apart); in `key` the 0x01 between
    /// several rule keys becomes `,`; elsewhere a control character is
    /// written `\xNN` (`\u{NN}` above 0x7F), a byte that is not UTF-8
    /// `\xNN`, and a backslash `\\`.
    pub fn decoded_value(&self) -> Option<String> {
        if self.quoting != Quoting::Bare || !self.is_hex_encodable() {
            return None;
        }
        let mut bytes = decode_hex(self.value)?;
        match self.key {
            "proctitle" => {
                while bytes.last() == Some(&0) {
                    bytes.pop();
                }
                for b in &mut bytes {
                    if *b == 0 {
                        *b = b' ';
                    }
                }
            }
            "key" => {
                for b in &mut bytes {
                    if *b == 0x01 {
                        *b = b',';
                    }
                }
            }
            _ => {}
        }
        Some(escape_for_display(&bytes))
    }
}

/// auparse's `AUPARSE_TYPE_ESCAPED` fields (`auparse/typetab.h`), and
/// `data` (TTY) and `proctitle`, sorted for binary search.
const HEX_ENCODABLE_FIELDS: &[&str] = &[
    "acct",
    "cgroup",
    "cmd",
    "comm",
    "cwd",
    "data",
    "device",
    "dir",
    "exe",
    "file",
    "grp",
    "invalid_context",
    "key",
    "name",
    "new-chardev",
    "new-disk",
    "new-fs",
    "new-net",
    "new-rng",
    "new_group",
    "ocomm",
    "old-chardev",
    "old-disk",
    "old-fs",
    "old-net",
    "old-rng",
    "path",
    "proctitle",
    "root_dir",
    "sw",
    "vm",
    "watch",
];

/// `a0`, `a12`, `a1[0]`: an argument of `EXECVE` (not `argc`, not `a1_len`).
fn is_execve_argument(key: &str) -> bool {
    let Some(rest) = key.strip_prefix('a') else {
        return false;
    };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return false;
    }
    match &rest[digits..] {
        "" => true,
        index => index
            .strip_prefix('[')
            .and_then(|i| i.strip_suffix(']'))
            .is_some_and(|i| !i.is_empty() && i.bytes().all(|b| b.is_ascii_digit())),
    }
}

/// `2F62696E` → `/bin`; `None` unless an even, non-zero number of hex digits.
fn decode_hex(text: &str) -> Option<Vec<u8>> {
    let b = text.as_bytes();
    if b.is_empty() || !b.len().is_multiple_of(2) {
        return None;
    }
    b.chunks_exact(2)
        .map(|pair| Some(hex_digit(pair[0])? << 4 | hex_digit(pair[1])?))
        .collect()
}

fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Bytes as display text: UTF-8 kept, control characters, stray bytes and
/// the backslash escaped.
fn escape_for_display(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                c if c.is_control() && (c as u32) < 0x80 => {
                    let _ = write!(out, "\\x{:02x}", c as u32);
                }
                c if c.is_control() => {
                    let _ = write!(out, "\\u{{{:x}}}", c as u32);
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

/// The fields of a record, in order. `msg='…'` (the text of a user-space
/// message) is read as fields of its own, in its place; a word without `=`
/// (`avc:  denied  { read } for`, `tty` in a TTY record) is not a field and
/// is skipped (it stays in the raw line).
#[derive(Debug, Clone)]
pub struct Fields<'a> {
    record_type: &'a str,
    outer: &'a str,
    outer_pos: usize,
    /// The text of `msg='…'` being read, and where.
    inner: Option<(&'a str, usize)>,
}

impl<'a> Fields<'a> {
    fn new(record_type: &'a str, text: &'a str) -> Self {
        Fields {
            record_type,
            outer: text,
            outer_pos: 0,
            inner: None,
        }
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Field<'a>;

    fn next(&mut self) -> Option<Field<'a>> {
        loop {
            if let Some((text, pos)) = &mut self.inner {
                match scan(text, pos, true) {
                    Scanned::Field(key, value, quoting) => {
                        return Some(Field {
                            record_type: self.record_type,
                            key,
                            value,
                            quoting,
                        });
                    }
                    Scanned::Nested(_) | Scanned::End => self.inner = None,
                }
                continue;
            }
            match scan(self.outer, &mut self.outer_pos, false) {
                Scanned::Field(key, value, quoting) => {
                    return Some(Field {
                        record_type: self.record_type,
                        key,
                        value,
                        quoting,
                    });
                }
                Scanned::Nested(text) => self.inner = Some((text, 0)),
                Scanned::End => return None,
            }
        }
    }
}

enum Scanned<'a> {
    Field(&'a str, &'a str, Quoting),
    /// The text of `msg='…'`.
    Nested(&'a str),
    End,
}

fn is_space(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// The next field of `text` from `*pos`. Every split is at an ASCII byte,
/// so every slice is on a char boundary.
fn scan<'a>(text: &'a str, pos: &mut usize, nested: bool) -> Scanned<'a> {
    let b = text.as_bytes();
    loop {
        while *pos < b.len() && is_space(b[*pos]) {
            *pos += 1;
        }
        if *pos >= b.len() {
            return Scanned::End;
        }
        let start = *pos;
        let mut i = start;
        while i < b.len() && b[i] != b'=' && !is_space(b[i]) {
            i += 1;
        }
        if i == start || i >= b.len() || b[i] != b'=' {
            // A word without `=` (or starting with one): not a field.
            while i < b.len() && !is_space(b[i]) {
                i += 1;
            }
            *pos = i;
            continue;
        }
        let key = &text[start..i];
        let v = i + 1;
        let Some(&first) = b.get(v) else {
            *pos = v;
            return Scanned::Field(key, "", Quoting::Bare);
        };
        let closing = |quote: u8, from_end: bool| {
            let rest = &b[v + 1..];
            let found = if from_end {
                memrchr(quote, rest)
            } else {
                memchr(quote, rest)
            };
            found.map(|off| v + 1 + off)
        };
        return match first {
            b'"' => match closing(b'"', false) {
                Some(end) => {
                    *pos = end + 1;
                    Scanned::Field(key, &text[v + 1..end], Quoting::Double)
                }
                None => {
                    *pos = b.len();
                    Scanned::Field(key, &text[v + 1..], Quoting::Unterminated)
                }
            },
            // The kernel writes a user-space message as ` msg='%s'` at the
            // end of the record and does not escape it: its closing quote
            // is the last one of the text.
            b'\'' => match closing(b'\'', !nested) {
                Some(end) => {
                    *pos = end + 1;
                    if key == "msg" && !nested {
                        Scanned::Nested(&text[v + 1..end])
                    } else {
                        Scanned::Field(key, &text[v + 1..end], Quoting::Single)
                    }
                }
                None => {
                    *pos = b.len();
                    Scanned::Field(key, &text[v + 1..], Quoting::Unterminated)
                }
            },
            b'{' => match memchr(b'}', &b[v..]) {
                Some(off) => {
                    *pos = v + off + 1;
                    Scanned::Field(key, &text[v..=v + off], Quoting::Braces)
                }
                None => {
                    *pos = b.len();
                    Scanned::Field(key, &text[v..], Quoting::Unterminated)
                }
            },
            _ => {
                let mut j = v;
                while j < b.len() && !is_space(b[j]) {
                    j += 1;
                }
                *pos = j;
                Scanned::Field(key, &text[v..j], Quoting::Bare)
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(record: &AuditRecord<'_>) -> Vec<(String, String)> {
        record
            .fields()
            .map(|f| (f.key().to_owned(), f.value().to_owned()))
            .collect()
    }

    #[test]
    fn header_errors_are_typed() {
        let cases: &[(&[u8], RecordError)] = &[
            (b"", RecordError::Empty),
            (
                b"type=SYSCALL msg=audit(1.000:1): a=b\nc",
                RecordError::ContainsNewline { offset: 36 },
            ),
            (b"hello world", RecordError::MissingType),
            (b"node=host", RecordError::BadNode),
            (
                b"node= type=SYSCALL msg=audit(1.000:1):",
                RecordError::BadNode,
            ),
            (b"type=", RecordError::BadType),
            (b"type=SYSCALL", RecordError::MissingStamp),
            (
                b"type=SYS\x01CALL msg=audit(1.000:1):",
                RecordError::BadType,
            ),
            (b"type=SYSCALL audit(1.000:1):", RecordError::MissingStamp),
            (b"type=SYSCALL msg=audit(", RecordError::Truncated),
            (b"type=SYSCALL msg=audit(x.000:1):", RecordError::BadSeconds),
            (
                b"type=SYSCALL msg=audit(123456789012345678901.000:1):",
                RecordError::BadSeconds,
            ),
            (
                b"type=SYSCALL msg=audit(99999999999999999999.000:1):",
                RecordError::BadSeconds,
            ),
            (
                b"type=SYSCALL msg=audit(1700000000:1):",
                RecordError::BadSeconds,
            ),
            (
                b"type=SYSCALL msg=audit(1700000000.",
                RecordError::Truncated,
            ),
            (
                b"type=SYSCALL msg=audit(1700000000.12",
                RecordError::Truncated,
            ),
            (
                b"type=SYSCALL msg=audit(1700000000.12:5):",
                RecordError::BadMillis,
            ),
            (
                b"type=SYSCALL msg=audit(1700000000.1234:5):",
                RecordError::BadMillis,
            ),
            (
                b"type=SYSCALL msg=audit(1700000000.123:",
                RecordError::Truncated,
            ),
            (
                b"type=SYSCALL msg=audit(1700000000.123:x)",
                RecordError::BadSerial,
            ),
            (
                b"type=SYSCALL msg=audit(1700000000.123:4294967296):",
                RecordError::BadSerial,
            ),
            (
                b"type=SYSCALL msg=audit(1700000000.123:12",
                RecordError::Truncated,
            ),
            (
                b"type=SYSCALL msg=audit(1700000000.123:12x",
                RecordError::BadSerial,
            ),
            (
                b"type=SYSCALL msg=audit(1700000000.123:12)x",
                RecordError::TrailingAfterStamp,
            ),
            (
                b"type=USER msg=audit(1.000:1): msg='\xff'",
                RecordError::NotUtf8 { valid_up_to: 35 },
            ),
        ];
        for (line, want) in cases {
            assert_eq!(
                parse_record(line).err(),
                Some(*want),
                "{}",
                String::from_utf8_lossy(line)
            );
            let _ = want.to_string();
        }
    }

    #[test]
    fn header_forms_the_kernel_and_tools_write() {
        let r = parse_record(b"type=EOE msg=audit(1492037291.036:59)").unwrap();
        assert_eq!(
            (r.seconds(), r.millis(), r.serial(), r.body()),
            (1492037291, 36, 59, "")
        );
        let r = parse_record(b"type=EOE msg=audit(1492798541.391:20246):").unwrap();
        assert_eq!((r.serial(), r.body()), (20246, ""));
        let r = parse_record(b"type=EOE msg=audit(1640027821.949:151316): ").unwrap();
        assert_eq!(r.body(), "");
        let r = parse_record(b"type=SYSCALL msg=audit(1700000000.123:4294967295): a=1").unwrap();
        assert_eq!(
            (r.serial(), r.timestamp_millis()),
            (u32::MAX, 1_700_000_000_123)
        );
        let r = parse_record(
            b"node=web-1.example type=UNKNOWN[1420] msg=audit(1.002:3): subj_apparmor=unconfined",
        )
        .unwrap();
        assert_eq!(
            (r.node(), r.record_type(), r.type_number()),
            (Some("web-1.example"), "UNKNOWN[1420]", Some(1420))
        );
        assert_eq!(
            r.line(),
            "node=web-1.example type=UNKNOWN[1420] msg=audit(1.002:3): subj_apparmor=unconfined"
        );
    }

    #[test]
    fn values_bare_quoted_braced_and_odd_ones() {
        let r = parse_record(
            b"type=SYSCALL msg=audit(1.000:1): a=1 comm=\"my prog\" key=(null) subj==unconfined empty= \
              tty SADDR={ fam=inet laddr=1.2.3.4 } last=\"open",
        )
        .unwrap();
        let fields: Vec<_> = r
            .fields()
            .map(|f| (f.key(), f.value(), f.quoting()))
            .collect();
        assert_eq!(
            fields,
            vec![
                ("a", "1", Quoting::Bare),
                ("comm", "my prog", Quoting::Double),
                ("key", "(null)", Quoting::Bare),
                ("subj", "=unconfined", Quoting::Bare),
                ("empty", "", Quoting::Bare),
                ("SADDR", "{ fam=inet laddr=1.2.3.4 }", Quoting::Braces),
                ("last", "open", Quoting::Unterminated),
            ]
        );
        assert_eq!(r.field("comm").map(|f| f.value()), Some("my prog"));
        assert!(r.field("nope").is_none());
    }

    #[test]
    fn user_message_text_is_read_as_fields() {
        // Real line (auditbeat's go-libaudit test data, RHEL 7).
        let r = parse_record(
            b"type=USER_LOGIN msg=audit(1493046015.752:42120): pid=18981 uid=0 auid=4294967295 ses=4294967295 \
              subj=system_u:system_r:sshd_t:s0-s0:c0.c1023 msg='op=login acct=\"root\" exe=\"/usr/sbin/sshd\" \
              hostname=? addr=46.160.144.250 terminal=ssh res=failed'",
        )
        .unwrap();
        let keys: Vec<_> = r.fields().map(|f| f.key()).collect();
        assert_eq!(
            keys,
            [
                "pid", "uid", "auid", "ses", "subj", "op", "acct", "exe", "hostname", "addr",
                "terminal", "res"
            ]
        );
        assert_eq!(r.field("acct").unwrap().value(), "root");
        assert_eq!(r.field("res").unwrap().value(), "failed");
        // A quote inside the message does not end it early.
        let r =
            parse_record(b"type=USER_CMD msg=audit(1.000:2): pid=1 msg='cwd=\"/o'b\" res=success'")
                .unwrap();
        assert_eq!(
            pairs(&r),
            [
                ("pid".into(), "1".into()),
                ("cwd".into(), "/o'b".into()),
                ("res".into(), "success".into())
            ]
        );
    }

    #[test]
    fn hex_values_decode_for_display_only() {
        // Real lines: laurel's and go-libaudit's test data.
        let r = parse_record(
            b"type=PROCTITLE msg=audit(1686666551.525:28860764): proctitle=64617368002D70",
        )
        .unwrap();
        let f = r.field("proctitle").unwrap();
        assert_eq!(f.value(), "64617368002D70");
        assert_eq!(f.decoded_value().as_deref(), Some("dash -p"));
        let r = parse_record(b"type=TTY msg=audit(1702500511.459:370948): tty pid=260398 uid=0 auid=4294967295 ses=4294967295 major=136 minor=1 comm=\"bash\" data=72706D202D7161207C2067726570207379736C6F670D").unwrap();
        assert_eq!(
            r.field("data").unwrap().decoded_value().as_deref(),
            Some("rpm -qa | grep syslog\\x0d")
        );
        assert_eq!(r.field("comm").unwrap().decoded_value(), None, "quoted");
        let r = parse_record(b"type=SYSCALL msg=audit(1492800799.050:20294): arch=c000003e syscall=133 a0=7ff61dde1960 exe=2F7573722F6C69622F73797374656D642F73797374656D642D6C6F67696E643B3538663938633835202864656C6574656429 key=(null)").unwrap();
        assert_eq!(
            r.field("exe").unwrap().decoded_value().as_deref(),
            Some("/usr/lib/systemd/systemd-logind;58f98c85 (deleted)")
        );
        assert_eq!(
            r.field("a0").unwrap().decoded_value(),
            None,
            "SYSCALL a0 is a number"
        );
        assert_eq!(r.field("arch").unwrap().decoded_value(), None);
        assert_eq!(r.field("key").unwrap().decoded_value(), None, "(null)");
        let r = parse_record(b"type=EXECVE msg=audit(1.000:1): argc=3 a0=\"echo\" a1_len=4 a1[0]=6869 a2=610062 a3=4A").unwrap();
        let decoded: Vec<_> = r.fields().map(|f| f.decoded_value()).collect();
        // Unquoted, so hex: the kernel quotes an argument that needs no escaping.
        assert_eq!(
            decoded,
            [
                None,
                None,
                None,
                Some("hi".into()),
                Some("a\\x00b".into()),
                Some("J".into())
            ]
        );
        let r = parse_record(
            b"type=SYSCALL msg=audit(1.000:1): key=6B31016B32 comm=5C5C FF name=C3A9FF name=ABC",
        )
        .unwrap();
        let decoded: Vec<_> = r.fields().map(|f| f.decoded_value()).collect();
        assert_eq!(
            decoded,
            [
                Some("k1,k2".into()),
                Some("\\\\\\\\".into()),
                Some("é\\xff".into()),
                None
            ]
        );
        assert!(
            !parse_record(b"type=EXECVE msg=audit(1.000:1): a=1")
                .unwrap()
                .field("a")
                .unwrap()
                .is_hex_encodable()
        );
        for (key, want) in [
            ("a0", true),
            ("a10", true),
            ("a1[3]", true),
            ("a1[]", false),
            ("a1_len", false),
            ("argc", false),
            ("a", false),
            ("a1[x]", false),
        ] {
            assert_eq!(is_execve_argument(key), want, "{key}");
        }
    }

    #[test]
    fn enriched_format_splits_at_the_separator() {
        // Real line (laurel's test data), its 0x1D restored.
        let line = b"node=work type=SYSCALL msg=audit(1615114232.375:15558): arch=c000003e syscall=59 success=yes exit=0 items=2 ppid=10883 pid=10884 auid=1000 uid=0 tty=pts1 ses=1 comm=\"whoami\" exe=\"/usr/bin/whoami\" key=(null)\x1dARCH=x86_64 SYSCALL=execve AUID=\"user\" UID=\"root\"";
        let r = parse_record(line).unwrap();
        assert!(r.body().ends_with("key=(null)"));
        assert_eq!(
            r.enriched(),
            Some("ARCH=x86_64 SYSCALL=execve AUID=\"user\" UID=\"root\"")
        );
        let enriched: Vec<_> = r.enriched_fields().map(|f| (f.key(), f.value())).collect();
        assert_eq!(
            enriched,
            [
                ("ARCH", "x86_64"),
                ("SYSCALL", "execve"),
                ("AUID", "user"),
                ("UID", "root")
            ]
        );
        assert_eq!(r.fields().last().map(|f| f.key()), Some("key"));
        let plain = parse_record(b"type=CWD msg=audit(1.000:1):  cwd=\"/\"").unwrap();
        assert_eq!(
            (plain.enriched(), plain.enriched_fields().count()),
            (None, 0)
        );
    }
}
