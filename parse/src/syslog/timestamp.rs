//! Syslog timestamps: RFC 3339 (RFC 5424's `TIMESTAMP`, and what rsyslog's
//! RFC 3339 templates put into BSD-style messages) and the BSD
//! `Mmm dd hh:mm:ss` of RFC 3164, which has neither year nor zone — both come
//! from the [`Context`] (see the year rule in the [module docs](super)).
//!
//! Dates are proleptic Gregorian, converted with Howard Hinnant's
//! `days_from_civil`; no calendar crate is needed for this much.

use super::Context;

const NS_PER_SEC: i64 = 1_000_000_000;
const SECS_PER_DAY: i64 = 86_400;

/// How far (31 days) a BSD timestamp may lie after the receive time when its
/// year is inferred.
pub const YEAR_INFERENCE_FUTURE_TOLERANCE_SECS: i64 = 31 * SECS_PER_DAY;

/// A message's timestamp: the text as received, and the instant when it
/// could be computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timestamp<'a> {
    /// The timestamp byte for byte as received (for a BSD timestamp with a
    /// space-padded day, the padding included: `Feb  5 17:32:18`).
    pub text: &'a [u8],
    /// Which syntax it was written in.
    pub kind: TimestampKind,
    /// The instant in ns since the Unix epoch, UTC. `None` when the text is
    /// not a valid date and time (the message then has
    /// [`Defect::TimestampInvalid`](super::Defect::TimestampInvalid)) or when
    /// it is valid but outside what an `i64` of ns holds (before 1677-09-21
    /// or after 2262-04-11; no defect).
    pub unix_ns: Option<i64>,
}

/// The syntax of a [`Timestamp`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampKind {
    /// `2003-10-11T22:14:15.003Z`: date, time and zone all stated.
    Rfc3339,
    /// `Oct 11 22:14:15` (optionally with a fraction of a second): the year
    /// is inferred from the receive time and the zone is the context's
    /// local UTC offset.
    Bsd,
    /// `Oct 11 2003 22:14:15`: a BSD timestamp with a year (as some network
    /// devices send); the zone is the context's local UTC offset.
    BsdWithYear,
}

/// The outcome of converting a date and time to an instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Instant {
    At(i64),
    /// A valid date and time that an `i64` of ns cannot hold.
    OutOfRange,
    /// Not a valid date and time (month 13, Feb 30, hour 24, …).
    Invalid,
}

/// Parses an RFC 3339 timestamp that is the whole of `text`. The flag is
/// false when the text is not a valid RFC 3339 date and time (the caller
/// records the defect); the timestamp keeps the text either way.
///
/// Accepted: `YYYY-MM-DDTHH:MM:SS[.F…](Z|±HH:MM)`, with `t`/`z` in either
/// case, any number of fraction digits (beyond 9 ignored: ns precision),
/// and `±HHMM` as well as `±HH:MM`. Not accepted: a missing zone, a space
/// instead of `T`, leap second 60 (RFC 5424 forbids it).
pub(super) fn rfc3339(text: &[u8]) -> (Timestamp<'_>, bool) {
    let instant = rfc3339_instant(text).unwrap_or(Instant::Invalid);
    let timestamp = Timestamp {
        text,
        kind: TimestampKind::Rfc3339,
        unix_ns: match instant {
            Instant::At(ns) => Some(ns),
            Instant::OutOfRange | Instant::Invalid => None,
        },
    };
    (timestamp, instant != Instant::Invalid)
}

/// Whether `token` is shaped like an RFC 3339 timestamp (`dddd-dd-ddT`), so
/// that an RFC 3164 message is taken to have one even if its values are
/// invalid.
pub(super) fn looks_like_rfc3339(token: &[u8]) -> bool {
    token.len() >= 11
        && digits(token, 0, 4).is_some()
        && token[4] == b'-'
        && digits(token, 5, 2).is_some()
        && token[7] == b'-'
        && digits(token, 8, 2).is_some()
        && matches!(token[10], b'T' | b't')
}

