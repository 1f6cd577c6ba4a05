//! The wire between the host and a sandbox. Requests and responses travel as frames
//! ([`super::frame`]) on a Unix socket that the host binds and hands to the sandbox as fd
//! [`LISTEN_FD`]. Requests to an `http` function pass through unchanged; for an `event`
//! function the request body is the event. The sandbox reports how an invocation ended in
//! the headers below.
//!
//! Control, beside the data: the host writes the spec as one JSON line on the sandbox's
//! stdin, then [`HostCommand`] lines: the pool's target size, and the per-instance memory
//! quota. The sandbox answers [`READY_LINE`] on stdout, then a [`SandboxReport`] line
//! whenever the number of instances ready to serve changes, and one for each interval in
//! which instances ran (their memory peak). EOF on stdin means the host is gone: the
//! sandbox exits.
//!
//! Sandboxes are forked by the host's fork server ([`super::zygote`]): the host sends it a
//! [`ForkRequest`] with the child's fds, and it answers [`ZygoteMessage`]s. Every message
//! type here is `Display` (the line, without its newline) and `FromStr`.

use serde::{Deserialize, Serialize};

use crate::Kind;

/// The sandbox's listening socket.
pub const LISTEN_FD: i32 = 3;
/// The precompiled artifact, opened by the host: the sandbox needs no access to the state dir.
pub const ARTIFACT_FD: i32 = 4;

/// The fork server's end of its control socket to the host (`SOCK_SEQPACKET`): one
/// [`ForkRequest`] per message from the host, with its fds attached (`SCM_RIGHTS`), and one
/// [`ZygoteMessage`] per message back.
pub const ZYGOTE_FD: i32 = 3;
/// The largest control message either side sends, bytes.
pub const ZYGOTE_MESSAGE_MAX: usize = 512;
/// The most fds one request carries: stdin, stdout, the listener, the artifact and the
/// placement socket.
pub const ZYGOTE_FDS_MAX: usize = 5;

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

/// The sandbox's end of its placement socket (`SOCK_SEQPACKET`): once its cgroup is made,
/// the host sends one [`PLACED`] message on it with the cgroup's process files attached
/// (`tasks` on v1, `cgroup.procs` on v2, opened for writing; none without cgroups). The
/// sandbox loads its artifact meanwhile, then writes itself into them ("0": the writer, a
/// self-migration that skips the kernel's threadgroup lock and the RCU grace period that
/// moving another process by pid waits for, ~5 ms) before any guest code runs.
pub const PLACEMENT_FD: i32 = 5;
/// The placement message.
pub const PLACED: &str = "placed";

/// The first line a sandbox prints on stdout: it is ready, or why it is not.
pub const READY_LINE: &str = "ready";

/// Host → sandbox, one line each on the sandbox's stdin after the spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostCommand {
    /// `pool <n>`: the target number of warm instances.
    Pool(u32),
    /// `memory <bytes>`: the memory quota of instances created from now on (at most the
    /// spec's `memory_ceiling_bytes`, the size of a pool memory slot).
    Memory(u64),
    /// `threads <n>`: new connections go to the first `n` worker threads (at least 1, at
    /// most the spec's `threads`). A connection stays on its thread for its life.
    Threads(u32),
}

/// Sandbox → host, one line each on the sandbox's stdout after [`READY_LINE`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SandboxReport {
    /// `warm <ready> <slots>`: the instances ready to serve now, and the pool places taken
    /// (ready, busy or still instantiating: what the memory limit must cover).
    Warm { ready: u32, slots: u32 },
    /// `mem <peak> <denied>`: the highest linear memory one instance reached since the last
    /// report, and the largest total a refused grow asked for (0: none), bytes.
    Memory { peak_bytes: u64, denied_bytes: u64 },
}

const POOL: &str = "pool";
const MEMORY: &str = "memory";
const THREADS: &str = "threads";
const WARM: &str = "warm";
const MEM: &str = "mem";

/// A control line that is not one of the messages above.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("bad control line {line:?}: expected {expected}")]
pub struct ProtocolError {
    pub line: String,
    pub expected: &'static str,
}

impl std::fmt::Display for HostCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostCommand::Pool(n) => write!(f, "{POOL} {n}"),
            HostCommand::Memory(b) => write!(f, "{MEMORY} {b}"),
            HostCommand::Threads(n) => write!(f, "{THREADS} {n}"),
        }
    }
}

impl std::str::FromStr for HostCommand {
    type Err = ProtocolError;

