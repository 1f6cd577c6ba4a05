//! The Lambda control plane against the AWS CLI, unchanged but for `--endpoint-url`:
//! create-function from a zip, `wait function-active-v2`, invoke, update-function-code to
//! new code, `wait function-updated-v2`, list-functions paged, the event-invoke and
//! concurrency configs, refused credentials, delete.

// Integration tests drive real processes from plain threads against the wall clock: the
// time rule of `.clippy.toml` is for the host, not for them.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

mod common;

use std::io::Write;
use std::path::Path;
use std::process::Command;

use common::{repo, Host};
use serde_json::Value;

/// A zip holding one example's `.wasm`.
fn package(name: &str, to: &Path) -> String {
    let mut w = zip::ZipWriter::new(std::fs::File::create(to).unwrap());
    w.start_file(
        format!("{name}.wasm"),
        zip::write::SimpleFileOptions::default(),
    )
    .unwrap();
    w.write_all(&std::fs::read(repo().join(format!("functions/{name}/{name}.wasm"))).unwrap())
        .unwrap();
    w.finish().unwrap();
    format!("fileb://{}", to.display())
}

struct Cli {
    aws: String,
    url: String,
    home: tempfile::TempDir,
}

impl Cli {
    /// `aws --endpoint-url … <args>` with the given key pair: (exit code, stdout, stderr).
    fn run_as(&self, key: (&str, &str), args: &[&str]) -> (i32, String, String) {
        let out = Command::new(&self.aws)
            .args(["--endpoint-url", &self.url, "--output", "json"])
            .args(args)
            .env("HOME", self.home.path())
            .env("AWS_ACCESS_KEY_ID", key.0)
            .env("AWS_SECRET_ACCESS_KEY", key.1)
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env("AWS_MAX_ATTEMPTS", "1")
            .env_remove("AWS_PROFILE")
            .output()
            .expect("run aws");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    }

    /// Run with the host's key and parse the JSON it prints (none: Null).
    fn ok(&self, args: &[&str]) -> Value {
        let (code, out, err) = self.run_as(("test", "test"), args);
        assert_eq!(code, 0, "aws {args:?}: {err}");
        if out.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&out).unwrap_or_else(|e| panic!("aws {args:?}: {e}: {out}"))
        }
    }
}

