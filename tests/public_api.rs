//! The public and admin HTTP surface against a real host.

// Integration tests drive real processes from plain threads against the wall clock: the
// time rule of `.clippy.toml` is for the host, not for them.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

mod common;
use std::time::Duration;

use common::{wait_until, Host};

#[test]
fn routes_invoke_api_errors_and_auth() {
    let h = Host::start(&["hello", "echo"]);

    // The Python wasi:http component.
    let r = h.get("/hello");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "hello from surge\n");
    let r = h.get("/hello/deeper/path?x=1");
    assert_eq!(r.status, 200, "a route is a prefix");

    // The C event handler, through its route and through the Lambda Invoke API.
    let r = h.post("/echo", br#"{"a":1}"#);
    assert_eq!((r.status, r.text().as_str()), (200, r#"{"a":1}"#));
    let r = h.invoke("echo", br#"{"a":1}"#);
    assert_eq!((r.status, r.text().as_str()), (200, r#"{"a":1}"#));
    assert_eq!(r.header("x-amz-executed-version"), Some("1"));
    assert!(r.header("x-amzn-requestid").is_some());
    assert!(r.header("x-amz-function-error").is_none());
    // ARN form, as SDKs send it.
    let r = h.invoke("arn:aws:lambda:us-east-1:123456789012:function:echo", b"{}");
    assert_eq!((r.status, r.text().as_str()), (200, "{}"));
    // DryRun and Event invocation types.
    let r = h.request(
        "POST",
        "/2015-03-31/functions/echo/invocations",
        &[("x-amz-invocation-type", "DryRun")],
        b"{}",
    );
    assert_eq!(r.status, 204);
    let r = h.request(
        "POST",
        "/2015-03-31/functions/echo/invocations",
        &[("x-amz-invocation-type", "Event")],
        b"{}",
    );
    assert_eq!(r.status, 202);

    // Unknown function and route.
    let r = h.invoke("nope", b"{}");
    assert_eq!(r.status, 404);
    assert_eq!(
        r.header("x-amzn-errortype"),
        Some("ResourceNotFoundException")
    );
    assert!(r.text().contains("nope"), "{}", r.text());
    assert_eq!(h.get("/nowhere").status, 404);

    // Body over max_body (echo: 6Mi).
    let big = vec![b'x'; 6 * 1024 * 1024 + 1];
    assert_eq!(h.post("/echo", &big).status, 413);
    let r = h.invoke("echo", &big);
    assert_eq!(r.status, 413);
    assert_eq!(
        r.header("x-amzn-errortype"),
        Some("RequestTooLargeException")
    );
    // Exactly at the limit is fine.
    let at = vec![b'y'; 6 * 1024 * 1024];
    let r = h.post("/echo", &at);
    assert_eq!((r.status, r.body.len()), (200, at.len()));

    // Admin API: no token, wrong token, right token.
    assert_eq!(h.get("/admin/v1/functions").status, 401);
    assert_eq!(
        h.request(
            "GET",
            "/admin/v1/functions",
            &[("authorization", "Bearer wrong")],
            b""
        )
        .status,
        401
    );
    assert_eq!(
        h.request(
            "DELETE",
            "/admin/v1/functions/echo",
            &[("authorization", "Bearer wrong")],
            b""
        )
        .status,
        401
    );
    assert!(
        h.function("echo").is_some(),
        "a refused remove changed nothing"
    );
    assert_eq!(h.admin("GET", "/admin/v1/functions").status, 200);

    // Health and metrics. Every echo invocation that ran is counted once, the Event one too
    // (a route, two Invoke calls, the Event, the body at the limit); DryRun and the refused
    // bodies are not.
    assert_eq!(h.get("/healthz").status, 200);
    let ok = "surge_requests_total{function=\"echo\",outcome=\"ok\"} 5\n";
    wait_until(
        "the Event invocation counted",
        Duration::from_secs(10),
        || h.get("/metrics").text().contains(ok),
    );
    let m = h.get("/metrics").text();
    assert!(
        m.contains("surge_function_instances{function=\"hello\"} 1"),
        "{m}"
    );

    // The CLI finds the server and token through the state dir.
    let (code, out, err) = h.cli(&["invoke", "echo", "--data", r#"{"via":"cli"}"#]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), r#"{"via":"cli"}"#);
    let (code, out, _) = h.cli(&["list"]);
    assert_eq!(code, 0);
    assert!(out.contains("echo") && out.contains("hello"), "{out}");
    let (code, out, _) = h.cli(&["status"]);
    assert_eq!(code, 0);
    assert!(out.contains("echo"), "{out}");
    let (code, _, err) = h.cli(&["invoke", "nope"]);
    assert_eq!(code, 1);
    assert!(err.contains("ResourceNotFoundException"), "{err}");
}
