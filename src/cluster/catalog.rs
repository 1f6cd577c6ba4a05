//! The cluster's functions: etcd holds each one's live version, and every node's SQLite
//! store is a copy of it.
//!
//! - A deploy through any node is numbered here ([`EtcdCatalog::prepare`]) and, once the
//!   version is proven on that node (compiled, started, ready), committed in one
//!   transaction that compares the function's key's revision: of two deploys racing, one
//!   wins, and the other changes nothing anywhere.
//! - Every node follows the catalog ([`follow`]) from the last revision it applied, which
//!   it keeps in its own store: a node restarting or reconnecting replays only what it
//!   missed. If etcd compacted that history away, it reads the catalog whole and removes
//!   what is gone.
//! - A version's blob is fetched by hash from the node it was deployed through (or any
//!   other), over the admin API, and checked against its hash.

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Compare, CompareOp, DeleteOptions, EventType, Txn, TxnOp};
use http_body_util::BodyExt;

use super::etcd::Etcd;
use super::keys::{CatalogKey, FunctionEntry, Keys};
use super::routing::Routing;
use super::state::Cluster;
use crate::events::Queue;
use crate::registry::catalog::{
    BoxFuture, Catalog, CatalogError, Commit, Prepared, Setting, SettingPut, CONCURRENCY,
    EVENT_INVOKE_CONFIG,
};

const RETRY: Duration = Duration::from_millis(300);
/// After an event this node could not apply, before it tries again (from the revision
/// before it: the revision saved is always one whose events all took effect here).
const RETRY_FAILED: Duration = Duration::from_secs(5);
/// How long a version's blob is sought before its deploy on this node is given up.
const BLOB_PATIENCE: Duration = Duration::from_secs(30);

/// The registry's catalog in a cluster.
pub struct EtcdCatalog {
    pub etcd: Arc<Etcd>,
    pub keys: Keys,
    pub node: String,
    pub url: String,
    /// The routers' table, for a new version's part of its function's counts.
    pub routing: tokio::sync::watch::Receiver<Arc<Routing>>,
}

impl EtcdCatalog {
    fn unavailable(function: &str, e: impl std::fmt::Display) -> CatalogError {
        CatalogError::Unavailable {
            function: function.to_string(),
            reason: e.to_string(),
        }
    }

    /// The function's entry and its key's revision (linearizable), and the last version
    /// ever given to the name.
    async fn read(&self, name: &str) -> Result<(Option<(FunctionEntry, i64)>, u64), CatalogError> {
        let (fkey, vkey) = (self.keys.function(name), self.keys.version_counter(name));
        let txn = Txn::new().and_then(vec![
            TxnOp::get(fkey.clone(), None),
            TxnOp::get(vkey.clone(), None),
        ]);
        let r = self
            .etcd
            .txn(&txn)
            .await
            .map_err(|e| Self::unavailable(name, e))?;
        let mut entry = None;
        let mut counter = 0;
        for op in r.op_responses() {
            if let etcd_client::TxnOpResponse::Get(g) = op {
                for kv in g.kvs() {
                    if kv.key() == fkey.as_bytes() {
                        let e: FunctionEntry = serde_json::from_slice(kv.value())
                            .map_err(|e| Self::unavailable(name, format!("{fkey}: {e}")))?;
                        entry = Some((e, kv.mod_revision()));
                    } else if kv.key() == vkey.as_bytes() {
                        counter = kv
                            .value_str()
                            .ok()
                            .and_then(|v| v.parse().ok())
                            .unwrap_or(0);
                    }
                }
            }
        }
        Ok((entry, counter))
    }
}

