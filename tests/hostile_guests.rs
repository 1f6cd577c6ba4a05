//! Guests that misbehave: infinite loops and memory bombs end cleanly, and the host and the
//! function keep serving.

// Integration tests drive real processes from plain threads against the wall clock: the
// time rule of `.clippy.toml` is for the host, not for them.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

mod common;
use std::time::{Duration, Instant};

use common::Host;

#[test]
fn an_infinite_loop_times_out_and_the_next_request_gets_a_fresh_instance() {
    let h = Host::start(&["loop", "echo"]);
    let pid = h.sandbox_pid("loop").expect("loop has a sandbox");
    for round in 0..2 {
        let t = Instant::now();
        let r = h.post("/loop", b"{}");
        let took = t.elapsed();
        assert_eq!(r.status, 504, "round {round}: {}", r.text());
        assert!(
            took < Duration::from_millis(2000),
            "round {round}: timeout 1s answered after {took:?}"
        );
        assert!(
            took >= Duration::from_millis(900),
            "round {round}: answered before the timeout ({took:?})"
        );
    }
    let r = h.invoke("loop", b"{}");
    assert_eq!(
        r.status, 200,
        "Lambda reports a timeout as a function error"
    );
    assert_eq!(r.header("x-amz-function-error"), Some("Unhandled"));
    assert!(r.text().contains("Sandbox.Timedout"), "{}", r.text());
    // Instances were discarded, not the sandbox; other functions were never affected.
    assert_eq!(h.sandbox_pid("loop"), Some(pid));
    assert_eq!(h.post("/echo", b"still here").text(), "still here");
}

#[test]
fn a_guest_parked_in_a_host_call_is_stopped_at_its_timeout() {
    let h = Host::start(&["loop"]);
    // Five in a row on a pool of one instance: were a parked instance left running, the next
    // request would find no instance and the host, not the sandbox, would answer it.
    for round in 0..5 {
        let t = Instant::now();
        let r = h.invoke("loop", br#"{"sleep":true}"#);
        let took = t.elapsed();
        assert_eq!(r.status, 200, "round {round}: {}", r.text());
        assert!(
            r.text().contains("Sandbox.Timedout"),
            "round {round}: {}",
            r.text()
        );
        assert!(
            r.text().contains("host call"),
            "round {round}: the sandbox itself must stop it: {}",
            r.text()
        );
        assert!(
            took < Duration::from_millis(2000),
            "round {round}: timeout 1s answered after {took:?}"
        );
    }
}

#[test]
fn a_memory_bomb_fails_cleanly_and_a_modest_request_succeeds() {
    let h = Host::start(&["memhog"]);
    // 64Mi per instance: 200 MiB is refused inside the guest (malloc returns NULL).
    let r = h.invoke("memhog", br#"{"mib":200}"#);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-amz-function-error"), Some("Unhandled"));
    assert!(r.text().contains("Runtime.OutOfMemory"), "{}", r.text());
    let r = h.post("/memhog", br#"{"mib":200}"#);
    assert_eq!(r.status, 500);
    assert!(r.text().contains("memory"), "{}", r.text());
    // The log tail comes back when asked for, as Lambda's X-Amz-Log-Result.
    let r = h.request(
        "POST",
        "/2015-03-31/functions/memhog/invocations",
        &[("x-amz-log-type", "Tail")],
        br#"{"mib":200}"#,
    );
    let tail = r.header("x-amz-log-result").expect("log tail");
    use base64::Engine as _;
    let log = base64::engine::general_purpose::STANDARD
        .decode(tail)
        .unwrap();
    assert!(String::from_utf8_lossy(&log).contains("out of memory"));
    // Under the limit it works, on the same sandbox.
    let r = h.invoke("memhog", br#"{"mib":16}"#);
    assert_eq!(r.status, 200);
    assert!(r.header("x-amz-function-error").is_none(), "{}", r.text());
    assert!(
        r.text().starts_with(r#"{"allocated_mib":16"#),
        "{}",
        r.text()
    );
}
