//! A blocking face on the AWS SDK's S3 client: the few calls the store
//! needs, each answered in this module's own terms (absent, precondition
//! failed, refused) instead of the SDK's error types.
//!
//! Two buckets: `bucket` holds what is kept (versioned, Object Lock; every
//! object written with COMPLIANCE mode and a retain-until date), and
//! `heads_bucket` holds the claims, created only if absent (`If-None-Match:
//! *`), which needs a store that honours that header there (radosgw 16
//! honours it only in an unversioned bucket; AWS in both).

use super::S3Config;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::primitives::{ByteStream, DateTime};
use aws_sdk_s3::types::ObjectLockMode;
use base64::Engine;
use std::future::Future;
use std::time::{Duration, SystemTime};

/// What went wrong with a call.
#[derive(Debug, thiserror::Error)]
pub enum S3Error {
    /// The store answered with an HTTP status (and what it said).
    #[error("{op} {key}: HTTP {status}: {message}")]
    Status {
        op: &'static str,
        key: String,
        status: u16,
        message: String,
    },
    /// No answer (connection, timeout, signing).
    #[error("{op} {key}: {message}")]
    Unreachable {
        op: &'static str,
        key: String,
        message: String,
    },
    /// An answer the store should not give.
    #[error("{0}")]
    Protocol(String),
}

impl S3Error {
    pub fn status(&self) -> Option<u16> {
        match self {
            S3Error::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// How a kept object is locked, read back from the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lock {
    pub mode: Option<String>,
    pub retain_until: Option<i64>,
    pub version_id: Option<String>,
}

/// The S3 store's client.
#[derive(Debug)]
pub struct S3 {
    client: Client,
    pub bucket: String,
    pub heads_bucket: String,
    pub prefix: String,
    retention: Duration,
    /// For callers outside a Tokio runtime (the offline commands).
    own_rt: std::sync::OnceLock<tokio::runtime::Runtime>,
}

fn err<E>(op: &'static str, key: &str, e: SdkError<E, HttpResponse>) -> S3Error
where
    E: std::error::Error + 'static,
    SdkError<E, HttpResponse>: aws_sdk_s3::error::ProvideErrorMetadata,
{
    use aws_sdk_s3::error::ProvideErrorMetadata;
    let message = e
        .message()
        .map(str::to_owned)
        .or_else(|| e.code().map(str::to_owned))
        .unwrap_or_else(|| {
            let mut s = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(x) = src {
                s.push_str(": ");
                s.push_str(&x.to_string());
                src = x.source();
            }
            s
        });
    let status = e.raw_response().map(|r| r.status().as_u16());
    match status {
        Some(status) => S3Error::Status {
            op,
            key: key.to_owned(),
            status,
            message,
        },
        None => S3Error::Unreachable {
            op,
            key: key.to_owned(),
            message,
        },
    }
}

impl S3 {
    pub fn new(c: &S3Config) -> Result<Self, S3Error> {
        let (access, secret, token) = c
            .credentials()
            .map_err(|e| S3Error::Protocol(format!("S3 credentials: {e}")))?;
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let mut b = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(c.region.clone()))
            .credentials_provider(Credentials::new(access, secret, token, None, "wormlog"))
            .http_client(http)
            .force_path_style(c.path_style)
            // Content-MD5 is sent instead: the SDK's default trailing
            // checksums are refused by older radosgw and MinIO.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            // A stalled store must not hold an agent's store (and its lock)
            // for ever: every attempt and every call ends.
            .timeout_config(
                aws_sdk_s3::config::timeout::TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(10))
                    .operation_attempt_timeout(Duration::from_secs(60))
                    .operation_timeout(Duration::from_secs(180))
                    .build(),
            );
        if let Some(e) = &c.endpoint {
            b = b.endpoint_url(e);
        }
        Ok(S3 {
            client: Client::from_conf(b.build()),
            bucket: c.bucket.clone(),
            heads_bucket: c.heads_bucket.clone(),
            prefix: c.prefix.clone(),
            retention: c.retention,
            own_rt: std::sync::OnceLock::new(),
        })
    }

    /// Runs `f` to its end from blocking code: on the current runtime's
    /// handle inside one (a `spawn_blocking` thread), else on a runtime of
    /// its own.
    fn run<T>(&self, f: impl Future<Output = T>) -> T {
        match tokio::runtime::Handle::try_current() {
            Ok(h) => tokio::task::block_in_place(|| h.block_on(f)),
            Err(_) => self
                .own_rt
                .get_or_init(|| {
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("a Tokio runtime")
                })
                .block_on(f),
        }
    }

    fn md5(bytes: &[u8]) -> String {
        use md5::Digest;
        base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(bytes))
    }

