//! The routers' table: a copy of etcd's `live/` keys (members, warm instances), and what
//! each request reads, derived from it on every change. Pure.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use super::keys::{LiveKey, NodeEntry, WarmEntry};
use super::placement::Ring;

/// etcd's `live/` keys.
#[derive(Clone, Debug, Default)]
pub struct View {
    pub nodes: BTreeMap<String, NodeEntry>,
    /// Function → node → its warm instances there.
    pub warm: HashMap<String, HashMap<String, WarmEntry>>,
    pub revision: i64,
}

impl View {
    /// Apply one key's put (Some) or delete (None).
    pub fn apply(&mut self, key: LiveKey<'_>, value: Option<&[u8]>) {
        match key {
            LiveKey::Node(n) => match value.and_then(|v| serde_json::from_slice(v).ok()) {
                Some(e) => {
                    self.nodes.insert(n.to_string(), e);
                }
                None => {
                    self.nodes.remove(n);
                }
            },
            LiveKey::Warm { function, node } => {
                match value.and_then(|v| serde_json::from_slice(v).ok()) {
                    Some(e) => {
                        self.warm
                            .entry(function.to_string())
                            .or_default()
                            .insert(node.to_string(), e);
                    }
                    None => {
                        if let Some(m) = self.warm.get_mut(function) {
                            m.remove(node);
                            if m.is_empty() {
                                self.warm.remove(function);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// One node in the routing table.
#[derive(Clone, Debug)]
pub struct RouteNode {
    pub node: String,
    pub url: String,
    pub cores: u64,
    /// Memory no sandbox holds there, as it last said (bytes; `u64::MAX`: unknown).
    pub free_memory: u64,
    /// In etcd's membership (false: only this node itself, cut off or not yet registered).
    pub member: bool,
    pub load: Arc<AtomicU64>,
}

/// What the routers read per request: immutable, swapped whole.
#[derive(Clone, Debug, Default)]
pub struct Routing {
    pub nodes: Vec<RouteNode>,
    pub ring: Ring,
    /// Function → for each node index, its ready instances there.
    warm: HashMap<String, Vec<u32>>,
    pub revision: i64,
}

impl Routing {
    pub fn build(
        v: &View,
        me: &str,
        my_url: &str,
        my_cores: u64,
        load: impl Fn(&str) -> Arc<AtomicU64>,
    ) -> Routing {
        let mut nodes: Vec<RouteNode> = v
            .nodes
            .values()
            .map(|n| RouteNode {
                node: n.node.clone(),
                url: n.url.clone(),
                cores: (n.cpu_millicores / 1000).max(1),
                free_memory: n.free_memory_bytes.unwrap_or(u64::MAX),
                member: true,
                load: load(&n.node),
            })
            .collect();
        if !nodes.iter().any(|n| n.node == me) {
            nodes.push(RouteNode {
                node: me.to_string(),
                url: my_url.to_string(),
                cores: my_cores,
                free_memory: u64::MAX,
                member: false,
                load: load(me),
            });
            nodes.sort_by(|a, b| a.node.cmp(&b.node));
        }
        let index: HashMap<&str, usize> = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.node.as_str(), i))
            .collect();
        let warm = v
            .warm
            .iter()
            .map(|(f, at)| {
                let mut w = vec![0; nodes.len()];
                for (n, e) in at {
                    if let Some(&i) = index.get(n.as_str()) {
                        w[i] = e.ready;
                    }
                }
                (f.clone(), w)
            })
            .collect();
        let names: Vec<&str> = nodes.iter().map(|n| n.node.as_str()).collect();
        Routing {
            ring: Ring::new(&names),
            nodes,
            warm,
            revision: v.revision,
        }
    }

    pub fn warm_at(&self, function: &str, i: usize) -> bool {
        self.ready_at(function, i) > 0
    }

    /// The function's ready instances at node `i`, as that node last said.
    pub fn ready_at(&self, function: &str, i: usize) -> u32 {
        self.warm.get(function).map_or(0, |w| w[i])
    }

    pub fn warm_json(&self) -> serde_json::Value {
        self.warm
            .iter()
            .map(|(f, w)| {
                let at: Vec<&str> = w
                    .iter()
                    .zip(&self.nodes)
                    .filter(|(w, _)| **w > 0)
                    .map(|(_, n)| n.node.as_str())
                    .collect();
                (f.clone(), serde_json::json!(at))
            })
            .collect::<serde_json::Map<_, _>>()
            .into()
    }
}
