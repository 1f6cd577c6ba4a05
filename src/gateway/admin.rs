//! The admin API under `/admin/v1/`, behind `Authorization: Bearer <token>`.
//!
//! Parse, then act: [`parse`] turns method and path into an [`Action`] without touching any
//! state, so it is unit-tested without a server; only then does [`handle`] act.

use base64::Engine as _;
use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use serde::{Deserialize, Serialize};

use super::body::read_body;
use super::context::Gateway;
use super::errors::{json, ApiError, HttpResponse};
use crate::control::node::NodeStatus;
use crate::events::store::Letter;
use crate::events::FunctionQueue;
use crate::registry::resize::ResizeRequest;
use crate::registry::status::FunctionInfo;

/// What a deploy request carries: the manifest text (and the path it came from, for
/// messages) and the handler, base64.
#[derive(Debug, Serialize, Deserialize)]
pub struct DeployRequest {
    pub manifest_file: String,
    pub manifest: String,
    pub wasm_base64: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct StatusReport {
    pub version: String,
    pub cgroups: String,
    /// The node's capacity, and what the sandboxes hold and ask for.
    pub node: NodeStatus,
    pub functions: Vec<FunctionInfo>,
    /// Every function's asynchronous queue.
    #[serde(default)]
    pub queues: Vec<FunctionQueue>,
}

/// One entry of the dead-letter store, as `surge dlq` shows it.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    pub id: i64,
    pub request_id: String,
    pub condition: String,
    pub approximate_invoke_count: u32,
    /// The ARN it was addressed to; empty: the function had no destination for it.
    pub destination: String,
    pub timestamp: String,
    /// The destination record, in Lambda's shape.
    pub record: serde_json::Value,
}

impl From<Letter> for DeadLetter {
    fn from(l: Letter) -> Self {
        DeadLetter {
            id: l.id,
            request_id: l.request_id,
            condition: l.condition,
            approximate_invoke_count: l.attempts,
            destination: l.destination,
            timestamp: crate::aws::timestamp(l.at_ms),
            record: serde_json::from_str(&l.record).unwrap_or(serde_json::Value::Null),
        }
    }
}

/// A page of the dead-letter store: `next` is the `after` of the next page, if any.
#[derive(Debug, Serialize, Deserialize)]
pub struct DeadLetterPage {
    pub entries: Vec<DeadLetter>,
    pub next: Option<i64>,
}

/// The most entries one page holds.
const DLQ_PAGE_MAX: usize = 1000;

#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    Deploy,
    List,
    Remove(String),
    Resize(String),
    Status,
    /// The dead-letter store of a function: list a page, show one, replay, purge.
    DlqList(String),
    DlqShow(String, i64),
    DlqReplay(String),
    DlqPurge(String),
}

pub fn parse(method: &Method, path: &str) -> Result<Action, ApiError> {
    let rest = path
        .strip_prefix("/admin/v1/")
        .ok_or_else(|| ApiError::NoRoute(path.to_string()))?
        .trim_end_matches('/');
    let segments: Vec<&str> = rest.split('/').collect();
    match (method, segments.as_slice()) {
        (&Method::POST, ["functions"]) => Ok(Action::Deploy),
        (&Method::GET, ["functions"]) => Ok(Action::List),
        (&Method::DELETE, ["functions", name]) if !name.is_empty() => {
            Ok(Action::Remove(name.to_string()))
        }
        (&Method::POST, ["functions", name, "resize"]) if !name.is_empty() => {
            Ok(Action::Resize(name.to_string()))
        }
        (&Method::GET, ["status"]) => Ok(Action::Status),
        (&Method::GET, ["functions", name, "dlq"]) if !name.is_empty() => {
            Ok(Action::DlqList(name.to_string()))
        }
        (&Method::DELETE, ["functions", name, "dlq"]) if !name.is_empty() => {
            Ok(Action::DlqPurge(name.to_string()))
        }
        (&Method::POST, ["functions", name, "dlq", "replay"]) if !name.is_empty() => {
            Ok(Action::DlqReplay(name.to_string()))
        }
        (&Method::GET, ["functions", name, "dlq", id]) if !name.is_empty() => id
            .parse()
            .map(|id| Action::DlqShow(name.to_string(), id))
            .map_err(|_| ApiError::BadRequest(format!("dead-letter id {id:?} is not a number"))),
        (m, ["functions"])
        | (m, ["functions", _])
        | (m, ["functions", _, "resize"])
        | (m, ["functions", _, "dlq"])
        | (m, ["functions", _, "dlq", _])
        | (m, ["status"]) => Err(ApiError::MethodNotAllowed(m.to_string())),
        _ => Err(ApiError::NoRoute(path.to_string())),
    }
}

