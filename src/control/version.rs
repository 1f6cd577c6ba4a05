//! The control path's own state for one live function version, beside the data path's
//! [`Deployment`]: what the loops decide (the pool target, the quota) and what the
//! supervisor reports (its phase, starts and restarts). Created by the supervisor at deploy;
//! the registry publishes the live set as a [`LiveVersions`] watch, which the control loops
//! follow instead of holding the registry.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use surge_runtime::cgroup::usage::UsageReader;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::control::autoscale::scaler::Scaler;
use crate::control::vertical::state::VerticalState;
use crate::dispatch::Deployment;

/// Where a version's supervisor is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// No process and no cgroup: waiting for a target above zero.
    #[default]
    Zero,
    /// Creating the cgroup and spawning the sandbox, until its ready line.
    Starting,
    /// The sandbox serves; the supervisor follows the target and the quota.
    Running,
    /// Admitting nothing, waiting for admitted requests, then stopping the sandbox.
    Stopping,
    /// Retired: the supervisor is gone.
    Stopped,
}

/// The supervisor's figures for status and metrics.
pub struct Lifecycle {
    pub phase: watch::Sender<Phase>,
    /// Sandbox starts after a crash.
    pub restarts: AtomicU64,
    /// Sandbox starts from zero instances (not restarts after a crash).
    pub cold_starts: AtomicU64,
    /// How long the last start took, µs (0: none yet): a pre-warm begins that early.
    pub last_start_us: AtomicU64,
}

/// The pre-warm lead before any start was measured.
const DEFAULT_START_LEAD: Duration = Duration::from_millis(50);

impl Lifecycle {
    pub fn new(phase: Phase) -> Self {
        Lifecycle {
            phase: watch::Sender::new(phase),
            restarts: AtomicU64::new(0),
            cold_starts: AtomicU64::new(0),
            last_start_us: AtomicU64::new(0),
        }
    }

    /// How early a pre-warm should begin: the last start's time, with half again as
    /// margin.
    pub fn start_lead(&self) -> Duration {
        match self.last_start_us.load(Ordering::Relaxed) {
            0 => DEFAULT_START_LEAD,
            us => Duration::from_micros(us + us / 2),
        }
    }

    pub fn phase(&self) -> Phase {
        *self.phase.borrow()
    }

    pub(crate) fn set_phase(&self, p: Phase) {
        self.phase
            .send_if_modified(|now| std::mem::replace(now, p) != p);
    }
}

/// One live function version, as the control path sees it.
pub struct VersionControl {
    pub deployment: Arc<Deployment>,
    /// The version's key: its cgroup's name and its entry in the node's ledger.
    pub key: String,
    /// What its sandbox's memory limit holds beside the instances
    /// (`supervisor::memory_overhead`).
    pub memory_overhead_bytes: u64,
    /// The sandbox cgroup's usage, through its directories whether or not the cgroup
    /// exists now (none without cgroups): usage sampling and status read them.
    pub usage: UsageReader,
    pub scaler: Scaler,
    pub vertical: VerticalState,
    pub lifecycle: Lifecycle,
}

/// The versions in the route table, as the registry last published them.
pub type LiveVersions = watch::Receiver<Arc<[Arc<VersionControl>]>>;
