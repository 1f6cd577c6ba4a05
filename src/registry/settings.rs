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
    /// when the function is not the cluster's (for the cluster's, absent is the default).
    /// Returns the new value, which the caller stores and applies here.
    pub async fn update_setting<T, E>(
        &self,
        name: &str,
        kind: &str,
        local: T,
        mut f: impl FnMut(T) -> Result<T, E>,
    ) -> Result<T, E>
    where
        T: Serialize + DeserializeOwned + Default,
        E: From<DeployError>,
    {
        let Some(catalog) = self.catalog.get() else {
            return f(local);
        };
        for _ in 0..TRIES {
            let held = catalog
                .setting(name, kind)
                .await
                .map_err(DeployError::from)?;
            // Absent from the cluster is unset: not this node's copy, which its watch may
            // not have cleared yet.
            let current = match &held.value {
                Some(b) => serde_json::from_slice(b).map_err(|e| {
                    DeployError::from(CatalogError::Unreadable {
                        function: name.to_string(),
                        setting: kind.to_string(),
                        reason: e.to_string(),
                    })
                })?,
                None => T::default(),
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
        Err(DeployError::from(CatalogError::Contended {
            function: name.to_string(),
            setting: kind.to_string(),
            tries: TRIES,
        })
        .into())
    }
}
