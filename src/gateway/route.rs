//! Function routes: a request to the function whose route is the longest prefix of its path.

use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Request, Response};
use surge_runtime::exec::Outcome;
use surge_runtime::sandbox::protocol;
use surge_runtime::Kind;

use super::body::{read_function_body, sandbox_request, strip_protocol_headers, HOP_BY_HOP};
use super::context::{self, invoke, Gateway, Target};
use super::errors::{ApiError, GuestFailure, HttpResponse};

/// A function route: forward to the function whose route is the longest prefix. Every
/// answer, the function's or an error, carries the request id `surge logs` shows the
/// invocation under (`x-amzn-RequestId`, as a Lambda function URL gives it).
pub async fn route(gw: &Gateway, req: Request<Incoming>) -> HttpResponse {
    let rid = crate::aws::request_id();
    let mut resp = route_inner(gw, req, &rid)
        .await
        .unwrap_or_else(|e| e.into_response(super::errors::Surface::Route));
    if let Ok(v) = HeaderValue::from_str(&rid) {
        resp.headers_mut().insert("x-amzn-requestid", v);
    }
    resp
}

async fn route_inner(
    gw: &Gateway,
    req: Request<Incoming>,
    rid: &str,
) -> Result<HttpResponse, ApiError> {
    let hold = context::hold(gw, Target::Path(req.uri().path())).await?;
    let d = &hold.deployment().clone();
    let (parts, body) = req.into_parts();
    let body = read_function_body(d, &parts, body).await?;
    let reply = invoke(gw, d, rid, sandbox_request(parts, body)).await?;
    let (mut parts, mut body) = reply.response.into_parts();
    match reply.outcome {
        Outcome::Ok => {
            strip_protocol_headers(&mut parts.headers);
            // A whole body: hyper sets content-length itself. A streamed one keeps the
            // guest's content-length if it set one (hyper cuts the response short if the
            // body disagrees); without one hyper sends it chunked.
            for h in HOP_BY_HOP {
                if h != "content-length" || !body.is_streamed() {
                    parts.headers.remove(h);
                }
            }
            // The version must not drain under a body still streaming from its sandbox.
            if body.is_streamed() {
                body.on_end(move |_| drop(hold));
            }
            if d.kind == Kind::Event && !parts.headers.contains_key("content-type") {
                parts
                    .headers
                    .insert("content-type", HeaderValue::from_static("application/json"));
            }
            Ok(Response::from_parts(parts, body))
        }
        failed => Err(ApiError::Guest {
            function: d.name().to_string(),
            failure: GuestFailure::Outcome(failed),
            message: parts
                .headers
                .get(protocol::MESSAGE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("handler failed")
                .to_string(),
        }),
    }
}
