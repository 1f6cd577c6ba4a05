//! One supervisor task per live function version. It owns the sandbox process: publishes its
//! endpoint to the dispatcher, restarts it when it dies (the host never goes down with a
//! guest), and on retire stops it and removes its cgroup.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use surge_runtime::cgroup::{Driver, SandboxCgroup, SandboxLimits};
use surge_runtime::sandbox::protocol::SandboxSpec;
use surge_runtime::Kind;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::process::{self, Placement, SpawnError, Started};
use crate::dispatch::transport::Endpoint;
use crate::dispatch::{executions, Deployment};
use crate::manifest::config::SandboxConfig;
use crate::manifest::FunctionSpec;

/// Pause before restarting a sandbox that died, so a crash loop cannot spin the host.
const RESTART_BACKOFF: Duration = Duration::from_millis(100);

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
}

impl SandboxCtx {
    /// Memory for every instance that can run at once, plus the process's overhead; CPU
    /// for the pool (concurrent events on one instance share its CPU).
    pub fn limits_for(&self, spec: &FunctionSpec, kind: Kind) -> SandboxLimits {
        SandboxLimits::for_pool(
            spec.limits.memory.0,
            executions(spec, kind) as u64,
            spec.limits.cpu.0 as u64,
            spec.pool_size() as u64,
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
    let cgroup: Option<Arc<dyn SandboxCgroup>> = match &ctx.cgroups {
        Some(driver) => {
            let cg = driver
                .create(&format!("{name}-v{version}"), &ctx.limits_for(&spec, kind))
                .map_err(|source| StartError::Cgroup {
                    function: name.clone(),
                    source,
                })?;
            Some(Arc::from(cg))
        }
        None => None,
    };
    let sandbox_spec = SandboxSpec {
        function: name.clone(),
        version,
        kind,
        instances: executions(&spec, kind),
        // Threads count against the sandbox's pids limit: keep half of it for everything
        // else (the epoch ticker, the host watcher, blocking-pool threads).
        threads: (crate::manifest::config::auto_threads(ctx.config.threads) as u32)
            .min(executions(&spec, kind))
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
    let placement = Placement {
        exe: ctx.exe.clone(),
        procs_files: cgroup.as_ref().map(|c| c.procs_files()).unwrap_or_default(),
        uid: ctx.config.uid,
        gid: ctx.config.gid,
    };
    let socket = ctx.run_dir.join(format!("{name}-v{version}.sock"));
    let start_timeout = ctx.config.start_timeout.0;
    let first = match process::spawn(
        &sandbox_spec,
        &artifact,
        socket.clone(),
        &placement,
        start_timeout,
    )
    .await
    {
        Ok(s) => s,
        Err(e) => {
            if let Some(cg) = &cgroup {
                let _ = cg.destroy();
            }
            return Err(e.into());
        }
    };
    let (ep_tx, ep_rx) = watch::channel(Some(Arc::new(Endpoint::new(
        first.socket.clone(),
        first.pid,
    ))));
    let deployment = Arc::new(Deployment::new(
        spec,
        kind,
        version,
        wasm_sha256,
        deployed_at_unix,
        ep_rx,
        cgroup.as_ref().map(|c| c.dirs()).unwrap_or_default(),
        start_timeout,
    ));
    let (stop_tx, stop_rx) = watch::channel(false);
    let job = Job {
        sandbox_spec,
        artifact,
        socket,
        placement,
        start_timeout,
        cgroup,
        endpoint: ep_tx,
        deployment: deployment.clone(),
    };
    let task = tokio::spawn(job.supervise(first, stop_rx));
    Ok(Supervised {
        deployment,
        stop: stop_tx,
        task,
    })
}

struct Job {
    sandbox_spec: SandboxSpec,
    artifact: PathBuf,
    socket: PathBuf,
    placement: Placement,
    start_timeout: Duration,
    cgroup: Option<Arc<dyn SandboxCgroup>>,
    endpoint: watch::Sender<Option<Arc<Endpoint>>>,
    deployment: Arc<Deployment>,
}

impl Job {
    async fn supervise(self, first: Started, mut stop: watch::Receiver<bool>) {
        let name = self.sandbox_spec.function.clone();
        let mut current = Some(first);
        loop {
            let Some(mut sb) = current.take() else {
                // Restart until it works or we are told to stop.
                tokio::select! {
                    _ = stop.changed() => break,
                    r = process::spawn(&self.sandbox_spec, &self.artifact, self.socket.clone(), &self.placement, self.start_timeout) => match r {
                        Ok(s) => {
                            tracing::info!(function = %name, pid = s.pid, "sandbox restarted");
                            let _ = self.endpoint.send(Some(Arc::new(Endpoint::new(s.socket.clone(), s.pid))));
                            current = Some(s);
                        }
                        Err(e) => {
                            tracing::warn!(function = %name, error = %e, "sandbox restart failed");
                            tokio::time::sleep(RESTART_BACKOFF * 10).await;
                        }
                    },
                }
                continue;
            };
            tokio::select! {
                status = sb.child.wait() => {
                    // Requests on the dead sandbox fail with 502 as their connections break;
                    // new ones wait for the replacement.
                    let _ = self.endpoint.send(None);
                    self.deployment.counters.restarts.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(function = %name, pid = sb.pid, status = ?status, "sandbox exited; restarting");
                    tokio::time::sleep(RESTART_BACKOFF).await;
                }
                _ = stop.changed() => {
                    let _ = self.endpoint.send(None);
                    drop(sb.stdin); // the sandbox exits on EOF
                    if tokio::time::timeout(Duration::from_secs(2), sb.child.wait()).await.is_err() {
                        let _ = sb.child.kill().await;
                    }
                    break;
                }
            }
        }
        if let Some(cg) = &self.cgroup {
            let cg = cg.clone();
            let r = tokio::task::spawn_blocking(move || cg.destroy()).await;
            if let Ok(Err(e)) = r {
                tracing::warn!(function = %name, error = %e, "removing the sandbox cgroup failed");
            }
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}
