//! Function manifests (`function.toml`) and the host config (`surge.toml`).
//!
//! Parse, then act: everything here is a pure function from text to a checked value or to an
//! error that names the file, the line and the key at fault. Nothing here touches the registry.

pub mod config;
pub mod sections;
pub mod text;
pub mod units;

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use config::{ClusterConfig, HostConfig};
pub use sections::{
    check_scaling, AsyncToml, Bounds, LambdaToml, Limits, LimitsToml, Quota, Scaling, ScalingToml,
    CPU_MIN_MILLICORES, MAX_INSTANCES_LIMIT, MEMORY_MIN_BYTES,
};
use text::line_of_key;
pub use text::{parse_toml, FileError};
pub use units::{Bytes, FunctionName, Millicores, Span};

/// What kind of handler a function is. Detected from the binary; a manifest may state it.
pub use surge_runtime::Kind;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RangeToml<T> {
    pub min: T,
    pub max: T,
}

/// `[vertical]` of a manifest: the bounds within which the quota may be resized, and the
/// function's claim on the node when capacity is short.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerticalToml {
    pub enabled: Option<bool>,
    pub memory: Option<RangeToml<Bytes>>,
    pub cpu: Option<RangeToml<Millicores>>,
    pub weight: Option<u32>,
    pub priority: Option<u8>,
}

/// `[vertical]`, resolved.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Vertical {
    /// Whether the recommender resizes the quota (a manual resize works either way).
    pub enabled: bool,
    pub bounds: Bounds,
    /// Share of contested node capacity, relative to other functions of the same priority.
    pub weight: u32,
    /// Higher priorities get contested node capacity first.
    pub priority: u8,
}

/// The largest per-instance memory ceiling: every pool slot of a sandbox reserves address
/// space this large for each of an instance's memories.
pub const MAX_MEMORY_CEILING: u64 = 4 << 30;

/// `function.toml` as written.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestToml {
    pub name: FunctionName,
    pub handler: String,
    pub kind: Option<Kind>,
    pub route: Option<String>,
    #[serde(default)]
    pub limits: LimitsToml,
    #[serde(default)]
    pub scaling: ScalingToml,
    #[serde(default)]
    pub vertical: VerticalToml,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default, rename = "async")]
    pub async_invoke: Option<AsyncToml>,
    #[serde(default)]
    pub lambda: LambdaToml,
}

/// A manifest with host defaults filled in and every cross-field rule checked.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FunctionSpec {
    pub name: FunctionName,
    /// The handler path as written, relative to the manifest.
    pub handler: String,
    /// The kind the manifest declares, if any; the binary decides when absent.
    pub kind: Option<Kind>,
    pub route: Option<String>,
    pub limits: Limits,
    pub scaling: Scaling,
    pub vertical: Vertical,
    pub env: BTreeMap<String, String>,
    /// `[async]`, checked; None when the manifest has none.
    #[serde(default, rename = "async")]
    pub async_invoke: Option<AsyncToml>,
    /// `[lambda]`: what the Lambda control plane echoes.
    #[serde(default)]
    pub lambda: LambdaToml,
}

/// Path prefixes that belong to the host and can never be a function route.
pub const RESERVED_PREFIXES: [&str; 8] = [
    "/2015-03-31/",
    "/2017-10-31/",
    "/2019-09-25/",
    "/2019-09-30/",
    "/admin/",
    "/dashboard",
    "/healthz",
    "/metrics",
];

