//! Horizontal autoscaling on a real host: scale from zero on the first request, 50 requests
//! at zero all served, a load step raises the desired instances within two ticks, idle goes
//! back to zero with no process and no cgroup left, and a full queue answers instead of
//! hanging.

// Integration tests drive real processes from plain threads against the wall clock: the
// time rule of `.clippy.toml` is for the host, not for them.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

mod common;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{num, wait_until, Host};

/// Short windows so that a test sees whole cycles in seconds.
const FAST_TICK: &str = "[autoscaler]\ntick = \"100ms\"\n";

fn fast_scaling(min: u32, max: u32, extra: &str) -> String {
    format!(
        "min_instances = {min}\nmax_instances = {max}\nconcurrency = 1\nreuse = 1\n\
         stable_window = \"2s\"\npanic_window = \"500ms\"\nscale_to_zero_after = \"1s\"\n{extra}"
    )
}

fn cgroup_dirs(h: &Host, name: &str) -> Vec<PathBuf> {
    h.function(name).expect("deployed")["cgroup"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| PathBuf::from(p.as_str().unwrap()))
        .collect()
}

/// No instance, no sandbox process and no cgroup directory left.
fn at_zero(h: &Host, name: &str) -> bool {
    let f = h.function(name).expect("deployed");
    f["instances"] == 0
        && f["desired"] == 0
        && f["sandbox_pid"].is_null()
        && cgroup_dirs(h, name).iter().all(|d| !d.exists())
}

#[test]
fn zero_to_first_request_is_served_with_one_cold_start() {
    let h = Host::start_scaled(&["echo"], FAST_TICK, &fast_scaling(0, 4, ""));
    let first_pid = h
        .sandbox_pid("echo")
        .expect("the deploy starts one sandbox");
    let dirs = cgroup_dirs(&h, "echo");
    wait_until("echo idle to zero", Duration::from_secs(15), || {
        at_zero(&h, "echo")
    });
    assert!(
        !PathBuf::from(format!("/proc/{first_pid}")).exists(),
        "the sandbox process {first_pid} is gone at zero"
    );
    for d in &dirs {
        assert!(!d.exists(), "no cgroup at zero: {} remains", d.display());
    }
    assert_eq!(num(&h, "echo", "cold_starts"), 0);

    let r = h.invoke("echo", br#"{"first":true}"#);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), r#"{"first":true}"#);
    assert_eq!(num(&h, "echo", "cold_starts"), 1);
    let pid = h.sandbox_pid("echo").expect("a sandbox again");
    assert_ne!(pid, first_pid);
    if common::cgroups_writable().is_ok() {
        for d in &dirs {
            assert!(d.exists(), "the cold start recreated {}", d.display());
        }
    }
    // Warm now: the next request is no cold start.
    assert_eq!(h.post("/echo", b"again").text(), "again");
    assert_eq!(num(&h, "echo", "cold_starts"), 1);
    let m = h.get("/metrics").text();
    assert!(
        m.contains("surge_function_cold_starts_total{function=\"echo\"} 1"),
        "{m}"
    );
    // `surge status`: one row per function with the pool's figures.
    let (code, out, err) = h.cli(&["status"]);
    assert_eq!(code, 0, "{err}");
    let header = out.lines().nth(1).unwrap_or_default();
    for col in [
        "READY",
        "DESIRED",
        "MAX",
        "IN-FLIGHT",
        "QUEUE",
        "REQ/S",
        "MODE",
        "COLD",
    ] {
        assert!(header.contains(col), "status has {col}: {out}");
    }
    let row: Vec<&str> = out
        .lines()
        .find(|l| l.starts_with("echo "))
        .unwrap_or_else(|| panic!("a row for echo: {out}"))
        .split_whitespace()
        .collect();
    // NAME VER READY DESIRED MAX IN-FLIGHT QUEUE REQ/S MODE COLD ...
    assert_eq!(row[4], "4", "max_instances: {out}");
    assert!(row[8] == "stable" || row[8] == "panic", "mode: {out}");
    assert_eq!(row[9], "1", "one cold start: {out}");
}

#[test]
fn fifty_concurrent_requests_at_zero_are_all_served() {
    let h = Host::start_scaled(&["echo"], FAST_TICK, &fast_scaling(0, 4, ""));
    wait_until("echo idle to zero", Duration::from_secs(15), || {
        at_zero(&h, "echo")
    });
    let addr = h.addr.clone();
    let threads: Vec<_> = (0..50)
        .map(|i| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                let body = format!("{{\"i\":{i}}}");
                let r = common::http(&addr, "POST", "/echo", &[], body.as_bytes());
                (r.status, r.text() == body)
            })
        })
        .collect();
    let results: Vec<(u16, bool)> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let ok = results
        .iter()
        .filter(|(s, same)| *s == 200 && *same)
        .count();
    assert_eq!(ok, 50, "all 50 served, none lost: {results:?}");
    assert_eq!(num(&h, "echo", "cold_starts"), 1, "one cold start for all");
    assert!(num(&h, "echo", "instances") >= 1);
}