#[test]
fn the_aws_cli_deploys_invokes_updates_and_deletes() {
    let py = match common::tools_python("awscli") {
        Ok(p) => p,
        Err(why) => return common::skip("the_aws_cli_deploys_invokes_updates_and_deletes", &why),
    };
    let aws = Path::new(&py).with_file_name("aws");
    let h = Host::start_with(&["echo"], common::LAMBDA_KEYS);
    let cli = Cli {
        aws: aws.display().to_string(),
        url: h.url.clone(),
        home: tempfile::tempdir().unwrap(),
    };
    let dir = tempfile::tempdir().unwrap();
    let echo_zip = package("echo", &dir.path().join("echo.zip"));
    let flaky_zip = package("flaky", &dir.path().join("flaky.zip"));

    let created = cli.ok(&[
        "lambda",
        "create-function",
        "--function-name",
        "cli-fn",
        "--runtime",
        "provided.al2023",
        "--role",
        "arn:aws:iam::000000000000:role/r",
        "--handler",
        "echo.wasm",
        "--zip-file",
        &echo_zip,
        "--timeout",
        "5",
        "--memory-size",
        "128",
    ]);
    assert_eq!(created["State"], "Pending", "{created}");
    cli.ok(&[
        "lambda",
        "wait",
        "function-active-v2",
        "--function-name",
        "cli-fn",
    ]);
    let out = dir.path().join("out.json");
    let r = cli.ok(&[
        "lambda",
        "invoke",
        "--function-name",
        "cli-fn",
        "--payload",
        "{\"cli\": 1}",
        out.to_str().unwrap(),
    ]);
    assert_eq!(r["StatusCode"], 200);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "{\"cli\": 1}");

    let u = cli.ok(&[
        "lambda",
        "update-function-code",
        "--function-name",
        "cli-fn",
        "--zip-file",
        &flaky_zip,
    ]);
    assert_eq!(u["LastUpdateStatus"], "InProgress", "{u}");
    cli.ok(&[
        "lambda",
        "wait",
        "function-updated-v2",
        "--function-name",
        "cli-fn",
    ]);
    cli.ok(&[
        "lambda",
        "invoke",
        "--function-name",
        "cli-fn",
        "--payload",
        "{\"id\": 5}",
        out.to_str().unwrap(),
    ]);
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(
        (v["ok"].as_bool(), v["id"].as_i64()),
        (Some(true), Some(5)),
        "the new code runs"
    );
    let conf = cli.ok(&[
        "lambda",
        "get-function-configuration",
        "--function-name",
        "cli-fn",
    ]);
    // The CLI keeps only the fields of its model: the version number is the host's.
    assert_eq!(h.function("cli-fn").unwrap()["version"], 2, "{conf}");
    assert_eq!(conf["Handler"], "flaky.wasm");

    // list-functions, one per page: the CLI follows NextMarker to the end.
    let all = cli.ok(&["lambda", "list-functions", "--page-size", "1"]);
    let names: Vec<&str> = all["Functions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["FunctionName"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["cli-fn", "echo"]);

    let c = cli.ok(&[
        "lambda",
        "put-function-event-invoke-config",
        "--function-name",
        "cli-fn",
        "--maximum-retry-attempts",
        "1",
        "--destination-config",
        "{\"OnFailure\": {\"Destination\": \"arn:aws:sqs:us-east-1:000000000000:failed\"}}",
    ]);
    assert_eq!(c["MaximumRetryAttempts"], 1);
    let g = cli.ok(&[
        "lambda",
        "get-function-event-invoke-config",
        "--function-name",
        "cli-fn",
    ]);
    assert_eq!(
        g["DestinationConfig"]["OnFailure"]["Destination"],
        "arn:aws:sqs:us-east-1:000000000000:failed"
    );

    cli.ok(&[
        "lambda",
        "put-function-concurrency",
        "--function-name",
        "cli-fn",
        "--reserved-concurrent-executions",
        "0",
    ]);
    let (code, _, err) = cli.run_as(
        ("test", "test"),
        &[
            "lambda",
            "invoke",
            "--function-name",
            "cli-fn",
            "--payload",
            "{}",
            out.to_str().unwrap(),
        ],
    );
    assert_ne!(code, 0);
    assert!(err.contains("TooManyRequestsException"), "{err}");
    cli.ok(&[
        "lambda",
        "delete-function-concurrency",
        "--function-name",
        "cli-fn",
    ]);

    // Wrong credentials: refused with AWS's 403 types, and nothing changes.
    let (code, _, err) = cli.run_as(
        ("nobody", "x"),
        &["lambda", "delete-function", "--function-name", "echo"],
    );
    assert_ne!(code, 0);
    assert!(err.contains("UnrecognizedClientException"), "{err}");
    let (code, _, err) = cli.run_as(
        ("test", "wrong"),
        &["lambda", "delete-function", "--function-name", "echo"],
    );
    assert_ne!(code, 0);
    assert!(err.contains("InvalidSignatureException"), "{err}");
    assert_eq!(
        cli.ok(&["lambda", "get-function", "--function-name", "echo"])["Configuration"]["State"],
        "Active"
    );

    cli.ok(&["lambda", "delete-function", "--function-name", "cli-fn"]);
    let (code, _, err) = cli.run_as(
        ("test", "test"),
        &["lambda", "get-function", "--function-name", "cli-fn"],
    );
    assert_ne!(code, 0);
    assert!(err.contains("ResourceNotFoundException"), "{err}");
}