fn rfc3339_instant(t: &[u8]) -> Option<Instant> {
    if !looks_like_rfc3339(t) {
        return None;
    }
    let year = i64::from(digits(t, 0, 4)?);
    let month = digits(t, 5, 2)?;
    let day = digits(t, 8, 2)?;
    let hour = digits(t, 11, 2)?;
    let minute = digits(t, 14, 2)?;
    let second = digits(t, 17, 2)?;
    if t.get(13) != Some(&b':') || t.get(16) != Some(&b':') {
        return None;
    }
    let mut i = 19;
    let mut nanos = 0;
    if t.get(i) == Some(&b'.') {
        let (n, len) = fraction(t.get(i + 1..)?)?;
        nanos = n;
        i += 1 + len;
    }
    let offset_secs = match t.get(i)? {
        b'Z' | b'z' => {
            i += 1;
            0
        }
        &sign @ (b'+' | b'-') => {
            let hours = digits(t, i + 1, 2)?;
            i += 3;
            if t.get(i) == Some(&b':') {
                i += 1;
            }
            let minutes = digits(t, i, 2)?;
            i += 2;
            if hours > 23 || minutes > 59 {
                return Some(Instant::Invalid);
            }
            let secs = i64::from(hours * 3600 + minutes * 60);
            if sign == b'-' { -secs } else { secs }
        }
        _ => return None,
    };
    if i != t.len() {
        return None;
    }
    if !valid_date_time(year, month, day, hour, minute, second) {
        return Some(Instant::Invalid);
    }
    let local_secs = civil_secs(year, month, day, hour, minute, second);
    Some(to_unix_ns(local_secs - offset_secs, nanos))
}

/// A BSD timestamp recognised by its shape at the start of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct BsdShape {
    month: u32,
    day: u32,
    year: Option<i64>,
    hour: u32,
    minute: u32,
    second: u32,
    nanos: u32,
    /// The bytes the timestamp takes (not the space after it).
    len: usize,
}

/// Recognises a BSD timestamp at the start of `rest` by its shape:
/// `Mmm` (English month abbreviation, any case), a space, the day as `dd`,
/// ` d` (space-padded, as RFC 3164 asks) or `d` (the common deviation), a
/// space, optionally a 4-digit year and a space, `hh:mm:ss`, optionally `.`
/// and a fraction; then a space or the end. Values are checked later (an
/// out-of-range value gives a timestamp without an instant, not "no
/// timestamp").
pub(super) fn bsd_shape(rest: &[u8]) -> Option<BsdShape> {
    let month = month_number(rest.get(..3)?)?;
    if rest.get(3) != Some(&b' ') {
        return None;
    }
    let (day, mut i) = match (rest.get(4)?, rest.get(5)) {
        (b' ', Some(d)) if d.is_ascii_digit() => (u32::from(d - b'0'), 6),
        (d1, Some(d2)) if d1.is_ascii_digit() && d2.is_ascii_digit() => {
            (u32::from(d1 - b'0') * 10 + u32::from(d2 - b'0'), 6)
        }
        (d, _) if d.is_ascii_digit() => (u32::from(d - b'0'), 5),
        _ => return None,
    };
    if rest.get(i) != Some(&b' ') {
        return None;
    }
    i += 1;
    let mut year = None;
    if let Some(y) = digits(rest, i, 4)
        && rest.get(i + 4) == Some(&b' ')
    {
        year = Some(i64::from(y));
        i += 5;
    }
    let hour = digits(rest, i, 2)?;
    let minute = digits(rest, i + 3, 2)?;
    let second = digits(rest, i + 6, 2)?;
    if rest.get(i + 2) != Some(&b':') || rest.get(i + 5) != Some(&b':') {
        return None;
    }
    i += 8;
    let mut nanos = 0;
    if rest.get(i) == Some(&b'.')
        && let Some((n, len)) = rest.get(i + 1..).and_then(fraction)
    {
        nanos = n;
        i += 1 + len;
    }
    match rest.get(i) {
        None | Some(b' ') => Some(BsdShape {
            month,
            day,
            year,
            hour,
            minute,
            second,
            nanos,
            len: i,
        }),
        Some(_) => None,
    }
}

