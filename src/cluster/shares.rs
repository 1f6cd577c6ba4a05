//! Each node's part of the counts set for a whole function: its reserved and provisioned
//! concurrency and its `min_instances` (`dispatch::part_of`). The function's nodes in ring order, its home first,
//! give this node its rank; every node sees the same members, so the parts add up to the
//! function's count. Recomputed when the members or the live versions change.

use std::sync::Arc;

use super::routing::Routing;
use super::state::Cluster;
use crate::control::version::VersionControl;

pub async fn run(c: Arc<Cluster>) {
    let mut versions = c.registry.watch_versions();
    let mut routing = c.watch_routing();
    let mut members: Vec<String> = Vec::new();
    let mut changed_versions = true;
    loop {
        let r = routing.borrow_and_update().clone();
        let now: Vec<String> = r.nodes.iter().map(|n| n.node.clone()).collect();
        // The routing table is rebuilt on every warm-instance change too: only a change
        // of members (or of versions) moves a part.
        if changed_versions || now != members {
            let live = versions.borrow_and_update().clone();
            apply(&c.node, &live, &r);
            members = now;
        }
        tokio::select! {
            v = versions.changed() => {
                if v.is_err() {
                    return;
                }
                changed_versions = true;
            }
            r = routing.changed() => {
                if r.is_err() {
                    return;
                }
                changed_versions = false;
            }
        }
    }
}

/// Give every live version here its rank among `r`'s nodes.
fn apply(me: &str, versions: &[Arc<VersionControl>], r: &Routing) {
    for v in versions {
        let d = &v.deployment;
        let (rank, nodes) = rank(r, me, d.name());
        d.set_share(rank, nodes);
    }
}

/// `me`'s rank in `function`'s ring order among `r`'s nodes, and their number.
pub fn rank(r: &Routing, me: &str, function: &str) -> (u32, u32) {
    let rank = r
        .ring
        .walk(function)
        .iter()
        .position(|&i| r.nodes[i].node == me)
        .unwrap_or(0);
    (rank as u32, r.nodes.len().max(1) as u32)
}
