//! Invocation records through a real host and the real CLI: `surge logs` shows the requests
//! just sent with their REPORT lines, a cold start is flagged, `--follow` receives a new
//! record as it is stored, and records survive a restart. Also `--log-format json` and
//! `surge deploy`'s stages.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)] // wall-clock waits in a test

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;

fn records(h: &Host, extra: &[&str]) -> Vec<serde_json::Value> {
    let mut args = vec!["logs", "echo", "--json"];
    args.extend_from_slice(extra);
    let (code, out, err) = h.cli(&args);
    assert_eq!(code, 0, "surge logs failed: {err}");
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[test]
fn logs_show_reports_flag_cold_starts_follow_and_survive_a_restart() {
    if let Err(why) = cgroups_writable() {
        skip(
            "logs_show_reports_flag_cold_starts_follow_and_survive_a_restart",
            &why,
        );
        return;
    }
    let mut h = Host::start(&["echo"]);
    let mut sent = vec![];
    for i in 0..3 {
        let r = h.invoke("echo", format!("{{\"i\":{i}}}").as_bytes());
        assert_eq!(r.status, 200, "{}", r.text());
        sent.push(
            r.header("x-amzn-requestid")
                .expect("a request id")
                .to_string(),
        );
    }
    // Through the route too: it gets a request id as well.
    let r = h.post("/echo", b"{\"via\":\"route\"}");
    assert_eq!(r.status, 200);
    sent.push(
        r.header("x-amzn-requestid")
            .expect("a request id")
            .to_string(),
    );

    let (code, text, err) = h.cli(&["logs", "echo"]);
    assert_eq!(code, 0, "{err}");
    for rid in &sent {
        assert!(
            text.contains(&format!("REPORT RequestId: {rid}\tDuration: ")),
            "no REPORT for {rid} in:\n{text}"
        );
        assert!(text.contains(&format!("START RequestId: {rid} Version: 1")));
    }
    assert!(text.contains("Billed Duration: ") && text.contains("Memory Size: 64 MB"));
    let json = records(&h, &[]);
    assert_eq!(json.len(), 4, "{json:?}");
    for r in &json {
        assert_eq!(r["outcome"], "ok");
        assert!(r["sandbox_pid"].as_u64().is_some(), "{r}");
        assert!(r["max_memory_bytes"].as_u64().unwrap() > 0, "{r}");
    }
    assert!(records(&h, &["--errors"]).is_empty());

    // A restart brings echo back at zero: the next request is a cold start.
    h.restart();
    let r = h.invoke("echo", b"{\"after\":\"restart\"}");
    assert_eq!(r.status, 200);
    let cold = r.header("x-amzn-requestid").unwrap().to_string();
    let json = records(&h, &[]);
    let ids: Vec<&str> = json
        .iter()
        .map(|r| r["request_id"].as_str().unwrap())
        .collect();
    for rid in &sent {
        assert!(
            ids.contains(&rid.as_str()),
            "{rid} lost in the restart: {ids:?}"
        );
    }
    let c = json
        .iter()
        .find(|r| r["request_id"] == cold.as_str())
        .unwrap();
    assert_eq!(c["cold_start"], true, "{c}");
    assert!(c["init_ms"].as_f64().unwrap() > 0.0, "{c}");
    let (_, text, _) = h.cli(&["logs", "echo"]);
    let report = text
        .lines()
        .find(|l| l.contains(&format!("REPORT RequestId: {cold}")))
        .unwrap();
    assert!(
        report.contains("Init Duration: ") && report.contains("Cold Start: yes"),
        "{report}"
    );

    // --follow: the backlog first (its last record shows the stream is open), then a new
    // record as soon as it is stored.
    let mut follow = Command::new(SURGE)
        .args(["logs", "echo", "--follow", "--json", "--state-dir"])
        .arg(h.state_dir())
        .env_remove("SURGE_URL")
        .env_remove("SURGE_ADMIN_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    let out = follow.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let request_id = |line: &str| -> String {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        v["request_id"].as_str().unwrap().to_string()
    };
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the backlog through --follow");
        if request_id(&line) == cold {
            break;
        }
    }
    let r = h.invoke("echo", b"{\"followed\":true}");
    let sent_at = Instant::now();
    let new = r.header("x-amzn-requestid").unwrap().to_string();
    let line = rx
        .recv_timeout(Duration::from_secs(1))
        .expect("--follow received the new record within a second");
    let took = sent_at.elapsed();
    assert_eq!(request_id(&line), new);
    eprintln!("--follow: the record arrived {took:?} after its response");
    let _ = follow.kill();
    let _ = follow.wait();

    // Unknown functions with no records: a clear error naming the function.
    let (code, _, err) = h.cli(&["logs", "nosuch"]);
    assert_ne!(code, 0);
    assert!(err.contains("nosuch"), "{err}");
    // Bad input is named.
    let (code, _, err) = h.cli(&["logs", "echo", "--since", "yesterday"]);
    assert_ne!(code, 0);
    assert!(err.contains("since"), "{err}");
    // The store's figures are in /metrics.
    let m = h.get("/metrics").text();
    assert!(m.contains("surge_log_records 6"), "{m}");
}