/// Converts a recognised BSD timestamp (the start of `rest`) to a
/// [`Timestamp`]; the flag is false when its values are invalid.
pub(super) fn bsd<'a>(rest: &'a [u8], shape: &BsdShape, ctx: &Context) -> (Timestamp<'a>, bool) {
    let (kind, instant) = match shape.year {
        Some(year) => (TimestampKind::BsdWithYear, bsd_instant(shape, year, ctx)),
        None => (
            TimestampKind::Bsd,
            match infer_year(shape, ctx) {
                Some(year) => bsd_instant(shape, year, ctx),
                None => Instant::Invalid,
            },
        ),
    };
    let timestamp = Timestamp {
        text: &rest[..shape.len],
        kind,
        unix_ns: match instant {
            Instant::At(ns) => Some(ns),
            Instant::OutOfRange | Instant::Invalid => None,
        },
    };
    (timestamp, instant != Instant::Invalid)
}

fn bsd_instant(s: &BsdShape, year: i64, ctx: &Context) -> Instant {
    if !valid_date_time(year, s.month, s.day, s.hour, s.minute, s.second) {
        return Instant::Invalid;
    }
    let local_secs = civil_secs(year, s.month, s.day, s.hour, s.minute, s.second);
    to_unix_ns(local_secs - i64::from(ctx.local_utc_offset_secs), s.nanos)
}

/// The year of a BSD timestamp: the latest year, from the receive year + 1
/// down, in which the date exists and the timestamp (in local time) is at
/// most [`YEAR_INFERENCE_FUTURE_TOLERANCE_SECS`] after the receive time
/// (in local time). `None` when the day or time is out of range.
fn infer_year(s: &BsdShape, ctx: &Context) -> Option<i64> {
    if !(1..=31).contains(&s.day) || s.hour > 23 || s.minute > 59 || s.second > 59 {
        return None;
    }
    let now_local =
        ctx.received_unix_ns.div_euclid(NS_PER_SEC) + i64::from(ctx.local_utc_offset_secs);
    let limit = now_local + YEAR_INFERENCE_FUTURE_TOLERANCE_SECS;
    let this_year = year_of_days(now_local.div_euclid(SECS_PER_DAY));
    // Feb 29 may need the search to go back up to 8 years (1896 → 1904).
    (this_year - 8..=this_year + 1).rev().find(|&year| {
        s.day <= days_in_month(year, s.month)
            && civil_secs(year, s.month, s.day, s.hour, s.minute, s.second) <= limit
    })
}

fn month_number(name: &[u8]) -> Option<u32> {
    const MONTHS: [&[u8; 3]; 12] = [
        b"jan", b"feb", b"mar", b"apr", b"may", b"jun", b"jul", b"aug", b"sep", b"oct", b"nov",
        b"dec",
    ];
    let index = MONTHS
        .iter()
        .position(|m| name.eq_ignore_ascii_case(&m[..]))?;
    u32::try_from(index + 1).ok()
}

/// Exactly `count` ASCII digits at `t[at..]`, as a number.
fn digits(t: &[u8], at: usize, count: usize) -> Option<u32> {
    let slice = t.get(at..at.checked_add(count)?)?;
    slice.iter().try_fold(0u32, |n, &b| {
        b.is_ascii_digit().then(|| n * 10 + u32::from(b - b'0'))
    })
}

/// The digits of a fraction of a second at the start of `t` (at least
/// one): the value in ns (digits beyond the ninth ignored) and how many
/// digits there were.
fn fraction(t: &[u8]) -> Option<(u32, usize)> {
    let count = t.iter().take_while(|b| b.is_ascii_digit()).count();
    if count == 0 {
        return None;
    }
    let mut nanos = 0u32;
    for position in 0..9 {
        let digit = t
            .get(position)
            .filter(|_| position < count)
            .map_or(0, |b| b - b'0');
        nanos = nanos * 10 + u32::from(digit);
    }
    Some((nanos, count))
}

fn to_unix_ns(unix_secs: i64, nanos: u32) -> Instant {
    unix_secs
        .checked_mul(NS_PER_SEC)
        .and_then(|ns| ns.checked_add(i64::from(nanos)))
        .map_or(Instant::OutOfRange, Instant::At)
}

fn valid_date_time(year: i64, month: u32, day: u32, hour: u32, minute: u32, second: u32) -> bool {
    (1..=12).contains(&month)
        && day >= 1
        && day <= days_in_month(year, month)
        && hour <= 23
        && minute <= 59
        && second <= 59
}

