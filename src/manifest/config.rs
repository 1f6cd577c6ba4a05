//! The host config. `config/surge.toml` is embedded in the binary and is the default; a file
//! given with `--config` overrides it key by key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::sections::{check_scaling, Limits, LimitsToml, Scaling, ScalingToml};
use super::text::{line_of_key, parse_toml, FileError};
use super::units::{Bytes, Millicores, Span};
use surge_runtime::Kind;

/// The shipped `config/surge.toml`, compiled in.
pub const EMBEDDED: &str = include_str!("../../config/surge.toml");

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostConfig {
    pub listen: SocketAddr,
    pub functions_dir: PathBuf,
    pub state_dir: PathBuf,
    pub cache_dir: PathBuf,
    #[serde(default)]
    pub admin_token: Option<String>,
    pub max_admin_body: Bytes,
    /// Threads of the gateway's runtime; 0: [`auto_threads`].
    pub gateway_threads: u32,
    pub defaults: Defaults,
    pub autoscaler: AutoscalerConfig,
    pub keepalive: KeepAliveConfig,
    #[serde(rename = "async")]
    pub async_queue: AsyncConfig,
    pub lambda: LambdaConfig,
    pub vertical: VerticalConfig,
    pub node: NodeConfig,
    pub sandbox: SandboxConfig,
    pub cgroup: CgroupConfig,
    pub logs: LogsConfig,
    pub cluster: ClusterConfig,
}

/// Many surge nodes as one platform, on etcd (`src/cluster/`). Off when `etcd` is empty:
/// a single node needs no etcd and behaves exactly as without this section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// etcd's client URLs (`http://host:2379`); every member, so that one down is survived.
    pub etcd: Vec<String>,
    /// This node's name in the cluster; empty: the advertised address.
    pub node: String,
    /// The URL the other nodes reach this node's gateway at; empty: `http://<listen>`.
    pub advertise: String,
    /// The node's lease: its membership, warm instances and claims go this long after its
    /// last keep-alive reached etcd.
    pub lease_ttl: Span,
    /// Keys live under this prefix (several clusters may share one etcd).
    pub prefix: String,
    /// Bounded-load placement: no node takes more than `balance` × the mean load once the
    /// nodes are past packing (Mirrokni et al.'s c).
    pub balance: f64,
}

impl ClusterConfig {
    pub fn enabled(&self) -> bool {
        !self.etcd.is_empty()
    }
}

/// Invocation records (`surge logs`), in `<state_dir>/logs.db`, bounded per function.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogsConfig {
    /// Keep one record per invocation.
    pub records: bool,
    /// Records older than this go.
    pub retention: Span,
    /// Per function: at most this many records, and this many bytes of them.
    pub max_records: u64,
    pub max_bytes: Bytes,
    /// The tail of the guest's stderr one record keeps (the sandbox sends at most 4Ki).
    pub max_log: Bytes,
}

/// The vertical recommender's parameters (VPA names where VPA has them).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerticalConfig {
    /// How often every function's cgroup usage is sampled and its quota re-decided.
    pub interval: Span,
    pub half_life: Span,
    pub memory_percentile: f64,
    pub cpu_percentile: f64,
    pub lower_percentile: f64,
    pub upper_percentile: f64,
    pub safety_margin: f64,
    pub confidence_period: Span,
    pub oom_bump_ratio: f64,
    pub oom_bump_floor: Bytes,
    pub throttle_threshold: f64,
    pub throttle_sustain: u32,
    pub throttle_raise: f64,
}

/// The node's capacity, which all quotas × instances must fit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// CPU for sandboxes; absent: the machine's (its cores, or the host's own cgroup quota),
    /// less `reserve_cpu`.
    #[serde(default)]
    pub cpu: Option<Millicores>,
    /// Memory for sandboxes; absent: the machine's (MemTotal, or the host's own cgroup
    /// limit), less `reserve_memory`.
    #[serde(default)]
    pub memory: Option<Bytes>,
    pub reserve_cpu: Millicores,
    pub reserve_memory: Bytes,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutoscalerConfig {
    /// Period of the control loop.
    pub tick: Span,
}

