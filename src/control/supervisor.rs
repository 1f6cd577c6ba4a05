//! One supervisor task per live function version. It owns the sandbox process and follows
//! the autoscaler's target for the pool:
//! - target above zero with no sandbox: start one (a cold start), creating its cgroup;
//! - target changes: grow the cgroup limits first, then tell the sandbox (`pool <n>`);
//!   shrink the limits only once the sandbox reports the instances gone;
//! - target zero: close the gate, let admitted requests finish, stop the sandbox and
//!   remove its cgroup, so an idle function holds no process and no limits;
//! - the quota changes (the vertical recommender, or a manual resize): rewrite the cgroup
//!   limits in place and tell the sandbox the memory quota for new instances (`memory <n>`);
//!   the sandbox keeps its pid;
//! - every limit it writes is first granted by the [`Node`]: a pool the node's memory cannot
//!   hold is kept at what fits (the scale-up is refused and counted), CPU is divided;
//! - the sandbox dies: restart it (the host never goes down with a guest);
//! - retire: stop the sandbox and remove its cgroup.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use surge_runtime::cgroup::{Driver, SandboxCgroup, SandboxLimits};
use surge_runtime::sandbox::protocol::{self, SandboxSpec};
use surge_runtime::Kind;
use tokio::io::AsyncWriteExt;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use super::node::{Node, Resources};
use super::process::{self, Placement, SpawnError, Started};
use super::vertical::quota::{Quota, QuotaUpdate, CPU_MIN_MILLICORES};
use super::vertical::{recommender, Applied, Resize, VerticalState};
use crate::dispatch::transport::Endpoint;
use crate::dispatch::{executions, per_instance, Deployment};
use crate::manifest::config::SandboxConfig;
use crate::manifest::FunctionSpec;

/// Pause before restarting a sandbox that died, so a crash loop cannot spin the host.
const RESTART_BACKOFF: Duration = Duration::from_millis(100);
/// How long a stopping sandbox gets to exit on its own before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(2);

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
    /// The binary that runs `__sandbox`: the host's own executable, except in benchmarks,
    /// which are a different binary and point here at the built `surge`.
    pub exe: PathBuf,
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
}

impl SandboxCtx {
    /// Limits for a pool of `instances` at `quota`: memory for every execution that can run
    /// at once, plus the process's overhead; CPU for the instances (concurrent events on one
    /// instance share its CPU).
    pub fn limits_for(
        &self,
        spec: &FunctionSpec,
        kind: Kind,
        quota: Quota,
        instances: u32,
    ) -> SandboxLimits {
        SandboxLimits::for_pool(
            quota.memory_bytes,
            executions(spec, kind, instances) as u64,
            quota.cpu_millicores,
            instances as u64,
            self.config.memory_overhead.0,
            self.config.pids_max as u64,
        )
    }
}

