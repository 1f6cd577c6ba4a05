//! Golden tests: each bad manifest with the exact error a user sees.

use super::*;

fn defaults() -> config::Defaults {
    HostConfig::embedded().defaults
}

fn parse(text: &str) -> Result<FunctionSpec, String> {
    FunctionSpec::parse(Path::new("functions/x/function.toml"), text, &defaults())
        .map_err(|e| e.to_string())
}

const GOOD: &str = r#"
name = "hello-py"
handler = "hello.wasm"
kind = "http"
route = "/hello"

[limits]
memory = "128Mi"
cpu = "250m"
timeout = "10s"
max_body = "6Mi"

[scaling]
min_instances = 0
max_instances = 50
concurrency = 1
target_utilization = 0.7
scale_to_zero_after = "60s"
reuse = 1000

[vertical]
enabled = true
memory = { min = "32Mi", max = "1Gi" }
cpu = { min = "100m", max = "2000m" }

[env]
GREETING = "hi"
"#;

#[test]
fn the_design_example_parses() {
    let s = parse(GOOD).unwrap();
    assert_eq!(s.name.as_str(), "hello-py");
    assert_eq!(s.kind, Some(Kind::Http));
    assert_eq!(s.limits.memory, Bytes(128 << 20));
    assert_eq!(s.limits.cpu, Millicores(250));
    assert_eq!(s.scaling.max_instances, 50);
    assert_eq!(s.initial_instances(), 1);
    assert_eq!(s.env["GREETING"], "hi");
    assert_eq!(s.vertical.bounds.memory_max_bytes, 1 << 30);
    assert_eq!(s.vertical.bounds.cpu_min_millicores, 100);
    assert!(s.vertical.enabled);
    assert_eq!((s.vertical.weight, s.vertical.priority), (1, 0));
}

#[test]
fn omitted_values_come_from_the_host_defaults() {
    let s = parse("name = \"a\"\nhandler = \"a.wasm\"\n").unwrap();
    let d = defaults();
    assert_eq!(s.limits, d.limits);
    assert_eq!(s.scaling, d.scaling);
    assert_eq!(s.kind, None);
    assert_eq!(s.route, None);
}

