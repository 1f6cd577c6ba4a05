//! One supervisor task per live function version: an explicit state machine over the
//! version's sandbox, following the autoscaler's target and the vertical quota.
//!
//! ```text
//!            target > 0                 ready
//!   Zero ──────────────────▶ Starting ─────────▶ Running ──┐ target, quota, refit,
//!    ▲  ◀──────────────────      │                 │  ▲  ◀─┘ reports: fit the limits
//!    │      start failed         │ died            │  │
//!    │      (backoff)            ▼                 │  └── died: restart (Starting)
//!    └──────────────────────── Stopping ◀──────────┘ target 0: admit nothing, wait for the
//!        cgroup removed                              admitted requests, stop the sandbox
//! ```
//!
//! - Growing the pool grows the cgroup limits first, then tells the sandbox (`pool <n>`);
//!   the limits shrink only once the sandbox reports the instances gone.
//! - At zero there is no process and no cgroup. A retiring version at zero starts itself
//!   for requests still draining into it (the autoscaler no longer visits it).
//! - A new quota (the vertical recommender, or a manual resize) rewrites the cgroup limits
//!   in place and tells the sandbox the memory quota for new instances (`memory <n>`).
//! - Every limit it writes is first granted by the [`Node`] and fitted by
//!   [`fit`](crate::control::node::fit::fit): a pool the node's memory cannot hold is kept at
//!   what fits (the scale-up is refused and counted); CPU is divided.
//!
//! The process and the cgroup are behind traits ([`driver::Spawner`], and the runtime's
//! cgroup `Driver`), so the unit tests drive the machine against fakes.

pub mod driver;
pub mod process;
#[cfg(test)]
mod tests;
pub mod zygote;

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use surge_runtime::cgroup::usage::UsageReader;
use surge_runtime::cgroup::{Driver, SandboxCgroup, SandboxLimits};
use surge_runtime::ratelimit::RateLimit;
use surge_runtime::sandbox::protocol::{HostCommand, SandboxReport, SandboxSpec};
use surge_runtime::Kind;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use crate::control::autoscale::ahead::Ahead;
use crate::control::autoscale::keep::LivePolicy;
use crate::control::autoscale::scaler::{self, Scaler};
use crate::control::node::fit::{fit, memory_room, Fitted, PoolDemand};
use crate::control::node::{Node, Resources};
use crate::control::version::{Lifecycle, Phase, VersionControl};
use crate::control::vertical::quota::{Quota, QuotaUpdate};
use crate::control::vertical::recommender;
use crate::control::vertical::state::{Applied, Resize, VerticalState};
use crate::dispatch::transport::Endpoint;
use crate::dispatch::{executions, per_instance, Deployment};
use crate::manifest::config::SandboxConfig;
use crate::manifest::FunctionSpec;
use driver::{Sandbox, SandboxEvent, SpawnRequest, Spawner};
use process::SpawnError;

/// Pause before restarting a sandbox that died, so a crash loop cannot spin the host.
// Lines a guest's traffic or crashes can trigger, each rate-limited (runtime's ratelimit):
// a request pattern that cold-starts or crashes a sandbox every time must not flood the log.
static LOG_COLD_START: RateLimit = RateLimit::new(20, std::time::Duration::from_secs(10));
static LOG_RESTART: RateLimit = RateLimit::new(10, std::time::Duration::from_secs(10));
static LOG_START_FAILED: RateLimit = RateLimit::new(10, std::time::Duration::from_secs(10));
static LOG_SCALED_TO_ZERO: RateLimit = RateLimit::new(20, std::time::Duration::from_secs(10));

const RESTART_BACKOFF: Duration = Duration::from_millis(100);
/// Pause after a start that failed (ten restart backoffs).
const START_RETRY: Duration = Duration::from_millis(1000);
/// How long a stopping sandbox gets to exit on its own before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(2);
/// The CPU limit of a starting sandbox until its first report (right after its ready line),
/// whatever its quota. Exec, the
/// engine's and the pool's set-up and the first instantiation are start-up, not the
/// function's load: under a 250m quota they were throttled across CFS periods, and a 5 ms
/// start took up to a second (BENCHMARKS.md, "Cold start under its own quota"). The time is
/// still charged to the function's cgroup; the node's ledger counts the quota, as CPU above
/// it is compressible and this lasts until that report (or the start timeout).
const STARTUP_CPU_MILLICORES: u64 = 1000;

/// `n` threads, at most one per core of the CPU ceiling of `limits`.
fn threads_within(limits: Option<SandboxLimits>, n: u32) -> u32 {
    let cores = limits.map_or(u64::MAX, |l| l.cpu_ceiling_millicores.div_ceil(1000).max(1));
    n.min(u32::try_from(cores).unwrap_or(u32::MAX)).max(1)
}

