//! Horizontal autoscaling: the control loop that re-decides every function's pool size.
//!
//! ```text
//! dispatch (arrivals, level) ─▶ window ─▶ decider ─▶ Pool target ─▶ supervisor (sandbox, pool
//!                                                                    command, cgroup limits)
//! ```
//!
//! [`window`] and [`decider`] are pure: they take `now` and do no I/O, so the tests step
//! through invented time. This module is the only part that reads the clock. It ticks every
//! `autoscaler.tick`, and also at once when a request had to queue (a poke), so a function at
//! zero starts without waiting for the tick.

pub mod decider;
pub mod window;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::registry::Registry;

/// Pokes closer together than this are handled in one round: under a sustained overload
/// every queued request pokes, and one decision per round is enough. A poke round decides
/// only for the functions that were poked: with 1,000 functions a full round costs ~2 ms
/// (BENCHMARKS.md), a poked one ~2 µs.
const POKE_SPACING: Duration = Duration::from_millis(5);

/// Run the control loop until `shutdown` resolves.
pub async fn run(
    registry: Arc<Registry>,
    tick: Duration,
    poke: Arc<Notify>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut next = Instant::now() + tick;
    loop {
        let poked = tokio::select! {
            _ = &mut shutdown => return,
            _ = tokio::time::sleep_until(next) => false,
            _ = poke.notified() => true,
        };
        let now = Instant::now();
        for d in registry.routes().all() {
            // A poke round decides only where a request queued; a tick decides everywhere
            // (and clears the marks, which it covers).
            if d.take_poke() || !poked {
                d.autoscale(now);
            }
        }
        if poked {
            tokio::time::sleep(POKE_SPACING).await;
        } else {
            // A late tick is not made up for: the decider works from `now`, not a count.
            next = (next + tick).max(now);
        }
    }
}
