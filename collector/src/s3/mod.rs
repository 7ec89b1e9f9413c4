//! The S3 store backend (`[store] kind = "s3"`; README "The store on S3"):
//! what is kept goes into a bucket with Object Lock in COMPLIANCE mode,
//! one object per accepted batch, and a claim per sequence number decides
//! which collector's batch continues a chain (docs/FORMAT.md §10.6). The
//! local store directory stays: it is the collector's working copy, built
//! again from the bucket when lost.

pub mod client;
pub mod range;
pub mod sync;

pub use client::{S3, S3Error};

use std::path::PathBuf;
use std::time::Duration;

/// Six years (HIPAA's retention for the documentation it asks for).
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(2192 * 86_400);

/// `[store]` with `kind = "s3"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Config {
    /// `http(s)://host:port` of an S3-compatible store (None: AWS).
    pub endpoint: Option<String>,
    pub region: String,
    /// The bucket that keeps the records (versioning and Object Lock on).
    pub bucket: String,
    /// The bucket of the claims (conditional writes honoured there).
    pub heads_bucket: String,
    /// Prepended to every key (`""` or ending in `/`).
    pub prefix: String,
    /// How long each object is locked from when it is written.
    pub retention: Duration,
    /// Path-style addressing (`endpoint/bucket/key`).
    pub path_style: bool,
    /// A file in the AWS shared-credentials form (`[default]`,
    /// `aws_access_key_id`, `aws_secret_access_key`, optionally
    /// `aws_session_token`); None: the `AWS_*` environment variables.
    pub credentials_file: Option<PathBuf>,
}

type Keys = (String, String, Option<String>);

impl S3Config {
    /// The access key, secret and session token: from `credentials_file`
    /// when set, else `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and
    /// `AWS_SESSION_TOKEN`, else `~/.aws/credentials` (`AWS_PROFILE`, or
    /// `default`).
    pub fn credentials(&self) -> Result<Keys, String> {
        if let Some(p) = &self.credentials_file {
            return from_file(p, "default");
        }
        if let (Ok(a), Ok(s)) = (
            std::env::var("AWS_ACCESS_KEY_ID"),
            std::env::var("AWS_SECRET_ACCESS_KEY"),
        ) {
            return Ok((a, s, std::env::var("AWS_SESSION_TOKEN").ok()));
        }
        let file = std::env::var_os("AWS_SHARED_CREDENTIALS_FILE")
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".aws/credentials"))
            });
        let profile = std::env::var("AWS_PROFILE").unwrap_or_else(|_| "default".into());
        match file {
            Some(f) if f.exists() => from_file(&f, &profile),
            _ => Err(
                "none found: set credentials_file in [store], or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
                    .into(),
            ),
        }
    }
}

/// Reads one profile of an AWS shared-credentials file.
fn from_file(path: &std::path::Path, profile: &str) -> Result<Keys, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let (mut access, mut secret, mut token) = (None, None, None);
    let mut inside = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') || line.starts_with(';') || line.is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = name.trim() == profile;
            continue;
        }
        if !inside {
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            let v = Some(v.trim().to_owned());
            match k.trim() {
                "aws_access_key_id" => access = v,
                "aws_secret_access_key" => secret = v,
                "aws_session_token" => token = v,
                _ => {}
            }
        }
    }
    match (access, secret) {
        (Some(a), Some(s)) => Ok((a, s, token)),
        _ => Err(format!(
            "{}: no aws_access_key_id and aws_secret_access_key in [{profile}]",
            path.display()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shared_credentials_file_is_read_by_profile() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c");
        std::fs::write(
            &p,
            "# c\n[other]\naws_access_key_id = X\naws_secret_access_key = Y\n\n[default]\naws_access_key_id=AK\naws_secret_access_key = SK \n",
        )
        .unwrap();
        assert_eq!(
            from_file(&p, "default").unwrap(),
            ("AK".into(), "SK".into(), None)
        );
        assert_eq!(from_file(&p, "other").unwrap().0, "X");
        assert!(from_file(&p, "none").unwrap_err().contains("[none]"));
    }
}