/// `l` with the start-up allowance: a CPU ceiling of at least [`STARTUP_CPU_MILLICORES`].
fn startup_limits(l: SandboxLimits) -> SandboxLimits {
    SandboxLimits {
        cpu_ceiling_millicores: l.cpu_ceiling_millicores.max(STARTUP_CPU_MILLICORES),
        ..l
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Spawn(#[from] SpawnError),
    #[error(
        "function {function}: the node's memory cannot hold one instance: it needs {needed} \
         bytes (quota × 1 + sandbox overhead) and {free} of the node's {capacity} are free"
    )]
    Capacity {
        function: String,
        needed: u64,
        free: u64,
        capacity: u64,
    },
    #[error("function {function}: {source}")]
    Cgroup {
        function: String,
        #[source]
        source: surge_runtime::cgroup::CgroupError,
    },
}

/// What every sandbox start needs from the host.
pub struct SandboxCtx {
    pub spawner: Arc<dyn Spawner>,
    pub cgroups: Option<Arc<dyn Driver>>,
    /// Host-only folder for sandbox sockets.
    pub run_dir: PathBuf,
    pub config: SandboxConfig,
    /// Wakes the autoscaler's control loop (a request had to queue).
    pub poke: Arc<Notify>,
    /// The node's capacity, which every sandbox's limits must fit.
    pub node: Arc<Node>,
    /// The vertical recommender's parameters.
    pub vertical: recommender::Params,
    /// The keep-alive policies' tick and costs.
    pub keepalive: crate::manifest::config::KeepAliveConfig,
}

impl SandboxCtx {
    /// What a pool of `instances` at `quota` asks of its cgroup: memory for every execution
    /// that can run at once, plus the process's overhead; CPU for the instances (concurrent
    /// events on one instance share its CPU), guaranteed at the quota and bursting up to
    /// the `[vertical]` CPU ceiling unless the manifest says `cpu_burst = false`.
    pub fn demand(
        &self,
        spec: &FunctionSpec,
        kind: Kind,
        overhead_bytes: u64,
        quota: Quota,
        instances: u32,
    ) -> PoolDemand {
        PoolDemand {
            memory_per_instance_bytes: quota
                .memory_bytes
                .saturating_mul(per_instance(spec, kind) as u64),
            cpu_per_instance_millicores: quota.cpu_millicores,
            cpu_ceiling_per_instance_millicores: if spec.limits.cpu_burst {
                spec.vertical.bounds.cpu_max_millicores
            } else {
                quota.cpu_millicores
            },
            node_cpu_millicores: self.node.capacity().cpu_millicores,
            overhead_bytes,
            pids_max: self.config.pids_max as u64,
            instances,
        }
    }
}

/// The memory a sandbox of `kind` holds beside its instances: the configured overhead, plus
/// its compiled artifact, whose pages the kernel charges to the cgroup that faults them in
/// first. After a cold page cache that is the sandbox: hello's 35 MB artifact was charged
/// to its cgroup in full, and at 16Mi + 8Mi it ran at its limit (BENCHMARKS.md, "Density").
pub fn memory_overhead(config: &SandboxConfig, kind: Kind, artifact: &std::path::Path) -> u64 {
    // In whole pages: the kernel keeps a memory limit in pages, and status must match it.
    let artifact_bytes = std::fs::metadata(artifact).map_or(0, |m| m.len().div_ceil(4096) * 4096);
    config
        .memory_overhead
        .of(kind)
        .saturating_add(artifact_bytes)
}

/// The name of a version's cgroup, and its key in the node's ledger.
pub fn cgroup_name(function: &str, version: u64) -> String {
    format!("{function}-v{version}")
}

/// What the registry tells a supervisor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lifeline {
    Live,
    /// Out of the route table, draining: a request still draining in starts it from zero.
    Retiring,
    Stop,
}

/// A running function version and the handle that stops it.
pub struct Supervised {
    pub control: Arc<VersionControl>,
    lifeline: watch::Sender<Lifeline>,
    task: JoinHandle<()>,
}

impl Supervised {
    pub fn deployment(&self) -> &Arc<Deployment> {
        &self.control.deployment
    }

    /// Let in-flight requests finish, then stop the sandbox and remove its cgroup. The
    /// version must be out of the route table already.
    pub async fn retire(self) {
        let d = &self.control.deployment;
        let _ = self.lifeline.send(Lifeline::Retiring);
        d.drain().await;
        // A request that looked the version up before the swap may take its hold only
        // now: closing refuses it (it looks up again), and the second drain waits for any
        // hold taken before the close.
        d.close();
        d.drain().await;
        let _ = self.lifeline.send(Lifeline::Stop);
        let _ = self.task.await;
    }
}

