//! What the cluster keeps in etcd, and under which keys (`[cluster] prefix`, `/surge` by
//! default). Only slow-changing control state: nothing here is read on a request's path.
//!
//! - `{prefix}/functions/{name}`: the live version of a function (metadata and blob hash;
//!   blobs move between nodes over surge's own HTTP, since etcd caps a request at 1.5 MiB).
//! - `{prefix}/functions/{name}/{setting}`: a setting the APIs change (its concurrency,
//!   its asynchronous invocation config), as JSON; deleted with the function.
//! - `{prefix}/versions/{name}`: the last version number ever given to the name; never
//!   deleted, so versions stay unique across removes.
//! - `{prefix}/live/nodes/{node}`: a member, its capacity and what is free of it, on its
//!   lease.
//! - `{prefix}/live/warm/{function}/{node}`: a node's warm instances of a function's
//!   version, on that node's lease: they vanish with the node.
//! - `{prefix}/events/{request id}`: an accepted asynchronous event, until it ends.
//! - `{prefix}/claims/{request id}`: the node delivering it, on that node's lease: when the
//!   node dies the claim goes, and another node claims the event.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Keys {
            prefix: prefix.to_string(),
        }
    }

    pub fn functions(&self) -> String {
        format!("{}/functions/", self.prefix)
    }

    pub fn function(&self, name: &str) -> String {
        format!("{}/functions/{name}", self.prefix)
    }

    pub fn version_counter(&self, name: &str) -> String {
        format!("{}/versions/{name}", self.prefix)
    }

    pub fn events(&self) -> String {
        format!("{}/events/", self.prefix)
    }

    pub fn event(&self, request_id: &str) -> String {
        format!("{}/events/{request_id}", self.prefix)
    }

    pub fn claims(&self) -> String {
        format!("{}/claims/", self.prefix)
    }

    pub fn claim(&self, request_id: &str) -> String {
        format!("{}/claims/{request_id}", self.prefix)
    }

    pub fn live(&self) -> String {
        format!("{}/live/", self.prefix)
    }

    pub fn node(&self, node: &str) -> String {
        format!("{}/live/nodes/{node}", self.prefix)
    }

    pub fn warm(&self, function: &str, node: &str) -> String {
        format!("{}/live/warm/{function}/{node}", self.prefix)
    }

    /// What a key under `live/` names.
    pub fn parse_live<'k>(&self, key: &'k str) -> Option<LiveKey<'k>> {
        let rest = key.strip_prefix(&self.prefix)?.strip_prefix("/live/")?;
        if let Some(node) = rest.strip_prefix("nodes/") {
            return Some(LiveKey::Node(node));
        }
        let (function, node) = rest.strip_prefix("warm/")?.split_once('/')?;
        Some(LiveKey::Warm { function, node })
    }

    /// A function's setting (`registry::catalog::CONCURRENCY`, ...): under its function's
    /// key, so that one watch applies both in the order they were written.
    pub fn setting(&self, name: &str, kind: &str) -> String {
        format!("{}/functions/{name}/{kind}", self.prefix)
    }

    /// Every setting of a function.
    pub fn settings(&self, name: &str) -> String {
        format!("{}/functions/{name}/", self.prefix)
    }

    /// What a key under `functions/` names (a function name has no '/').
    pub fn parse_function<'k>(&self, key: &'k str) -> Option<CatalogKey<'k>> {
        let rest = key
            .strip_prefix(&self.prefix)?
            .strip_prefix("/functions/")?;
        Some(match rest.split_once('/') {
            None => CatalogKey::Function(rest),
            Some((function, kind)) => CatalogKey::Setting { function, kind },
        })
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum CatalogKey<'k> {
    Function(&'k str),
    Setting { function: &'k str, kind: &'k str },
}

#[derive(Debug, PartialEq, Eq)]
pub enum LiveKey<'k> {
    Node(&'k str),
    Warm { function: &'k str, node: &'k str },
}

/// `{prefix}/functions/{name}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FunctionEntry {
    pub version: u64,
    pub manifest_file: String,
    pub manifest: String,
    pub wasm_sha256: String,
    pub deployed_at_unix: i64,
    /// The node it was deployed through, which has its blob.
    pub origin: String,
    pub origin_url: String,
}

/// `{prefix}/events/{request id}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventEntry {
    pub function: String,
    /// The payload, base64 (an event is at most 1 MiB: 1.4 MiB here, within etcd's 1.5).
    pub payload: String,
    pub enqueued_ms: i64,
}

/// `{prefix}/live/nodes/{node}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeEntry {
    pub node: String,
    /// Where its gateway answers (`[cluster] advertise`).
    pub url: String,
    /// Its capacity for sandboxes.
    pub cpu_millicores: u64,
    pub memory_bytes: u64,
    /// What no sandbox holds there, as of its last update (`membership.rs` puts the entry
    /// again when it moves by a step): where a scale-up can fit.
    #[serde(default)]
    pub free_memory_bytes: Option<u64>,
    #[serde(default)]
    pub free_cpu_millicores: Option<u64>,
    pub started_unix: i64,
}

/// `{prefix}/live/warm/{function}/{node}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WarmEntry {
    pub version: u64,
    /// Instances ready on that node.
    pub ready: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_keys_parse_back() {
        let k = Keys::new("/surge");
        assert_eq!(k.parse_live(&k.node("n1")), Some(LiveKey::Node("n1")));
        assert_eq!(
            k.parse_live(&k.warm("echo", "n2")),
            Some(LiveKey::Warm {
                function: "echo",
                node: "n2"
            })
        );
        assert_eq!(k.parse_live("/other/live/nodes/x"), None);
        assert_eq!(
            k.parse_function(&k.function("hello")),
            Some(CatalogKey::Function("hello"))
        );
        assert_eq!(
            k.parse_function(&k.setting("hello", "concurrency")),
            Some(CatalogKey::Setting {
                function: "hello",
                kind: "concurrency"
            })
        );
    }
}