impl FunctionSpec {
    /// Parse and check `function.toml` text. `file` is only used to name the file in errors.
    pub fn parse(file: &Path, text: &str, defaults: &config::Defaults) -> Result<Self, FileError> {
        let raw: ManifestToml = parse_toml(file, text)?;
        let err = |key: &str, msg: String| {
            let line = line_of_key(text, key);
            FileError::new(file, line, format!("key `{key}`: {msg}"))
        };
        check_handler_path(&raw.handler).map_err(|m| err("handler", m))?;
        if let Some(route) = &raw.route {
            check_route(route).map_err(|m| err("route", m))?;
        }
        for key in raw.env.keys() {
            let ok = !key.is_empty()
                && !key.starts_with(|c: char| c.is_ascii_digit())
                && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if !ok {
                return Err(err(
                    &format!("env.{key}"),
                    "environment variable names are [A-Za-z_][A-Za-z0-9_]*".into(),
                ));
            }
        }
        let d = defaults;
        let limits = Limits {
            memory: raw.limits.memory.unwrap_or(d.limits.memory),
            cpu: raw.limits.cpu.unwrap_or(d.limits.cpu),
            cpu_burst: raw.limits.cpu_burst.unwrap_or(d.limits.cpu_burst),
            timeout: raw.limits.timeout.unwrap_or(d.limits.timeout),
            max_body: raw.limits.max_body.unwrap_or(d.limits.max_body),
        };
        if limits.memory.0 < (1 << 20) {
            return Err(err(
                "limits.memory",
                format!("{} is below the minimum of 1Mi", limits.memory),
            ));
        }
        if limits.timeout.0.is_zero() {
            return Err(err("limits.timeout", "must be more than 0".into()));
        }
        let s = &raw.scaling;
        let scaling = Scaling {
            min_instances: s.min_instances.unwrap_or(d.scaling.min_instances),
            max_instances: s.max_instances.unwrap_or(d.scaling.max_instances),
            concurrency: s.concurrency.unwrap_or(d.scaling.concurrency),
            target_utilization: s.target_utilization.unwrap_or(d.scaling.target_utilization),
            scale_to_zero_after: s
                .scale_to_zero_after
                .unwrap_or(d.scaling.scale_to_zero_after),
            reuse: s.reuse.unwrap_or(d.scaling.reuse),
            stable_window: s.stable_window.unwrap_or(d.scaling.stable_window),
            panic_window: s.panic_window.unwrap_or(d.scaling.panic_window),
            panic_threshold: s.panic_threshold.unwrap_or(d.scaling.panic_threshold),
            max_scale_up_rate: s.max_scale_up_rate.unwrap_or(d.scaling.max_scale_up_rate),
            max_scale_down_rate: s
                .max_scale_down_rate
                .unwrap_or(d.scaling.max_scale_down_rate),
            scale_down_delay: s.scale_down_delay.unwrap_or(d.scaling.scale_down_delay),
            queue_depth: s.queue_depth.unwrap_or(d.scaling.queue_depth),
            queue_timeout: s.queue_timeout.unwrap_or(d.scaling.queue_timeout),
            policy: s.policy.unwrap_or(d.scaling.policy),
        };
        check_scaling(&scaling).map_err(|(key, msg)| err(&format!("scaling.{key}"), msg))?;
        let vertical = resolve_vertical(&raw.vertical, &limits).map_err(|(k, m)| err(k, m))?;
        if let Some(a) = &raw.async_invoke {
            a.check()
                .map_err(|(key, msg)| err(&format!("async.{key}"), msg))?;
        }
        Ok(FunctionSpec {
            name: raw.name,
            handler: raw.handler,
            kind: raw.kind,
            route: raw.route,
            limits,
            scaling,
            vertical,
            env: raw.env,
            async_invoke: raw.async_invoke,
            lambda: raw.lambda,
        })
    }

    /// Instances a new version starts with: `min_instances`, at least 1, so a deploy proves
    /// the handler instantiates. The autoscaler takes it from there (down to zero).
    pub fn initial_instances(&self) -> u32 {
        self.scaling.min_instances.max(1)
    }
}

