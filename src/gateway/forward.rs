//! In a cluster, a function's request is served at the node placement picks
//! (`cluster::Cluster::place`): here, or forwarded there over HTTP, one hop at most.
//!
//! A forwarded request's body is read whole first (within the function's limits, as a local
//! one is): a node that refuses the connection (dead, or cut off) never saw the request, so
//! the same bytes go to the next node, and a request is lost only when a node dies while it
//! runs there. Only synchronous invocations move: an `Event` is queued where it arrives.
//!
//! A node that gets a forwarded request it cannot serve answers 421 with `x-surge-not-here`
//! and the forwarder tries the next node: the function is not deployed there yet, or (only
//! while the forwarder has another node left that is not marked down, `x-surge-may-shed`)
//! the node is at its part of the function's reserved concurrency, or no execution is free
//! and its memory cannot hold another instance. If every node that answered shed it, the
//! first of them gets it again without the header: it waits there for an instance, or is
//! throttled.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Body as _;
use hyper::body::Incoming;
use hyper::{Request, Response};

use super::body::read_body;
use super::context::Gateway;
use super::errors::{ApiError, HttpResponse, Surface, Throttled};
use crate::cluster::{Cluster, InFlight, Target, FORWARDED, MAY_SHED};
use crate::dispatch::routes::Resolved;
use crate::dispatch::stream::ReplyBody;
use crate::dispatch::{Deployment, DispatchError};

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
    let d = match routes.resolve_path(req.uri().path()) {
        Resolved::Live(d) => d.clone(),
        _ if req.headers().contains_key(FORWARDED) => return Decision::Done(not_here(NOT_YET)),
        _ => return Decision::Here(req, None),
    };
    let limits = &d.spec.limits;
    let (limit, timeout) = (limits.max_body.0, limits.timeout.0);
    decide(&c, req, &d, limit, timeout, Surface::Route).await
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
    let d = match routes.resolve_name(name) {
        Resolved::Live(d) => d.clone(),
        _ if req.headers().contains_key(FORWARDED) => return Decision::Done(not_here(NOT_YET)),
        _ => return Decision::Here(req, None),
    };
    let limits = &d.spec.limits;
    let limit = limits.max_body.0.min(crate::events::SYNC_PAYLOAD_LIMIT);
    let timeout = limits.timeout.0;
    decide(&c, req, &d, limit, timeout, Surface::Lambda).await
}

/// A forwarded request this node does not serve, and why: the forwarder tries the next
/// node.
const NOT_HERE: &str = "x-surge-not-here";

/// Not deployed on this node yet (its deploy from the catalog still under way), or
/// stopping.
const NOT_YET: &str = "not deployed on this node yet";
/// Shed: at this node's part of the reserved concurrency, or no execution free and no
/// memory for another instance.
const NO_ROOM: &str = "no room on this node";

/// Whether `req` was forwarded by a node that can still take it elsewhere.
pub fn may_shed(req: &Request<Incoming>) -> bool {
    req.headers().contains_key(FORWARDED) && req.headers().contains_key(MAY_SHED)
}

/// A request this node refused for its part of the reserved concurrency (two came in at
/// once past `Cluster::can_take`'s look), which its forwarder can take elsewhere: shed.
pub fn shed_throttled(may_shed: bool, resp: HttpResponse) -> HttpResponse {
    if may_shed && resp.extensions().get::<Throttled>().is_some() {
        return not_here(NO_ROOM);
    }
    resp
}

fn not_here(why: &'static str) -> HttpResponse {
    Response::builder()
        .status(hyper::StatusCode::MISDIRECTED_REQUEST)
        .header(NOT_HERE, why)
        .body(ReplyBody::from(format!("{why}\n")))
        .expect("valid response")
}

