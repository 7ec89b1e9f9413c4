//! RFC 3164 ("BSD syslog"): `<PRI>TIMESTAMP SP HOSTNAME SP TAG[PID]: MSG`,
//! and what senders actually emit: no HOSTNAME (glibc's `syslog(3)` over
//! `/dev/log`), a single-digit day with one space instead of two, no
//! TIMESTAMP, an RFC 3339 TIMESTAMP (rsyslog's RFC 3339 templates), a
//! fraction of a second or a year in the BSD timestamp (network devices).
//!
//! After the timestamp the first token (up to a space) is:
//!
//! * a TAG when it ends in `:` or is `name[pid]` (optionally followed by
//!   `:`) — then there is no HOSTNAME;
//! * otherwise a HOSTNAME when it is followed by a space and consists of
//!   letters, digits, `.`, `-`, `_`, `:` and `%` (host names, IPv4 and IPv6
//!   addresses), then the next token is a TAG if it is shaped like one;
//! * otherwise the start of MSG.
//!
//! A TAG is a run of bytes other than space, `:`, `[` and `]`, ended by
//! `: `, `:` at the end, `[PID]: `, `[PID] `, or `[PID]` / `[PID]:` at the
//! end — so `Use the BFG!` has no tag, and neither does `http://…`. Without
//! a timestamp there is no HOSTNAME (RFC 3164 §4.3.3: such a message is all
//! CONTENT), but a TAG is still recognised (`<13>myprog: hello`).

use super::timestamp;
use super::{Context, Defect, Format, Message};

/// Parses the RFC 3164 message in `m.raw` whose TIMESTAMP (if any) starts at
/// `start`. Without a PRI (`m.pri` is `None`) the message is RFC 3164 only
/// if it opens with a timestamp; otherwise it stays
/// [`Unparsed`](Format::Unparsed) with all of it as MSG.
pub(super) fn parse_into(m: &mut Message<'_>, start: usize, ctx: &Context) {
    let raw = m.raw;
    let rest = &raw[start..];
    let parsed_timestamp = if let Some(shape) = timestamp::bsd_shape(rest) {
        Some(timestamp::bsd(rest, &shape, ctx))
    } else {
        let token = &rest[..memchr::memchr(b' ', rest).unwrap_or(rest.len())];
        timestamp::looks_like_rfc3339(token).then(|| timestamp::rfc3339(token))
    };
    let Some((timestamp, valid)) = parsed_timestamp else {
        if m.pri.is_none() {
            return;
        }
        m.format = Format::Rfc3164;
        m.add_defect(Defect::TimestampMissing);
        m.msg_offset = start;
        if let Some(tag) = tag(raw, start) {
            tag.apply(m);
        }
        return;
    };
    m.format = Format::Rfc3164;
    if !valid {
        m.add_defect(Defect::TimestampInvalid);
    }
    m.timestamp = Some(timestamp);
    let after_timestamp = start + timestamp.text.len();
    // The timestamp is followed by a space or the end (checked by shape).
    let mut pos = (after_timestamp + 1).min(raw.len());
    m.msg_offset = pos;
    if let Some(tag) = tag(raw, pos) {
        tag.apply(m);
        return;
    }
    let token_end = memchr::memchr(b' ', &raw[pos..]).map(|i| pos + i);
    if let Some(end) = token_end
        && is_hostname(&raw[pos..end])
    {
        m.hostname = Some(&raw[pos..end]);
        pos = end + 1;
        m.msg_offset = pos;
        if let Some(tag) = tag(raw, pos) {
            tag.apply(m);
        }
    }
}

/// A recognised TAG: its name, PID and where MSG starts.
struct Tag<'a> {
    name: &'a [u8],
    pid: Option<&'a [u8]>,
    msg_offset: usize,
}

impl<'a> Tag<'a> {
    fn apply(self, m: &mut Message<'a>) {
        m.app_name = Some(self.name);
        m.procid = self.pid;
        m.msg_offset = self.msg_offset;
    }
}

