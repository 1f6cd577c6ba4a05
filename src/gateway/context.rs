//! What every handler of the gateway shares: the registry, the admin token and the metrics,
//! and the one path every invocation takes to a deployment.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::Request;

use super::errors::ApiError;
use crate::dispatch::{Deployment, DispatchError, Reply};
use crate::metrics::Metrics;
use crate::registry::Registry;

pub struct Gateway {
    pub registry: Arc<Registry>,
    pub admin_token: String,
    pub metrics: Metrics,
}

/// Send a request to a deployment, recording metrics: every invocation, synchronous or
/// not, on any surface, goes through here.
pub async fn invoke(
    gw: &Gateway,
    d: &Deployment,
    req: Request<Full<Bytes>>,
) -> Result<Reply, ApiError> {
    let started = tokio::time::Instant::now();
    let r = d.call(req).await;
    let outcome = match &r {
        Ok(reply) => reply.outcome.as_str(),
        Err(DispatchError::Timeout { .. }) => "timeout",
        Err(_) => "rejected",
    };
    gw.metrics
        .requests
        .with_label_values(&[d.name(), outcome])
        .inc();
    gw.metrics
        .duration
        .with_label_values(&[d.name()])
        .observe(started.elapsed().as_secs_f64());
    Ok(r?)
}
