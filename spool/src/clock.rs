//! Clocks: wall time, the never-stepping boot-time clock, and the boot id.

use std::time::{SystemTime, UNIX_EPOCH};

/// Wall-clock time in nanoseconds since the Unix epoch (UTC).
pub fn wall_ns() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_nanos()).unwrap_or(i64::MAX),
    }
}

/// `CLOCK_BOOTTIME` in nanoseconds: monotonic, counts suspend, never steps.
pub fn boottime_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
    (t.tv_sec as u64).saturating_mul(1_000_000_000) + t.tv_nsec as u64
}

/// The kernel's boot id as 16 bytes (all zero if it cannot be read).
pub fn boot_id() -> [u8; 16] {
    let mut out = [0u8; 16];
    if let Ok(s) = std::fs::read_to_string("/proc/sys/kernel/random/boot_id") {
        let digits: Vec<u8> = s
            .bytes()
            .filter_map(|c| (c as char).to_digit(16).map(|d| d as u8))
            .collect();
        if digits.len() == 32 {
            for (i, pair) in digits.chunks(2).enumerate() {
                out[i] = pair[0] << 4 | pair[1];
            }
        }
    }
    out
}

/// Formats a timestamp as RFC 3339 in UTC with nanoseconds,
/// e.g. `2026-11-26T06:49:26.123456789Z`.
pub fn rfc3339(ts_ns: i64) -> String {
    let secs = ts_ns.div_euclid(1_000_000_000);
    let nanos = ts_ns.rem_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    )
}

/// Parses RFC 3339 (`2026-11-26T07:09:26Z`, `…26.5+01:00`; `t` and a
/// space also separate date and time, `z` is `Z`) into ns since the epoch.
pub fn parse_rfc3339(s: &str) -> Result<i64, String> {
    let bad = || format!("{s:?} is not an RFC 3339 time such as 2026-11-26T07:09:26Z");
    let b = s.trim().as_bytes();
    let num = |r: std::ops::Range<usize>| -> Result<i64, String> {
        let t = b.get(r).ok_or_else(bad)?;
        if t.is_empty() || !t.iter().all(u8::is_ascii_digit) {
            return Err(bad());
        }
        std::str::from_utf8(t)
            .map_err(|_| bad())?
            .parse()
            .map_err(|_| bad())
    };
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !b"Tt ".contains(&b[10])
        || b[13] != b':'
        || b[16] != b':'
    {
        return Err(bad());
    }
    let (y, mo, d, h, mi, sec) = (
        num(0..4)?,
        num(5..7)?,
        num(8..10)?,
        num(11..13)?,
        num(14..16)?,
        num(17..19)?,
    );
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return Err(bad());
    }
    let mut i = 19;
    let mut nanos = 0i64;
    if b[i] == b'.' {
        let start = i + 1;
        i = start;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let digits = &b[start..i];
        if digits.is_empty() || digits.len() > 9 {
            return Err(bad());
        }
        nanos = num(start..i)? * 10i64.pow(9 - digits.len() as u32);
    }
    let offset = match &b[i..] {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let v = num(i + 1..i + 3)? * 3600 + num(i + 4..i + 6)? * 60;
            if *sign == b'+' { v } else { -v }
        }
        _ => return Err(bad()),
    };
    let days = days_from_civil(y, mo as u32, d as u32);
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec - offset;
    secs.checked_mul(1_000_000_000)
        .and_then(|n| n.checked_add(nanos))
        .ok_or_else(bad)
}

/// (year, month, day) to days since 1970-01-01 (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_known_values() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            rfc3339(951_782_400_000_000_001),
            "2000-02-29T00:00:00.000000001Z"
        );
        assert_eq!(
            rfc3339(1_795_676_966_500_000_000),
            "2026-11-26T07:09:26.500000000Z"
        );
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59.999999999Z");
        for ns in [0, 951_782_400_000_000_001, 1_795_676_966_500_000_000, -1] {
            assert_eq!(parse_rfc3339(&rfc3339(ns)).unwrap(), ns);
        }
        assert_eq!(
            parse_rfc3339("2026-11-26T08:09:26.5+01:00").unwrap(),
            1_795_676_966_500_000_000
        );
        for bad in [
            "2026-11-26",
            "2026-13-01T00:00:00Z",
            "2026-11-26T07:09:26",
            "x",
        ] {
            assert!(parse_rfc3339(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn clocks_read() {
        assert!(boottime_ns() > 0);
        assert!(wall_ns() > 1_700_000_000_000_000_000);
        assert_ne!(boot_id(), [0u8; 16]);
    }
}