    /// Writes `bytes` into the kept bucket, locked in COMPLIANCE mode until
    /// now + retention, with its MD5 checked by the store.
    pub fn put_kept(&self, key: &str, bytes: &[u8]) -> Result<(), S3Error> {
        let until = SystemTime::now() + self.retention;
        let secs = until
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        self.run(async {
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(key)
                .content_md5(Self::md5(bytes))
                .object_lock_mode(ObjectLockMode::Compliance)
                .object_lock_retain_until_date(DateTime::from_secs(secs))
                .body(ByteStream::from(bytes.to_vec()))
                .send()
                .await
                .map(|_| ())
                .map_err(|e| err("PUT", key, e))
        })
    }

    /// Creates `key` in the heads bucket unless it exists: false when it
    /// did (`412 Precondition Failed`).
    pub fn put_head_if_absent(&self, key: &str, bytes: &[u8]) -> Result<bool, S3Error> {
        self.run(async {
            match self
                .client
                .put_object()
                .bucket(&self.heads_bucket)
                .key(key)
                .if_none_match("*")
                .content_md5(Self::md5(bytes))
                .body(ByteStream::from(bytes.to_vec()))
                .send()
                .await
            {
                Ok(_) => Ok(true),
                Err(e) => match err("PUT", key, e) {
                    S3Error::Status { status: 412, .. } => Ok(false),
                    // A concurrent conditional write of the same key.
                    S3Error::Status { status: 409, .. } => Ok(false),
                    e => Err(e),
                },
            }
        })
    }

    /// Writes `key` in the heads bucket whatever is there (tests: a claim
    /// altered by someone holding the bucket's credentials).
    pub fn put_head(&self, key: &str, bytes: &[u8]) -> Result<(), S3Error> {
        self.run(async {
            self.client
                .put_object()
                .bucket(&self.heads_bucket)
                .key(key)
                .body(ByteStream::from(bytes.to_vec()))
                .send()
                .await
                .map(|_| ())
                .map_err(|e| err("PUT", key, e))
        })
    }

