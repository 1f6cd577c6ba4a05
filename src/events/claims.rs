//! Claims on events, when the node is one of a cluster (`src/cluster/claims.rs` keeps them
//! in etcd). An event accepted here is published to the cluster, claimed by this node on
//! its lease, before the caller gets its 202. This node delivers it only while the claim
//! holds; if the node dies or is cut off, the claim ends with its lease and another node
//! claims the event and delivers it (at least once, as Lambda's asynchronous invocations).
//! A single node has no claims: its queue.db alone makes an event durable.

use bytes::Bytes;

pub use crate::registry::catalog::BoxFuture;

pub trait Claims: Send + Sync {
    /// Publish an accepted event, claimed by this node (one etcd transaction).
    fn publish<'a>(
        &'a self,
        function: &'a str,
        request_id: &'a str,
        payload: &'a Bytes,
        enqueued_ms: i64,
    ) -> BoxFuture<'a, Result<(), String>>;

    /// Whether this node still holds its claim on the event: no delivery starts without.
    fn holds(&self, request_id: &str) -> bool;

    /// The event ended here (delivered, or its failure recorded): the cluster forgets it,
    /// if this node's claim on it still stands.
    fn ended(&self, request_id: &str);
}
