//! Request bodies and the request as the sandbox gets it.

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_LENGTH, HOST};
use hyper::Request;
use surge_runtime::sandbox::protocol;

use super::errors::ApiError;
use crate::dispatch::Deployment;

/// Read a whole body, refusing it with 413 once it passes `limit` bytes.
pub async fn read_body(
    body: Incoming,
    headers: &hyper::HeaderMap,
    limit: u64,
    what: impl Fn() -> String,
) -> Result<Bytes, ApiError> {
    let too_large = || ApiError::BodyTooLarge {
        what: what(),
        limit,
    };
    if let Some(len) = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if len > limit {
            return Err(too_large());
        }
    }
    match Limited::new(body, limit as usize).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(too_large())
        }
        Err(e) => Err(ApiError::BodyRead(e.to_string())),
    }
}

/// A function's request body, up to its `max_body`.
pub async fn read_function_body(
    d: &Deployment,
    parts: &hyper::http::request::Parts,
    body: Incoming,
) -> Result<Bytes, ApiError> {
    read_body(body, &parts.headers, d.spec.limits.max_body.0, || {
        format!("function {}", d.name())
    })
    .await
}

/// The request as the sandbox gets it: origin-form URI, end-to-end headers, a Host.
pub fn sandbox_request(mut parts: hyper::http::request::Parts, body: Bytes) -> Request<Bytes> {
    if parts.uri.scheme().is_some() || parts.uri.authority().is_some() {
        parts.uri = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
            .parse()
            .unwrap_or_default();
    }
    for h in HOP_BY_HOP {
        parts.headers.remove(h);
    }
    if !parts.headers.contains_key(HOST) {
        parts
            .headers
            .insert(HOST, HeaderValue::from_static("localhost"));
    }
    Request::from_parts(parts, body)
}

/// Headers that describe one connection, not the message; bodies are re-framed by hyper.
pub const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "transfer-encoding",
    "upgrade",
    "proxy-connection",
    "te",
    "trailer",
    "content-length",
];

pub fn strip_protocol_headers(h: &mut hyper::HeaderMap) {
    for name in [
        protocol::OUTCOME,
        protocol::MESSAGE,
        protocol::EXIT_CODE,
        protocol::LOG_TAIL,
        protocol::PEAK_MEMORY,
    ] {
        h.remove(name);
    }
}