async fn decide(
    c: &Arc<Cluster>,
    req: Request<Incoming>,
    d: &Arc<Deployment>,
    limit: u64,
    timeout: std::time::Duration,
    surface: Surface,
) -> Decision {
    let name = d.name();
    if req.headers().contains_key(FORWARDED) {
        // At its part of the reserved concurrency, or short of memory since it last said:
        // shed what it cannot take while the forwarder has another node to try.
        if may_shed(&req) && !c.can_take(d, true) {
            return Decision::Done(not_here(NO_ROOM));
        }
        return Decision::Here(req, Some(c.place_here(name).begin()));
    }
    // Cut off from etcd (no lease), the node is most likely cut off from the others too:
    // it serves what it has itself.
    if !c.in_catalog(name) || c.live_lease().is_none() {
        return Decision::Here(req, Some(c.place_here(name).begin()));
    }
    let mut targets = c.place(d);
    match targets.first() {
        Some(t) if t.local => {
            if targets.len() == 1 || c.can_take(d, false) {
                return Decision::Here(req, Some(t.begin()));
            }
            // At its part of the reserved concurrency, or short of memory since it last
            // said: the others first, this node last.
            targets.rotate_left(1);
        }
        None => return Decision::Here(req, None),
        Some(_) => {}
    }
    let (parts, body) = req.into_parts();
    let body = match read_body(body, &parts.headers, limit, || format!("function {name}")).await {
        Ok(b) => b,
        Err(e) => return Decision::Done(e.into_response(surface)),
    };
    let mut tried = Vec::new();
    // The first node that shed the request for lack of room.
    let mut shed_by = None;
    // Here too, when it comes to that: over loopback, since the body is read already.
    for (i, t) in targets.iter().enumerate() {
        // A node may shed while a later one can still be tried (one not marked down).
        let may_shed = targets[i + 1..].iter().any(|t| !t.down);
        match attempt(c, t, &parts, &body, timeout, may_shed, name, surface).await {
            Attempt::Done(resp) => return Decision::Done(resp),
            Attempt::NotHere(why) => {
                if why == NO_ROOM && shed_by.is_none() {
                    shed_by = Some(i);
                }
                tried.push(format!("{}: {why}", t.node));
            }
            Attempt::Unreached(e) => tried.push(format!("{}: {e}", t.node)),
        }
    }
    // Every node that answered was short: the first that shed takes it after all (it
    // waits for an instance there, or is throttled), rather than the client getting 503.
    if let Some(i) = shed_by {
        let t = &targets[i];
        match attempt(c, t, &parts, &body, timeout, false, name, surface).await {
            Attempt::Done(resp) => return Decision::Done(resp),
            Attempt::NotHere(why) => tried.push(format!("{} again: {why}", t.node)),
            Attempt::Unreached(e) => tried.push(format!("{} again: {e}", t.node)),
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

/// How one forward went.
enum Attempt {
    /// An answer for the client (relayed, or a 503 for a node that failed mid-request).
    Done(HttpResponse),
    /// The node did not take it (421), and why.
    NotHere(String),
    /// It never left: the node refused or did not accept the connection.
    Unreached(String),
}

#[allow(clippy::too_many_arguments)]
async fn attempt(
    c: &Cluster,
    t: &Target,
    parts: &hyper::http::request::Parts,
    body: &Bytes,
    timeout: std::time::Duration,
    may_shed: bool,
    name: &str,
    surface: Surface,
) -> Attempt {
    let guard = t.begin();
    match send(c, t, parts, body.clone(), timeout, may_shed).await {
        Ok(resp) if resp.headers().contains_key(NOT_HERE) => Attempt::NotHere(
            resp.headers()[NOT_HERE]
                .to_str()
                .unwrap_or("not served")
                .to_string(),
        ),
        Ok(resp) => Attempt::Done(relay(resp, guard, name, surface, timeout).await),
        Err(Failure::Connect(e)) => {
            if !t.local {
                c.mark_down(&t.node);
            }
            Attempt::Unreached(e)
        }
        Err(Failure::Broken(e)) => {
            // It may have run there: not sent again. A connection broken mid-request is
            // most likely a node that died: the next requests go around it. (A node merely
            // slow to answer is not marked: it is alive.)
            if !t.local && !e.starts_with(SILENT) {
                c.mark_down(&t.node);
            }
            Attempt::Done(
                ApiError::Dispatch(DispatchError::Unavailable {
                    function: name.to_string(),
                    reason: format!("node {} failed during the request: {e}", t.node),
                })
                .into_response(surface),
            )
        }
    }
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
    may_shed: bool,
) -> Result<Response<Incoming>, Failure> {
    let pq = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut b = Request::builder()
        .method(parts.method.clone())
        .uri(format!("{}{pq}", t.url));
    for (k, v) in &parts.headers {
        if !NOT_PASSED.contains(&k.as_str()) && k != "content-length" && k != MAY_SHED {
            b = b.header(k, v);
        }
    }
    if may_shed {
        b = b.header(MAY_SHED, "1");
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
