//! The Lambda Invoke API against a real AWS SDK (boto3), unchanged but for its endpoint URL.

// Integration tests drive real processes from plain threads against the wall clock: the
// time rule of `.clippy.toml` is for the host, not for them.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

mod common;
use std::process::Command;

use common::{repo, Host};

#[test]
fn boto3_invokes_functions_and_reads_lambda_errors() {
    let py = match common::tools_python("boto3") {
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
