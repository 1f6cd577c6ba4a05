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

/// Read a raw HTTP/1.1 response off `s` until it closes or `limit` passes, noting when each
/// read arrived.
fn read_timed(s: &mut std::net::TcpStream) -> Vec<(std::time::Instant, Vec<u8>)> {
    use std::io::Read;
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut reads = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return reads,
            Ok(n) => reads.push((std::time::Instant::now(), buf[..n].to_vec())),
        }
    }
}

fn send_get(h: &Host, path: &str) -> std::net::TcpStream {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(&h.addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    s
}

/// A wasi:http guest's body reaches the client as the guest writes it, not once it is
/// whole; a guest that fails mid-body cuts the response short (no last chunk), is counted
/// as an error, and leaves the sandbox serving; a client that goes away mid-body frees the
/// instance. A short answer is still one whole response with a content-length.
#[test]
fn streamed_responses_arrive_as_written_and_break_off_visibly() {
    let h = Host::start(&["hello"]);
    let whole = h.get("/hello");
    assert_eq!(whole.header("content-length"), Some("17"));

    // Two lines 1.5 s apart. Buffered, they would arrive in one read; streamed, the first
    // arrives at least most of the guest's pause before the end.
    let mut s = send_get(&h, "/hello/stream?n=2&ms=1500");
    let reads = read_timed(&mut s);
    let all: Vec<u8> = reads.iter().flat_map(|(_, b)| b.clone()).collect();
    let text = String::from_utf8_lossy(&all).to_string();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("transfer-encoding: chunked"), "{text}");
    assert!(
        text.ends_with("0\r\n\r\n"),
        "a complete chunked body: {text:?}"
    );
    let first = reads
        .iter()
        .find(|(_, b)| String::from_utf8_lossy(b).contains("line 0"))
        .expect("line 0")
        .0;
    let last = reads.last().unwrap().0;
    let gap = last - first;
    assert!(
        gap >= Duration::from_millis(1000),
        "line 0 came only {gap:?} before the end: the body was buffered"
    );
    assert!(
        !String::from_utf8_lossy(&reads[0].1).contains("line 1"),
        "line 1 came with the head"
    );

    // A failure after the first line: the head and line 0 went out; the response ends
    // without its last chunk, and the host counts a trap.
    let errors = common::num(&h, "hello", "errors");
    let mut s = send_get(&h, "/hello/stream?n=3&ms=300&fail=1");
    let all: Vec<u8> = read_timed(&mut s)
        .into_iter()
        .flat_map(|(_, b)| b)
        .collect();
    let text = String::from_utf8_lossy(&all).to_string();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("line 0"), "{text}");
    assert!(!text.contains("line 1"), "{text}");
    assert!(
        !text.ends_with("0\r\n\r\n"),
        "cut short, not complete: {text:?}"
    );
    wait_until("the trap is counted", Duration::from_secs(5), || {
        common::num(&h, "hello", "errors") == errors + 1
    });
    let m = h.get("/metrics").text();
    assert!(
        m.contains("surge_requests_total{function=\"hello\",outcome=\"trap\"} 1"),
        "{m}"
    );

    // A client that leaves mid-body: the instance is freed (the gate's permit and the
    // in-flight count come back) and the next request is served.
    let mut s = send_get(&h, "/hello/stream?n=5&ms=400");
    let mut head = [0u8; 256];
    use std::io::Read;
    let _ = s.read(&mut head).unwrap();
    drop(s);
    wait_until("the instance is freed", Duration::from_secs(10), || {
        let f = h.function("hello").unwrap();
        f["executing"] == 0 && f["inflight"] == 0
    });
    let r = h.get("/hello/stream?n=2&ms=10");
    assert_eq!((r.status, r.text().as_str()), (200, "line 0\nline 1\n"));
    assert_eq!(h.get("/hello").text(), "hello from surge\n");
}

/// A streamed body is held to the function's max_body as a whole one is: past it, the
/// response is cut short.
#[test]
fn a_streamed_body_over_max_body_is_cut_short() {
    let h = Host::start_custom(&["hello"], "", &|m: String| {
        m.replace("max_body = \"6Mi\"", "max_body = \"10\"")
    });
    let mut s = send_get(&h, "/hello/stream?n=3&ms=200");
    let all: Vec<u8> = read_timed(&mut s)
        .into_iter()
        .flat_map(|(_, b)| b)
        .collect();
    let text = String::from_utf8_lossy(&all).to_string();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        text.contains("line 0") && !text.contains("line 1"),
        "{text}"
    );
    assert!(!text.ends_with("0\r\n\r\n"), "cut short: {text:?}");
    let r = h.get("/hello/stream?n=1");
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "line 0\n"),
        "the sandbox still serves"
    );
}

/// Under 16 concurrent keep-alive connections every `hello` is a whole 200 with its
/// content-length: a guest that finishes at once is never streamed, and a call that has
/// returned is never mistaken for one that left its response unset (tokio's cooperative
/// budget once made both happen for a few requests in a hundred under load).
#[test]
fn concurrent_short_answers_are_whole_and_never_fail() {
    use std::io::{BufRead, BufReader, Read, Write};
    let h = Host::start_scaled(&["hello"], "", "min_instances = 2\nmax_instances = 4");
    // A busy core beside it, as on a loaded node: the sandbox's reads are then ready more
    // often, and its tasks run longer between yields.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let hog = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                std::hint::spin_loop();
            }
        })
    };
    let workers: Vec<_> = (0..16)
        .map(|_| {
            let addr = h.addr.clone();
            std::thread::spawn(move || {
                let s = std::net::TcpStream::connect(&addr).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                let mut w = s.try_clone().unwrap();
                let mut r = BufReader::new(s);
                let mut bad = Vec::new();
                for _ in 0..500 {
                    w.write_all(b"GET /hello HTTP/1.1\r\nhost: x\r\n\r\n")
                        .unwrap();
                    let mut status = String::new();
                    r.read_line(&mut status).unwrap();
                    let mut length = None;
                    let mut chunked = false;
                    loop {
                        let mut line = String::new();
                        r.read_line(&mut line).unwrap();
                        let l = line.trim_end().to_ascii_lowercase();
                        if l.is_empty() {
                            break;
                        }
                        if let Some(v) = l.strip_prefix("content-length:") {
                            length = v.trim().parse::<usize>().ok();
                        }
                        chunked |= l.starts_with("transfer-encoding:");
                    }
                    assert!(!chunked, "a short answer was streamed: {status}");
                    let mut body = vec![0u8; length.expect("content-length")];
                    r.read_exact(&mut body).unwrap();
                    if !status.starts_with("HTTP/1.1 200") || body != b"hello from surge\n" {
                        bad.push(format!(
                            "{} {}",
                            status.trim(),
                            String::from_utf8_lossy(&body)
                        ));
                    }
                }
                bad
            })
        })
        .collect();
    let bad: Vec<String> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    hog.join().unwrap();
    assert!(
        bad.is_empty(),
        "{} of 8000 failed: {:?}",
        bad.len(),
        &bad[..bad.len().min(5)]
    );
}
