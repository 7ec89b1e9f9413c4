//! The local offset from UTC, which RFC 3164 timestamps leave out: read from
//! `date +%z` (the system's zone rules, without linking a time-zone
//! library), and read again every hour so that a daylight-saving change is
//! followed.

use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const REFRESH: Duration = Duration::from_secs(3600);

#[derive(Debug)]
pub struct LocalOffset {
    state: Mutex<(i32, Instant)>,
}

impl LocalOffset {
    pub fn new() -> LocalOffset {
        LocalOffset {
            state: Mutex::new((read(), Instant::now())),
        }
    }

    /// Seconds east of UTC.
    pub fn secs(&self) -> i32 {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if s.1.elapsed() >= REFRESH {
            *s = (read(), Instant::now());
        }
        s.0
    }
}

fn read() -> i32 {
    Command::new("date")
        .arg("+%z")
        .output()
        .ok()
        .and_then(|o| parse(String::from_utf8_lossy(&o.stdout).trim()))
        .unwrap_or(0)
}

/// `+0100`, `-0530` → seconds east of UTC.
fn parse(s: &str) -> Option<i32> {
    let (sign, digits) = match s.as_bytes().first()? {
        b'+' => (1, &s[1..]),
        b'-' => (-1, &s[1..]),
        _ => return None,
    };
    if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let h: i32 = digits[..2].parse().ok()?;
    let m: i32 = digits[2..].parse().ok()?;
    Some(sign * (h * 3600 + m * 60))
}

#[cfg(test)]
mod tests {
    #[test]
    fn offsets_are_read() {
        assert_eq!(super::parse("+0100"), Some(3600));
        assert_eq!(super::parse("-0530"), Some(-19800));
        assert_eq!(super::parse("+0000"), Some(0));
        assert_eq!(super::parse("0100"), None);
        assert_eq!(super::parse("+1"), None);
    }
}
