//! The cost of the gateway↔sandbox transport per request: one frame each way over a Unix
//! socket through `dispatch::transport::Endpoint`, against a server that answers at once as
//! the sandbox does (no guest), so what is measured is the hop itself.
//!
//!   cargo bench --bench transport

use std::sync::Arc;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use hyper::body::Body;
use hyper::{Request, Response};
use surge::dispatch::transport::Endpoint;
use surge_runtime::sandbox::frame;
use tokio::io::AsyncWriteExt;

fn transport(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("bench.sock");
    let listener = rt.block_on(async { tokio::net::UnixListener::bind(&sock).unwrap() });
    rt.spawn(async move {
        loop {
            let (s, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut s = s;
                let answer = frame::encode_response(&Response::new(Bytes::from_static(
                    b"hello from surge\n",
                )));
                while let Ok(Some(Ok(p))) = frame::read(&mut s, 1 << 20).await {
                    frame::decode_request(p).unwrap();
                    if s.write_all(&answer).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    let ep = Arc::new(Endpoint::new(sock, 0));
    let mut g = c.benchmark_group("transport");
    g.throughput(Throughput::Elements(1));
    g.bench_function("uds_frame_round_trip", |b| {
        b.to_async(&rt).iter(|| {
            let ep = ep.clone();
            async move {
                let req = Request::builder()
                    .uri("/hello")
                    .header("host", "localhost")
                    .body(Bytes::new())
                    .unwrap();
                let r = ep.send(req, 1 << 20, far()).await.unwrap();
                assert_eq!(r.body().size_hint().exact(), Some(17));
            }
        })
    });
    // 16 requests in flight at once, as under load: the cost per request when the hop's
    // wake-ups overlap.
    g.throughput(Throughput::Elements(16));
    g.bench_function("uds_frame_16_in_flight", |b| {
        b.to_async(&rt).iter(|| {
            let ep = ep.clone();
            async move {
                let mut set = tokio::task::JoinSet::new();
                for _ in 0..16 {
                    let ep = ep.clone();
                    set.spawn(async move {
                        let req = Request::builder()
                            .uri("/hello")
                            .header("host", "localhost")
                            .body(Bytes::new())
                            .unwrap();
                        let r = ep.send(req, 1 << 20, far()).await.unwrap();
                        r.body().size_hint().exact()
                    });
                }
                while let Some(n) = set.join_next().await {
                    assert_eq!(n.unwrap(), Some(17));
                }
            }
        })
    });
    g.finish();
}

/// A deadline that never comes (it bounds only streamed bodies, and these are whole).
fn far() -> tokio::time::Instant {
    tokio::time::Instant::now() + std::time::Duration::from_secs(3600)
}

criterion_group!(benches, transport);
criterion_main!(benches);
