//! The registry: which function versions are live, their routes, and the deploy/remove
//! transitions. A deploy is all or nothing: the manifest is checked, the binary checked and
//! compiled, the new sandbox started and ready, and the version persisted, before the route
//! table switches to it. Only then is the old version drained and stopped.

pub mod routes;
pub mod store;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::RwLock;
use surge_runtime::artifact::{sha256_hex, ArtifactError, CompileCache};
use surge_runtime::Kind;
use tokio::sync::Mutex as AsyncMutex;

use crate::control::supervisor::{self, SandboxCtx, StartError, Supervised};
use crate::control::vertical::quota::{QuotaError, QuotaUpdate};
use crate::dispatch::Deployment;
use crate::manifest::{FileError, FunctionSpec, HostConfig};
use routes::Routes;
use store::{Store, StoreError, StoredFunction};

#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error(transparent)]
    Manifest(#[from] FileError),
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
    #[error(transparent)]
    Start(#[from] StartError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{file}: key `route`: {route:?} is already the route of function {other}")]
    RouteTaken {
        file: String,
        route: String,
        other: String,
    },
    #[error("{file}: key `handler`: {path}: {source}")]
    Handler {
        file: String,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("function {0} is not deployed")]
    NotFound(String),
    #[error("function {function}: {source}")]
    Quota {
        function: String,
        #[source]
        source: QuotaError,
    },
    #[error(
        "function {function}: the node's memory cannot hold this resize: its {instances} \
         instance(s) would need {needed} bytes and {free} are free of the node's {capacity}"
    )]
    Capacity {
        function: String,
        instances: u32,
        needed: u64,
        free: u64,
        capacity: u64,
    },
    #[error("compiling {file}: the compiler task failed")]
    CompilerPanicked { file: String },
    #[error("{0}")]
    Corrupt(String),
}

/// Longest a manual resize waits for the supervisor to apply it before answering (202
/// instead of 200 after that: it applies when the sandbox is up).
const RESIZE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// A manual resize: dimensions to set (and pin), and dimensions to unpin.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ResizeRequest {
    #[serde(default)]
    pub update: QuotaUpdate,
    #[serde(default)]
    pub clear_memory: bool,
    #[serde(default)]
    pub clear_cpu: bool,
}

/// A deployed version as `list` shows it.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct FunctionInfo {
    pub name: String,
    pub version: u64,
    pub kind: String,
    pub route: Option<String>,
    pub wasm_sha256: String,
    /// Instances ready (warm) now.
    pub instances: u32,
    /// The autoscaler's target.
    pub desired: u32,
    pub min_instances: u32,
    pub max_instances: u32,
    /// Requests executing now, and waiting in the activator queue.
    pub executing: u32,
    pub queued: u32,
    /// Requests that ever had to wait in the queue.
    pub queued_total: u64,
    /// Arrivals per second over the panic window.
    pub rps: f64,
    /// "stable" or "panic".
    pub mode: String,
    pub cold_starts: u64,
    pub memory: String,
    pub cpu: String,
    pub timeout: String,
    pub sandbox_pid: Option<u32>,
    pub inflight: usize,
    pub requests: u64,
    pub errors: u64,
    pub restarts: u64,
    pub cgroup: Vec<String>,
    pub deployed_at_unix: i64,
    /// Vertical: the per-instance quota in force, and which dimensions a manual resize pinned.
    pub memory_quota_bytes: u64,
    pub cpu_quota_millicores: u64,
    pub memory_pinned: bool,
    pub cpu_pinned: bool,
    /// The sandbox cgroup's limits now (absent at zero).
    pub memory_limit_bytes: Option<u64>,
    pub cpu_limit_millicores: Option<u64>,
    /// The cgroup's memory now and its peak; the highest wasm linear memory of one instance.
    pub memory_usage_bytes: u64,
    pub memory_peak_bytes: u64,
    pub wasm_memory_peak_bytes: u64,
    /// CPU over the last sample interval (the whole sandbox), and cumulative figures.
    pub cpu_usage_millicores: u64,
    pub cpu_usage_seconds: f64,
    pub throttled_fraction: f64,
    pub throttled_periods: u64,
    pub throttled_seconds: f64,
    /// Out-of-memory events (instances refused memory, cgroup OOM kills).
    pub oom_events: u64,
    pub oom_kills: u64,
    /// The recommender's target, once it has data.
    pub recommended_memory_bytes: Option<u64>,
    pub recommended_cpu_millicores: Option<u64>,
    pub resizes_auto: u64,
    pub resizes_manual: u64,
    pub last_resize: Option<String>,
    /// From the last resize decision to the cgroup files holding it, µs.
    pub last_resize_latency_us: u64,
    /// The pool is held below its target because the node's memory is short.
    pub capacity_limited: bool,
    pub capacity_refusals: u64,
}

