//! The Lambda API against a real AWS SDK (boto3), unchanged but for its endpoint URL: the
//! Invoke API, the control plane's reads (ListFunctions paged, GetFunction,
//! GetFunctionConfiguration) and the event-invoke-config calls.

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
    let h = Host::start_with(&["echo", "memhog"], common::LAMBDA_KEYS);
    let out = Command::new(py)
        .arg(repo().join("tests/aws_sdk.py"))
        .arg(&h.url)
        .arg(repo())
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
    assert_eq!(
        seen["event_invoke_config"],
        serde_json::json!({
            "put": [1, "arn:aws:sqs:us-east-1:000000000000:failed"],
            "update": [1, 120, "arn:aws:sqs:us-east-1:000000000000:failed"],
            "get": ["arn:aws:lambda:us-east-1:000000000000:function:echo", 120, true],
            "list": [1],
            "bad": "InvalidParameterValueException",
            "deleted": "ResourceNotFoundException",
        })
    );

    let cp = &seen["control_plane"];
    assert_eq!(
        cp["created"],
        serde_json::json!(["Pending", "provided.al2023", "echo.wasm"])
    );
    assert_eq!(
        cp["active"],
        serde_json::json!(["Active", "Successful", 128, 5, {"GREETING": "hello"}])
    );
    assert_eq!(cp["first"], "{\"made\": 1}");
    assert_eq!(cp["again"], "ResourceConflictException");
    assert_eq!(cp["update_status"], "InProgress");
    assert_eq!(
        cp["second"],
        serde_json::json!([true, 7]),
        "the new code runs"
    );
    assert_eq!(
        cp["after"],
        serde_json::json!([256, 7, {"MODE": "b"}, "Successful", "provided.al2023"])
    );
    assert_eq!(cp["published"], serde_json::json!(["3", true]), "{cp}");
    assert_eq!(cp["versions"], serde_json::json!(["$LATEST", "3"]));
    assert!(
        cp["broken"]
            .as_str()
            .unwrap()
            .contains("Code.ZipFile is not a zip file"),
        "{cp}"
    );
    assert_eq!(
        cp["denied"],
        serde_json::json!([403, "InvalidSignatureException"])
    );
    assert_eq!(cp["qualified"], "InvalidParameterValueException");
    assert_eq!(cp["still"], "Active", "a refused call changes nothing");
    assert_eq!(
        seen["failed_create"],
        serde_json::json!(["WaiterError", "Failed", true, ["Failed"], []]),
        "{seen}"
    );
    assert_eq!(cp["deleted"], "ResourceNotFoundException");

    let cc = &seen["concurrency"];
    assert_eq!(cc["reserved"], 0, "{cc}");
    assert_eq!(
        cc["throttled"],
        serde_json::json!([429, "ReservedFunctionConcurrentInvocationLimitExceeded"])
    );
    assert_eq!(cc["after_delete"], serde_json::Value::Null);
    assert_eq!(cc["invoke_again"], 200);
    assert!(
        ["IN_PROGRESS", "READY"].contains(&cc["first_status"].as_str().unwrap()),
        "{cc}"
    );
    assert_eq!(cc["last_status"], "READY", "{cc}");
    assert_eq!(cc["available"], 2);
    assert_eq!(
        cc["deleted"],
        "ProvisionedConcurrencyConfigNotFoundException"
    );

    // ListFunctions, one per page, in name order.
    assert_eq!(seen["pages"], serde_json::json!([["echo"], ["memhog"]]));
    // GetFunction: Lambda's fields, filled in truthfully.
    let c = &seen["echo_conf"];
    let wasm = std::fs::read(repo().join("functions/echo/echo.wasm")).unwrap();
    let sha = sha256_base64(&wasm);
    assert_eq!(c["FunctionName"], "echo");
    assert_eq!(
        c["FunctionArn"],
        "arn:aws:lambda:us-east-1:000000000000:function:echo"
    );
    assert_eq!(c["CodeSha256"], sha.as_str(), "{c}");
    assert_eq!(c["CodeSize"], wasm.len() as u64);
    assert_eq!(
        (c["MemorySize"].as_u64(), c["Timeout"].as_u64()),
        (Some(64), Some(5))
    );
    assert_eq!(c["Handler"], "echo.wasm");
    assert_eq!(c["Environment"]["Variables"]["GREETING"], "hi");
    assert_eq!(
        (c["State"].as_str(), c["LastUpdateStatus"].as_str()),
        (Some("Active"), Some("Successful"))
    );
    assert_eq!(c["Version"], "$LATEST");
    assert!(
        c["LastModified"].as_str().unwrap().ends_with(".000+0000"),
        "{c}"
    );
    assert!(!c["RevisionId"].as_str().unwrap().is_empty());
    assert_eq!(seen["memhog_conf"], "memhog");
    assert_eq!(seen["get_missing"], "ResourceNotFoundException");
    // MaxItems out of range: Lambda's 400, which boto3 checks before sending.
    let auth = format!("Bearer {}", h.token());
    let r = h.request(
        "GET",
        "/2015-03-31/functions/?MaxItems=0",
        &[("authorization", &auth)],
        b"",
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(
        r.header("x-amzn-errortype"),
        Some("InvalidParameterValueException")
    );
}

/// The SHA-256 of `bytes`, base64, as Lambda's `CodeSha256` gives it: by `sha256sum`, so the
/// test does not share the host's hashing.
fn sha256_base64(bytes: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("code");
    std::fs::write(&f, bytes).unwrap();
    let out = Command::new("sha256sum").arg(&f).output().unwrap();
    let hex = String::from_utf8_lossy(&out.stdout);
    let hex = hex.split_whitespace().next().unwrap();
    let raw: Vec<u8> = (0..32)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(raw)
}
