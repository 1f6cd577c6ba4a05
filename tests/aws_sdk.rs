//! The Lambda Invoke API against a real AWS SDK (boto3), unchanged but for its endpoint URL.

// Integration tests drive real processes from plain threads against the wall clock: the
// time rule of `.clippy.toml` is for the host, not for them.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

mod common;
use std::process::Command;

use common::{repo, Host};

fn python_with_boto3() -> Result<String, String> {
    let tools = std::env::var("SURGE_TOOLS_DIR").unwrap_or_else(|_| {
        format!(
            "{}/.cache/surge-tools",
            std::env::var("HOME").unwrap_or_default()
        )
    });
    let py = format!("{tools}/venv/bin/python");
    let ok = Command::new(&py)
        .args(["-c", "import boto3"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if ok {
        Ok(py)
    } else {
        Err(format!("{py} has no boto3 (scripts/test.sh installs it)"))
    }
}

#[test]
fn boto3_invokes_functions_and_reads_lambda_errors() {
    let py = match python_with_boto3() {
        Ok(p) => p,
        Err(why) => return common::skip("boto3_invokes_functions_and_reads_lambda_errors", &why),
    };
    let h = Host::start(&["echo", "memhog"]);
    let out = Command::new(py)
        .arg(repo().join("tests/aws_sdk.py"))
        .arg(&h.url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        seen["echo"],
        serde_json::json!([200, "{\"a\": 1}", null, "1"])
    );
    assert_eq!(seen["memhog"][0], 200);
    assert_eq!(seen["memhog"][1], "Runtime.OutOfMemory");
    assert_eq!(seen["memhog"][2], "Unhandled");
    assert!(
        seen["memhog"][3]
            .as_str()
            .unwrap()
            .contains("out of memory"),
        "{seen}"
    );
    assert_eq!(seen["missing"], "ResourceNotFoundException");
    assert_eq!(seen["event"], 202);
}