impl FunctionInfo {
    pub fn of(d: &Deployment) -> Self {
        use std::sync::atomic::Ordering::Relaxed;
        let pool = d.pool_status(tokio::time::Instant::now());
        FunctionInfo {
            name: d.name().to_string(),
            version: d.version,
            kind: d.kind.as_str().to_string(),
            route: d.spec.route.clone(),
            wasm_sha256: d.wasm_sha256.clone(),
            instances: pool.ready,
            desired: pool.desired,
            min_instances: d.spec.scaling.min_instances,
            max_instances: d.spec.scaling.max_instances,
            executing: pool.executing,
            queued: pool.queued,
            queued_total: pool.queued_total,
            rps: (pool.rps * 100.0).round() / 100.0,
            mode: if pool.panic { "panic" } else { "stable" }.into(),
            cold_starts: d.counters.cold_starts.load(Relaxed),
            memory: d.spec.limits.memory.to_string(),
            cpu: d.spec.limits.cpu.to_string(),
            timeout: d.spec.limits.timeout.to_string(),
            sandbox_pid: d.sandbox_pid(),
            inflight: d.inflight(),
            requests: d.counters.requests.load(Relaxed),
            errors: d.counters.errors.load(Relaxed),
            restarts: d.counters.restarts.load(Relaxed),
            cgroup: d
                .cgroup_dirs
                .iter()
                .map(|p| p.display().to_string())
                .collect(),
            deployed_at_unix: d.deployed_at_unix,
            ..Self::vertical(d)
        }
    }

    /// The vertical figures of `d`; `of` fills the rest.
    fn vertical(d: &Deployment) -> Self {
        use std::sync::atomic::Ordering::Relaxed;
        let v = &d.vertical;
        let q = v.quota();
        let pins = v.pins();
        let applied = v.applied();
        let r = v.report.lock().clone();
        let u = r.usage.unwrap_or_default();
        FunctionInfo {
            memory_quota_bytes: applied.quota.unwrap_or(q).memory_bytes,
            cpu_quota_millicores: applied.quota.unwrap_or(q).cpu_millicores,
            memory_pinned: pins.memory_bytes.is_some(),
            cpu_pinned: pins.cpu_millicores.is_some(),
            memory_limit_bytes: applied.limits.map(|l| l.memory_bytes),
            cpu_limit_millicores: applied.limits.map(|l| l.cpu_millicores),
            memory_usage_bytes: u.memory_bytes,
            memory_peak_bytes: u.memory_peak_bytes,
            wasm_memory_peak_bytes: v.wasm_peak_bytes.load(Relaxed),
            cpu_usage_millicores: r.cpu_millicores,
            cpu_usage_seconds: u.cpu_usage_ns as f64 / 1e9,
            throttled_fraction: (r.throttled_fraction * 1000.0).round() / 1000.0,
            throttled_periods: u.nr_throttled,
            throttled_seconds: u.throttled_ns as f64 / 1e9,
            oom_events: v.counters.oom_events.load(Relaxed),
            oom_kills: u.oom_kills,
            recommended_memory_bytes: r.recommendation.map(|q| q.memory_bytes),
            recommended_cpu_millicores: r.recommendation.map(|q| q.cpu_millicores),
            resizes_auto: v.counters.resizes_auto.load(Relaxed),
            resizes_manual: v.counters.resizes_manual.load(Relaxed),
            last_resize: r.last_reason.map(|s| s.as_str().to_string()),
            last_resize_latency_us: applied.latency_us,
            capacity_limited: v.counters.capacity_limited.load(Relaxed),
            capacity_refusals: v.counters.capacity_refusals.load(Relaxed),
            ..Default::default()
        }
    }
}

