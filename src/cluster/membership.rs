//! This node's lease, and what hangs on it: its member entry (URL and capacity) and its
//! warm instances. A node that dies stops renewing; when the lease ends, etcd deletes every
//! key on it, and each router's watch drops the node within the lease's TTL.
//!
//! Cut off from etcd, the node keeps serving; once its lease must have ended, it says so
//! (`Cluster::lease` becomes None) and anything fenced by the lease stops. When etcd is
//! back it takes a new lease and registers again.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::keys::{NodeEntry, WarmEntry};
use super::state::Cluster;

/// How often warm instances are compared with what etcd has (and the lease renewed, at
/// its own pace).
const TICK: Duration = Duration::from_millis(250);

pub async fn run(c: Arc<Cluster>) {
    let ttl = c.config.lease_ttl.0;
    let started_unix = crate::aws::now_ms() / 1000;
    let ttl_s = ttl.as_secs().max(2) as i64;
    loop {
        // A lease is good until its TTL from when the request left, less a margin: etcd
        // counts from when it got the request, which is later.
        let sent = tokio::time::Instant::now();
        let granted = c
            .etcd
            .run(|mut cl| async move { cl.lease_grant(ttl_s, None).await })
            .await;
        let (lease, mut valid_until) = match granted {
            Ok(r) => (r.id(), sent + secs(r.ttl()).saturating_sub(MARGIN)),
            Err(e) => {
                tracing::debug!(error = %e, "cluster: cannot take a lease yet");
                tokio::time::sleep(Duration::from_millis(300)).await;
                continue;
            }
        };
        let entry = member_entry(&c, started_unix);
        let value = serde_json::to_vec(&entry).expect("serializable");
        if let Err(e) = c
            .etcd
            .put_on_lease(&c.keys.node(&c.node), &value, lease)
            .await
        {
            tracing::debug!(error = %e, "cluster: cannot register");
            continue;
        }
        if tokio::time::Instant::now() >= valid_until {
            // Registering took the whole TTL: start again.
            continue;
        }
        c.set_lease(Some((lease, valid_until)));
        tracing::info!(node = %c.node, lease, "cluster: registered");
        let mut published: HashMap<String, WarmEntry> = HashMap::new();
        let mut said_free = entry.free_memory_bytes.unwrap_or(0);
        let mut next_renewal = tokio::time::Instant::now() + ttl / 3;
        'held: loop {
            tokio::time::sleep(TICK).await;
            if tokio::time::Instant::now() >= next_renewal {
                let sent = tokio::time::Instant::now();
                match keep_alive(&c, lease).await {
                    Ok(granted) if granted > 0 => {
                        valid_until = sent + secs(granted).saturating_sub(MARGIN);
                        c.set_lease(Some((lease, valid_until)));
                        next_renewal = sent + ttl / 3;
                    }
                    Ok(_) => {
                        tracing::warn!(node = %c.node, "cluster: the lease ended; registering again");
                        break 'held;
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "cluster: keep-alive failed");
                        next_renewal = tokio::time::Instant::now() + TICK;
                    }
                }
            }
            // The lease may have ended on etcd's side without our hearing of it. Claims
            // check the same deadline themselves (`Cluster::live_lease`): this only says so.
            if tokio::time::Instant::now() >= valid_until {
                tracing::warn!(node = %c.node, "cluster: etcd unreachable for the lease's TTL; this node holds no claims now");
                break 'held;
            }
            // Bounded: cut off from etcd, a put waits for every member in turn, and the
            // lease's own check must not wait behind it.
            let _ = tokio::time::timeout(TICK, async {
                publish_free(&c, lease, started_unix, &mut said_free).await;
                publish_warm(&c, lease, &mut published).await;
            })
            .await;
        }
        c.set_lease(None);
    }
}

