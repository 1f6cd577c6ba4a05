//! Dispatch, the data path's core: one [`Deployment`] per live function version. It records
//! the request in the function's load window, admits it through the activator
//! [`gate::Gate`] (waiting while instances start, poking the control loop), sends it over the
//! [`transport`] and classifies the reply. In-flight requests are counted with guards so a
//! retired version drains before its sandbox stops.
//!
//! This layer knows nothing of deciders, recommenders or the registry: the control path
//! reads what it needs ([`Deployment::load`], the gate's figures) and writes back only the
//! sandbox's endpoint and its warm capacity ([`Deployment::set_ready`]).

pub mod gate;
pub mod load;
pub mod routes;
pub mod stream;
pub mod transport;

use std::ops::Deref;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::{Request, Response};
use parking_lot::Mutex;
use surge_runtime::exec::Outcome;
use surge_runtime::sandbox::protocol;
use surge_runtime::Kind;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use crate::manifest::FunctionSpec;
use gate::{Gate, GateError};
use load::Window;
use stream::ReplyBody;
use transport::{Endpoint, TransportError};

/// How long a request may wait, beyond the function's timeout, for the sandbox's answer
/// before the host gives up on its own (the sandbox enforces the timeout itself first).
const TIMEOUT_GRACE: Duration = Duration::from_millis(500);

#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error("function {function} is overloaded: {reason}")]
    Overloaded { function: String, reason: String },
    #[error("function {function} has no running sandbox: {reason}")]
    Unavailable { function: String, reason: String },
    #[error("function {function} timed out after {timeout_ms} ms")]
    Timeout { function: String, timeout_ms: u64 },
    #[error("function {function}'s sandbox failed during the request: {reason}")]
    SandboxFailed { function: String, reason: String },
    #[error("function {function}'s response is over its limit of {limit} bytes")]
    ResponseTooLarge { function: String, limit: usize },
    /// Over the function's reserved concurrency (Lambda's
    /// `ReservedFunctionConcurrentInvocationLimitExceeded`).
    #[error("function {function} is at its reserved concurrency of {reserved}: rate exceeded")]
    Reserved { function: String, reserved: u32 },
}

/// Requests one instance runs at once: `concurrency` for event handlers (each concurrent
/// event runs in its own wasm instance, sharing the instance's CPU), 1 for http (a wasi:http
/// 0.2 instance serves one request at a time).
pub fn per_instance(spec: &FunctionSpec, kind: Kind) -> u32 {
    match kind {
        Kind::Http => 1,
        Kind::Event => spec.scaling.concurrency.max(1),
    }
}

/// Requests `instances` instances run at once.
pub fn executions(spec: &FunctionSpec, kind: Kind, instances: u32) -> u32 {
    instances.saturating_mul(per_instance(spec, kind))
}

/// Bucket width of a function's load window: fine enough for its panic window.
fn window_granularity(spec: &FunctionSpec) -> Duration {
    (spec.scaling.panic_window.0 / 30).clamp(Duration::from_millis(20), Duration::from_secs(1))
}

/// The load figures the control path reads at one instant.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Load {
    /// Average requests inside over the two spans asked for; None: not enough data.
    pub long_average: Option<f64>,
    pub short_average: Option<f64>,
    /// Arrivals per second over the short span, and the long one.
    pub short_rate: Option<f64>,
    pub long_rate: Option<f64>,
    /// Requests inside now (executing + queued).
    pub current: u64,
    /// When the level last became 0; None while requests are inside.
    pub idle_since: Option<Instant>,
}

/// What the sandbox said, classified. A streamed response's outcome is the head's (`Ok`):
/// how its body ends reaches [`ReplyBody::on_end`].
pub struct Reply {
    pub outcome: Outcome,
    pub response: Response<ReplyBody>,
}

/// Counters the data path keeps for status and metrics.
#[derive(Default)]
pub struct Counters {
    pub requests: AtomicU64,
    pub errors: AtomicU64,
    /// Requests that arrived with no instance ready: each waited for a start (a cold
    /// start, a restart, or one still being pre-warmed).
    pub cold_requests: AtomicU64,
    /// Requests refused for capacity: over the reserved concurrency, a full queue, or a
    /// wait past `queue_timeout` (counted in `errors` too).
    pub throttles: AtomicU64,
}

