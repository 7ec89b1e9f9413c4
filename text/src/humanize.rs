//! Sizes and durations written the way people write them: `"128MiB"`,
//! `"64 KB"`, `"1GiB"`, `"4096"`; `"5ms"`, `"15m"`, `"1h30m"`, `"1d"`.

use std::time::Duration;

/// Parses a byte size. Binary (`KiB`, `MiB`, `GiB`, `TiB`) and decimal
/// (`kB`/`KB`, `MB`, `GB`, `TB`) suffixes; a bare number is bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        return Err(format!(
            "invalid size {s:?}: expected a number with a unit such as \"128MiB\""
        ));
    }
    let n: u64 = num.parse().map_err(|_| format!("invalid size {s:?}"))?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        "kB" | "KB" | "k" | "K" => 1_000,
        "MB" | "M" => 1_000_000,
        "GB" | "G" => 1_000_000_000,
        "TB" | "T" => 1_000_000_000_000,
        u => {
            return Err(format!(
                "invalid size unit {u:?} in {s:?} (use B, KiB, MiB, GiB, TiB, kB, MB, GB or TB)"
            ));
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("size {s:?} is too large"))
}

/// Formats a byte size for people: `"512 B"`, `"3.0 KiB"`, `"1.5 GiB"`.
pub fn format_size(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// Parses a duration: one or more `<number><unit>` with units `ns`, `us`,
/// `ms`, `s`, `m`, `h`, `d`, `w`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("empty duration".into());
    }
    let mut total: u128 = 0;
    let mut rest = t;
    while !rest.is_empty() {
        let split = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if split == 0 {
            return Err(format!(
                "invalid duration {s:?}: expected e.g. \"5s\", \"15m\", \"1h30m\""
            ));
        }
        let n: u128 = rest[..split]
            .parse()
            .map_err(|_| format!("invalid duration {s:?}"))?;
        rest = &rest[split..];
        let ulen = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit_ns: u128 = match rest[..ulen].trim() {
            "ns" => 1,
            "us" | "µs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" | "min" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "d" => 86_400_000_000_000,
            "w" => 604_800_000_000_000,
            "" => return Err(format!("duration {s:?} needs a unit (ms, s, m, h, d)")),
            u => {
                return Err(format!(
                    "invalid duration unit {u:?} in {s:?} (use ms, s, m, h, d)"
                ));
            }
        };
        rest = &rest[ulen..];
        total = total
            .checked_add(n.checked_mul(unit_ns).ok_or("duration too large")?)
            .ok_or("duration too large")?;
    }
    let total = u64::try_from(total).map_err(|_| format!("duration {s:?} is too large"))?;
    Ok(Duration::from_nanos(total))
}

/// A duration for people, in its two largest units: `45s`, `10m 5s`,
/// `3h 2m`, `2d 4h`.
pub fn format_duration(d: Duration) -> String {
    let s = d.as_secs();
    let units = [(86_400, "d"), (3_600, "h"), (60, "m"), (1, "s")];
    let Some(i) = units.iter().position(|(n, _)| s >= *n) else {
        return format!("{}ms", d.as_millis());
    };
    let (big, bu) = units[i];
    let mut out = format!("{}{bu}", s / big);
    if let Some((small, su)) = units.get(i + 1) {
        let rest = s % big / small;
        if rest > 0 {
            out.push_str(&format!(" {rest}{su}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_formatted_for_people() {
        let f = |s| format_duration(Duration::from_secs(s));
        assert_eq!(f(45), "45s");
        assert_eq!(f(605), "10m 5s");
        assert_eq!(f(600), "10m");
        assert_eq!(f(3 * 3600 + 150), "3h 2m");
        assert_eq!(f(2 * 86_400 + 4 * 3600 + 59), "2d 4h");
        assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
    }

    #[test]
    fn sizes_are_formatted_for_people() {
        assert_eq!(format_size(0), "0 B");
        assert_eq!(format_size(1023), "1023 B");
        assert_eq!(format_size(1536), "1.5 KiB");
        assert_eq!(format_size(4 << 30), "4.0 GiB");
        assert_eq!(format_size(3 << 40), "3.0 TiB");
        assert_eq!(format_size(5000 << 40), "5000.0 TiB");
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("128MiB").unwrap(), 128 << 20);
        assert_eq!(parse_size("64 KB").unwrap(), 64_000);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert!(parse_size("12XB").is_err());
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("99999999999TiB").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5ms").unwrap(), Duration::from_millis(5));
        assert_eq!(parse_duration("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("1d").unwrap(), Duration::from_secs(86400));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("").is_err());
    }
}
