//! `surge serve`: load the config, open the state dir, find the cgroup root, bind, deploy
//! what is stored and what is under `functions_dir`, and serve until SIGINT/SIGTERM.

use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use surge_runtime::artifact::CompileCache;
use surge_runtime::cgroup::{CgroupRoot, Driver};

use crate::control::autoscale;
use crate::control::node::Node;
use crate::control::supervisor::driver::ProcessSpawner;
use crate::control::supervisor::SandboxCtx;
use crate::control::vertical;
use crate::events::Queue;
use crate::gateway::lambda_async::Deliverer;
use crate::gateway::sigv4::Keys;
use crate::gateway::{self, Gateway};
use crate::manifest::HostConfig;
use crate::metrics::Metrics;
use crate::observe::records::{Bounds, Records};
use crate::observe::timeline::Timeline;
use crate::registry::store::Store;
use crate::registry::Registry;

/// How often the dashboard's timeline samples the host.
const TIMELINE_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// How often the keep-alive policies' state is written to the store.
const KEEPALIVE_SAVE_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

pub struct ServeArgs {
    /// Loaded before the runtime starts: it says how many threads the runtime has.
    pub config: HostConfig,
    pub listen: Option<SocketAddr>,
    pub state_dir: Option<PathBuf>,
    pub functions_dir: Option<PathBuf>,
}

/// The config: `--config`, else `config/surge.toml` when present, else the embedded one.
pub fn load_config(path: Option<&Path>) -> anyhow::Result<HostConfig> {
    let default = Path::new("config/surge.toml");
    let path = match path {
        Some(p) => Some(p),
        None if default.is_file() => Some(default),
        None => None,
    };
    match path {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("{}: cannot read the config", p.display()))?;
            Ok(HostConfig::load(p, &text)?)
        }
        None => Ok(HostConfig::embedded()),
    }
}

fn mkdir(path: &Path, mode: u32) -> anyhow::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(path)
        .with_context(|| format!("{}: cannot create", path.display()))
}

/// The admin token: config, then SURGE_ADMIN_TOKEN, then `<state>/admin-token`, generated
/// (mode 0600) when missing.
fn admin_token(cfg: &HostConfig) -> anyhow::Result<String> {
    if let Some(t) = std::env::var("SURGE_ADMIN_TOKEN")
        .ok()
        .filter(|t| !t.is_empty())
    {
        return Ok(t);
    }
    if let Some(t) = cfg.admin_token.clone().filter(|t| !t.is_empty()) {
        return Ok(t);
    }
    let f = cfg.state_dir.join("admin-token");
    if let Ok(t) = std::fs::read_to_string(&f) {
        if !t.trim().is_empty() {
            return Ok(t.trim().to_string());
        }
    }
    let mut raw = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut raw);
    let token = hex_encode(&raw);
    write_private(&f, &token, "the admin token")?;
    Ok(token)
}

/// Write a secret to `path`, readable by its owner only (mode 0600).
fn write_private(path: &Path, text: &str, what: &str) -> anyhow::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("{}: cannot write {what}", path.display()))?;
    file.write_all(text.as_bytes())?;
    Ok(())
}

/// The Lambda control plane's key pair: the config's, then SURGE_AWS_ACCESS_KEY_ID /
/// SURGE_AWS_SECRET_ACCESS_KEY, then `<state>/aws-credentials` (an AWS credentials file
/// with a `[surge]` profile), generated (mode 0600) when missing.
fn aws_keys(cfg: &HostConfig) -> anyhow::Result<Keys> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    if !cfg.lambda.access_key_id.is_empty() {
        return Ok(Keys {
            access_key_id: cfg.lambda.access_key_id.clone(),
            secret_access_key: cfg.lambda.secret_access_key.clone(),
        });
    }
    if let Some(id) = env("SURGE_AWS_ACCESS_KEY_ID") {
        return Ok(Keys {
            access_key_id: id,
            secret_access_key: env("SURGE_AWS_SECRET_ACCESS_KEY").unwrap_or_default(),
        });
    }
    let f = cfg.state_dir.join("aws-credentials");
    if let Ok(text) = std::fs::read_to_string(&f) {
        let get = |key: &str| {
            text.lines()
                .filter_map(|l| l.split_once('='))
                .find(|(k, _)| k.trim() == key)
                .map(|(_, v)| v.trim().to_string())
        };
        if let (Some(id), Some(secret)) = (get("aws_access_key_id"), get("aws_secret_access_key")) {
            return Ok(Keys {
                access_key_id: id,
                secret_access_key: secret,
            });
        }
    }
    let mut raw = [0u8; 30];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut raw);
    const ALPHA: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let id: String = std::iter::once("AKIA".to_string())
        .chain(
            raw[..16]
                .iter()
                .map(|b| (ALPHA[(*b % 32) as usize] as char).to_string()),
        )
        .collect();
    let secret = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &raw[..])
        .replace(['+', '/'], "x");
    write_private(
        &f,
        &format!("[surge]\naws_access_key_id = {id}\naws_secret_access_key = {secret}\n"),
        "the AWS credentials",
    )?;
    Ok(Keys {
        access_key_id: id,
        secret_access_key: secret,
    })
}

