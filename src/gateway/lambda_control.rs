//! The Lambda control plane's reads, with Lambda's shapes, so that `aws lambda
//! list-functions`, `get-function` and boto3's paginators work against surge (the writes
//! are `lambda_deploy.rs`; both need the control plane's credentials, `sigv4.rs`):
//!
//! - `ListFunctions`: `GET /2015-03-31/functions/`, in name order, paged by `Marker` (the
//!   last name of the previous page) and `MaxItems` (1..=10000, default 50), with
//!   `NextMarker` while more remain;
//! - `GetFunction`: `GET /2015-03-31/functions/{name}`: `{"Configuration": …}`;
//! - `GetFunctionConfiguration`: `GET /2015-03-31/functions/{name}/configuration`.
//!
//! `name` may be a plain name, `name:qualifier` or a function ARN. Each function is its
//! live version, reported as `$LATEST` with surge's version number beside it.

use std::sync::Arc;

use base64::Engine;
use hyper::{Response, StatusCode};
use serde_json::{json, Value};

use super::context::Gateway;
use super::errors::{ApiError, HttpResponse};
use super::operations::Op;
use crate::aws::{function_arn, function_name, last_modified};
use crate::control::version::VersionControl;
use crate::dispatch::stream::ReplyBody;
use crate::manifest::FunctionSpec;
use surge_runtime::Kind;

const MAX_ITEMS: usize = 10_000;
const DEFAULT_ITEMS: usize = 50;

/// Lambda's `FunctionConfiguration` of a live version, with the state of any update of it
/// under way or failed.
pub fn configuration(gw: &Gateway, v: &VersionControl) -> Value {
    let d = &v.deployment;
    let mut c = spec_configuration(
        &d.spec,
        Some(d.kind),
        &d.wasm_sha256,
        gw.registry.code_size(&d.wasm_sha256).unwrap_or(0),
        d.version,
        d.deployed_at_unix,
    );
    match gw.lambda_ops.get(d.name()) {
        Some(Op::Updating) => c["LastUpdateStatus"] = json!("InProgress"),
        Some(Op::UpdateFailed { reason }) => {
            c["LastUpdateStatus"] = json!("Failed");
            c["LastUpdateStatusReason"] = json!(reason);
        }
        _ => {}
    }
    c
}

/// The configuration a manifest gives, Active and up to date (the caller marks a create or
/// update under way).
pub fn spec_configuration(
    spec: &FunctionSpec,
    kind: Option<Kind>,
    sha256_hex: &str,
    code_size: u64,
    version: u64,
    deployed_at_unix: i64,
) -> Value {
    let sha = hex_bytes(sha256_hex);
    let runtime = spec
        .lambda
        .runtime
        .clone()
        .unwrap_or_else(|| format!("surge-wasm-{}", kind.map(Kind::as_str).unwrap_or("auto")));
    json!({
        "FunctionName": spec.name.as_str(),
        "FunctionArn": function_arn(spec.name.as_str()),
        "Runtime": runtime,
        "Role": spec.lambda.role.clone().unwrap_or_default(),
        "Handler": spec.handler,
        "CodeSize": code_size,
        "CodeSha256": base64::engine::general_purpose::STANDARD.encode(sha),
        "Description": spec.lambda.description.clone().unwrap_or_default(),
        "Timeout": spec.limits.timeout.0.as_secs().max(1),
        "MemorySize": spec.limits.memory.0 >> 20,
        "LastModified": last_modified(deployed_at_unix),
        "Version": "$LATEST",
        "Environment": { "Variables": spec.env },
        "State": "Active",
        "LastUpdateStatus": "Successful",
        "PackageType": "Zip",
        "Architectures": ["x86_64"],
        // Changes whenever the live version does.
        "RevisionId": revision_id(sha256_hex, version),
        "SurgeVersion": version,
    })
}

/// A function ListFunctions shows: live, or only created (still deploying, or failed).
enum Listed<'a> {
    Live(&'a Arc<VersionControl>),
    Created(Op),
}

/// The configuration of a function a CreateFunction is deploying (`Pending`) or failed to
/// deploy (`Failed`, with the deploy's error as `StateReason`).
fn created_configuration(op: Op) -> Value {
    match op {
        Op::Creating { config } => config,
        Op::CreateFailed { mut config, reason } => {
            config["State"] = json!("Failed");
            config["StateReason"] = json!(reason);
            config["StateReasonCode"] = json!("InvalidCode");
            config["LastUpdateStatus"] = json!("Failed");
            config["LastUpdateStatusReason"] = json!(reason);
            config
        }
        _ => Value::Null,
    }
}

