//! Executing handlers. Both kinds share the per-instance memory limiter, the per-request CPU
//! deadline, and the classification of how an invocation ended.

pub mod event;
pub mod http;
pub mod logtail;

use wasmtime::{ResourceLimiter, Store, UpdateDeadline};

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// Why a binary cannot run here, found by the kind's checks before the file is named
/// (`artifact` names it).
#[derive(Debug)]
pub enum CheckError {
    /// Imports that the sandbox does not link.
    Imports(Vec<String>),
    /// The export the kind needs, missing or of the wrong type.
    Export(String),
    Other(String),
}

/// How one invocation ended. Travels to the host in the `x-surge-outcome` header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// The handler ran to completion but reported failure (non-zero exit).
    Error,
    /// The request's timeout passed; the instance was interrupted and discarded.
    Timeout,
    /// The instance asked for more memory than its quota; it was discarded.
    Memory,
    /// The guest trapped; the instance was discarded.
    Trap,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Error => "error",
            Outcome::Timeout => "timeout",
            Outcome::Memory => "memory",
            Outcome::Trap => "trap",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "ok" => Outcome::Ok,
            "error" => Outcome::Error,
            "timeout" => Outcome::Timeout,
            "memory" => Outcome::Memory,
            "trap" => Outcome::Trap,
            _ => return None,
        })
    }
}

/// Limits one instance's linear memories *together* to its quota. (wasmtime's StoreLimits
/// caps each memory on its own; a component has several.)
#[derive(Debug)]
pub struct InstanceLimiter {
    limit_bytes: usize,
    /// The sandbox's live quota, when it has one: read on every grow, so a quota lowered
    /// after this instance was made refuses its growth (an OOM the host sees and answers)
    /// instead of letting it grow into the cgroup's lower limit (a kernel OOM kill of the
    /// whole sandbox).
    ledger: Option<std::sync::Arc<MemoryLedger>>,
    used_bytes: usize,
    /// Set when a grow was refused: the instance hit its quota.
    pub denied: bool,
    /// Highest total linear memory seen, in bytes.
    pub peak_bytes: usize,
    /// The largest total a refused grow asked for, in bytes (0: none refused).
    pub denied_bytes: usize,
}

impl InstanceLimiter {
    pub fn new(limit_bytes: u64) -> Self {
        InstanceLimiter {
            limit_bytes: usize::try_from(limit_bytes).unwrap_or(usize::MAX),
            ledger: None,
            used_bytes: 0,
            denied: false,
            peak_bytes: 0,
            denied_bytes: 0,
        }
    }

    /// A limiter that follows `ledger`'s quota: the lower of it and the quota at creation,
    /// so growth stops at a lowered quota, and a raise applies to new instances (whose
    /// memory slots the host sized for).
    pub fn following(ledger: std::sync::Arc<MemoryLedger>) -> Self {
        let mut l = InstanceLimiter::new(ledger.limit());
        l.ledger = Some(ledger);
        l
    }

    fn limit(&self) -> usize {
        let live = self.ledger.as_ref().map_or(usize::MAX, |l| {
            usize::try_from(l.limit()).unwrap_or(usize::MAX)
        });
        self.limit_bytes.min(live)
    }
}

/// One sandbox's per-instance memory quota, and what its instances used, for the host's
/// vertical recommender. The quota applies to instances created after it changes (a live
/// instance keeps the limit it was made with); the host resizes it with `memory <bytes>`.
#[derive(Debug)]
pub struct MemoryLedger {
    limit_bytes: AtomicU64,
    /// Highest linear memory of one instance since the last [`MemoryLedger::take`].
    peak_bytes: AtomicU64,
    /// Largest total a refused grow asked for since the last take (0: none).
    denied_bytes: AtomicU64,
}

impl MemoryLedger {
    pub fn new(limit_bytes: u64) -> Self {
        MemoryLedger {
            limit_bytes: AtomicU64::new(limit_bytes),
            peak_bytes: AtomicU64::new(0),
            denied_bytes: AtomicU64::new(0),
        }
    }

    /// The quota a new instance gets.
    pub fn limit(&self) -> u64 {
        self.limit_bytes.load(Ordering::Relaxed)
    }

    pub fn set_limit(&self, bytes: u64) {
        self.limit_bytes.store(bytes, Ordering::Relaxed);
    }

    /// Fold in what one instance used (after each request it served).
    pub fn observe(&self, l: &InstanceLimiter) {
        self.peak_bytes
            .fetch_max(l.peak_bytes as u64, Ordering::Relaxed);
        if l.denied_bytes > 0 {
            self.denied_bytes
                .fetch_max(l.denied_bytes as u64, Ordering::Relaxed);
        }
    }