/// One version to start: what the registry checked, compiled and numbered.
pub struct Version {
    pub spec: FunctionSpec,
    pub kind: Kind,
    pub version: u64,
    pub wasm_sha256: String,
    pub deployed_at_unix: i64,
    pub artifact: PathBuf,
    /// Dimensions a manual resize pinned (kept across versions).
    pub pins: QuotaUpdate,
    /// Start with no process (a restored version at `min_instances = 0`, proven at its first
    /// deploy): its first request cold-starts it.
    pub at_zero: bool,
    /// In a cluster, this node's rank in the function's order and the number of nodes
    /// (`Deployment::set_share`); alone, (0, 1).
    pub share: (u32, u32),
    /// The keep-alive policy's state a previous version or host kept (the store's).
    pub keepalive_state: Option<serde_json::Value>,
}

/// Start a version's first sandbox and its supervisor. The first start is the deploy's
/// proof that the handler loads and instantiates: its failure is the deploy's error, and
/// nothing is left behind. A version `at_zero` starts with no sandbox.
pub async fn start(ctx: Arc<SandboxCtx>, v: Version) -> Result<Supervised, StartError> {
    let Version {
        spec,
        kind,
        version,
        wasm_sha256,
        deployed_at_unix,
        artifact,
        pins,
        at_zero,
        share,
        keepalive_state,
    } = v;
    let name = spec.name.to_string();
    // The manifest's quota, with the dimensions a manual resize pinned (kept inside the
    // bounds of this version's manifest).
    let quota = spec.vertical.bounds.clamp(Quota {
        memory_bytes: pins.memory_bytes.unwrap_or(spec.limits.memory.0),
        cpu_millicores: pins.cpu_millicores.unwrap_or(spec.limits.cpu.0 as u64),
    });
    // Its part of `min_instances`, at least the one a start proves.
    let initial = crate::dispatch::part_of(spec.scaling.min_instances, share.0, share.1).max(1);
    let max_executions = executions(&spec, kind, spec.scaling.max_instances).max(1);
    // Threads count against the sandbox's pids limit: keep half of it for everything else
    // (the epoch ticker, the host watcher, blocking-pool threads). Configured: that many.
    // Auto: half the cores to start with (light guests lose with more), up to every core
    // while a heavy guest keeps them busy (control/vertical/threads.rs).
    let thread_cap = max_executions.min((ctx.config.pids_max / 2).max(1));
    let (threads_base, threads_max) = match ctx.config.threads {
        0 => (
            crate::manifest::config::auto_threads(0) as u32,
            std::thread::available_parallelism().map_or(1, |n| n.get()) as u32,
        ),
        n => (n, n),
    };
    let (threads_base, threads_max) = (threads_base.min(thread_cap), threads_max.min(thread_cap));
    let sandbox_spec = SandboxSpec {
        function: name.clone(),
        version,
        kind,
        instances: max_executions,
        initial,
        threads: threads_max,
        active_threads: threads_base,
        reuse: match kind {
            Kind::Http => spec.scaling.reuse,
            Kind::Event => 1,
        },
        memory_per_instance_bytes: quota.memory_bytes,
        memory_ceiling_bytes: spec.vertical.bounds.memory_max_bytes,
        timeout_ms: spec.limits.timeout.0.as_millis() as u64,
        max_body_bytes: spec.limits.max_body.0,
        env: spec
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    };
    let cgroup_name = cgroup_name(&name, version);
    let usage = UsageReader::new(
        ctx.cgroups
            .as_ref()
            .map(|d| d.dirs_of(&cgroup_name))
            .unwrap_or_default(),
    );
    let (ep_tx, ep_rx) = watch::channel(None);
    // The store's row: {"keep": the keep-alive policy's state, "rate": the forecasters'}.
    let part = |k: &str| keepalive_state.as_ref().and_then(|v| v.get(k));
    let keep = LivePolicy::new(&spec, &ctx.keepalive, part("keep"));
    let ahead = Ahead::new(&ctx.keepalive, part("rate"));
    let scaler = Scaler::new(
        scaler::params(&spec, kind),
        keep,
        ahead,
        if at_zero { 0 } else { initial },
    );
    let vertical = VerticalState::new(spec.vertical.clone(), quota, pins, &ctx.vertical);
    vertical.set_thread_range(threads_base, threads_max);
    let deployment = Arc::new(Deployment::new(
        spec,
        kind,
        version,
        wasm_sha256,
        deployed_at_unix,
        ep_rx,
        ctx.poke.clone(),
        ctx.config.start_timeout.0,
    ));
    deployment.set_share(share.0, share.1);
    let control = Arc::new(VersionControl {
        deployment,
        key: cgroup_name.clone(),
        memory_overhead_bytes: memory_overhead(&ctx.config, kind, &artifact),
        usage,
        scaler,
        vertical,
        lifecycle: Lifecycle::new(if at_zero {
            Phase::Zero
        } else {
            Phase::Starting
        }),
    });
    let mut job = Job {
        ctx: ctx.clone(),
        control: control.clone(),
        sandbox_spec,
        artifact,
        socket: ctx.run_dir.join(format!("{cgroup_name}.sock")),
        cgroup_name,
        cgroup: None,
        applied: None,
        applied_for: 0,
        quota,
        lifted: false,
        endpoint: ep_tx,
    };
    job.publish_memory_need();
    // Subscribed before the first start, which is for `initial`: a target or quota published
    // from here on is seen by the task, however soon after the deploy it comes.
    let (lifeline, lifeline_rx) = watch::channel(Lifeline::Live);
    let mut inputs = Inputs {
        target: control.scaler.watch_target(),
        resize: control.vertical.watch_resize(),
        threads: control.vertical.watch_threads(),
        lifeline: lifeline_rx,
    };
    inputs.target.mark_unchanged();
    inputs.resize.mark_unchanged();
    inputs.threads.mark_unchanged();
    let first = if at_zero {
        None
    } else {
        match job.start_sandbox(initial).await {
            Ok(s) => {
                // No request waits on a deploy: the quota holds from its return on.
                job.write_limits(job.applied).await;
                job.set_phase(Phase::Running);
                Some(s)
            }
            Err(e) => {
                job.remove_cgroup().await;
                job.control.lifecycle.set_phase(Phase::Stopped);
                return Err(e);
            }
        }
    };
    let task = tokio::spawn(job.supervise(first, inputs));
    Ok(Supervised {
        control,
        lifeline,
        task,
    })
}

