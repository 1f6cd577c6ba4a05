//! The admin API under `/admin/v1/`, behind `Authorization: Bearer <token>`.
//!
//! Parse, then act: [`parse`] turns method and path into an [`Action`] without touching any
//! state, so it is unit-tested without a server; only then does [`handle`] act.

use base64::Engine as _;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde::{Deserialize, Serialize};

use super::body::read_body;
use super::context::Gateway;
use super::errors::{json, ApiError, HttpResponse};
use crate::control::node::NodeStatus;
use crate::dispatch::stream::ReplyBody;
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
    /// A function's invocation records (`surge logs`).
    Logs(String),
    /// A stored `.wasm` by its SHA-256: how the nodes of a cluster pass blobs.
    Blob(String),
    /// This node's view of its cluster.
    Cluster,
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
        (&Method::GET, ["cluster"]) => Ok(Action::Cluster),
        (&Method::GET, ["blobs", sha]) => {
            let hex = sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit());
            if hex {
                Ok(Action::Blob(sha.to_ascii_lowercase()))
            } else {
                Err(ApiError::BadRequest(format!(
                    "blob {sha:?} is not a SHA-256 in hex"
                )))
            }
        }
        (&Method::GET, ["functions", name, "dlq"]) if !name.is_empty() => {
            Ok(Action::DlqList(name.to_string()))
        }
        (&Method::DELETE, ["functions", name, "dlq"]) if !name.is_empty() => {
            Ok(Action::DlqPurge(name.to_string()))
        }
        (&Method::POST, ["functions", name, "dlq", "replay"]) if !name.is_empty() => {
            Ok(Action::DlqReplay(name.to_string()))
        }
        (&Method::GET, ["functions", name, "logs"]) if !name.is_empty() => {
            Ok(Action::Logs(name.to_string()))
        }
        (&Method::GET, ["functions", name, "dlq", id]) if !name.is_empty() => id
            .parse()
            .map(|id| Action::DlqShow(name.to_string(), id))
            .map_err(|_| ApiError::BadRequest(format!("dead-letter id {id:?} is not a number"))),
        (m, ["functions"])
        | (m, ["functions", _])
        | (m, ["functions", _, "resize"])
        | (m, ["functions", _, "dlq"])
        | (m, ["functions", _, "logs"])
        | (m, ["functions", _, "dlq", _])
        | (m, ["status"])
        | (m, ["cluster"])
        | (m, ["blobs", _]) => Err(ApiError::MethodNotAllowed(m.to_string())),
        _ => Err(ApiError::NoRoute(path.to_string())),
    }
}

const NDJSON: &str = "application/x-ndjson";

