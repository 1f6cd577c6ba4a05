//! `surge replay` on the Azure Functions trace sample (traces/azure2019: Shahrad et al.,
//! "Serverless in the Wild", USENIX ATC'20; CC-BY 4.0), against an independent
//! reimplementation of the minute model in Python (tests/replay_reference.py), and on bad
//! input.

// Integration tests drive real processes from plain threads: the time rule of
// `.clippy.toml` is for the host, not for them.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

fn surge() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_surge"))
}

fn sample(file: &str) -> PathBuf {
    common::repo().join("traces/azure2019").join(file)
}

fn replay(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(surge())
        .arg("replay")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn json_lines(s: &str) -> Vec<serde_json::Value> {
    s.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn the_minute_model_matches_an_independent_reimplementation_on_the_sample() {
    let policies = [
        "fixed:10",
        "fixed:20",
        "fixed:60",
        "fixed:240",
        "hybrid",
        "kpa",
        "predictive",
        "predictive:4",
    ];
    let (inv, mem) = (sample("500_inv.csv"), sample("500_mem.csv"));
    let (code, out, err) = replay(&[
        "--invocations",
        inv.to_str().unwrap(),
        "--memory",
        mem.to_str().unwrap(),
        "--durations",
        sample("500_run.csv").to_str().unwrap(),
        "--policy",
        &policies.join(","),
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let ours = json_lines(&out);
    let reference = Command::new("python3")
        .arg(common::repo().join("tests/replay_reference.py"))
        .args([&inv, &mem])
        .args(policies)
        .output()
        .unwrap();
    assert!(
        reference.status.success(),
        "{}",
        String::from_utf8_lossy(&reference.stderr)
    );
    let theirs = json_lines(&String::from_utf8_lossy(&reference.stdout));
    assert_eq!(ours.len(), policies.len());
    for (a, b) in ours.iter().zip(&theirs) {
        for key in ["policy", "model", "functions", "invocations", "cold_starts"] {
            assert_eq!(a[key], b[key], "{key}: {a} against {b}");
        }
        for key in [
            "cold_share",
            "cold_share_p50",
            "cold_share_p75",
            "wasted_gb_min",
        ] {
            let (x, y) = (a[key].as_f64().unwrap(), b[key].as_f64().unwrap());
            assert!(
                (x - y).abs() <= 1e-9 * y.abs().max(1.0),
                "{key}: {x} against {y}"
            );
        }
    }
    // The sample's own figures (README): 500 functions, 439,482 invocations. A longer
    // keep-alive never has more cold starts, and never wastes less.
    assert_eq!(ours[0]["functions"], 500);
    assert_eq!(ours[0]["invocations"], 439_482);
    for w in ours[..4].windows(2) {
        assert!(w[1]["cold_starts"].as_u64() <= w[0]["cold_starts"].as_u64());
        assert!(w[1]["wasted_gb_min"].as_f64() >= w[0]["wasted_gb_min"].as_f64());
    }

    // The goal for the predictive policy, on the host config's costs: at most 60 %
    // of the hybrid policy's cold starts, at no more wasted memory; and below the fixed
    // curve: fewer cold starts than fixed:60, which wastes about as much.
    let (hybrid, predictive) = (&ours[4], &ours[6]);
    let cold = |r: &serde_json::Value| r["cold_starts"].as_u64().unwrap() as f64;
    let waste = |r: &serde_json::Value| r["wasted_gb_min"].as_f64().unwrap();
    assert!(
        cold(predictive) <= 0.6 * cold(hybrid),
        "{predictive} against {hybrid}"
    );
    assert!(
        waste(predictive) <= waste(hybrid),
        "{predictive} against {hybrid}"
    );
    let fixed60 = &ours[2];
    assert!(
        cold(predictive) < cold(fixed60) && waste(predictive) < 1.1 * waste(fixed60),
        "{predictive} against {fixed60}"
    );

    // --plot draws the Pareto chart: every policy named over the fixed sweep.
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("pareto.svg");
    let (code, _, err) = replay(&[
        "--invocations",
        inv.to_str().unwrap(),
        "--memory",
        mem.to_str().unwrap(),
        "--policy",
        "fixed:10,hybrid",
        "--plot",
        svg.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let drawn = std::fs::read_to_string(&svg).unwrap();
    assert!(
        drawn.starts_with("<svg"),
        "{}",
        &drawn[..drawn.len().min(200)]
    );
    for text in [
        "hybrid",
        "fixed:10",
        "fixed keep-alive, 1–240 min",
        "cold starts",
    ] {
        assert!(drawn.contains(text), "{text} missing from the chart");
    }
    let nowhere = dir.path().join("no/such/dir/p.svg");
    let (code, _, err) = replay(&[
        "--invocations",
        inv.to_str().unwrap(),
        "--plot",
        nowhere.to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("no/such/dir/p.svg"), "{err}");

    // The table names every policy; --functions takes the first N.
    let (code, out, err) = replay(&["--invocations", inv.to_str().unwrap(), "--functions", "7"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("7 functions, 1440 minutes"), "{out}");
    // Progress goes to stderr: plain lines when it is not a terminal.
    assert!(
        err.lines().last() == Some("replay, minute model: 7/7 functions"),
        "{err}"
    );
    for p in ["fixed:10", "fixed:240", "hybrid", "kpa"] {
        assert!(out.contains(p), "{out}");
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn bad_traces_and_policies_are_refused_naming_the_file_line_and_value() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let head = "HashFunction,HashOwner,HashApp,1,2,3\n";
    let cases: Vec<(PathBuf, &str)> = vec![
        (
            write(d, "header.csv", "Function,Owner,App,1,2\nf,o,a,1,2\n"),
            ":1: column 1 must be \"HashFunction\"",
        ),
        (
            write(d, "count.csv", &format!("{head}f,o,a,1,0,0\ng,o,a,0,x,1\n")),
            "count.csv:3: minute 2: \"x\" is not a count of invocations",
        ),
        (
            write(d, "short.csv", &format!("{head}f,o,a,1,0\n")),
            "short.csv:2: 5 columns where the header has 6",
        ),
        (
            write(d, "negative.csv", &format!("{head}f,o,a,1,-1,0\n")),
            "negative.csv:2: minute 2: \"-1\" is not a count",
        ),
        (
            write(d, "nominutes.csv", "HashFunction,HashOwner,HashApp\n"),
            "no minute columns",
        ),
        (d.join("missing.csv"), "missing.csv: cannot open"),
    ];
    for (path, want) in cases {
        let (code, _, err) = replay(&["--invocations", path.to_str().unwrap()]);
        assert_eq!(code, 1, "{}", path.display());
        assert!(err.contains(want), "{}: {err}", path.display());
    }
    let inv = write(d, "ok.csv", &format!("{head}f,o,a,1,0,2\n"));
    let inv = inv.to_str().unwrap();
    let mem = write(d, "mem.csv", "HashOwner,HashApp,Mb\no,a,100\n");
    let (code, _, err) = replay(&["--invocations", inv, "--memory", mem.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        err.contains("mem.csv:1: no column \"AverageAllocatedMb\""),
        "{err}"
    );
    let mem = write(
        d,
        "mem2.csv",
        "HashOwner,HashApp,AverageAllocatedMb\no,a,lots\n",
    );
    let (code, _, err) = replay(&["--invocations", inv, "--memory", mem.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        err.contains("mem2.csv:2: AverageAllocatedMb \"lots\""),
        "{err}"
    );
    for (policy, want) in [
        ("fixed:0", "fixed:<minutes>"),
        ("lru", "unknown policy \"lru\""),
        ("", "no policy given"),
    ] {
        let (code, _, err) = replay(&["--invocations", inv, "--policy", policy]);
        assert_eq!(code, 1, "{policy}");
        assert!(err.contains(want), "{policy}: {err}");
    }
    // A good file: 3 invocations, 2 busy minutes, one cold start under any policy.
    let (code, out, err) = replay(&["--invocations", inv, "--policy", "fixed:5", "--json"]);
    assert_eq!(code, 0, "{err}");
    let r = &json_lines(&out)[0];
    assert_eq!(
        (r["invocations"].as_u64(), r["cold_starts"].as_u64()),
        (Some(3), Some(1))
    );
}

/// A file of thousands of functions (generated: sparse and bursty minutes) replays whole,
/// and two policies whose answers are known exactly give them: keeping an instance all
/// day costs one cold start per function, and a one-minute keep-alive one per busy minute
/// that follows an idle one.
#[test]
fn thousands_of_functions_replay_with_exact_answers_at_the_extremes() {
    use std::fmt::Write as _;
    let dir = tempfile::tempdir().unwrap();
    let (n, minutes) = (3000usize, 1440usize);
    let mut text = String::from("HashFunction,HashOwner,HashApp");
    for m in 1..=minutes {
        write!(text, ",{m}").unwrap();
    }
    text.push('\n');
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let (mut invocations, mut functions, mut first_colds, mut minute_colds) = (0u64, 0u64, 0, 0);
    for f in 0..n {
        // Function f is busy in a minute with probability 1 / (1 + f % 97).
        let every = 1 + (f % 97) as u64;
        write!(text, "f{f},o{f},a{f}").unwrap();
        let mut any = false;
        let mut prev_busy = false;
        for _ in 0..minutes {
            let c = if next() % every == 0 {
                next() % 50 + 1
            } else {
                0
            };
            write!(text, ",{c}").unwrap();
            invocations += c;
            if c > 0 && !prev_busy {
                minute_colds += 1;
            }
            any |= c > 0;
            prev_busy = c > 0;
        }
        text.push('\n');
        if any {
            functions += 1;
            first_colds += 1;
        }
    }
    let inv = write(dir.path(), "big_inv.csv", &text);
    let (code, out, err) = replay(&[
        "--invocations",
        inv.to_str().unwrap(),
        "--policy",
        "fixed:1440,fixed:1",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let r = json_lines(&out);
    for p in &r {
        assert_eq!(p["functions"].as_u64(), Some(functions));
        assert_eq!(p["invocations"].as_u64(), Some(invocations));
    }
    assert_eq!(
        r[0]["cold_starts"].as_u64(),
        Some(first_colds),
        "kept all day"
    );
    assert_eq!(
        r[1]["cold_starts"].as_u64(),
        Some(minute_colds),
        "kept one minute"
    );
}

/// `--model live`: the trace through the live autoscaler's code on simulated seconds. On
/// the first 40 functions: every invocation is served, a longer keep-alive has fewer cold
/// starts and wastes more, the KPA's minute to zero starts cold most, the same seed gives
/// the same answer, and without execution times the error says what to give.
#[test]
fn the_live_model_replays_through_the_live_autoscaler() {
    let (inv, mem, run) = (
        sample("500_inv.csv"),
        sample("500_mem.csv"),
        sample("500_run.csv"),
    );
    let args = [
        "--model",
        "live",
        "--invocations",
        inv.to_str().unwrap(),
        "--memory",
        mem.to_str().unwrap(),
        "--durations",
        run.to_str().unwrap(),
        "--functions",
        "40",
        "--policy",
        "fixed:10,fixed:240,kpa,predictive",
        "--json",
    ];
    let (code, out, err) = replay(&args);
    assert_eq!(code, 0, "{err}");
    let r = json_lines(&out);
    assert_eq!(r.len(), 4, "{out}");
    for p in &r {
        for key in [
            "policy",
            "model",
            "functions",
            "invocations",
            "cold_starts",
            "added_latency_p50_ms",
            "added_latency_p99_ms",
            "idle_instance_s",
            "wasted_gb_s",
            "wasted_gb_min",
            "peak_instances",
        ] {
            assert!(!p[key].is_null(), "{key} in {p}");
        }
        assert_eq!(p["model"], "live");
        assert_eq!(
            p["invocations"], r[0]["invocations"],
            "every one served: {p}"
        );
    }
    let cold = |i: usize| r[i]["cold_starts"].as_u64().unwrap();
    let waste = |i: usize| r[i]["wasted_gb_s"].as_f64().unwrap();
    assert!(cold(1) < cold(0) && waste(1) > waste(0), "{out}");
    assert!(cold(2) > cold(0), "the KPA's minute to zero: {out}");
    assert!(cold(3) < cold(0), "{out}");
    // A cold start waits about the start (10 ms by default).
    assert!(
        r[2]["added_latency_p99_ms"].as_f64().unwrap() >= 5.0,
        "{out}"
    );
    let (_, again, _) = replay(&args);
    assert_eq!(again, out, "the same seed, the same replay");

    let (code, _, err) = replay(&["--model", "live", "--invocations", inv.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("--durations"), "{err}");
}