fn is_leap_year(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

/// Days in `month` (1–12) of `year`; 0 for a month out of range.
fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap_year(year) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Seconds since 1970-01-01T00:00:00 of a (valid) civil date and time,
/// without any zone.
fn civil_secs(year: i64, month: u32, day: u32, hour: u32, minute: u32, second: u32) -> i64 {
    days_from_civil(year, month, day) * SECS_PER_DAY + i64::from(hour * 3600 + minute * 60 + second)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = i64::from((month + 9) % 12);
    let day_of_year = (153 * month_from_march + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The year of the day `days` after 1970-01-01 (Hinnant's
/// `civil_from_days`, year only).
fn year_of_days(days: i64) -> i64 {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    // March-based years: January and February belong to the next one.
    year_of_era + era * 400 + i64::from(month_from_march >= 10)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: i64 = NS_PER_SEC;

    fn ctx_at(unix_secs: i64, offset: i32) -> Context {
        Context {
            received_unix_ns: unix_secs * SEC,
            local_utc_offset_secs: offset,
        }
    }

    fn bsd_ns(text: &str, ctx: &Context) -> Option<i64> {
        let shape = bsd_shape(text.as_bytes()).expect("BSD shape");
        let (timestamp, valid) = bsd(text.as_bytes(), &shape, ctx);
        assert_eq!(valid, timestamp.unix_ns.is_some(), "{text}");
        timestamp.unix_ns
    }

    #[test]
    fn civil_dates_round_trip_and_match_known_days() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
        assert_eq!(days_from_civil(2024, 2, 29), 19_782);
        for days in -800_000..800_000 {
            let year = year_of_days(days);
            assert!(days_from_civil(year, 1, 1) <= days, "{days}");
            assert!(days_from_civil(year + 1, 1, 1) > days, "{days}");
        }
    }

    #[test]
    fn rfc3339_instants() {
        let at = |s: &str| rfc3339(s.as_bytes()).0.unix_ns;
        // `date -u -d 2003-10-11T22:14:15Z +%s` = 1065910455
        assert_eq!(
            at("2003-10-11T22:14:15.003Z"),
            Some(1_065_910_455_003_000_000)
        );
        assert_eq!(at("2003-10-11t22:14:15z"), Some(1_065_910_455 * SEC));
        assert_eq!(
            at("2003-08-24T05:14:15.000003-07:00"),
            Some((1_061_702_055 + 7 * 3600) * SEC + 3_000)
        );
        assert_eq!(at("1970-01-01T01:00:00+0100"), Some(0));
        assert_eq!(at("1970-01-01T00:00:00.123456789123Z"), Some(123_456_789));
        assert_eq!(at("1969-12-31T23:59:59.5Z"), Some(-SEC / 2));
        // Valid but beyond i64 ns: no instant, yet no defect.
        assert_eq!(
            rfc3339(b"9999-12-31T23:59:59Z"),
            (
                Timestamp {
                    text: b"9999-12-31T23:59:59Z",
                    kind: TimestampKind::Rfc3339,
                    unix_ns: None
                },
                true
            )
        );
        for bad in [
            "2003-13-11T22:14:15Z",
            "2003-02-29T22:14:15Z",
            "2003-10-11T24:14:15Z",
            "2003-10-11T22:60:15Z",
            "2003-10-11T22:14:60Z",
            "2003-10-11T22:14:15",
            "2003-10-11T22:14:15.Z",
            "2003-10-11T22:14:15+25:00",
            "2003-10-11T22:14:15+01:0",
            "2003-10-11T22:14:15Zjunk",
            "2003-10-11 22:14:15Z",
            "2003-1-11T22:14:15Z",
            "",
            "-",
        ] {
            assert!(!rfc3339(bad.as_bytes()).1, "{bad}");
        }
        assert!(rfc3339(b"2004-02-29T00:00:00Z").1);
    }

    #[test]
    fn bsd_shapes() {
        let len = |s: &str| bsd_shape(s.as_bytes()).map(|shape| shape.len);
        assert_eq!(len("Oct 11 22:14:15 host"), Some(15));
        assert_eq!(len("Feb  5 17:32:18 host"), Some(15));
        assert_eq!(len("Feb 5 17:32:18 host"), Some(14));
        assert_eq!(len("feb 05 17:32:18"), Some(15));
        assert_eq!(len("Oct 11 22:14:15.123 host"), Some(19));
        assert_eq!(len("Oct 11 2003 22:14:15 host"), Some(20));
        assert_eq!(len("Oct 11 22:14:15x"), None);
        assert_eq!(len("Oct 11 22:14"), None);
        assert_eq!(len("Okt 11 22:14:15"), None);
        assert_eq!(len("Oct  11 22:14:15"), None);
        assert_eq!(len("1990 Oct 22 10:52:01"), None);
        assert_eq!(len(""), None);
    }

    #[test]
    fn bsd_year_is_the_receive_year_for_past_dates() {
        // Received 2024-06-15T12:00:00Z; message from Mar 1 → 2024.
        let ctx = ctx_at(1_718_452_800, 0);
        assert_eq!(bsd_ns("Mar  1 00:00:00", &ctx), Some(1_709_251_200 * SEC));
        // A month ahead at most still counts as this year (clock skew).
        assert_eq!(bsd_ns("Jul 10 00:00:00", &ctx), Some(1_720_569_600 * SEC));
        // More than 31 days ahead: last year's.
        assert_eq!(bsd_ns("Aug 20 00:00:00", &ctx), Some(1_692_489_600 * SEC));
    }

    #[test]
    fn bsd_year_rolls_back_over_new_year() {
        // Received 2025-01-01T00:00:05Z; "Dec 31 23:59:59" is 2024's.
        let ctx = ctx_at(1_735_689_605, 0);
        assert_eq!(bsd_ns("Dec 31 23:59:59", &ctx), Some(1_735_689_599 * SEC));
    }

    #[test]
    fn bsd_year_rolls_forward_over_new_year() {
        // Received 2024-12-31T23:59:58Z from a sender a few seconds ahead:
        // "Jan  1 00:00:03" is 2025's, not eleven months ago.
        let ctx = ctx_at(1_735_689_598, 0);
        assert_eq!(bsd_ns("Jan  1 00:00:03", &ctx), Some(1_735_689_603 * SEC));
    }

    #[test]
    fn bsd_year_rule_uses_local_time() {
        // 2024-12-31T23:30:00Z is already 2025-01-01T00:30 at UTC+1: a
        // "Dec 31 23:45:00" there is 2024-12-31T22:45:00Z.
        let ctx = ctx_at(1_735_687_800, 3600);
        assert_eq!(bsd_ns("Dec 31 23:45:00", &ctx), Some(1_735_685_100 * SEC));
        // And the offset applies to the instant: 12:00 at UTC-5 is 17:00Z.
        let ctx = ctx_at(1_718_452_800, -5 * 3600);
        assert_eq!(
            bsd_ns("Jun 15 12:00:00", &ctx),
            Some((1_718_452_800 + 5 * 3600) * SEC)
        );
    }

    #[test]
    fn bsd_feb_29_goes_back_to_the_last_leap_year() {
        // Received 2025-06-15: Feb 29 is 2024's.
        let ctx = ctx_at(1_749_988_800, 0);
        assert_eq!(bsd_ns("Feb 29 12:00:00", &ctx), Some(1_709_208_000 * SEC));
    }

    #[test]
    fn bsd_invalid_values_and_explicit_years() {
        let ctx = ctx_at(1_718_452_800, 0);
        assert_eq!(bsd_ns("Feb 30 12:00:00", &ctx), None);
        assert_eq!(bsd_ns("Oct 00 12:00:00", &ctx), None);
        assert_eq!(bsd_ns("Oct 11 24:00:00", &ctx), None);
        assert_eq!(
            bsd_ns("Oct 11 2003 22:14:15", &ctx),
            Some(1_065_910_455 * SEC)
        );
        assert_eq!(bsd_ns("Feb 29 2023 22:14:15", &ctx), None);
        assert_eq!(
            bsd_ns("Oct 11 2003 22:14:15.25", &ctx),
            Some(1_065_910_455 * SEC + SEC / 4)
        );
        // Extreme receive times do not overflow.
        for received in [i64::MIN, i64::MAX] {
            let ctx = Context {
                received_unix_ns: received,
                local_utc_offset_secs: i32::MAX,
            };
            let text = b"Dec 31 23:59:59";
            let (timestamp, valid) = bsd(text, &bsd_shape(text).unwrap(), &ctx);
            assert!(valid);
            assert_eq!(timestamp.text, text);
        }
    }
}
