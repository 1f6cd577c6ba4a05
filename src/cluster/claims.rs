//! Asynchronous events across the cluster (`events/claims.rs` says what the queue asks):
//! an accepted event is in etcd, claimed by one node on its lease, until it ends.
//!
//! - Accept: one transaction puts the event and this node's claim (on its lease).
//! - Deliver: only while the claim holds, i.e. while this node's lease lives; a node cut off
//!   from etcd gives up its lease after the TTL and delivers none of its claimed events.
//! - Take over: every node looks for events with no claim once a second, and claims one
//!   in a transaction that compares the claim's absence, so one node wins each. A dead
//!   node's claims go with its lease, and its events are delivered by another node.
//! - End: a transaction deletes the event and the claim, if the claim is still this
//!   node's lease's.
//!
//! At least once: a node that dies after running an event and before its end is written
//! leaves the event to be run again elsewhere.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use etcd_client::{Compare, CompareOp, PutOptions, Txn, TxnOp, TxnOpResponse};

use super::keys::{EventEntry, Keys};
use super::state::Cluster;
use crate::events::claims::{BoxFuture, Claims};
use crate::events::Queue;

/// How often unclaimed events are looked for.
const TAKEOVER_EVERY: Duration = Duration::from_secs(1);
/// At most this many events are claimed by one node in one round (the others get theirs).
const TAKE_PER_ROUND: usize = 64;

pub struct EtcdClaims {
    cluster: Arc<Cluster>,
    /// Event → the lease this node claimed it on.
    held: parking_lot::Mutex<HashMap<String, i64>>,
}

impl EtcdClaims {
    pub fn new(cluster: Arc<Cluster>) -> Arc<EtcdClaims> {
        Arc::new(EtcdClaims {
            cluster,
            held: Default::default(),
        })
    }

    fn keys(&self) -> &Keys {
        &self.cluster.keys
    }

    fn lease(&self) -> Option<i64> {
        self.cluster.live_lease()
    }
}

