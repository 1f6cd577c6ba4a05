//! What every handler of the gateway shares: the registry, the admin token and the metrics,
//! and the one path every invocation takes to a deployment.

use std::sync::Arc;

use bytes::Bytes;
use hyper::Request;

use super::errors::ApiError;
use crate::dispatch::routes::{Resolved, Routes};
use crate::dispatch::{CallNotes, Deployment, DispatchError, Hold, Reply};
use crate::events::Queue;
use crate::metrics::Metrics;
use crate::observe::records::{Invocation, Records};
use crate::observe::timeline::Timeline;
use crate::registry::Registry;
use surge_runtime::exec::Outcome;
use surge_runtime::sandbox::protocol;

pub struct Gateway {
    pub registry: Arc<Registry>,
    /// Asynchronous invocations: accepted here, delivered by the queue's own task.
    pub queue: Arc<Queue>,
    pub admin_token: String,
    /// The Lambda control plane's access key (`gateway/sigv4.rs`).
    pub aws_keys: super::sigv4::Keys,
    /// Control-plane operations under way or failed (CreateFunction, UpdateFunctionCode…).
    pub lambda_ops: super::operations::Operations,
    pub metrics: Metrics,
    /// Invocation records (None: `[logs] records = false`).
    pub records: Option<Arc<Records>>,
    /// The dashboard's series and events, sampled once a second.
    pub timeline: Arc<parking_lot::Mutex<Timeline>>,
    /// The cluster this node is one of (None: a single node).
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
}

impl Gateway {
    /// Whether a Lambda control-plane request, read whole, may go on
    /// (`sigv4::authorize` against the host's keys and admin token).
    pub fn authorize_lambda(
        &self,
        parts: &hyper::http::request::Parts,
        body: &[u8],
    ) -> Result<(), ApiError> {
        super::sigv4::authorize(
            &super::sigv4::Signed {
                method: parts.method.as_str(),
                path: parts.uri.path(),
                query: parts.uri.query(),
                headers: &parts.headers,
                body,
            },
            &self.aws_keys,
            &self.admin_token,
            crate::aws::now_ms() / 1000,
        )
    }
}

/// What a request names: a route's path, or a function (the Invoke API).
#[derive(Clone, Copy, Debug)]
pub enum Target<'a> {
    Path(&'a str),
    Name(&'a str),
}

impl Target<'_> {
    fn resolve<'r>(&self, routes: &'r Routes) -> Resolved<'r> {
        match *self {
            Target::Path(p) => routes.resolve_path(p),
            Target::Name(n) => routes.resolve_name(n),
        }
    }

    fn not_found(&self) -> ApiError {
        match *self {
            Target::Path(p) => ApiError::NoRoute(p.to_string()),
            Target::Name(n) => ApiError::FunctionNotFound(n.to_string()),
        }
    }
}

/// Hold the live version that serves `target`.
///
/// - A version retired between the lookup and the hold refuses the hold; the table that
///   replaced it is already published (a closed version is never in the current table), so
///   the next lookup finds its successor, or nothing.
/// - A function the host is still deploying at start is waited for, up to its
///   `queue_timeout`, as in the activator queue; then 503 (429 on the Invoke API), never 404.
pub async fn hold(gw: &Gateway, target: Target<'_>) -> Result<Hold, ApiError> {
    let routes = gw.registry.routes();
    if let Resolved::Live(d) = target.resolve(&routes) {
        if let Some(h) = d.hold() {
            return Ok(h);
        }
    }
    // The slow path: subscribe, then look again in every table published from here on.
    let mut rx = gw.registry.watch_routes();
    let mut deadline = None;
    loop {
        let routes = rx.borrow_and_update().clone();
        let p = match target.resolve(&routes) {
            Resolved::Live(d) => match d.hold() {
                Some(h) => return Ok(h),
                None => continue,
            },
            Resolved::Unknown => return Err(target.not_found()),
            Resolved::Pending(p) => p,
        };
        let at = *deadline.get_or_insert_with(|| tokio::time::Instant::now() + p.wait);
        if !matches!(tokio::time::timeout_at(at, rx.changed()).await, Ok(Ok(()))) {
            return Err(ApiError::Dispatch(DispatchError::Unavailable {
                function: p.name.clone(),
                reason: "it is still being deployed".into(),
            }));
        }
    }
}