/// What the data path learnt of one call, for its invocation record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CallNotes {
    /// It arrived with no instance ready, and waited `init` for one to start.
    pub cold: bool,
    pub init: Option<Duration>,
}

pub struct Deployment {
    pub spec: FunctionSpec,
    pub kind: Kind,
    pub version: u64,
    pub wasm_sha256: String,
    pub deployed_at_unix: i64,
    /// The live sandbox, or None while it (re)starts.
    endpoint: watch::Receiver<Option<Arc<Endpoint>>>,
    /// The activator: admission to ready capacity, and the queue in front of it.
    pub gate: Arc<Gate>,
    /// Instances the sandbox reports warm (0 with no sandbox).
    ready: AtomicU32,
    /// Requests inside (queued or executing) over time, and arrivals.
    load: Mutex<Window>,
    /// Wakes the control loop at once (a request had to queue)...
    poke: Arc<Notify>,
    /// ... marks this deployment as one to decide on...
    poked: AtomicBool,
    /// ... and wakes this version's supervisor (a retiring version at zero starts itself).
    demand: Notify,
    inflight: AtomicUsize,
    drained: Notify,
    /// Retired: a hold taken now is refused (the caller looks the route up again). Set
    /// only once this version has left the route table.
    closed: AtomicBool,
    pub counters: Counters,
    pub start_timeout: Duration,
    /// Asynchronous events due and not yet handed over (the event queue sets it): demand,
    /// as queued requests are.
    backlog: AtomicU64,
    /// Lambda's reserved concurrency (`u32::MAX`: none), the function's: the most
    /// invocations inside at once, queued or executing, of which this node admits its part
    /// (`reserved()`); the next gets `DispatchError::Reserved`.
    reserved: AtomicU32,
    /// Lambda's provisioned concurrency (0: none), the function's: executions kept warm, of
    /// which this node keeps its part (`provisioned()`).
    provisioned: AtomicU32,
    /// Bytes of node memory one more instance takes at the quota in force, and what the
    /// sandbox itself takes besides when the pool is at zero (kept by the supervisor): what
    /// a cluster's placement compares with a node's free memory.
    instance_memory: AtomicU64,
    overhead_memory: AtomicU64,
    /// In a cluster, this node's part of the counts set for the whole function (reserved
    /// and provisioned concurrency, `min_instances`): its rank in the function's ring order and the number
    /// of nodes, as `rank << 32 | nodes` (alone: 0 of 1). See [`part_of`].
    share: AtomicU64,
}

/// The part of `total` that the node at `rank` of `nodes` holds: an even split, the
/// remainder to the first in ring order (the function's home first). The parts sum to
/// `total`.
pub fn part_of(total: u32, rank: u32, nodes: u32) -> u32 {
    let nodes = nodes.max(1);
    total / nodes + u32::from(rank < total % nodes)
}

/// Counts a request in flight until it is dropped, however the request ends. Borrowed
/// inside [`Deployment::call`]; owned ([`Hold`]) from the route lookup on.
pub struct InflightGuard<D: Deref<Target = Deployment>>(D);

impl<D: Deref<Target = Deployment>> InflightGuard<D> {
    fn enter(d: D) -> Self {
        // SeqCst, against `close`: either the retiring side sees this request in flight, or
        // this side sees the version closed (a Dekker pair: store, then load the other).
        d.inflight.fetch_add(1, Ordering::SeqCst);
        InflightGuard(d)
    }
}

impl Hold {
    pub fn deployment(&self) -> &Arc<Deployment> {
        &self.0
    }
}

impl<D: Deref<Target = Deployment>> Drop for InflightGuard<D> {
    fn drop(&mut self) {
        if self.0.inflight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.drained.notify_waiters();
        }
    }
}

/// Keeps a deployment from draining while a request is on its way to [`Deployment::call`]
/// (its body still uploading, or an async invocation not yet started).
pub type Hold = InflightGuard<Arc<Deployment>>;

/// Takes a request out of the load level when it is answered, however it ends.
struct LevelGuard(Arc<Deployment>);

impl Drop for LevelGuard {
    fn drop(&mut self) {
        self.0.load.lock().change(Instant::now(), -1);
    }
}

