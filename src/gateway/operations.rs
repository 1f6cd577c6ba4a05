//! The Lambda control plane's operations under way or failed, by function, a leaf: what
//! `State` and `LastUpdateStatus` report while CreateFunction's or an update's deploy runs
//! in the background (`lambda_deploy.rs`), so that AWS's waiters see it through.

use serde_json::Value;

/// A control-plane operation on a function, while it runs or after it failed: what
/// `State` and `LastUpdateStatus` report, so that AWS's waiters see it through.
#[derive(Clone, Debug)]
pub enum Op {
    /// CreateFunction's deploy is under way: `State: Pending`, with this configuration.
    Creating {
        config: Value,
    },
    /// It failed: `State: Failed` with `StateReason`, until the function is deleted or
    /// created again.
    CreateFailed {
        config: Value,
        reason: String,
    },
    /// UpdateFunctionCode / UpdateFunctionConfiguration is under way on the live version.
    Updating,
    UpdateFailed {
        reason: String,
    },
}

/// The operations, by function name.
#[derive(Default)]
pub struct Operations(parking_lot::Mutex<std::collections::HashMap<String, Op>>);

impl Operations {
    pub fn get(&self, name: &str) -> Option<Op> {
        self.0.lock().get(name).cloned()
    }

    /// The creates under way or failed: (name, operation).
    pub fn creates(&self) -> Vec<(String, Op)> {
        self.0
            .lock()
            .iter()
            .filter(|(_, op)| matches!(op, Op::Creating { .. } | Op::CreateFailed { .. }))
            .map(|(n, op)| (n.clone(), op.clone()))
            .collect()
    }

    pub fn set(&self, name: &str, op: Option<Op>) {
        let mut m = self.0.lock();
        match op {
            Some(op) => m.insert(name.to_string(), op),
            None => m.remove(name),
        };
    }

    /// Start `op` on `name` unless one is under way: answers the one under way.
    pub fn begin(&self, name: &str, op: Op) -> Result<(), Op> {
        let mut m = self.0.lock();
        match m.get(name) {
            Some(cur @ (Op::Creating { .. } | Op::Updating)) => Err(cur.clone()),
            _ => {
                m.insert(name.to_string(), op);
                Ok(())
            }
        }
    }
}
