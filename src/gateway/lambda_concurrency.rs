//! Lambda's concurrency controls, with boto3's shapes:
//!
//! - reserved concurrency: `PUT /2017-10-31/functions/{name}/concurrency`
//!   (`{"ReservedConcurrentExecutions": n}`), `GET /2019-09-30/functions/{name}/concurrency`,
//!   `DELETE /2017-10-31/functions/{name}/concurrency` (204). Over it, an invocation gets
//!   429 `TooManyRequestsException` with `Reason`
//!   `ReservedFunctionConcurrentInvocationLimitExceeded`; at 0, events go straight to their
//!   failure destination.
//! - provisioned concurrency: `PUT|GET|DELETE
//!   /2019-09-30/functions/{name}/provisioned-concurrency?Qualifier=…`. surge serves one
//!   version, so the qualifier must name it (its number) or be `$LATEST`; the setting stays
//!   with the function across versions. The pool keeps that many executions warm, and the
//!   status is `IN_PROGRESS` until they are, then `READY`.

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use serde::Deserialize;
use serde_json::json;

use super::body::read_body;
use super::context::Gateway;
use super::errors::{json as json_response, ApiError, HttpResponse, Surface};
use crate::aws::{function_arn, function_name};

pub const RESERVED_PREFIX: &str = "/2017-10-31/functions/";
pub const PREFIX: &str = "/2019-09-30/functions/";

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct Reserved {
    reserved_concurrent_executions: i64,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct Provisioned {
    provisioned_concurrent_executions: i64,
}

pub async fn handle(
    gw: &Arc<Gateway>,
    prefix: &str,
    rest: &str,
    req: Request<Incoming>,
) -> HttpResponse {
    let mut resp = call(gw, prefix, rest, req)
        .await
        .unwrap_or_else(|e| e.into_response(Surface::Lambda));
    if let Ok(v) = crate::aws::request_id().parse() {
        resp.headers_mut().insert("x-amzn-requestid", v);
    }
    resp
}

fn no_content() -> HttpResponse {
    hyper::Response::builder()
        .status(StatusCode::NO_CONTENT)
        .body(Default::default())
        .expect("valid response")
}

async fn call(
    gw: &Arc<Gateway>,
    prefix: &str,
    rest: &str,
    req: Request<Incoming>,
) -> Result<HttpResponse, ApiError> {
    super::sigv4::precheck(req.headers(), &gw.aws_keys, &gw.admin_token)?;
    let (parts, body) = req.into_parts();
    let b = read_body(body, &parts.headers, 4096, || {
        "a concurrency request".into()
    })
    .await?;
    gw.authorize_lambda(&parts, &b)?;
    let rest = super::lambda_control::path_decode(rest).into_owned();
    let (target, what) = rest
        .rsplit_once('/')
        .ok_or_else(|| ApiError::NoRoute(format!("{prefix}{rest}")))?;
    let name = function_name(target).ok_or_else(|| ApiError::FunctionNotFound(target.into()))?;
    let c = gw.registry.concurrency(name).map_err(|e| match e {
        crate::registry::DeployError::NotFound(_) => ApiError::FunctionNotFound(function_arn(name)),
        other => other.into(),
    })?;
    let method = parts.method.clone();
    match (prefix, what, &method) {
        (RESERVED_PREFIX, "concurrency", &Method::PUT) => {
            let r: Reserved = serde_json::from_slice(&b)
                .map_err(|e| ApiError::BadRequest(format!("the request body: {e}")))?;
            let n = u32::try_from(r.reserved_concurrent_executions).map_err(|_| {
                ApiError::BadRequest(format!(
                    "ReservedConcurrentExecutions {} must be 0 or more",
                    r.reserved_concurrent_executions
                ))
            })?;
            gw.registry
                .update_concurrency(name, |mut c| {
                    if let Some(p) = c.provisioned.filter(|&p| p > n) {
                        return Err(ApiError::BadRequest(format!(
                            "ReservedConcurrentExecutions {n} is below the function's \
                             provisioned concurrency of {p}"
                        )));
                    }
                    c.reserved = Some(n);
                    Ok(c)
                })
                .await?;
            Ok(json_response(
                StatusCode::OK,
                &json!({ "ReservedConcurrentExecutions": n }),
            ))
        }
        (RESERVED_PREFIX, "concurrency", &Method::DELETE) => {
            gw.registry
                .update_concurrency(name, |mut c| {
                    c.reserved = None;
                    Ok::<_, ApiError>(c)
                })
                .await?;
            Ok(no_content())
        }
        (PREFIX, "concurrency", &Method::GET) => Ok(json_response(
            StatusCode::OK,
            &match c.reserved {
                Some(n) => json!({ "ReservedConcurrentExecutions": n }),
                None => json!({}),
            },
        )),
        (PREFIX, "provisioned-concurrency", _) => {
            check_qualifier(gw, name, parts.uri.query())?;
            match method {
                Method::PUT => {
                    let p: Provisioned = serde_json::from_slice(&b)
                        .map_err(|e| ApiError::BadRequest(format!("the request body: {e}")))?;
                    let n = provisioned_in_bounds(gw, name, p.provisioned_concurrent_executions)?;
                    gw.registry
                        .update_concurrency(name, |mut c| {
                            if let Some(r) = c.reserved.filter(|&r| n > r) {
                                return Err(ApiError::BadRequest(format!(
                                    "ProvisionedConcurrentExecutions {n} is over the \
                                     function's reserved concurrency of {r}"
                                )));
                            }
                            c.provisioned = Some(n);
                            Ok(c)
                        })
                        .await?;
                    let mut r = provisioned_answer(gw, name)?;
                    *r.status_mut() = StatusCode::ACCEPTED;
                    Ok(r)
                }
                Method::GET => provisioned_answer(gw, name),
                Method::DELETE => {
                    gw.registry
                        .update_concurrency(name, |mut c| {
                            if c.provisioned.is_none() {
                                return Err(no_provisioned(name));
                            }
                            c.provisioned = None;
                            Ok(c)
                        })
                        .await?;
                    Ok(no_content())
                }
                m => Err(ApiError::MethodNotAllowed(m.to_string())),
            }
        }
        (_, "concurrency" | "provisioned-concurrency", m) => {
            Err(ApiError::MethodNotAllowed(m.to_string()))
        }
        _ => Err(ApiError::NoRoute(format!("{prefix}{rest}"))),
    }
}

/// The qualifier must name the live version, or `$LATEST`.
fn check_qualifier(gw: &Gateway, name: &str, query: Option<&str>) -> Result<(), ApiError> {
    let q = query
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == "Qualifier")
        .map(|(_, v)| super::lambda_control::path_decode(v).into_owned())
        .ok_or_else(|| ApiError::BadRequest("Qualifier is required".into()))?;
    let live = gw
        .registry
        .version_of(name)
        .map(|v| v.deployment.version.to_string())
        .unwrap_or_default();
    if q == "$LATEST" || q == live {
        Ok(())
    } else {
        Err(ApiError::NotFound(format!(
            "Function not found: {}:{q} (the live version is {live})",
            function_arn(name)
        )))
    }
}

