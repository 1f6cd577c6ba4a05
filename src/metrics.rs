//! Prometheus metrics (the official `prometheus` crate). Request counters and latencies are
//! recorded on the data path; per-function gauges are filled from the registry at scrape time.

use prometheus::{
    CounterVec, Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts,
    Registry as PromRegistry, TextEncoder,
};

use crate::control::autoscale::decider::Mode;
use crate::control::node::NodeStatus;
use crate::events::FunctionQueue;
use crate::registry::status::FunctionInfo;

type IntFigure = fn(&FunctionInfo) -> i64;
type FloatFigure = fn(&FunctionInfo) -> f64;

/// Vertical scaling's per-function figures: (name, help, value).
const VERTICAL_GAUGES: &[(&str, &str, IntFigure)] = &[
    (
        "surge_function_memory_quota_bytes",
        "Memory quota of one instance in force.",
        |f| f.memory_quota_bytes as i64,
    ),
    (
        "surge_function_cpu_quota_millicores",
        "CPU quota of one instance in force.",
        |f| f.cpu_quota_millicores as i64,
    ),
    (
        "surge_function_memory_limit_bytes",
        "The sandbox cgroup's memory limit (0 at zero).",
        |f| f.memory_limit_bytes.unwrap_or(0) as i64,
    ),
    (
        "surge_function_cpu_guaranteed_millicores",
        "CPU the node guarantees the sandbox: its cgroup weight (0 at zero).",
        |f| f.cpu_guaranteed_millicores.unwrap_or(0) as i64,
    ),
    (
        "surge_function_cpu_limit_millicores",
        "The sandbox cgroup's CPU limit, its CFS quota: the guarantee and what it may burst to (0 at zero).",
        |f| f.cpu_limit_millicores.unwrap_or(0) as i64,
    ),
    (
        "surge_function_memory_usage_bytes",
        "Memory the sandbox cgroup uses now.",
        |f| f.memory_usage_bytes as i64,
    ),
    (
        "surge_function_memory_peak_bytes",
        "Highest memory of the sandbox cgroup.",
        |f| f.memory_peak_bytes as i64,
    ),
    (
        "surge_function_wasm_memory_peak_bytes",
        "Highest wasm linear memory of one instance.",
        |f| f.wasm_memory_peak_bytes as i64,
    ),
    (
        "surge_function_cpu_usage_millicores",
        "CPU the sandbox used over the last sample interval.",
        |f| f.cpu_usage_millicores as i64,
    ),
    (
        "surge_function_recommended_memory_bytes",
        "The vertical recommender's memory target per instance (0: no data).",
        |f| f.recommended_memory_bytes.unwrap_or(0) as i64,
    ),
    (
        "surge_function_recommended_cpu_millicores",
        "The vertical recommender's CPU target per instance (0: no data).",
        |f| f.recommended_cpu_millicores.unwrap_or(0) as i64,
    ),
    (
        "surge_function_capacity_limited",
        "1 while the pool is held below its target for lack of node memory.",
        |f| f.capacity_limited as i64,
    ),
];
const VERTICAL_COUNTERS: &[(&str, &str, IntFigure)] = &[
    (
        "surge_function_cpu_throttled_periods_total",
        "CFS periods in which the sandbox ran out of CPU quota.",
        |f| f.throttled_periods as i64,
    ),
    (
        "surge_function_oom_events_total",
        "Out-of-memory events: instances refused memory, and cgroup OOM kills.",
        |f| f.oom_events as i64,
    ),
    (
        "surge_function_capacity_refusals_total",
        "Scale-ups the node's memory could not hold.",
        |f| f.capacity_refusals as i64,
    ),
];
const VERTICAL_FLOAT_COUNTERS: &[(&str, &str, FloatFigure)] = &[
    (
        "surge_function_cpu_usage_seconds_total",
        "CPU time the sandbox used (its cgroup's counter).",
        |f| f.cpu_usage_seconds,
    ),
    (
        "surge_function_cpu_throttled_seconds_total",
        "Time the sandbox was throttled.",
        |f| f.throttled_seconds,
    ),
];

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
    vertical_gauges: Vec<(IntGaugeVec, IntFigure)>,
    vertical_counters: Vec<(IntCounterVec, IntFigure)>,
    vertical_float_counters: Vec<(CounterVec, FloatFigure)>,
    throttled_ratio: GaugeVec,
    resizes: IntCounterVec,
    node: IntGaugeVec,
    keepalive: KeepAliveMetrics,
    /// Asynchronous invocations' delivery time, observed by the event queue itself.
    pub async_delivery: HistogramVec,
    queue: QueueMetrics,
    render: parking_lot::Mutex<()>,
}

/// The event queue's figures, per function.
struct QueueMetrics {
    /// `state` = queued | in_flight | retrying.
    events: IntGaugeVec,
    oldest: GaugeVec,
    /// `result` = succeeded | failed | dead_lettered | throttled.
    ended: IntCounterVec,
    letters: IntGaugeVec,
}

