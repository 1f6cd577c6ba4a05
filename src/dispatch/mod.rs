//! Dispatch: one [`Deployment`] per live function version. It admits a request (bounded by
//! the pool's capacity), waits for a live sandbox if one is (re)starting, sends the request
//! over the transport and classifies the reply. In-flight requests are counted with guards so
//! a retired version drains before its sandbox stops.

pub mod transport;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use surge_runtime::exec::Outcome;
use surge_runtime::sandbox::protocol;
use surge_runtime::Kind;
use tokio::sync::{watch, Notify, Semaphore};

use crate::manifest::FunctionSpec;
use transport::{Endpoint, TransportError};

/// How long a request may wait, beyond the function's timeout, for the sandbox's answer
/// before the host gives up on its own (the sandbox enforces the timeout itself first).
const TIMEOUT_GRACE: Duration = Duration::from_millis(500);

#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error("function {function} is overloaded: no instance freed up within {waited_ms} ms")]
    Overloaded { function: String, waited_ms: u64 },
    #[error("function {function} has no running sandbox: {reason}")]
    Unavailable { function: String, reason: String },
    #[error("function {function} timed out after {timeout_ms} ms")]
    Timeout { function: String, timeout_ms: u64 },
    #[error("function {function}'s sandbox failed during the request: {reason}")]
    SandboxFailed { function: String, reason: String },
    #[error("function {function}'s response is over its limit of {limit} bytes")]
    ResponseTooLarge { function: String, limit: usize },
}

/// How many requests a function version runs at once: its pool size, times `concurrency`
/// for event handlers (each concurrent event runs in its own instance). A wasi:http 0.2
/// instance serves one request at a time, so for http it is the pool size.
pub fn executions(spec: &FunctionSpec, kind: Kind) -> u32 {
    let per_instance = match kind {
        Kind::Http => 1,
        Kind::Event => spec.scaling.concurrency,
    };
    (spec.pool_size() * per_instance).max(1)
}

/// What the sandbox said, classified.
pub struct Reply {
    pub outcome: Outcome,
    pub response: Response<Bytes>,
}

/// Counters a deployment keeps for status and metrics.
#[derive(Default)]
pub struct Counters {
    pub requests: AtomicU64,
    pub errors: AtomicU64,
    pub restarts: AtomicU64,
}

pub struct Deployment {
    pub spec: FunctionSpec,
    pub kind: Kind,
    pub version: u64,
    pub wasm_sha256: String,
    pub deployed_at_unix: i64,
    /// The live sandbox, or None while it (re)starts.
    endpoint: watch::Receiver<Option<Arc<Endpoint>>>,
    admission: Semaphore,
    inflight: AtomicUsize,
    drained: Notify,
    pub counters: Counters,
    /// Cgroup directories, for status.
    pub cgroup_dirs: Vec<std::path::PathBuf>,
    pub start_timeout: Duration,
}

/// Decrements the in-flight count when a request is done, however it ends.
struct InflightGuard<'a>(&'a Deployment);

impl Drop for InflightGuard<'_> {
    fn drop(&mut self) {
        if self.0.inflight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.drained.notify_waiters();
        }
    }
}

/// Keeps a deployment from draining while a request is on its way to [`Deployment::call`]
/// (its body still uploading, or an async invocation not yet started).
pub struct Hold(Arc<Deployment>);

impl Drop for Hold {
    fn drop(&mut self) {
        if self.0.inflight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.drained.notify_waiters();
        }
    }
}

impl Deployment {
    /// Count a request in flight from the moment its route is looked up: a version swapped
    /// out meanwhile then waits for it instead of stopping its sandbox under it.
    pub fn hold(self: &Arc<Self>) -> Hold {
        self.inflight.fetch_add(1, Ordering::AcqRel);
        Hold(self.clone())
    }

    #[allow(clippy::too_many_arguments)]
    pub fn new(
        spec: FunctionSpec,
        kind: Kind,
        version: u64,
        wasm_sha256: String,
        deployed_at_unix: i64,
        endpoint: watch::Receiver<Option<Arc<Endpoint>>>,
        cgroup_dirs: Vec<std::path::PathBuf>,
        start_timeout: Duration,
    ) -> Self {
        let capacity = executions(&spec, kind) as usize;
        Deployment {
            spec,
            kind,
            version,
            wasm_sha256,
            deployed_at_unix,
            endpoint,
            admission: Semaphore::new(capacity),
            inflight: AtomicUsize::new(0),
            drained: Notify::new(),
            counters: Counters::default(),
            cgroup_dirs,
            start_timeout,
        }
    }

    pub fn name(&self) -> &str {
        self.spec.name.as_str()
    }

    pub fn inflight(&self) -> usize {
        self.inflight.load(Ordering::Acquire)
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

    /// Run one request through the sandbox.
    pub async fn call(&self, req: Request<Full<Bytes>>) -> Result<Reply, DispatchError> {
        self.inflight.fetch_add(1, Ordering::AcqRel);
        let _guard = InflightGuard(self);
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        let r = self.call_inner(req).await;
        if !matches!(&r, Ok(reply) if reply.outcome == Outcome::Ok) {
            self.counters.errors.fetch_add(1, Ordering::Relaxed);
        }
        r
    }

    async fn call_inner(&self, req: Request<Full<Bytes>>) -> Result<Reply, DispatchError> {
        let name = || self.name().to_string();
        // Admission: wait for a free instance for at most the function's timeout.
        let wait = self.timeout();
        let _permit = match tokio::time::timeout(wait, self.admission.acquire()).await {
            Ok(p) => p.expect("admission semaphore is never closed"),
            Err(_) => {
                return Err(DispatchError::Overloaded {
                    function: name(),
                    waited_ms: wait.as_millis() as u64,
                })
            }
        };
        let endpoint = self.live_endpoint(None).await?;
        let limit = self.spec.limits.max_body.0 as usize;
        let deadline = tokio::time::Instant::now() + self.timeout() + TIMEOUT_GRACE;
        let mut sent = tokio::time::timeout_at(deadline, endpoint.send(req, limit)).await;
        if let Ok(Err(TransportError::NotDelivered { request, .. })) = sent {
            // The request never left: a pooled connection was already closed, or the
            // sandbox is gone. A new connection tells which; if the sandbox is gone, the
            // request goes to the replacement the supervisor starts. Either way it is sent
            // once: a delivered request is never sent twice.
            sent = tokio::time::timeout_at(deadline, endpoint.send_fresh(*request, limit)).await;
            if let Ok(Err(TransportError::NotDelivered { request, .. })) = sent {
                let next = self.live_endpoint(Some(&endpoint)).await?;
                sent = tokio::time::timeout_at(deadline, next.send(*request, limit)).await;
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
