//! The dashboard in a real browser: Debian's Chromium driven by playwright-core
//! (tests/browser/dashboard.mjs) against a real host. It logs in once with the admin token,
//! sends traffic to `echo`, and the page's requests/s and instance plots must change; a
//! screenshot goes to target/test-output/dashboard.png. Without the token, the page and its
//! data endpoint answer 401.

// Integration tests wait on the wall clock for real processes.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

/// What the browser test needs, or why it cannot run here.
fn browser() -> Result<(), String> {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !Path::new(&chromium).exists() {
        return Err(format!(
            "{chromium} is missing (scripts/test.sh installs Debian's chromium)"
        ));
    }
    if !repo()
        .join("tests/browser/node_modules/playwright-core")
        .exists()
    {
        return Err("tests/browser/node_modules/playwright-core is missing (scripts/test.sh runs npm ci there)".into());
    }
    Command::new("node")
        .arg("--version")
        .output()
        .map_err(|e| format!("node: {e}"))?;
    Ok(())
}

#[test]
fn dashboard_plots_live_traffic_in_a_real_browser() {
    if let Err(why) = cgroups_writable() {
        skip("dashboard_plots_live_traffic_in_a_real_browser", &why);
        return;
    }
    if let Err(why) = browser() {
        skip("dashboard_plots_live_traffic_in_a_real_browser", &why);
        return;
    }
    let h = Host::start(&["echo"]);
    let token = h.token();

    // Without the token: 401 for the page and its data; a wrong bearer is no better.
    assert_eq!(h.get("/dashboard").status, 401);
    assert_eq!(h.get("/dashboard/data").status, 401);
    let wrong = h.request(
        "GET",
        "/dashboard/data",
        &[("authorization", "Bearer nope")],
        b"",
    );
    assert_eq!(wrong.status, 401);
    let wrong_cookie = h.request(
        "GET",
        "/dashboard",
        &[("cookie", "surge_dashboard=00")],
        b"",
    );
    assert_eq!(wrong_cookie.status, 401);
    // With it as a bearer, the page (with its chart library inlined) and the data.
    let auth = format!("Bearer {token}");
    let page = h.request("GET", "/dashboard", &[("authorization", &auth)], b"");
    assert_eq!(page.status, 200);
    assert!(page.text().contains("uPlot"));
    let data = h.request("GET", "/dashboard/data", &[("authorization", &auth)], b"");
    assert_eq!(data.status, 200);
    let v: serde_json::Value = serde_json::from_slice(&data.body).unwrap();
    assert!(v["node"]["cpu_capacity"].is_array(), "{v}");
    // `surge dashboard` prints the URL and a log-in link.
    let (code, out, err) = h.cli(&["dashboard"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!("{}/dashboard/login#token={token}", h.url)),
        "{out}"
    );

    let out_dir = repo().join("target/test-output");
    std::fs::create_dir_all(&out_dir).unwrap();
    let shot = out_dir.join("dashboard.png");
    let _ = std::fs::remove_file(&shot);
    let run = Command::new("node")
        .arg(repo().join("tests/browser/dashboard.mjs"))
        .arg(&h.url)
        .arg(&token)
        .arg(&shot)
        .output()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "the browser script failed: {}\n{stdout}",
        String::from_utf8_lossy(&run.stderr)
    );
    let r: serde_json::Value = serde_json::from_str(stdout.trim().lines().last().unwrap())
        .unwrap_or_else(|e| panic!("{e}: {stdout}"));
    eprintln!("browser: {r}");
    assert_eq!(r["unauthenticatedStatus"], 401);
    assert_eq!(r["cookie"]["httpOnly"], true, "{r}");
    assert_eq!(r["cookie"]["sameSite"], "Strict", "{r}");
    assert_eq!(r["pageErrors"].as_array().unwrap().len(), 0, "{r}");
    assert!(r["ok"].as_u64().unwrap() > 100, "{r}");
    let nums = |k: &str, when: &str| -> Vec<f64> {
        r[when][k]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap_or(0.0))
            .collect()
    };
    let max = |v: &[f64]| v.iter().cloned().fold(0.0, f64::max);
    // Requests/s: nothing before the traffic, then the traffic.
    assert_eq!(max(&nums("rps", "before")), 0.0, "{r}");
    assert!(max(&nums("rps", "after")) > 10.0, "{r}");
    // Instances: the plot moved (scaled up under four clients, or up from zero).
    let (ready_before, ready_after) = (nums("ready", "before"), nums("ready", "after"));
    let last_before = *ready_before.last().unwrap();
    assert!(
        max(&ready_after) > last_before
            || nums("desired", "after").iter().any(|&d| d > last_before),
        "the instance plot did not change: {r}"
    );
    assert!(r["after"]["points"].as_u64() > r["before"]["points"].as_u64());
    // The DOM shows it too, and the charts were drawn (7 per function, 2 for the node).
    assert_ne!(r["after"]["domRps"], "–");
    assert!(r["canvases"].as_u64().unwrap() >= 7, "{r}");
    assert!(r["nodeCanvases"].as_u64().unwrap() >= 2, "{r}");
    assert!(
        r["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e == "deploy:echo"),
        "{r}"
    );
    assert_eq!(r["dataWithSession"], 200);
    assert_eq!(r["dataWithout"], 401);
    assert_eq!(r["pageWithout"], 401);
    let png = std::fs::read(&shot).expect("the screenshot");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
}
