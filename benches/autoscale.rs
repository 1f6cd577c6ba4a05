//! The autoscaler's cost per control-loop tick: for 1,000 functions, read each metrics
//! window (stable and panic averages) and run the horizontal decider, as
//! `Scaler::decide` does. Also the data path's share: recording one request's
//! arrival, start and end in its window.
//!
//!   cargo bench --bench autoscale

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use surge::control::autoscale::decider::{Decider, Observation, Params};
use surge::dispatch::load::Window;
use tokio::time::Instant;

const FUNCTIONS: usize = 1000;

/// 1,000 functions with a minute of varied history in 200 ms buckets (the default for a 6 s
/// panic window), as the live host keeps them.
fn functions(t0: Instant) -> Vec<(Window, Decider)> {
    let params = Params::default();
    (0..FUNCTIONS)
        .map(|i| {
            let mut w = Window::new(t0, Duration::from_millis(200), params.stable_window);
            // Function i sees a request every (i % 50 + 1) × 10 ms, each lasting 30 ms.
            let every = Duration::from_millis(((i % 50) as u64 + 1) * 10);
            let mut t = t0;
            while t < t0 + Duration::from_secs(60) {
                w.arrival(t);
                w.change(t, 1);
                w.change(t + Duration::from_millis(30), -1);
                t += every;
            }
            (w, Decider::new(params.clone()))
        })
        .collect()
}

fn tick(fns: &mut [(Window, Decider)], now: Instant) -> u64 {
    let mut total = 0u64;
    for (w, d) in fns.iter_mut() {
        let p = d.params().clone();
        let obs = Observation {
            stable_concurrency: w.average_concurrency(now, p.stable_window),
            panic_concurrency: w.average_concurrency(now, p.panic_window),
            current: w.level(),
            idle_since: w.idle_since(),
            ready: 2,
            keep: None,
            forecast_floor: None,
        };
        if let surge::control::autoscale::decider::Decision::Desired { instances, .. } =
            d.decide(&obs, now)
        {
            total += instances as u64;
        }
    }
    total
}

fn autoscale(c: &mut Criterion) {
    let t0 = Instant::now();
    let mut g = c.benchmark_group("autoscale");
    g.throughput(Throughput::Elements(FUNCTIONS as u64));
    g.bench_function("decider_tick_1000_functions", |b| {
        let mut fns = functions(t0);
        let mut now = t0 + Duration::from_secs(60);
        b.iter(|| {
            now += Duration::from_secs(1);
            black_box(tick(&mut fns, now))
        })
    });
    // 100 requests per iteration: criterion reports the time per request.
    g.throughput(Throughput::Elements(100));
    g.bench_function("window_record_one_request", |b| {
        b.iter_batched_ref(
            || {
                (
                    Window::new(t0, Duration::from_millis(200), Duration::from_secs(60)),
                    t0,
                )
            },
            |(w, t)| {
                for _ in 0..100 {
                    *t += Duration::from_micros(100);
                    w.arrival(*t);
                    w.change(*t, 1);
                    w.change(*t + Duration::from_micros(50), -1);
                }
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, autoscale);
criterion_main!(benches);
