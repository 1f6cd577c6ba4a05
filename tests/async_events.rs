//! Asynchronous invocations through a real host: the durable queue across `kill -9`, Lambda's
//! retry schedule on a scaled clock, event age, destinations, the dead-letter store and
//! `surge dlq`, and the payload limits.

// Integration tests drive real processes from plain threads against the wall clock: the
// time rule of `.clippy.toml` is for the host, not for them.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{wait_until, Host};
use serde_json::{json, Value};

const EVENT: (&str, &str) = ("x-amz-invocation-type", "Event");
const OK_QUEUE: &str = "arn:aws:sqs:us-east-1:000000000000:ok";
const FAILED_QUEUE: &str = "arn:aws:sqs:us-east-1:000000000000:failed";

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Send one event; answers the request id its 202 carried.
fn send(h: &Host, function: &str, event: &Value) -> String {
    let path = format!("/2015-03-31/functions/{function}/invocations");
    let r = h.request("POST", &path, &[EVENT], event.to_string().as_bytes());
    assert_eq!(r.status, 202, "{}", r.text());
    r.header("x-amzn-requestid")
        .expect("a request id")
        .to_string()
}

/// `surge dlq list <function> --json`, one object per line.
fn letters(h: &Host, function: &str) -> Vec<Value> {
    let (code, out, err) = h.cli(&["dlq", "list", function, "--json"]);
    assert_eq!(code, 0, "{err}");
    out.lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect()
}

