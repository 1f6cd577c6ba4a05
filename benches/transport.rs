//! The cost of the gateway↔sandbox transport per request: one HTTP/1.1 round trip over a
//! Unix socket through `dispatch::transport::Endpoint`, against a hyper server that answers
//! at once (no guest), so what is measured is the hop itself.
//!
//!   cargo bench --bench transport

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use http_body_util::Full;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use surge::dispatch::transport::Endpoint;

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
                let svc = hyper::service::service_fn(|_req| async {
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(
                        b"hello from surge\n",
                    ))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    let ep = Arc::new(Endpoint::new(sock, 0));
    let mut g = c.benchmark_group("transport");
    g.throughput(Throughput::Elements(1));
    g.bench_function("uds_http1_round_trip", |b| {
        b.to_async(&rt).iter(|| {
            let ep = ep.clone();
            async move {
                let req = Request::builder()
                    .uri("/hello")
                    .header("host", "localhost")
                    .body(Full::new(Bytes::new()))
                    .unwrap();
                let r = ep.send(req, 1 << 20).await.unwrap();
                assert_eq!(r.body().len(), 17);
            }
        })
    });
    // 16 requests in flight at once, as under load: the cost per request when the hop's
    // wake-ups overlap.
    g.throughput(Throughput::Elements(16));
    g.bench_function("uds_http1_16_in_flight", |b| {
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
                            .body(Full::new(Bytes::new()))
                            .unwrap();
                        ep.send(req, 1 << 20).await.unwrap().body().len()
                    });
                }
                while let Some(n) = set.join_next().await {
                    assert_eq!(n.unwrap(), 17);
                }
            }
        })
    });
    g.finish();
}

criterion_group!(benches, transport);
criterion_main!(benches);