fn provisioned_in_bounds(gw: &Gateway, name: &str, asked: i64) -> Result<u32, ApiError> {
    let n = u32::try_from(asked)
        .ok()
        .filter(|&n| n >= 1)
        .ok_or_else(|| {
            ApiError::BadRequest(format!(
                "ProvisionedConcurrentExecutions {asked} must be 1 or more"
            ))
        })?;
    let v = gw
        .registry
        .version_of(name)
        .ok_or_else(|| ApiError::FunctionNotFound(function_arn(name)))?;
    let d = &v.deployment;
    let most = crate::dispatch::executions(&d.spec, d.kind, d.spec.scaling.max_instances);
    if n > most {
        return Err(ApiError::BadRequest(format!(
            "ProvisionedConcurrentExecutions {n} is over what function {name}'s max_instances \
             = {} can run at once ({most})",
            d.spec.scaling.max_instances
        )));
    }
    Ok(n)
}

fn no_provisioned(name: &str) -> ApiError {
    ApiError::ProvisionedNotFound(format!(
        "No Provisioned Concurrency Config found for function: {}",
        function_arn(name)
    ))
}

fn provisioned_answer(gw: &Gateway, name: &str) -> Result<HttpResponse, ApiError> {
    let s = gw
        .registry
        .provisioned_status(name, |requested, per| match &gw.cluster {
            Some(c) => c.provisioned_elsewhere(name, requested, per),
            None => 0,
        })?
        .ok_or_else(|| no_provisioned(name))?;
    let mut body = json!({
        "RequestedProvisionedConcurrentExecutions": s.requested,
        "AvailableProvisionedConcurrentExecutions": s.available,
        "AllocatedProvisionedConcurrentExecutions": s.available,
        "Status": s.status.as_str(),
        "LastModified": crate::aws::last_modified(crate::aws::now_ms() / 1000),
    });
    if s.status == crate::registry::concurrency::Provisioning::Failed {
        body["StatusReason"] = json!("the node's memory cannot hold the instances it needs");
    }
    Ok(json_response(StatusCode::OK, &body))
}
