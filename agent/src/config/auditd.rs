//! `[[sources.auditd]]`: the Linux audit log, tailed through rotation.

use super::{FileSourceConfig, Human, ReadFrom};
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditdSourceConfig {
    /// The source name recorded with every event (1–255 bytes, unique).
    pub name: String,
    /// The audit log; its rotations (`PATH.1`, `PATH.2`, …) are followed.
    #[serde(default = "d_path")]
    pub path: PathBuf,
    /// For files found at the source's first start.
    #[serde(default)]
    pub read_from: ReadFrom,
    /// How often the file is checked (inotify wakes the source sooner).
    #[serde(default = "d_poll")]
    pub poll_interval: Human,
}

fn d_path() -> PathBuf {
    "/var/log/audit/audit.log".into()
}
fn d_poll() -> Human {
    Human(Duration::from_secs(1))
}

impl AuditdSourceConfig {
    pub fn validate(&self) -> Result<(), String> {
        if !self.path.is_absolute() {
            return Err(format!("path {:?} must be absolute", self.path.display()));
        }
        let s = self.path.to_string_lossy();
        if s.contains(['*', '?', '[']) {
            return Err(format!("path {s:?}: name the log file, not a glob"));
        }
        if self.poll_interval.0 < Duration::from_millis(10) {
            return Err("poll_interval must be at least 10ms".into());
        }
        Ok(())
    }

    /// The file source that reads the log and its rotations for it.
    pub fn file_source(&self) -> FileSourceConfig {
        let p = self.path.display().to_string();
        let toml = format!(
            "name = {:?}\npaths = [{:?}, {:?}]\npartial_line_timeout = \"1h\"\n",
            self.name,
            p,
            format!("{p}.[0-9]*")
        );
        let mut f: FileSourceConfig = toml::from_str(&toml).expect("a valid file source");
        f.read_from = self.read_from;
        f.poll_interval = self.poll_interval;
        f
    }
}