fn hex_bytes(hex: &str) -> Vec<u8> {
    (0..hex.len() / 2)
        .filter_map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

fn revision_id(sha: &str, version: u64) -> String {
    let h = |i: usize| sha.get(i..i + 8).unwrap_or("00000000");
    format!(
        "{}-{}-{}-{}-{:012x}",
        h(0),
        &h(8)[..4],
        &h(12)[..4],
        &h(16)[..4],
        version
    )
}

fn ok(body: Value) -> HttpResponse {
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .body(ReplyBody::from(body.to_string()))
        .expect("valid response")
}

/// `GET` under the Lambda prefix: `rest` is the path after `/2015-03-31/functions/`.
pub fn get(gw: &Gateway, rest: &str, query: Option<&str>) -> Result<HttpResponse, ApiError> {
    if rest.is_empty() {
        return list(gw, query);
    }
    let (target, configuration_only) = match rest.strip_suffix("/configuration") {
        Some(t) => (t, true),
        None => (rest, false),
    };
    let name = function_name(target).ok_or_else(|| ApiError::FunctionNotFound(rest.into()))?;
    let c = match gw.registry.version_of(name) {
        Some(v) => configuration(gw, &v),
        None => match gw.lambda_ops.get(name) {
            Some(op @ (Op::Creating { .. } | Op::CreateFailed { .. })) => created_configuration(op),
            _ => return Err(ApiError::FunctionNotFound(function_arn(name))),
        },
    };
    Ok(ok(if configuration_only {
        c
    } else {
        json!({ "Configuration": c })
    }))
}

fn list(gw: &Gateway, query: Option<&str>) -> Result<HttpResponse, ApiError> {
    let mut marker = None;
    let mut max = DEFAULT_ITEMS;
    for (k, v) in query
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
    {
        match k {
            "Marker" => marker = Some(percent_decode(v)),
            "MaxItems" => {
                max = v
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_ITEMS).contains(n))
                    .ok_or_else(|| {
                        ApiError::BadRequest(format!(
                            "MaxItems {v:?} must be a whole number from 1 to {MAX_ITEMS}"
                        ))
                    })?
            }
            _ => {}
        }
    }
    // The live functions, and those a CreateFunction is still deploying (or failed to), as
    // Lambda lists a Pending or Failed function too.
    let versions = gw.registry.watch_versions().borrow().clone();
    let mut all: Vec<(String, Listed<'_>)> = versions
        .iter()
        .map(|v| (v.deployment.name().to_string(), Listed::Live(v)))
        .collect();
    for (name, op) in gw.lambda_ops.creates() {
        if !all.iter().any(|(n, _)| *n == name) {
            all.push((name, Listed::Created(op)));
        }
    }
    all.sort_by(|a, b| a.0.cmp(&b.0));
    let start = match &marker {
        Some(m) => all.partition_point(|(n, _)| n.as_str() <= m.as_str()),
        None => 0,
    };
    let page: Vec<Value> = all[start..]
        .iter()
        .take(max)
        .map(|(_, l)| match l {
            Listed::Live(v) => configuration(gw, v),
            Listed::Created(op) => created_configuration(op.clone()),
        })
        .collect();
    let mut body = json!({ "Functions": page });
    if start + max < all.len() {
        body["NextMarker"] = json!(all[start + max - 1].0);
    }
    Ok(ok(body))
}

/// A path segment's `%XX` escapes (SDKs escape the `:` of an ARN); borrowed when it has
/// none, so an Invoke by plain name allocates nothing here.
pub fn path_decode(v: &str) -> std::borrow::Cow<'_, str> {
    if v.contains('%') {
        std::borrow::Cow::Owned(decode(v, false))
    } else {
        std::borrow::Cow::Borrowed(v)
    }
}

/// `%XX` escapes and `+` of a query value.
fn percent_decode(v: &str) -> String {
    decode(v, true)
}

fn decode(v: &str, plus_is_space: bool) -> String {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (b[i], hex.map(|h| u8::from_str_radix(h, 16))) {
            (b'%', Some(Ok(c))) => {
                out.push(c);
                i += 3;
                continue;
            }
            (b'+', _) if plus_is_space => out.push(b' '),
            (c, _) => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_hashes() {
        assert_eq!(percent_decode("a%2Fb+c"), "a/b c");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(path_decode("arn%3Aaws%3Alambda+x"), "arn:aws:lambda+x");
        assert_eq!(hex_bytes("00ff10"), vec![0, 255, 16]);
    }
}