impl Deployment {
    /// Count a request in flight from the moment its route is looked up: a version swapped
    /// out meanwhile then waits for it instead of stopping its sandbox under it.
    ///
    /// None once the version is closed: it was swapped out of the table between the
    /// caller's lookup and this hold, and may already be stopping. The caller looks the
    /// route up again, in the table that replaced it.
    pub fn hold(self: &Arc<Self>) -> Option<Hold> {
        let h = InflightGuard::enter(self.clone());
        (!self.closed.load(Ordering::SeqCst)).then_some(h)
    }

    /// Refuse new holds (after the version left the route table). A hold taken before this
    /// is still waited for by [`drain`](Self::drain).
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }

    #[allow(clippy::too_many_arguments)]
    pub fn new(
        spec: FunctionSpec,
        kind: Kind,
        version: u64,
        wasm_sha256: String,
        deployed_at_unix: i64,
        endpoint: watch::Receiver<Option<Arc<Endpoint>>>,
        poke: Arc<Notify>,
        start_timeout: Duration,
    ) -> Self {
        let window = Window::new(
            Instant::now(),
            window_granularity(&spec),
            spec.scaling.stable_window.0,
        );
        let gate = Arc::new(Gate::new(0, spec.scaling.queue_depth));
        Deployment {
            spec,
            kind,
            version,
            wasm_sha256,
            deployed_at_unix,
            endpoint,
            gate,
            ready: AtomicU32::new(0),
            load: Mutex::new(window),
            poke,
            poked: AtomicBool::new(false),
            demand: Notify::new(),
            inflight: AtomicUsize::new(0),
            drained: Notify::new(),
            closed: AtomicBool::new(false),
            counters: Counters::default(),
            start_timeout,
            backlog: AtomicU64::new(0),
            reserved: AtomicU32::new(u32::MAX),
            provisioned: AtomicU32::new(0),
            instance_memory: AtomicU64::new(0),
            overhead_memory: AtomicU64::new(0),
            share: AtomicU64::new(1),
        }
    }

    pub fn name(&self) -> &str {
        self.spec.name.as_str()
    }

    pub fn inflight(&self) -> usize {
        self.inflight.load(Ordering::SeqCst)
    }

    pub fn sandbox_pid(&self) -> Option<u32> {
        self.endpoint.borrow().as_ref().map(|e| e.pid)
    }

    /// Wait until no request is in flight.
    pub async fn drain(&self) {
        loop {
            let notified = self.drained.notified();
            if self.inflight() == 0 {
                return;
            }
            notified.await;
        }
    }

    fn timeout(&self) -> Duration {
        self.spec.limits.timeout.0
    }

    /// Instances the sandbox has warm; sets the gate's capacity to match.
    pub fn set_ready(&self, instances: u32) {
        self.ready.store(instances, Ordering::Release);
        self.gate
            .set_capacity(executions(&self.spec, self.kind, instances));
    }

    pub fn ready(&self) -> u32 {
        self.ready.load(Ordering::Acquire)
    }

    /// Record what one more instance takes of the node's memory, and the sandbox's own
    /// overhead (bytes).
    pub fn set_memory_need(&self, instance: u64, overhead: u64) {
        self.instance_memory.store(instance, Ordering::Relaxed);
        self.overhead_memory.store(overhead, Ordering::Relaxed);
    }

    /// (one more instance, the sandbox's overhead), in bytes.
    pub fn memory_need(&self) -> (u64, u64) {
        (
            self.instance_memory.load(Ordering::Relaxed),
            self.overhead_memory.load(Ordering::Relaxed),
        )
    }

    /// Whether a request admitted now would start at once: an execution is free.
    pub fn has_idle(&self) -> bool {
        self.gate.has_idle()
    }

    /// The load at `now`, averaged over `long` and `short`.
    pub fn load(&self, now: Instant, long: Duration, short: Duration) -> Load {
        let mut w = self.load.lock();
        Load {
            long_average: w.average_concurrency(now, long),
            short_average: w.average_concurrency(now, short),
            short_rate: w.arrival_rate(now, short),
            long_rate: w.arrival_rate(now, long),
            current: w.level(),
            idle_since: w.idle_since(),
        }
    }

    /// The idle spans that ended after the first `seen` (see [`Window::gaps_after`]).
    pub fn idle_gaps(&self, seen: u64) -> (Vec<load::Gap>, u64) {
        self.load.lock().gaps_after(seen)
    }

    /// Instances busy on average over the last `span` (requests inside ÷ per instance), at
    /// most the ready ones: what a sandbox's CPU is divided by to get one instance's.
    pub fn busy_instances(&self, now: Instant, span: Duration) -> f64 {
        let level = self
            .load
            .lock()
            .average_concurrency(now, span)
            .unwrap_or(0.0);
        (level / per_instance(&self.spec, self.kind) as f64).min(self.ready() as f64)
    }

    /// The event queue's due backlog for this function. A backlog that grows wakes the
    /// control loop, as a request that has to queue does.
    pub fn set_backlog(&self, events: u64) {
        if self.backlog.swap(events, Ordering::AcqRel) < events {
            self.poked.store(true, Ordering::Release);
            self.poke.notify_one();
            self.demand.notify_one();
        }
    }

    pub fn backlog(&self) -> u64 {
        self.backlog.load(Ordering::Acquire)
    }

    /// Executions the event queue may hand over now, with `async_in_flight` of its own
    /// already out: the warm capacity left free (within the reserved concurrency), and
    /// none while a synchronous request waits in the gate. Synchronous requests come first;
    /// events fill what they leave.
    pub fn spare_capacity(&self, async_in_flight: u32) -> u32 {
        if self.gate.queued() > 0 {
            return 0;
        }
        // Events handed over but not yet admitted are not in `busy` yet.
        self.gate
            .capacity()
            .min(self.reserved())
            .saturating_sub(self.gate.busy().max(async_in_flight))
    }

    /// Reserved concurrency: None for none (unlimited).
    pub fn set_reserved(&self, executions: Option<u32>) {
        self.reserved
            .store(executions.unwrap_or(u32::MAX), Ordering::Release);
    }

    /// The reserved concurrency this node enforces (`u32::MAX`: none): its part of the
    /// function's, and at least one while that is not 0: a reservation below the number of
    /// nodes is one per node (else a node would refuse every request, and never deliver
    /// the events it accepted).
    pub fn reserved(&self) -> u32 {
        match self.reserved_total() {
            u32::MAX => u32::MAX,
            0 => 0,
            r => self.part(r).max(1),
        }
    }

    /// The function's reserved concurrency, across the cluster (`u32::MAX`: none).
    pub fn reserved_total(&self) -> u32 {
        self.reserved.load(Ordering::Acquire)
    }

    /// Whether the invocations inside (queued or executing) are at the reserved
    /// concurrency this node enforces.
    pub fn at_reserved(&self) -> bool {
        let r = self.reserved();
        r != u32::MAX && self.load.lock().level() >= u64::from(r)
    }

    /// This node's rank in the function's ring order, of `nodes` (a cluster's membership
    /// or the function's home moved). A larger part of provisioned concurrency wakes the
    /// control loop at once.
    pub fn set_share(&self, rank: u32, nodes: u32) {
        let before = (self.provisioned(), self.min_instances());
        let new = (u64::from(rank) << 32) | u64::from(nodes.max(1));
        let old = self.share.swap(new, Ordering::AcqRel);
        if old != new && (self.provisioned() > before.0 || self.min_instances() > before.1) {
            self.poked.store(true, Ordering::Release);
            self.poke.notify_one();
            self.demand.notify_one();
        }
    }

    /// The manifest's `min_instances`, as this node keeps it: alone, all of it; in a
    /// cluster, its part (the function's home first).
    pub fn min_instances(&self) -> u32 {
        self.part(self.spec.scaling.min_instances)
    }

    fn part(&self, total: u32) -> u32 {
        let s = self.share.load(Ordering::Acquire);
        part_of(total, (s >> 32) as u32, s as u32)
    }

    /// Provisioned concurrency: executions kept warm (0: none). Raising it wakes the control
    /// loop at once.
    pub fn set_provisioned(&self, executions: u32) {
        if self.provisioned.swap(executions, Ordering::AcqRel) < executions {
            self.poked.store(true, Ordering::Release);
            self.poke.notify_one();
            self.demand.notify_one();
        }
    }

    /// The provisioned concurrency this node keeps warm: its part of the function's.
    pub fn provisioned(&self) -> u32 {
        self.part(self.provisioned_total())
    }

    /// The function's provisioned concurrency, across the cluster.
    pub fn provisioned_total(&self) -> u32 {
        self.provisioned.load(Ordering::Acquire)
    }

    /// The pool's bounds that reserved and provisioned concurrency set, in instances:
    /// (at least, at most).
    pub fn concurrency_bounds(&self) -> (u32, u32) {
        let per = per_instance(&self.spec, self.kind);
        let most = match self.reserved() {
            u32::MAX => u32::MAX,
            r => r.div_ceil(per),
        };
        let least = self
            .provisioned()
            .div_ceil(per)
            .min(most)
            .min(self.spec.scaling.max_instances);
        (least, most)
    }

    /// Whether a request queued here since the last call (the control loop's poke round
    /// decides only on these).
    pub fn take_poke(&self) -> bool {
        self.poked.swap(false, Ordering::AcqRel)
    }

    /// Resolves when a request has to queue here (a permit is kept if none waits).
    pub async fn demanded(&self) {
        self.demand.notified().await
    }

    /// Run one request through the sandbox. A streamed reply keeps the request counted
    /// (in flight, in the load level, holding its permit) until its body ends.
    pub async fn call(self: &Arc<Self>, req: Request<Bytes>) -> Result<Reply, DispatchError> {
        self.call_noted(req, &mut CallNotes::default()).await
    }

    /// [`call`](Self::call), noting whether the request was a cold one, and its wait.
    pub async fn call_noted(
        self: &Arc<Self>,
        req: Request<Bytes>,
        notes: &mut CallNotes,
    ) -> Result<Reply, DispatchError> {
        let inflight = InflightGuard::enter(self.clone());
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        let r = self.call_inner(req, inflight, notes).await;
        match &r {
            Ok(reply) if reply.outcome == Outcome::Ok => {}
            Err(DispatchError::Reserved { .. } | DispatchError::Overloaded { .. }) => {
                self.counters.throttles.fetch_add(1, Ordering::Relaxed);
                self.counters.errors.fetch_add(1, Ordering::Relaxed);
            }
            _ => {
                self.counters.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        r
    }

    async fn call_inner(
        self: &Arc<Self>,
        req: Request<Bytes>,
        inflight: Hold,
        notes: &mut CallNotes,
    ) -> Result<Reply, DispatchError> {
        let name = || self.name().to_string();
        // The request counts in the function's concurrency from arrival (queued or not)
        // until it is answered: that is the level the autoscaler averages.
        let arrived = Instant::now();
        {
            let warm = self.ready() > 0;
            if !warm {
                self.counters.cold_requests.fetch_add(1, Ordering::Relaxed);
                notes.cold = true;
            }
            let now = arrived;
            let mut w = self.load.lock();
            // Reserved concurrency caps the invocations inside, queued or executing; one
            // over it never counts as an arrival (as Lambda, a throttle is no invocation).
            // (In a cluster, this node's part: the client is told the function's.)
            if w.level() >= u64::from(self.reserved()) {
                return Err(DispatchError::Reserved {
                    function: name(),
                    reserved: self.reserved_total(),
                });
            }
            w.arrival(now);
            w.change_found(now, 1, warm);
        }
        let level = LevelGuard(self.clone());
        // Admission: a warm instance now, or a place in the activator queue while the
        // autoscaler (poked at once) brings one up.
        let wait = self.spec.scaling.queue_timeout.0;
        let poke = || {
            self.poked.store(true, Ordering::Release);
            self.poke.notify_one();
            self.demand.notify_one();
        };
        let permit = match self.gate.enter(wait, |_| poke()).await {
            Ok(p) => p,
            Err(GateError::QueueFull) => {
                return Err(DispatchError::Overloaded {
                    function: name(),
                    reason: format!(
                        "its queue of {} waiting requests is full",
                        self.spec.scaling.queue_depth
                    ),
                })
            }
            Err(GateError::TimedOut) => {
                return Err(DispatchError::Overloaded {
                    function: name(),
                    reason: format!(
                        "no instance was ready within its queue_timeout of {}",
                        self.spec.scaling.queue_timeout
                    ),
                })
            }
        };
        let endpoint = self.live_endpoint(None).await?;
        if notes.cold {
            notes.init = Some(arrived.elapsed());
        }
        let limit = self.spec.limits.max_body.0 as usize;
        let deadline = tokio::time::Instant::now() + self.timeout() + TIMEOUT_GRACE;
        let mut sent = tokio::time::timeout_at(deadline, endpoint.send(req, limit, deadline)).await;
        if let Ok(Err(TransportError::NotDelivered { request, .. })) = sent {
            // The request never left: a pooled connection was already closed, or the
            // sandbox is gone. A new connection tells which; if the sandbox is gone, the
            // request goes to the replacement the supervisor starts. Either way it is sent
            // once: a delivered request is never sent twice.
            sent =
                tokio::time::timeout_at(deadline, endpoint.send_fresh(*request, limit, deadline))
                    .await;
            if let Ok(Err(TransportError::NotDelivered { request, .. })) = sent {
                let next = self.live_endpoint(Some(&endpoint)).await?;
                sent =
                    tokio::time::timeout_at(deadline, next.send(*request, limit, deadline)).await;
            }
        }
        let response = match sent {
            Err(_) => {
                return Err(DispatchError::Timeout {
                    function: name(),
                    timeout_ms: self.timeout().as_millis() as u64,
                })
            }
            Ok(Err(TransportError::TooLarge(limit))) => {
                return Err(DispatchError::ResponseTooLarge {
                    function: name(),
                    limit,
                })
            }
            Ok(Err(e)) => {
                return Err(DispatchError::SandboxFailed {
                    function: name(),
                    reason: e.to_string(),
                })
            }
            Ok(Ok(r)) => r,
        };
        let mut response = response;
        if response.body().is_streamed() {
            let d = self.clone();
            response.body_mut().on_end(move |ended| {
                // A client that went away is not the function's error.
                if matches!(
                    ended,
                    stream::Ended::Failed { .. } | stream::Ended::Broken(_)
                ) {
                    d.counters.errors.fetch_add(1, Ordering::Relaxed);
                }
                drop((permit, level, inflight));
            });
        }
        let outcome = response
            .headers()
            .get(protocol::OUTCOME)
            .and_then(|v| v.to_str().ok())
            .and_then(Outcome::parse)
            .unwrap_or(Outcome::Ok);
        Ok(Reply { outcome, response })
    }

    /// The live sandbox, other than `failed`; while it restarts, wait up to the start timeout.
    async fn live_endpoint(
        &self,
        failed: Option<&Arc<Endpoint>>,
    ) -> Result<Arc<Endpoint>, DispatchError> {
        let usable = |e: &Option<Arc<Endpoint>>| match (e, failed) {
            (Some(e), Some(f)) => !Arc::ptr_eq(e, f),
            (Some(_), None) => true,
            (None, _) => false,
        };
        {
            let current = self.endpoint.borrow();
            if usable(&current) {
                return Ok(current.clone().expect("usable is Some"));
            }
        }
        let mut rx = self.endpoint.clone();
        let waited = tokio::time::timeout(self.start_timeout, async {
            rx.wait_for(usable).await.map(|e| e.clone())
        })
        .await;
        match waited {
            Ok(Ok(e)) => Ok(e.expect("waited for Some")),
            Ok(Err(_)) => Err(DispatchError::Unavailable {
                function: self.name().into(),
                reason: "the function was removed".into(),
            }),
            Err(_) => Err(DispatchError::Unavailable {
                function: self.name().into(),
                reason: format!(
                    "its sandbox did not come back within {}s",
                    self.start_timeout.as_secs()
                ),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::part_of;

    #[test]
    fn parts_add_up_to_the_whole_with_the_remainder_first_in_ring_order() {
        for nodes in 1..6 {
            for total in 0..20 {
                let parts: Vec<u32> = (0..nodes).map(|r| part_of(total, r, nodes)).collect();
                assert_eq!(parts.iter().sum::<u32>(), total, "{total} over {nodes}");
                assert!(parts.windows(2).all(|w| w[0] >= w[1] && w[0] - w[1] <= 1));
            }
        }
        assert_eq!(part_of(1, 0, 3), 1, "home first");
        assert_eq!(part_of(1, 2, 3), 0);
        assert_eq!(part_of(7, 0, 1), 7, "alone: all of it");
    }
}