fn hex_encode(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Each sandbox holds a few of the host's descriptors (its connections and its cgroup
/// files, kept open for sampling): a thousand functions pass the 1024 that a shell's soft
/// limit often is. Raise the soft limit to the hard one, as servers do.
fn raise_open_files() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_err() {
            tracing::debug!(soft, hard, "could not raise the open-files limit");
        }
    }
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    // Handlers first: a SIGTERM that arrived before they existed (say, right after the
    // `ready:` line) would kill the host with the default action, leaving its sandboxes'
    // cgroups behind.
    let shutdown = ShutdownSignals::install()?;
    raise_open_files();
    let mut cfg = args.config;
    if let Some(l) = args.listen {
        cfg.listen = l;
    }
    if let Some(s) = args.state_dir {
        cfg.state_dir = s;
    }
    if let Some(f) = args.functions_dir {
        cfg.functions_dir = f;
    }
    mkdir(&cfg.state_dir, 0o755)?;
    let run_dir = cfg.state_dir.join("run");
    mkdir(&run_dir, 0o700)?;
    let token = admin_token(&cfg)?;
    let keys = aws_keys(&cfg)?;

    let cgroups: Option<Arc<dyn Driver>> = match CgroupRoot::detect(
        &cfg.cgroup.root,
        &cfg.cgroup.subtree,
    ) {
        Ok(root) => Some(Arc::new(root)),
        Err(e) if cfg.cgroup.required => {
            anyhow::bail!("{e} (set cgroup.required = false in the config to run sandboxes without cgroup limits)")
        }
        Err(e) => {
            tracing::warn!(error = %e, "running sandboxes WITHOUT cgroup limits");
            None
        }
    };
    if let Some(c) = &cgroups {
        tracing::info!("sandboxes go under {}", c.describe());
    }
    // Once, at start: the walls this kernel lets a sandbox raise, and what it lacks.
    let spawner = Arc::new(ProcessSpawner::new(super::check::placement(&cfg.sandbox)?));
    let walls = super::check::walls(&spawner.zygote).await?;
    if walls.starts_with("missing") {
        tracing::warn!("sandbox walls: {walls}");
    } else {
        tracing::info!("sandbox walls: {walls}");
    }
    let store = Store::open(&cfg.state_dir)?;
    let cache = CompileCache::new(cfg.cache_dir())?;
    let poke = Arc::new(tokio::sync::Notify::new());
    let tick = cfg.autoscaler.tick.0;
    let node = Arc::new(Node::from_config(&cfg.node));
    let cap = node.capacity();
    tracing::info!(
        cpu_millicores = cap.cpu_millicores,
        memory_bytes = cap.memory_bytes,
        "node capacity for sandboxes"
    );
    let vertical_params = vertical::params(&cfg.vertical);
    let vertical_interval = cfg.vertical.interval.0;
    let sandboxes = Arc::new(SandboxCtx {
        spawner,
        cgroups,
        run_dir,
        config: cfg.sandbox.clone(),
        poke: poke.clone(),
        node: node.clone(),
        vertical: vertical_params.clone(),
        keepalive: cfg.keepalive.clone(),
    });
    let listen = cfg.listen;
    let state_dir = cfg.state_dir.clone();
    let registry = Arc::new(Registry::new(cfg, store, cache, sandboxes)?);

    // Known before the host listens: a request for a function still deploying waits for it.
    let plan = registry.plan_start().await;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listen {listen}"))?;
    let addr = listener.local_addr()?;
    std::fs::write(state_dir.join("server-url"), format!("http://{addr}\n"))?;
    println!("listening on http://{addr}");
    let _ = std::io::stdout().flush();

    let metrics = Metrics::new();
    let logs = &registry.config.logs;
    let records = if logs.records {
        Some(Records::open(
            &state_dir,
            Bounds {
                retention: logs.retention.0,
                max_records: logs.max_records,
                max_bytes: logs.max_bytes.0,
                max_log: logs.max_log.0 as usize,
            },
        )?)
    } else {
        None
    };
    let timeline = Arc::new(parking_lot::Mutex::new(Timeline::default()));
    let cluster = if registry.config.cluster.enabled() {
        let shared = std::env::var("SURGE_ADMIN_TOKEN").is_ok_and(|t| !t.is_empty())
            || registry
                .config
                .admin_token
                .as_ref()
                .is_some_and(|t| !t.is_empty());
        if !shared {
            anyhow::bail!(
                "key `cluster.etcd`: the nodes of a cluster fetch code from each other with the \
                 admin token, so every node needs the same one: set `admin_token` in the config \
                 or SURGE_ADMIN_TOKEN"
            );
        }
        Some(
            crate::cluster::join(
                registry.config.cluster.clone(),
                addr,
                registry.clone(),
                token.clone(),
            )
            .await?,
        )
    } else {
        None
    };
    let queue = Queue::open(
        &state_dir,
        &registry.config.async_queue,
        registry.clone(),
        metrics.async_delivery.clone(),
    )?;
    if let Some(c) = &cluster {
        crate::cluster::share_events(c, queue.clone());
    }
    let gw = Arc::new(Gateway {
        registry: registry.clone(),
        queue: queue.clone(),
        admin_token: token,
        aws_keys: keys,
        lambda_ops: Default::default(),
        metrics,
        records: records.clone(),
        timeline: timeline.clone(),
        cluster: cluster.clone(),
    });
    // Events are delivered from here on; those a function still deploying is due wait.
    let (queue_stop_tx, queue_stop_rx) = tokio::sync::oneshot::channel::<()>();
    let queue_figures = queue.clone();
    let queue_settings = queue.clone();
    let deliveries = tokio::spawn(queue.run(Arc::new(Deliverer(gw.clone())), async {
        let _ = queue_stop_rx.await;
    }));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(gateway::serve(gw, listener, async {
        let _ = stop_rx.await;
    }));

    let (scaler_stop_tx, scaler_stop_rx) = tokio::sync::oneshot::channel::<()>();
    let scaler = tokio::spawn(autoscale::run(
        registry.watch_versions(),
        tick,
        poke,
        async {
            let _ = scaler_stop_rx.await;
        },
    ));
    let (vertical_stop_tx, vertical_stop_rx) = tokio::sync::oneshot::channel::<()>();
    let resizer = tokio::spawn(vertical::run(
        registry.watch_versions(),
        node,
        vertical_params,
        vertical_interval,
        async {
            let _ = vertical_stop_rx.await;
        },
    ));

    // The keep-alive policies' state goes to the store every few seconds, and at the end.
    let saver = {
        let registry = registry.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(KEEPALIVE_SAVE_EVERY);
            loop {
                every.tick().await;
                registry.save_keepalive();
            }
        })
    };

    // The dashboard's series: one sample a second of what status already shows.
    let sampler = {
        let (registry, queue) = (registry.clone(), queue_figures);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(TIMELINE_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                let (functions, node, queues) =
                    (registry.list(), registry.node_status(), queue.stats());
                let now = crate::aws::now_ms() as f64 / 1000.0;
                timeline.lock().sample(now, &functions, &node, &queues);
            }
        })
    };

    let errors = registry.restore_and_scan(plan).await;
    // From the revision the restored store reflects: only what this node missed.
    if let Some(c) = &cluster {
        crate::cluster::follow_catalog(c, queue_settings);
    }
    // The compiles' freed heap goes back to the kernel (runtime/src/heap.rs).
    let _ = tokio::task::spawn_blocking(surge_runtime::heap::trim).await;
    for e in &errors {
        eprintln!("error: {e}");
    }
    println!(
        "ready: {} functions deployed, {} failed",
        registry.list().len(),
        errors.len()
    );
    let _ = std::io::stdout().flush();

    shutdown.recv().await;
    tracing::info!("shutting down");
    // The others stop routing here now, not when the lease would have ended.
    if let Some(c) = &cluster {
        c.leave().await;
    }
    let _ = stop_tx.send(());
    let _ = server.await;
    // No new deliveries; one under way is abandoned and runs again at the next start.
    let _ = queue_stop_tx.send(());
    let _ = deliveries.await;
    // No more decisions: the supervisors stop their sandboxes now.
    let _ = scaler_stop_tx.send(());
    let _ = scaler.await;
    let _ = vertical_stop_tx.send(());
    let _ = resizer.await;
    saver.abort();
    sampler.abort();
    if let Some(r) = &records {
        r.close().await;
    }
    registry.save_keepalive();
    registry.shutdown().await;
    let _ = std::fs::remove_file(state_dir.join("server-url"));
    Ok(())
}

/// SIGTERM and SIGINT, registered at start.
struct ShutdownSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    fn install() -> anyhow::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(ShutdownSignals {
            term: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
            int: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
        })
    }

    async fn recv(mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}
