//! The dashboard's data: per function and for the node, one point a second over the last
//! 15 minutes, and a timeline of events (deploys, removals, resizes, scale-to-zero, cold
//! starts). It is sampled from what the host keeps anyway (the status records of
//! `surge status`, the node's ledger, the event queue's figures): no work is added per
//! request. Rates come from the counters' differences between two samples; events from
//! what changed between them.
//!
//! [`Timeline::sample`] is pure (it takes `now`), so tests step it through invented time.

use std::collections::{BTreeMap, HashMap, VecDeque};

use serde::Serialize;

use crate::control::node::NodeStatus;
use crate::control::version::Phase;
use crate::events::FunctionQueue;
use crate::registry::status::FunctionInfo;

/// How far back the dashboard looks, seconds.
pub const SPAN_S: f64 = 15.0 * 60.0;
/// Events kept at most.
const EVENTS_MAX: usize = 1000;

/// One function at one instant. Rates are per second over the interval since the last
/// sample; `cold_starts` is the count in it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Point {
    /// Unix seconds.
    pub t: f64,
    pub rps: f64,
    pub errors: f64,
    pub throttles: f64,
    pub ready: u32,
    pub desired: u32,
    pub max: u32,
    /// Waiting in the activator queue, and asynchronous events held for it.
    pub queued: u32,
    pub backlog: u64,
    pub cold_starts: u64,
    /// Per instance, and the sandbox cgroup's limit and use; bytes.
    pub memory_quota: u64,
    pub memory_limit: Option<u64>,
    pub memory_used: u64,
    /// Per instance, and the sandbox's use; millicores. Throttled: the fraction of CFS
    /// periods that ran out of quota.
    pub cpu_quota: u64,
    pub cpu_used: u64,
    pub cpu_throttled: f64,
    /// The keep-alive policy's forecast of the arrival rate (per second), and its windows
    /// after the last activity: unloaded for `prewarm_s`, then loaded for `keepalive_s`.
    pub forecast_rps: Option<f64>,
    pub prewarm_s: f64,
    pub keepalive_s: f64,
}

/// The node at one instant: capacity, what the sandboxes were granted, what they use.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NodePoint {
    pub t: f64,
    pub cpu_capacity: u64,
    pub cpu_granted: u64,
    pub cpu_used: u64,
    pub memory_capacity: u64,
    pub memory_granted: u64,
    pub memory_used: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Event {
    pub t: f64,
    pub function: String,
    /// `deploy`, `remove`, `resize`, `scale-to-zero`, `cold-start`.
    pub kind: &'static str,
    pub detail: String,
}

/// What a function's last sample held, to difference against.
#[derive(Clone, Debug)]
struct Last {
    t: f64,
    version: u64,
    requests: u64,
    errors: u64,
    throttles: u64,
    cold_starts: u64,
    resizes: u64,
    ready: u32,
    phase: Phase,
}

/// A function's series and what it is.
#[derive(Clone, Debug, Serialize)]
pub struct FunctionSeries {
    pub version: u64,
    pub kind: String,
    pub policy: String,
    #[serde(skip)]
    points: VecDeque<Point>,
}

#[derive(Default)]
pub struct Timeline {
    functions: BTreeMap<String, FunctionSeries>,
    node: VecDeque<NodePoint>,
    events: VecDeque<Event>,
    last: HashMap<String, Last>,
}

/// The dashboard endpoint's answer: what changed after `since`, columns per series (a
/// chart library's shape: one array per field, `t` first).
#[derive(Serialize)]
pub struct Snapshot {
    pub now: f64,
    pub span_s: f64,
    pub node: BTreeMap<String, Vec<serde_json::Value>>,
    pub functions: BTreeMap<String, FunctionView>,
    pub events: Vec<Event>,
}

#[derive(Serialize)]
pub struct FunctionView {
    #[serde(flatten)]
    pub info: FunctionSeries,
    pub series: BTreeMap<String, Vec<serde_json::Value>>,
}

/// Rows of one struct as columns: `{field: [values…]}`.
fn columns<'a, T: Serialize + 'a>(
    rows: impl Iterator<Item = &'a T>,
) -> BTreeMap<String, Vec<serde_json::Value>> {
    let mut out: BTreeMap<String, Vec<serde_json::Value>> = BTreeMap::new();
    for row in rows {
        if let serde_json::Value::Object(m) = serde_json::to_value(row).expect("a point serializes")
        {
            for (k, v) in m {
                out.entry(k).or_default().push(v);
            }
        }
    }
    out
}