    /// (peak, denied) since the last take, and start a new interval. None: nothing ran.
    pub fn take(&self) -> Option<(u64, u64)> {
        let peak = self.peak_bytes.swap(0, Ordering::Relaxed);
        let denied = self.denied_bytes.swap(0, Ordering::Relaxed);
        (peak > 0 || denied > 0).then_some((peak, denied))
    }
}

impl ResourceLimiter for InstanceLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let next = self
            .used_bytes
            .saturating_sub(current)
            .saturating_add(desired);
        if next > self.limit() {
            self.denied = true;
            self.denied_bytes = self.denied_bytes.max(next);
            return Ok(false);
        }
        self.used_bytes = next;
        self.peak_bytes = self.peak_bytes.max(next);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

/// Store data that carries the current request's wall-clock deadline.
pub trait Budgeted {
    fn deadline(&mut self) -> &mut Option<Instant>;
}

/// Arm `store` so that guest code yields to the executor at every epoch tick and traps with
/// `Trap::Interrupt` once the deadline has passed. Call [`set_budget`] before each request.
///
/// The deadline is wall-clock, not a count of ticks: under a CFS quota the whole sandbox
/// (the ticker thread too) is throttled, so ticks arrive late and a tick count would stretch
/// a 1 s timeout to several seconds.
pub fn arm_deadline<T: Budgeted + 'static>(store: &mut Store<T>) {
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(|mut cx| match *cx.data_mut().deadline() {
        Some(d) if Instant::now() >= d => Ok(UpdateDeadline::Interrupt),
        _ => Ok(UpdateDeadline::Yield(1)),
    });
}

/// Give the next request `timeout_ms` from now.
pub fn set_budget<T: Budgeted>(store: &mut Store<T>, timeout_ms: u64) {
    *store.data_mut().deadline() = Some(Instant::now() + Duration::from_millis(timeout_ms));
    store.set_epoch_deadline(1);
}

/// The wall-clock backstop around a whole call. Epoch interrupts only fire while wasm code
/// runs; a guest parked in a host call (a long `poll`, a sleep, a body it never reads) is
/// stopped by this instead. Two ticks longer, so the epoch trap wins when both could.
pub fn wall_limit(timeout_ms: u64) -> Duration {
    Duration::from_millis(timeout_ms + 2 * crate::engine::EPOCH_TICK_MS)
}

/// The message for a call stopped by [`wall_limit`].
pub const WALL_TIMEOUT_MESSAGE: &str = "the handler ran past its timeout (waiting in a host call)";

/// How a failed call ended, and a short message that names no host internals.
pub fn classify(err: &wasmtime::Error, limiter: &InstanceLimiter) -> (Outcome, String) {
    if let Some(trap) = err.downcast_ref::<wasmtime::Trap>() {
        if *trap == wasmtime::Trap::Interrupt {
            return (Outcome::Timeout, "the handler ran past its timeout".into());
        }
        if limiter.denied {
            return (
                Outcome::Memory,
                format!("the handler exceeded its memory limit ({trap})"),
            );
        }
        return (Outcome::Trap, format!("wasm trap: {trap}"));
    }
    if limiter.denied {
        return (
            Outcome::Memory,
            "the handler exceeded its memory limit".into(),
        );
    }
    // Guest-caused errors other than traps (e.g. a wasi:http protocol error): report only
    // the outermost message.
    let msg = err.to_string();
    (
        Outcome::Trap,
        msg.lines().next().unwrap_or("handler failed").to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_instance_follows_a_lowered_quota_and_reports_it() {
        let ledger = std::sync::Arc::new(MemoryLedger::new(64 << 20));
        let mut l = InstanceLimiter::following(ledger.clone());
        assert!(l.memory_growing(0, 32 << 20, None).unwrap());
        // The host lowers the quota while the instance lives: its next grow is refused
        // (a wasm OOM the host sees), not left to the cgroup's lower limit.
        ledger.set_limit(16 << 20);
        assert!(!l.memory_growing(32 << 20, 40 << 20, None).unwrap());
        assert!(l.denied);
        // A raise does not lift an instance past the quota it was made with.
        ledger.set_limit(128 << 20);
        assert!(!l.memory_growing(32 << 20, 80 << 20, None).unwrap());
        ledger.observe(&l);
        assert_eq!(ledger.take(), Some((32 << 20, 80 << 20)));
        assert_eq!(ledger.take(), None, "a new interval starts empty");
    }
}