#[test]
fn a_load_step_raises_desired_instances_within_two_ticks() {
    // A 500 ms tick: the step must be seen by the poke (a request that queues), not by luck.
    let tick = Duration::from_millis(500);
    let h = Host::start_scaled(
        &["spin"],
        "[autoscaler]\ntick = \"500ms\"\n",
        "min_instances = 1\nmax_instances = 8\nconcurrency = 1\nreuse = 1\n\
         stable_window = \"10s\"\npanic_window = \"1s\"\nscale_to_zero_after = \"60s\"\n",
    );
    let body = br#"{"n":3000000}"#.to_vec();
    assert_eq!(h.post("/spin", &body).status, 200);
    let stop = Arc::new(AtomicBool::new(false));
    let client = |stop: Arc<AtomicBool>| {
        let (addr, body) = (h.addr.clone(), body.clone());
        std::thread::spawn(move || {
            let mut n = 0u32;
            while !stop.load(Ordering::Relaxed) && n < 2000 {
                let r = common::http(&addr, "POST", "/spin", &[], &body);
                assert_eq!(r.status, 200, "{}", r.text());
                n += 1;
            }
        })
    };
    // One client for a while: steady at one instance.
    let mut clients = vec![client(stop.clone())];
    std::thread::sleep(Duration::from_millis(1500));
    let before = num(&h, "spin", "desired");
    assert!(
        before <= 2,
        "one client wants about one instance, not {before}"
    );
    // The step: 16 clients.
    let step = Instant::now();
    for _ in 1..16 {
        clients.push(client(stop.clone()));
    }
    let mut seen = before;
    while step.elapsed() < 2 * tick {
        seen = num(&h, "spin", "desired");
        if seen > before {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let took = step.elapsed();
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    eprintln!("load step 1 → 16 clients: desired {before} → {seen} after {took:?}");
    assert!(
        seen > before,
        "desired instances rose within two ticks ({:?}): still {seen}",
        2 * tick
    );
    let f = h.function("spin").unwrap();
    assert!(f["max_instances"] == 8 && f["desired"].as_u64().unwrap() <= 8);
}

#[test]
fn load_stops_and_the_function_goes_to_zero_with_no_process_or_cgroup() {
    let h = Host::start_scaled(&["echo"], FAST_TICK, &fast_scaling(0, 4, ""));
    let dirs = cgroup_dirs(&h, "echo");
    let addr = h.addr.clone();
    let load: Vec<_> = (0..4)
        .map(|_| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                for _ in 0..100 {
                    assert_eq!(common::http(&addr, "POST", "/echo", &[], b"x").status, 200);
                }
            })
        })
        .collect();
    for t in load {
        t.join().unwrap();
    }
    let pid = h.sandbox_pid("echo").expect("running under load");
    let took = wait_until("echo back to zero", Duration::from_secs(15), || {
        at_zero(&h, "echo")
    });
    eprintln!("idle to zero after {took:?} (scale_to_zero_after = 1s, stable window 2s)");
    assert!(
        took >= Duration::from_millis(800),
        "zero came before the grace period: {took:?}"
    );
    assert!(
        !PathBuf::from(format!("/proc/{pid}")).exists(),
        "sandbox {pid} exited"
    );
    for d in &dirs {
        assert!(!d.exists(), "{} removed at zero", d.display());
    }
    let m = h.get("/metrics").text();
    assert!(
        m.contains("surge_function_instances{function=\"echo\"} 0"),
        "{m}"
    );
    assert!(
        m.contains("surge_function_desired_instances{function=\"echo\"} 0"),
        "{m}"
    );
    // And it comes back.
    assert_eq!(h.post("/echo", b"back").text(), "back");
}