impl Timeline {
    /// Take one sample at `now` (Unix seconds).
    pub fn sample(
        &mut self,
        now: f64,
        functions: &[FunctionInfo],
        node: &NodeStatus,
        queues: &[FunctionQueue],
    ) {
        let backlog: HashMap<&str, u64> = queues
            .iter()
            .map(|q| (q.function.as_str(), q.queued))
            .collect();
        let mut seen = Vec::with_capacity(functions.len());
        let (mut cpu_used, mut memory_used) = (0, 0);
        for f in functions {
            seen.push(f.name.clone());
            cpu_used += f.cpu_usage_millicores;
            memory_used += f.memory_usage_bytes;
            let resizes = f.resizes_auto + f.resizes_manual;
            let last = self.last.get(&f.name).cloned();
            // A new version's counters start again at zero: no rate across it.
            let dt = match &last {
                Some(l) if l.version == f.version && now > l.t => Some(now - l.t),
                _ => None,
            };
            let per_s =
                |now: u64, then: u64| dt.map_or(0.0, |dt| now.saturating_sub(then) as f64 / dt);
            let now_last = Last {
                t: now,
                version: f.version,
                requests: f.requests,
                errors: f.errors,
                throttles: f.throttles,
                cold_starts: f.cold_starts,
                resizes,
                ready: f.instances,
                phase: f.phase,
            };
            let l = last.clone().unwrap_or_else(|| now_last.clone());
            let same_version = l.version == f.version;
            let round = |x: f64| (x * 100.0).round() / 100.0;
            let throttles = per_s(f.throttles, l.throttles);
            let point = Point {
                t: now,
                rps: round(per_s(f.requests, l.requests)),
                errors: round((per_s(f.errors, l.errors) - throttles).max(0.0)),
                throttles: round(throttles),
                ready: f.instances,
                desired: f.desired,
                max: f.max_instances,
                queued: f.queued,
                backlog: backlog.get(f.name.as_str()).copied().unwrap_or(0),
                cold_starts: if same_version {
                    f.cold_starts.saturating_sub(l.cold_starts)
                } else {
                    0
                },
                memory_quota: f.memory_quota_bytes,
                memory_limit: f.memory_limit_bytes,
                memory_used: f.memory_usage_bytes,
                cpu_quota: f.cpu_quota_millicores,
                cpu_used: f.cpu_usage_millicores,
                cpu_throttled: f.throttled_fraction,
                forecast_rps: f.forecast_rps,
                prewarm_s: f.prewarm_s,
                keepalive_s: f.keepalive_s,
            };
            // Events: what changed since the last sample.
            let mut event = |kind: &'static str, detail: String| {
                self.events.push_back(Event {
                    t: now,
                    function: f.name.clone(),
                    kind,
                    detail,
                })
            };
            match &last {
                None => event("deploy", format!("version {} ({})", f.version, f.kind)),
                Some(l) if l.version != f.version => event(
                    "deploy",
                    format!("version {} replaces {}", f.version, l.version),
                ),
                Some(l) => {
                    if resizes > l.resizes {
                        event(
                            "resize",
                            format!(
                                "{} MiB, {}m per instance ({})",
                                f.memory_quota_bytes >> 20,
                                f.cpu_quota_millicores,
                                f.last_resize.as_deref().unwrap_or("manual")
                            ),
                        );
                    }
                    if point.cold_starts > 0 {
                        event(
                            "cold-start",
                            format!("{} cold start(s); {} ready", point.cold_starts, f.instances),
                        );
                    }
                    if f.phase == Phase::Zero && l.phase != Phase::Zero {
                        event("scale-to-zero", format!("from {} instance(s)", l.ready));
                    }
                }
            }
            self.last.insert(f.name.clone(), now_last);
            let s = self
                .functions
                .entry(f.name.clone())
                .or_insert_with(|| FunctionSeries {
                    version: f.version,
                    kind: f.kind.clone(),
                    policy: f.policy.clone(),
                    points: VecDeque::new(),
                });
            s.version = f.version;
            s.kind.clone_from(&f.kind);
            s.policy.clone_from(&f.policy);
            s.points.push_back(point);
            while s.points.front().is_some_and(|p| p.t < now - SPAN_S) {
                s.points.pop_front();
            }
        }
        let gone: Vec<String> = self
            .last
            .keys()
            .filter(|n| !seen.contains(n))
            .cloned()
            .collect();
        for name in gone {
            self.last.remove(&name);
            self.functions.remove(&name);
            self.events.push_back(Event {
                t: now,
                function: name,
                kind: "remove",
                detail: String::new(),
            });
        }
        self.node.push_back(NodePoint {
            t: now,
            cpu_capacity: node.capacity.cpu_millicores,
            cpu_granted: node.committed.cpu_millicores,
            cpu_used,
            memory_capacity: node.capacity.memory_bytes,
            memory_granted: node.committed.memory_bytes,
            memory_used,
        });
        while self.node.front().is_some_and(|p| p.t < now - SPAN_S) {
            self.node.pop_front();
        }
        while self.events.len() > EVENTS_MAX
            || self.events.front().is_some_and(|e| e.t < now - SPAN_S)
        {
            self.events.pop_front();
        }
    }

    /// Everything after `since` (Unix seconds; 0: the whole span).
    pub fn since(&self, now: f64, since: f64) -> Snapshot {
        Snapshot {
            now,
            span_s: SPAN_S,
            node: columns(self.node.iter().filter(|p| p.t > since)),
            functions: self
                .functions
                .iter()
                .map(|(name, s)| {
                    (
                        name.clone(),
                        FunctionView {
                            info: s.clone(),
                            series: columns(s.points.iter().filter(|p| p.t > since)),
                        },
                    )
                })
                .collect(),
            events: self
                .events
                .iter()
                .filter(|e| e.t > since)
                .cloned()
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::node::Resources;

    fn info(name: &str) -> FunctionInfo {
        FunctionInfo {
            name: name.into(),
            version: 1,
            kind: "event".into(),
            max_instances: 4,
            memory_quota_bytes: 64 << 20,
            cpu_quota_millicores: 250,
            ..Default::default()
        }
    }

    fn node() -> NodeStatus {
        NodeStatus {
            capacity: Resources {
                memory_bytes: 8 << 30,
                cpu_millicores: 2000,
            },
            ..Default::default()
        }
    }

    #[test]
    fn rates_from_counters_and_events_from_changes() {
        let mut t = Timeline::default();
        let mut f = info("echo");
        t.sample(100.0, std::slice::from_ref(&f), &node(), &[]);
        // Two seconds later: 40 requests, 4 errors of which 2 throttles, a cold start.
        f.requests = 40;
        f.errors = 4;
        f.throttles = 2;
        f.cold_starts = 1;
        f.instances = 2;
        f.phase = Phase::Running;
        t.sample(102.0, std::slice::from_ref(&f), &node(), &[]);
        // Then idle, scaled to zero, and resized.
        f.instances = 0;
        f.phase = Phase::Zero;
        f.resizes_auto = 1;
        f.memory_quota_bytes = 32 << 20;
        t.sample(103.0, std::slice::from_ref(&f), &node(), &[]);
        let s = t.since(103.0, 0.0);
        let echo = &s.functions["echo"].series;
        assert_eq!(echo["t"].len(), 3);
        assert_eq!(echo["rps"][1], 20.0);
        assert_eq!(echo["errors"][1], 1.0);
        assert_eq!(echo["throttles"][1], 1.0);
        assert_eq!(echo["cold_starts"][1], 1);
        assert_eq!(echo["ready"][1], 2);
        let kinds: Vec<_> = s.events.iter().map(|e| (e.t, e.kind)).collect();
        assert_eq!(
            kinds,
            [
                (100.0, "deploy"),
                (102.0, "cold-start"),
                (103.0, "resize"),
                (103.0, "scale-to-zero")
            ]
        );
        // Incremental: only what came after `since`.
        let later = t.since(103.0, 102.0);
        assert_eq!(later.functions["echo"].series["t"].len(), 1);
        assert_eq!(later.events.len(), 2);
        assert_eq!(later.node["cpu_capacity"], [2000]);
    }

    #[test]
    fn a_new_version_restarts_the_counters_and_a_removal_is_an_event() {
        let mut t = Timeline::default();
        let mut f = info("echo");
        f.requests = 1000;
        t.sample(10.0, std::slice::from_ref(&f), &node(), &[]);
        f.version = 2;
        f.requests = 5;
        t.sample(11.0, std::slice::from_ref(&f), &node(), &[]);
        let s = t.since(11.0, 10.0);
        assert_eq!(s.functions["echo"].series["rps"], [0.0]);
        assert_eq!(s.events[0].kind, "deploy");
        assert_eq!(s.events[0].detail, "version 2 replaces 1");
        t.sample(12.0, &[], &node(), &[]);
        let s = t.since(12.0, 11.0);
        assert!(s.functions.is_empty());
        assert_eq!(s.events[0].kind, "remove");
    }

    #[test]
    fn keeps_fifteen_minutes() {
        let mut t = Timeline::default();
        let f = info("echo");
        for i in 0..2000 {
            t.sample(i as f64, std::slice::from_ref(&f), &node(), &[]);
        }
        let s = t.since(1999.0, 0.0);
        assert_eq!(s.functions["echo"].series["t"].len(), 901);
        assert_eq!(s.node["t"].len(), 901);
    }
}
