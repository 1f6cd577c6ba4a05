//! The AWS Lambda Invoke API: `POST /2015-03-31/functions/{name}/invocations`, with Lambda's
//! headers, status codes and error shapes, so AWS SDKs pointed at surge work unchanged.
//!
//! - `X-Amz-Invocation-Type`: `RequestResponse` (default), `Event` (202 once the event is
//!   durable in the queue, `crate::events`) or `DryRun` (204).
//! - Payloads: 6 MiB synchronous, 1 MiB for an event, both within the function's
//!   `max_body`; over it, 413 `RequestTooLargeException`.
//! - A handler that fails answers 200 with `X-Amz-Function-Error: Unhandled` and a body
//!   `{"errorMessage", "errorType"}`, as Lambda does; a host-side failure is an HTTP error
//!   with `x-amzn-ErrorType`.
//! - `X-Amz-Log-Type: Tail` returns the last 4 KiB of the handler's stderr, base64, in
//!   `X-Amz-Log-Result`.
//!
//! A `GET` under the prefix is the control plane's reads (`lambda_control.rs`).

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use surge_runtime::exec::Outcome;
use surge_runtime::sandbox::protocol;
use surge_runtime::Kind;

use super::body::{read_body, sandbox_request};
use super::context::{self, invoke, Gateway, Target};
use super::errors::{ApiError, GuestFailure, HttpResponse, Surface};
use crate::dispatch::stream::ReplyBody;
use crate::dispatch::Deployment;
use crate::events::{ASYNC_PAYLOAD_LIMIT, SYNC_PAYLOAD_LIMIT};

pub const PREFIX: &str = "/2015-03-31/functions/";

/// The function name out of `{name}/invocations`, where name may be a plain name,
/// `name:qualifier` or a function ARN.
pub fn parse_path(rest: &str) -> Option<&str> {
    crate::aws::function_name(rest.strip_suffix("/invocations")?)
}

pub async fn handle(gw: &Arc<Gateway>, rest: &str, req: Request<Incoming>) -> HttpResponse {
    let rid = crate::aws::request_id();
    let rest = &*super::lambda_control::path_decode(rest);
    // The control plane: everything but Invoke.
    let control = !rest.ends_with("/invocations");
    let result = if control {
        super::lambda_deploy::handle(gw, rest, req)
            .await
            .map_err(Failed::from)
    } else {
        handle_inner(gw, rest, req, &rid).await
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
    rid: &str,
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
    // Lambda's payload limits, within the function's own max_body.
    let (limit, what) = match invocation_type.as_str() {
        "Event" => (ASYNC_PAYLOAD_LIMIT, "an Event invocation of"),
        _ => (SYNC_PAYLOAD_LIMIT, "a synchronous invocation of"),
    };
    let limit = limit.min(d.spec.limits.max_body.0);
    let payload = read_body(body, &parts.headers, limit, || {
        format!("{what} function {}", d.name())
    })
    .await?;
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
            // Durable before the 202: the queue delivers it at least once from here on.
            drop(hold);
            gw.queue
                .enqueue(d.name(), rid, payload)
                .await
                .map_err(|e| Failed::from(ApiError::from(e)))?;
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
    let reply = invoke(gw, &d, rid, sandbox_request(parts, payload))
        .await
        .map_err(|error| Failed {
            error,
            version: Some(version.clone()),
        })?;
    let (rparts, body) = reply.response.into_parts();
    let mut resp = match judge(&d, reply.outcome, &rparts) {
        None => Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "application/json")
            .body(body)
            .expect("valid response"),
        Some(failed) => failed.into_response(Surface::Lambda),
    };
    executed_version(&mut resp, &version);
    if tail {
        if let Ok(v) = header_of(&rparts, protocol::LOG_TAIL).parse() {
            resp.headers_mut().insert("x-amz-log-result", v);
        }
    }
    Ok(resp)
}

fn header_of(parts: &hyper::http::response::Parts, h: &str) -> String {
    parts
        .headers
        .get(h)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

/// A reply as Lambda judges it: None for the handler's answer, else its failure (a
/// trap, a timeout, a limit, or an http handler's non-2xx status).
pub(super) fn judge(
    d: &Deployment,
    outcome: Outcome,
    parts: &hyper::http::response::Parts,
) -> Option<ApiError> {
    let (failure, message) = match outcome {
        Outcome::Ok if d.kind == Kind::Http && !parts.status.is_success() => (
            GuestFailure::HttpStatus(parts.status.as_u16()),
            format!("the handler answered HTTP {}", parts.status.as_u16()),
        ),
        Outcome::Ok => return None,
        failed => {
            let msg = header_of(parts, protocol::MESSAGE);
            (
                GuestFailure::Outcome(failed),
                if msg.is_empty() {
                    "handler failed".to_string()
                } else {
                    msg
                },
            )
        }
    };
    Some(ApiError::Guest {
        function: d.name().to_string(),
        failure,
        message,
    })
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
