//! The registry: which function versions are live, their routes, and the deploy/remove
//! transitions. A deploy is all or nothing: the manifest is checked, the binary checked and
//! compiled, the new sandbox started and ready, and the version persisted, before the route
//! table switches to it. Only then is the old version drained and stopped.

pub mod catalog;
pub mod concurrency;
pub mod package;
pub mod resize;
pub mod settings;
pub mod status;
pub mod store;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use surge_runtime::artifact::{sha256_hex, ArtifactError, CompileCache};
use tokio::sync::{watch, Mutex as AsyncMutex};

use crate::control::supervisor::{self, SandboxCtx, StartError, Supervised};
use crate::control::version::{LiveVersions, VersionControl};
use crate::control::vertical::quota::QuotaError;
use crate::dispatch::routes::{Pending, Routes};
use crate::manifest::{FileError, FunctionSpec, HostConfig};
use catalog::{Catalog, CatalogError, Commit, Prepared};
use status::FunctionInfo;
use store::{Store, StoreError, StoredFunction};

/// A deploy's stages as they happen, for `surge deploy`'s progress (the admin API streams
/// them as JSON lines).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "stage", rename_all = "snake_case")]
pub enum Stage {
    /// Hashing the handler's bytes.
    Hash {
        bytes: u64,
    },
    /// Compiling it (or finding it in the compile cache).
    Compile,
    Compiled {
        ms: u64,
    },
    /// Starting the new version's sandbox...
    Start,
    /// ... which is ready: its first instance is warm.
    Ready {
        ms: u64,
    },
}

/// Where a deploy reports its stages (None: nowhere).
pub type Progress<'a> = Option<&'a tokio::sync::mpsc::UnboundedSender<Stage>>;

fn report(p: Progress<'_>, stage: Stage) {
    if let Some(tx) = p {
        let _ = tx.send(stage);
    }
}

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
    #[error(transparent)]
    Catalog(#[from] CatalogError),
}

/// Where a deploy comes from.
#[derive(Clone, Copy)]
enum Origin<'a> {
    /// Through this node: the admin API, the Lambda API, `functions_dir`. In a cluster the
    /// catalog numbers it, and it is committed there before it goes live.
    Local,
    /// A stored version brought back at start.
    Restore(&'a StoredFunction),
    /// A version the cluster committed through another node (`src/cluster/`).
    Replica { version: u64, deployed_at_unix: i64 },
}

/// What the host deploys at start ([`Registry::plan_start`]).
#[derive(Default)]
pub struct StartPlan {
    stored: Vec<StoredFunction>,
    manifests: Vec<PathBuf>,
    /// Each manifest's handler (None: the manifest does not parse).
    handlers: Vec<Option<PathBuf>>,
    /// The function each planned deploy is for, in order (stored, then manifests).
    names: Vec<Option<String>>,
    errors: Vec<String>,
}