#[test]
fn a_full_queue_answers_429_and_503_instead_of_hanging() {
    // One instance that loops until its 1 s timeout, a queue of 2 that waits 300 ms.
    let h = Host::start_scaled(
        &["loop", "echo"],
        FAST_TICK,
        "min_instances = 1\nmax_instances = 1\nconcurrency = 1\nreuse = 1\n\
         queue_depth = 2\nqueue_timeout = \"300ms\"\n",
    );
    let addr = h.addr.clone();
    let t = Instant::now();
    let route: Vec<_> = (0..6)
        .map(|_| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                let r = common::http(&addr, "POST", "/loop", &[], b"{}");
                (r.status, r.header("retry-after").map(str::to_string))
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(50));
    let lambda: Vec<_> = (0..3)
        .map(|_| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                let r = common::http(
                    &addr,
                    "POST",
                    "/2015-03-31/functions/loop/invocations",
                    &[],
                    b"{}",
                );
                (r.status, r.header("x-amzn-errortype").map(str::to_string))
            })
        })
        .collect();
    let route: Vec<_> = route.into_iter().map(|t| t.join().unwrap()).collect();
    let lambda: Vec<_> = lambda.into_iter().map(|t| t.join().unwrap()).collect();
    let took = t.elapsed();
    eprintln!("route answers {route:?}, Invoke answers {lambda:?}, all in {took:?}");
    assert!(
        took < Duration::from_secs(10),
        "answers, not hangs: {took:?}"
    );
    let rejected: Vec<_> = route.iter().filter(|(s, _)| *s == 503).collect();
    assert!(
        rejected.len() >= 3,
        "at least 3 of 6 on the route are turned away with 503: {route:?}"
    );
    assert!(
        rejected.iter().all(|(_, ra)| ra.is_some()),
        "503 carries Retry-After: {route:?}"
    );
    assert!(
        route.iter().all(|(s, _)| *s == 503 || *s == 504),
        "the rest run into the loop's timeout: {route:?}"
    );
    for (s, kind) in &lambda {
        if *s == 429 {
            assert_eq!(kind.as_deref(), Some("TooManyRequestsException"));
        } else {
            assert_eq!(
                *s, 200,
                "Invoke: 429, or a Lambda-style timeout: {lambda:?}"
            );
        }
    }
    assert!(lambda.iter().any(|(s, _)| *s == 429), "{lambda:?}");
    // The host stays healthy and other functions unaffected.
    assert_eq!(h.get("/healthz").status, 200);
    assert_eq!(h.post("/echo", b"fine").text(), "fine");
    assert_eq!(num(&h, "loop", "queued"), 0, "nothing left queued");
}