/// The keep-alive policies' time step and the cost they minimise:
/// `cold_start_cost × cold starts + memory_cost × GB-s loaded and idle`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeepAliveConfig {
    /// The policies' time step: idle times are counted in whole ticks.
    pub tick: Span,
    /// What one cold start costs (any unit; the same as `memory_cost`'s).
    pub cold_start_cost: f64,
    /// What one GB-second of idle loaded memory costs.
    pub memory_cost: f64,
    /// The arrival-rate series the forecasters see: one point per bucket.
    pub forecast_bucket: Span,
    /// Below this forecast rate (requests per second) the forecast does not hold
    /// instances up.
    pub forecast_min_rps: f64,
}

impl KeepAliveConfig {
    /// GB-seconds of idle memory one cold start is worth.
    pub fn cold_start_gb_s(&self) -> f64 {
        self.cold_start_cost / self.memory_cost
    }
}

/// The Lambda control plane's credentials: a call that changes or reads functions must be
/// signed (AWS SigV4) with this access key, or carry the admin token.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LambdaConfig {
    /// Empty: `SURGE_AWS_ACCESS_KEY_ID`, else `<state_dir>/aws-credentials`, generated.
    pub access_key_id: String,
    /// The key's secret: with it, the whole signature is checked, not only the key id.
    pub secret_access_key: String,
}

/// The asynchronous invocations' queue (`X-Amz-Invocation-Type: Event`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AsyncConfig {
    /// How much faster than the wall clock the queue's schedule runs: retry delays,
    /// throttling backoff and event ages are all host time ÷ this. 1 is Lambda's schedule;
    /// tests and demos run it in seconds.
    pub time_scale: f64,
    /// Events the queue holds at most, over all functions; an `Event` invocation beyond
    /// it is throttled (429).
    pub max_queued: u64,
}

/// The shortest control-loop tick accepted.
pub const MIN_TICK: std::time::Duration = std::time::Duration::from_millis(100);

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    pub limits: Limits,
    pub scaling: Scaling,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxConfig {
    pub memory_overhead: Overhead,
    pub pids_max: u32,
    pub uid: u32,
    pub gid: u32,
    pub start_timeout: Span,
    /// Most threads one sandbox runs guests on (never more than its instances);
    /// 0: [`auto_threads`].
    pub threads: u32,
}

/// The memory a sandbox process holds beside its instances, per kind of handler: a size
/// for both, or `{ event = "4Mi", http = "8Mi" }`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "OverheadParts")]
pub struct Overhead {
    pub event: Bytes,
    pub http: Bytes,
}

impl Overhead {
    /// In bytes, for a sandbox of `kind`.
    pub fn of(&self, kind: Kind) -> u64 {
        match kind {
            Kind::Event => self.event.0,
            Kind::Http => self.http.0,
        }
    }
}

impl TryFrom<OverheadParts> for Overhead {
    type Error = String;
    fn try_from(p: OverheadParts) -> Result<Self, String> {
        match (p.event, p.http) {
            (Some(event), Some(http)) => Ok(Overhead { event, http }),
            _ => Err("needs both `event` and `http`".into()),
        }
    }
}

/// `memory_overhead` as written: a size for both kinds, or a table of one per kind (an
/// override may give one). Hand-written rather than `untagged`, so that a bad size keeps
/// its own message ("invalid quantity …") instead of a generic "did not match".
struct OverheadParts {
    event: Option<Bytes>,
    http: Option<Bytes>,
}