/// The TAG at `raw[start..]`, if there is one there (see the module docs).
fn tag(raw: &[u8], start: usize) -> Option<Tag<'_>> {
    let rest = raw.get(start..)?;
    let name_len = rest
        .iter()
        .take_while(|&&b| !matches!(b, b' ' | b':' | b'[' | b']'))
        .count();
    if name_len == 0 {
        return None;
    }
    let mut i = name_len;
    let mut pid = None;
    if rest.get(i) == Some(&b'[') {
        let pid_len = rest[i + 1..]
            .iter()
            .take_while(|&&b| !matches!(b, b']' | b' '))
            .count();
        if rest.get(i + 1 + pid_len) != Some(&b']') {
            return None;
        }
        if pid_len > 0 {
            pid = Some(&rest[i + 1..i + 1 + pid_len]);
        }
        i += pid_len + 2;
    }
    let bracketed = i > name_len;
    let msg_start = match (rest.get(i), rest.get(i + 1)) {
        (Some(b':'), Some(b' ')) => i + 2,
        (Some(b':'), None) => i + 1,
        (Some(b' '), _) if bracketed => i + 1,
        (None, _) if bracketed => i,
        _ => return None,
    };
    Some(Tag {
        name: &rest[..name_len],
        pid,
        msg_offset: start + msg_start,
    })
}

/// Whether a token can be a HOSTNAME: a host name, an IPv4 or IPv6 address
/// (with a `%zone`), not ending in `:` (that would be a TAG).
fn is_hostname(token: &[u8]) -> bool {
    !token.is_empty()
        && token.len() <= 255
        && !token.ends_with(b":")
        && token
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':' | b'%'))
}

#[cfg(test)]
mod tests {
    use super::super::{Context, Defect, Format, Message, TimestampKind, parse};

    /// 2024-06-15T12:00:00Z, local time UTC.
    const CTX: Context = Context {
        received_unix_ns: 1_718_452_800_000_000_000,
        local_utc_offset_secs: 0,
    };