/// The machine's state: the phases with something to hold. `Starting` and `Stopping` are
/// the transitions between them (published in the version's [`Phase`]).
enum State {
    Zero,
    Running(Box<dyn Sandbox>),
    Exit,
}

/// What woke the supervisor of a running sandbox.
enum Wake {
    Sandbox(SandboxEvent),
    Target,
    Resize,
    Threads,
    Refit,
    Lifeline,
    Stop,
}

/// The receivers a supervisor waits on.
struct Inputs {
    target: watch::Receiver<u32>,
    resize: watch::Receiver<Resize>,
    threads: watch::Receiver<u32>,
    lifeline: watch::Receiver<Lifeline>,
}

impl Inputs {
    fn retiring(&self) -> bool {
        *self.lifeline.borrow() != Lifeline::Live
    }
}

struct Job {
    ctx: Arc<SandboxCtx>,
    control: Arc<VersionControl>,
    sandbox_spec: SandboxSpec,
    artifact: PathBuf,
    socket: PathBuf,
    cgroup_name: String,
    /// The sandbox's cgroup while it has one (not at zero).
    cgroup: Option<Arc<dyn SandboxCgroup>>,
    /// The limits last written to the cgroup, and the pool size they are for.
    applied: Option<SandboxLimits>,
    applied_for: u32,
    /// The per-instance quota the limits are computed from.
    quota: Quota,
    /// The cgroup's CPU limit is the start-up allowance, above `applied`'s (from the cgroup's
    /// creation or a restart until the sandbox's first report).
    lifted: bool,
    endpoint: watch::Sender<Option<Arc<Endpoint>>>,
}

impl Job {
    fn name(&self) -> &str {
        &self.sandbox_spec.function
    }

    fn d(&self) -> &Deployment {
        &self.control.deployment
    }

    fn vertical(&self) -> &VerticalState {
        &self.control.vertical
    }

    fn demand(&self, instances: u32) -> PoolDemand {
        let d = self.d();
        let overhead = self.control.memory_overhead_bytes;
        self.ctx
            .demand(&d.spec, d.kind, overhead, self.quota, instances)
    }

    /// Ask the node for a pool of `instances`, and fit the pool into what it grants: fewer
    /// instances than asked when its memory is short (0: not even one). CPU is cut to the
    /// grant instead.
    fn plan(&self, instances: u32) -> (Fitted, Resources) {
        let demand = self.demand(instances);
        let v = &self.d().spec.vertical;
        let grant =
            self.ctx
                .node
                .request(&self.cgroup_name, demand.resources(), v.weight, v.priority);
        (fit(grant, &demand), grant)
    }

    /// Tell the node and status what the cgroup holds now.
    fn record_held(&self) {
        self.ctx.node.commit(&self.cgroup_name, self.held());
        self.vertical().set_limits(self.applied, self.quota);
        self.publish_memory_need();
    }

    /// What one more instance would take of the node, for a cluster's placement.
    fn publish_memory_need(&self) {
        let one = self.demand(1);
        self.d()
            .set_memory_need(one.memory_per_instance_bytes, one.overhead_bytes);
    }

    fn held(&self) -> Resources {
        self.applied.map(Resources::from).unwrap_or_default()
    }

    async fn send(&self, sb: &mut Box<dyn Sandbox>, cmd: HostCommand) {
        if let Err(e) = sb.send(cmd).await {
            tracing::warn!(function = %self.name(), error = %e, command = %cmd, "sending a command to the sandbox");
        }
    }