pub struct Registry {
    pub config: HostConfig,
    store: Store,
    cache: Arc<CompileCache>,
    engine: wasmtime::Engine,
    sandboxes: Arc<SandboxCtx>,
    /// The table the data path reads: swapped whole on every change.
    routes: RwLock<Arc<Routes>>,
    /// Supervisors of live versions, by function name.
    live: AsyncMutex<HashMap<String, Supervised>>,
    /// Versions swapped out and still draining: a host stopping meanwhile waits for them,
    /// so their sandboxes stop and their cgroups go.
    retiring: parking_lot::Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// One deploy or remove at a time: transitions never interleave.
    transitions: AsyncMutex<()>,
}

/// The kind a stored deployment was detected as.
fn stored_kind(f: &StoredFunction) -> Result<Kind, DeployError> {
    match f.kind.as_str() {
        "http" => Ok(Kind::Http),
        "event" => Ok(Kind::Event),
        other => Err(DeployError::Corrupt(format!(
            "stored deployment {} has an unknown kind {other:?}",
            f.name
        ))),
    }
}

/// Rust's `Kind` and the runtime's are the same set; the manifest has its own for serde.
fn runtime_kind(k: crate::manifest::Kind) -> Kind {
    match k {
        crate::manifest::Kind::Http => Kind::Http,
        crate::manifest::Kind::Event => Kind::Event,
    }
}

impl Registry {
    pub fn new(
        config: HostConfig,
        store: Store,
        cache: CompileCache,
        sandboxes: Arc<SandboxCtx>,
    ) -> anyhow::Result<Self> {
        let engine = surge_runtime::engine::compile_engine()
            .map_err(|e| anyhow::anyhow!("wasmtime engine: {e}"))?;
        Ok(Registry {
            config,
            store,
            cache: Arc::new(cache),
            engine,
            sandboxes,
            routes: RwLock::new(Arc::new(Routes::default())),
            live: AsyncMutex::new(HashMap::new()),
            retiring: parking_lot::Mutex::new(Vec::new()),
            transitions: AsyncMutex::new(()),
        })
    }

    /// The current route table (cheap: one Arc clone).
    pub fn routes(&self) -> Arc<Routes> {
        self.routes.read().clone()
    }

    /// Deploy a manifest file from disk, reading its handler next to it.
    pub async fn deploy_file(&self, manifest_path: &Path) -> Result<FunctionInfo, DeployError> {
        let file = manifest_path.display().to_string();
        let text = tokio::task::block_in_place(|| std::fs::read_to_string(manifest_path)).map_err(
            |e| {
                FileError::new(
                    manifest_path,
                    None,
                    format!("cannot read the manifest: {e}"),
                )
            },
        )?;
        let spec = FunctionSpec::parse(manifest_path, &text, &self.config.defaults)?;
        let handler = crate::manifest::handler_path(manifest_path, &spec);
        let wasm = tokio::task::block_in_place(|| std::fs::read(&handler)).map_err(|source| {
            DeployError::Handler {
                file: file.clone(),
                path: handler.display().to_string(),
                source,
            }
        })?;
        self.deploy(&file, &text, wasm).await
    }

    /// Deploy from manifest text and handler bytes (what the admin API receives).
    pub async fn deploy(
        &self,
        file: &str,
        manifest: &str,
        wasm: Vec<u8>,
    ) -> Result<FunctionInfo, DeployError> {
        let _t = self.transitions.lock().await;
        self.deploy_locked(file, manifest, Some(wasm), None).await
    }