    type Header<'a> = (
        Option<&'a [u8]>,
        Option<&'a [u8]>,
        Option<&'a [u8]>,
        &'a [u8],
    );

    fn header<'a>(m: &Message<'a>) -> Header<'a> {
        (m.hostname, m.app_name, m.procid, m.msg())
    }

    fn bytes(s: &str) -> Option<&[u8]> {
        Some(s.as_bytes())
    }

    #[test]
    fn rfc3164_example_1() {
        let m = parse(
            b"<34>Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick on /dev/pts/8",
            &CTX,
        );
        assert_eq!(m.format, Format::Rfc3164);
        assert_eq!((m.facility(), m.severity()), (Some(4), Some(2)));
        let timestamp = m.timestamp.unwrap();
        assert_eq!(timestamp.text, b"Oct 11 22:14:15");
        assert_eq!(timestamp.kind, TimestampKind::Bsd);
        // Oct 11 is before Jun 15 + 31 days? No: after — so last year's.
        assert_eq!(timestamp.unix_ns, Some(1_697_062_455_000_000_000));
        assert_eq!(
            header(&m),
            (
                bytes("mymachine"),
                bytes("su"),
                None,
                &b"'su root' failed for lonvick on /dev/pts/8"[..]
            )
        );
        assert_eq!(m.msgid, None);
        assert!(m.defects.is_empty());
    }

    #[test]
    fn rfc3164_example_2_original_and_relayed() {
        // As the device sent it: no PRI, no timestamp — nothing to parse.
        let m = parse(b"Use the BFG!", &CTX);
        assert_eq!(m.format, Format::Unparsed);
        assert_eq!(m.defects, vec![Defect::PriMissing]);
        assert_eq!(m.msg(), b"Use the BFG!");
        // As the relay forwarded it.
        let m = parse(b"<13>Feb  5 17:32:18 10.0.0.99 Use the BFG!", &CTX);
        assert_eq!(m.format, Format::Rfc3164);
        assert_eq!(m.timestamp.unwrap().text, b"Feb  5 17:32:18");
        assert_eq!(
            m.timestamp.unwrap().unix_ns,
            Some(1_707_154_338_000_000_000)
        );
        assert_eq!(
            header(&m),
            (bytes("10.0.0.99"), None, None, &b"Use the BFG!"[..])
        );
        assert!(m.defects.is_empty());
    }

    #[test]
    fn rfc3164_example_3_odd_timestamp() {
        let raw = b"<165>Aug 24 05:34:00 CST 1987 mymachine myproc[10]: %% It's time to make the do-nuts.  %%  Ingredients: Mix=OK, Jelly=OK # Devices: Mixer=OK, Jelly_Injector=OK, Frier=OK # Transport: Conveyer1=OK, Conveyer2=OK # %%";
        let m = parse(raw, &CTX);
        assert_eq!(m.format, Format::Rfc3164);
        assert_eq!(m.timestamp.unwrap().text, b"Aug 24 05:34:00");
        // "CST" looks like a host name; "1987" is not a tag: the rest is MSG.
        assert_eq!(m.hostname, bytes("CST"));
        assert_eq!(m.app_name, None);
        assert!(
            m.msg()
                .starts_with(b"1987 mymachine myproc[10]: %% It's time")
        );
        assert!(m.defects.is_empty());
    }

    #[test]
    fn rfc3164_example_4_no_valid_timestamp() {
        let raw = b"<0>1990 Oct 22 10:52:01 TZ-6 scapegoat.dmz.example.org 10.1.2.3 sched[0]: That's All Folks!";
        let m = parse(raw, &CTX);
        assert_eq!(m.format, Format::Rfc3164);
        assert_eq!((m.facility(), m.severity()), (Some(0), Some(0)));
        assert_eq!(m.timestamp, None);
        assert_eq!(m.defects, vec![Defect::TimestampMissing]);
        assert_eq!(m.hostname, None);
        assert_eq!(m.msg(), &raw[3..]);
    }

    #[test]
    fn no_hostname_as_glibc_sends_it() {
        let m = parse(
            b"<86>Jun 15 11:59:59 sshd[1234]: Accepted publickey for root",
            &CTX,
        );
        assert_eq!(
            header(&m),
            (
                None,
                bytes("sshd"),
                bytes("1234"),
                &b"Accepted publickey for root"[..]
            )
        );
        let m = parse(
            b"<14>Jun 15 11:59:59 kernel: [ 0.000000] Linux version",
            &CTX,
        );
        assert_eq!(
            header(&m),
            (
                None,
                bytes("kernel"),
                None,
                &b"[ 0.000000] Linux version"[..]
            )
        );
        let m = parse(
            b"<22>Jun 15 11:59:59 postfix/smtpd[99]: connect from x",
            &CTX,
        );
        assert_eq!(
            header(&m),
            (
                None,
                bytes("postfix/smtpd"),
                bytes("99"),
                &b"connect from x"[..]
            )
        );
        assert!(m.defects.is_empty());
    }

    #[test]
    fn single_digit_day() {
        for raw in [
            &b"<13>Feb  5 17:32:18 host app: m"[..],
            b"<13>Feb 5 17:32:18 host app: m",
        ] {
            let m = parse(raw, &CTX);
            assert_eq!(
                m.timestamp.unwrap().unix_ns,
                Some(1_707_154_338_000_000_000),
                "{raw:?}"
            );
            assert_eq!(header(&m), (bytes("host"), bytes("app"), None, &b"m"[..]));
        }
    }

    #[test]
    fn missing_timestamp_with_a_tag() {
        let m = parse(b"<13>myprog[7]: hello", &CTX);
        assert_eq!(m.format, Format::Rfc3164);
        assert_eq!(m.defects, vec![Defect::TimestampMissing]);
        assert_eq!(
            header(&m),
            (None, bytes("myprog"), bytes("7"), &b"hello"[..])
        );
        let m = parse(b"<13>", &CTX);
        assert_eq!((m.format, m.msg()), (Format::Rfc3164, &b""[..]));
        assert_eq!(m.defects, vec![Defect::TimestampMissing]);
    }

    #[test]
    fn rfc3339_timestamp_as_rsyslog_sends_it() {
        let m = parse(
            b"<30>2024-06-15T13:59:58.123456+02:00 web1 nginx[42]: GET /",
            &CTX,
        );
        assert_eq!(m.format, Format::Rfc3164);
        let timestamp = m.timestamp.unwrap();
        assert_eq!(timestamp.kind, TimestampKind::Rfc3339);
        assert_eq!(timestamp.text, b"2024-06-15T13:59:58.123456+02:00");
        assert_eq!(timestamp.unix_ns, Some(1_718_452_798_123_456_000));
        assert_eq!(
            header(&m),
            (bytes("web1"), bytes("nginx"), bytes("42"), &b"GET /"[..])
        );
        assert!(m.defects.is_empty());
        let m = parse(b"<30>2024-13-15T13:59:58Z web1 x: y", &CTX);
        assert_eq!(m.defects, vec![Defect::TimestampInvalid]);
        assert_eq!(m.timestamp.unwrap().unix_ns, None);
        assert_eq!(header(&m), (bytes("web1"), bytes("x"), None, &b"y"[..]));
    }

    #[test]
    fn fraction_year_and_invalid_dates() {
        let m = parse(b"<13>Oct 11 2003 22:14:15 host app: m", &CTX);
        assert_eq!(m.timestamp.unwrap().kind, TimestampKind::BsdWithYear);
        assert_eq!(
            m.timestamp.unwrap().unix_ns,
            Some(1_065_910_455_000_000_000)
        );
        assert_eq!(header(&m), (bytes("host"), bytes("app"), None, &b"m"[..]));
        let m = parse(b"<13>Jun 15 11:00:00.250 host m", &CTX);
        assert_eq!(
            m.timestamp.unwrap().unix_ns,
            Some(1_718_449_200_250_000_000)
        );
        assert_eq!(header(&m), (bytes("host"), None, None, &b"m"[..]));
        let m = parse(b"<13>Feb 30 11:00:00 host app: m", &CTX);
        assert_eq!(m.defects, vec![Defect::TimestampInvalid]);
        assert_eq!(m.timestamp.unwrap().text, b"Feb 30 11:00:00");
        assert_eq!(header(&m), (bytes("host"), bytes("app"), None, &b"m"[..]));
    }

    #[test]
    fn without_pri_but_with_timestamp() {
        let m = parse(b"Oct 11 22:14:15 mymachine su: hi", &CTX);
        assert_eq!(m.format, Format::Rfc3164);
        assert_eq!(m.pri, None);
        assert_eq!(m.defects, vec![Defect::PriMissing]);
        assert_eq!(
            header(&m),
            (bytes("mymachine"), bytes("su"), None, &b"hi"[..])
        );
    }

    #[test]
    fn hostnames_and_tags() {
        let m = parse(b"<13>Jun 15 11:00:00 fe80::1%eth0 app[x y]: m", &CTX);
        // "app[x y]:" is not a tag (a space inside the brackets).
        assert_eq!(
            header(&m),
            (bytes("fe80::1%eth0"), None, None, &b"app[x y]: m"[..])
        );
        let m = parse(b"<13>Jun 15 11:00:00 host http://example.org/", &CTX);
        assert_eq!(
            header(&m),
            (bytes("host"), None, None, &b"http://example.org/"[..])
        );
        let m = parse(b"<13>Jun 15 11:00:00 host app[]: m", &CTX);
        assert_eq!(header(&m), (bytes("host"), bytes("app"), None, &b"m"[..]));
        let m = parse(b"<13>Jun 15 11:00:00 host app[1] m", &CTX);
        assert_eq!(
            header(&m),
            (bytes("host"), bytes("app"), bytes("1"), &b"m"[..])
        );
        let m = parse(b"<13>Jun 15 11:00:00 host app[1]", &CTX);
        assert_eq!(
            header(&m),
            (bytes("host"), bytes("app"), bytes("1"), &b""[..])
        );
        let m = parse(b"<13>Jun 15 11:00:00 host app:", &CTX);
        assert_eq!(header(&m), (bytes("host"), bytes("app"), None, &b""[..]));
        let m = parse(b"<13>Jun 15 11:00:00 host app:  two spaces", &CTX);
        assert_eq!(
            header(&m),
            (bytes("host"), bytes("app"), None, &b" two spaces"[..])
        );
        // A lone token at the end is MSG, not a host name.
        let m = parse(b"<13>Jun 15 11:00:00 lonely", &CTX);
        assert_eq!(header(&m), (None, None, None, &b"lonely"[..]));
        let m = parse(b"<13>Jun 15 11:00:00", &CTX);
        assert_eq!(header(&m), (None, None, None, &b""[..]));
        assert!(m.defects.is_empty());
        let m = parse(b"<13>Jun 15 11:00:00 'quoted' text", &CTX);
        assert_eq!(header(&m), (None, None, None, &b"'quoted' text"[..]));
        let m = parse(b"<13>Jun 15 11:00:00 h\xffst app: m", &CTX);
        assert_eq!(header(&m), (None, None, None, &b"h\xffst app: m"[..]));
    }
}
