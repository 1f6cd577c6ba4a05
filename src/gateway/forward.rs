//! In a cluster, a function's request is served at the node placement picks
//! (`cluster::Cluster::place`): here, or forwarded there over HTTP, one hop at most.
//!
//! A forwarded request's body is read whole first (within the function's limits, as a local
//! one is): a node that refuses the connection (dead, or cut off) never saw the request, so
//! the same bytes go to the next node, and a request is lost only when a node dies while it
//! runs there. Only synchronous invocations move: an `Event` is queued where it arrives.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Body as _;
use hyper::body::Incoming;
use hyper::{Request, Response};

use super::body::read_body;
use super::context::Gateway;
use super::errors::{ApiError, HttpResponse, Surface};
use crate::cluster::{Cluster, InFlight, Target, FORWARDED};
use crate::dispatch::routes::Resolved;
use crate::dispatch::stream::ReplyBody;
use crate::dispatch::DispatchError;

/// How a forward that timed out says so.
const SILENT: &str = "no answer within";

/// Beyond the function's timeout, how long a forwarded request waits for its answer's head
/// (a cold start, the hop).
const ANSWER_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// A whole response up to this size is passed on whole; a larger or open-ended one streams.
const WHOLE_UP_TO: u64 = 256 * 1024;

pub enum Decision {
    /// Serve it here (counted as this node's load while the guard lives).
    Here(Request<Incoming>, Option<InFlight>),
    /// Served elsewhere (or refused): the answer.
    Done(HttpResponse),
}

/// A function route's request.
pub async fn route(gw: &Gateway, req: Request<Incoming>) -> Decision {
    let Some(c) = gw.cluster.clone() else {
        return Decision::Here(req, None);
    };
    let routes = gw.registry.routes();
    let (name, limits) = match routes.resolve_path(req.uri().path()) {
        Resolved::Live(d) => (d.name().to_string(), d.spec.limits.clone()),
        _ if req.headers().contains_key(FORWARDED) => return Decision::Done(not_here()),
        _ => return Decision::Here(req, None),
    };
    let (limit, timeout) = (limits.max_body.0, limits.timeout.0);
    decide(&c, req, &name, limit, timeout, Surface::Route).await
}

/// An Invoke API request (`{name}/invocations`).
pub async fn invoke(gw: &Gateway, rest: &str, req: Request<Incoming>) -> Decision {
    let Some(c) = gw.cluster.clone() else {
        return Decision::Here(req, None);
    };
    let sync = req
        .headers()
        .get("x-amz-invocation-type")
        .is_none_or(|v| v.as_bytes() == b"RequestResponse");
    let decoded = super::lambda_control::path_decode(rest);
    let Some(name) = super::lambda::parse_path(&decoded).filter(|_| sync) else {
        return Decision::Here(req, None);
    };
    let routes = gw.registry.routes();
    let (limit, timeout) = match routes.resolve_name(name) {
        Resolved::Live(d) => (
            d.spec
                .limits
                .max_body
                .0
                .min(crate::events::SYNC_PAYLOAD_LIMIT),
            d.spec.limits.timeout.0,
        ),
        _ if req.headers().contains_key(FORWARDED) => return Decision::Done(not_here()),
        _ => return Decision::Here(req, None),
    };
    let name = name.to_string();
    decide(&c, req, &name, limit, timeout, Surface::Lambda).await
}

/// A forwarded request for a function this node does not serve yet (its deploy from the
/// catalog still under way): the forwarder tries the next node.
const NOT_HERE: &str = "x-surge-not-here";

fn not_here() -> HttpResponse {
    Response::builder()
        .status(hyper::StatusCode::MISDIRECTED_REQUEST)
        .header(NOT_HERE, "1")
        .body(ReplyBody::from(
            "not deployed on this node yet\n".to_string(),
        ))
        .expect("valid response")
}

