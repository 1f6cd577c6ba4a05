//! etcd, with one client per member.
//!
//! etcd-client balances one channel over every endpoint; with one member of three down, its
//! requests then fail at random (etcd-client issue #39). Here each member has its own
//! client: a request goes to the member that answered last, and on a transport failure or
//! `Unavailable` it moves on to the next, each member once. Clients require a leader, so
//! a member cut off from the majority refuses at once instead of serving stale reads.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use etcd_client::{
    Client, ConnectOptions, GetOptions, GetResponse, PutOptions, Txn, TxnResponse, WatchOptions,
    WatchStream,
};

/// One request's limit, and a connection's.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a request goes on trying the members: past an election (the leader lost, the
/// others elect one within about two election timeouts), not past a real outage.
const PATIENCE: Duration = Duration::from_secs(6);
/// Between rounds over the members.
const ROUND_PAUSE: Duration = Duration::from_millis(200);
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    #[error("no etcd member answered ({tried}): {last}")]
    Unavailable { tried: String, last: String },
    #[error("etcd at {endpoint}: {source}")]
    Failed {
        endpoint: String,
        #[source]
        source: etcd_client::Error,
    },
}

pub struct Etcd {
    members: Vec<(String, Client)>,
    /// The member that answered last: requests go there first.
    current: AtomicUsize,
}

impl Etcd {
    /// Clients for every endpoint. No connection is made yet: a member down now is only
    /// skipped later.
    pub async fn connect(endpoints: &[String]) -> Result<Etcd, EtcdError> {
        let mut members = Vec::new();
        for e in endpoints {
            let opts = ConnectOptions::new()
                .with_connect_timeout(CONNECT_TIMEOUT)
                .with_timeout(REQUEST_TIMEOUT)
                .with_keep_alive(Duration::from_secs(1), Duration::from_secs(1))
                .with_require_leader(true);
            let c = Client::connect([e.as_str()], Some(opts))
                .await
                .map_err(|source| EtcdError::Failed {
                    endpoint: e.clone(),
                    source,
                })?;
            members.push((e.clone(), c));
        }
        Ok(Etcd {
            members,
            current: AtomicUsize::new(0),
        })
    }

    /// Run `op` against one member after another until one answers, in rounds, for up to
    /// [`PATIENCE`] (while the members elect a new leader, none answers). An error that is
    /// the request's own (a failed compare is not one: it is an answer) ends it at once.
    ///
    /// A write retried on another member may have been applied by the first; callers of
    /// conditional writes check for their own write when the condition fails.
    pub async fn run<T, F, Fut>(&self, op: F) -> Result<T, EtcdError>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let n = self.members.len();
        let first = self.current.load(Ordering::Relaxed);
        let mut last = String::new();
        let deadline = tokio::time::Instant::now() + PATIENCE;
        for i in 0.. {
            if i > 0 && i % n == 0 {
                if tokio::time::Instant::now() + ROUND_PAUSE >= deadline {
                    break;
                }
                tokio::time::sleep(ROUND_PAUSE).await;
            }
            let k = (first + i) % n;
            let (endpoint, client) = &self.members[k];
            match tokio::time::timeout(REQUEST_TIMEOUT, op(client.clone())).await {
                Ok(Ok(v)) => {
                    self.current.store(k, Ordering::Relaxed);
                    return Ok(v);
                }
                Ok(Err(e)) if retryable(&e) => last = format!("{endpoint}: {e}"),
                Ok(Err(source)) => {
                    return Err(EtcdError::Failed {
                        endpoint: endpoint.clone(),
                        source,
                    })
                }
                Err(_) => last = format!("{endpoint}: no answer in {REQUEST_TIMEOUT:?}"),
            }
        }
        Err(EtcdError::Unavailable {
            tried: self
                .members
                .iter()
                .map(|(e, _)| e.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            last,
        })
    }

    /// The member to open a long-lived stream (a watch, a lease's keep-alives) on: the one
    /// that answered last, with its index.
    pub fn member(&self) -> (usize, Client) {
        let k = self.current.load(Ordering::Relaxed) % self.members.len();
        (k, self.members[k].1.clone())
    }

    /// A stream on member `k` failed: the next stream goes to the next member (unless a
    /// request has moved on already).
    pub fn failed(&self, k: usize) {
        let next = (k + 1) % self.members.len();
        let _ = self
            .current
            .compare_exchange(k, next, Ordering::Relaxed, Ordering::Relaxed);
    }

    pub fn endpoint(&self, k: usize) -> &str {
        &self.members[k].0
    }

    /// Every key under `prefix` (linearizable), with values unless `keys_only`.
    pub async fn get_prefix(
        &self,
        prefix: &str,
        keys_only: bool,
    ) -> Result<GetResponse, EtcdError> {
        self.run(|mut c| {
            let mut opts = GetOptions::new().with_prefix();
            if keys_only {
                opts = opts.with_keys_only();
            }
            let p = prefix.to_string();
            async move { c.get(p, Some(opts)).await }
        })
        .await
    }

    /// One transaction.
    pub async fn txn(&self, txn: &Txn) -> Result<TxnResponse, EtcdError> {
        self.run(|mut c| {
            let t = txn.clone();
            async move { c.txn(t).await }
        })
        .await
    }

    /// One key (linearizable).
    pub async fn get(&self, key: &str) -> Result<GetResponse, EtcdError> {
        self.run(|mut c| {
            let k = key.to_string();
            async move { c.get(k, None).await }
        })
        .await
    }

    /// Delete one key.
    pub async fn delete(&self, key: &str) -> Result<(), EtcdError> {
        self.run(|mut c| {
            let k = key.to_string();
            async move { c.delete(k, None).await }
        })
        .await
        .map(|_| ())
    }

    /// Put `key` on `lease`: it goes when the lease ends.
    pub async fn put_on_lease(&self, key: &str, value: &[u8], lease: i64) -> Result<(), EtcdError> {
        self.run(|mut c| {
            let (k, v) = (key.to_string(), value.to_vec());
            async move { c.put(k, v, Some(PutOptions::new().with_lease(lease))).await }
        })
        .await
        .map(|_| ())
    }

    /// Watch `prefix` from `revision` on the member that answered last (a failure moves the
    /// next stream to the next member). Err: the member's address and why.
    pub async fn watch_from(&self, prefix: &str, revision: i64) -> Result<WatchStream, String> {
        let (k, mut client) = self.member();
        let opts = WatchOptions::new()
            .with_prefix()
            .with_start_revision(revision);
        client.watch(prefix, Some(opts)).await.map_err(|e| {
            self.failed(k);
            format!("{}: {e}", self.endpoint(k))
        })
    }

    /// A watch stream that broke: the next goes to another member.
    pub fn watch_broke(&self) {
        self.failed(self.current.load(Ordering::Relaxed) % self.members.len());
    }
}

/// Whether another member may answer where this one failed: the connection, or the member
/// (no leader, shutting down, overloaded), not the request.
fn retryable(e: &etcd_client::Error) -> bool {
    use tonic::Code;
    match e {
        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => true,
        etcd_client::Error::GRpcStatus(s) => matches!(
            s.code(),
            Code::Unavailable | Code::DeadlineExceeded | Code::Unknown | Code::Cancelled
        ),
        _ => false,
    }
}