#[test]
fn golden_errors() {
    let cases: &[(&str, &str)] = &[
        (
            "name = \"a\"\nhandler = \"a.wasm\"\nflavour = \"x\"\n",
            "functions/x/function.toml:3: unknown field `flavour`, expected one of `name`, `handler`, `kind`, `route`, `limits`, `scaling`, `vertical`, `env`, `async`, `lambda`",
        ),
        (
            "name = \"a\"\nhandler = \"a.wasm\"\n[limits]\nmemory = \"12XB\"\n",
            "functions/x/function.toml:4: key `limits.memory`: invalid quantity \"12XB\": expected a whole number of bytes with an optional suffix Ki, Mi, Gi, Ti (or k, M, G, T), e.g. \"128Mi\"",
        ),
        (
            "name = \"a\"\nhandler = \"a.wasm\"\n[limits]\ncpu = \"lots\"\n",
            "functions/x/function.toml:4: key `limits.cpu`: invalid CPU quantity \"lots\": expected millicores like \"250m\" or cores like \"1.5\"",
        ),
        (
            "name = \"a\"\nhandler = \"a.wasm\"\n[limits]\ntimeout = \"10\"\n",
            "functions/x/function.toml:4: key `limits.timeout`: invalid duration \"10\": expected a whole number with a unit ms, s, m or h, e.g. \"10s\"",
        ),
        (
            "name = \"Bad_Name\"\nhandler = \"a.wasm\"\n",
            "functions/x/function.toml:1: key `name`: invalid function name \"Bad_Name\": use 1 to 63 of [a-z0-9-], not starting or ending with '-'",
        ),
        (
            "name = \"a\"\n",
            "functions/x/function.toml: missing field `handler`",
        ),
        (
            "name = \"a\"\nhandler = \"../../etc/passwd\"\n",
            "functions/x/function.toml:2: key `handler`: \"../../etc/passwd\" is outside the function's folder: use a relative path without '..'",
        ),
        (
            "name = \"a\"\nhandler = \"/etc/passwd\"\n",
            "functions/x/function.toml:2: key `handler`: \"/etc/passwd\" is outside the function's folder: use a relative path without '..'",
        ),
        (
            "name = \"a\"\nhandler = \"a.wasm\"\nroute = \"/admin/x\"\n",
            "functions/x/function.toml:3: key `route`: \"/admin/x\" is reserved for the host",
        ),
        (
            "name = \"a\"\nhandler = \"a.wasm\"\nroute = \"hello\"\n",
            "functions/x/function.toml:3: key `route`: \"hello\" must start with '/'",
        ),
        (
            "name = \"a\"\nhandler = \"a.wasm\"\nkind = \"grpc\"\n",
            "functions/x/function.toml:3: key `kind`: unknown variant `grpc`, expected `http` or `event`",
        ),
        (
            "name = \"a\"\nhandler = \"a.wasm\"\n[scaling]\nmin_instances = 5\nmax_instances = 2\n",
            "functions/x/function.toml:4: key `scaling.min_instances`: 5 is above max_instances = 2",
        ),
        (
            "name = \"a\"\nhandler = \"a.wasm\"\n[scaling]\nconcurrency = -1\n",
            "functions/x/function.toml:4: key `scaling.concurrency`: invalid value: integer `-1`, expected u32",
        ),
        (
            "name = \"a\"\nhandler = \"a.wasm\"\n[limits]\nmemory = \"512Ki\"\n",
            "functions/x/function.toml:4: key `limits.memory`: 512Ki is below the minimum of 1Mi",
        ),
        (
            "name = \"a\"\nhandler = \"a.wasm\"\n[env]\n\"BAD-KEY\" = \"x\"\n",
            "functions/x/function.toml:4: key `env.BAD-KEY`: environment variable names are [A-Za-z_][A-Za-z0-9_]*",
        ),
        (
            "name = \"a\"\nhandler = \"a.wasm\"\n[vertical]\nmemory = { min = \"64Mi\", max = \"32Mi\" }\n",
            "functions/x/function.toml:4: key `vertical.memory`: min 64Mi is above max 32Mi",
        ),
        (
            "name = \"a\"\nhandler = \"a.wasm\"\n[limits]\nmemory = \"128Mi\"\n[vertical]\nmemory = { min = \"16Mi\", max = \"64Mi\" }\n",
            "functions/x/function.toml:4: key `limits.memory`: 128Mi is outside vertical.memory [16Mi, 64Mi]",
        ),
        (
            "name = \"a\"\nhandler = \"a.wasm\"\n[vertical]\nmemory = { min = \"16Mi\", max = \"8Gi\" }\n",
            "functions/x/function.toml:4: key `vertical.memory`: max 8Gi is above the host's limit of 4Gi per instance",
        ),
        (
            "name = \"a\"\nhandler = \"a.wasm\"\n[vertical]\ncpu = { min = \"1m\", max = \"500m\" }\n",
            "functions/x/function.toml:4: key `vertical.cpu`: min is below 10m",
        ),
        (
            "name = \"a\"\nhandler = \"a.wasm\"\n[vertical]\nweight = 0\n",
            "functions/x/function.toml:4: key `vertical.weight`: must be at least 1",
        ),
        (
            "name = \"a\"\nhandler = \"a.wasm\"\n[vertical]\nsize = 1\n",
            "functions/x/function.toml:4: unknown field `size`, expected one of `enabled`, `memory`, `cpu`, `weight`, `priority`",
        ),
        (
            "name = \"a\"\nhandler = \"a.wasm\"\n[async]\nmax_retry_attempts = 3\n",
            "functions/x/function.toml:4: key `async.max_retry_attempts`: 3 is over Lambda's maximum of 2",
        ),
        (
            "name = \"a\"\nhandler = \"a.wasm\"\n[async]\nmax_event_age = \"30s\"\n",
            "functions/x/function.toml:4: key `async.max_event_age`: 30s is outside Lambda's 60s to 6h",
        ),
        (
            "name = \"a\"\nhandler = \"a.wasm\"\n[async]\non_failure = \"dlq\"\n",
            "functions/x/function.toml:4: key `async.on_failure`: destination \"dlq\" is not an ARN (arn:aws:lambda:us-east-1:000000000000:function:NAME or arn:aws:sqs:us-east-1:000000000000:QUEUE)",
        ),
        (
            "name = \"a\"\nhandler = \"a.wasm\"\n[limits\n",
            "functions/x/function.toml:3: invalid table header\nexpected `.`, `]`",
        ),
    ];
    let mut failures = Vec::new();
    for (text, want) in cases {
        match parse(text) {
            Ok(_) => failures.push(format!("accepted:\n{text}")),
            Err(got) if got != *want => {
                failures.push(format!("for:\n{text}\n  got: {got}\n want: {want}"))
            }
            Err(_) => {}
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn shipped_config_is_the_embedded_default() {
    let shipped =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/surge.toml")).unwrap();
    let c = HostConfig::load(Path::new("config/surge.toml"), &shipped).unwrap();
    assert_eq!(c, HostConfig::embedded());
    assert_eq!(c.listen.port(), 8080);
    assert_eq!(c.defaults.limits.memory, Bytes(128 << 20));
}

#[test]
fn config_overrides_and_errors() {
    let c = HostConfig::load(
        Path::new("my.toml"),
        "listen = \"127.0.0.1:0\"\n[defaults.limits]\ncpu = \"1\"\n",
    )
    .unwrap();
    assert_eq!(c.listen.port(), 0);
    assert_eq!(c.defaults.limits.cpu, Millicores(1000));
    assert_eq!(
        c.defaults.limits.memory,
        Bytes(128 << 20),
        "untouched keys keep their default"
    );
    let e = HostConfig::load(Path::new("my.toml"), "[sandbox]\npids = 3\n")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("my.toml:2:") && e.contains("unknown field `pids`"),
        "{e}"
    );
    let e = HostConfig::load(
        Path::new("my.toml"),
        "[defaults.limits]\nmemory = \"big\"\n",
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.starts_with("my.toml:2: key `defaults.limits.memory`: invalid quantity"),
        "{e}"
    );
    let e = HostConfig::load(
        Path::new("my.toml"),
        "[vertical]
cpu_percentile = 1.5
",
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        e,
        "my.toml:2: key `vertical.cpu_percentile`: must be in (0, 1]"
    );
    let c = HostConfig::load(
        Path::new("my.toml"),
        "[node]
memory = \"2Gi\"\n",
    )
    .unwrap();
    assert_eq!(c.node.memory, Some(Bytes(2 << 30)));
    assert_eq!(c.node.cpu, None, "unset: the machine's");
}

#[test]
fn sandbox_overhead_is_a_size_or_one_per_kind() {
    let at = |text: &str| {
        HostConfig::load(Path::new("my.toml"), text).map(|c| c.sandbox.memory_overhead)
    };
    let shipped = HostConfig::embedded().sandbox.memory_overhead;
    assert!(shipped.of(Kind::Event) < shipped.of(Kind::Http));
    let both = at("[sandbox]\nmemory_overhead = \"16Mi\"\n").unwrap();
    assert_eq!(
        (both.of(Kind::Event), both.of(Kind::Http)),
        (16 << 20, 16 << 20)
    );
    let one = at("[sandbox]\nmemory_overhead = { http = \"32Mi\" }\n").unwrap();
    assert_eq!(
        (one.of(Kind::Event), one.of(Kind::Http)),
        (shipped.of(Kind::Event), 32 << 20),
        "the other kind keeps its default"
    );
    for (bad, says) in [
        ("\"lots\"", "invalid quantity"),
        ("{ http = \"lots\" }", "invalid quantity"),
        ("{ evnt = \"4Mi\" }", "unknown field `evnt`"),
        ("7", "a size (\"8Mi\") or a table"),
    ] {
        let e = at(&format!("[sandbox]\nmemory_overhead = {bad}\n"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("my.toml:2:") && e.contains("memory_overhead") && e.contains(says),
            "{bad}: {e}"
        );
    }
}
