//! The AWS Lambda Invoke API: `POST /2015-03-31/functions/{name}/invocations`, with Lambda's
//! headers, status codes and error shapes, so AWS SDKs pointed at surge work unchanged.
//!
//! - `X-Amz-Invocation-Type`: `RequestResponse` (default), `Event` (202, runs detached) or
//!   `DryRun` (204).
//! - A handler that fails answers 200 with `X-Amz-Function-Error: Unhandled` and a body
//!   `{"errorMessage", "errorType"}`, as Lambda does; a host-side failure is an HTTP error
//!   with `x-amzn-ErrorType`.
//! - `X-Amz-Log-Type: Tail` returns the last 4 KiB of the handler's stderr, base64, in
//!   `X-Amz-Log-Result`.
//!
//! A `GET` under the prefix is the control plane's reads (`lambda_control.rs`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use surge_runtime::exec::Outcome;
use surge_runtime::sandbox::protocol;
use surge_runtime::Kind;

use super::body::{read_function_body, sandbox_request};
use super::context::{self, invoke, Gateway, Target};
use super::errors::{ApiError, GuestFailure, HttpResponse, Surface};
use crate::dispatch::stream::ReplyBody;

pub const PREFIX: &str = "/2015-03-31/functions/";

/// The function name out of `{name}/invocations`, where name may be a plain name,
/// `name:qualifier` or a function ARN.
pub fn parse_path(rest: &str) -> Option<&str> {
    super::lambda_control::function_name(rest.strip_suffix("/invocations")?)
}

fn request_id() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let x = (t as u64) ^ n.rotate_left(32) ^ (std::process::id() as u64);
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        x >> 32,
        (x >> 16) & 0xffff,
        x & 0xfff,
        n & 0xfff,
        t as u64 & 0xffff_ffff_ffff
    )
}

pub async fn handle(gw: &Arc<Gateway>, rest: &str, req: Request<Incoming>) -> HttpResponse {
    let rid = request_id();
    let rest = &*super::lambda_control::path_decode(rest);
    // The control plane's reads (ListFunctions, GetFunction, GetFunctionConfiguration).
    let read = req.method() == Method::GET && !rest.ends_with("/invocations");
    let result = if read {
        super::lambda_control::get(gw, rest, req.uri().query()).map_err(Failed::from)
    } else {
        handle_inner(gw, rest, req).await
    };
    let mut resp = match result {
        Ok(r) => r,
        Err(Failed { error, version }) => {
            let function_error = error.is_function_error();
            let mut r = error.into_response(Surface::Lambda);
            // A function's error comes from the version that ran, as a reply does.
            if let (true, Some(v)) = (function_error, version) {
                executed_version(&mut r, &v);
            }
            r
        }
    };
    if let Ok(v) = rid.parse() {
        resp.headers_mut().insert("x-amzn-requestid", v);
    }
    resp
}

/// An error, and the version it happened on once one was chosen.
struct Failed {
    error: ApiError,
    version: Option<String>,
}

impl From<ApiError> for Failed {
    fn from(error: ApiError) -> Self {
        Failed {
            error,
            version: None,
        }
    }
}

