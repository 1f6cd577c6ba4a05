//! `surge replay --model minute` over the Azure sample (traces/azure2019: Shahrad et al.,
//! USENIX ATC'20; CC-BY 4.0): the whole run (reading the CSVs and replaying every
//! function under the seven policies of BENCHMARKS.md's table) for the first 10, 100 and 500 functions, so
//! the cost per function-day and its growth show.
//!
//!   cargo bench --bench replay

use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use surge::control::keepalive::PolicySpec;
use surge::replay::{run_live, run_minute, Options};

fn replay(c: &mut Criterion) {
    let traces = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("traces/azure2019");
    let policies =
        PolicySpec::parse_list("fixed:10,fixed:20,fixed:60,fixed:120,fixed:240,hybrid,predictive")
            .unwrap();
    let mut g = c.benchmark_group("replay_minute_seven_policies");
    g.sample_size(20);
    for n in [10usize, 100, 500] {
        let opts = Options {
            invocations: traces.join("500_inv.csv"),
            memory: Some(traces.join("500_mem.csv")),
            durations: None,
            policies: policies.clone(),
            functions: Some(n),
            cold_start_gb_s: surge::replay::embedded_cold_start_gb_s(),
            progress: Default::default(),
        };
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(format!("{n}_functions"), |b| {
            b.iter(|| run_minute(&opts).unwrap().reports.len())
        });
    }
    g.finish();
}

/// `--model live` under the eight policies of BENCHMARKS.md's table, for the first 10 and
/// 50 functions (the whole sample takes most of a minute: BENCHMARKS.md times it).
fn replay_live(c: &mut Criterion) {
    let traces = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("traces/azure2019");
    let policies = PolicySpec::parse_list(
        "fixed:10,fixed:20,fixed:60,fixed:120,fixed:240,hybrid,kpa,predictive",
    )
    .unwrap();
    let cfg = surge::manifest::config::HostConfig::embedded();
    let params = surge::replay::live::LiveParams {
        cold_start: std::time::Duration::from_millis(10),
        seed: 1,
        tick: cfg.autoscaler.tick.0,
        keepalive: cfg.keepalive,
    };
    let mut g = c.benchmark_group("replay_live_eight_policies");
    g.sample_size(10);
    for n in [10usize, 50] {
        let opts = Options {
            invocations: traces.join("500_inv.csv"),
            memory: Some(traces.join("500_mem.csv")),
            durations: Some(traces.join("500_run.csv")),
            policies: policies.clone(),
            functions: Some(n),
            cold_start_gb_s: surge::replay::embedded_cold_start_gb_s(),
            progress: Default::default(),
        };
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(format!("{n}_functions"), |b| {
            b.iter(|| run_live(&opts, &params).unwrap().len())
        });
    }
    g.finish();
}

criterion_group!(benches, replay, replay_live);
criterion_main!(benches);
