//! A manual resize (`surge resize`, `POST /admin/v1/functions/{name}/resize`): checked,
//! pinned and persisted here, applied in place by the version's supervisor.

use super::status::FunctionInfo;
use super::{DeployError, Registry};
use crate::control::supervisor::cgroup_name;
use crate::control::vertical::quota::QuotaUpdate;

/// Longest a manual resize waits for the supervisor to apply it before answering (202
/// instead of 200 after that: it applies when the sandbox is up).
const RESIZE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// A manual resize: dimensions to set (and pin), and dimensions to unpin.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ResizeRequest {
    #[serde(default)]
    pub update: QuotaUpdate,
    #[serde(default)]
    pub clear_memory: bool,
    #[serde(default)]
    pub clear_cpu: bool,
}

impl Registry {
    /// A manual resize (`surge resize`): validated as a whole (bounds, then the node's
    /// memory), pinned and persisted, then applied in place by the supervisor. Returns once
    /// the cgroup holds the new limits (or after `RESIZE_WAIT`, if the sandbox is busy
    /// starting).
    pub async fn resize(
        &self,
        name: &str,
        r: &ResizeRequest,
    ) -> Result<(FunctionInfo, bool), DeployError> {
        let d = {
            // Not across deploys and removes; released before waiting for the apply.
            let _t = self.transitions.lock().await;
            let c = self
                .version_of(name)
                .ok_or_else(|| DeployError::NotFound(name.into()))?;
            let (d, v) = (&c.deployment, &c.vertical);
            let (next, pins) = v
                .prepare_manual(&r.update, r.clear_memory, r.clear_cpu)
                .map_err(|source| DeployError::Quota {
                    function: name.to_string(),
                    source,
                })?;
            // A memory raise must fit the node for the instances the sandbox holds now.
            let before = v.quota_in_force();
            if next.memory_bytes > before.memory_bytes {
                let instances = d.ready().max(1);
                let needed = self
                    .sandboxes
                    .demand(&d.spec, d.kind, c.memory_overhead_bytes, next, instances)
                    .limits(instances)
                    .memory_bytes;
                let node = &self.sandboxes.node;
                let free = node.memory_free_for(&cgroup_name(name, d.version));
                if needed > free {
                    return Err(DeployError::Capacity {
                        function: name.to_string(),
                        instances,
                        needed,
                        free,
                        capacity: node.capacity().memory_bytes,
                    });
                }
            }
            // Persisted first: an error here changes nothing, live or stored.
            tokio::task::block_in_place(|| self.store.put_pins(name, &pins))?;
            let generation = v.commit_manual(pins);
            (c.clone(), generation)
        };
        let (c, generation) = d;
        let applied = c
            .vertical
            .wait_applied(generation, RESIZE_WAIT)
            .await
            .is_some();
        Ok((FunctionInfo::of(&c), applied))
    }
}
