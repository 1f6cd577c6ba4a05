//! surge-runtime: everything that runs guest code.
//!
//! - [`engine`]: the one wasmtime configuration shared by compile and run.
//! - [`artifact`]: kind detection, import checks and the compile cache.
//! - [`exec`]: executing `http` (wasi:http components) and `event` (WASI preview1 commands)
//!   handlers on a pool of pre-instantiated instances.
//! - [`sandbox`]: the sandbox process that hosts one function's instances, and the wire
//!   protocol between it and the host.
//! - [`cgroup`]: the cgroup driver (v1 and v2, on cgroups-rs) and the limit converters.
//! - [`ratelimit`]: limits for log lines a guest can trigger.

#![deny(unsafe_code)]

pub mod artifact;
pub mod cgroup;
pub mod engine;
pub mod exec;
// glibc malloc_trim.
pub mod heap;
pub mod ratelimit;
pub mod sandbox;

use serde::{Deserialize, Serialize};

/// What kind of handler a binary is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A component exporting `wasi:http/incoming-handler@0.2.x`.
    Http,
    /// A WASI preview1 command: event on stdin, response on stdout.
    Event,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Http => "http",
            Kind::Event => "event",
        }
    }
}

/// A kind name that is neither `http` nor `event`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown kind {0:?}: expected \"http\" or \"event\"")]
pub struct UnknownKind(pub String);

impl std::str::FromStr for Kind {
    type Err = UnknownKind;

    fn from_str(s: &str) -> Result<Self, UnknownKind> {
        match s {
            "http" => Ok(Kind::Http),
            "event" => Ok(Kind::Event),
            other => Err(UnknownKind(other.to_string())),
        }
    }
}