#[test]
fn json_host_logs_and_deploy_stages() {
    if let Err(why) = cgroups_writable() {
        skip("json_host_logs_and_deploy_stages", &why);
        return;
    }
    let h = Host::start_with_args(&["echo"], "", &["--log-format", "json"]);
    // Deploy a copy of echo under a new name: its stages come as plain lines (no terminal
    // here), then the result; stderr stays empty.
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        repo().join("functions/echo/echo.wasm"),
        dir.path().join("echo.wasm"),
    )
    .unwrap();
    let manifest = dir.path().join("function.toml");
    std::fs::write(
        &manifest,
        "name = \"greet\"\nhandler = \"echo.wasm\"\nroute = \"/greet\"\n",
    )
    .unwrap();
    let (code, out, err) = h.cli(&["deploy", manifest.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(err.is_empty(), "{err}");
    let stages: Vec<&str> = out.lines().collect();
    assert!(stages[0].starts_with("hashing "), "{out}");
    assert_eq!(stages[1], "compiling", "{out}");
    assert!(stages[2].starts_with("compiled in "), "{out}");
    assert_eq!(stages[3], "starting the sandbox", "{out}");
    assert!(stages[4].starts_with("ready in "), "{out}");
    assert_eq!(stages[5], "deployed greet version 1 (event)", "{out}");
    // A failing deploy still says why, naming the file.
    std::fs::write(
        &manifest,
        "name = \"greet\"\nhandler = \"echo.wasm\"\nbogus = 1\n",
    )
    .unwrap();
    let (code, _, err) = h.cli(&["deploy", manifest.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(
        err.contains("function.toml") && err.contains("bogus"),
        "{err}"
    );

    // The host's own lines are JSON objects with the structured fields.
    let log = h.stderr_so_far();
    let deployed = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["message"] == "deployed" && v["function"] == "greet")
        .unwrap_or_else(|| panic!("no JSON `deployed` line for greet in:\n{log}"));
    assert_eq!(deployed["version"], 1);
    assert_eq!(deployed["level"], "INFO");
    assert!(deployed["timestamp"].is_string());
}

#[test]
fn an_http_components_stderr_is_in_its_record() {
    if let Err(why) = cgroups_writable() {
        skip(
            "an_http_components_stderr_is_in_its_record_and_its_log_tail",
            &why,
        );
        return;
    }
    let h = Host::start(&["hello"]);
    let ok = h.get("/hello?log=first%20line&log=second");
    assert_eq!(ok.status, 200, "{}", ok.text());
    let ok_id = ok.header("x-amzn-requestid").unwrap().to_string();
    // A request that writes nothing leaves no log behind from the one before (the
    // instance is reused).
    let quiet = h.get("/hello");
    let quiet_id = quiet.header("x-amzn-requestid").unwrap().to_string();
    // A raise: the trap's record carries the traceback the guest wrote.
    let failed = h.get("/hello?log=about%20to%20raise&raise=1");
    assert_eq!(failed.status, 500);
    let failed_id = failed.header("x-amzn-requestid").unwrap().to_string();
    let (code, out, err) = h.cli(&["logs", "hello", "--json"]);
    assert_eq!(code, 0, "{err}");
    let records: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let find = |id: &str| {
        records
            .iter()
            .find(|r| r["request_id"] == id)
            .unwrap()
            .clone()
    };
    assert_eq!(find(&ok_id)["log"], "first line\nsecond\n");
    assert!(find(&ok_id)["max_memory_bytes"].as_u64().unwrap() > 1 << 20);
    assert_eq!(find(&quiet_id)["log"], "");
    let f = find(&failed_id);
    assert_ne!(f["outcome"], "ok", "{f}");
    let log = f["log"].as_str().unwrap();
    assert!(
        log.starts_with("about to raise\n") && log.contains("asked to raise"),
        "{log}"
    );
}
