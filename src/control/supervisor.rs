//! One supervisor task per live function version. It owns the sandbox process and follows
//! the autoscaler's target for the pool:
//! - target above zero with no sandbox: start one (a cold start), creating its cgroup;
//! - target changes: grow the cgroup limits first, then tell the sandbox (`pool <n>`);
//!   shrink the limits only once the sandbox reports the instances gone;
//! - target zero: close the gate, let admitted requests finish, stop the sandbox and
//!   remove its cgroup, so an idle function holds no process and no limits;
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

use super::process::{self, Placement, SpawnError, Started};
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
}

impl SandboxCtx {
    /// Limits for a pool of `instances`: memory for every execution that can run at once,
    /// plus the process's overhead; CPU for the instances (concurrent events on one
    /// instance share its CPU).
    pub fn limits_for(&self, spec: &FunctionSpec, kind: Kind, instances: u32) -> SandboxLimits {
        SandboxLimits::for_pool(
            spec.limits.memory.0,
            executions(spec, kind, instances) as u64,
            spec.limits.cpu.0 as u64,
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

pub async fn start(
    ctx: Arc<SandboxCtx>,
    spec: FunctionSpec,
    kind: Kind,
    version: u64,
    wasm_sha256: String,
    deployed_at_unix: i64,
    artifact: PathBuf,
) -> Result<Supervised, StartError> {
    let name = spec.name.to_string();
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
        memory_per_instance_bytes: spec.limits.memory.0,
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
    let deployment = Arc::new(Deployment::new(
        spec,
        kind,
        version,
        wasm_sha256,
        deployed_at_unix,
        ep_rx,
        target_tx,
        ctx.poke.clone(),
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
    Stop,
}

impl Job {
    fn name(&self) -> &str {
        &self.sandbox_spec.function
    }

    fn limits(&self, instances: u32) -> SandboxLimits {
        self.ctx
            .limits_for(&self.deployment.spec, self.kind, instances.max(1))
    }

    /// Create the cgroup (if there is none) and spawn a sandbox warming `instances`.
    async fn start_sandbox(&mut self, instances: u32) -> Result<Started, StartError> {
        let t0 = tokio::time::Instant::now();
        let wanted = self.limits(instances);
        if self.cgroup.is_none() {
            if let Some(driver) = self.ctx.cgroups.clone() {
                let name = self.cgroup_name.clone();
                let created = tokio::task::spawn_blocking(move || driver.create(&name, &wanted))
                    .await
                    .expect("cgroup creation does not panic");
                let cg = created.map_err(|source| StartError::Cgroup {
                    function: self.name().to_string(),
                    source,
                })?;
                self.cgroup = Some(Arc::from(cg));
                self.applied = Some(wanted);
                self.applied_for = instances;
            }
        } else {
            self.fit_limits(instances);
        }
        let t_cgroup = t0.elapsed();
        let mut spec = self.sandbox_spec.clone();
        spec.initial = instances;
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

    /// Write the limits for a pool of `instances` if they differ from what the cgroup holds.
    /// A failure (memory still above a lower limit) keeps the old limits; the next report
    /// tries again.
    fn fit_limits(&mut self, instances: u32) {
        let Some(cg) = &self.cgroup else { return };
        let wanted = self.limits(instances);
        if self.applied == Some(wanted) {
            return;
        }
        match cg.apply(&wanted) {
            Ok(()) => {
                self.applied = Some(wanted);
                self.applied_for = instances;
            }
            Err(e) => {
                tracing::warn!(function = %self.name(), error = %e, "resizing the sandbox cgroup")
            }
        }
    }

    async fn remove_cgroup(&mut self) {
        if let Some(cg) = self.cgroup.take() {
            self.applied = None;
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
                    // At zero: no process, no cgroup. Wait for demand.
                    tokio::select! {
                        _ = stop.changed() => break,
                        r = target.changed() => if r.is_err() { break },
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
                        tokio::select! {
                            _ = stop.changed() => break,
                            _ = tokio::time::sleep(RESTART_BACKOFF * 10) => {}
                        }
                    }
                }
                continue;
            };
            let wake = tokio::select! {
                status = sb.child.wait() => Wake::Exited(status),
                line = sb.reports.next_line(), if reports_open => Wake::Report(line.ok().flatten()),
                r = target.changed() => if r.is_err() { Wake::Stop } else { Wake::Target },
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
                    if let Some((ready, slots)) = protocol::parse_warm(&line) {
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
                        self.fit_limits(t.max(slots).max(running));
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
                    let held = self.applied_for;
                    self.fit_limits(t.max(held));
                    let cmd = format!("{} {t}\n", protocol::POOL_COMMAND);
                    if let Some(sb) = current.as_mut() {
                        if let Err(e) = sb.stdin.write_all(cmd.as_bytes()).await {
                            tracing::warn!(function = %self.name(), error = %e, "sending the pool target");
                        }
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
        let _ = std::fs::remove_file(&self.socket);
    }
}