/// What a replay names: one entry, or (none) all of the function's.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    pub id: Option<i64>,
}

fn query_pairs(q: Option<&str>) -> Vec<(String, String)> {
    q.unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub use super::sigv4::token_matches;

pub async fn handle(gw: &Gateway, req: Request<Incoming>) -> Result<HttpResponse, ApiError> {
    let auth = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok());
    if !token_matches(auth, &gw.admin_token) {
        return Err(ApiError::Unauthorized);
    }
    let action = parse(req.method(), req.uri().path())?;
    match action {
        Action::List => Ok(json(StatusCode::OK, &gw.registry.list())),
        Action::Status => Ok(json(
            StatusCode::OK,
            &StatusReport {
                version: env!("CARGO_PKG_VERSION").to_string(),
                cgroups: gw.registry.cgroup_description(),
                node: gw.registry.node_status(),
                functions: gw.registry.list(),
                queues: gw.queue.stats(),
            },
        )),
        Action::DlqList(name) => {
            let q = query_pairs(req.uri().query());
            let number = |k: &str| -> Result<Option<i64>, ApiError> {
                q.iter()
                    .find(|(key, _)| key == k)
                    .map(|(_, v)| {
                        v.parse::<i64>()
                            .map_err(|_| ApiError::BadRequest(format!("{k}={v:?} is not a number")))
                    })
                    .transpose()
            };
            let after = number("after")?.unwrap_or(0);
            let limit = number("limit")?
                .unwrap_or(DLQ_PAGE_MAX as i64)
                .clamp(1, DLQ_PAGE_MAX as i64) as usize;
            let letters = gw.queue.letters(&name, after, limit)?;
            let next = (letters.len() == limit)
                .then(|| letters.last().map(|l| l.id))
                .flatten();
            let entries = letters.into_iter().map(DeadLetter::from).collect();
            Ok(json(StatusCode::OK, &DeadLetterPage { entries, next }))
        }
        Action::DlqShow(name, id) => {
            let found = gw
                .queue
                .letters(&name, id - 1, 1)?
                .into_iter()
                .find(|l| l.id == id)
                .ok_or_else(|| {
                    ApiError::NotFound(format!("function {name} has no dead letter {id}"))
                })?;
            Ok(json(StatusCode::OK, &DeadLetter::from(found)))
        }
        Action::DlqReplay(name) => {
            let (parts, body) = req.into_parts();
            let body = read_body(body, &parts.headers, 64 << 10, || "the admin API".into()).await?;
            let r: ReplayRequest = if body.is_empty() {
                ReplayRequest::default()
            } else {
                serde_json::from_slice(&body)
                    .map_err(|e| ApiError::BadRequest(format!("replay request: {e}")))?
            };
            let n = gw.queue.replay(&name, r.id).await?;
            if n == 0 {
                if let Some(id) = r.id {
                    return Err(ApiError::NotFound(format!(
                        "function {name} has no dead letter {id}"
                    )));
                }
            }
            Ok(json(StatusCode::OK, &serde_json::json!({ "replayed": n })))
        }
        Action::DlqPurge(name) => {
            let n = gw.queue.purge(&name).await?;
            Ok(json(StatusCode::OK, &serde_json::json!({ "purged": n })))
        }
        Action::Remove(name) => {
            gw.registry.remove(&name).await?;
            Ok(json(
                StatusCode::OK,
                &serde_json::json!({ "removed": name }),
            ))
        }
        Action::Resize(name) => {
            let (parts, body) = req.into_parts();
            let body = read_body(body, &parts.headers, 64 << 10, || "the admin API".into()).await?;
            let r: ResizeRequest = serde_json::from_slice(&body)
                .map_err(|e| ApiError::BadRequest(format!("resize request: {e}")))?;
            let (info, applied) = gw.registry.resize(&name, &r).await?;
            // 202: accepted and pinned, but the sandbox (starting, or stopping at zero) has
            // not taken it yet; it will.
            let status = if applied {
                StatusCode::OK
            } else {
                StatusCode::ACCEPTED
            };
            Ok(json(status, &info))
        }
        Action::Deploy => {
            let (parts, body) = req.into_parts();
            let limit = gw.registry.config.max_admin_body.0;
            let body = read_body(body, &parts.headers, limit, || "the admin API".into()).await?;
            let dr: DeployRequest = serde_json::from_slice(&body)
                .map_err(|e| ApiError::BadRequest(format!("deploy request: {e}")))?;
            let wasm = base64::engine::general_purpose::STANDARD
                .decode(dr.wasm_base64.as_bytes())
                .map_err(|e| ApiError::BadRequest(format!("deploy request: wasm_base64: {e}")))?;
            let info = gw
                .registry
                .deploy(&dr.manifest_file, &dr.manifest, wasm)
                .await?;
            Ok(json(StatusCode::OK, &info))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_admin_paths() {
        assert_eq!(
            parse(&Method::POST, "/admin/v1/functions").unwrap(),
            Action::Deploy
        );
        assert_eq!(
            parse(&Method::GET, "/admin/v1/functions/").unwrap(),
            Action::List
        );
        assert_eq!(
            parse(&Method::DELETE, "/admin/v1/functions/echo").unwrap(),
            Action::Remove("echo".into())
        );
        assert_eq!(
            parse(&Method::GET, "/admin/v1/status").unwrap(),
            Action::Status
        );
        assert_eq!(
            parse(&Method::POST, "/admin/v1/functions/spin/resize").unwrap(),
            Action::Resize("spin".into())
        );
        assert_eq!(
            parse(&Method::GET, "/admin/v1/functions/flaky/dlq").unwrap(),
            Action::DlqList("flaky".into())
        );
        assert_eq!(
            parse(&Method::GET, "/admin/v1/functions/flaky/dlq/7").unwrap(),
            Action::DlqShow("flaky".into(), 7)
        );
        assert_eq!(
            parse(&Method::POST, "/admin/v1/functions/flaky/dlq/replay").unwrap(),
            Action::DlqReplay("flaky".into())
        );
        assert_eq!(
            parse(&Method::DELETE, "/admin/v1/functions/flaky/dlq").unwrap(),
            Action::DlqPurge("flaky".into())
        );
        assert!(matches!(
            parse(&Method::GET, "/admin/v1/functions/flaky/dlq/x"),
            Err(ApiError::BadRequest(_))
        ));
        assert!(matches!(
            parse(&Method::PUT, "/admin/v1/functions/flaky/dlq"),
            Err(ApiError::MethodNotAllowed(_))
        ));
        assert!(matches!(
            parse(&Method::GET, "/admin/v1/functions/spin/resize"),
            Err(ApiError::MethodNotAllowed(_))
        ));
        assert!(matches!(
            parse(&Method::PUT, "/admin/v1/functions"),
            Err(ApiError::MethodNotAllowed(_))
        ));
        assert!(matches!(
            parse(&Method::GET, "/admin/v2/functions"),
            Err(ApiError::NoRoute(_))
        ));
        assert!(matches!(
            parse(&Method::GET, "/admin/v1/functions/a/b"),
            Err(ApiError::NoRoute(_))
        ));
    }

    #[test]
    fn tokens() {
        assert!(token_matches(Some("Bearer s3cret"), "s3cret"));
        assert!(!token_matches(Some("Bearer s3cre"), "s3cret"));
        assert!(!token_matches(Some("Bearer s3cretX"), "s3cret"));
        assert!(!token_matches(Some("s3cret"), "s3cret"));
        assert!(!token_matches(None, "s3cret"));
        assert!(!token_matches(Some("Bearer "), ""));
    }
}
