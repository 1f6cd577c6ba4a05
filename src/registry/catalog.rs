//! Where a function's versions are agreed when the node is one of a cluster. The registry
//! asks its catalog before it numbers a version and commits to it once the version is
//! proven (compiled, started, ready), before it switches the route table: a deploy the
//! cluster refuses changes nothing here. `src/cluster/` implements it on etcd; a single node
//! has none, and numbers versions from its own store.

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
}