    async fn get_from(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, S3Error> {
        match self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
        {
            Ok(o) => o
                .body
                .collect()
                .await
                .map(|b| Some(b.into_bytes().to_vec()))
                .map_err(|e| S3Error::Unreachable {
                    op: "GET",
                    key: key.to_owned(),
                    message: e.to_string(),
                }),
            // Only a missing key is "absent": a missing bucket is an error.
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => Ok(None),
            Err(e) => Err(err("GET", key, e)),
        }
    }

    /// An object of the kept bucket (None: absent).
    pub fn get_kept(&self, key: &str) -> Result<Option<Vec<u8>>, S3Error> {
        self.run(self.get_from(&self.bucket, key))
    }

    /// Every version of a kept object, oldest first (an object written
    /// again keeps its locked first version): `(version id, bytes)`.
    pub fn kept_versions(&self, key: &str) -> Result<Vec<(String, Vec<u8>)>, S3Error> {
        self.run(async {
            let o = self
                .client
                .list_object_versions()
                .bucket(&self.bucket)
                .prefix(key)
                .send()
                .await
                .map_err(|e| err("LIST VERSIONS", key, e))?;
            let mut versions: Vec<(String, i64)> = o
                .versions()
                .iter()
                .filter(|v| v.key() == Some(key))
                .filter_map(|v| {
                    let t = v.last_modified().map_or(0, |t| t.as_nanos() as i64);
                    Some((v.version_id()?.to_owned(), t))
                })
                .collect();
            versions.sort_by_key(|(_, t)| *t);
            let mut out = Vec::new();
            for (id, _) in versions {
                let b = self
                    .client
                    .get_object()
                    .bucket(&self.bucket)
                    .key(key)
                    .version_id(&id)
                    .send()
                    .await
                    .map_err(|e| err("GET", key, e))?
                    .body
                    .collect()
                    .await
                    .map_err(|e| S3Error::Unreachable {
                        op: "GET",
                        key: key.to_owned(),
                        message: e.to_string(),
                    })?;
                out.push((id, b.into_bytes().to_vec()));
            }
            Ok(out)
        })
    }

    /// An object of the heads bucket (None: absent).
    pub fn get_head(&self, key: &str) -> Result<Option<Vec<u8>>, S3Error> {
        self.run(self.get_from(&self.heads_bucket, key))
    }

    /// Keys of the kept bucket (`heads`: of the heads bucket) under
    /// `prefix`, after `start_after`, in order, at most `max`.
    pub fn list(
        &self,
        heads: bool,
        prefix: &str,
        start_after: Option<&str>,
        max: usize,
    ) -> Result<Vec<String>, S3Error> {
        let bucket = if heads {
            &self.heads_bucket
        } else {
            &self.bucket
        };
        self.run(async {
            let mut out = Vec::new();
            let mut token: Option<String> = None;
            loop {
                let mut q = self.client.list_objects_v2().bucket(bucket).prefix(prefix);
                if let Some(s) = start_after {
                    q = q.start_after(s);
                }
                if let Some(t) = &token {
                    q = q.continuation_token(t);
                }
                let o = q.send().await.map_err(|e| err("LIST", prefix, e))?;
                out.extend(
                    o.contents()
                        .iter()
                        .filter_map(|c| c.key().map(str::to_owned)),
                );
                token = o.next_continuation_token().map(str::to_owned);
                if out.len() >= max || !o.is_truncated().unwrap_or(false) || token.is_none() {
                    out.truncate(max);
                    return Ok(out);
                }
            }
        })
    }

    /// How an object of the kept bucket is locked.
    pub fn lock_of(&self, key: &str) -> Result<Lock, S3Error> {
        self.run(async {
            let o = self
                .client
                .head_object()
                .bucket(&self.bucket)
                .key(key)
                .send()
                .await
                .map_err(|e| err("HEAD", key, e))?;
            Ok(Lock {
                mode: o.object_lock_mode().map(|m| m.as_str().to_owned()),
                retain_until: o.object_lock_retain_until_date().map(|d| d.secs()),
                version_id: o.version_id().map(str::to_owned),
            })
        })
    }

    /// Tries to delete one version of a kept object (a test of the lock:
    /// the store must refuse).
    pub fn delete_kept_version(&self, key: &str, version: &str) -> Result<(), S3Error> {
        self.run(async {
            self.client
                .delete_object()
                .bucket(&self.bucket)
                .key(key)
                .version_id(version)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| err("DELETE", key, e))
        })
    }

    /// Deletes an empty bucket (tests: a bucket gone under a running
    /// collector).
    pub fn delete_bucket(&self, bucket: &str) -> Result<(), S3Error> {
        self.run(async {
            self.client
                .delete_bucket()
                .bucket(bucket)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| err("DELETE BUCKET", bucket, e))
        })
    }

    /// Creates the two buckets if they do not exist: the kept one with
    /// Object Lock (and so versioning), the heads one plain.
    pub fn create_buckets(&self) -> Result<(), S3Error> {
        self.run(async {
            for (bucket, lock) in [(&self.bucket, true), (&self.heads_bucket, false)] {
                let mut q = self.client.create_bucket().bucket(bucket.as_str());
                if lock {
                    q = q.object_lock_enabled_for_bucket(true);
                }
                match q.send().await {
                    Ok(_) => {}
                    Err(e) => match err("CREATE BUCKET", bucket, e) {
                        S3Error::Status { status: 409, .. } => {}
                        e => return Err(e),
                    },
                }
            }
            Ok(())
        })
    }

    /// Checks that the heads bucket refuses a second create of one key
    /// (the guard against two collectors forking a chain): a probe object
    /// written twice, then removed.
    pub fn check_conditional_writes(&self, collector: &str) -> Result<(), S3Error> {
        let key = format!("{}probe/{collector}-{}", self.prefix, std::process::id());
        let first = self.put_head_if_absent(&key, b"probe")?;
        let second = self.put_head_if_absent(&key, b"probe")?;
        self.run(async {
            let _ = self
                .client
                .delete_object()
                .bucket(&self.heads_bucket)
                .key(&key)
                .send()
                .await;
        });
        if first && !second {
            Ok(())
        } else {
            Err(S3Error::Protocol(format!(
                "bucket {:?} does not honour If-None-Match (a second create of {key} was {}): \
                 claims need a bucket where it is honoured (on radosgw, an unversioned one): set heads_bucket",
                self.heads_bucket,
                if second {
                    "accepted"
                } else {
                    "refused, and so was the first"
                }
            )))
        }
    }
}
