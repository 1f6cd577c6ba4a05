//! The members and their warm instances, as this node's router sees them: a copy of etcd's
//! `live/` keys (`routing.rs`), fed by a watch, and the routing table rebuilt on every
//! change.
//!
//! Cut off from etcd, the copy is kept as it is: the node goes on routing with what it
//! knew, and a member it cannot connect to is tried last (`Cluster::mark_down`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::EventType;

use super::keys::NodeEntry;
use super::routing::View;
use super::state::Cluster;

/// Between attempts to reach etcd again.
const RETRY: Duration = Duration::from_millis(300);

/// Follow etcd's `live/` keys for as long as the node runs: read them whole, then watch
/// from the next revision; on any break (a member gone, a compaction), read them again
/// from whichever member answers.
pub async fn run(c: Arc<Cluster>) {
    let prefix = c.keys.live();
    loop {
        let resp = match c.etcd.get_prefix(&prefix, false).await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(error = %e, "cluster view: etcd unreachable, keeping the last view");
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        let mut v = View {
            revision: resp.header().map_or(0, |h| h.revision()),
            ..View::default()
        };
        for kv in resp.kvs() {
            if let Some(k) = kv.key_str().ok().and_then(|k| c.keys.parse_live(k)) {
                v.apply(k, Some(kv.value()));
            }
        }
        publish(&c, &v, None);
        // On the member that just answered the read.
        let mut stream = match c.etcd.watch_from(&prefix, v.revision + 1).await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(error = %e, "cluster view: watch");
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        loop {
            let msg = match stream.message().await {
                Ok(Some(m)) => m,
                Ok(None) | Err(_) => break,
            };
            if msg.canceled() || msg.compact_revision() > 0 {
                break;
            }
            let before = v.nodes.clone();
            for ev in msg.events() {
                let Some(kv) = ev.kv() else { continue };
                let Some(key) = kv.key_str().ok().and_then(|k| c.keys.parse_live(k)) else {
                    continue;
                };
                let value = (ev.event_type() == EventType::Put).then(|| kv.value());
                v.apply(key, value);
                v.revision = v.revision.max(kv.mod_revision());
            }
            publish(&c, &v, Some(&before));
        }
        c.etcd.watch_broke();
        tokio::time::sleep(RETRY).await;
    }
}

fn publish(c: &Cluster, v: &View, before: Option<&BTreeMap<String, NodeEntry>>) {
    for (n, e) in &v.nodes {
        // A member that registered again (a new start) is trusted again.
        if before.is_none_or(|b| b.get(n).map(|o| o.started_unix) != Some(e.started_unix)) {
            c.clear_down(n);
        }
    }
    if let Some(b) = before {
        for n in b.keys().filter(|n| !v.nodes.contains_key(*n)) {
            tracing::warn!(node = %n, "a node left the cluster (its lease ended)");
        }
        for n in v.nodes.keys().filter(|n| !b.contains_key(*n)) {
            tracing::info!(node = %n, "a node joined the cluster");
        }
    }
    c.rebuild(v);
}