/// Send a request to a deployment, recording metrics and the invocation's record: every
/// invocation, synchronous or not, on any surface, goes through here. `rid` is its
/// request id.
pub async fn invoke(
    gw: &Gateway,
    d: &Arc<Deployment>,
    rid: &str,
    req: Request<Bytes>,
) -> Result<Reply, ApiError> {
    let started = tokio::time::Instant::now();
    let start_ms = gw.records.is_some().then(crate::aws::now_ms);
    let mut notes = CallNotes::default();
    let mut r = d.call_noted(req, &mut notes).await;
    // A streamed reply is counted when its body ends, with how it ended.
    if let Ok(reply) = &mut r {
        if reply.response.body().is_streamed() {
            let (requests, duration) = (gw.metrics.requests.clone(), gw.metrics.duration.clone());
            let name = d.name().to_string();
            let record = start_ms.map(|start_ms| {
                let mut inv = invocation(d, rid, start_ms, notes);
                inv.status = reply.response.status().as_u16();
                (gw.records.clone().expect("records on"), inv)
            });
            reply.response.body_mut().on_end(move |ended| {
                requests.with_label_values(&[&name, ended.outcome()]).inc();
                let took = started.elapsed();
                duration
                    .with_label_values(&[&name])
                    .observe(took.as_secs_f64());
                if let Some((records, mut inv)) = record {
                    inv.duration = took;
                    inv.outcome = ended.outcome();
                    if let crate::dispatch::stream::Ended::Failed { message, .. }
                    | crate::dispatch::stream::Ended::Broken(message) = ended
                    {
                        inv.message = Some(message.clone());
                    }
                    records.submit(inv);
                }
            });
            return Ok(r?);
        }
    }
    let outcome = match &r {
        Ok(reply) => reply.outcome.as_str(),
        Err(DispatchError::Timeout { .. }) => "timeout",
        Err(_) => "rejected",
    };
    gw.metrics
        .requests
        .with_label_values(&[d.name(), outcome])
        .inc();
    let took = started.elapsed();
    gw.metrics
        .duration
        .with_label_values(&[d.name()])
        .observe(took.as_secs_f64());
    if let (Some(records), Some(start_ms)) = (&gw.records, start_ms) {
        let mut inv = invocation(d, rid, start_ms, notes);
        inv.duration = took;
        match &r {
            Ok(reply) => {
                let h = reply.response.headers();
                let text = |name: &str| h.get(name).and_then(|v| v.to_str().ok());
                inv.outcome = reply.outcome.as_str();
                // A guest's failure: the status its route answers with.
                inv.status = match reply.outcome {
                    Outcome::Ok => reply.response.status().as_u16(),
                    failed => super::errors::guest_status(failed).as_u16(),
                };
                inv.max_memory_bytes = text(protocol::PEAK_MEMORY).and_then(|v| v.parse().ok());
                inv.message = text(protocol::MESSAGE).map(str::to_string);
                inv.log_base64 = text(protocol::LOG_TAIL)
                    .filter(|v| !v.is_empty())
                    .map(str::to_string);
            }
            Err(e) => {
                (inv.outcome, inv.status) = failure(e);
                inv.message = Some(e.to_string());
            }
        }
        records.submit(inv);
    }
    Ok(r?)
}

/// A record's fields known before the reply.
fn invocation(d: &Deployment, rid: &str, start_ms: i64, notes: CallNotes) -> Invocation {
    Invocation {
        request_id: rid.to_string(),
        function: d.name().to_string(),
        version: d.version,
        sandbox_pid: d.sandbox_pid(),
        start_ms,
        duration: Default::default(),
        cold: notes.cold,
        init: notes.init,
        outcome: "ok",
        status: 200,
        max_memory_bytes: None,
        memory_size_bytes: d.spec.limits.memory.0,
        message: None,
        log_base64: None,
    }
}

/// The outcome a record gives a host error, and the status a route answers it with.
fn failure(e: &DispatchError) -> (&'static str, u16) {
    let status = super::errors::dispatch_status(e, super::errors::Surface::Route).as_u16();
    let outcome = match e {
        DispatchError::Overloaded { .. } | DispatchError::Reserved { .. } => "throttled",
        DispatchError::Unavailable { .. } => "unavailable",
        DispatchError::Timeout { .. } => "timeout",
        DispatchError::SandboxFailed { .. } => "failed",
        DispatchError::ResponseTooLarge { .. } => "too_large",
    };
    (outcome, status)
}
