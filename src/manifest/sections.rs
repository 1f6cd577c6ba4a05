//! The sections a function manifest and the host config's `[defaults]` share: `[limits]`
//! and `[scaling]`, as written and resolved, and the quota values the limits give.

use serde::{Deserialize, Serialize};

use super::units::{Bytes, Millicores, Span};

/// Smallest memory quota: one wasm page short of nothing useful, and the manifest's floor.
pub const MEMORY_MIN_BYTES: u64 = 1 << 20;
/// Smallest CPU quota: the kernel refuses a CFS quota below 1 ms per 100 ms period.
pub const CPU_MIN_MILLICORES: u64 = 10;

/// What one instance may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quota {
    pub memory_bytes: u64,
    pub cpu_millicores: u64,
}

/// The envelope a quota must stay in: the manifest's `[vertical]` bounds. The memory
/// ceiling is also the size of each instance's memory slot in its sandbox, fixed at deploy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bounds {
    pub memory_min_bytes: u64,
    pub memory_max_bytes: u64,
    pub cpu_min_millicores: u64,
    pub cpu_max_millicores: u64,
}

impl Bounds {
    /// `q` moved inside the bounds.
    pub fn clamp(&self, q: Quota) -> Quota {
        Quota {
            memory_bytes: q
                .memory_bytes
                .clamp(self.memory_min_bytes, self.memory_max_bytes),
            cpu_millicores: q
                .cpu_millicores
                .clamp(self.cpu_min_millicores, self.cpu_max_millicores),
        }
    }
}

/// `[limits]` of a manifest: per instance. Missing values come from the host defaults.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsToml {
    pub memory: Option<Bytes>,
    pub cpu: Option<Millicores>,
    pub cpu_burst: Option<bool>,
    pub timeout: Option<Span>,
    pub max_body: Option<Bytes>,
}

/// `[scaling]` of a manifest.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScalingToml {
    pub min_instances: Option<u32>,
    pub max_instances: Option<u32>,
    pub concurrency: Option<u32>,
    pub target_utilization: Option<f64>,
    pub scale_to_zero_after: Option<Span>,
    pub reuse: Option<u32>,
    pub stable_window: Option<Span>,
    pub panic_window: Option<Span>,
    pub panic_threshold: Option<f64>,
    pub max_scale_up_rate: Option<f64>,
    pub max_scale_down_rate: Option<f64>,
    pub scale_down_delay: Option<Span>,
    pub queue_depth: Option<u32>,
    pub queue_timeout: Option<Span>,
    pub policy: Option<KeepAlivePolicy>,
}

/// `[scaling] policy`: what decides when an idle function's instance is loaded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeepAlivePolicy {
    /// Pre-warm ahead of predicted arrivals and unload when they are not expected, against
    /// the host's `[keepalive]` costs; never longer than `scale_to_zero_after`.
    #[default]
    Predictive,
    /// Keep the last instance `scale_to_zero_after`, then go to zero: the KPA's rule.
    Fixed,
    /// Shahrad et al.'s hybrid histogram, over `[keepalive] tick` bins.
    Hybrid,
}

impl KeepAlivePolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            KeepAlivePolicy::Predictive => "predictive",
            KeepAlivePolicy::Fixed => "fixed",
            KeepAlivePolicy::Hybrid => "hybrid",
        }
    }
}

/// Per-instance limits, resolved.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    pub memory: Bytes,
    /// The CPU guaranteed to one instance (the quota the vertical scaler moves).
    pub cpu: Millicores,
    /// Whether an instance may use CPU the node leaves idle, up to `[vertical] cpu.max`;
    /// `false` caps it at `cpu` (a fixed share, as on Lambda).
    pub cpu_burst: bool,
    pub timeout: Span,
    pub max_body: Bytes,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Scaling {
    pub min_instances: u32,
    pub max_instances: u32,
    pub concurrency: u32,
    pub target_utilization: f64,
    pub scale_to_zero_after: Span,
    pub reuse: u32,
    /// The horizontal decider's long window: the average it scales on when not panicking.
    pub stable_window: Span,
    /// The short window: a desire this far above the ready instances means panic.
    pub panic_window: Span,
    /// Panic when the panic-window desire is at least this many times the ready instances.
    pub panic_threshold: f64,
    /// Most one decision may multiply the ready instances by.
    pub max_scale_up_rate: f64,
    /// Most one decision may divide the ready instances by.
    pub max_scale_down_rate: f64,
    /// A lower desire takes effect only after holding for this long.
    pub scale_down_delay: Span,
    /// Requests that may wait in the activator queue for an instance; more get 429/503.
    pub queue_depth: u32,
    /// Longest a request waits in that queue (including a cold start) before 429/503.
    pub queue_timeout: Span,
    /// The keep-alive policy (pre-warm and unload of an idle function).
    #[serde(default)]
    pub policy: KeepAlivePolicy,
}

