//! In-process costs below the transport, on the example functions' real .wasm files:
//! instantiating `hello` from the pooling allocator, one request on a warm `hello` instance,
//! and one `echo` event through a fresh instance (what every event costs).
//!
//!   cargo bench --bench instance

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use http_body_util::Full;
use surge_runtime::artifact::CompileCache;
use surge_runtime::engine::{compile_engine, pooled_engine, EpochClock, PoolShape};
use surge_runtime::exec::event::{EventHandler, EventSettings};
use surge_runtime::exec::http::{Answer, HttpHandler, HttpSettings, ResponseSink};
use surge_runtime::exec::{MemoryLedger, Outcome};
use surge_runtime::sandbox::frame;
use wasmtime::component::Component;
use wasmtime::{Engine, Module};

const MEMORY: u64 = 128 << 20;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The function's artifact from the shared bench cache (compiled on first use only).
fn artifact(name: &str) -> PathBuf {
    let file = root().join(format!("functions/{name}/{name}.wasm"));
    let bytes = std::fs::read(&file)
        .unwrap_or_else(|e| panic!("{}: {e} (run functions/build.sh)", file.display()));
    let cache = CompileCache::new(root().join("target/bench-cache")).unwrap();
    let engine = compile_engine().unwrap();
    cache
        .get_or_compile(&engine, &file.display().to_string(), &bytes, None)
        .unwrap()
        .1
}

/// The sandbox's engine, with its epoch clock running as in a sandbox.
fn engine(instances: u32) -> (Engine, Arc<EpochClock>) {
    let engine = pooled_engine(PoolShape {
        instances,
        memory_per_instance_bytes: MEMORY,
    })
    .unwrap();
    let clock = EpochClock::new(&engine);
    clock.spawn().unwrap();
    (engine, clock)
}

fn instance(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (engine, clock) = engine(2);
    // SAFETY: the artifact was written by this build's compile engine (same base config).
    let hello = unsafe { Component::deserialize_file(&engine, artifact("hello")) }.unwrap();
    let handler = HttpHandler::new(
        &engine,
        &hello,
        HttpSettings {
            env: vec![],
            memory: Arc::new(MemoryLedger::new(MEMORY)),
            timeout_ms: 10_000,
            instances: 1,
            reuse: u32::MAX,
            clock: clock.clone(),
        },
    )
    .unwrap();
    rt.block_on(handler.warm_up()).unwrap();

    let mut g = c.benchmark_group("instance");
    g.bench_function("hello_instantiate_from_pool", |b| {
        b.to_async(&rt)
            .iter(|| async { handler.instantiate_once().await.unwrap() })
    });
    g.bench_function("hello_request_on_warm_instance", |b| {
        b.to_async(&rt).iter(|| {
            let handler = Arc::clone(&handler);
            async move {
                let req = hyper::Request::builder()
                    .uri("http://localhost/hello")
                    .body(Full::new(Bytes::new()))
                    .unwrap();
                let answer = handler
                    .handle(req, 1 << 20, frame::STREAM_AFTER, &mut Unsent)
                    .await
                    .unwrap();
                let Answer::Whole(resp) = answer else {
                    panic!("hello answers whole")
                };
                assert_eq!(resp.status(), 200);
            }
        })
    });

    // SAFETY: as above, for a core module.
    let echo = unsafe { Module::deserialize_file(&engine, artifact("echo")) }.unwrap();
    let events = EventHandler::new(
        &engine,
        &echo,
        EventSettings {
            name: "echo".into(),
            env: vec![],
            memory: Arc::new(MemoryLedger::new(MEMORY)),
            timeout_ms: 10_000,
            max_output_bytes: 1 << 20,
            clock,
        },
    )
    .unwrap();
    let payload = Bytes::from_static(br#"{"key":"value","n":1}"#);
    g.bench_function("echo_event_fresh_instance", |b| {
        b.to_async(&rt).iter(|| async {
            let r = events.invoke(payload.clone()).await;
            assert_eq!(r.outcome, Outcome::Ok);
            assert_eq!(r.stdout, payload);
        })
    });
    g.finish();
}

criterion_group!(benches, instance);
criterion_main!(benches);

/// hello's answers are whole: nothing reaches a sink.
struct Unsent;

impl ResponseSink for Unsent {
    async fn head(&mut self, _: hyper::http::response::Parts) -> std::io::Result<()> {
        unreachable!("hello streams nothing")
    }
    async fn piece(&mut self, _: Bytes) -> std::io::Result<()> {
        unreachable!("hello streams nothing")
    }
}