async fn handle_inner(
    gw: &Arc<Gateway>,
    rest: &str,
    req: Request<Incoming>,
) -> Result<HttpResponse, Failed> {
    let name = parse_path(rest).ok_or_else(|| ApiError::FunctionNotFound(rest.to_string()))?;
    if req.method() != Method::POST {
        return Err(ApiError::MethodNotAllowed(req.method().to_string()).into());
    }
    let hold = context::hold(gw, Target::Name(name)).await?;
    let d = hold.deployment().clone();
    let header = |h: &str| {
        req.headers()
            .get(h)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let invocation_type =
        header("x-amz-invocation-type").unwrap_or_else(|| "RequestResponse".into());
    let tail = header("x-amz-log-type").as_deref() == Some("Tail");
    let (parts, body) = req.into_parts();
    // Lambda's own payload limit is the function's max_body here.
    let payload = read_function_body(&d, &parts, body).await?;
    let mut parts = parts;
    // An http function sees the event as a POST to its root.
    if d.kind == Kind::Http {
        parts.method = Method::POST;
        parts.uri = hyper::Uri::from_static("/");
    }
    parts.headers.remove("x-amz-invocation-type");
    parts.headers.remove("x-amz-log-type");
    parts.headers.remove("x-amz-client-context");
    let version = d.version.to_string();
    match invocation_type.as_str() {
        "RequestResponse" => {}
        "DryRun" => return Ok(empty(StatusCode::NO_CONTENT, &version)),
        "Event" => {
            let (gw, d) = (Arc::clone(gw), Arc::clone(&d));
            let req = sandbox_request(parts, payload);
            // Detached: the caller gets 202 now; the hold keeps it counted in flight until
            // it is done, so a redeploy or remove still drains it. Counted in the request
            // metrics as a synchronous invocation is.
            tokio::spawn(async move {
                // A streamed reply runs its guest only as it is read: read it to the end.
                if let Ok(reply) = invoke(&gw, &d, req).await {
                    let _ = reply.response.into_body().collect().await;
                }
                drop(hold);
            });
            return Ok(empty(StatusCode::ACCEPTED, &version));
        }
        other => {
            return Err(ApiError::BadRequest(format!(
                "X-Amz-Invocation-Type {other:?} is not one of RequestResponse, Event, DryRun"
            ))
            .into())
        }
    }
    // Lambda reports a timeout as the function's error, not the service's (errors.rs).
    let reply = invoke(gw, &d, sandbox_request(parts, payload))
        .await
        .map_err(|error| Failed {
            error,
            version: Some(version.clone()),
        })?;
    let (rparts, body) = reply.response.into_parts();
    let hv = |h: &str| {
        rparts
            .headers
            .get(h)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let failure = match reply.outcome {
        Outcome::Ok if d.kind == Kind::Http && !rparts.status.is_success() => Some((
            GuestFailure::HttpStatus(rparts.status.as_u16()),
            format!("the handler answered HTTP {}", rparts.status.as_u16()),
        )),
        Outcome::Ok => None,
        failed => {
            let msg = hv(protocol::MESSAGE);
            Some((
                GuestFailure::Outcome(failed),
                if msg.is_empty() {
                    "handler failed".to_string()
                } else {
                    msg
                },
            ))
        }
    };
    let mut resp = match failure {
        None => Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "application/json")
            .body(body)
            .expect("valid response"),
        Some((failure, message)) => ApiError::Guest {
            function: d.name().to_string(),
            failure,
            message,
        }
        .into_response(Surface::Lambda),
    };
    executed_version(&mut resp, &version);
    if tail {
        if let Ok(v) = hv(protocol::LOG_TAIL).parse() {
            resp.headers_mut().insert("x-amz-log-result", v);
        }
    }
    Ok(resp)
}

/// Lambda's `X-Amz-Executed-Version`: on every answer from a version (a reply, a function
/// error, an accepted event, a dry run), not on host errors.
fn executed_version(resp: &mut HttpResponse, version: &str) {
    if let Ok(v) = version.parse() {
        resp.headers_mut().insert("x-amz-executed-version", v);
    }
}

fn empty(status: StatusCode, version: &str) -> HttpResponse {
    let mut r = Response::builder()
        .status(status)
        .body(ReplyBody::default())
        .expect("valid response");
    executed_version(&mut r, version);
    r
}

#[cfg(test)]
mod tests {
    use super::parse_path;

    #[test]
    fn function_names_from_paths() {
        assert_eq!(parse_path("echo/invocations"), Some("echo"));
        assert_eq!(parse_path("echo:$LATEST/invocations"), Some("echo"));
        assert_eq!(
            parse_path("arn:aws:lambda:us-east-1:123456789012:function:echo/invocations"),
            Some("echo")
        );
        assert_eq!(
            parse_path("arn:aws:lambda:us-east-1:123456789012:function:echo:7/invocations"),
            Some("echo")
        );
        assert_eq!(parse_path("echo"), None);
        assert_eq!(parse_path("/invocations"), None);
    }
}
