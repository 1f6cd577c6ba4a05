//! Where a function's versions are agreed when the node is one of a cluster. The registry
//! asks its catalog before it numbers a version and commits to it once the version is
//! proven (compiled, started, ready), before it switches the route table: a deploy the
//! cluster refuses changes nothing here. `src/cluster/` implements it on etcd; a single node
//! has none, and numbers versions from its own store.
//!
//! The settings the APIs change on a deployed function (its concurrency, its asynchronous
//! invocation config) are the cluster's too: read and written back through the catalog in
//! one transaction that compares the setting's revision, and applied on every node from
//! the same watch as its versions.

use std::future::Future;
use std::pin::Pin;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the catalog says about a deploy about to happen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Prepared {
    /// The cluster already has this function with the same manifest and blob, as this
    /// version: deploy it as that version, and commit nothing.
    Adopt { version: u64, deployed_at_unix: i64 },
    /// A new version: number it `version`, and commit it only if the function's entry is
    /// still at `revision` (0: absent).
    New { version: u64, revision: i64 },
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error(
        "function {function}: another deploy through another node changed it meanwhile; \
         the cluster keeps that one (deploy again to replace it)"
    )]
    Conflict { function: String },
    #[error("function {function}: the cluster's store (etcd) did not answer: {reason}")]
    Unavailable { function: String, reason: String },
    #[error(
        "function {function}: its {setting} kept changing through other nodes \
         ({tries} tries); try again"
    )]
    Contended {
        function: String,
        setting: String,
        tries: usize,
    },
    #[error("function {function}: the cluster holds a {setting} this node cannot read: {reason}")]
    Unreadable {
        function: String,
        setting: String,
        reason: String,
    },
}

/// A committed version's facts, for the other nodes to fetch and deploy.
#[derive(Clone, Debug)]
pub struct Commit<'a> {
    pub name: &'a str,
    pub version: u64,
    pub manifest_file: &'a str,
    pub manifest: &'a str,
    pub wasm_sha256: &'a str,
    pub deployed_at_unix: i64,
}

/// How a setting's write through the catalog went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SettingPut {
    Done,
    /// Another change came first: read it again.
    Raced,
    /// The function is not the cluster's (deployed on this node alone): the setting is
    /// this node's.
    NotShared,
}

/// A setting as the cluster holds it.
#[derive(Clone, Debug, Default)]
pub struct Setting {
    /// Its JSON (None: unset).
    pub value: Option<Vec<u8>>,
    /// Its key's revision (0: absent).
    pub revision: i64,
}

/// The settings kept cluster-wide, by the name of their key.
pub const CONCURRENCY: &str = "concurrency";
pub const EVENT_INVOKE_CONFIG: &str = "event-invoke-config";

pub trait Catalog: Send + Sync {
    fn prepare<'a>(
        &'a self,
        name: &'a str,
        wasm_sha256: &'a str,
        manifest: &'a str,
    ) -> BoxFuture<'a, Result<Prepared, CatalogError>>;

    /// Publish `c`, if its function's entry is still at `revision` (one transaction).
    fn commit<'a>(
        &'a self,
        c: Commit<'a>,
        revision: i64,
    ) -> BoxFuture<'a, Result<(), CatalogError>>;

    /// Remove a function cluster-wide (every node's watch removes it there).
    fn remove<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), CatalogError>>;

    /// A function's setting as the cluster holds it.
    fn setting<'a>(
        &'a self,
        name: &'a str,
        kind: &'a str,
    ) -> BoxFuture<'a, Result<Setting, CatalogError>>;

    /// Write it (None: delete it) if its key is still at `revision` and the function is
    /// the cluster's (one transaction).
    fn put_setting<'a>(
        &'a self,
        name: &'a str,
        kind: &'a str,
        value: Option<Vec<u8>>,
        revision: i64,
    ) -> BoxFuture<'a, Result<SettingPut, CatalogError>>;

    /// This node's rank in `name`'s order among the cluster's nodes, and their number: its
    /// part of the counts set for the whole function (`dispatch::part_of`).
    fn share(&self, name: &str) -> (u32, u32);
}