    fn from_str(line: &str) -> Result<Self, ProtocolError> {
        let bad = || ProtocolError {
            line: line.trim_end().to_string(),
            expected: "`pool <n>`, `memory <bytes>` or `threads <n>`",
        };
        match words(line).as_slice() {
            [POOL, n] => n.parse().map(HostCommand::Pool).map_err(|_| bad()),
            [MEMORY, b] => b.parse().map(HostCommand::Memory).map_err(|_| bad()),
            [THREADS, n] => n.parse().map(HostCommand::Threads).map_err(|_| bad()),
            _ => Err(bad()),
        }
    }
}

impl std::fmt::Display for SandboxReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SandboxReport::Warm { ready, slots } => write!(f, "{WARM} {ready} {slots}"),
            SandboxReport::Memory {
                peak_bytes,
                denied_bytes,
            } => write!(f, "{MEM} {peak_bytes} {denied_bytes}"),
        }
    }
}

impl std::str::FromStr for SandboxReport {
    type Err = ProtocolError;

    fn from_str(line: &str) -> Result<Self, ProtocolError> {
        let bad = || ProtocolError {
            line: line.trim_end().to_string(),
            expected: "`warm <ready> <slots>` or `mem <peak> <denied>`",
        };
        match words(line).as_slice() {
            [WARM, r, s] => Ok(SandboxReport::Warm {
                ready: r.parse().map_err(|_| bad())?,
                slots: s.parse().map_err(|_| bad())?,
            }),
            [MEM, p, d] => Ok(SandboxReport::Memory {
                peak_bytes: p.parse().map_err(|_| bad())?,
                denied_bytes: d.parse().map_err(|_| bad())?,
            }),
            _ => Err(bad()),
        }
    }
}

/// Host → fork server. The fds attached, in order: the child's stdin (read end) and stdout
/// (write end), then for a sandbox its listener, its artifact and its end of the placement
/// socket ([`PLACEMENT_FD`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ForkRequest {
    /// `sandbox`: a function's sandbox.
    Sandbox,
    /// `probe <action>`: a probe (`sandbox::probe`) behind the same walls.
    Probe { action: String },
}

impl ForkRequest {
    /// The fds the request carries.
    pub fn fds(&self) -> usize {
        match self {
            ForkRequest::Sandbox => 5,
            ForkRequest::Probe { .. } => 2,
        }
    }
}

/// Fork server → host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ZygoteMessage {
    /// `forked <pid>`, with a pidfd for the child attached: the reply to a request.
    Forked { pid: u32 },
    /// `failed <reason>`: the reply to a request that made no child.
    Failed { reason: String },
    /// `exited <pid> <wait status>`: a child it forked is gone (the raw `waitpid` status).
    /// Sent only after that child's `forked` reply.
    Exited { pid: u32, status: i32 },
}

const SANDBOX: &str = "sandbox";
const PROBE: &str = "probe";
const FORKED: &str = "forked";
const FAILED: &str = "failed";
const EXITED: &str = "exited";

impl std::fmt::Display for ForkRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ForkRequest::Sandbox => write!(f, "{SANDBOX}"),
            ForkRequest::Probe { action } => write!(f, "{PROBE} {action}"),
        }
    }
}

impl std::str::FromStr for ForkRequest {
    type Err = ProtocolError;

    fn from_str(line: &str) -> Result<Self, ProtocolError> {
        let bad = || ProtocolError {
            line: line.trim_end().to_string(),
            expected: "`sandbox` or `probe <action>`",
        };
        match words(line).as_slice() {
            [SANDBOX] => Ok(ForkRequest::Sandbox),
            [PROBE, action] => Ok(ForkRequest::Probe {
                action: action.to_string(),
            }),
            _ => Err(bad()),
        }
    }
}

impl std::fmt::Display for ZygoteMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ZygoteMessage::Forked { pid } => write!(f, "{FORKED} {pid}"),
            ZygoteMessage::Failed { reason } => write!(f, "{FAILED} {reason}"),
            ZygoteMessage::Exited { pid, status } => write!(f, "{EXITED} {pid} {status}"),
        }
    }
}

impl std::str::FromStr for ZygoteMessage {
    type Err = ProtocolError;

    fn from_str(line: &str) -> Result<Self, ProtocolError> {
        let bad = || ProtocolError {
            line: line.trim_end().to_string(),
            expected: "`forked <pid>`, `failed <reason>` or `exited <pid> <status>`",
        };
        if let Some(reason) = line.strip_prefix(FAILED).and_then(|r| r.strip_prefix(' ')) {
            return Ok(ZygoteMessage::Failed {
                reason: reason.trim_end().to_string(),
            });
        }
        match words(line).as_slice() {
            [FORKED, pid] => pid
                .parse()
                .map(|pid| ZygoteMessage::Forked { pid })
                .map_err(|_| bad()),
            [EXITED, pid, status] => Ok(ZygoteMessage::Exited {
                pid: pid.parse().map_err(|_| bad())?,
                status: status.parse().map_err(|_| bad())?,
            }),
            _ => Err(bad()),
        }
    }
}

