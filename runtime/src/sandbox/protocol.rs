//! The wire between the host's dispatcher and a sandbox: HTTP/1.1 over a Unix socket that
//! the host binds and hands to the sandbox as fd [`LISTEN_FD`]. Requests to an `http`
//! function pass through unchanged; for an `event` function the request body is the event.
//! The sandbox reports how an invocation ended in the headers below.
//!
//! Control, beside the data: the host writes the spec as one JSON line on the sandbox's
//! stdin, then [`POOL_COMMAND`] lines that set the pool's target size and [`MEMORY_COMMAND`]
//! lines that resize the per-instance memory quota. The sandbox answers [`READY_LINE`] on
//! stdout, then a [`WARM_REPORT`] line whenever the number of instances ready to serve
//! changes, and a [`MEMORY_REPORT`] line for each interval in which instances ran. EOF on
//! stdin means the host is gone: the sandbox exits.

use serde::{Deserialize, Serialize};

use crate::Kind;

/// The sandbox's listening socket.
pub const LISTEN_FD: i32 = 3;
/// The precompiled artifact, opened by the host: the sandbox needs no access to the state dir.
pub const ARTIFACT_FD: i32 = 4;

/// How the invocation ended: an [`crate::exec::Outcome`] name.
pub const OUTCOME: &str = "x-surge-outcome";
/// A short, caller-safe message for a failed invocation.
pub const MESSAGE: &str = "x-surge-message";
/// Event handlers: the exit code.
pub const EXIT_CODE: &str = "x-surge-exit-code";
/// Event handlers: base64 of the last 4 KiB of stderr (Lambda's `X-Amz-Log-Result`).
pub const LOG_TAIL: &str = "x-surge-log-tail";
/// Peak linear memory of the instance that served the request, in bytes.
pub const PEAK_MEMORY: &str = "x-surge-peak-memory";
/// Every header above: the sandbox removes them from a guest's own response.
pub const RESERVED: &[&str] = &[OUTCOME, MESSAGE, EXIT_CODE, LOG_TAIL, PEAK_MEMORY];
/// Bytes of log returned with an invocation, as Lambda does.
pub const LOG_TAIL_BYTES: usize = 4096;

/// The first line a sandbox prints on stdout: it is ready, or why it is not.
pub const READY_LINE: &str = "ready";

/// Host → sandbox: `pool <n>` sets the target number of warm instances.
pub const POOL_COMMAND: &str = "pool";
/// Sandbox → host: `warm <ready> <slots>`: the instances ready to serve now, and the pool
/// places taken (ready, busy or still instantiating: what the memory limit must cover).
pub const WARM_REPORT: &str = "warm";

/// Host → sandbox: `memory <bytes>` sets the memory quota of instances created from now
/// on (at most the spec's `memory_ceiling_bytes`, the size of a pool memory slot).
pub const MEMORY_COMMAND: &str = "memory";
/// Sandbox → host: `mem <peak> <denied>`: the highest linear memory one instance reached
/// since the last report, and the largest total a refused grow asked for (0: none), bytes.
pub const MEMORY_REPORT: &str = "mem";

/// Parse a `mem <peak> <denied>` report.
pub fn parse_mem(line: &str) -> Option<(u64, u64)> {
    let mut it = line.split_whitespace();
    if it.next()? != MEMORY_REPORT {
        return None;
    }
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

/// Parse a `<word> <n>` control line with a 64-bit value.
pub fn parse_u64(line: &str, word: &str) -> Option<u64> {
    let (w, n) = line.trim().split_once(' ')?;
    (w == word).then(|| n.trim().parse().ok())?
}

/// Parse a `warm <ready> <slots>` report.
pub fn parse_warm(line: &str) -> Option<(u32, u32)> {
    let mut it = line.split_whitespace();
    if it.next()? != WARM_REPORT {
        return None;
    }
    let ready = it.next()?.parse().ok()?;
    let slots = it.next()?.parse().ok()?;
    Some((ready, slots))
}

/// Parse a `<word> <n>` control line.
pub fn parse_count(line: &str, word: &str) -> Option<u32> {
    let (w, n) = line.trim().split_once(' ')?;
    if w != word {
        return None;
    }
    n.trim().parse().ok()
}

/// Everything a sandbox needs to start, sent by the host as one JSON line on stdin.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SandboxSpec {
    pub function: String,
    pub version: u64,
    pub kind: Kind,
    /// The most instances the pool may ever hold (`max_instances`): sizes the pooling
    /// allocator and bounds the threads.
    pub instances: u32,
    /// Instances to warm at start; [`POOL_COMMAND`] lines change it later.
    pub initial: u32,
    /// Threads to serve on, each with its own single-threaded runtime.
    pub threads: u32,
    /// Requests an `http` instance serves before it is replaced.
    pub reuse: u32,
    /// The memory quota of one instance at start; [`MEMORY_COMMAND`] changes it.
    pub memory_per_instance_bytes: u64,
    /// The most one instance's quota may ever be resized to (`vertical.memory.max`): the
    /// pooling allocator reserves memory slots this large.
    pub memory_ceiling_bytes: u64,
    pub timeout_ms: u64,
    pub max_body_bytes: u64,
    pub env: Vec<(String, String)>,
}

/// Turn a message into a valid header value: printable ASCII, bounded.
pub fn header_safe(msg: &str) -> String {
    msg.chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .take(400)
        .collect()
}
