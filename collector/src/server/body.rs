//! Reading a request body within bounds: the length the headers announced
//! (no more), and the deadline `[limits]` gives a body of that length. The
//! buffer grows as bytes arrive, so a client that announces much and sends
//! little holds little.

use axum::body::Body;
use http_body_util::BodyExt;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the body did not arrive within {0:?}")]
    Timeout(Duration),
    #[error("the body is longer than its Content-Length")]
    TooLong,
    #[error("the body ended after {got} of {want} bytes")]
    Short { got: usize, want: usize },
    #[error("reading the body: {0}")]
    Read(String),
}

/// Reads a body of exactly `len` bytes within `deadline`.
pub async fn read(body: Body, len: usize, deadline: Duration) -> Result<Vec<u8>, BodyError> {
    let mut out = Vec::with_capacity(len.min(256 << 10));
    let read = async {
        let mut body = body;
        while let Some(frame) = body.frame().await {
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