impl<'de> Deserialize<'de> for OverheadParts {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Parts;
        impl<'de> serde::de::Visitor<'de> for Parts {
            type Value = OverheadParts;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a size (\"8Mi\") or a table { event = \"4Mi\", http = \"8Mi\" }")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<OverheadParts, E> {
                let b: Bytes = v.parse().map_err(E::custom)?;
                Ok(OverheadParts {
                    event: Some(b),
                    http: Some(b),
                })
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<OverheadParts, A::Error> {
                let mut p = OverheadParts {
                    event: None,
                    http: None,
                };
                while let Some(k) = m.next_key::<String>()? {
                    let slot = match k.as_str() {
                        "event" => &mut p.event,
                        "http" => &mut p.http,
                        other => {
                            return Err(serde::de::Error::unknown_field(other, &["event", "http"]))
                        }
                    };
                    *slot = Some(m.next_value()?);
                }
                Ok(p)
            }
        }
        d.deserialize_any(Parts)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CgroupConfig {
    pub root: String,
    pub subtree: String,
    pub required: bool,
}

/// A configured thread count, or for 0 half the machine's cores (at least one).
///
/// Why half: every thread beyond the cores that the work can keep busy costs context
/// switches, and on a small machine those cost more than the guests' own code. On 2 cores
/// one gateway thread and one thread per sandbox serve `hello` at ~1.6× the throughput of
/// two each (BENCHMARKS.md, "threads").
pub fn auto_threads(configured: u32) -> usize {
    if configured > 0 {
        return configured as usize;
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cores / 2).max(1)
}

impl HostConfig {
    /// Where precompiled artifacts live.
    pub fn cache_dir(&self) -> PathBuf {
        if self.cache_dir.as_os_str().is_empty() {
            self.state_dir.join("cache")
        } else {
            self.cache_dir.clone()
        }
    }

    /// Rules across keys, reported against the user's own text.
    fn checked(self, file: &Path, text: &str) -> Result<Self, FileError> {
        if self.autoscaler.tick.0 < MIN_TICK {
            return Err(FileError::new(
                file,
                line_of_key(text, "autoscaler.tick"),
                format!(
                    "key `autoscaler.tick`: {} is below the minimum of 100ms",
                    self.autoscaler.tick
                ),
            ));
        }
        let k = &self.keepalive;
        let bad = if k.tick.0 < std::time::Duration::from_millis(10) {
            Some(("tick", format!("{} is below the minimum of 10ms", k.tick)))
        } else if !(k.cold_start_cost.is_finite() && k.cold_start_cost > 0.0) {
            Some(("cold_start_cost", "must be above 0".to_string()))
        } else if !(k.memory_cost.is_finite() && k.memory_cost > 0.0) {
            Some(("memory_cost", "must be above 0".to_string()))
        } else if k.forecast_bucket.0 < std::time::Duration::from_secs(1) {
            Some((
                "forecast_bucket",
                format!("{} is below the minimum of 1s", k.forecast_bucket),
            ))
        } else if !(k.forecast_min_rps.is_finite() && k.forecast_min_rps >= 0.0) {
            Some(("forecast_min_rps", "must be 0 or more".to_string()))
        } else {
            None
        };
        if let Some((key, msg)) = bad {
            let dotted = format!("keepalive.{key}");
            return Err(FileError::new(
                file,
                line_of_key(text, &dotted),
                format!("key `{dotted}`: {msg}"),
            ));
        }
        let a = &self.async_queue;
        let bad = if !(a.time_scale.is_finite() && (0.001..=100_000.0).contains(&a.time_scale)) {
            Some(("time_scale", "must be from 0.001 to 100000".to_string()))
        } else if a.max_queued == 0 {
            Some(("max_queued", "must be at least 1".to_string()))
        } else {
            None
        };
        if let Some((key, msg)) = bad {
            let dotted = format!("async.{key}");
            return Err(FileError::new(
                file,
                line_of_key(text, &dotted),
                format!("key `{dotted}`: {msg}"),
            ));
        }
        let l = &self.logs;
        let bad = if l.retention.0 < std::time::Duration::from_secs(1) {
            Some(("retention", "must be at least 1s".to_string()))
        } else if l.max_records == 0 {
            Some(("max_records", "must be at least 1".to_string()))
        } else if l.max_bytes.0 < 1 << 16 {
            Some(("max_bytes", "must be at least 64Ki".to_string()))
        } else if l.max_log.0 > 4096 {
            Some((
                "max_log",
                "must be at most 4Ki (what a sandbox sends of stderr)".to_string(),
            ))
        } else {
            None
        };
        if let Some((key, msg)) = bad {
            let dotted = format!("logs.{key}");
            return Err(FileError::new(
                file,
                line_of_key(text, &dotted),
                format!("key `{dotted}`: {msg}"),
            ));
        }
        if let Err((key, msg)) = check_cluster(&self.cluster, self.listen) {
            let dotted = format!("cluster.{key}");
            return Err(FileError::new(
                file,
                line_of_key(text, &dotted),
                format!("key `{dotted}`: {msg}"),
            ));
        }
        if let Err((key, msg)) = check_vertical(&self.vertical) {
            let dotted = format!("vertical.{key}");
            return Err(FileError::new(
                file,
                line_of_key(text, &dotted),
                format!("key `{dotted}`: {msg}"),
            ));
        }
        if let Err((key, msg)) = check_scaling(&self.defaults.scaling) {
            let dotted = format!("defaults.scaling.{key}");
            return Err(FileError::new(
                file,
                line_of_key(text, &dotted),
                format!("key `{dotted}`: {msg}"),
            ));
        }
        Ok(self)
    }

