//! The settings the APIs change on a deployed function, kept cluster-wide: in a cluster a
//! change through any node is read from the catalog, changed, and written back in one
//! transaction that compares the setting's revision (another node's change in between:
//! read again), and every node applies it from the catalog's watch. A single node, or a
//! function deployed on this node alone, keeps its settings here.

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::catalog::{CatalogError, SettingPut};
use super::{DeployError, Registry};

/// Rounds of read, change, write before a change that keeps losing to others gives up.
const TRIES: usize = 5;

impl Registry {
    /// Change `name`'s setting `kind` by `f`. `local` is this node's copy: what `f` changes
    /// when the setting is not the cluster's, or the cluster has none yet. Returns the new
    /// value, which the caller stores and applies here.
    pub async fn update_setting<T, E>(
        &self,
        name: &str,
        kind: &str,
        local: T,
        mut f: impl FnMut(T) -> Result<T, E>,
    ) -> Result<T, E>
    where
        T: Serialize + DeserializeOwned + Clone,
        E: From<DeployError>,
    {
        let Some(catalog) = self.catalog.get() else {
            return f(local);
        };
        let unavailable = |reason: String| {
            DeployError::from(CatalogError::Unavailable {
                function: name.to_string(),
                reason,
            })
        };
        for _ in 0..TRIES {
            let held = catalog
                .setting(name, kind)
                .await
                .map_err(DeployError::from)?;
            let current = match &held.value {
                Some(b) => serde_json::from_slice(b)
                    .map_err(|e| unavailable(format!("its {kind} in the cluster: {e}")))?,
                None => local.clone(),
            };
            let next = f(current)?;
            let bytes = serde_json::to_vec(&next).expect("serializable");
            let value = (bytes != b"null").then_some(bytes);
            match catalog
                .put_setting(name, kind, value, held.revision)
                .await
                .map_err(DeployError::from)?
            {
                SettingPut::Done => return Ok(next),
                SettingPut::Raced => continue,
                SettingPut::NotShared => return f(local),
            }
        }
        Err(unavailable(format!(
            "its {kind} kept changing through other nodes ({TRIES} tries); try again"
        ))
        .into())
    }
}