impl Catalog for EtcdCatalog {
    fn prepare<'a>(
        &'a self,
        name: &'a str,
        wasm_sha256: &'a str,
        manifest: &'a str,
    ) -> BoxFuture<'a, Result<Prepared, CatalogError>> {
        Box::pin(async move {
            let (entry, counter) = self.read(name).await?;
            Ok(match entry {
                Some((e, _)) if e.wasm_sha256 == wasm_sha256 && e.manifest == manifest => {
                    Prepared::Adopt {
                        version: e.version,
                        deployed_at_unix: e.deployed_at_unix,
                    }
                }
                Some((e, revision)) => Prepared::New {
                    version: e.version.max(counter) + 1,
                    revision,
                },
                None => Prepared::New {
                    version: counter + 1,
                    revision: 0,
                },
            })
        })
    }

    fn commit<'a>(
        &'a self,
        c: Commit<'a>,
        revision: i64,
    ) -> BoxFuture<'a, Result<(), CatalogError>> {
        Box::pin(async move {
            let entry = FunctionEntry {
                version: c.version,
                manifest_file: c.manifest_file.to_string(),
                manifest: c.manifest.to_string(),
                wasm_sha256: c.wasm_sha256.to_string(),
                deployed_at_unix: c.deployed_at_unix,
                origin: self.node.clone(),
                origin_url: self.url.clone(),
            };
            let fkey = self.keys.function(c.name);
            let txn = Txn::new()
                .when(vec![Compare::mod_revision(
                    fkey.clone(),
                    CompareOp::Equal,
                    revision,
                )])
                .and_then(vec![
                    TxnOp::put(
                        fkey,
                        serde_json::to_vec(&entry).expect("serializable"),
                        None,
                    ),
                    TxnOp::put(
                        self.keys.version_counter(c.name),
                        c.version.to_string(),
                        None,
                    ),
                ]);
            let r = self
                .etcd
                .txn(&txn)
                .await
                .map_err(|e| Self::unavailable(c.name, e))?;
            if r.succeeded() {
                return Ok(());
            }
            // Retried on another member, our own first attempt may be what changed it; or
            // another node deployed the very same version at the same time (nodes started
            // with the same functions_dir): either way the cluster has what we have.
            match self.read(c.name).await? {
                (Some((e, _)), _)
                    if e.version == entry.version
                        && e.wasm_sha256 == entry.wasm_sha256
                        && e.manifest == entry.manifest =>
                {
                    Ok(())
                }
                _ => Err(CatalogError::Conflict {
                    function: c.name.to_string(),
                }),
            }
        })
    }

    fn remove<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), CatalogError>> {
        Box::pin(async move {
            // The function, then its settings, in one revision.
            let txn = Txn::new().and_then(vec![
                TxnOp::delete(self.keys.function(name), None),
                TxnOp::delete(
                    self.keys.settings(name),
                    Some(DeleteOptions::new().with_prefix()),
                ),
            ]);
            self.etcd
                .txn(&txn)
                .await
                .map(|_| ())
                .map_err(|e| Self::unavailable(name, e))
        })
    }

    fn share(&self, name: &str) -> (u32, u32) {
        super::shares::rank(&self.routing.borrow(), &self.node, name)
    }

    fn setting<'a>(
        &'a self,
        name: &'a str,
        kind: &'a str,
    ) -> BoxFuture<'a, Result<Setting, CatalogError>> {
        Box::pin(async move {
            let key = self.keys.setting(name, kind);
            let r = self
                .etcd
                .get(&key)
                .await
                .map_err(|e| Self::unavailable(name, e))?;
            Ok(match r.kvs().first() {
                Some(kv) => Setting {
                    value: Some(kv.value().to_vec()),
                    revision: kv.mod_revision(),
                },
                None => Setting::default(),
            })
        })
    }

    fn put_setting<'a>(
        &'a self,
        name: &'a str,
        kind: &'a str,
        value: Option<Vec<u8>>,
        revision: i64,
    ) -> BoxFuture<'a, Result<SettingPut, CatalogError>> {
        Box::pin(async move {
            let (fkey, key) = (self.keys.function(name), self.keys.setting(name, kind));
            let write = match value {
                Some(v) => TxnOp::put(key.clone(), v, None),
                None => TxnOp::delete(key.clone(), None),
            };
            // Fenced twice: the setting is as it was read, and the function is still the
            // cluster's (a setting never outlives its function).
            let txn = Txn::new()
                .when(vec![
                    Compare::mod_revision(key, CompareOp::Equal, revision),
                    Compare::create_revision(fkey.clone(), CompareOp::Greater, 0),
                ])
                .and_then(vec![write])
                .or_else(vec![TxnOp::get(fkey, None)]);
            let r = self
                .etcd
                .txn(&txn)
                .await
                .map_err(|e| Self::unavailable(name, e))?;
            if r.succeeded() {
                return Ok(SettingPut::Done);
            }
            let shared = r
                .op_responses()
                .iter()
                .any(|op| matches!(op, etcd_client::TxnOpResponse::Get(g) if !g.kvs().is_empty()));
            // Retried on another member, our own first attempt may be what changed it: the
            // caller reads again and writes the same, which is harmless.
            Ok(if shared {
                SettingPut::Raced
            } else {
                SettingPut::NotShared
            })
        })
    }
}