/// A running function version and the handle that stops it.
pub struct Supervised {
    pub deployment: Arc<Deployment>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Supervised {
    /// Let in-flight requests finish, then stop the sandbox and remove its cgroup.
    pub async fn retire(self) {
        self.deployment.set_retiring();
        self.deployment.drain().await;
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

#[allow(clippy::too_many_arguments)]
pub async fn start(
    ctx: Arc<SandboxCtx>,
    spec: FunctionSpec,
    kind: Kind,
    version: u64,
    wasm_sha256: String,
    deployed_at_unix: i64,
    artifact: PathBuf,
    pins: QuotaUpdate,
) -> Result<Supervised, StartError> {
    let name = spec.name.to_string();
    // The manifest's quota, with the dimensions a manual resize pinned (kept inside the
    // bounds of this version's manifest).
    let quota = spec.vertical.bounds.clamp(Quota {
        memory_bytes: pins.memory_bytes.unwrap_or(spec.limits.memory.0),
        cpu_millicores: pins.cpu_millicores.unwrap_or(spec.limits.cpu.0 as u64),
    });
    let initial = spec.initial_instances();
    let max_executions = executions(&spec, kind, spec.scaling.max_instances).max(1);
    let sandbox_spec = SandboxSpec {
        function: name.clone(),
        version,
        kind,
        instances: max_executions,
        initial,
        // Threads count against the sandbox's pids limit: keep half of it for everything
        // else (the epoch ticker, the host watcher, blocking-pool threads).
        threads: (crate::manifest::config::auto_threads(ctx.config.threads) as u32)
            .min(max_executions)
            .min((ctx.config.pids_max / 2).max(1)),
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
    let cgroup_name = format!("{name}-v{version}");
    let cgroup_dirs = ctx
        .cgroups
        .as_ref()
        .map(|d| d.dirs_of(&cgroup_name))
        .unwrap_or_default();
    let (ep_tx, ep_rx) = watch::channel(None);
    let (target_tx, _) = watch::channel(initial);
    let vertical = VerticalState::new(spec.vertical.clone(), quota, pins, &ctx.vertical);
    let deployment = Arc::new(Deployment::new(
        spec,
        kind,
        version,
        wasm_sha256,
        deployed_at_unix,
        ep_rx,
        target_tx,
        ctx.poke.clone(),
        vertical,
        cgroup_dirs,
        ctx.config.start_timeout.0,
    ));
    let mut job = Job {
        ctx: ctx.clone(),
        kind,
        sandbox_spec,
        artifact,
        socket: ctx.run_dir.join(format!("{name}-v{version}.sock")),
        cgroup_name,
        cgroup: None,
        applied: None,
        applied_for: 0,
        quota,
        warm: 0,
        endpoint: ep_tx,
        deployment: deployment.clone(),
    };
    // The first start is the deploy's proof that the handler loads and instantiates: its
    // failure is the deploy's error, and nothing is left behind.
    let first = match job.start_sandbox(initial).await {
        Ok(s) => s,
        Err(e) => {
            job.remove_cgroup().await;
            return Err(e);
        }
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    let task = tokio::spawn(job.supervise(first, stop_rx));
    Ok(Supervised {
        deployment,
        stop: stop_tx,
        task,
    })
}

struct Job {
    ctx: Arc<SandboxCtx>,
    kind: Kind,
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
    /// Instances the sandbox last reported warm.
    warm: u32,
    endpoint: watch::Sender<Option<Arc<Endpoint>>>,
    deployment: Arc<Deployment>,
}

/// What woke the supervisor of a running sandbox.
enum Wake {
    Exited(std::io::Result<std::process::ExitStatus>),
    Report(Option<String>),
    Target,
    Resize,
    Refit,
    Stop,
}

impl Job {
    fn name(&self) -> &str {
        &self.sandbox_spec.function
    }

    fn limits(&self, instances: u32) -> SandboxLimits {
        self.ctx.limits_for(
            &self.deployment.spec,
            self.kind,
            self.quota,
            instances.max(1),
        )
    }

    /// The limits for a pool of `instances`, as far as the node grants them, and the
    /// instances they hold: fewer than asked when the node's memory is short (0: not even
    /// one), never fewer than the sandbox holds now. CPU is cut to the grant instead.
    fn plan(&self, instances: u32) -> (SandboxLimits, u32, Resources) {
        let wanted = self.limits(instances);
        let v = &self.deployment.spec.vertical;
        let grant = self.ctx.node.request(
            &self.cgroup_name,
            Resources {
                memory_bytes: wanted.memory_bytes,
                cpu_millicores: wanted.cpu_millicores,
            },
            v.weight,
            v.priority,
        );
        let mut fitted = instances;
        let mut limits = wanted;
        if grant.memory_bytes < wanted.memory_bytes {
            fitted = (1..instances)
                .rev()
                .find(|&n| self.limits(n).memory_bytes <= grant.memory_bytes)
                .unwrap_or(0);
            limits = self.limits(fitted);
        }
        // The kernel's minimum CFS quota: a grant below 10m still writes 10m.
        limits.cpu_millicores = limits
            .cpu_millicores
            .min(grant.cpu_millicores)
            .max(CPU_MIN_MILLICORES);
        (limits, fitted, grant)
    }

    /// Tell the node and status what the cgroup holds now.
    fn record_held(&self) {
        self.ctx.node.commit(&self.cgroup_name, self.held());
        self.deployment
            .vertical
            .set_limits(self.applied, self.quota);
    }

    fn held(&self) -> Resources {
        self.applied
            .map(|l| Resources {
                memory_bytes: l.memory_bytes,
                cpu_millicores: l.cpu_millicores,
            })
            .unwrap_or_default()
    }

    /// Create the cgroup (if there is none) and spawn a sandbox warming `instances`.
    async fn start_sandbox(&mut self, instances: u32) -> Result<Started, StartError> {
        let t0 = tokio::time::Instant::now();
        let (wanted, fitted, grant) = self.plan(instances);
        if fitted == 0 {
            let cap = self.ctx.node.capacity().memory_bytes;
            let others = self
                .ctx
                .node
                .status()
                .committed
                .memory_bytes
                .saturating_sub(grant.memory_bytes.max(self.held().memory_bytes));
            if self.cgroup.is_none() {
                // Nothing held: leave no demand behind in the ledger.
                self.ctx.node.release(&self.cgroup_name);
            } else {
                self.record_held();
            }
            return Err(StartError::Capacity {
                function: self.name().to_string(),
                needed: self.limits(1).memory_bytes,
                free: cap.saturating_sub(others),
                capacity: cap,
            });
        }
        let instances = fitted;
        if self.cgroup.is_none() {
            if let Some(driver) = self.ctx.cgroups.clone() {
                let name = self.cgroup_name.clone();
                let created = tokio::task::spawn_blocking(move || driver.create(&name, &wanted))
                    .await
                    .expect("cgroup creation does not panic");
                let cg = match created {
                    Ok(cg) => cg,
                    Err(source) => {
                        self.ctx.node.release(&self.cgroup_name);
                        return Err(StartError::Cgroup {
                            function: self.name().to_string(),
                            source,
                        });
                    }
                };
                self.cgroup = Some(Arc::from(cg));
                self.deployment.vertical.new_cgroup();
            }
            // Without cgroups nothing enforces the limits, but the node still counts them.
            self.applied = Some(wanted);
            self.applied_for = instances;
            self.record_held();
        } else {
            self.fit_limits(instances).await;
        }
        let t_cgroup = t0.elapsed();
        let mut spec = self.sandbox_spec.clone();
        spec.initial = instances;
        spec.memory_per_instance_bytes = self.quota.memory_bytes;
        let placement = Placement {
            exe: self.ctx.exe.clone(),
            procs_files: self
                .cgroup
                .as_ref()
                .map(|c| c.procs_files())
                .unwrap_or_default(),
            uid: self.ctx.config.uid,
            gid: self.ctx.config.gid,
        };
        let started = process::spawn(
            &spec,
            &self.artifact,
            self.socket.clone(),
            &placement,
            self.ctx.config.start_timeout.0,
        )
        .await?;
        tracing::debug!(
            function = %self.name(),
            cgroup_us = t_cgroup.as_micros() as u64,
            spawn_to_ready_us = (t0.elapsed() - t_cgroup).as_micros() as u64,
            "sandbox started"
        );
        self.warm = 0;
        let _ = self.endpoint.send(Some(Arc::new(Endpoint::new(
            started.socket.clone(),
            started.pid,
        ))));
        Ok(started)
    }

    /// Write the limits for a pool of `instances` (as far as the node grants them) if they
    /// differ from what the cgroup holds; returns the instances they hold. The memory limit
    /// never goes below what the cgroup uses now. A failed write keeps the old limits; the
    /// next report, tick or refit tries again.
    async fn fit_limits(&mut self, instances: u32) -> u32 {
        let (mut wanted, fitted, _) = self.plan(instances);
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
            self.record_held();
            return self.applied_for;
        }
        let old = self.applied;
        if old == Some(wanted) {
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
    async fn scale_to(&mut self, t: u32, sb: &mut Started, new_target: bool) {
        let held = self.applied_for;
        let fitted = self.fit_limits(t.max(held)).await;
        let pool = t.min(fitted);
        let c = &self.deployment.vertical.counters;
        let limited = pool < t;
        let was = c.capacity_limited.swap(limited, Ordering::Relaxed);
        if limited && (new_target || !was) {
            c.capacity_refusals.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(function = %self.name(), target = t, fits = pool, "scale-up refused: the node's memory is short");
        }
        let cmd = format!("{} {pool}\n", protocol::POOL_COMMAND);
        if let Err(e) = sb.stdin.write_all(cmd.as_bytes()).await {
            tracing::warn!(function = %self.name(), error = %e, "sending the pool target");
        }
    }

    /// Apply a new quota: the cgroup first (growing before the sandbox may use it), then
    /// the sandbox's quota for new instances. Acknowledged with the decision-to-limits time.
    async fn apply_resize(&mut self, r: Resize, target: u32, sb: Option<&mut Started>) {
        let old = self.quota;
        self.quota = r.quota;
        if sb.is_some() && r.quota.memory_bytes > old.memory_bytes {
            // The instances held now must fit the node at the new quota; if they do not,
            // raise memory only as far as they do (the refusal is counted and shown).
            let held = self.applied_for.max(1);
            let (_, fitted, grant) = self.plan(held);
            if fitted < held {
                let per = executions(&self.deployment.spec, self.kind, held).max(1) as u64;
                let room = grant
                    .memory_bytes
                    .saturating_sub(self.ctx.config.memory_overhead.0)
                    / per;
                self.quota.memory_bytes = room.clamp(old.memory_bytes, r.quota.memory_bytes);
                let c = &self.deployment.vertical.counters;
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
            let cmd = format!("{} {}\n", protocol::MEMORY_COMMAND, self.quota.memory_bytes);
            if let Err(e) = sb.stdin.write_all(cmd.as_bytes()).await {
                tracing::warn!(function = %self.name(), error = %e, "sending the memory quota");
            }
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
        self.deployment.vertical.set_applied(Applied {
            generation: r.generation,
            limits: self.applied,
            quota: Some(self.quota),
            latency_us,
        });
    }

    async fn remove_cgroup(&mut self) {
        self.ctx.node.release(&self.cgroup_name);
        self.applied = None;
        self.applied_for = 0;
        self.deployment.vertical.set_limits(None, self.quota);
        if let Some(cg) = self.cgroup.take() {
            let r = tokio::task::spawn_blocking(move || cg.destroy()).await;
            if let Ok(Err(e)) = r {
                tracing::warn!(function = %self.name(), error = %e, "removing the sandbox cgroup failed");
            }
        }
    }

    /// Close stdin (the sandbox exits on EOF), then kill it if it lingers. The gate admits
    /// nothing from the start; the endpoint is withdrawn once the process is gone, so status
    /// shows a pid exactly while the process exists.
    async fn stop_sandbox(&mut self, mut sb: Started) {
        self.deployment.set_ready(0);
        self.warm = 0;
        drop(sb.stdin);
        if tokio::time::timeout(STOP_GRACE, sb.child.wait())
            .await
            .is_err()
        {
            let _ = sb.child.kill().await;
        }
        let _ = self.endpoint.send(None);
    }

    async fn supervise(mut self, first: Started, mut stop: watch::Receiver<bool>) {
        let mut target = self.deployment.watch_target();
        target.mark_unchanged();
        let mut resize = self.deployment.vertical.watch_resize();
        // A resize published before this task subscribed is not applied yet.
        if resize.borrow().generation > 0 {
            resize.mark_changed();
        }
        let mut current = Some(first);
        let mut reports_open = true;
        // The next start is a cold start (from zero), not a restart after a crash.
        let mut from_zero = false;
        loop {
            let Some(sb) = current.as_mut() else {
                let want = *target.borrow_and_update();
                if want == 0 && self.cgroup.is_some() {
                    // The sandbox died while the target went to zero: finish the job.
                    self.remove_cgroup().await;
                    from_zero = true;
                    continue;
                }
                if want == 0 {
                    // A failed start may have left a demand in the ledger.
                    self.ctx.node.release(&self.cgroup_name);
                }
                if want == 0 {
                    // At zero: no process, no cgroup. Wait for demand; a resize takes effect
                    // at the next start.
                    tokio::select! {
                        _ = stop.changed() => break,
                        r = target.changed() => if r.is_err() { break },
                        r = resize.changed() => {
                            if r.is_err() { break }
                            let r = *resize.borrow_and_update();
                            self.apply_resize(r, 0, None).await;
                        }
                    }
                    continue;
                }
                match self.start_sandbox(want).await {
                    Ok(s) => {
                        if std::mem::take(&mut from_zero) {
                            self.deployment
                                .counters
                                .cold_starts
                                .fetch_add(1, Ordering::Relaxed);
                            tracing::info!(function = %self.name(), pid = s.pid, instances = want, "cold start");
                        } else {
                            tracing::info!(function = %self.name(), pid = s.pid, "sandbox restarted");
                        }
                        current = Some(s);
                        reports_open = true;
                    }
                    Err(e) => {
                        tracing::warn!(function = %self.name(), error = %e, "sandbox start failed");
                        // A resize may be what lets the next start fit: take it meanwhile.
                        tokio::select! {
                            _ = stop.changed() => break,
                            _ = tokio::time::sleep(RESTART_BACKOFF * 10) => {}
                            r = resize.changed() => {
                                if r.is_err() { break }
                                let r = *resize.borrow_and_update();
                                self.apply_resize(r, 0, None).await;
                            }
                        }
                    }
                }
                continue;
            };
            let wake = tokio::select! {
                status = sb.child.wait() => Wake::Exited(status),
                line = sb.reports.next_line(), if reports_open => Wake::Report(line.ok().flatten()),
                r = target.changed() => if r.is_err() { Wake::Stop } else { Wake::Target },
                r = resize.changed() => if r.is_err() { Wake::Stop } else { Wake::Resize },
                _ = self.deployment.vertical.refit.notified() => Wake::Refit,
                _ = stop.changed() => Wake::Stop,
            };
            match wake {
                Wake::Exited(status) => {
                    // Requests on the dead sandbox fail with 502 as their connections
                    // break; new ones queue at the gate for the replacement.
                    let _ = self.endpoint.send(None);
                    self.deployment.set_ready(0);
                    self.warm = 0;
                    self.deployment
                        .counters
                        .restarts
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(function = %self.name(), pid = sb.pid, status = ?status, "sandbox exited; restarting");
                    current = None;
                    tokio::time::sleep(RESTART_BACKOFF).await;
                }
                Wake::Report(None) => reports_open = false,
                Wake::Report(Some(line)) => {
                    if let Some((peak, denied)) = protocol::parse_mem(&line) {
                        self.deployment.vertical.observe_wasm(peak, denied);
                    } else if let Some((ready, slots)) = protocol::parse_warm(&line) {
                        self.warm = ready;
                        self.deployment.set_ready(ready);
                        // Limits may shrink only here, to what the sandbox really holds:
                        // its pool places (ready, busy, instantiating) and the executions
                        // still running from an earlier, larger capacity.
                        let running = self
                            .deployment
                            .gate
                            .busy()
                            .div_ceil(per_instance(&self.deployment.spec, self.kind));
                        let t = *target.borrow();
                        self.fit_limits(t.max(slots).max(running)).await;
                    }
                }
                Wake::Target => {
                    let t = *target.borrow_and_update();
                    if t == 0 {
                        // Scale to zero: admit nothing more, let what was admitted finish,
                        // then stop. Requests arriving meanwhile queue and poke the
                        // autoscaler, which starts the function again.
                        self.deployment.set_ready(0);
                        self.deployment.gate.wait_idle().await;
                        let sb = current.take().expect("running");
                        self.stop_sandbox(sb).await;
                        self.remove_cgroup().await;
                        from_zero = true;
                        tracing::info!(function = %self.name(), "scaled to zero");
                        continue;
                    }
                    // Grow the limits before the instances; shrink them only on a report,
                    // once the sandbox holds fewer.
                    if let Some(mut sb) = current.take() {
                        self.scale_to(t, &mut sb, true).await;
                        current = Some(sb);
                    }
                }
                Wake::Resize => {
                    let r = *resize.borrow_and_update();
                    let t = *target.borrow();
                    if let Some(mut sb) = current.take() {
                        self.apply_resize(r, t, Some(&mut sb)).await;
                        current = Some(sb);
                    }
                }
                Wake::Refit => {
                    let t = *target.borrow();
                    if let Some(mut sb) = current.take() {
                        if t > 0 {
                            self.scale_to(t, &mut sb, false).await;
                        }
                        current = Some(sb);
                    }
                }
                Wake::Stop => {
                    let sb = current.take().expect("running");
                    self.stop_sandbox(sb).await;
                    break;
                }
            }
        }
        self.remove_cgroup().await;
        self.ctx.node.release(&self.cgroup_name);
        let _ = std::fs::remove_file(&self.socket);
    }
}