    /// Create the cgroup (if there is none) and spawn a sandbox warming `instances`.
    async fn start_sandbox(&mut self, instances: u32) -> Result<Box<dyn Sandbox>, StartError> {
        let t0 = tokio::time::Instant::now();
        let (fitted, _) = self.plan(instances);
        if fitted.instances == 0 {
            let free = self.ctx.node.memory_free_for(&self.cgroup_name);
            if self.cgroup.is_none() {
                // Nothing held: leave no demand behind in the ledger.
                self.ctx.node.release(&self.cgroup_name);
            } else {
                self.record_held();
            }
            return Err(StartError::Capacity {
                function: self.name().to_string(),
                needed: self.demand(1).limits(1).memory_bytes,
                free,
                capacity: self.ctx.node.capacity().memory_bytes,
            });
        }
        let instances = fitted.instances;
        let mut spec = self.sandbox_spec.clone();
        spec.initial = instances;
        // A restart or cold start takes up the threads the function had.
        spec.active_threads = threads_within(Some(fitted.limits), self.vertical().threads());
        spec.memory_per_instance_bytes = self.quota.memory_bytes;
        // The sandbox forks and loads while its cgroup is made; it is moved in before any
        // guest code runs (`process::spawn`).
        let spawner = self.ctx.spawner.clone();
        let artifact = self.artifact.clone();
        let (destination, placement) = tokio::sync::oneshot::channel();
        let spawning = spawner.spawn(SpawnRequest {
            spec: &spec,
            artifact: &artifact,
            socket: self.socket.clone(),
            destination: placement,
            start_timeout: self.ctx.config.start_timeout.0,
        });
        let placing = async {
            let made = self.make_cgroup(fitted.limits, instances).await;
            let files = made.is_ok().then(|| {
                self.cgroup
                    .as_ref()
                    .map(|c| c.procs_files())
                    .unwrap_or_default()
            });
            let _ = destination.send(files);
            (made, t0.elapsed())
        };
        let (started, (made, t_cgroup)) = tokio::join!(spawning, placing);
        // A start whose cgroup failed was called off (its child killed with it).
        made?;
        let started = match started {
            Ok(s) => s,
            Err(e) => {
                // No sandbox to start up: the quota holds again at once.
                self.write_limits(self.applied).await;
                return Err(e.into());
            }
        };
        // Ready. The quota is written back at the sandbox's first report, after the gate
        // opened: the request that woke the function does not wait for a cgroup write.
        tracing::debug!(
            function = %self.name(),
            cgroup_us = t_cgroup.as_micros() as u64,
            start_to_ready_us = t0.elapsed().as_micros() as u64,
            "sandbox started"
        );
        let _ = self.endpoint.send(Some(Arc::new(Endpoint::new(
            started.socket().to_path_buf(),
            started.pid(),
        ))));
        Ok(started)
    }

    /// Create the cgroup (if there is none) with the start-up allowance on `limits`, or
    /// refit the one a dead sandbox left for `instances`.
    async fn make_cgroup(
        &mut self,
        limits: SandboxLimits,
        instances: u32,
    ) -> Result<(), StartError> {
        if self.cgroup.is_none() {
            if let Some(driver) = self.ctx.cgroups.clone() {
                let name = self.cgroup_name.clone();
                let lifted = startup_limits(limits);
                let created = tokio::task::spawn_blocking(move || driver.create(&name, &lifted))
                    .await
                    .expect("cgroup creation does not panic");
                let cg = match created {
                    Ok(cg) => {
                        self.lifted = lifted != limits;
                        cg
                    }
                    Err(source) => {
                        self.ctx.node.release(&self.cgroup_name);
                        return Err(StartError::Cgroup {
                            function: self.name().to_string(),
                            source,
                        });
                    }
                };
                self.cgroup = Some(Arc::from(cg));
                self.vertical().new_cgroup();
            }
            // Without cgroups nothing enforces the limits, but the node still counts them.
            self.applied = Some(limits);
            self.applied_for = instances;
            self.record_held();
        } else {
            // A restart in the cgroup the dead sandbox left: the limits for the new pool,
            // then the start-up allowance on top.
            self.fit_limits(instances).await;
            self.write_limits(self.applied.map(startup_limits)).await;
        }
        Ok(())
    }

    /// `n` threads, at most one per core of the CPU ceiling the cgroup holds.
    fn threads_within_ceiling(&self, n: u32) -> u32 {
        threads_within(self.applied, n)
    }

