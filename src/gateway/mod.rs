//! The gateway: one hyper server on a TCP listener for the public routes, the Lambda Invoke
//! API, health, metrics and the admin API.
//!
//! `serve` takes a bound listener and a shutdown future, so tests bind port 0.

pub mod admin;
pub mod body;
pub mod context;
pub mod dashboard;
pub mod errors;
pub mod forward;
pub mod lambda;
pub mod lambda_async;
pub mod lambda_concurrency;
pub mod lambda_control;
pub mod lambda_deploy;
pub mod operations;
pub mod route;
pub mod sigv4;

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use crate::dispatch::stream::ReplyBody;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;

pub use context::Gateway;
use errors::{HttpResponse, Surface};

/// How long a connection may take to send a request's head.
const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

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

async fn handle(gw: &Arc<Gateway>, req: Request<Incoming>) -> HttpResponse {
    let path = req.uri().path();
    if path == "/healthz" {
        return errors::text(StatusCode::OK, "ok\n");
    }
    if path == "/metrics" {
        let mut body = gw.metrics.render(
            &gw.registry.list(),
            &gw.registry.node_status(),
            &gw.queue.stats(),
        );
        if let Some(r) = &gw.records {
            body.push_str(&records_metrics(&r.stats()));
        }
        return Response::builder()
            .header("content-type", "text/plain; version=0.0.4")
            .body(ReplyBody::from(body))
            .expect("valid response");
    }
    if path == dashboard::PREFIX || path.starts_with("/dashboard/") {
        return dashboard::handle(gw, req).await;
    }
    if path.starts_with("/admin/") {
        return admin::handle(gw, req)
            .await
            .unwrap_or_else(|e| e.into_response(Surface::Admin));
    }
    for prefix in [
        lambda_concurrency::RESERVED_PREFIX,
        lambda_concurrency::PREFIX,
    ] {
        if let Some(rest) = path.strip_prefix(prefix) {
            let rest = rest.to_string();
            return lambda_concurrency::handle(gw, prefix, &rest, req).await;
        }
    }
    if let Some(rest) = path.strip_prefix(lambda_async::PREFIX) {
        let rest = rest.to_string();
        return lambda_async::handle(gw, &rest, req).await;
    }
    // CreateFunction's path has no trailing slash.
    if path == lambda::PREFIX.trim_end_matches('/') {
        return lambda::handle(gw, "", req).await;
    }
    if let Some(rest) = path.strip_prefix(lambda::PREFIX) {
        let rest = rest.to_string();
        let (req, _here) = if rest.ends_with("/invocations") {
            match forward::invoke(gw, &rest, req).await {
                forward::Decision::Here(req, here) => (req, here),
                forward::Decision::Done(resp) => return resp,
            }
        } else {
            (req, None)
        };
        let shed = gw.cluster.is_some() && forward::may_shed(&req);
        let resp = lambda::handle(gw, &rest, req).await;
        return served_here(gw, forward::shed_throttled(shed, resp));
    }
    let (req, _here) = match forward::route(gw, req).await {
        forward::Decision::Here(req, here) => (req, here),
        forward::Decision::Done(resp) => return resp,
    };
    let shed = gw.cluster.is_some() && forward::may_shed(&req);
    let resp = route::route(gw, req).await;
    served_here(gw, forward::shed_throttled(shed, resp))
}

/// In a cluster, an answer names the node that served it.
fn served_here(gw: &Gateway, mut resp: HttpResponse) -> HttpResponse {
    if let Some(c) = &gw.cluster {
        if let Ok(v) = hyper::header::HeaderValue::from_str(&c.node) {
            resp.headers_mut().insert(crate::cluster::SERVED_BY, v);
        }
    }
    resp
}

/// The invocation records' figures, in Prometheus's text format.
fn records_metrics(s: &crate::observe::records::Stats) -> String {
    let mut out = String::new();
    for (name, kind, help, value) in [
        (
            "surge_log_records",
            "gauge",
            "Invocation records held (logs.db).",
            s.records,
        ),
        (
            "surge_log_record_bytes",
            "gauge",
            "Bytes of invocation records held.",
            s.bytes,
        ),
        (
            "surge_log_records_dropped_total",
            "counter",
            "Invocation records dropped because the writer was behind.",
            s.dropped,
        ),
        (
            "surge_log_records_pruned_total",
            "counter",
            "Invocation records deleted by a bound (count, bytes or age).",
            s.pruned,
        ),
    ] {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
        ));
    }
    out
}