pub struct Registry {
    pub config: HostConfig,
    store: Store,
    cache: Arc<CompileCache>,
    engine: wasmtime::Engine,
    sandboxes: Arc<SandboxCtx>,
    /// The table the data path reads: swapped whole on every change.
    routes: watch::Sender<Arc<Routes>>,
    /// The same versions as the control path sees them, published with the table.
    versions: watch::Sender<Arc<[Arc<VersionControl>]>>,
    /// Supervisors of live versions, by function name.
    live: AsyncMutex<HashMap<String, Supervised>>,
    /// Versions swapped out and still draining: a host stopping meanwhile waits for them,
    /// so their sandboxes stop and their cgroups go.
    retiring: parking_lot::Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// One deploy or remove at a time: transitions never interleave.
    transitions: AsyncMutex<()>,
    /// Set when the node joins a cluster: versions are then agreed there.
    catalog: std::sync::OnceLock<Arc<dyn Catalog>>,
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
            routes: watch::Sender::new(Arc::new(Routes::default())),
            versions: watch::Sender::new(Arc::from(Vec::new())),
            live: AsyncMutex::new(HashMap::new()),
            retiring: parking_lot::Mutex::new(Vec::new()),
            transitions: AsyncMutex::new(()),
            catalog: std::sync::OnceLock::new(),
        })
    }

    /// Join a cluster: from here on, versions deployed through this node are numbered and
    /// committed by `catalog` (set once, before the host deploys anything).
    pub fn set_catalog(&self, catalog: Arc<dyn Catalog>) {
        let _ = self.catalog.set(catalog);
    }

    /// The last etcd revision this node's copy of the cluster's functions reflects.
    pub fn cluster_revision(&self) -> Result<i64, DeployError> {
        Ok(tokio::task::block_in_place(|| {
            self.store.cluster_revision()
        })?)
    }

    pub fn set_cluster_revision(&self, revision: i64) -> Result<(), DeployError> {
        Ok(tokio::task::block_in_place(|| {
            self.store.set_cluster_revision(revision)
        })?)
    }

    /// Every stored (live) version.
    pub fn stored_all(&self) -> Result<Vec<StoredFunction>, DeployError> {
        Ok(tokio::task::block_in_place(|| self.store.list())?)
    }

    /// A stored `.wasm` by its hash (None: not here).
    pub fn read_blob(&self, sha256: &str) -> Option<Vec<u8>> {
        std::fs::read(self.store.blob_path(sha256)).ok()
    }

    /// Deploy a version another node committed to the cluster: numbered `version`, with no
    /// commit. A live version with the same number and blob is left as it is.
    pub async fn deploy_replica(
        &self,
        file: &str,
        manifest: &str,
        wasm: Vec<u8>,
        version: u64,
        deployed_at_unix: i64,
    ) -> Result<FunctionInfo, DeployError> {
        let _t = self.transitions.lock().await;
        self.deploy_locked(
            file,
            manifest,
            Some(wasm),
            Origin::Replica {
                version,
                deployed_at_unix,
            },
            None,
        )
        .await
    }

    /// Remove a function the cluster removed (nothing if it is not live here).
    pub async fn remove_replica(&self, name: &str) -> Result<(), DeployError> {
        match self.remove_inner(name, false).await {
            Err(DeployError::NotFound(_)) => Ok(()),
            r => r,
        }
    }

    /// The current route table (cheap: one Arc clone).
    pub fn routes(&self) -> Arc<Routes> {
        self.routes.borrow().clone()
    }

    /// Every route table from now on (the gateway waits on it for a function still
    /// deploying at start).
    pub fn watch_routes(&self) -> watch::Receiver<Arc<Routes>> {
        self.routes.subscribe()
    }

    /// The live versions, for the control loops: they follow this instead of the registry.
    pub fn watch_versions(&self) -> LiveVersions {
        self.versions.subscribe()
    }

    /// The live version of `name`, as the control path sees it.
    pub fn version_of(&self, name: &str) -> Option<Arc<VersionControl>> {
        self.versions
            .borrow()
            .iter()
            .find(|c| c.deployment.name() == name)
            .cloned()
    }

    /// The stored form of `name`'s live version (its manifest text, blob hash, …), and its
    /// handler's bytes: what a control-plane update starts from.
    pub fn stored(&self, name: &str) -> Result<Option<(StoredFunction, Vec<u8>)>, DeployError> {
        let Some(f) = self.store.list()?.into_iter().find(|f| f.name == name) else {
            return Ok(None);
        };
        let path = self.store.blob_path(&f.wasm_sha256);
        let wasm = std::fs::read(&path).map_err(|source| DeployError::Handler {
            file: f.manifest_file.clone(),
            path: path.display().to_string(),
            source,
        })?;
        Ok(Some((f, wasm)))
    }

    /// Publish a new route table and the live set after a change of `live` (under its
    /// lock, so the two never disagree for long).
    fn publish(&self, routes: Routes, live: &HashMap<String, Supervised>) {
        // The control loops see a version before any request can reach it, so a poke from
        // its first request is decided in that round.
        let versions: Vec<_> = live.values().map(|s| s.control.clone()).collect();
        self.versions.send_replace(Arc::from(versions));
        self.routes.send_replace(Arc::new(routes));
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
        self.deploy_reporting(file, manifest, wasm, None).await
    }

    /// [`deploy`](Self::deploy), reporting each stage to `progress` as it begins.
    pub async fn deploy_reporting(
        &self,
        file: &str,
        manifest: &str,
        wasm: Vec<u8>,
        progress: Progress<'_>,
    ) -> Result<FunctionInfo, DeployError> {
        let _t = self.transitions.lock().await;
        let r = self
            .deploy_locked(file, manifest, Some(wasm), Origin::Local, progress)
            .await;
        // The compile's freed heap goes back to the kernel (runtime/src/heap.rs).
        let _ = tokio::task::spawn_blocking(surge_runtime::heap::trim).await;
        r
    }

    /// `wasm` is None only for a restore whose artifact is already compiled: the stored
    /// blob is content-addressed (its name is its SHA-256) and its kind is stored, so it
    /// need not be read or hashed again.
    async fn deploy_locked(
        &self,
        file: &str,
        manifest: &str,
        wasm: Option<Vec<u8>>,
        origin: Origin<'_>,
        progress: Progress<'_>,
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
        let (engine, cache, declared) = (self.engine.clone(), self.cache.clone(), spec.kind);
        // Hashing and compiling tens of MB run off the runtime's threads: the gateway may
        // have only one, and it serves every request meanwhile.
        let restore = match origin {
            Origin::Restore(r) => Some(r),
            _ => None,
        };
        let (sha, kind, artifact, wasm) = match (wasm, restore) {
            (
                None,
                Some(StoredFunction {
                    kind: Some(kind),
                    wasm_sha256,
                    ..
                }),
            ) => {
                let path = cache.path_for(&engine, *kind, wasm_sha256);
                (wasm_sha256.clone(), *kind, path, None)
            }
            (wasm, _) => {
                let wasm = wasm.unwrap_or_default();
                let hf = handler_file.clone();
                let tx = progress.cloned();
                let (sha, compiled, wasm) = tokio::task::spawn_blocking(move || {
                    report(
                        tx.as_ref(),
                        Stage::Hash {
                            bytes: wasm.len() as u64,
                        },
                    );
                    let sha = sha256_hex(&wasm);
                    report(tx.as_ref(), Stage::Compile);
                    let began = std::time::SystemTime::now();
                    let compiled = cache.get_or_compile(&engine, &hf, &wasm, declared);
                    let ms = began.elapsed().unwrap_or_default().as_millis() as u64;
                    report(tx.as_ref(), Stage::Compiled { ms });
                    (sha, compiled, wasm)
                })
                .await
                .map_err(|_| DeployError::CompilerPanicked {
                    file: handler_file.clone(),
                })?;
                // Same bytes and same manifest as the live version (or, from the cluster,
                // the same version): nothing to do.
                if let Some(cur) = self.version_of(&name) {
                    let d = &cur.deployment;
                    let same = match origin {
                        Origin::Local => d.wasm_sha256 == sha && d.spec == spec,
                        Origin::Replica { version, .. } => {
                            d.wasm_sha256 == sha && d.version == version
                        }
                        Origin::Restore(_) => false,
                    };
                    if same {
                        return Ok(FunctionInfo::of(&cur));
                    }
                }
                let (kind, path) = compiled?;
                (sha, kind, path, Some(wasm))
            }
        };

        // In a cluster, the catalog numbers a version deployed through this node: versions
        // are unique cluster-wide, and one identical to the cluster's is adopted as is.
        let prepared = match (origin, self.catalog.get()) {
            (Origin::Local, Some(c)) => Some(c.prepare(&name, &sha, manifest).await?),
            _ => None,
        };
        let (version, deployed_at) = match (origin, &prepared) {
            (Origin::Restore(r), _) => (r.version, r.deployed_at_unix),
            (
                Origin::Replica {
                    version,
                    deployed_at_unix,
                },
                _,
            ) => (version, deployed_at_unix),
            (
                Origin::Local,
                Some(Prepared::Adopt {
                    version,
                    deployed_at_unix,
                }),
            ) => (*version, *deployed_at_unix),
            (Origin::Local, Some(Prepared::New { version, .. })) => {
                let local = tokio::task::block_in_place(|| self.store.next_version(&name))?;
                ((*version).max(local), now_unix())
            }
            (Origin::Local, None) => (
                tokio::task::block_in_place(|| self.store.next_version(&name))?,
                now_unix(),
            ),
        };
        let pins = tokio::task::block_in_place(|| self.store.pins(&name))?;
        // The keep-alive policy goes on from what it learnt: the live version's state is
        // saved first, so a new version starts from it.
        self.save_keepalive();
        let keepalive_state = tokio::task::block_in_place(|| {
            self.store
                .keepalive_state(&name, spec.scaling.policy.as_str())
        })?;
        // A restored version that may idle at zero comes back with no process: it was proven
        // at its first deploy, and its first request cold-starts it. Its artifact must still
        // read as this engine's (a cheap header check); if not, it is started as a proof.
        // In a cluster, this node keeps its part of `min_instances` (and of the concurrency
        // counts): a node whose part is 0 starts a replica with no process either.
        let share = self.catalog.get().map_or((0, 1), |c| c.share(&name));
        let at_zero = !matches!(origin, Origin::Local)
            && crate::dispatch::part_of(spec.scaling.min_instances, share.0, share.1) == 0
            && artifact_is_precompiled(&artifact, kind);
        report(progress, Stage::Start);
        let starting = tokio::time::Instant::now();
        let sup = supervisor::start(
            self.sandboxes.clone(),
            supervisor::Version {
                spec,
                kind,
                version,
                wasm_sha256: sha.clone(),
                deployed_at_unix: deployed_at,
                artifact,
                pins,
                at_zero,
                share,
                keepalive_state,
            },
        )
        .await?;
        report(
            progress,
            Stage::Ready {
                ms: starting.elapsed().as_millis() as u64,
            },
        );
        if restore.is_none() {
            let stored = StoredFunction {
                name: name.clone(),
                version,
                manifest_file: file.to_string(),
                manifest: manifest.to_string(),
                wasm_sha256: sha.clone(),
                kind: Some(kind),
                deployed_at_unix: deployed_at,
            };
            let wasm = wasm.as_deref().unwrap_or_default();
            // Written and synced to disk: off the runtime, as above. The blob is stored
            // before the commit: the other nodes fetch it from here once they see it.
            let persisted = tokio::task::block_in_place(|| self.store.put_blob(&sha, wasm));
            if let Err(e) = persisted {
                sup.retire().await;
                return Err(e.into());
            }
            if let (Some(Prepared::New { revision, .. }), Some(c)) = (&prepared, self.catalog.get())
            {
                let commit = Commit {
                    name: &name,
                    version,
                    manifest_file: file,
                    manifest,
                    wasm_sha256: &sha,
                    deployed_at_unix: deployed_at,
                };
                if let Err(e) = c.commit(commit, *revision).await {
                    sup.retire().await;
                    return Err(e.into());
                }
            }
            let persisted = tokio::task::block_in_place(|| self.store.put(&stored));
            if let Err(e) = persisted {
                sup.retire().await;
                return Err(e.into());
            }
        }
        // Lambda's concurrency controls outlive versions.
        let c = tokio::task::block_in_place(|| self.store.concurrency(&name))?;
        sup.deployment().set_reserved(c.reserved);
        sup.deployment().set_provisioned(c.provisioned.unwrap_or(0));
        let info = FunctionInfo::of(&sup.control);
        let old = {
            let mut live = self.live.lock().await;
            let routes = self.routes().with(sup.deployment().clone());
            let old = live.insert(name.clone(), sup);
            self.publish(routes, &live);
            old
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
        self.remove_inner(name, true).await
    }

    /// `cluster`: remove it from the cluster's catalog too (first: if that fails, nothing
    /// has changed).
    async fn remove_inner(&self, name: &str, cluster: bool) -> Result<(), DeployError> {
        let _t = self.transitions.lock().await;
        let sup = {
            let mut live = self.live.lock().await;
            if !live.contains_key(name) {
                return Err(DeployError::NotFound(name.into()));
            }
            if let (true, Some(c)) = (cluster, self.catalog.get()) {
                c.remove(name).await?;
            }
            // Forget it in the store first: if that fails, nothing has changed.
            self.store.remove(name)?;
            let sup = live.remove(name).expect("checked above");
            self.publish(self.routes().without(name), &live);
            sup
        };
        // Wait for the drain and the cgroup's removal, so `remove` returning means gone.
        sup.retire().await;
        tracing::info!(function = %name, "removed");
        Ok(())
    }

    /// The size in bytes of a stored `.wasm`, by its hash (None: not in the store).
    pub fn code_size(&self, sha256: &str) -> Option<u64> {
        std::fs::metadata(self.store.blob_path(sha256))
            .ok()
            .map(|m| m.len())
    }

    pub fn list(&self) -> Vec<FunctionInfo> {
        let mut v: Vec<FunctionInfo> = self
            .versions
            .borrow()
            .iter()
            .map(|c| FunctionInfo::of(c))
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Start, first step (before the host listens): find what it will deploy, every stored
    /// version and the manifests in `functions_dir`, and publish them as pending, so that a
    /// request for one waits for it instead of getting 404.
    pub async fn plan_start(&self) -> StartPlan {
        let mut errors = Vec::new();
        let stored = match self.store.list() {
            Ok(s) => s,
            Err(e) => {
                return StartPlan {
                    errors: vec![e.to_string()],
                    ..StartPlan::default()
                }
            }
        };
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
        // Every function about to be deployed is known from here on: its requests wait for
        // it rather than being told it does not exist.
        let mut pending: Vec<Pending> = Vec::new();
        let known = stored
            .iter()
            .map(|f| (PathBuf::from(&f.manifest_file), Some(f.manifest.clone())))
            .chain(manifests.iter().map(|m| (m.clone(), None)));
        // The name each planned deploy is for (None: its manifest does not parse; its deploy
        // reports why), in deploy order: stored versions, then functions_dir.
        let mut names = Vec::new();
        // Each manifest's handler, for the compiles that run before the deploys.
        let mut handlers = Vec::new();
        for (file, text) in known {
            let from_disk = text.is_none();
            let text = text.or_else(|| std::fs::read_to_string(&file).ok());
            let spec =
                text.and_then(|t| FunctionSpec::parse(&file, &t, &self.config.defaults).ok());
            names.push(spec.as_ref().map(|s| s.name.to_string()));
            if from_disk {
                handlers.push(
                    spec.as_ref()
                        .map(|s| crate::manifest::handler_path(&file, s)),
                );
            }
            if let Some(s) = spec {
                // One entry per route: a manifest may move its function to another route.
                let p = Pending::new(
                    s.name.as_str(),
                    s.route.as_deref(),
                    s.scaling.queue_timeout.0,
                );
                if !pending.contains(&p) {
                    pending.push(p);
                }
            }
        }
        self.update_routes(|r| r.with_pending(pending)).await;
        StartPlan {
            stored,
            manifests,
            handlers,
            names,
            errors,
        }
    }

    /// Start, second step: bring back every stored deployment, then deploy the manifests in
    /// `functions_dir` (a changed one becomes a new version). Errors are reported, not fatal:
    /// one bad function must not keep the others down.
    pub async fn restore_and_scan(&self, plan: StartPlan) -> Vec<String> {
        let StartPlan {
            stored,
            manifests,
            handlers,
            names,
            mut errors,
        } = plan;
        let planned = stored.len() + manifests.len();
        // Compiling is the slow part (seconds for an 18 MB component), and it needs no lock:
        // every handler that is not compiled yet compiles now, up to the cores at once, into
        // the cache. The deploys below stay one at a time, in the order their compiles end,
        // so a small function is not held back behind a large one. A deploy of a name waits
        // for the earlier deploys of that name (a stored version before its new manifest).
        let (compiled_tx, mut compiled) = tokio::sync::mpsc::unbounded_channel::<usize>();
        let mut queue = Vec::new();
        for i in 0..planned {
            let source = match i.checked_sub(stored.len()) {
                None => {
                    let f = &stored[i];
                    let cached = f.kind.is_some_and(|k| {
                        self.cache
                            .path_for(&self.engine, k, &f.wasm_sha256)
                            .is_file()
                    });
                    (!cached).then(|| {
                        (
                            self.store.blob_path(&f.wasm_sha256),
                            f.manifest_file.clone(),
                        )
                    })
                }
                Some(j) => handlers[j]
                    .clone()
                    .map(|h| (h.clone(), h.display().to_string())),
            };
            match source {
                Some((path, file)) => {
                    let size = std::fs::metadata(&path).map_or(u64::MAX, |m| m.len());
                    queue.push((size, i, path, file));
                }
                None => {
                    let _ = compiled_tx.send(i);
                }
            }
        }
        // Smallest first: the compiler spreads one module over every core, so a small module
        // queued behind a large one waits for all of it.
        queue.sort_by_key(|(size, i, _, _)| (*size, *i));
        let queue = Arc::new(parking_lot::Mutex::new(std::collections::VecDeque::from(
            queue,
        )));
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
        for _ in 0..workers {
            let (engine, cache, tx, queue) = (
                self.engine.clone(),
                self.cache.clone(),
                compiled_tx.clone(),
                queue.clone(),
            );
            // Errors are the deploy's to report, when it reads and compiles again.
            tokio::task::spawn_blocking(move || {
                while let Some((_, i, path, file)) = queue.lock().pop_front() {
                    if let Ok(bytes) = std::fs::read(&path) {
                        let _ = cache.get_or_compile(&engine, &file, &bytes, None);
                    }
                    let _ = tx.send(i);
                }
            });
        }
        drop(compiled_tx);
        let mut ready = vec![false; planned];
        let mut done = vec![false; planned];
        while let Some(i) = compiled.recv().await {
            ready[i] = true;
            // Deploy every ready one whose earlier deploys of the same name are done.
            while let Some(j) = (0..planned).find(|&j| {
                ready[j]
                    && !done[j]
                    && (0..j).all(|k| done[k] || names[k].is_none() || names[k] != names[j])
            }) {
                done[j] = true;
                match j.checked_sub(stored.len()) {
                    None => self.restore_one(&stored[j], &mut errors).await,
                    Some(m) => {
                        if let Err(e) = self.deploy_file(&manifests[m]).await {
                            errors.push(e.to_string());
                        }
                    }
                }
                self.planned_done(&names, j).await;
            }
        }
        errors
    }

    /// Bring back one stored version (its blob is read only when its artifact is not in the
    /// compile cache).
    async fn restore_one(&self, f: &StoredFunction, errors: &mut Vec<String>) {
        let _t = self.transitions.lock().await;
        let cached = f.kind.is_some_and(|k| {
            self.cache
                .path_for(&self.engine, k, &f.wasm_sha256)
                .is_file()
        });
        let wasm = if cached {
            None
        } else {
            let blob = self.store.blob_path(&f.wasm_sha256);
            match tokio::task::block_in_place(|| std::fs::read(blob)) {
                Ok(w) => Some(w),
                Err(e) => {
                    errors.push(format!("restoring {}: blob {}: {e}", f.name, f.wasm_sha256));
                    return;
                }
            }
        };
        if let Err(e) = self
            .deploy_locked(
                &f.manifest_file,
                &f.manifest,
                wasm,
                Origin::Restore(f),
                None,
            )
            .await
        {
            errors.push(format!("restoring {}: {e}", f.name));
        }
    }

    /// Planned deploy `i` of the start ended, whatever came of it. After a name's last one
    /// it is no longer pending: what is live serves it, and what is not is 404.
    async fn planned_done(&self, names: &[Option<String>], i: usize) {
        if let Some(Some(name)) = names.get(i) {
            if !names[i + 1..].iter().any(|n| n.as_ref() == Some(name)) {
                self.update_routes(|r| r.without_pending(name)).await;
            }
        }
    }

    /// Publish a route table derived from the current one (under the live lock, so it
    /// cannot race a deploy's publication).
    async fn update_routes(&self, f: impl FnOnce(&Routes) -> Routes) {
        let _live = self.live.lock().await;
        let next = f(&self.routes());
        self.routes.send_replace(Arc::new(next));
    }

    /// Keep every live version's keep-alive state that changed since the last call in the
    /// store (the host calls this every few seconds and at shutdown). A failure is logged:
    /// the policy keeps its state in memory and tries again next time.
    pub fn save_keepalive(&self) {
        let rows: Vec<_> = self
            .versions
            .borrow()
            .iter()
            .filter_map(|v| {
                let (policy, state) = v.scaler.take_keep_state()?;
                Some((v.deployment.name().to_string(), policy, state))
            })
            .collect();
        if rows.is_empty() {
            return;
        }
        if let Err(e) = tokio::task::block_in_place(|| self.store.put_keepalive_states(&rows)) {
            tracing::warn!(error = %e, "saving the keep-alive policies' state");
        }
    }

    /// Stop every sandbox (host shutdown). Deployments stay in the store.
    pub async fn shutdown(&self) {
        let all: Vec<Supervised> = {
            let mut live = self.live.lock().await;
            let all = live.drain().map(|(_, s)| s).collect();
            // Out of the table before they retire: a retired version is never routed to.
            self.publish(Routes::default(), &live);
            all
        };
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

/// Whether `path` holds a precompiled `kind` artifact (its header only; the cache's path
/// already names the engine it was compiled for).
fn artifact_is_precompiled(path: &Path, kind: surge_runtime::Kind) -> bool {
    let found = tokio::task::block_in_place(|| wasmtime::Engine::detect_precompiled_file(path));
    matches!(
        (found, kind),
        (
            Ok(Some(wasmtime::Precompiled::Component)),
            surge_runtime::Kind::Http
        ) | (
            Ok(Some(wasmtime::Precompiled::Module)),
            surge_runtime::Kind::Event
        )
    )
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
