//! Many surge nodes as one platform, on etcd (`[cluster] etcd = [...]`; without it none of
//! this runs and a node is exactly a single host).
//!
//! - `catalog.rs`: the functions and their settings (concurrency, asynchronous invocation
//!   config). A deploy through any node is one etcd transaction; every
//!   node's SQLite store is a copy of etcd's, fed by a watch that resumes from the last
//!   revision it applied, and blobs move between nodes by hash over surge's own HTTP.
//! - `membership.rs`: this node's lease, its member entry and its warm instances.
//! - `claims.rs`: asynchronous events in etcd, each claimed by one node on its lease, and
//!   taken over by another when that node dies.
//! - `view.rs`: the members and where warm instances are, as every router sees them: fed
//!   by a watch, read without a lock on the request's path.
//! - `placement.rs` (pure): which node serves a function's request.
//! - `shares.rs`: this node's part of each function's reserved and provisioned
//!   concurrency.
//! - `etcd.rs`: one client per etcd member, failing over between them.
//!
//! The gateway asks [`Cluster::place`] which node serves a request, and forwards it there
//! (`gateway/forward.rs`); no etcd call is ever on a request's path.

pub mod catalog;
pub mod claims;
pub mod etcd;
pub mod keys;
pub mod membership;
pub mod placement;
pub mod routing;
pub mod shares;
pub mod state;
pub mod view;

use std::sync::Arc;

use crate::manifest::ClusterConfig;
use crate::registry::Registry;
pub use state::{Cluster, InFlight, Target, FORWARDED, MAY_SHED, SERVED_BY};

/// Join: connect to etcd, and start holding this node's lease and following the members.
/// Versions deployed through the registry from here on are agreed in etcd.
pub async fn join(
    config: ClusterConfig,
    listen: std::net::SocketAddr,
    registry: Arc<Registry>,
    token: String,
) -> anyhow::Result<Arc<Cluster>> {
    let c = Arc::new(Cluster::new(config, listen, registry.clone(), token).await?);
    registry.set_catalog(Arc::new(catalog::EtcdCatalog {
        etcd: c.etcd.clone(),
        keys: c.keys.clone(),
        node: c.node.clone(),
        url: c.url.clone(),
        routing: c.watch_routing(),
    }));
    c.hold_task(tokio::spawn(membership::run(c.clone())));
    c.hold_task(tokio::spawn(view::run(c.clone())));
    // Know the members before any version is deployed here: its part of its function's
    // counts is taken from them (alone, it would start with the whole of them). Bounded:
    // with etcd unreachable, the node starts anyway, and the parts follow when it answers.
    let mut routing = c.watch_routing();
    let _ = tokio::time::timeout(c.config.lease_ttl.0, routing.wait_for(|r| r.revision > 0)).await;
    c.hold_task(tokio::spawn(shares::run(c.clone())));
    tracing::info!(node = %c.node, url = %c.url, etcd = ?c.config.etcd, "joined the cluster");
    Ok(c)
}

/// Start applying the catalog: after the host restored its own store, so the watch
/// resumes from the revision that store reflects.
/// Settings it holds for the asynchronous invocations are kept in `queue`.
pub fn follow_catalog(c: &Arc<Cluster>, queue: Arc<crate::events::Queue>) {
    c.hold_task(tokio::spawn(catalog::follow(c.clone(), queue)));
}

/// Publish this node's asynchronous events to the cluster and take over those no node
/// holds.
pub fn share_events(c: &Arc<Cluster>, queue: Arc<crate::events::Queue>) {
    let claims = claims::EtcdClaims::new(c.clone());
    queue.set_claims(claims.clone());
    c.hold_task(tokio::spawn(claims::take_over(claims, queue)));
}