    /// `wasm` is None only for a restore whose artifact is already compiled: the stored
    /// blob is content-addressed (its name is its SHA-256) and its kind is stored, so it
    /// need not be read or hashed again.
    async fn deploy_locked(
        &self,
        file: &str,
        manifest: &str,
        wasm: Option<Vec<u8>>,
        restore: Option<&StoredFunction>,
    ) -> Result<FunctionInfo, DeployError> {
        let spec = FunctionSpec::parse(Path::new(file), manifest, &self.config.defaults)?;
        let name = spec.name.to_string();
        if let Some(route) = &spec.route {
            if let Some(other) = self.routes().owner_of(route) {
                if other.name() != name {
                    return Err(DeployError::RouteTaken {
                        file: file.into(),
                        route: route.clone(),
                        other: other.name().into(),
                    });
                }
            }
        }
        let handler_file = crate::manifest::handler_path(Path::new(file), &spec)
            .display()
            .to_string();
        let (engine, cache, declared) = (
            self.engine.clone(),
            self.cache.clone(),
            spec.kind.map(runtime_kind),
        );
        // Hashing and compiling tens of MB run off the runtime's threads: the gateway may
        // have only one, and it serves every request meanwhile.
        let (sha, kind, artifact, wasm) = match (wasm, restore) {
            (None, Some(r)) => {
                let kind = stored_kind(r)?;
                let path = cache.path_for(&engine, kind, &r.wasm_sha256);
                (r.wasm_sha256.clone(), kind, path, None)
            }
            (wasm, _) => {
                let wasm = wasm.unwrap_or_default();
                let hf = handler_file.clone();
                let (sha, compiled, wasm) = tokio::task::spawn_blocking(move || {
                    let sha = sha256_hex(&wasm);
                    let compiled = cache.get_or_compile(&engine, &hf, &wasm, declared);
                    (sha, compiled, wasm)
                })
                .await
                .map_err(|_| DeployError::CompilerPanicked {
                    file: handler_file.clone(),
                })?;
                // Same bytes and same manifest as the live version: nothing to do.
                if restore.is_none() {
                    if let Some(cur) = self.routes().get(&name) {
                        if cur.wasm_sha256 == sha && cur.spec == spec {
                            return Ok(FunctionInfo::of(&cur));
                        }
                    }
                }
                let (kind, path) = compiled?;
                (sha, kind, path, Some(wasm))
            }
        };

        let version = match restore {
            Some(r) => r.version,
            None => tokio::task::block_in_place(|| self.store.next_version(&name))?,
        };
        let deployed_at = restore.map(|r| r.deployed_at_unix).unwrap_or_else(now_unix);
        let pins = tokio::task::block_in_place(|| self.store.pins(&name))?;
        let sup = supervisor::start(
            self.sandboxes.clone(),
            spec,
            kind,
            version,
            sha.clone(),
            deployed_at,
            artifact,
            pins,
        )
        .await?;
        if restore.is_none() {
            let stored = StoredFunction {
                name: name.clone(),
                version,
                manifest_file: file.to_string(),
                manifest: manifest.to_string(),
                wasm_sha256: sha.clone(),
                kind: kind.as_str().to_string(),
                deployed_at_unix: deployed_at,
            };
            let wasm = wasm.as_deref().unwrap_or_default();
            // Written and synced to disk: off the runtime, as above.
            let persisted = tokio::task::block_in_place(|| {
                self.store
                    .put_blob(&sha, wasm)
                    .and_then(|_| self.store.put(&stored))
            });
            if let Err(e) = persisted {
                sup.retire().await;
                return Err(e.into());
            }
        }
        let info = FunctionInfo::of(&sup.deployment);
        let old = {
            let mut live = self.live.lock().await;
            let new_routes = self.routes().with(sup.deployment.clone());
            *self.routes.write() = Arc::new(new_routes);
            live.insert(name.clone(), sup)
        };
        if let Some(old) = old {
            // Requests already on the old version finish there; new ones see the new table.
            let mut retiring = self.retiring.lock();
            retiring.retain(|h| !h.is_finished());
            retiring.push(tokio::spawn(old.retire()));
        }
        tracing::info!(function = %name, version, kind = kind.as_str(), "deployed");
        Ok(info)
    }

    pub async fn remove(&self, name: &str) -> Result<(), DeployError> {
        let _t = self.transitions.lock().await;
        let sup = {
            let mut live = self.live.lock().await;
            if !live.contains_key(name) {
                return Err(DeployError::NotFound(name.into()));
            }
            // Forget it in the store first: if that fails, nothing has changed.
            self.store.remove(name)?;
            let sup = live.remove(name).expect("checked above");
            let new_routes = self.routes().without(name);
            *self.routes.write() = Arc::new(new_routes);
            sup
        };
        // Wait for the drain and the cgroup's removal, so `remove` returning means gone.
        sup.retire().await;
        tracing::info!(function = %name, "removed");
        Ok(())
    }

