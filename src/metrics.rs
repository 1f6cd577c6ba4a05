//! Prometheus metrics (the official `prometheus` crate). Request counters and latencies are
//! recorded on the data path; per-function gauges are filled from the registry at scrape time.

use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts,
    Registry as PromRegistry, TextEncoder,
};

use crate::registry::FunctionInfo;

pub struct Metrics {
    registry: PromRegistry,
    pub requests: IntCounterVec,
    pub duration: HistogramVec,
    inflight: IntGaugeVec,
    instances: IntGaugeVec,
    desired: IntGaugeVec,
    max_instances: IntGaugeVec,
    queued: IntGaugeVec,
    panic: IntGaugeVec,
    arrival_rate: GaugeVec,
    restarts: IntGaugeVec,
    version: IntGaugeVec,
    /// Counted by the supervisors; copied in at scrape time (reset + add, under `render`).
    cold_starts: IntCounterVec,
    queued_total: IntCounterVec,
    render: parking_lot::Mutex<()>,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = PromRegistry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "surge_requests_total",
                "Invocations by function and outcome (ok, error, timeout, memory, trap, rejected).",
            ),
            &["function", "outcome"],
        )
        .expect("valid metric");
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "surge_request_duration_seconds",
                "Invocation latency at the gateway.",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0,
            ]),
            &["function"],
        )
        .expect("valid metric");
        let gauge = |name: &str, help: &str| {
            IntGaugeVec::new(Opts::new(name, help), &["function"]).expect("valid metric")
        };
        let inflight = gauge(
            "surge_function_inflight_requests",
            "Requests executing on the function's instances now.",
        );
        let instances = gauge(
            "surge_function_instances",
            "Instances ready (warm) in the function's pool.",
        );
        let desired = gauge(
            "surge_function_desired_instances",
            "The autoscaler's target for the function's pool.",
        );
        let max_instances = gauge(
            "surge_function_max_instances",
            "The most instances the function may scale to.",
        );
        let queued = gauge(
            "surge_function_queued_requests",
            "Requests waiting in the activator queue for an instance.",
        );
        let panic = gauge(
            "surge_function_panic_mode",
            "1 while the autoscaler is in panic mode for the function, else 0.",
        );
        let arrival_rate = GaugeVec::new(
            Opts::new(
                "surge_function_requests_per_second",
                "Arrivals per second over the function's panic window.",
            ),
            &["function"],
        )
        .expect("valid metric");
        let cold_starts = IntCounterVec::new(
            Opts::new(
                "surge_function_cold_starts_total",
                "Sandbox starts from zero instances.",
            ),
            &["function"],
        )
        .expect("valid metric");
        let restarts = gauge(
            "surge_sandbox_restarts",
            "Times the function's sandbox died and was restarted.",
        );
        let version = gauge(
            "surge_function_version",
            "The live version of each function.",
        );
        let queued_total = IntCounterVec::new(
            Opts::new(
                "surge_function_queued_requests_total",
                "Requests that had to wait in the activator queue for an instance.",
            ),
            &["function"],
        )
        .expect("valid metric");
        for c in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(duration.clone()),
            Box::new(arrival_rate.clone()),
            Box::new(cold_starts.clone()),
            Box::new(queued_total.clone()),
        ] {
            registry.register(c).expect("unique metric");
        }
        for g in [
            &inflight,
            &instances,
            &desired,
            &max_instances,
            &queued,
            &panic,
            &restarts,
            &version,
        ] {
            registry
                .register(Box::new(g.clone()))
                .expect("unique metric");
        }
        Metrics {
            registry,
            requests,
            duration,
            inflight,
            instances,
            desired,
            max_instances,
            queued,
            panic,
            arrival_rate,
            restarts,
            version,
            cold_starts,
            queued_total,
            render: parking_lot::Mutex::new(()),
        }
    }

    /// The text exposition, with gauges refreshed from `functions`.
    pub fn render(&self, functions: &[FunctionInfo]) -> String {
        let _one_at_a_time = self.render.lock();
        for g in [
            &self.inflight,
            &self.instances,
            &self.desired,
            &self.max_instances,
            &self.queued,
            &self.panic,
            &self.restarts,
            &self.version,
        ] {
            g.reset();
        }
        self.arrival_rate.reset();
        self.cold_starts.reset();
        self.queued_total.reset();
        for f in functions {
            let l = [f.name.as_str()];
            self.inflight.with_label_values(&l).set(f.executing as i64);
            self.instances.with_label_values(&l).set(f.instances as i64);
            self.desired.with_label_values(&l).set(f.desired as i64);
            self.max_instances
                .with_label_values(&l)
                .set(f.max_instances as i64);
            self.queued.with_label_values(&l).set(f.queued as i64);
            self.panic
                .with_label_values(&l)
                .set((f.mode == "panic") as i64);
            self.arrival_rate.with_label_values(&l).set(f.rps);
            self.cold_starts.with_label_values(&l).inc_by(f.cold_starts);
            self.queued_total
                .with_label_values(&l)
                .inc_by(f.queued_total);
            self.restarts.with_label_values(&l).set(f.restarts as i64);
            self.version.with_label_values(&l).set(f.version as i64);
        }
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding");
        String::from_utf8(buf).expect("prometheus text is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
