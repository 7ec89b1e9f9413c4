//! The `journalctl` command lines, and why they are what they are.
//!
//! What journalctl does with these options (its source,
//! src/journal/journalctl.c and, from v256, journalctl-show.c):
//!
//! * `--follow` implies `--boot` (only the current boot; with `--directory`
//!   or `--file`, the newest boot in those files) since v250, unless
//!   `--merge` is given (v254; v250–v253 refuse `--follow --merge` unless
//!   patched) or a boot is named. `--boot=all` lifts it only from v256; in
//!   v252–v255 `--follow` sets it again. `--merge` also changes what the
//!   system journal is (every machine's files, e.g. /var/log/journal/remote),
//!   so it is not used. Without `--follow` no boot is implied, in any
//!   version.
//! * `--cursor=C` seeks to C and shows from the first entry at or after it
//!   that passes the filters: C itself if it is still there and passes
//!   them. `--after-cursor` is not used: before v255 it skips the first
//!   entry that passes the filters even when that is not C's (C vacuumed, or
//!   of a boot the filter leaves out), losing one entry.
//! * `--lines`: with `--follow` it defaults to 10 (the tail of what the
//!   start selects), so `--lines=all`; without `--follow` all is the
//!   default, said explicitly all the same.
//! * JSON output (and `--quiet`) leaves out the `-- Boot … --` lines
//!   journalctl prints between boots.
//!
//! So a source reads in two steps: without `--follow` from where it stands
//! to the end of the journal, every boot (after a reboot: the rest of the
//! earlier boots, the shutdown included), then with `--follow` from the last
//! entry read, the current boot as it is written.

use crate::config::JournaldSourceConfig;
use std::process::{Command, Stdio};

/// What one `journalctl` run is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Without `--follow`: every entry from the start to the end of the
    /// journal, whatever its boot; journalctl exits at the end.
    CatchUp,
    /// With `--follow`: the entries of the current boot as they come.
    Follow,
}

/// Where a `journalctl` run starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// At this entry (shown again, and skipped if it is still there).
    Cursor(String),
    /// At the beginning of the journal.
    Beginning,
    /// At entries from this time on (µs since the epoch): `read_from =
    /// "end"` before any entry was read.
    Since(u64),
}

/// The `journalctl` of `cfg` for one run.
pub fn journalctl(cfg: &JournaldSourceConfig, phase: Phase, start: &Start) -> Command {
    let mut c = Command::new(&cfg.journalctl);
    if phase == Phase::Follow {
        c.arg("--follow");
    }
    c.args(args(cfg, start));
    c.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

/// The arguments both phases share.
fn args(cfg: &JournaldSourceConfig, start: &Start) -> Vec<String> {
    let mut a: Vec<String> = [
        "--lines=all",
        "--output=json",
        "--all",
        "--no-pager",
        "--quiet",
    ]
    .map(String::from)
    .into();
    a.extend(cfg.selection_args());
    match start {
        Start::Cursor(cur) => a.push(format!("--cursor={cur}")),
        Start::Beginning => {}
        Start::Since(us) => a.push(format!("--since=@{}", us / 1_000_000)),
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> JournaldSourceConfig {
        toml::from_str("name = \"j\"\nunits = [\"sshd.service\"]\n").unwrap()
    }

    fn argv(phase: Phase, start: &Start) -> Vec<String> {
        journalctl(&cfg(), phase, start)
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn only_the_follow_run_follows_and_no_run_names_a_boot() {
        let start = Start::Cursor("s=1;i=2".into());
        let catch_up = argv(Phase::CatchUp, &start);
        let follow = argv(Phase::Follow, &start);
        assert!(!catch_up.iter().any(|a| a == "--follow"));
        assert_eq!(follow[0], "--follow");
        assert_eq!(&follow[1..], &catch_up[..]);
        for a in &follow {
            assert!(
                !a.starts_with("--boot") && a != "--merge" && !a.starts_with("--after-cursor"),
                "{a}"
            );
        }
        assert!(follow.contains(&"--lines=all".to_owned()));
        assert!(follow.contains(&"--cursor=s=1;i=2".to_owned()));
        assert!(follow.contains(&"--unit=sshd.service".to_owned()));
        assert!(
            argv(Phase::CatchUp, &Start::Since(1_700_000_000_123_456))
                .contains(&"--since=@1700000000".to_owned())
        );
        assert!(
            !argv(Phase::CatchUp, &Start::Beginning)
                .iter()
                .any(|a| a.starts_with("--cursor") || a.starts_with("--since"))
        );
    }
}