impl QueueMetrics {
    fn new(registry: &PromRegistry) -> Self {
        let m = QueueMetrics {
            events: IntGaugeVec::new(
                Opts::new(
                    "surge_async_events",
                    "Asynchronous events held: queued (retries included), in_flight, and of the queued those retrying.",
                ),
                &["function", "state"],
            )
            .expect("valid metric"),
            oldest: GaugeVec::new(
                Opts::new(
                    "surge_async_oldest_event_age_seconds",
                    "Age of the oldest asynchronous event held (wall clock).",
                ),
                &["function"],
            )
            .expect("valid metric"),
            ended: IntCounterVec::new(
                Opts::new(
                    "surge_async_events_total",
                    "Asynchronous events that ended (succeeded, failed), were dead-lettered, or were throttled on the way, since the host started.",
                ),
                &["function", "result"],
            )
            .expect("valid metric"),
            letters: IntGaugeVec::new(
                Opts::new(
                    "surge_async_dead_letters",
                    "Records held in the dead-letter store.",
                ),
                &["function"],
            )
            .expect("valid metric"),
        };
        for c in [
            Box::new(m.events.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(m.oldest.clone()),
            Box::new(m.ended.clone()),
            Box::new(m.letters.clone()),
        ] {
            registry.register(c).expect("unique metric");
        }
        m
    }

    fn render(&self, queues: &[FunctionQueue]) {
        self.events.reset();
        self.oldest.reset();
        self.ended.reset();
        self.letters.reset();
        for q in queues {
            let f = q.function.as_str();
            for (state, n) in [
                ("queued", q.queued),
                ("in_flight", q.in_flight),
                ("retrying", q.retrying),
            ] {
                self.events.with_label_values(&[f, state]).set(n as i64);
            }
            self.oldest.with_label_values(&[f]).set(q.oldest_age_s);
            for (result, n) in [
                ("succeeded", q.succeeded),
                ("failed", q.failed),
                ("dead_lettered", q.dead_lettered),
                ("throttled", q.throttled),
            ] {
                self.ended.with_label_values(&[f, result]).inc_by(n);
            }
            self.letters
                .with_label_values(&[f])
                .set(q.dead_letters as i64);
        }
    }
}

/// The keep-alive policy's figures, per function.
struct KeepAliveMetrics {
    cold_requests: IntCounterVec,
    prewarm_hits: IntCounterVec,
    /// `window` = prewarm | keepalive.
    windows: GaugeVec,
    next_arrival: GaugeVec,
    forecast_rate: GaugeVec,
    /// 1, labelled with the policy and the pattern it sees.
    policy: IntGaugeVec,
}

impl KeepAliveMetrics {
    fn new(registry: &PromRegistry) -> Self {
        let counter = |name: &str, help: &str| {
            IntCounterVec::new(Opts::new(name, help), &["function"]).expect("valid metric")
        };
        let float = |name: &str, help: &str, labels: &[&str]| {
            GaugeVec::new(Opts::new(name, help), labels).expect("valid metric")
        };
        let m = KeepAliveMetrics {
            cold_requests: counter(
                "surge_function_cold_requests_total",
                "Requests that arrived with no instance ready and waited for a start.",
            ),
            prewarm_hits: counter(
                "surge_function_prewarm_hits_total",
                "Arrivals that found an instance only a pre-warm had loaded: cold starts avoided.",
            ),
            windows: float(
                "surge_function_keepalive_window_seconds",
                "The keep-alive policy's windows after the last activity: unloaded for `prewarm`, then loaded for `keepalive`.",
                &["function", "window"],
            ),
            next_arrival: float(
                "surge_function_next_arrival_seconds",
                "When the keep-alive policy expects the next arrival, from now (idle functions with a predicted pattern).",
                &["function"],
            ),
            forecast_rate: float(
                "surge_function_forecast_requests_per_second",
                "The arrival rate the keep-alive policy forecasts (beside surge_function_requests_per_second, the actual).",
                &["function"],
            ),
            policy: IntGaugeVec::new(
                Opts::new(
                    "surge_function_keepalive_policy",
                    "1, labelled with the function's keep-alive policy and the pattern it sees.",
                ),
                &["function", "policy", "pattern"],
            )
            .expect("valid metric"),
        };
        for c in [
            Box::new(m.cold_requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(m.prewarm_hits.clone()),
            Box::new(m.windows.clone()),
            Box::new(m.next_arrival.clone()),
            Box::new(m.forecast_rate.clone()),
            Box::new(m.policy.clone()),
        ] {
            registry.register(c).expect("unique metric");
        }
        m
    }

    fn render(&self, functions: &[FunctionInfo]) {
        self.cold_requests.reset();
        self.prewarm_hits.reset();
        self.windows.reset();
        self.next_arrival.reset();
        self.forecast_rate.reset();
        self.policy.reset();
        for f in functions {
            let l = [f.name.as_str()];
            self.cold_requests
                .with_label_values(&l)
                .inc_by(f.cold_requests);
            self.prewarm_hits
                .with_label_values(&l)
                .inc_by(f.prewarm_hits);
            for (w, v) in [("prewarm", f.prewarm_s), ("keepalive", f.keepalive_s)] {
                self.windows.with_label_values(&[f.name.as_str(), w]).set(v);
            }
            if let Some(s) = f.next_arrival_s {
                self.next_arrival.with_label_values(&l).set(s);
            }
            if let Some(r) = f.forecast_rps {
                self.forecast_rate.with_label_values(&l).set(r);
            }
            self.policy
                .with_label_values(&[f.name.as_str(), f.policy.as_str(), f.pattern.as_str()])
                .set(1);
        }
    }
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
        let async_delivery = HistogramVec::new(
            HistogramOpts::new(
                "surge_async_delivery_seconds",
                "Asynchronous events: from acceptance (the 202) to their end, retries included.",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 180.0,
                600.0, 3600.0, 21600.0,
            ]),
            &["function"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(async_delivery.clone()))
            .expect("unique metric");
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
        let labels = &["function"];
        let vertical_gauges: Vec<(IntGaugeVec, IntFigure)> = VERTICAL_GAUGES
            .iter()
            .map(|(n, h, f)| {
                (
                    IntGaugeVec::new(Opts::new(*n, *h), labels).expect("valid metric"),
                    *f,
                )
            })
            .collect();
        let vertical_counters: Vec<(IntCounterVec, IntFigure)> = VERTICAL_COUNTERS
            .iter()
            .map(|(n, h, f)| {
                (
                    IntCounterVec::new(Opts::new(*n, *h), labels).expect("valid metric"),
                    *f,
                )
            })
            .collect();
        let vertical_float_counters: Vec<(CounterVec, FloatFigure)> = VERTICAL_FLOAT_COUNTERS
            .iter()
            .map(|(n, h, f)| {
                (
                    CounterVec::new(Opts::new(*n, *h), labels).expect("valid metric"),
                    *f,
                )
            })
            .collect();
        let throttled_ratio = GaugeVec::new(
            Opts::new(
                "surge_function_cpu_throttled_ratio",
                "Fraction of the last sample interval's CFS periods that were throttled.",
            ),
            labels,
        )
        .expect("valid metric");
        let resizes = IntCounterVec::new(
            Opts::new(
                "surge_function_resizes_total",
                "Quota changes applied in place, by source (auto: the recommender; manual).",
            ),
            &["function", "source"],
        )
        .expect("valid metric");
        let node = IntGaugeVec::new(
            Opts::new(
                "surge_node_resources",
                "The node's capacity for sandboxes, and what their cgroups hold and ask for \
                 (resource: memory_bytes | cpu_millicores; state: capacity | committed | demand).",
            ),
            &["resource", "state"],
        )
        .expect("valid metric");
        for (g, _) in &vertical_gauges {
            registry
                .register(Box::new(g.clone()))
                .expect("unique metric");
        }
        for (c, _) in &vertical_counters {
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
        }
        for (c, _) in &vertical_float_counters {
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
        }
        for c in [
            Box::new(throttled_ratio.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(resizes.clone()),
            Box::new(node.clone()),
            Box::new(requests.clone()),
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
            vertical_gauges,
            vertical_counters,
            vertical_float_counters,
            throttled_ratio,
            resizes,
            node,
            keepalive: KeepAliveMetrics::new(&registry),
            queue: QueueMetrics::new(&registry),
            async_delivery,
            registry,
            render: parking_lot::Mutex::new(()),
        }
    }

    /// The text exposition, with gauges refreshed from `functions` and the node.
    pub fn render(
        &self,
        functions: &[FunctionInfo],
        node: &NodeStatus,
        queues: &[FunctionQueue],
    ) -> String {
        let _one_at_a_time = self.render.lock();
        self.queue.render(queues);
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
        self.throttled_ratio.reset();
        self.resizes.reset();
        self.node.reset();
        for (g, _) in &self.vertical_gauges {
            g.reset();
        }
        for (c, _) in &self.vertical_counters {
            c.reset();
        }
        for (c, _) in &self.vertical_float_counters {
            c.reset();
        }
        for (state, r) in [
            ("capacity", node.capacity),
            ("committed", node.committed),
            ("demand", node.demand),
        ] {
            self.node
                .with_label_values(&["memory_bytes", state])
                .set(r.memory_bytes as i64);
            self.node
                .with_label_values(&["cpu_millicores", state])
                .set(r.cpu_millicores as i64);
        }
        for f in functions {
            let l = [f.name.as_str()];
            for (g, fig) in &self.vertical_gauges {
                g.with_label_values(&l).set(fig(f));
            }
            for (c, fig) in &self.vertical_counters {
                c.with_label_values(&l).inc_by(fig(f) as u64);
            }
            for (c, fig) in &self.vertical_float_counters {
                c.with_label_values(&l).inc_by(fig(f));
            }
            self.throttled_ratio
                .with_label_values(&l)
                .set(f.throttled_fraction);
            self.resizes
                .with_label_values(&[f.name.as_str(), "auto"])
                .inc_by(f.resizes_auto);
            self.resizes
                .with_label_values(&[f.name.as_str(), "manual"])
                .inc_by(f.resizes_manual);
        }
        self.keepalive.render(functions);
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
                .set((f.mode == Mode::Panic) as i64);
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