    /// A manual resize (`surge resize`): validated as a whole (bounds, then the node's
    /// memory), pinned and persisted, then applied in place by the supervisor. Returns once
    /// the cgroup holds the new limits (or after `RESIZE_WAIT`, if the sandbox is busy
    /// starting).
    pub async fn resize(
        &self,
        name: &str,
        r: &ResizeRequest,
    ) -> Result<(FunctionInfo, bool), DeployError> {
        let d = {
            // Not across deploys and removes; released before waiting for the apply.
            let _t = self.transitions.lock().await;
            let d = self
                .routes()
                .get(name)
                .ok_or_else(|| DeployError::NotFound(name.into()))?;
            let v = &d.vertical;
            let (next, pins) = v
                .prepare_manual(&r.update, r.clear_memory, r.clear_cpu)
                .map_err(|source| DeployError::Quota {
                    function: name.to_string(),
                    source,
                })?;
            // A memory raise must fit the node for the instances the sandbox holds now.
            let before = v.quota_in_force();
            if next.memory_bytes > before.memory_bytes {
                let instances = d.ready().max(1);
                let needed = self
                    .sandboxes
                    .limits_for(&d.spec, d.kind, next, instances)
                    .memory_bytes;
                let held = v.applied().limits.map_or(0, |l| l.memory_bytes);
                let node = self.sandboxes.node.status();
                let others = node.committed.memory_bytes.saturating_sub(held);
                let free = node.capacity.memory_bytes.saturating_sub(others);
                if needed > free {
                    return Err(DeployError::Capacity {
                        function: name.to_string(),
                        instances,
                        needed,
                        free,
                        capacity: node.capacity.memory_bytes,
                    });
                }
            }
            // Persisted first: an error here changes nothing, live or stored.
            tokio::task::block_in_place(|| self.store.put_pins(name, &pins))?;
            let generation = v.commit_manual(pins);
            (d, generation)
        };
        let (d, generation) = d;
        let applied = d
            .vertical
            .wait_applied(generation, RESIZE_WAIT)
            .await
            .is_some();
        Ok((FunctionInfo::of(&d), applied))
    }

    pub fn list(&self) -> Vec<FunctionInfo> {
        let mut v: Vec<FunctionInfo> = self.routes().all().map(|d| FunctionInfo::of(d)).collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Start: bring back every stored deployment, then deploy the manifests in
    /// `functions_dir` (a changed one becomes a new version). Errors are reported, not fatal:
    /// one bad function must not keep the others down.
    pub async fn restore_and_scan(&self) -> Vec<String> {
        let mut errors = Vec::new();
        let stored = match self.store.list() {
            Ok(s) => s,
            Err(e) => return vec![e.to_string()],
        };
        for f in &stored {
            let _t = self.transitions.lock().await;
            let cached = stored_kind(f)
                .map(|k| {
                    self.cache
                        .path_for(&self.engine, k, &f.wasm_sha256)
                        .is_file()
                })
                .unwrap_or(false);
            let wasm = if cached {
                None
            } else {
                let blob = self.store.blob_path(&f.wasm_sha256);
                match tokio::task::block_in_place(|| std::fs::read(blob)) {
                    Ok(w) => Some(w),
                    Err(e) => {
                        errors.push(format!("restoring {}: blob {}: {e}", f.name, f.wasm_sha256));
                        continue;
                    }
                }
            };
            if let Err(e) = self
                .deploy_locked(&f.manifest_file, &f.manifest, wasm, Some(f))
                .await
            {
                errors.push(format!("restoring {}: {e}", f.name));
            }
        }
        let dir = &self.config.functions_dir;
        let mut manifests: Vec<PathBuf> = match std::fs::read_dir(dir) {
            Ok(rd) => rd
                .filter_map(|e| e.ok())
                .map(|e| e.path().join("function.toml"))
                .filter(|p| p.is_file())
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => {
                errors.push(format!("{}: {e}", dir.display()));
                Vec::new()
            }
        };
        manifests.sort();
        for m in manifests {
            if let Err(e) = self.deploy_file(&m).await {
                errors.push(e.to_string());
            }
        }
        errors
    }

    /// Stop every sandbox (host shutdown). Deployments stay in the store.
    pub async fn shutdown(&self) {
        let all: Vec<Supervised> = self.live.lock().await.drain().map(|(_, s)| s).collect();
        for s in all {
            s.retire().await;
        }
        let draining: Vec<_> = std::mem::take(&mut *self.retiring.lock());
        for h in draining {
            let _ = h.await;
        }
        if let Some(d) = &self.sandboxes.cgroups {
            d.remove_root();
        }
    }
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl Registry {
    pub fn node_status(&self) -> crate::control::node::NodeStatus {
        self.sandboxes.node.status()
    }

    pub fn cgroup_description(&self) -> String {
        match &self.sandboxes.cgroups {
            Some(d) => d.describe(),
            None => "none (cgroup.required = false and no writable cgroup)".into(),
        }
    }
}
