//! One request through the dispatcher to a warm instance, without the network: admission,
//! the in-flight guard, the transport to a real sandbox process (under its cgroup when one
//! is writable) and a warm `hello` instance there, and back. No TCP, no gateway parsing.
//!
//!   cargo bench --bench dispatch

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use surge::control::node::Node;
use surge::control::supervisor::driver::ProcessSpawner;
use surge::control::supervisor::zygote::Placement;
use surge::control::supervisor::SandboxCtx;
use surge::manifest::HostConfig;
use surge::registry::store::Store;
use surge::registry::Registry;
use surge_runtime::artifact::CompileCache;
use surge_runtime::cgroup::{CgroupRoot, Driver};
use surge_runtime::exec::Outcome;

fn request() -> hyper::Request<Bytes> {
    hyper::Request::builder()
        .uri("/hello")
        .header("host", "localhost")
        .body(Bytes::new())
        .unwrap()
}

fn dispatch(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let state = tempfile::tempdir().unwrap();
    let mut cfg = HostConfig::embedded();
    cfg.state_dir = state.path().to_path_buf();
    cfg.cache_dir = root.join("target/bench-cache");
    let run_dir = state.path().join("run");
    std::fs::create_dir_all(&run_dir).unwrap();
    let subtree = format!("surge-bench-{}", std::process::id());
    let cgroups = match CgroupRoot::detect("", &subtree) {
        Ok(r) => Some(Arc::new(r) as Arc<dyn Driver>),
        Err(e) => {
            eprintln!("dispatch bench: no cgroup ({e}); the sandbox runs without limits");
            None
        }
    };
    let sandboxes = Arc::new(SandboxCtx {
        spawner: Arc::new(ProcessSpawner::new(Placement {
            exe: env!("CARGO_BIN_EXE_surge").into(),
            uid: cfg.sandbox.uid,
            gid: cfg.sandbox.gid,
        })),
        cgroups,
        run_dir,
        config: cfg.sandbox.clone(),
        poke: Arc::new(tokio::sync::Notify::new()),
        node: Arc::new(Node::from_config(&cfg.node)),
        vertical: surge::control::vertical::params(&cfg.vertical),
        keepalive: cfg.keepalive.clone(),
    });
    let store = Store::open(state.path()).unwrap();
    let cache = CompileCache::new(cfg.cache_dir()).unwrap();
    let registry = Registry::new(cfg, store, cache, sandboxes).unwrap();
    let manifest_path = root.join("functions/hello/function.toml");
    // Two instances, as the harness runs hello: two requests can be in flight at once.
    let manifest = std::fs::read_to_string(&manifest_path)
        .unwrap()
        .replace("min_instances = 0", "min_instances = 2");
    assert!(manifest.contains("min_instances = 2"));
    let wasm = std::fs::read(root.join("functions/hello/hello.wasm")).unwrap();
    rt.block_on(registry.deploy(&manifest_path.display().to_string(), &manifest, wasm))
        .unwrap();
    let hello = registry.routes().get("hello").unwrap();

    let mut g = c.benchmark_group("dispatch");
    g.throughput(Throughput::Elements(1));
    g.bench_function("hello_one_request", |b| {
        b.to_async(&rt).iter(|| async {
            let r = hello.call(request()).await.unwrap();
            assert_eq!(r.outcome, Outcome::Ok);
        })
    });
    // As many in flight as the pool has instances: the cost per request under load.
    let n =
        surge::dispatch::executions(&hello.spec, hello.kind, hello.spec.initial_instances()) as u64;
    g.throughput(Throughput::Elements(n));
    g.bench_function(format!("hello_{n}_in_flight"), |b| {
        b.to_async(&rt).iter(|| {
            let hello = hello.clone();
            async move {
                let mut set = tokio::task::JoinSet::new();
                for _ in 0..n {
                    let hello = hello.clone();
                    set.spawn(async move { hello.call(request()).await.unwrap().outcome });
                }
                while let Some(o) = set.join_next().await {
                    assert_eq!(o.unwrap(), Outcome::Ok);
                }
            }
        })
    });
    g.finish();
    drop(hello);
    rt.block_on(registry.shutdown());
}

criterion_group!(benches, dispatch);
criterion_main!(benches);