/// Apply the catalog to this node for as long as it runs.
pub async fn follow(c: Arc<Cluster>, queue: Arc<Queue>) {
    let prefix = c.keys.functions();
    // The history since our revision was compacted away: read it whole, and remove here
    // what the cluster no longer has.
    let mut resync = false;
    loop {
        let mut rev = c.registry.cluster_revision().unwrap_or(0);
        if rev == 0 || resync {
            match sync_whole(&c, &queue, &prefix, resync || rev > 0).await {
                Ok(r) => {
                    rev = r;
                    resync = false;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "cluster catalog: reading it whole");
                    tokio::time::sleep(RETRY_FAILED).await;
                    continue;
                }
            }
        }
        let mut stream = match c.etcd.watch_from(&prefix, rev + 1).await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(error = %e, "cluster catalog: watch");
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        loop {
            let msg = match stream.message().await {
                Ok(Some(m)) => m,
                Ok(None) | Err(_) => break,
            };
            if msg.compact_revision() > 0 {
                tracing::warn!(
                    compacted = msg.compact_revision(),
                    "cluster catalog: etcd compacted the history this node had not seen; reading it whole"
                );
                resync = true;
                break;
            }
            if msg.canceled() {
                break;
            }
            let mut failed = false;
            let events = msg.events();
            for (i, ev) in events.iter().enumerate() {
                let Some(kv) = ev.kv() else { continue };
                let Some(key) = kv.key_str().ok().and_then(|k| c.keys.parse_function(k)) else {
                    continue;
                };
                let value = (ev.event_type() == EventType::Put).then(|| kv.value());
                let applied = match key {
                    CatalogKey::Function(name) => apply_function(&c, name, value).await,
                    CatalogKey::Setting { function, kind } => {
                        apply_setting(&c, &queue, function, kind, value).await
                    }
                };
                if !applied {
                    failed = true;
                    break;
                }
                // Saved once every event of its revision took effect (a removal deletes the
                // function and its settings in one): a retry resumes at the whole revision.
                let rev = kv.mod_revision();
                let next = events
                    .get(i + 1)
                    .and_then(|e| e.kv())
                    .map(|kv| kv.mod_revision());
                if next != Some(rev) {
                    if let Err(e) = c.registry.set_cluster_revision(rev) {
                        tracing::error!(error = %e, "cluster catalog: saving the revision");
                    }
                }
            }
            if failed {
                tokio::time::sleep(RETRY_FAILED).await;
                break;
            }
        }
        c.etcd.watch_broke();
        tokio::time::sleep(RETRY).await;
    }
}