/// A line's words: a few control lines a second, so a small Vec is fine.
fn words(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
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
    /// Instances to warm at start; [`HostCommand::Pool`] lines change it later.
    pub initial: u32,
    /// Worker threads, each with its own single-threaded runtime: the most it may serve on.
    pub threads: u32,
    /// Of those, the ones new connections go to at first (0: all); `threads <n>` moves it.
    #[serde(default)]
    pub active_threads: u32,
    /// Requests an `http` instance serves before it is replaced.
    pub reuse: u32,
    /// The memory quota of one instance at start; [`HostCommand::Memory`] changes it.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        let commands = [
            HostCommand::Pool(0),
            HostCommand::Pool(u32::MAX),
            HostCommand::Memory(1 << 30),
            HostCommand::Threads(2),
        ];
        for c in commands {
            assert_eq!(c.to_string().parse::<HostCommand>(), Ok(c), "{c}");
        }
        let reports = [
            SandboxReport::Warm { ready: 0, slots: 3 },
            SandboxReport::Warm {
                ready: 1000,
                slots: 1000,
            },
            SandboxReport::Memory {
                peak_bytes: 65536,
                denied_bytes: 0,
            },
            SandboxReport::Memory {
                peak_bytes: u64::MAX,
                denied_bytes: 1 << 20,
            },
        ];
        for r in reports {
            assert_eq!(r.to_string().parse::<SandboxReport>(), Ok(r), "{r}");
        }
    }

    #[test]
    fn wire_form_is_stable() {
        assert_eq!(HostCommand::Pool(3).to_string(), "pool 3");
        assert_eq!(HostCommand::Memory(42).to_string(), "memory 42");
        assert_eq!(
            SandboxReport::Warm { ready: 2, slots: 4 }.to_string(),
            "warm 2 4"
        );
        assert_eq!(
            "  mem 10 20 \n".parse::<SandboxReport>(),
            Ok(SandboxReport::Memory {
                peak_bytes: 10,
                denied_bytes: 20
            })
        );
        assert_eq!("pool 7\n".parse::<HostCommand>(), Ok(HostCommand::Pool(7)));
    }

    #[test]
    fn fork_server_messages_round_trip() {
        for r in [
            ForkRequest::Sandbox,
            ForkRequest::Probe {
                action: "connect".into(),
            },
        ] {
            assert_eq!(r.to_string().parse::<ForkRequest>(), Ok(r.clone()), "{r}");
        }
        assert_eq!(ForkRequest::Sandbox.fds(), 5);
        assert!("sandbox 1".parse::<ForkRequest>().is_err());
        assert!("probe".parse::<ForkRequest>().is_err());
        assert!("spawn 1".parse::<ForkRequest>().is_err());
        for m in [
            ZygoteMessage::Forked { pid: 4_194_304 },
            ZygoteMessage::Failed {
                reason: "fork: Resource temporarily unavailable (EAGAIN)".into(),
            },
            ZygoteMessage::Exited { pid: 7, status: 9 },
            ZygoteMessage::Exited {
                pid: 7,
                status: 256,
            },
        ] {
            assert_eq!(m.to_string().parse::<ZygoteMessage>(), Ok(m.clone()), "{m}");
        }
        assert!("exited 7".parse::<ZygoteMessage>().is_err());
        assert!("forked x".parse::<ZygoteMessage>().is_err());
    }

    #[test]
    fn bad_lines_are_errors() {
        for bad in [
            "",
            "pool",
            "pool -1",
            "pool 1 2",
            "pool 4294967296",
            "memory x",
            "warm 1",
            "pools 1",
        ] {
            let e = bad.parse::<HostCommand>().unwrap_err();
            assert_eq!(e.line, bad.trim_end());
        }
        for bad in [
            "warm 1",
            "warm 1 2 3",
            "mem 1",
            "mem a b",
            "ready",
            "pool 1",
        ] {
            assert!(bad.parse::<SandboxReport>().is_err(), "{bad:?}");
        }
        assert_eq!(
            "nope".parse::<SandboxReport>().unwrap_err().to_string(),
            "bad control line \"nope\": expected `warm <ready> <slots>` or `mem <peak> <denied>`"
        );
    }
}
