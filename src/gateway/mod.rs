//! The gateway: one hyper server on a TCP listener for the public routes, the Lambda Invoke
//! API, health, metrics and the admin API.
//!
//! `serve` takes a bound listener and a shutdown future, so tests bind port 0.

pub mod admin;
pub mod errors;
pub mod lambda;

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_LENGTH, HOST};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use surge_runtime::exec::Outcome;
use surge_runtime::sandbox::protocol;
use surge_runtime::Kind;
use tokio::net::TcpListener;

use crate::dispatch::Deployment;
use crate::metrics::Metrics;
use crate::registry::Registry;
use errors::{ApiError, HttpResponse, Surface};

/// How long a connection may take to send a request's head.
const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

pub struct Gateway {
    pub registry: Arc<Registry>,
    pub admin_token: String,
    pub metrics: Metrics,
}

/// Serve until `shutdown` resolves. Connections in progress are dropped at shutdown.
pub async fn serve(gw: Arc<Gateway>, listener: TcpListener, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            _ = &mut shutdown => return,
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let gw = gw.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let gw = gw.clone();
                async move { Ok::<_, Infallible>(handle(&gw, req).await) }
            });
            let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            // A client must send a request's head within this time (slowloris).
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT);
            let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
        });
    }
}

async fn handle(gw: &Gateway, req: Request<Incoming>) -> HttpResponse {
    let path = req.uri().path();
    if path == "/healthz" {
        return errors::text(StatusCode::OK, "ok\n");
    }
    if path == "/metrics" {
        let body = gw
            .metrics
            .render(&gw.registry.list(), &gw.registry.node_status());
        return Response::builder()
            .header("content-type", "text/plain; version=0.0.4")
            .body(Full::new(Bytes::from(body)))
            .expect("valid response");
    }
    if path.starts_with("/admin/") {
        return admin::handle(gw, req)
            .await
            .unwrap_or_else(|e| e.into_response(Surface::Admin));
    }
    if let Some(rest) = path.strip_prefix(lambda::PREFIX) {
        let rest = rest.to_string();
        return lambda::handle(gw, &rest, req).await;
    }
    route(gw, req)
        .await
        .unwrap_or_else(|e| e.into_response(Surface::Route))
}

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
pub fn sandbox_request(
    mut parts: hyper::http::request::Parts,
    body: Bytes,
) -> Request<Full<Bytes>> {
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
    Request::from_parts(parts, Full::new(body))
}

/// A function route: forward to the function whose route is the longest prefix.
async fn route(gw: &Gateway, req: Request<Incoming>) -> Result<HttpResponse, ApiError> {
    let routes = gw.registry.routes();
    let d = routes
        .lookup(req.uri().path())
        .ok_or_else(|| ApiError::NoRoute(req.uri().path().to_string()))?
        .clone();
    drop(routes);
    let _hold = d.hold();
    let (parts, body) = req.into_parts();
    let body = read_function_body(&d, &parts, body).await?;
    let reply = invoke(gw, &d, sandbox_request(parts, body)).await?;
    let (mut parts, body) = reply.response.into_parts();
    match reply.outcome {
        Outcome::Ok => {
            strip_protocol_headers(&mut parts.headers);
            // The body is whole now: hyper sets content-length itself.
            for h in HOP_BY_HOP {
                parts.headers.remove(h);
            }
            if d.kind == Kind::Event && !parts.headers.contains_key("content-type") {
                parts
                    .headers
                    .insert("content-type", HeaderValue::from_static("application/json"));
            }
            Ok(Response::from_parts(parts, Full::new(body)))
        }
        failed => {
            let msg = parts
                .headers
                .get(protocol::MESSAGE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("handler failed");
            let status = if failed == Outcome::Timeout {
                StatusCode::GATEWAY_TIMEOUT
            } else {
                StatusCode::INTERNAL_SERVER_ERROR
            };
            Ok(errors::text(
                status,
                format!(
                    "function {} failed ({}): {msg}\n",
                    d.name(),
                    failed.as_str()
                ),
            ))
        }
    }
}

/// Send a request to a deployment, recording metrics.
pub async fn invoke(
    gw: &Gateway,
    d: &Arc<Deployment>,
    req: Request<Full<Bytes>>,
) -> Result<crate::dispatch::Reply, ApiError> {
    let started = tokio::time::Instant::now();
    let r = d.call(req).await;
    let outcome = match &r {
        Ok(reply) => reply.outcome.as_str(),
        Err(crate::dispatch::DispatchError::Timeout { .. }) => "timeout",
        Err(_) => "rejected",
    };
    gw.metrics
        .requests
        .with_label_values(&[d.name(), outcome])
        .inc();
    gw.metrics
        .duration
        .with_label_values(&[d.name()])
        .observe(started.elapsed().as_secs_f64());
    Ok(r?)
}

/// Headers that describe one connection, not the message; bodies are re-framed by hyper.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "transfer-encoding",
    "upgrade",
    "proxy-connection",
    "te",
    "trailer",
    "content-length",
];

fn strip_protocol_headers(h: &mut hyper::HeaderMap) {
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
