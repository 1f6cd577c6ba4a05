//! The dashboard at `/dashboard`: one page, embedded in the binary with its chart library
//! (uPlot, from the npm registry; `build.rs`), that works offline. It reads
//! `/dashboard/data`, the host's [`Timeline`](crate::observe::timeline::Timeline), once a
//! second.
//!
//! Both need the admin token: as `Authorization: Bearer <token>`, or as the session cookie
//! that `POST /dashboard/login` sets once the token is given there. The cookie holds an
//! HMAC of the token, not the token; it is `HttpOnly` (no script reads it) and
//! `SameSite=Strict` (no other site's page sends it). Without either: 401, the page's
//! answer being the login form.

use std::sync::LazyLock;

use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};

use super::body::read_body;
use super::context::Gateway;
use super::errors::{json, HttpResponse};
use super::sigv4::{hmac, same, token_matches};
use crate::dispatch::stream::ReplyBody;

pub const PREFIX: &str = "/dashboard";
const COOKIE: &str = "surge_dashboard";
/// How long a browser stays logged in.
const SESSION_S: u64 = 7 * 24 * 3600;

const CSS: &str = include_str!("dashboard/page.css");

/// The page, with its script, styles and the chart library inlined: one response.
static PAGE: LazyLock<String> = LazyLock::new(|| {
    include_str!("dashboard/page.html")
        .replace(
            "/*UPLOT_CSS*/",
            include_str!(concat!(env!("OUT_DIR"), "/uPlot.min.css")),
        )
        .replace("/*PAGE_CSS*/", CSS)
        .replace(
            "/*UPLOT_JS*/",
            include_str!(concat!(env!("OUT_DIR"), "/uPlot.iife.min.js")),
        )
        .replace("/*PAGE_JS*/", include_str!("dashboard/page.js"))
});

fn login_page(message: &str) -> String {
    include_str!("dashboard/login.html")
        .replace("/*PAGE_CSS*/", CSS)
        .replace("/*MESSAGE*/", message)
}

/// The session cookie's value for `token`.
fn session(token: &str) -> String {
    hex::encode(hmac(token.as_bytes(), b"surge dashboard session"))
}

fn authorized(req: &Request<Incoming>, token: &str) -> bool {
    let h = req.headers();
    if token_matches(h.get("authorization").and_then(|v| v.to_str().ok()), token) {
        return true;
    }
    let want = session(token);
    h.get_all("cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .any(|(k, v)| k == COOKIE && same(v.as_bytes(), want.as_bytes()))
}

fn html(status: StatusCode, body: String) -> HttpResponse {
    Response::builder()
        .status(status)
        .header("content-type", "text/html; charset=utf-8")
        // Everything is inline and from here; nothing is loaded from elsewhere, and no
        // other site may frame the page.
        .header(
            "content-security-policy",
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
             connect-src 'self'; img-src data:; form-action 'self'; frame-ancestors 'none'",
        )
        .header("x-frame-options", "DENY")
        .header("cache-control", "no-store")
        .body(ReplyBody::from(body))
        .expect("valid response")
}

fn redirect(to: &str, cookie: Option<String>) -> HttpResponse {
    let mut b = Response::builder()
        .status(StatusCode::SEE_OTHER)
        .header("location", to);
    if let Some(c) = cookie {
        b = b.header("set-cookie", c);
    }
    b.body(ReplyBody::default()).expect("valid response")
}

/// `token=<value>` out of a form body (`application/x-www-form-urlencoded`).
fn form_token(body: &[u8]) -> Option<String> {
    std::str::from_utf8(body)
        .ok()?
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == "token")
        .map(|(_, v)| super::lambda_control::path_decode(&v.replace('+', " ")).into_owned())
}

pub async fn handle(gw: &Gateway, req: Request<Incoming>) -> HttpResponse {
    let path = req.uri().path().trim_end_matches('/');
    let token = &gw.admin_token;
    match (req.method(), path) {
        (&Method::GET, "/dashboard/login") => html(StatusCode::OK, login_page("")),
        (&Method::POST, "/dashboard/login") => {
            let (parts, body) = req.into_parts();
            let body = match read_body(body, &parts.headers, 4096, || "a login".into()).await {
                Ok(b) => b,
                Err(e) => return html(StatusCode::BAD_REQUEST, login_page(&e.to_string())),
            };
            match form_token(&body) {
                Some(t) if !t.is_empty() && same(t.as_bytes(), token.as_bytes()) => redirect(
                    PREFIX,
                    Some(format!(
                        "{COOKIE}={}; Path={PREFIX}; HttpOnly; SameSite=Strict; Max-Age={SESSION_S}",
                        session(token)
                    )),
                ),
                _ => html(
                    StatusCode::UNAUTHORIZED,
                    login_page("That is not this host's admin token."),
                ),
            }
        }
        (&Method::POST, "/dashboard/logout") => redirect(
            "/dashboard/login",
            Some(format!(
                "{COOKIE}=; Path={PREFIX}; HttpOnly; SameSite=Strict; Max-Age=0"
            )),
        ),
        (&Method::GET, "/dashboard") => {
            if authorized(&req, token) {
                html(StatusCode::OK, PAGE.clone())
            } else {
                html(StatusCode::UNAUTHORIZED, login_page(""))
            }
        }
        (&Method::GET, "/dashboard/data") => {
            if !authorized(&req, token) {
                return json(
                    StatusCode::UNAUTHORIZED,
                    &serde_json::json!({ "error": "missing or wrong admin token" }),
                );
            }
            let since = req
                .uri()
                .query()
                .unwrap_or("")
                .split('&')
                .filter_map(|kv| kv.strip_prefix("since="))
                .find_map(|v| v.parse::<f64>().ok())
                .filter(|v| v.is_finite())
                .unwrap_or(0.0);
            let now = crate::aws::now_ms() as f64 / 1000.0;
            let snapshot = gw.timeline.lock().since(now, since);
            let mut r = json(StatusCode::OK, &snapshot);
            r.headers_mut().insert(
                "cache-control",
                hyper::header::HeaderValue::from_static("no-store"),
            );
            r
        }
        (_, "/dashboard" | "/dashboard/data" | "/dashboard/login" | "/dashboard/logout") => {
            super::errors::text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n")
        }
        _ => super::errors::text(StatusCode::NOT_FOUND, "no such dashboard page\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_embeds_its_chart_library_and_script() {
        assert!(PAGE.contains("uPlot"));
        assert!(PAGE.contains("window.surge"));
        assert!(!PAGE.contains("/*UPLOT_JS*/") && !PAGE.contains("/*PAGE_JS*/"));
        // Offline: nothing is fetched from another origin.
        assert!(!PAGE.contains("src=\"http"));
    }

    #[test]
    fn login_form_token() {
        assert_eq!(form_token(b"token=abc%2Fd&x=1").as_deref(), Some("abc/d"));
        assert_eq!(form_token(b"x=1"), None);
        assert_ne!(session("a"), session("b"));
        assert_eq!(session("a").len(), 64);
    }
}
