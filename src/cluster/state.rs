//! The cluster as this node holds it: its etcd clients, its lease, the routers' table and
//! the loads it has placed. The loops that keep it (`membership.rs`, `view.rs`,
//! `catalog.rs`, `claims.rs`) and the gateway read and write it through here.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as HttpClient;
use tokio::sync::watch;

use super::etcd::Etcd;
use super::keys::Keys;
use super::placement;
use super::routing::{Routing, View};
use crate::dispatch::Deployment;
use crate::manifest::ClusterConfig;
use crate::registry::Registry;

/// A forwarded request carries the forwarding node's name here; the receiver serves it
/// itself (one hop at most).
pub const FORWARDED: &str = "x-surge-forwarded-by";
/// Every function response in a cluster names the node that served it.
pub const SERVED_BY: &str = "x-surge-node";
/// A forwarded request the forwarder can still take elsewhere: a receiver that cannot fit
/// it sheds it (421 with `x-surge-not-here`). The last node tried never gets it, so a
/// request the whole cluster is short for is still queued somewhere, not bounced.
pub const MAY_SHED: &str = "x-surge-may-shed";

pub type Http = HttpClient<HttpConnector, Full<Bytes>>;

pub struct Cluster {
    /// This node's name and URL.
    pub node: String,
    pub url: String,
    pub config: ClusterConfig,
    pub etcd: Arc<Etcd>,
    pub keys: Keys,
    pub registry: Arc<Registry>,
    /// The admin token every node of the cluster shares (blobs are fetched with it).
    pub token: String,
    /// Pooled connections to the other nodes.
    pub http: Http,
    /// The routers' view, rebuilt on every change of membership or warm instances.
    routing: watch::Sender<Arc<Routing>>,
    /// This node's lease while etcd knows it (None: lost, or not granted yet). Work that
    /// needs fencing (claims) is written with it.
    pub lease: watch::Sender<Option<i64>>,
    /// The lease and until when it is surely alive on etcd's side (`membership.rs`).
    lease_until: parking_lot::Mutex<Option<(i64, tokio::time::Instant)>>,
    /// Requests in flight at each node, as placed by this router (for itself: all it
    /// serves). They outlive routing rebuilds.
    loads: parking_lot::Mutex<HashMap<String, Arc<AtomicU64>>>,
    /// Of those, each function's own, by function and node.
    own_loads: parking_lot::Mutex<HashMap<String, HashMap<String, Arc<AtomicU64>>>>,
    /// Nodes this router failed to connect to, until when they are tried last.
    down: parking_lot::Mutex<HashMap<String, tokio::time::Instant>>,
    /// This node's free memory (bytes), as of the membership loop's last tick: what this
    /// router places on itself by (the others', from their member entries).
    free_memory: AtomicU64,
    /// The functions the cluster's catalog holds (the others are this node's own).
    catalog_names: parking_lot::RwLock<std::collections::HashSet<String>>,
    tasks: parking_lot::Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

/// One place a request may go.
#[derive(Clone, Debug)]
pub struct Target {
    pub node: String,
    pub url: String,
    pub local: bool,
    /// This router could not reach it lately (placed last).
    pub down: bool,
    load: Arc<AtomicU64>,
    /// The function's own requests in flight there.
    own: Arc<AtomicU64>,
}

impl Target {
    /// Count a request in flight there until the guard drops.
    pub fn begin(&self) -> InFlight {
        self.load.fetch_add(1, Ordering::Relaxed);
        self.own.fetch_add(1, Ordering::Relaxed);
        InFlight(self.load.clone(), self.own.clone())
    }
}

pub struct InFlight(Arc<AtomicU64>, Arc<AtomicU64>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
        self.1.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Cluster {
    /// A node's cluster state, before any loop runs (`cluster::join` starts them).
    pub async fn new(
        config: ClusterConfig,
        listen: std::net::SocketAddr,
        registry: Arc<Registry>,
        token: String,
    ) -> anyhow::Result<Cluster> {
        let url = if config.advertise.is_empty() {
            format!("http://{listen}")
        } else {
            config.advertise.clone()
        };
        let node = if config.node.is_empty() {
            url.trim_start_matches("http://").to_string()
        } else {
            config.node.clone()
        };
        let etcd = Arc::new(Etcd::connect(&config.etcd).await?);
        let keys = Keys::new(&config.prefix);
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        // A peer gone silent under a pooled connection is noticed by the kernel too.
        connector.set_keepalive(Some(Duration::from_secs(5)));
        // A SIGKILLed node's port refuses at once; a node cut off answers nothing: give up
        // on connecting soon and try the next node.
        connector.set_connect_timeout(Some(Duration::from_millis(300)));
        let http = HttpClient::builder(hyper_util::rt::TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        let c = Cluster {
            node,
            url,
            config,
            etcd,
            keys,
            registry,
            token,
            http,
            routing: watch::Sender::new(Arc::new(Routing::default())),
            lease: watch::Sender::new(None),
            lease_until: Default::default(),
            loads: Default::default(),
            own_loads: Default::default(),
            down: Default::default(),
            free_memory: AtomicU64::new(u64::MAX),
            catalog_names: Default::default(),
            tasks: Default::default(),
        };
        c.rebuild(&View::default());
        c.free_memory.store(
            c.registry.node_status().free().memory_bytes,
            Ordering::Relaxed,
        );
        Ok(c)
    }

    pub(crate) fn set_free_memory(&self, bytes: u64) {
        self.free_memory.store(bytes, Ordering::Relaxed);
    }

    /// Whether this node can take a request for `d` now: within its part of the reserved
    /// concurrency, and without waiting on a pool that cannot grow (an execution is free,
    /// or the node's memory holds one more instance, and at zero the sandbox).
    ///
    /// `exact`: free memory from the node's ledger (to refuse a forwarded request: a sum
    /// over its sandboxes under the ledger's lock, only when no execution is free); else as
    /// of the membership loop's last tick (this router placing on itself).
    pub fn can_take(&self, d: &Deployment, exact: bool) -> bool {
        if d.at_reserved() {
            // Its part of the function's reserved concurrency is in use here.
            return false;
        }
        if d.has_idle() {
            return true;
        }
        let (instance, overhead) = d.memory_need();
        let need = instance + if d.ready() == 0 { overhead } else { 0 };
        let free = if exact {
            self.registry.node_status().free().memory_bytes
        } else {
            self.free_memory.load(Ordering::Relaxed)
        };
        need <= free
    }

    /// The lease, and until when it is surely alive (None: lost).
    pub(crate) fn set_lease(&self, lease: Option<(i64, tokio::time::Instant)>) {
        *self.lease_until.lock() = lease;
        self.lease.send_replace(lease.map(|(id, _)| id));
    }

    /// This node's lease if it is surely still alive on etcd's side now: what fences
    /// claims (the loop that renews it may be late to notice its end; this is not).
    pub fn live_lease(&self) -> Option<i64> {
        let now = tokio::time::Instant::now();
        self.lease_until
            .lock()
            .filter(|(_, until)| now < *until)
            .map(|(id, _)| id)
    }

    /// Keep `t` running until the node leaves.
    pub fn hold_task(&self, t: tokio::task::JoinHandle<()>) {
        self.tasks.lock().push(t);
    }

    /// Leave: stop the loops and revoke the lease, so the others stop routing here now
    /// rather than when it expires.
    pub async fn leave(&self) {
        for t in self.tasks.lock().drain(..) {
            t.abort();
        }
        if let Some(id) = *self.lease.borrow() {
            let _ = self
                .etcd
                .run(|mut c| async move { c.lease_revoke(id).await })
                .await;
        }
    }

    pub fn routing(&self) -> Arc<Routing> {
        self.routing.borrow().clone()
    }

    pub fn watch_routing(&self) -> watch::Receiver<Arc<Routing>> {
        self.routing.subscribe()
    }

    /// Of `requested` provisioned executions of `function`, those the other nodes hold
    /// warm within their parts (`shares.rs`), as they last said; `per`: executions per
    /// instance.
    pub fn provisioned_elsewhere(&self, function: &str, requested: u32, per: u32) -> u32 {
        let r = self.routing();
        let nodes = r.nodes.len() as u32;
        r.ring
            .walk(function)
            .iter()
            .enumerate()
            .filter(|&(_, &i)| r.nodes[i].node != self.node)
            .map(|(rank, &i)| {
                r.ready_at(function, i)
                    .saturating_mul(per)
                    .min(crate::dispatch::part_of(requested, rank as u32, nodes))
            })
            .sum()
    }

    fn load_of(&self, node: &str) -> Arc<AtomicU64> {
        self.loads
            .lock()
            .entry(node.to_string())
            .or_default()
            .clone()
    }

    /// Rebuild the routers' view from `v` (this node is always in it: cut off from etcd,
    /// it still serves what it has).
    pub(crate) fn rebuild(&self, v: &View) {
        let cores = (self.registry.node_status().capacity.cpu_millicores / 1000).max(1);
        let r = Routing::build(v, &self.node, &self.url, cores, |n| self.load_of(n));
        self.routing.send_replace(Arc::new(r));
    }

    /// Whether the cluster's catalog holds `function` (a function only this node has is
    /// served here).
    pub fn in_catalog(&self, function: &str) -> bool {
        self.catalog_names.read().contains(function)
    }

    pub(crate) fn set_catalog_names(&self, names: impl IntoIterator<Item = String>) {
        *self.catalog_names.write() = names.into_iter().collect();
    }

    pub(crate) fn catalog_name(&self, name: &str, present: bool) {
        let mut n = self.catalog_names.write();
        if present {
            n.insert(name.to_string());
        } else {
            n.remove(name);
        }
    }

    /// The nodes to try for a request to `d`, best first (placement.rs).
    pub fn place(&self, d: &Deployment) -> Vec<Target> {
        let function = d.name();
        let (instance, overhead) = d.memory_need();
        let r = self.routing();
        let now = tokio::time::Instant::now();
        let down: Vec<bool> = {
            let d = self.down.lock();
            r.nodes
                .iter()
                .map(|n| d.get(&n.node).is_some_and(|until| *until > now))
                .collect()
        };
        let own: Vec<Arc<AtomicU64>> = {
            // No allocation once a function has been placed on each node.
            let mut all = self.own_loads.lock();
            if !all.contains_key(function) {
                all.insert(function.to_string(), HashMap::new());
            }
            let mine = all.get_mut(function).expect("inserted above");
            r.nodes
                .iter()
                .map(|n| match mine.get(&n.node) {
                    Some(l) => l.clone(),
                    None => {
                        let l = Arc::new(AtomicU64::new(0));
                        mine.insert(n.node.clone(), l.clone());
                        l
                    }
                })
                .collect()
        };
        let cands: Vec<placement::Candidate> = r
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let warm = r.warm_at(function, i);
                let free = if n.node == self.node {
                    self.free_memory.load(Ordering::Relaxed)
                } else {
                    n.free_memory
                };
                placement::Candidate {
                    load: n.load.load(Ordering::Relaxed),
                    own: own[i].load(Ordering::Relaxed),
                    pack: n.cores,
                    warm,
                    full: free < instance + if warm { 0 } else { overhead },
                    down: down[i],
                }
            })
            .collect();
        let walk = r.ring.walk(function);
        placement::choose(&walk, &cands, self.config.balance)
            .into_iter()
            .map(|i| {
                let n = &r.nodes[i];
                Target {
                    node: n.node.clone(),
                    url: n.url.clone(),
                    local: n.node == self.node,
                    down: down[i],
                    load: n.load.clone(),
                    own: own[i].clone(),
                }
            })
            .collect()
    }

    /// This node, as a target (a request it serves whatever placement says).
    pub fn place_here(&self, function: &str) -> Target {
        let own = self
            .own_loads
            .lock()
            .entry(function.to_string())
            .or_default()
            .entry(self.node.clone())
            .or_default()
            .clone();
        Target {
            node: self.node.clone(),
            url: self.url.clone(),
            local: true,
            down: false,
            load: self.load_of(&self.node),
            own,
        }
    }

    /// This router could not connect to `node`: try it last until its lease would have
    /// expired (by then it is out of the view, or back).
    pub fn mark_down(&self, node: &str) {
        let until = tokio::time::Instant::now() + self.config.lease_ttl.0 + Duration::from_secs(1);
        self.down.lock().insert(node.to_string(), until);
        tracing::warn!(node, "cannot connect to a node: routing around it");
    }

    /// A node is back in the view with a new lease: trust it again.
    pub(crate) fn clear_down(&self, node: &str) {
        self.down.lock().remove(node);
    }

    /// What `GET /admin/v1/cluster` shows.
    pub fn status(&self) -> serde_json::Value {
        let r = self.routing();
        serde_json::json!({
            "node": self.node,
            "url": self.url,
            "lease": *self.lease.borrow(),
            "catalog_revision": self.registry.cluster_revision().unwrap_or(0),
            "view_revision": r.revision,
            "nodes": r.nodes.iter().map(|n| serde_json::json!({
                "node": n.node,
                "url": n.url,
                "cores": n.cores,
                "free_memory_bytes": if n.node == self.node {
                    Some(self.free_memory.load(Ordering::Relaxed))
                } else {
                    (n.free_memory != u64::MAX).then_some(n.free_memory)
                },
                "member": n.member,
                "in_flight_from_here": n.load.load(Ordering::Relaxed),
            })).collect::<Vec<_>>(),
            "warm": r.warm_json(),
        })
    }
}