    /// Write `limits` to the cgroup as they are: the start-up allowance (`applied` lifted)
    /// or its end (`applied`). What the node and status know stays `applied`.
    async fn write_limits(&mut self, limits: Option<SandboxLimits>) {
        let (Some(cg), Some(l)) = (self.cgroup.clone(), limits) else {
            return;
        };
        if self.applied.map(startup_limits) == self.applied {
            // The quota is at or above the allowance: nothing is lifted, nothing to restore.
            return;
        }
        let written = tokio::task::spawn_blocking(move || cg.apply(&l))
            .await
            .expect("cgroup writes do not panic");
        match written {
            Ok(()) => self.lifted = Some(l) != self.applied,
            Err(e) => {
                tracing::warn!(function = %self.name(), error = %e, "writing the sandbox's start-up limits")
            }
        }
    }

    /// Write the limits for a pool of `instances` (as far as the node grants them) if they
    /// differ from what the cgroup holds; returns the instances they hold. The memory limit
    /// never goes below what the cgroup uses now. A failed write keeps the old limits; the
    /// next report, tick or refit tries again.
    async fn fit_limits(&mut self, instances: u32) -> u32 {
        let (
            Fitted {
                limits,
                instances: fitted,
            },
            _,
        ) = self.plan(instances);
        let mut wanted = limits;
        let Some(cg) = self.cgroup.clone() else {
            if self.applied.is_some() {
                self.applied = Some(wanted);
                self.applied_for = fitted;
            }
            self.record_held();
            return fitted;
        };
        if fitted == 0 {
            // Not even one instance fits at this quota (a raise on a full node): keep what
            // the cgroup holds rather than write more than the grant.
            if self.lifted {
                self.write_limits(self.applied).await;
            }
            self.record_held();
            return self.applied_for;
        }
        let old = self.applied;
        // While the start-up allowance is on, the files differ from `applied`: write.
        if old == Some(wanted) && !self.lifted {
            self.record_held();
            return fitted;
        }
        // Off the async threads: lowering a memory limit makes the kernel reclaim in the
        // writing thread.
        let written = tokio::task::spawn_blocking(move || {
            if let Some(old) = old {
                if wanted.memory_bytes < old.memory_bytes {
                    // Instances made under a larger quota may still hold more than the new
                    // one allows: below the usage the kernel would reclaim or OOM-kill.
                    let used = cg.usage().memory_bytes;
                    wanted.memory_bytes = wanted.memory_bytes.max(used.min(old.memory_bytes));
                }
            }
            cg.apply(&wanted).map(|()| wanted)
        })
        .await
        .expect("cgroup writes do not panic");
        match written {
            Ok(w) => {
                self.applied = Some(w);
                self.applied_for = fitted;
                self.lifted = false;
            }
            Err(e) => {
                tracing::warn!(function = %self.name(), error = %e, "resizing the sandbox cgroup")
            }
        }
        self.record_held();
        fitted
    }

    /// Follow the target `t`: fit the limits, then tell the sandbox. A target the node's
    /// memory cannot hold is cut to what fits; the refusal shows in status and metrics and
    /// is retried at every refit.
    async fn scale_to(&mut self, t: u32, sb: &mut Box<dyn Sandbox>, new_target: bool) {
        let held = self.applied_for;
        let fitted = self.fit_limits(t.max(held)).await;
        let pool = t.min(fitted);
        let c = &self.vertical().counters;
        let limited = pool < t;
        let was = c.capacity_limited.swap(limited, Ordering::Relaxed);
        if limited && (new_target || !was) {
            c.capacity_refusals.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(function = %self.name(), target = t, fits = pool, "scale-up refused: the node's memory is short");
        }
        self.send(sb, HostCommand::Pool(pool)).await;
    }