/// This node's member entry now.
fn member_entry(c: &Cluster, started_unix: i64) -> NodeEntry {
    let status = c.registry.node_status();
    let free = status.free();
    c.set_free_memory(free.memory_bytes);
    NodeEntry {
        node: c.node.clone(),
        url: c.url.clone(),
        cpu_millicores: status.capacity.cpu_millicores,
        memory_bytes: status.capacity.memory_bytes,
        free_memory_bytes: Some(free.memory_bytes),
        free_cpu_millicores: Some(free.cpu_millicores),
        started_unix,
    }
}

/// How far this node's free memory moves before its member entry is put again: a 64th of
/// its capacity, within [16 MiB, 256 MiB]. Finer would cost an etcd write (and a watch
/// event on every router) per cold start; the routers' estimate is only a preference, and
/// a node that cannot fit a request after all sheds it (`gateway/forward.rs`).
fn free_step(capacity: u64) -> u64 {
    (capacity / 64).clamp(16 << 20, 256 << 20)
}

/// Put the member entry again if the free memory moved by a step since it was last said.
async fn publish_free(c: &Cluster, lease: i64, started_unix: i64, said: &mut u64) {
    let entry = member_entry(c, started_unix);
    let free = entry.free_memory_bytes.unwrap_or(0);
    if free.abs_diff(*said) < free_step(entry.memory_bytes) {
        return;
    }
    let value = serde_json::to_vec(&entry).expect("serializable");
    if c.etcd
        .put_on_lease(&c.keys.node(&c.node), &value, lease)
        .await
        .is_ok()
    {
        *said = free;
    }
}

/// Taken off a lease's TTL: the time a keep-alive's answer may take to come back, and one
/// tick of this loop.
const MARGIN: Duration = Duration::from_millis(500);

fn secs(s: i64) -> Duration {
    Duration::from_secs(s.max(0) as u64)
}

/// Renew the lease once: the TTL etcd granted again (0: the lease is gone).
async fn keep_alive(c: &Cluster, lease: i64) -> Result<i64, String> {
    // A fresh stream each time: keep-alives are rare (a third of the TTL), and a member
    // that went away must not hold them.
    let (k, mut client) = c.etcd.member();
    let once = async {
        let (mut keeper, mut stream) = client.lease_keep_alive(lease).await?;
        keeper.keep_alive().await?;
        stream.message().await
    };
    let failed = match tokio::time::timeout(Duration::from_secs(1), once).await {
        Ok(Ok(Some(r))) => return Ok(r.ttl()),
        Ok(Ok(None)) => "keep-alive stream closed".to_string(),
        Ok(Err(e)) => e.to_string(),
        Err(_) => "no answer".to_string(),
    };
    c.etcd.failed(k);
    Err(format!("{}: {failed}", c.etcd.endpoint(k)))
}

/// Put what changed of this node's warm instances (on the lease), and delete what went.
async fn publish_warm(c: &Cluster, lease: i64, published: &mut HashMap<String, WarmEntry>) {
    let now: HashMap<String, WarmEntry> = c
        .registry
        .list()
        .into_iter()
        .filter(|f| f.instances > 0)
        .map(|f| {
            (
                f.name,
                WarmEntry {
                    version: f.version,
                    ready: f.instances,
                },
            )
        })
        .collect();
    for (f, e) in &now {
        if published.get(f) == Some(e) {
            continue;
        }
        let value = serde_json::to_vec(e).expect("serializable");
        let r = c
            .etcd
            .put_on_lease(&c.keys.warm(f, &c.node), &value, lease)
            .await;
        if r.is_ok() {
            published.insert(f.clone(), *e);
        }
    }
    let gone: Vec<String> = published
        .keys()
        .filter(|f| !now.contains_key(*f))
        .cloned()
        .collect();
    for f in gone {
        let key = c.keys.warm(&f, &c.node);
        let r = c.etcd.delete(&key).await;
        if r.is_ok() {
            published.remove(&f);
        }
    }
}
