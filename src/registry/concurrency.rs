//! Lambda's concurrency controls, per function and across its versions: reserved
//! concurrency (a cap on invocations at once) and provisioned concurrency (executions kept
//! warm: a floor the autoscaler respects). Stored, then applied to the live version; a new
//! version starts with them.

use super::catalog::CONCURRENCY;
use super::store::Concurrency;
use super::{DeployError, Registry};
use crate::control::version::VersionControl;

/// Provisioned concurrency's state, as Lambda reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Provisioning {
    /// Not all of it warm yet.
    InProgress,
    Ready,
    /// The node cannot hold the pool it needs.
    Failed,
}

impl Provisioning {
    pub fn as_str(self) -> &'static str {
        match self {
            Provisioning::InProgress => "IN_PROGRESS",
            Provisioning::Ready => "READY",
            Provisioning::Failed => "FAILED",
        }
    }
}

/// Provisioned concurrency of a function: requested, warm now, and its state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProvisionedStatus {
    pub requested: u32,
    /// Executions the ready instances hold, at most `requested`.
    pub available: u32,
    pub status: Provisioning,
}

impl Registry {
    /// The controls set for `name`; NotFound if it is not deployed.
    pub fn concurrency(&self, name: &str) -> Result<Concurrency, DeployError> {
        self.version_of(name)
            .ok_or_else(|| DeployError::NotFound(name.to_string()))?;
        Ok(tokio::task::block_in_place(|| {
            self.store.concurrency(name)
        })?)
    }

    /// Change `name`'s controls by `f` (which sees the stored ones and may refuse), store
    /// the result and apply it to the live version: read, check and write under the
    /// transitions lock, so two changes never overwrite each other, nor meet a deploy.
    ///
    /// In a cluster the controls are the cluster's (`settings.rs`): `f` sees the cluster's,
    /// and every node applies the result.
    pub async fn update_concurrency<E: From<DeployError>>(
        &self,
        name: &str,
        f: impl FnMut(Concurrency) -> Result<Concurrency, E>,
    ) -> Result<Concurrency, E> {
        let _t = self.transitions.lock().await;
        let v = self
            .version_of(name)
            .ok_or_else(|| DeployError::NotFound(name.to_string()))?;
        let current = tokio::task::block_in_place(|| self.store.concurrency(name))
            .map_err(DeployError::from)?;
        let c = self.update_setting(name, CONCURRENCY, current, f).await?;
        self.keep_concurrency(&v, &c)?;
        Ok(c)
    }

    /// The cluster changed `name`'s controls (through another node, or this one): store and
    /// apply them here. Nothing to do for a function not deployed here.
    pub async fn apply_concurrency(&self, name: &str, c: &Concurrency) -> Result<(), DeployError> {
        let _t = self.transitions.lock().await;
        match self.version_of(name) {
            Some(v) => self.keep_concurrency(&v, c),
            None => Ok(()),
        }
    }

    fn keep_concurrency(&self, v: &VersionControl, c: &Concurrency) -> Result<(), DeployError> {
        tokio::task::block_in_place(|| self.store.put_concurrency(v.deployment.name(), c))?;
        let d = &v.deployment;
        d.set_reserved(c.reserved);
        d.set_provisioned(c.provisioned.unwrap_or(0));
        Ok(())
    }

    /// Provisioned concurrency's state for `name`, if any is set. In a cluster each node
    /// keeps its part warm (`Deployment::provisioned`); `elsewhere(requested, per instance)`
    /// counts the executions the other nodes hold warm of theirs (0 alone).
    pub fn provisioned_status(
        &self,
        name: &str,
        elsewhere: impl Fn(u32, u32) -> u32,
    ) -> Result<Option<ProvisionedStatus>, DeployError> {
        let Some(requested) = self.concurrency(name)?.provisioned else {
            return Ok(None);
        };
        let v = self
            .version_of(name)
            .ok_or_else(|| DeployError::NotFound(name.to_string()))?;
        let d = &v.deployment;
        let warm = crate::dispatch::executions(&d.spec, d.kind, d.ready());
        let per = crate::dispatch::per_instance(&d.spec, d.kind);
        let here = warm.min(d.provisioned());
        let available = here
            .saturating_add(elsewhere(requested, per))
            .min(requested);
        let limited = v
            .vertical
            .counters
            .capacity_limited
            .load(std::sync::atomic::Ordering::Relaxed);
        let status = if available >= requested {
            Provisioning::Ready
        } else if limited && here < d.provisioned() {
            Provisioning::Failed
        } else {
            Provisioning::InProgress
        };
        Ok(Some(ProvisionedStatus {
            requested,
            available,
            status,
        }))
    }
}