impl Claims for EtcdClaims {
    fn publish<'a>(
        &'a self,
        function: &'a str,
        request_id: &'a str,
        payload: &'a Bytes,
        enqueued_ms: i64,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let lease = self.lease().ok_or_else(|| {
                "this node is cut off from etcd (it holds no lease) and takes no events".to_string()
            })?;
            let entry = EventEntry {
                function: function.to_string(),
                payload: base64::engine::general_purpose::STANDARD.encode(payload),
                enqueued_ms,
            };
            let txn = Txn::new().and_then(vec![
                TxnOp::put(
                    self.keys().event(request_id),
                    serde_json::to_vec(&entry).expect("serializable"),
                    None,
                ),
                TxnOp::put(
                    self.keys().claim(request_id),
                    self.cluster.node.as_str(),
                    Some(PutOptions::new().with_lease(lease)),
                ),
            ]);
            self.cluster
                .etcd
                .txn(&txn)
                .await
                .map_err(|e| e.to_string())?;
            self.held.lock().insert(request_id.to_string(), lease);
            Ok(())
        })
    }

    fn holds(&self, request_id: &str) -> bool {
        let claimed = self.held.lock().get(request_id).copied();
        claimed.is_some() && claimed == self.lease()
    }

    fn ended(&self, request_id: &str) {
        let Some(lease) = self.held.lock().remove(request_id) else {
            return;
        };
        let (c, rid) = (self.cluster.clone(), request_id.to_string());
        tokio::spawn(async move {
            let claim = c.keys.claim(&rid);
            let txn = Txn::new()
                .when(vec![Compare::lease(claim.clone(), CompareOp::Equal, lease)])
                .and_then(vec![
                    TxnOp::delete(c.keys.event(&rid), None),
                    TxnOp::delete(claim, None),
                ]);
            for _ in 0..10 {
                let r = c.etcd.txn(&txn).await;
                match r {
                    Ok(_) => return,
                    Err(e) => {
                        tracing::debug!(request_id = %rid, error = %e, "cluster claims: ending");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            }
            // Left in etcd: once the claim ends with the lease, the event runs again
            // (at least once).
            tracing::warn!(request_id = %rid, "cluster claims: could not end an event in etcd");
        });
    }
}

/// Claim and deliver events no node holds, for as long as the node runs.
pub async fn take_over(claims: Arc<EtcdClaims>, queue: Arc<Queue>) {
    loop {
        tokio::time::sleep(TAKEOVER_EVERY).await;
        let Some(lease) = claims.lease() else {
            continue;
        };
        if let Err(e) = round(&claims, &queue, lease).await {
            tracing::debug!(error = %e, "cluster claims: a takeover round failed");
        }
    }
}

async fn round(claims: &EtcdClaims, queue: &Arc<Queue>, lease: i64) -> anyhow::Result<()> {
    let c = &claims.cluster;
    let events = c.etcd.get_prefix(&c.keys.events(), true).await?;
    if events.kvs().is_empty() {
        return Ok(());
    }
    let claimed: HashSet<String> = c
        .etcd
        .get_prefix(&c.keys.claims(), true)
        .await?
        .kvs()
        .iter()
        .filter_map(|kv| kv.key_str().ok())
        .filter_map(|k| k.strip_prefix(&c.keys.claims()).map(str::to_string))
        .collect();
    let prefix = c.keys.events();
    let free: Vec<String> = events
        .kvs()
        .iter()
        .filter_map(|kv| kv.key_str().ok()?.strip_prefix(&prefix).map(str::to_string))
        .filter(|rid| !claimed.contains(rid))
        .take(TAKE_PER_ROUND)
        .collect();
    for rid in free {
        let (claim, event) = (c.keys.claim(&rid), c.keys.event(&rid));
        // One node wins each event: the claim must not exist, and the event still must.
        let txn = Txn::new()
            .when(vec![
                Compare::create_revision(claim.clone(), CompareOp::Equal, 0),
                Compare::create_revision(event.clone(), CompareOp::Greater, 0),
            ])
            .and_then(vec![
                TxnOp::put(
                    claim.clone(),
                    c.node.as_str(),
                    Some(PutOptions::new().with_lease(lease)),
                ),
                TxnOp::get(event.clone(), None),
            ])
            // Lost, unless the winner is this very claim: a first attempt applied whose
            // answer was lost, retried on another member.
            .or_else(vec![
                TxnOp::get(claim.clone(), None),
                TxnOp::get(event.clone(), None),
            ]);
        let r = c.etcd.txn(&txn).await?;
        let gets: Vec<_> = r
            .op_responses()
            .into_iter()
            .filter_map(|op| match op {
                TxnOpResponse::Get(g) => Some(g),
                _ => None,
            })
            .collect();
        let ours = r.succeeded()
            || gets
                .first()
                .and_then(|g| g.kvs().first())
                .is_some_and(|kv| kv.lease() == lease);
        if !ours {
            continue;
        }
        let entry = gets
            .last()
            .and_then(|g| g.kvs().first())
            .and_then(|kv| serde_json::from_slice::<EventEntry>(kv.value()).ok());
        let Some(e) = entry else {
            // No node can deliver it: dropped, with its claim.
            tracing::error!(request_id = %rid, "cluster claims: an event that cannot be read; dropped");
            let drop_both = Txn::new().and_then(vec![
                TxnOp::delete(event.clone(), None),
                TxnOp::delete(claim.clone(), None),
            ]);
            let _ = c.etcd.txn(&drop_both).await;
            continue;
        };
        let payload = match base64::engine::general_purpose::STANDARD.decode(&e.payload) {
            Ok(p) => Bytes::from(p),
            Err(err) => {
                tracing::error!(request_id = %rid, error = %err, "cluster claims: a bad event");
                continue;
            }
        };
        claims.held.lock().insert(rid.clone(), lease);
        match queue.adopt(&e.function, &rid, payload, e.enqueued_ms).await {
            Ok(()) => tracing::info!(
                function = %e.function, request_id = %rid,
                "cluster claims: took over an event no node held"
            ),
            Err(err) => {
                // Given back: another round (here or elsewhere) takes it.
                claims.held.lock().remove(&rid);
                let _ = c.etcd.delete(&claim).await;
                tracing::warn!(request_id = %rid, error = %err, "cluster claims: could not take an event");
            }
        }
    }
    Ok(())
}