/// One function's entry put (Some) or deleted. false: not applied (logged), to retry.
async fn apply_function(c: &Arc<Cluster>, name: &str, value: Option<&[u8]>) -> bool {
    let Some(value) = value else {
        c.catalog_name(name, false);
        return match c.registry.remove_replica(name).await {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(function = name, error = %e, "cluster catalog: removing");
                false
            }
        };
    };
    match serde_json::from_slice::<FunctionEntry>(value) {
        Ok(e) => {
            c.catalog_name(name, true);
            apply(c, name, &e).await
        }
        Err(e) => {
            // Nothing to retry: no node can apply it.
            tracing::error!(function = name, error = %e, "cluster catalog: bad entry");
            true
        }
    }
}

/// One function's setting put (Some) or deleted, applied here. false: not applied
/// (logged), to retry.
async fn apply_setting(
    c: &Arc<Cluster>,
    queue: &Arc<Queue>,
    function: &str,
    kind: &str,
    value: Option<&[u8]>,
) -> bool {
    let done = match kind {
        CONCURRENCY => {
            let Some(v) = decode(function, kind, value) else {
                return true;
            };
            let v = v.unwrap_or_default();
            c.registry
                .apply_concurrency(function, &v)
                .await
                .map_err(|e| e.to_string())
        }
        EVENT_INVOKE_CONFIG => {
            let Some(v) = decode(function, kind, value) else {
                return true;
            };
            queue
                .apply_config(function, v.flatten())
                .await
                .map_err(|e| e.to_string())
        }
        other => {
            tracing::warn!(
                function,
                setting = other,
                "cluster catalog: a setting this node does not know; ignored"
            );
            Ok(())
        }
    };
    if let Err(e) = &done {
        tracing::error!(function, setting = kind, error = %e, "cluster catalog: applying a setting");
    }
    done.is_ok()
}

/// A setting's value (None inside: deleted); None: it cannot be read, by any node (logged,
/// and passed over: nothing to retry).
fn decode<T: serde::de::DeserializeOwned>(
    function: &str,
    kind: &str,
    value: Option<&[u8]>,
) -> Option<Option<T>> {
    match value.map(serde_json::from_slice).transpose() {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::error!(function, setting = kind, error = %e, "cluster catalog: bad setting");
            None
        }
    }
}

/// The settings a node applies; those the cluster does not hold are unset.
const SETTINGS: [&str; 2] = [CONCURRENCY, EVENT_INVOKE_CONFIG];

/// Read the catalog whole and apply it; `prune`: remove here what it does not hold, and
/// unset the settings it does not hold. Returns the revision it reflects.
async fn sync_whole(
    c: &Arc<Cluster>,
    queue: &Arc<Queue>,
    prefix: &str,
    prune: bool,
) -> anyhow::Result<i64> {
    let resp = c.etcd.get_prefix(prefix, false).await?;
    let revision = resp.header().map_or(0, |h| h.revision());
    let mut names = Vec::new();
    let mut settings = Vec::new();
    let mut failed = Vec::new();
    // In key order: a function's entry before its settings.
    for kv in resp.kvs() {
        let Some(key) = kv.key_str().ok().and_then(|k| c.keys.parse_function(k)) else {
            continue;
        };
        let (name, applied) = match key {
            CatalogKey::Function(name) => {
                names.push(name.to_string());
                match serde_json::from_slice::<FunctionEntry>(kv.value()) {
                    Ok(e) => (name, apply(c, name, &e).await),
                    Err(e) => {
                        tracing::error!(function = name, error = %e, "cluster catalog: bad entry");
                        (name, true)
                    }
                }
            }
            CatalogKey::Setting { function, kind } => {
                settings.push((function.to_string(), kind.to_string()));
                let applied = apply_setting(c, queue, function, kind, Some(kv.value())).await;
                (function, applied)
            }
        };
        if !applied {
            failed.push(name.to_string());
        }
    }
    if prune {
        // Settings of functions gone from the cluster (the function itself is removed
        // below; its asynchronous config is the queue's).
        for name in queue.configured() {
            if !names.contains(&name)
                && !apply_setting(c, queue, &name, EVENT_INVOKE_CONFIG, None).await
            {
                failed.push(name);
            }
        }
        for name in &names {
            for kind in SETTINGS {
                if !settings.iter().any(|(f, k)| f == name && k == kind)
                    && !apply_setting(c, queue, name, kind, None).await
                {
                    failed.push(name.clone());
                }
            }
        }
        for f in c.registry.stored_all()? {
            if !names.contains(&f.name) {
                if let Err(e) = c.registry.remove_replica(&f.name).await {
                    tracing::error!(function = %f.name, error = %e, "cluster catalog: removing");
                }
            }
        }
    }
    c.set_catalog_names(names);
    if !failed.is_empty() {
        anyhow::bail!("not applied here: {}", failed.join(", "));
    }
    c.registry.set_cluster_revision(revision)?;
    Ok(revision)
}

