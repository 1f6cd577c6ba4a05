//! Deploy, redeploy, remove and restart: all or nothing, nothing lost.

// Integration tests drive real processes from plain threads against the wall clock: the
// time rule of `.clippy.toml` is for the host, not for them.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

mod common;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::{copy_function, Host};

fn write_manifest(dir: &Path, body: &str) -> std::path::PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let p = dir.join("function.toml");
    std::fs::write(&p, body).unwrap();
    p
}

#[test]
fn a_redeploy_under_steady_traffic_loses_no_request() {
    let h = Host::start(&[]);
    // Two versions of one function "svc": v1 runs echo, v2 runs spin, so every answer
    // says which version served it. Each version's folder holds its own handler.
    let root = h.dir.path().join("src");
    let manifest =
        "name = \"svc\"\nhandler = \"h.wasm\"\nroute = \"/svc\"\n[scaling]\nmin_instances = 2\n";
    let version = |dir: &str, example: &str| {
        let d = root.join(dir);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::copy(
            common::repo().join(format!("functions/{example}/{example}.wasm")),
            d.join("h.wasm"),
        )
        .unwrap();
        write_manifest(&d, manifest)
    };
    let (m1, m2) = (version("v1", "echo"), version("v2", "spin"));
    let (code, _, err) = h.cli(&["deploy", m1.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");

    let stop = Arc::new(AtomicBool::new(false));
    let addr = h.addr.clone();
    let clients: Vec<_> = (0..4)
        .map(|i| {
            let (stop, addr) = (stop.clone(), addr.clone());
            std::thread::spawn(move || {
                let (mut old, mut new, mut bad) = (0, 0, Vec::new());
                let event = format!("{{\"n\":1000,\"client\":{i}}}");
                while !stop.load(Ordering::Relaxed) || old + new < 20 {
                    let r = common::http(&addr, "POST", "/svc", &[], event.as_bytes());
                    match (r.status, r.text()) {
                        (200, t) if t == event => old += 1,
                        (200, t) if t.starts_with("{\"n\":1000,\"result\":") => new += 1,
                        other => bad.push(other),
                    }
                    if old + new + bad.len() > 100_000 {
                        break;
                    }
                }
                (old, new, bad)
            })
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let (code, out, err) = h.cli(&["deploy", m2.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("version 2"), "{out}");
    std::thread::sleep(std::time::Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let (mut old, mut new) = (0, 0);
    for c in clients {
        let (o, n, bad) = c.join().unwrap();
        assert!(
            bad.is_empty(),
            "lost or failed requests during the redeploy: {bad:?}"
        );
        old += o;
        new += n;
    }
    println!("redeploy under load: {old} answers from v1, {new} from v2, 0 lost");
    assert!(
        old > 0 && new > 0,
        "traffic spanned the switch: {old} old, {new} new"
    );
    // The old version's sandbox is gone once drained.
    assert_eq!(h.function("svc").unwrap()["version"], 2);
}

#[test]
fn deployments_survive_a_restart() {
    let mut h = Host::start(&["echo"]);
    // A function deployed through the CLI from a folder that then disappears.
    let src = h.dir.path().join("elsewhere/mirror");
    copy_function("echo", &src);
    let m = src.join("function.toml");
    let text = std::fs::read_to_string(&m)
        .unwrap()
        .replace("name = \"echo\"", "name = \"mirror\"")
        .replace("route = \"/echo\"", "route = \"/mirror\"");
    std::fs::write(&m, text).unwrap();
    let (code, _, err) = h.cli(&["deploy", m.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    std::fs::remove_dir_all(&src).unwrap();
    let before = h.function("mirror").unwrap();

    h.restart();
    let after = h
        .function("mirror")
        .expect("mirror is still deployed after a restart");
    assert_eq!(after["version"], before["version"]);
    assert_eq!(after["wasm_sha256"], before["wasm_sha256"]);
    assert_eq!(h.post("/mirror", b"back").text(), "back");
    assert_eq!(h.post("/echo", b"also").text(), "also");
    // A removed function stays removed across a restart.
    assert_eq!(h.cli(&["remove", "mirror"]).0, 0);
    h.restart();
    assert!(h.function("mirror").is_none());
}

#[test]
fn bad_manifests_are_refused_with_their_exact_errors_and_change_nothing() {
    let h = Host::start(&["echo"]);
    let base = h.dir.path().join("bad");
    // What a failed deploy must not change: which versions are live, with what code, in
    // which sandbox. (Live figures such as warm instances and cgroup usage move on their own.)
    let deployed = || {
        let v: serde_json::Value =
            serde_json::from_slice(&h.admin("GET", "/admin/v1/functions").body).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .map(|f| {
                let keys = [
                    "name",
                    "version",
                    "kind",
                    "route",
                    "wasm_sha256",
                    "sandbox_pid",
                ];
                keys.iter().map(|k| f[*k].to_string()).collect::<Vec<_>>()
            })
            .collect::<Vec<_>>()
    };
    let before = deployed();
    let good_head = "name = \"badfn\"\nhandler = \"h.wasm\"\nroute = \"/bad\"\n";
    let echo_wasm = std::fs::read(common::repo().join("functions/echo/echo.wasm")).unwrap();
    let unsupported = wat::parse_str(
        r#"(module (import "env" "launch_missiles" (func)) (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32))) (memory (export "memory") 1) (func (export "_start")))"#,
    )
    .unwrap();
    let no_start = wat::parse_str(r#"(module (memory (export "memory") 1))"#).unwrap();
    type Case<'a> = (&'a str, String, Option<Vec<u8>>, String);
    let cases: Vec<Case> = vec![
        (
            "unknown-key",
            format!("{good_head}colour = \"red\"\n"),
            Some(echo_wasm.clone()),
            "function.toml:4: unknown field `colour`, expected one of `name`, `handler`, `kind`, `route`, `limits`, `scaling`, `vertical`, `env`".into(),
        ),
        (
            "bad-quantity",
            format!("{good_head}[limits]\nmemory = \"lots\"\n"),
            Some(echo_wasm.clone()),
            "function.toml:5: key `limits.memory`: invalid quantity \"lots\"".into(),
        ),
        ("missing-handler", good_head.to_string(), None, "function.toml: key `handler`:".into()),
        (
            "text-handler",
            good_head.to_string(),
            Some(b"#!/bin/sh\necho not wasm\n".to_vec()),
            "h.wasm: not a WebAssembly binary (no \\0asm header)".into(),
        ),
        (
            "unsupported-imports",
            good_head.to_string(),
            Some(unsupported),
            "h.wasm: unsupported imports: env::launch_missiles; surge links WASI preview1 for event handlers and WASI 0.2 plus wasi:http 0.2 for http components".into(),
        ),
        (
            "no-start",
            good_head.to_string(),
            Some(no_start),
            "h.wasm: an event handler must be a WASI command exporting `_start`".into(),
        ),
        (
            "kind-mismatch",
            format!("{good_head}kind = \"http\"\n"),
            Some(echo_wasm.clone()),
            "h.wasm: the manifest says kind = \"http\" but the binary is an event handler".into(),
        ),
        (
            "route-taken",
            good_head.replace("/bad", "/echo"),
            Some(echo_wasm.clone()),
            "function.toml: key `route`: \"/echo\" is already the route of function echo".into(),
        ),
        ("path-escape", good_head.replace("h.wasm", "../../../etc/passwd"), None, "function.toml:2: key `handler`: \"../../../etc/passwd\" is outside the function's folder".into()),
    ];
    for (case, manifest, wasm, want) in cases {
        let dir = base.join(case);
        let m = write_manifest(&dir, &manifest);
        if let Some(w) = wasm {
            std::fs::write(dir.join("h.wasm"), w).unwrap();
        }
        let (code, out, err) = h.cli(&["deploy", m.to_str().unwrap()]);
        assert_eq!(code, 1, "{case}: deploy should fail: {out}");
        let line = err.trim();
        assert!(line.starts_with("error: "), "{case}: {line}");
        assert!(
            line.contains(&want),
            "{case}:\n  got: {line}\n want: …{want}…"
        );
        assert_eq!(line.lines().count(), 1, "{case}: one line");
    }
    assert_eq!(deployed(), before, "the registry is unchanged");
}

#[test]
fn a_function_still_deploying_at_start_is_waited_for_never_404() {
    // A compile cache of its own: hello (an 18 MB component) compiles after `listening on`.
    let h = Host::start_listening(&["hello", "echo"]);
    let listed = |name: &str| {
        let r = h.admin("GET", "/admin/v1/functions");
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        v.as_array().unwrap().iter().any(|f| f["name"] == name)
    };
    assert!(
        !listed("hello"),
        "hello must still be deploying when the first requests go out"
    );
    // Each surface from its own thread, so one waiting does not hold the other back: the
    // route, and the Invoke API by name for the slow function and the quick one.
    let answers = std::thread::scope(|s| {
        let probes: Vec<_> = [("/hello", 0), ("invoke hello", 1), ("invoke echo", 2)]
            .into_iter()
            .map(|(what, which)| {
                let h = &h;
                s.spawn(move || {
                    let mut seen = Vec::new();
                    loop {
                        let ready = h.ready.load(Ordering::Acquire);
                        let r = match which {
                            0 => h.get("/hello"),
                            1 => h.invoke("hello", b"{}"),
                            _ => h.invoke("echo", b"{}"),
                        };
                        assert!(
                            r.status == 200 || r.status == 503 || r.status == 429,
                            "{what} while the host deploys: {} {}",
                            r.status,
                            r.text()
                        );
                        if r.status == 503 {
                            assert_eq!(r.header("retry-after"), Some("1"), "{what}");
                        }
                        seen.push((what, ready, r.status));
                        if ready {
                            return seen;
                        }
                        std::thread::sleep(std::time::Duration::from_millis(20));
                    }
                })
            })
            .collect();
        probes
            .into_iter()
            .flat_map(|p| p.join().unwrap())
            .collect::<Vec<_>>()
    });
    // Requests went out while the host was still deploying, and none was told 404.
    assert!(
        answers
            .iter()
            .any(|(what, ready, _)| what.contains("hello") && !ready),
        "{answers:?}"
    );
    assert_eq!(h.get("/hello").status, 200);
    assert_eq!(h.invoke("echo", b"{}").status, 200);
    // What is not a function is still 404.
    assert_eq!(h.get("/nowhere").status, 404);
    assert_eq!(h.invoke("nope", b"{}").status, 404);
    let mut counts = std::collections::BTreeMap::new();
    for a in &answers {
        *counts.entry(a).or_insert(0) += 1;
    }
    eprintln!("answers (surface, host ready, status): {counts:?}");
}