async fn decide(
    c: &Arc<Cluster>,
    req: Request<Incoming>,
    name: &str,
    limit: u64,
    timeout: std::time::Duration,
    surface: Surface,
) -> Decision {
    let forwarded = req.headers().contains_key(FORWARDED);
    // Cut off from etcd (no lease), the node is most likely cut off from the others too:
    // it serves what it has itself.
    if forwarded || !c.in_catalog(name) || c.live_lease().is_none() {
        let here = c.place_here(name);
        return Decision::Here(req, Some(here.begin()));
    }
    let targets = c.place(name);
    match targets.first() {
        Some(t) if t.local => return Decision::Here(req, Some(t.begin())),
        None => return Decision::Here(req, None),
        Some(_) => {}
    }
    let (parts, body) = req.into_parts();
    let body = match read_body(body, &parts.headers, limit, || format!("function {name}")).await {
        Ok(b) => b,
        Err(e) => return Decision::Done(e.into_response(surface)),
    };
    let mut tried = Vec::new();
    // Here too, when it comes to that: over loopback, since the body is read already.
    for t in &targets {
        let guard = t.begin();
        match send(c, t, &parts, body.clone(), timeout).await {
            Ok(resp) if resp.headers().contains_key(NOT_HERE) => {
                tried.push(format!("{}: not deployed there yet", t.node));
            }
            Ok(resp) => return Decision::Done(relay(resp, guard, name, surface, timeout).await),
            Err(Failure::Connect(e)) => {
                if !t.local {
                    c.mark_down(&t.node);
                }
                tried.push(format!("{}: {e}", t.node));
            }
            Err(Failure::Broken(e)) => {
                // It may have run there: not sent again. A connection broken mid-request
                // is most likely a node that died: the next requests go around it. (A
                // node merely slow to answer is not marked: it is alive.)
                if !t.local && !e.starts_with(SILENT) {
                    c.mark_down(&t.node);
                }
                return Decision::Done(
                    ApiError::Dispatch(DispatchError::Unavailable {
                        function: name.to_string(),
                        reason: format!("node {} failed during the request: {e}", t.node),
                    })
                    .into_response(surface),
                );
            }
        }
    }
    Decision::Done(
        ApiError::Dispatch(DispatchError::Unavailable {
            function: name.to_string(),
            reason: format!(
                "no node of the cluster could be reached ({})",
                tried.join("; ")
            ),
        })
        .into_response(surface),
    )
}

enum Failure {
    /// No connection: the request never left.
    Connect(String),
    /// Sent, and then the connection failed.
    Broken(String),
}

/// Hop-by-hop headers, and those hyper sets itself.
const NOT_PASSED: [&str; 10] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
];

async fn send(
    c: &Cluster,
    t: &Target,
    parts: &hyper::http::request::Parts,
    body: Bytes,
    timeout: std::time::Duration,
) -> Result<Response<Incoming>, Failure> {
    let pq = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut b = Request::builder()
        .method(parts.method.clone())
        .uri(format!("{}{pq}", t.url));
    for (k, v) in &parts.headers {
        if !NOT_PASSED.contains(&k.as_str()) && k != "content-length" {
            b = b.header(k, v);
        }
    }
    let req = b
        .header(FORWARDED, c.node.as_str())
        .body(Full::new(body))
        .map_err(|e| Failure::Connect(e.to_string()))?;
    // The answer's head within the function's timeout (and its start): a node gone
    // silent (a link down under a pooled connection) must not hold the request forever.
    let limit = timeout + ANSWER_GRACE;
    match tokio::time::timeout(limit, c.http.request(req)).await {
        Ok(r) => r.map_err(|e| {
            if e.is_connect() {
                Failure::Connect(e.to_string())
            } else {
                Failure::Broken(e.to_string())
            }
        }),
        Err(_) => Err(Failure::Broken(format!("{SILENT} {limit:?}"))),
    }
}

/// The other node's answer, as ours: whole when small, else streamed (the request counts
/// as in flight there until its body ends).
async fn relay(
    resp: Response<Incoming>,
    guard: InFlight,
    name: &str,
    surface: Surface,
    timeout: std::time::Duration,
) -> HttpResponse {
    // The body, as its head, within the function's timeout and grace: a node that goes
    // silent mid-body does not hold the client, nor this request's count, forever.
    let limit = timeout + ANSWER_GRACE;
    let (mut parts, body) = resp.into_parts();
    for h in NOT_PASSED {
        parts.headers.remove(h);
    }
    let small = body.size_hint().exact().is_some_and(|n| n <= WHOLE_UP_TO);
    if small {
        parts.headers.remove("content-length");
        let bytes = match tokio::time::timeout(limit, body.collect()).await {
            Ok(Ok(b)) => b.to_bytes(),
            Err(_) => {
                return ApiError::Dispatch(DispatchError::Unavailable {
                    function: name.to_string(),
                    reason: format!("the serving node's answer stopped ({SILENT} {limit:?})"),
                })
                .into_response(surface)
            }
            Ok(Err(e)) => {
                return ApiError::Dispatch(DispatchError::Unavailable {
                    function: name.to_string(),
                    reason: format!("the serving node's answer broke off: {e}"),
                })
                .into_response(surface)
            }
        };
        drop(guard);
        return Response::from_parts(parts, ReplyBody::from(bytes));
    }
    parts.headers.remove("content-length");
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(8);
    tokio::spawn(async move {
        let _guard = guard;
        let mut body = body;
        while let Ok(Some(frame)) = tokio::time::timeout(limit, body.frame()).await {
            let Ok(frame) = frame else { break };
            if let Ok(data) = frame.into_data() {
                if tx.send(data).await.is_err() {
                    break;
                }
            }
        }
    });
    Response::from_parts(parts, ReplyBody::Feed(rx))
}
