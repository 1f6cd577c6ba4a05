//! Horizontal autoscaling: the control loop that re-decides every function's pool size.
//!
//! ```text
//! dispatch (arrivals, level) ─▶ load window ─▶ decider ─▶ Scaler target ─▶ supervisor (sandbox,
//!                                                                           pool command, limits)
//! ```
//!
//! [`decider`] is pure, and so is the load window it reads (`dispatch::load`): they take
//! `now` and do no I/O, so the tests step through invented time. [`scaler`] holds one
//! version's decider and target. This module is the loop, the only part that reads the
//! clock. It ticks every `autoscaler.tick`, and also at once when a request had to queue (a
//! poke), so a function at zero starts without waiting for the tick. It follows the live
//! versions through the registry's [`LiveVersions`] watch.

pub mod ahead;
pub mod decider;
pub mod keep;
pub mod scaler;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::control::version::LiveVersions;

/// Pokes closer together than this are handled in one round: under a sustained overload
/// every queued request pokes, and one decision per round is enough. A poke round decides
/// only for the functions that were poked: with 1,000 functions a full round costs ~2 ms
/// (BENCHMARKS.md), a poked one ~2 µs.
const POKE_SPACING: Duration = Duration::from_millis(5);

/// An edge round also decides for edges this close behind it (timers fire a little late).
const EDGE_SLACK: Duration = Duration::from_millis(50);

/// Run the control loop until `shutdown` resolves.
pub async fn run(
    live: LiveVersions,
    tick: Duration,
    poke: Arc<Notify>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut next = Instant::now() + tick;
    // The earliest keep-alive edge (a pre-warm to start, a kept instance to unload).
    let mut edge: Option<Instant> = None;
    loop {
        let wake = edge.map_or(next, |e| e.min(next));
        let (poked, at_edge) = tokio::select! {
            _ = &mut shutdown => return,
            _ = tokio::time::sleep_until(wake) => (false, wake < next),
            _ = poke.notified() => (true, false),
        };
        let now = Instant::now();
        let versions = live.borrow().clone();
        edge = None;
        for v in versions.iter() {
            // A poke round decides only where a request queued, an edge round only where
            // an edge passed; a tick decides everywhere (and clears the marks, which it
            // covers).
            let behind = now.checked_sub(EDGE_SLACK).unwrap_or(now);
            let due = v.scaler.next_edge(behind).is_some_and(|e| e <= now);
            if if poked {
                v.deployment.take_poke()
            } else {
                !at_edge || due
            } {
                v.scaler
                    .decide(&v.deployment, v.lifecycle.start_lead(), now);
            }
            if let Some(e) = v.scaler.next_edge(now) {
                edge = Some(edge.map_or(e, |x: Instant| x.min(e)));
            }
        }
        if at_edge {
            continue;
        }
        if poked {
            tokio::time::sleep(POKE_SPACING).await;
        } else {
            // A late tick is not made up for: the decider works from `now`, not a count.
            next = (next + tick).max(now);
        }
    }
}