    /// Apply a new quota: the cgroup first (growing before the sandbox may use it), then
    /// the sandbox's quota for new instances. Acknowledged with the decision-to-limits time.
    async fn apply_resize(&mut self, r: Resize, target: u32, sb: Option<&mut Box<dyn Sandbox>>) {
        let old = self.quota;
        self.quota = r.quota;
        if sb.is_some() && r.quota.memory_bytes > old.memory_bytes {
            // The instances held now must fit the node at the new quota; if they do not,
            // raise memory only as far as they do (the refusal is counted and shown).
            let held = self.applied_for.max(1);
            let (fitted, grant) = self.plan(held);
            if fitted.instances < held {
                let d = self.d();
                let room = memory_room(
                    grant.memory_bytes,
                    self.control.memory_overhead_bytes,
                    executions(&d.spec, d.kind, held),
                );
                self.quota.memory_bytes = room.clamp(old.memory_bytes, r.quota.memory_bytes);
                let c = &self.vertical().counters;
                c.capacity_refusals.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    function = %self.name(),
                    asked = r.quota.memory_bytes,
                    applied = self.quota.memory_bytes,
                    "memory raise cut: the node's memory is short"
                );
            }
        }
        if let Some(sb) = sb {
            self.scale_to(target, sb, false).await;
            self.send(sb, HostCommand::Memory(self.quota.memory_bytes))
                .await;
        }
        let latency_us = r.decided_at.elapsed().as_micros() as u64;
        tracing::info!(
            function = %self.name(),
            memory_bytes = r.quota.memory_bytes,
            cpu_millicores = r.quota.cpu_millicores,
            source = r.source.as_str(),
            limits = ?self.applied,
            latency_us,
            "quota applied"
        );
        self.vertical().set_applied(Applied {
            generation: r.generation,
            limits: self.applied,
            quota: Some(self.quota),
            latency_us,
        });
    }

    async fn remove_cgroup(&mut self) {
        self.ctx.node.release(&self.cgroup_name);
        self.lifted = false;
        self.applied = None;
        self.applied_for = 0;
        self.vertical().set_limits(None, self.quota);
        if let Some(cg) = self.cgroup.take() {
            let r = tokio::task::spawn_blocking(move || cg.destroy()).await;
            if let Ok(Err(e)) = r {
                tracing::warn!(function = %self.name(), error = %e, "removing the sandbox cgroup failed");
            }
        }
    }

    /// Stop the sandbox. The gate admits nothing from the start; the endpoint is withdrawn
    /// once the process is gone, so status shows a pid exactly while the process exists.
    async fn stop_sandbox(&mut self, sb: Box<dyn Sandbox>) {
        self.d().set_ready(0);
        sb.stop(STOP_GRACE).await;
        let _ = self.endpoint.send(None);
    }

    fn set_phase(&self, p: Phase) {
        self.control.lifecycle.set_phase(p);
    }

    async fn supervise(mut self, first: Option<Box<dyn Sandbox>>, mut inputs: Inputs) {
        // The next start is a cold start (from zero), not a restart after a crash.
        let mut cold = first.is_none();
        let mut state = first.map_or(State::Zero, State::Running);
        loop {
            state = match state {
                State::Zero => self.at_zero(&mut inputs, &mut cold).await,
                State::Running(sb) => self.running(sb, &mut inputs, &mut cold).await,
                State::Exit => break,
            };
        }
        self.set_phase(Phase::Stopping);
        self.remove_cgroup().await;
        self.ctx.node.release(&self.cgroup_name);
        let _ = std::fs::remove_file(&self.socket);
        self.set_phase(Phase::Stopped);
    }

    /// No process: wait for demand, or start one.
    async fn at_zero(&mut self, inputs: &mut Inputs, cold: &mut bool) -> State {
        if *inputs.lifeline.borrow() == Lifeline::Stop {
            return State::Exit;
        }
        let mut want = *inputs.target.borrow_and_update();
        if want == 0 && inputs.retiring() && self.d().inflight() > 0 {
            // Swapped out of the route table at zero, with requests still draining in.
            want = 1;
        }
        if want == 0 {
            if self.cgroup.is_some() {
                // The sandbox died while the target went to zero: finish the job.
                self.remove_cgroup().await;
                *cold = true;
                return State::Zero;
            }
            // A failed start may have left a demand in the ledger.
            self.ctx.node.release(&self.cgroup_name);
            self.set_phase(Phase::Zero);
            let retiring = inputs.retiring();
            // A resize at zero takes effect at the next start.
            tokio::select! {
                r = inputs.lifeline.changed() => if r.is_err() { return State::Exit },
                r = inputs.target.changed() => if r.is_err() { return State::Exit },
                r = inputs.resize.changed() => {
                    if r.is_err() { return State::Exit }
                    let r = *inputs.resize.borrow_and_update();
                    self.apply_resize(r, 0, None).await;
                }
                _ = self.control.deployment.demanded(), if retiring => {}
            }
            return State::Zero;
        }
        self.set_phase(Phase::Starting);
        let began = tokio::time::Instant::now();
        match self.start_sandbox(want).await {
            Ok(sb) => {
                let took = u64::try_from(began.elapsed().as_micros()).unwrap_or(u64::MAX);
                let l = &self.control.lifecycle;
                l.last_start_us.store(took.max(1), Ordering::Relaxed);
                if std::mem::take(cold) {
                    let l = &self.control.lifecycle;
                    l.cold_starts.fetch_add(1, Ordering::Relaxed);
                    if let Some(suppressed) = LOG_COLD_START.check() {
                        tracing::info!(function = %self.name(), version = self.d().version, pid = sb.pid(), instances = want, suppressed, "cold start");
                    }
                } else if let Some(suppressed) = LOG_RESTART.check() {
                    tracing::info!(function = %self.name(), version = self.d().version, pid = sb.pid(), suppressed, "sandbox restarted");
                }
                self.set_phase(Phase::Running);
                State::Running(sb)
            }
            Err(e) => {
                if let Some(suppressed) = LOG_START_FAILED.check() {
                    tracing::warn!(function = %self.name(), version = self.d().version, error = %e, suppressed, "sandbox start failed");
                }
                self.set_phase(Phase::Zero);
                let retry = tokio::time::sleep(START_RETRY);
                tokio::pin!(retry);
                loop {
                    // A resize may be what lets the next start fit: take it meanwhile. Only
                    // the retry time or a stop ends the wait.
                    tokio::select! {
                        r = inputs.lifeline.changed() => {
                            if r.is_err() || *inputs.lifeline.borrow() == Lifeline::Stop {
                                return State::Exit;
                            }
                        }
                        _ = &mut retry => return State::Zero,
                        r = inputs.resize.changed() => {
                            if r.is_err() { return State::Exit }
                            let r = *inputs.resize.borrow_and_update();
                            self.apply_resize(r, 0, None).await;
                        }
                    }
                }
            }
        }
    }

    /// A sandbox serves: follow its reports, the target and the quota.
    async fn running(
        &mut self,
        mut sb: Box<dyn Sandbox>,
        inputs: &mut Inputs,
        cold: &mut bool,
    ) -> State {
        let wake = tokio::select! {
            ev = sb.next_event() => Wake::Sandbox(ev),
            r = inputs.target.changed() => if r.is_err() { Wake::Stop } else { Wake::Target },
            r = inputs.resize.changed() => if r.is_err() { Wake::Stop } else { Wake::Resize },
            r = inputs.threads.changed() => if r.is_err() { Wake::Stop } else { Wake::Threads },
            _ = self.control.vertical.refit.notified() => Wake::Refit,
            r = inputs.lifeline.changed() => if r.is_err() { Wake::Stop } else { Wake::Lifeline },
        };
        match wake {
            Wake::Sandbox(SandboxEvent::Exited(status)) => {
                // Requests on the dead sandbox fail with 502 as their connections break;
                // new ones queue at the gate for the replacement.
                let _ = self.endpoint.send(None);
                self.d().set_ready(0);
                let l = &self.control.lifecycle;
                l.restarts.fetch_add(1, Ordering::Relaxed);
                if let Some(suppressed) = LOG_RESTART.check() {
                    tracing::warn!(function = %self.name(), version = self.d().version, pid = sb.pid(), status = %status, suppressed, "sandbox exited; restarting");
                }
                tokio::time::sleep(RESTART_BACKOFF).await;
                return State::Zero;
            }
            Wake::Sandbox(SandboxEvent::Report(SandboxReport::Memory {
                peak_bytes,
                denied_bytes,
            })) => self.vertical().observe_wasm(peak_bytes, denied_bytes),
            Wake::Sandbox(SandboxEvent::Report(SandboxReport::Warm { ready, slots })) => {
                self.d().set_ready(ready);
                // Limits may shrink only here, to what the sandbox really holds: its pool
                // places (ready, busy, instantiating) and the executions still running from
                // an earlier, larger capacity.
                let d = self.d();
                let running = d.gate.busy().div_ceil(per_instance(&d.spec, d.kind));
                let t = *inputs.target.borrow();
                self.fit_limits(t.max(slots).max(running)).await;
            }
            Wake::Target => {
                let t = *inputs.target.borrow_and_update();
                if t == 0 {
                    // Scale to zero: admit nothing more, let what was admitted finish, then
                    // stop. Requests arriving meanwhile queue and poke the autoscaler,
                    // which starts the function again.
                    self.set_phase(Phase::Stopping);
                    self.d().set_ready(0);
                    self.d().gate.wait_idle().await;
                    self.stop_sandbox(sb).await;
                    self.remove_cgroup().await;
                    *cold = true;
                    if let Some(suppressed) = LOG_SCALED_TO_ZERO.check() {
                        tracing::info!(function = %self.name(), version = self.d().version, suppressed, "scaled to zero");
                    }
                    return State::Zero;
                }
                // Grow the limits before the instances; shrink them only on a report, once
                // the sandbox holds fewer.
                self.scale_to(t, &mut sb, true).await;
            }
            Wake::Resize => {
                let r = *inputs.resize.borrow_and_update();
                let t = *inputs.target.borrow();
                self.apply_resize(r, t, Some(&mut sb)).await;
            }
            Wake::Threads => {
                let n = self.threads_within_ceiling(*inputs.threads.borrow_and_update());
                self.send(&mut sb, HostCommand::Threads(n)).await;
                // Open connections stay on their threads: drop the idle ones, so the next
                // requests connect anew and spread over the threads taking them now.
                if let Some(ep) = self.endpoint.borrow().as_ref() {
                    ep.drop_idle();
                }
            }
            Wake::Refit => {
                let t = *inputs.target.borrow();
                if t > 0 {
                    self.scale_to(t, &mut sb, false).await;
                }
            }
            Wake::Lifeline if *inputs.lifeline.borrow() != Lifeline::Stop => {}
            Wake::Lifeline | Wake::Stop => {
                self.set_phase(Phase::Stopping);
                self.stop_sandbox(sb).await;
                return State::Exit;
            }
        }
        State::Running(sb)
    }
}