/// Make `e` the live version of `name` here. false: it could not be (logged); the caller
/// does not move past it.
async fn apply(c: &Arc<Cluster>, name: &str, e: &FunctionEntry) -> bool {
    if let Some(v) = c.registry.version_of(name) {
        let d = &v.deployment;
        // Already here; or older than what is (a deploy through this node committed a
        // later version while this event waited): versions only grow cluster-wide.
        if (d.version == e.version && d.wasm_sha256 == e.wasm_sha256) || d.version > e.version {
            return true;
        }
    }
    let began = tokio::time::Instant::now();
    let wasm = loop {
        if let Some(w) = c.registry.read_blob(&e.wasm_sha256) {
            break w;
        }
        match fetch_blob(c, e).await {
            Ok(w) => break w,
            Err(err) if began.elapsed() < BLOB_PATIENCE => {
                tracing::debug!(function = name, error = %err, "cluster catalog: blob");
                tokio::time::sleep(RETRY).await;
            }
            Err(err) => {
                tracing::error!(function = name, version = e.version, error = %err,
                    "cluster catalog: no node gave this version's blob; it is not deployed here");
                return false;
            }
        }
    };
    match c
        .registry
        .deploy_replica(
            &e.manifest_file,
            &e.manifest,
            wasm,
            e.version,
            e.deployed_at_unix,
        )
        .await
    {
        Ok(_) => {
            tracing::info!(function = name, version = e.version, origin = %e.origin, "cluster: deployed");
            true
        }
        Err(err) => {
            tracing::error!(function = name, version = e.version, error = %err,
                "cluster catalog: this node cannot deploy the cluster's version");
            false
        }
    }
}

/// The blob of `e`, from the node it was deployed through, else from any member.
async fn fetch_blob(c: &Cluster, e: &FunctionEntry) -> Result<Vec<u8>, String> {
    let mut urls = vec![e.origin_url.clone()];
    urls.extend(
        c.routing()
            .nodes
            .iter()
            .filter(|n| n.node != c.node && n.url != e.origin_url)
            .map(|n| n.url.clone()),
    );
    let mut errors = Vec::new();
    for url in urls {
        match fetch_from(c, &url, &e.wasm_sha256).await {
            Ok(w) => return Ok(w),
            Err(err) => errors.push(format!("{url}: {err}")),
        }
    }
    Err(errors.join("; "))
}

async fn fetch_from(c: &Cluster, url: &str, sha: &str) -> Result<Vec<u8>, String> {
    let req = hyper::Request::get(format!("{url}/admin/v1/blobs/{sha}"))
        .header("authorization", format!("Bearer {}", c.token))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .map_err(|e| e.to_string())?;
    let resp = tokio::time::timeout(Duration::from_secs(10), c.http.request(req))
        .await
        .map_err(|_| "no answer in 10s".to_string())?
        .map_err(|e| e.to_string())?;
    if !resp.status().is_success() {
        return Err(format!("status {}", resp.status()));
    }
    let limit = c.registry.config.max_admin_body.0 as usize;
    let body = http_body_util::Limited::new(resp.into_body(), limit)
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    if surge_runtime::artifact::sha256_hex(&body) != sha {
        return Err("the blob does not match its hash".into());
    }
    Ok(body.to_vec())
}