/// The most instances one function may ask for. Each pool slot reserves virtual address
/// space for the instance's memories in its sandbox; this keeps the reservation far inside
/// a 47-bit address space.
pub const MAX_INSTANCES_LIMIT: u32 = 1000;

/// Cross-field rules of `[scaling]`, for manifests and the host defaults alike. The error is
/// (key within `scaling`, message).
pub fn check_scaling(s: &Scaling) -> Result<(), (&'static str, String)> {
    if s.max_instances == 0 {
        return Err(("max_instances", "must be at least 1".into()));
    }
    if s.max_instances > MAX_INSTANCES_LIMIT {
        return Err((
            "max_instances",
            format!(
                "{} is above the host's limit of {MAX_INSTANCES_LIMIT}",
                s.max_instances
            ),
        ));
    }
    if s.min_instances > s.max_instances {
        return Err((
            "min_instances",
            format!(
                "{} is above max_instances = {}",
                s.min_instances, s.max_instances
            ),
        ));
    }
    if s.concurrency == 0 {
        return Err(("concurrency", "must be at least 1".into()));
    }
    if s.reuse == 0 {
        return Err(("reuse", "must be at least 1".into()));
    }
    if !(s.target_utilization > 0.0 && s.target_utilization <= 1.0) {
        return Err(("target_utilization", "must be in (0, 1]".into()));
    }
    if s.stable_window.0 < std::time::Duration::from_secs(1) {
        return Err(("stable_window", "must be at least 1s".into()));
    }
    if s.panic_window.0 < std::time::Duration::from_millis(100)
        || s.panic_window.0 > s.stable_window.0
    {
        return Err((
            "panic_window",
            format!(
                "{} must be between 100ms and stable_window = {}",
                s.panic_window, s.stable_window
            ),
        ));
    }
    if !(s.panic_threshold >= 1.0 && s.panic_threshold.is_finite()) {
        return Err(("panic_threshold", "must be at least 1.0".into()));
    }
    if !(s.max_scale_up_rate > 1.0 && s.max_scale_up_rate.is_finite()) {
        return Err(("max_scale_up_rate", "must be above 1.0".into()));
    }
    if !(s.max_scale_down_rate > 1.0 && s.max_scale_down_rate.is_finite()) {
        return Err(("max_scale_down_rate", "must be above 1.0".into()));
    }
    if s.queue_timeout.0.is_zero() {
        return Err(("queue_timeout", "must be more than 0".into()));
    }
    Ok(())
}

/// `[async]` of a manifest: how the function's asynchronous invocations are retried and
/// where their records go (Lambda's `FunctionEventInvokeConfig`). The Lambda API's
/// `PutFunctionEventInvokeConfig` overrides it; deleting that config comes back to it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AsyncToml {
    /// Retries after a function error or timeout: 0 to 2 (Lambda's default 2).
    pub max_retry_attempts: Option<u32>,
    /// How long an event may wait, retries and throttling included: 60s to 6h.
    pub max_event_age: Option<Span>,
    /// Destination ARNs: a Lambda function's, or an SQS queue's (surge's dead-letter store).
    pub on_success: Option<String>,
    pub on_failure: Option<String>,
}

/// Lambda's bounds on `MaximumRetryAttempts` and `MaximumEventAgeInSeconds`.
pub const MAX_RETRY_ATTEMPTS: u32 = 2;
pub const EVENT_AGE_MIN_S: u64 = 60;
pub const EVENT_AGE_MAX_S: u64 = 21_600;

impl AsyncToml {
    /// Every rule of `[async]`; the error is (key within `async`, message).
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if let Some(r) = self.max_retry_attempts {
            if r > MAX_RETRY_ATTEMPTS {
                return Err((
                    "max_retry_attempts",
                    format!("{r} is over Lambda's maximum of {MAX_RETRY_ATTEMPTS}"),
                ));
            }
        }
        if let Some(age) = self.max_event_age {
            let s = age.0.as_secs_f64();
            if !(EVENT_AGE_MIN_S as f64..=EVENT_AGE_MAX_S as f64).contains(&s) {
                return Err((
                    "max_event_age",
                    format!("{age} is outside Lambda's 60s to 6h"),
                ));
            }
        }
        for (key, d) in [
            ("on_success", &self.on_success),
            ("on_failure", &self.on_failure),
        ] {
            if let Some(arn) = d {
                crate::aws::Destination::parse(arn).map_err(|m| (key, m))?;
            }
        }
        Ok(())
    }
}

/// `[lambda]` of a manifest: what the Lambda control plane was told and echoes back
/// (`Runtime`, `Description`, `Role`). surge runs every handler as wasm whatever these say.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LambdaToml {
    pub runtime: Option<String>,
    pub description: Option<String>,
    pub role: Option<String>,
}