/// A deploy that reports its stages as it goes: one JSON object a line (`{"stage": …}`),
/// then `{"deployed": FunctionInfo}` or `{"error": …, "status": …}`. The deploy runs in its
/// own task: a client that leaves does not cut it short (it is all or nothing anyway).
fn deploy_streamed(gw: &Gateway, dr: DeployRequest, wasm: Vec<u8>) -> HttpResponse {
    let (tx, rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(16);
    let (stage_tx, mut stages) = tokio::sync::mpsc::unbounded_channel();
    let registry = gw.registry.clone();
    let line = |v: &serde_json::Value| -> bytes::Bytes { format!("{v}\n").into() };
    tokio::spawn(async move {
        let deploy =
            registry.deploy_reporting(&dr.manifest_file, &dr.manifest, wasm, Some(&stage_tx));
        tokio::pin!(deploy);
        let result = loop {
            tokio::select! {
                r = &mut deploy => break r,
                Some(stage) = stages.recv() => {
                    let _ = tx.send(line(&serde_json::to_value(&stage).expect("a stage serializes"))).await;
                }
            }
        };
        while let Ok(stage) = stages.try_recv() {
            let _ = tx
                .send(line(
                    &serde_json::to_value(&stage).expect("a stage serializes"),
                ))
                .await;
        }
        let last = match result {
            Ok(info) => serde_json::json!({ "deployed": info }),
            Err(e) => {
                let e = ApiError::from(e);
                let message = e.to_string();
                let status = e.into_response(super::errors::Surface::Admin).status();
                serde_json::json!({ "error": message, "status": status.as_u16() })
            }
        };
        let _ = tx.send(line(&last)).await;
    });
    hyper::Response::builder()
        .status(StatusCode::OK)
        .header("content-type", NDJSON)
        .body(crate::dispatch::stream::ReplyBody::Feed(rx))
        .expect("valid response")
}

/// The most records one read returns.
const LOGS_MAX: usize = 10_000;
/// A followed stream sends a comment this often, so that proxies and clients see it alive.
const FOLLOW_HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(15);

/// What `GET /admin/v1/functions/{name}/logs` asks, parsed from its query: `since` (a
/// span back from now: `10m`, `2h`), `errors`, `limit`, `follow` (server-sent events).
#[derive(Debug, PartialEq)]
pub struct LogsRequest {
    pub query: crate::observe::records::Query,
    pub follow: bool,
}

pub fn parse_logs(name: &str, query: Option<&str>, now_ms: i64) -> Result<LogsRequest, ApiError> {
    let mut r = LogsRequest {
        query: crate::observe::records::Query {
            function: name.to_string(),
            since_ms: None,
            errors: false,
            limit: 1000,
        },
        follow: false,
    };
    let flag = |k: &str, v: &str| match v {
        "" | "1" | "true" => Ok(true),
        "0" | "false" => Ok(false),
        _ => Err(ApiError::BadRequest(format!(
            "{k}={v:?}: expected true or false"
        ))),
    };
    for kv in query.unwrap_or("").split('&').filter(|kv| !kv.is_empty()) {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        match k {
            "since" => {
                let span: crate::manifest::units::Span = v
                    .parse()
                    .map_err(|e| ApiError::BadRequest(format!("since={v:?}: {e}")))?;
                r.query.since_ms = Some(now_ms - span.0.as_millis() as i64);
            }
            "errors" => r.query.errors = flag(k, v)?,
            "follow" => r.follow = flag(k, v)?,
            "limit" => {
                r.query.limit = v
                    .parse::<usize>()
                    .map_err(|_| ApiError::BadRequest(format!("limit={v:?} is not a number")))?
                    .clamp(1, LOGS_MAX)
            }
            _ => {
                return Err(ApiError::BadRequest(format!(
                    "unknown query parameter {k:?} (since, errors, limit, follow)"
                )))
            }
        }
    }
    Ok(r)
}

/// One record as a server-sent event.
fn sse_record(r: &crate::observe::records::Record) -> bytes::Bytes {
    format!(
        "event: record\nid: {}\ndata: {}\n\n",
        r.seq,
        serde_json::to_string(r).expect("a record serializes")
    )
    .into()
}

async fn logs(gw: &Gateway, name: &str, query: Option<&str>) -> Result<HttpResponse, ApiError> {
    let req = parse_logs(name, query, crate::aws::now_ms())?;
    let records = gw.records.clone().ok_or_else(|| {
        ApiError::NotFound("invocation records are off ([logs] records = false)".into())
    })?;
    let known = !matches!(
        gw.registry.routes().resolve_name(name),
        crate::dispatch::routes::Resolved::Unknown
    );
    // Subscribed before the backlog is read: nothing falls between the two.
    let live = req.follow.then(|| records.follow());
    let backlog = records.query(req.query.clone()).await?;
    if backlog.is_empty() && !known {
        return Err(ApiError::FunctionNotFound(name.to_string()));
    }
    let Some(mut live) = live else {
        return Ok(json(
            StatusCode::OK,
            &serde_json::json!({ "records": backlog }),
        ));
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(64);
    let q = req.query;
    tokio::spawn(async move {
        let mut last = 0;
        for r in &backlog {
            last = r.seq;
            if tx.send(sse_record(r)).await.is_err() {
                return;
            }
        }
        // A comment at once: the client knows the backlog is over.
        if tx.send(": live\n\n".into()).await.is_err() {
            return;
        }
        loop {
            let piece = match tokio::time::timeout(FOLLOW_HEARTBEAT, live.recv()).await {
                Err(_) => ": keep-alive\n\n".into(),
                Ok(Ok(r)) if r.seq > last && q.matches(&r) => {
                    last = r.seq;
                    sse_record(&r)
                }
                Ok(Ok(_)) => continue,
                Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(n))) => {
                    format!("event: lagged\ndata: {n}\n\n").into()
                }
                Ok(Err(tokio::sync::broadcast::error::RecvError::Closed)) => return,
            };
            // The client went away: stop.
            if tx.send(piece).await.is_err() {
                return;
            }
        }
    });
    Ok(hyper::Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-cache")
        .body(crate::dispatch::stream::ReplyBody::Feed(rx))
        .expect("valid response"))
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
        Action::Cluster => match &gw.cluster {
            Some(c) => Ok(json(StatusCode::OK, &c.status())),
            None => Ok(json(
                StatusCode::OK,
                &serde_json::json!({ "cluster": false }),
            )),
        },
        Action::Blob(sha) => {
            let r = gw.registry.clone();
            let found = tokio::task::spawn_blocking(move || r.read_blob(&sha))
                .await
                .ok()
                .flatten();
            match found {
                Some(b) => Ok(Response::builder()
                    .header("content-type", "application/wasm")
                    .body(ReplyBody::from(bytes::Bytes::from(b)))
                    .expect("valid response")),
                None => Err(ApiError::NoRoute(req.uri().path().to_string())),
            }
        }
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
        Action::Logs(name) => logs(gw, &name, req.uri().query()).await,
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
            let streamed = parts
                .headers
                .get("accept")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.contains(NDJSON));
            if !streamed {
                let info = gw
                    .registry
                    .deploy(&dr.manifest_file, &dr.manifest, wasm)
                    .await?;
                return Ok(json(StatusCode::OK, &info));
            }
            Ok(deploy_streamed(gw, dr, wasm))
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
        assert_eq!(
            parse(&Method::GET, "/admin/v1/functions/echo/logs").unwrap(),
            Action::Logs("echo".into())
        );
        assert!(matches!(
            parse(&Method::POST, "/admin/v1/functions/echo/logs"),
            Err(ApiError::MethodNotAllowed(_))
        ));
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
    fn parses_logs_queries() {
        let r = parse_logs("echo", Some("since=10m&errors=1&limit=5&follow"), 1_000_000).unwrap();
        assert_eq!(r.query.since_ms, Some(1_000_000 - 600_000));
        assert!(r.query.errors && r.follow);
        assert_eq!(r.query.limit, 5);
        let d = parse_logs("echo", None, 0).unwrap();
        assert_eq!(
            (d.query.since_ms, d.query.errors, d.follow, d.query.limit),
            (None, false, false, 1000)
        );
        assert_eq!(
            parse_logs("echo", Some("limit=99999999"), 0)
                .unwrap()
                .query
                .limit,
            LOGS_MAX
        );
        for bad in ["since=yesterday", "errors=maybe", "limit=x", "tail=1"] {
            assert!(
                matches!(
                    parse_logs("echo", Some(bad), 0),
                    Err(ApiError::BadRequest(_))
                ),
                "{bad}"
            );
        }
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