/// `[vertical]` with its defaults: memory may go from 16Mi (or less, if the manifest asks
/// for less) up to `limits.memory`, the user's own ceiling; CPU from 50m up to one core,
/// all one instance can use (a wasm instance runs on one thread). The error is (key, message).
fn resolve_vertical(v: &VerticalToml, limits: &Limits) -> Result<Vertical, (&'static str, String)> {
    let mem = limits.memory.0;
    let cpu = limits.cpu.0 as u64;
    let (memory_min_bytes, memory_max_bytes) = match &v.memory {
        Some(r) => (r.min.0, r.max.0),
        None => (mem.min(16 << 20), mem),
    };
    let (cpu_min_millicores, cpu_max_millicores) = match &v.cpu {
        Some(r) => (r.min.0 as u64, r.max.0 as u64),
        None => (cpu.min(50), cpu.max(1000)),
    };
    let b = Bounds {
        memory_min_bytes,
        memory_max_bytes,
        cpu_min_millicores,
        cpu_max_millicores,
    };
    if b.memory_min_bytes > b.memory_max_bytes {
        return Err((
            "vertical.memory",
            format!(
                "min {} is above max {}",
                Bytes(b.memory_min_bytes),
                Bytes(b.memory_max_bytes)
            ),
        ));
    }
    if b.memory_min_bytes < MEMORY_MIN_BYTES {
        return Err(("vertical.memory", "min is below 1Mi".into()));
    }
    if b.memory_max_bytes > MAX_MEMORY_CEILING {
        return Err((
            "vertical.memory",
            format!(
                "max {} is above the host's limit of 4Gi per instance",
                Bytes(b.memory_max_bytes)
            ),
        ));
    }
    if !(b.memory_min_bytes..=b.memory_max_bytes).contains(&mem) {
        return Err((
            "limits.memory",
            format!(
                "{} is outside vertical.memory [{}, {}]",
                limits.memory,
                Bytes(b.memory_min_bytes),
                Bytes(b.memory_max_bytes)
            ),
        ));
    }
    if b.cpu_min_millicores > b.cpu_max_millicores {
        return Err((
            "vertical.cpu",
            format!(
                "min {}m is above max {}m",
                b.cpu_min_millicores, b.cpu_max_millicores
            ),
        ));
    }
    if b.cpu_min_millicores < CPU_MIN_MILLICORES {
        return Err((
            "vertical.cpu",
            format!("min is below {CPU_MIN_MILLICORES}m"),
        ));
    }
    if !(b.cpu_min_millicores..=b.cpu_max_millicores).contains(&cpu) {
        return Err((
            "limits.cpu",
            format!(
                "{} is outside vertical.cpu [{}m, {}m]",
                limits.cpu, b.cpu_min_millicores, b.cpu_max_millicores
            ),
        ));
    }
    if v.weight == Some(0) {
        return Err(("vertical.weight", "must be at least 1".into()));
    }
    Ok(Vertical {
        enabled: v.enabled.unwrap_or(true),
        bounds: b,
        weight: v.weight.unwrap_or(1),
        priority: v.priority.unwrap_or(0),
    })
}

/// A handler path must stay inside the manifest's folder: relative, no `..`.
fn check_handler_path(handler: &str) -> Result<(), String> {
    let p = Path::new(handler);
    if handler.is_empty() {
        return Err("must name a .wasm file next to the manifest".into());
    }
    if p.is_absolute()
        || p.components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(format!(
            "{handler:?} is outside the function's folder: use a relative path without '..'"
        ));
    }
    Ok(())
}

fn check_route(route: &str) -> Result<(), String> {
    if !route.starts_with('/') {
        return Err(format!("{route:?} must start with '/'"));
    }
    let ok_chars = route
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/-_.~".contains(&b));
    if !ok_chars || route.split('/').any(|seg| seg == ".." || seg == ".") || route.contains("//") {
        return Err(format!(
            "{route:?} is not a clean path prefix (letters, digits, / - _ . ~)"
        ));
    }
    let norm = route.trim_end_matches('/');
    for r in RESERVED_PREFIXES {
        let r_trim = r.trim_end_matches('/');
        if norm == r_trim
            || norm.starts_with(&format!("{r_trim}/"))
            || (norm.is_empty() && r == "/")
        {
            return Err(format!("{route:?} is reserved for the host"));
        }
    }
    Ok(())
}

/// Where a manifest's handler lives on disk.
pub fn handler_path(manifest_path: &Path, spec: &FunctionSpec) -> PathBuf {
    manifest_path
        .parent()
        .unwrap_or(Path::new("."))
        .join(&spec.handler)
}

#[cfg(test)]
mod tests;