    pub fn embedded() -> Self {
        parse_toml(Path::new("<embedded config/surge.toml>"), EMBEDDED)
            .expect("the embedded config/surge.toml parses (checked by a test)")
    }

    /// The embedded defaults overlaid with `text` (a partial config): keys in `text` win.
    pub fn load(file: &Path, text: &str) -> Result<Self, FileError> {
        let mut base: toml::Table = toml::from_str(EMBEDDED).expect("embedded config is TOML");
        let over: toml::Table = parse_toml(file, text)?;
        merge(&mut base, over);
        let merged =
            toml::to_string(&base).map_err(|e| FileError::new(file, None, e.to_string()))?;
        // Parse the merged table for type errors, but report against the user's own text,
        // which is where any wrong key or value came from.
        match toml::from_str::<HostConfig>(&merged) {
            Ok(c) => c.checked(file, text),
            Err(_) => {
                let partial: Result<PartialCheck, _> = parse_toml(file, text);
                partial?;
                parse_toml(file, &merged)
            }
        }
    }
}

/// Only for error positions: the same keys as HostConfig, all optional, so that a partial
/// user file is checked against its own lines.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct PartialCheck {
    listen: Option<SocketAddr>,
    functions_dir: Option<PathBuf>,
    state_dir: Option<PathBuf>,
    cache_dir: Option<PathBuf>,
    admin_token: Option<String>,
    max_admin_body: Option<Bytes>,
    gateway_threads: Option<u32>,
    defaults: Option<PartialDefaults>,
    autoscaler: Option<PartialAutoscaler>,
    keepalive: Option<PartialKeepAlive>,
    #[serde(rename = "async")]
    async_queue: Option<PartialAsync>,
    lambda: Option<PartialLambda>,
    vertical: Option<PartialVertical>,
    node: Option<PartialNode>,
    sandbox: Option<PartialSandbox>,
    cgroup: Option<PartialCgroup>,
    logs: Option<PartialLogs>,
    cluster: Option<PartialCluster>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct PartialCluster {
    etcd: Option<Vec<String>>,
    node: Option<String>,
    advertise: Option<String>,
    lease_ttl: Option<Span>,
    prefix: Option<String>,
    balance: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct PartialLogs {
    records: Option<bool>,
    retention: Option<Span>,
    max_records: Option<u64>,
    max_bytes: Option<Bytes>,
    max_log: Option<Bytes>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct PartialSandbox {
    memory_overhead: Option<OverheadParts>,
    pids_max: Option<u32>,
    uid: Option<u32>,
    gid: Option<u32>,
    start_timeout: Option<Span>,
    threads: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct PartialKeepAlive {
    tick: Option<Span>,
    cold_start_cost: Option<f64>,
    memory_cost: Option<f64>,
    forecast_bucket: Option<Span>,
    forecast_min_rps: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct PartialLambda {
    access_key_id: Option<String>,
    secret_access_key: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct PartialAsync {
    time_scale: Option<f64>,
    max_queued: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct PartialAutoscaler {
    tick: Option<Span>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct PartialVertical {
    interval: Option<Span>,
    half_life: Option<Span>,
    memory_percentile: Option<f64>,
    cpu_percentile: Option<f64>,
    lower_percentile: Option<f64>,
    upper_percentile: Option<f64>,
    safety_margin: Option<f64>,
    confidence_period: Option<Span>,
    oom_bump_ratio: Option<f64>,
    oom_bump_floor: Option<Bytes>,
    throttle_threshold: Option<f64>,
    throttle_sustain: Option<u32>,
    throttle_raise: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct PartialNode {
    cpu: Option<Millicores>,
    memory: Option<Bytes>,
    reserve_cpu: Option<Millicores>,
    reserve_memory: Option<Bytes>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct PartialCgroup {
    root: Option<String>,
    subtree: Option<String>,
    required: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct PartialDefaults {
    limits: Option<LimitsToml>,
    scaling: Option<ScalingToml>,
}

/// Rules of `[cluster]`. The error is (key within `cluster`, message).
fn check_cluster(c: &ClusterConfig, listen: SocketAddr) -> Result<(), (&'static str, String)> {
    if !c.enabled() {
        return Ok(());
    }
    for e in &c.etcd {
        let ok = e
            .strip_prefix("http://")
            .is_some_and(|rest| !rest.is_empty() && !rest.contains('/'));
        if !ok {
            return Err((
                "etcd",
                format!("{e:?} is not an etcd client URL like \"http://10.0.0.1:2379\""),
            ));
        }
    }
    if c.lease_ttl.0 < std::time::Duration::from_secs(2) {
        return Err((
            "lease_ttl",
            format!("{} is below etcd's minimum of 2s", c.lease_ttl),
        ));
    }
    if !(c.balance.is_finite() && c.balance > 1.0) {
        return Err((
            "balance",
            "must be above 1 (1.25: 25 % over the mean)".into(),
        ));
    }
    if c.prefix.is_empty() || !c.prefix.starts_with('/') || c.prefix.ends_with('/') {
        return Err((
            "prefix",
            format!("{:?} must start with / and not end with /", c.prefix),
        ));
    }
    if c.node.contains('/') {
        return Err(("node", format!("{:?} must not contain /", c.node)));
    }
    if c.advertise.is_empty() {
        if listen.ip().is_unspecified() {
            return Err((
                "advertise",
                format!("must be set: listen is {listen}, which other nodes cannot reach"),
            ));
        }
    } else if !c.advertise.starts_with("http://") || c.advertise.ends_with('/') {
        return Err((
            "advertise",
            format!(
                "{:?} is not a URL like \"http://10.0.0.1:8080\"",
                c.advertise
            ),
        ));
    }
    Ok(())
}

/// Rules of `[vertical]`. The error is (key within `vertical`, message).
fn check_vertical(v: &VerticalConfig) -> Result<(), (&'static str, String)> {
    if v.interval.0 < MIN_TICK {
        return Err((
            "interval",
            format!("{} is below the minimum of 100ms", v.interval),
        ));
    }
    for (key, p) in [
        ("memory_percentile", v.memory_percentile),
        ("cpu_percentile", v.cpu_percentile),
        ("lower_percentile", v.lower_percentile),
        ("upper_percentile", v.upper_percentile),
        ("throttle_threshold", v.throttle_threshold),
    ] {
        if !(p > 0.0 && p <= 1.0) {
            return Err((key, "must be in (0, 1]".into()));
        }
    }
    if !(v.safety_margin >= 0.0 && v.safety_margin.is_finite()) {
        return Err(("safety_margin", "must be 0 or more".into()));
    }
    for (key, r) in [
        ("oom_bump_ratio", v.oom_bump_ratio),
        ("throttle_raise", v.throttle_raise),
    ] {
        if !(r >= 1.0 && r.is_finite()) {
            return Err((key, "must be at least 1.0".into()));
        }
    }
    if v.half_life.0.is_zero() || v.confidence_period.0.is_zero() {
        return Err((
            "half_life",
            "half_life and confidence_period must be more than 0".into(),
        ));
    }
    if v.throttle_sustain == 0 {
        return Err(("throttle_sustain", "must be at least 1".into()));
    }
    Ok(())
}

fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}
