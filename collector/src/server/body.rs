//! Reading a request body within bounds: the length the headers announced
//! (no more), the deadline `[limits]` gives a body of that length, and no
//! pause between its bytes longer than `body_idle_timeout` (a body sent
//! fast and then withheld is cut off at once, not at the deadline). The
//! buffer is allocated once at the announced length, which the limits
//! already counted; its memory becomes resident only as bytes arrive, so a
//! client that announces much and sends little holds little.

use axum::body::Body;
use http_body_util::BodyExt;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the body did not arrive within {0:?}")]
    Timeout(Duration),
    #[error("no byte of the body arrived for {0:?} (after {1} bytes)")]
    Stalled(Duration, usize),
    #[error("the body is longer than its Content-Length")]
    TooLong,
    #[error("the body ended after {got} of {want} bytes")]
    Short { got: usize, want: usize },
    #[error("reading the body: {0}")]
    Read(String),
}

/// Reads a body of exactly `len` bytes within `deadline`, with no pause
/// longer than `idle`.
pub async fn read(
    body: Body,
    len: usize,
    deadline: Duration,
    idle: Duration,
) -> Result<Vec<u8>, BodyError> {
    // The whole announced length, reserved once (its share of
    // max_ingest_bytes is already counted): pages are resident only as
    // bytes arrive, and the buffer is never grown and copied.
    let mut out = Vec::with_capacity(len);
    let read = async {
        let mut body = body;
        loop {
            let next = match tokio::time::timeout(idle, body.frame()).await {
                Ok(n) => n,
                Err(_) => return Err(BodyError::Stalled(idle, out.len())),
            };
            let Some(frame) = next else { break };
            let frame = frame.map_err(|e| BodyError::Read(e.to_string()))?;
            if let Ok(data) = frame.into_data() {
                if out.len() + data.len() > len {
                    return Err(BodyError::TooLong);
                }
                out.extend_from_slice(&data);
            }
        }
        Ok(())
    };
    match tokio::time::timeout(deadline, read).await {
        Err(_) => Err(BodyError::Timeout(deadline)),
        Ok(Err(e)) => Err(e),
        Ok(Ok(())) if out.len() != len => Err(BodyError::Short {
            got: out.len(),
            want: len,
        }),
        Ok(Ok(())) => Ok(out),
    }
}
