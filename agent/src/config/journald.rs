//! `[[sources.journald]]`: the systemd journal, read through `journalctl`.

use super::ReadFrom;
use serde::Deserialize;
use std::path::PathBuf;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JournaldSourceConfig {
    /// The source name recorded with every entry (1–255 bytes, unique).
    pub name: String,
    /// Only these units (`journalctl --unit`), e.g. `["sshd.service"]`.
    #[serde(default)]
    pub units: Vec<String>,
    /// Match expressions as `journalctl` takes them: `FIELD=value`, and `+`
    /// between groups for OR, e.g. `["_TRANSPORT=audit", "+", "PRIORITY=3"]`.
    #[serde(default)]
    pub matches: Vec<String>,
    /// Read the journal files in this directory (`--directory`) instead of
    /// the system journal.
    pub directory: Option<PathBuf>,
    /// Read these journal files (`--file`; globs as journalctl takes them).
    #[serde(default)]
    pub files: Vec<String>,
    /// Where to start when the spool has no cursor for this source yet.
    #[serde(default)]
    pub read_from: ReadFrom,
    /// The `journalctl` program.
    #[serde(default = "d_journalctl")]
    pub journalctl: PathBuf,
}

fn d_journalctl() -> PathBuf {
    "journalctl".into()
}

impl JournaldSourceConfig {
    /// The checks beyond the types; the message names the key.
    pub fn validate(&self) -> Result<(), String> {
        if self.directory.is_some() && !self.files.is_empty() {
            return Err("`directory` and `files` exclude each other".into());
        }
        if let Some(d) = &self.directory
            && !d.is_absolute()
        {
            return Err(format!("directory {:?} must be absolute", d.display()));
        }
        if let Some(f) = self.files.iter().find(|f| !f.starts_with('/')) {
            return Err(format!("file {f:?} must be absolute"));
        }
        if let Some(u) = self
            .units
            .iter()
            .find(|u| u.is_empty() || u.starts_with('-') || u.chars().any(char::is_control))
        {
            return Err(format!("unit {u:?} is not a unit name"));
        }
        for m in &self.matches {
            let field_ok = |f: &str| {
                !f.is_empty()
                    && f.bytes()
                        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
            };
            let ok = m == "+" || m.split_once('=').is_some_and(|(f, _)| field_ok(f));
            if !ok {
                return Err(format!(
                    "match {m:?}: write FIELD=value (FIELD in upper case, digits and _) or \"+\""
                ));
            }
        }
        Ok(())
    }

    /// The `journalctl` arguments that choose what is read (not where to
    /// start): files or directory, units, matches.
    pub fn selection_args(&self) -> Vec<String> {
        let mut a = Vec::new();
        if let Some(d) = &self.directory {
            a.push(format!("--directory={}", d.display()));
        }
        for f in &self.files {
            a.push(format!("--file={f}"));
        }
        for u in &self.units {
            a.push(format!("--unit={u}"));
        }
        a.extend(self.matches.iter().cloned());
        a
    }
}
