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
}

#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    Deploy,
    List,
    Remove(String),
    Resize(String),
    Status,
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
        (m, ["functions"])
        | (m, ["functions", _])
        | (m, ["functions", _, "resize"])
        | (m, ["status"]) => Err(ApiError::MethodNotAllowed(m.to_string())),
        _ => Err(ApiError::NoRoute(path.to_string())),
    }
}

/// Compare tokens in time independent of where they differ.
pub fn token_matches(header: Option<&str>, token: &str) -> bool {
    let Some(given) = header.and_then(|h| h.strip_prefix("Bearer ")) else {
        return false;
    };
    let (a, b) = (given.as_bytes(), token.as_bytes());
    let mut diff = (a.len() ^ b.len()) as u8 | (a.is_empty() as u8);
    for i in 0..a.len().max(b.len()) {
        diff |= a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0xff);
    }
    diff == 0
}

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
            },
        )),
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