/// A cold start while a CPU hog outside surge's cgroups saturates a core completes, and the
/// host counts it. The time is printed, not asserted (BENCHMARKS.md, `cold_start_busy`).
#[test]
fn a_cold_start_beside_a_cpu_hog_completes_and_is_counted() {
    let h = Host::start_scaled(&["echo"], FAST_TICK, &fast_scaling(0, 4, ""));
    wait_until("echo idle to zero", Duration::from_secs(15), || {
        at_zero(&h, "echo")
    });
    // The hog: a busy loop in this test process, which is outside the host's subtree.
    let stop = Arc::new(AtomicBool::new(false));
    let hog = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut x = 0u64;
            while !stop.load(Ordering::Relaxed) {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    let t = Instant::now();
    let r = h.invoke("echo", br#"{"busy":true}"#);
    let took = t.elapsed();
    stop.store(true, Ordering::Relaxed);
    hog.join().unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), r#"{"busy":true}"#);
    assert_eq!(num(&h, "echo", "cold_starts"), 1);
    eprintln!("cold start beside a CPU hog: {took:?} at the client");
}

/// The predictive keep-alive policy on a real host: `classify` (the inference example: a
/// batch of ten 8x8 images per call) invoked every 3 s by a timer,
/// with `scale_to_zero_after` at 2 s, so a plain keep-alive unloads it before every
/// arrival and each one is cold. The policy learns the period from the idle spans, then
/// pre-warms just before each arrival and unloads just after it: a run of warm arrivals
/// (counted by the host: no request waited for a start) with the function seen at zero
/// between each two. What it learnt survives a restart of the host.
#[test]
fn a_timer_is_learnt_prewarmed_before_each_arrival_and_unloaded_between() {
    const PERIOD: Duration = Duration::from_secs(3);
    const WANT_WARM_RUN: usize = 4;
    let scaling = "min_instances = 0\nmax_instances = 1\nscale_to_zero_after = \"2s\"\n\
                   policy = \"predictive\"\n";
    // The default autoscaler tick (1 s): a pre-warm inside it starts on the policy's edge.
    let mut h = Host::start_scaled(&["classify"], "", scaling);
    wait_until("classify idle to zero", Duration::from_secs(15), || {
        at_zero(&h, "classify")
    });
    // Ten images of pixels 0..16.
    let images: Vec<Vec<u32>> = (0..10u32)
        .map(|k| (0..64u32).map(|p| (p * 7 + k) % 17).collect())
        .collect();
    let batch = serde_json::to_vec(&images).unwrap();
    let begin = Instant::now();
    let mut warm_run = 0;
    let mut log = Vec::new();
    for i in 0..16u32 {
        // Fixed schedule, so the period does not drift with each request's latency.
        let at = begin + PERIOD * i;
        // Between arrivals: was the function ever at zero?
        let mut zero_between = false;
        while Instant::now() + Duration::from_millis(30) < at {
            zero_between |= at_zero(&h, "classify");
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(at.saturating_duration_since(Instant::now()));
        let before = num(&h, "classify", "cold_requests");
        let r = h.invoke("classify", &batch);
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(r.header("x-amz-function-error").is_none(), "{}", r.text());
        let cold = num(&h, "classify", "cold_requests") > before;
        log.push((i, cold, zero_between));
        warm_run = if !cold && zero_between {
            warm_run + 1
        } else {
            0
        };
        if warm_run == WANT_WARM_RUN {
            break;
        }
    }
    let f = h.function("classify").unwrap();
    assert_eq!(
        warm_run, WANT_WARM_RUN,
        "(arrival, cold, at zero before it): {log:?}; {f}"
    );
    // The first arrivals, before the policy knew the period, were cold.
    assert!(log[1].1, "{log:?}");
    assert_eq!(f["policy"], "predictive", "{f}");
    assert_eq!(f["pattern"], "periodic", "{f}");
    // The control loop reads the last arrival's idle span at its next decision.
    wait_until("the pre-warms counted", Duration::from_secs(5), || {
        num(&h, "classify", "prewarm_hits") >= WANT_WARM_RUN as u64
    });
    let keep = f["keepalive_s"].as_f64().unwrap();
    assert!(
        keep > 0.0 && keep < 1.0,
        "loaded under a second per period: {f}"
    );
    let m = h.get("/metrics").text();
    for line in [
        "surge_function_keepalive_policy{function=\"classify\",pattern=\"periodic\",policy=\"predictive\"} 1",
        "surge_function_prewarm_hits_total{function=\"classify\"}",
        "surge_function_keepalive_window_seconds{function=\"classify\",window=\"prewarm\"}",
    ] {
        assert!(m.contains(line), "{line} in {m}");
    }
    let (code, out, err) = h.cli(&["status"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.lines().any(|l| l.starts_with("classify ")
            && l.contains("predictive")
            && l.contains("periodic")),
        "{out}"
    );
    // Restarted, the host still knows the timer.
    h.restart();
    let f = h.function("classify").unwrap();
    assert_eq!(f["pattern"], "periodic", "after a restart: {f}");
}