fn queue(h: &Host, function: &str) -> Value {
    let r = h.admin("GET", "/admin/v1/status");
    assert_eq!(r.status, 200, "{}", r.text());
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    v["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["function"] == function)
        .cloned()
        .unwrap_or(Value::Null)
}

/// A Lambda control-plane call, with the admin token for credentials.
fn lambda(h: &Host, method: &str, path: &str, body: &[u8]) -> common::Reply {
    let auth = format!("Bearer {}", h.token());
    h.request(method, path, &[("authorization", &auth)], body)
}

fn put_config(h: &Host, function: &str, method: &str, body: &Value) -> Value {
    let path = format!("/2019-09-25/functions/{function}/event-invoke-config");
    let r = lambda(h, method, &path, body.to_string().as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    serde_json::from_slice(&r.body).unwrap()
}

/// 500 events to a slow function; the host is killed with SIGKILL while most are queued, and
/// restarted. Every accepted event runs at least once: its success record is in the store.
#[test]
fn accepted_events_survive_kill_9_and_each_runs_at_least_once() {
    let mut h = Host::start_scaled(
        &["flaky"],
        "[async]\ntime_scale = 30\n",
        "min_instances = 0\nmax_instances = 2\nconcurrency = 1\nreuse = 1",
    );
    put_config(
        &h,
        "flaky",
        "PUT",
        &json!({"DestinationConfig": {"OnSuccess": {"Destination": OK_QUEUE}}}),
    );
    let mut sent = HashMap::new();
    for i in 0..500 {
        let rid = send(&h, "flaky", &json!({"id": i, "sleep_ms": 50}));
        sent.insert(rid, i);
    }
    let before = queue(&h, "flaky");
    let held = before["queued"].as_u64().unwrap() + before["in_flight"].as_u64().unwrap();
    assert!(
        held > 250,
        "most events are still queued at the kill: {before}"
    );
    h.kill_and_restart();
    wait_until(
        "the queue drained after the restart",
        Duration::from_secs(120),
        || {
            let q = queue(&h, "flaky");
            q["queued"] == 0 && q["in_flight"] == 0
        },
    );
    let all = letters(&h, "flaky");
    let mut seen: HashMap<String, u64> = HashMap::new();
    let mut reruns = 0;
    for l in &all {
        assert_eq!(l["condition"], "Success", "{l}");
        assert_eq!(l["destination"], OK_QUEUE);
        let rid = l["requestId"].as_str().unwrap().to_string();
        assert_eq!(
            l["record"]["requestPayload"]["id"],
            json!(sent[&rid]),
            "the record carries its own event"
        );
        *seen.entry(rid).or_default() += 1;
        reruns += u64::from(l["approximateInvokeCount"].as_u64().unwrap() > 1);
    }
    let lost: Vec<_> = sent.keys().filter(|r| !seen.contains_key(*r)).collect();
    assert!(lost.is_empty(), "accepted events lost: {lost:?}");
    let duplicates = seen.values().filter(|&&n| n > 1).count();
    assert_eq!(seen.len(), 500);
    // A record is written in the transaction that ends its event, so it is never doubled;
    // an attempt the kill cut short ran again, and counts twice.
    assert_eq!(duplicates, 0, "records written twice");
    eprintln!(
        "kill -9 with {held} of 500 events held: 0 lost, 0 duplicate records, {reruns} attempt(s) run again"
    );
}

/// Lambda's schedule, 30x faster: retries about 1 and 2 minutes after a failure (2 s and
/// 4 s here); a success after two failures is invoke count 3, Success; an event that always
/// fails is RetriesExhausted in the store after 3; one past its age is EventAgeExceeded.
#[test]
fn retries_follow_lambdas_schedule_on_the_scaled_clock() {
    let h = Host::start_with(&["flaky"], "[async]\ntime_scale = 30\n");
    let cfg = put_config(
        &h,
        "flaky",
        "PUT",
        &json!({"MaximumRetryAttempts": 2, "DestinationConfig": {
            "OnSuccess": {"Destination": OK_QUEUE},
            "OnFailure": {"Destination": FAILED_QUEUE}}}),
    );
    assert_eq!(cfg["MaximumRetryAttempts"], 2);
    assert_eq!(
        cfg["FunctionArn"],
        "arn:aws:lambda:us-east-1:000000000000:function:flaky"
    );
    let t0 = now_ms();
    let start = Instant::now();
    // Fails at ~0 s and ~2 s, succeeds at ~6 s.
    let flaky = send(&h, "flaky", &json!({"id": 1, "fail_until_ms": t0 + 4000}));
    let broken = send(
        &h,
        "flaky",
        &json!({"id": 2, "fail_until_ms": i64::MAX / 2}),
    );
    wait_until("both events ended", Duration::from_secs(40), || {
        letters(&h, "flaky").len() == 2
    });
    let took = start.elapsed();
    let all = letters(&h, "flaky");
    let by_rid = |rid: &str| all.iter().find(|l| l["requestId"] == rid).unwrap().clone();
    let ok = by_rid(&flaky);
    assert_eq!(ok["condition"], "Success");
    assert_eq!(ok["approximateInvokeCount"], 3);
    assert_eq!(ok["destination"], OK_QUEUE);
    assert_eq!(ok["record"]["responseContext"]["statusCode"], 200);
    // The third attempt ran 2 s + 4 s after the first, within the machine's slack.
    let at = ok["record"]["responsePayload"]["at_ms"].as_i64().unwrap() - t0;
    assert!((5_500..9_000).contains(&at), "third attempt at {at} ms");
    let failed = by_rid(&broken);
    assert_eq!(failed["condition"], "RetriesExhausted");
    assert_eq!(failed["approximateInvokeCount"], 3);
    assert_eq!(failed["destination"], FAILED_QUEUE);
    assert_eq!(
        failed["record"]["responseContext"]["functionError"],
        "Unhandled"
    );
    assert_eq!(
        failed["record"]["responsePayload"]["errorType"],
        "Runtime.ExitError"
    );
    assert!(took >= Duration::from_millis(5_500), "ended after {took:?}");

    // Update merges: the destinations stay, and the age is now Lambda's least, 60 s (2 s
    // here); a failure's retry is due only after it, so the event ends EventAgeExceeded.
    let merged = put_config(
        &h,
        "flaky",
        "POST",
        &json!({"MaximumEventAgeInSeconds": 60}),
    );
    assert_eq!(merged["MaximumRetryAttempts"], 2);
    assert_eq!(
        merged["DestinationConfig"]["OnFailure"]["Destination"],
        FAILED_QUEUE
    );
    let old = send(
        &h,
        "flaky",
        &json!({"id": 3, "fail_until_ms": i64::MAX / 2}),
    );
    wait_until("the old event ended", Duration::from_secs(20), || {
        letters(&h, "flaky").len() == 3
    });
    let aged = letters(&h, "flaky")
        .into_iter()
        .find(|l| l["requestId"] == old)
        .unwrap();
    assert_eq!(aged["condition"], "EventAgeExceeded");
    assert_eq!(aged["approximateInvokeCount"], 1);

    // Replay puts an entry back; the purge empties the store.
    let (code, out, err) = h.cli(&["dlq", "replay", "flaky", "--id", &ok["id"].to_string()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("replayed 1"), "{out}");
    wait_until("the replayed event ended", Duration::from_secs(20), || {
        letters(&h, "flaky")
            .iter()
            .any(|l| l["requestId"] == flaky.as_str() && l["approximateInvokeCount"] == 1)
    });
    let (code, out, err) = h.cli(&["dlq", "purge", "flaky"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("purged 3"), "{out}");
    assert!(letters(&h, "flaky").is_empty());
    let q = queue(&h, "flaky");
    assert_eq!(
        (q["succeeded"].as_u64(), q["failed"].as_u64()),
        (Some(2), Some(2)),
        "{q}"
    );

    // Without the API's config the manifest's [async] is in force again: on_failure names
    // its own queue.
    let path = "/2019-09-25/functions/flaky/event-invoke-config";
    assert_eq!(lambda(&h, "DELETE", path, b"").status, 204);
    let r = lambda(&h, "GET", path, b"");
    assert_eq!(r.status, 200, "{}", r.text());
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        v["DestinationConfig"]["OnFailure"]["Destination"],
        "arn:aws:sqs:us-east-1:000000000000:flaky-failures"
    );
    assert_eq!(lambda(&h, "DELETE", path, b"").status, 404);
    // Without credentials: 403, as AWS answers, and the config is untouched.
    let r = h.request("DELETE", path, &[], b"");
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(
        r.header("x-amzn-errortype"),
        Some("MissingAuthenticationTokenException")
    );
}

/// A failure with no destination is kept anyway; the payload limits are Lambda's, within
/// `max_body`; bad configs are refused with the field named, and nothing changes.
#[test]
fn failures_without_a_destination_are_kept_and_limits_hold() {
    let h = Host::start_custom(&["echo", "flaky"], "[async]\ntime_scale = 60\n", &|m| {
        common::replace_table(&m, "async", "max_retry_attempts = 0")
    });
    let rid = send(&h, "flaky", &json!({"fail_until_ms": i64::MAX / 2}));
    wait_until("the failure is kept", Duration::from_secs(20), || {
        !letters(&h, "flaky").is_empty()
    });
    let l = &letters(&h, "flaky")[0];
    assert_eq!(l["requestId"], rid.as_str());
    assert_eq!(l["condition"], "RetriesExhausted");
    assert_eq!(l["approximateInvokeCount"], 1, "max_retry_attempts = 0");
    assert_eq!(l["destination"], "", "no destination configured");
    let (code, out, _) = h.cli(&["dlq", "show", "flaky", &l["id"].to_string()]);
    assert_eq!(code, 0);
    assert!(out.contains("\"requestPayload\""), "{out}");

    // 1 MiB for an event, 6 MiB synchronous (echo's max_body is 6Mi).
    let big = vec![b'x'; (1 << 20) + 1];
    let path = "/2015-03-31/functions/echo/invocations";
    let r = h.request("POST", path, &[EVENT], &big);
    assert_eq!(r.status, 413, "{}", r.text());
    assert_eq!(
        r.header("x-amzn-errortype"),
        Some("RequestTooLargeException")
    );
    assert_eq!(h.request("POST", path, &[], &big).status, 200);
    let r = h.request("POST", path, &[], &vec![b'x'; (6 << 20) + 1]);
    assert_eq!(r.status, 413);

    let cpath = "/2019-09-25/functions/flaky/event-invoke-config";
    for (body, names) in [
        (json!({"MaximumRetryAttempts": 3}), "MaximumRetryAttempts 3"),
        (
            json!({"MaximumEventAgeInSeconds": 30}),
            "MaximumEventAgeInSeconds 30",
        ),
        (
            json!({"DestinationConfig": {"OnFailure": {"Destination": "arn:aws:sns:us-east-1:000000000000:t"}}}),
            "sns destinations are not supported",
        ),
    ] {
        let r = lambda(&h, "PUT", cpath, body.to_string().as_bytes());
        assert_eq!(r.status, 400, "{body}");
        assert_eq!(
            r.header("x-amzn-errortype"),
            Some("InvalidParameterValueException")
        );
        assert!(r.text().contains(names), "{}", r.text());
    }
    // Still the manifest's (max_retry_attempts = 0): nothing was half-applied.
    let v: Value = serde_json::from_slice(&lambda(&h, "GET", cpath, b"").body).unwrap();
    assert_eq!(v["MaximumRetryAttempts"], 0);
    let r = lambda(
        &h,
        "PUT",
        "/2019-09-25/functions/nope/event-invoke-config",
        b"{}",
    );
    assert_eq!(r.status, 404);
    assert_eq!(
        r.header("x-amzn-errortype"),
        Some("ResourceNotFoundException")
    );
}

/// A backlog scales the pool from zero to max_instances, as queued requests do; meanwhile a
/// synchronous call is served ahead of the backlog, never behind all of it.
#[test]
fn a_backlog_scales_the_pool_and_synchronous_calls_come_first() {
    let h = Host::start_scaled(
        &["flaky"],
        "",
        "min_instances = 0\nmax_instances = 4\nconcurrency = 1\nreuse = 1\nscale_to_zero_after = \"2s\"\npolicy = \"fixed\"",
    );
    common::wait_until("flaky at zero", Duration::from_secs(20), || {
        common::num(&h, "flaky", "instances") == 0
    });
    // 200 events of 250 ms: 50 s on one instance, 12.5 s on four.
    for i in 0..200 {
        send(&h, "flaky", &json!({"id": i, "sleep_ms": 250}));
    }
    wait_until("the pool at max_instances", Duration::from_secs(20), || {
        common::num(&h, "flaky", "instances") == 4
    });
    let q = queue(&h, "flaky");
    assert!(
        q["queued"].as_u64().unwrap() > 100,
        "a backlog remains: {q}"
    );
    let t = Instant::now();
    let r = h.invoke("flaky", br#"{"id": -1}"#);
    let waited = t.elapsed();
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        waited < Duration::from_secs(5),
        "a synchronous call behind a backlog of {} events waited {waited:?}",
        q["queued"]
    );
    wait_until("the backlog drained", Duration::from_secs(60), || {
        let q = queue(&h, "flaky");
        q["queued"] == 0 && q["in_flight"] == 0
    });
    assert_eq!(queue(&h, "flaky")["succeeded"], 200);
    eprintln!("a synchronous call behind the backlog waited {waited:?}");
}
