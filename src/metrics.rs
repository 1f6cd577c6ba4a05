//! Prometheus metrics (the official `prometheus` crate). Request counters and latencies are
//! recorded on the data path; per-function gauges are filled from the registry at scrape time.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts,
    Registry as PromRegistry, TextEncoder,
};

use crate::registry::FunctionInfo;

pub struct Metrics {
    registry: PromRegistry,
    pub requests: IntCounterVec,
    pub duration: HistogramVec,
    inflight: IntGaugeVec,
    instances: IntGaugeVec,
    restarts: IntGaugeVec,
    version: IntGaugeVec,
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
        let inflight = gauge("surge_function_inflight_requests", "Requests in flight.");
        let instances = gauge(
            "surge_function_instances",
            "Instances in the function's pool.",
        );
        let restarts = gauge(
            "surge_sandbox_restarts",
            "Times the function's sandbox died and was restarted.",
        );
        let version = gauge(
            "surge_function_version",
            "The live version of each function.",
        );
        for c in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(duration.clone()),
        ] {
            registry.register(c).expect("unique metric");
        }
        for g in [&inflight, &instances, &restarts, &version] {
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
            restarts,
            version,
        }
    }

    /// The text exposition, with gauges refreshed from `functions`.
    pub fn render(&self, functions: &[FunctionInfo]) -> String {
        for g in [
            &self.inflight,
            &self.instances,
            &self.restarts,
            &self.version,
        ] {
            g.reset();
        }
        for f in functions {
            let l = [f.name.as_str()];
            self.inflight.with_label_values(&l).set(f.inflight as i64);
            self.instances.with_label_values(&l).set(f.instances as i64);
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
