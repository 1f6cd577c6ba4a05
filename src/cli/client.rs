//! The client verbs: deploy, list, remove, invoke, status. They find the server and its admin
//! token through flags, `SURGE_URL` / `SURGE_ADMIN_TOKEN`, or the state dir that `serve` wrote.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::gateway::admin::{DeadLetterPage, DeployRequest, ReplayRequest, StatusReport};
use crate::manifest::{FunctionSpec, HostConfig};
use crate::registry::resize::ResizeRequest;
use crate::registry::status::FunctionInfo;

pub struct Target {
    pub url: String,
    pub token: Option<String>,
}

/// Where the server is: `--server`, then `SURGE_URL`, then `<state_dir>/server-url`.
pub fn find_target(server: Option<String>, state_dir: &Path) -> anyhow::Result<Target> {
    let url = match server.or_else(|| std::env::var("SURGE_URL").ok()) {
        Some(u) => u,
        None => {
            let f = state_dir.join("server-url");
            std::fs::read_to_string(&f)
                .map(|s| s.trim().to_string())
                .with_context(|| format!("no server given (--server or SURGE_URL) and {} is not readable; is `surge serve` running here?", f.display()))?
        }
    };
    let token = std::env::var("SURGE_ADMIN_TOKEN").ok().or_else(|| {
        std::fs::read_to_string(state_dir.join("admin-token"))
            .ok()
            .map(|s| s.trim().to_string())
    });
    Ok(Target {
        url: url.trim_end_matches('/').to_string(),
        token,
    })
}

struct Reply {
    status: StatusCode,
    headers: hyper::HeaderMap,
    body: Bytes,
}

/// Send one request; the answer's body is left to read.
async fn send(
    t: &Target,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Bytes,
    admin: bool,
) -> anyhow::Result<hyper::Response<hyper::body::Incoming>> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut b = Request::builder()
        .method(method)
        .uri(format!("{}{}", t.url, path));
    if admin {
        let token = t.token.as_deref().ok_or_else(|| {
            anyhow!("no admin token: set SURGE_ADMIN_TOKEN or run where the server's state dir is")
        })?;
        b = b.header("authorization", format!("Bearer {token}"));
    }
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    client
        .request(b.body(Full::new(body))?)
        .await
        .with_context(|| format!("connecting to {}", t.url))
}

async fn call(
    t: &Target,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Bytes,
    admin: bool,
) -> anyhow::Result<Reply> {
    let (parts, body) = send(t, method, path, headers, body, admin)
        .await?
        .into_parts();
    Ok(Reply {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await?.to_bytes(),
    })
}

fn admin_error(r: &Reply) -> anyhow::Error {
    let msg = serde_json::from_slice::<serde_json::Value>(&r.body)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(&r.body).trim().to_string());
    anyhow!("{msg} (HTTP {})", r.status.as_u16())
}

/// A call to the admin API whose answer is read as it comes (a deploy's stages, followed
/// records): its body, or the admin API's error.
pub(super) async fn admin_stream(
    t: &Target,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> anyhow::Result<hyper::body::Incoming> {
    let (parts, body) = send(t, method, path, headers, body, true)
        .await?
        .into_parts();
    if !parts.status.is_success() {
        return Err(admin_error(&Reply {
            status: parts.status,
            headers: parts.headers,
            body: body.collect().await?.to_bytes(),
        }));
    }
    Ok(body)
}

/// POST `body` as JSON to the admin API; an error status is the admin API's message.
async fn post_json(t: &Target, path: &str, body: &impl serde::Serialize) -> anyhow::Result<Reply> {
    let r = call(
        t,
        Method::POST,
        path,
        &[("content-type", "application/json")],
        serde_json::to_vec(body)?.into(),
        true,
    )
    .await?;
    if !r.status.is_success() {
        return Err(admin_error(&r));
    }
    Ok(r)
}

pub async fn deploy(t: &Target, manifest: &Path) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(manifest)
        .with_context(|| format!("{}: cannot read the manifest", manifest.display()))?;
    let spec = FunctionSpec::parse(manifest, &text, &HostConfig::embedded().defaults)?;
    let handler = crate::manifest::handler_path(manifest, &spec);
    let wasm = std::fs::read(&handler).with_context(|| {
        format!(
            "{}: key `handler`: {}",
            manifest.display(),
            handler.display()
        )
    })?;
    let req = DeployRequest {
        manifest_file: manifest.display().to_string(),
        manifest: text,
        wasm_base64: base64::engine::general_purpose::STANDARD.encode(&wasm),
    };
    let info = deploy_with_progress(t, &req).await?;
    println!(
        "deployed {} version {} ({})",
        info.name, info.version, info.kind
    );
    Ok(())
}

/// POST the deploy asking for its stages (JSON lines) and show them as they come: a
/// spinner with the stage and its elapsed time on a terminal (stderr), one plain line a
/// stage on stdout otherwise, before the result line. stderr stays for the one error line.
async fn deploy_with_progress(t: &Target, req: &DeployRequest) -> anyhow::Result<FunctionInfo> {
    use crate::registry::Stage;
    use std::io::IsTerminal;
    let mut body = admin_stream(
        t,
        Method::POST,
        "/admin/v1/functions",
        &[
            ("content-type", "application/json"),
            ("accept", "application/x-ndjson"),
        ],
        Bytes::from(serde_json::to_vec(req)?),
    )
    .await?;
    let bar = if std::io::stderr().is_terminal() {
        let b = indicatif::ProgressBar::new_spinner();
        b.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                .expect("a valid template"),
        );
        b.enable_steady_tick(std::time::Duration::from_millis(100));
        Some(b)
    } else {
        None
    };
    let say = |text: String| match &bar {
        Some(b) => b.set_message(text),
        None => println!("{text}"),
    };
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    let mut pending = Vec::new();
    let mut result = None;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else {
            continue;
        };
        pending.extend_from_slice(&data);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let v: serde_json::Value = serde_json::from_slice(&line)?;
            if let Some(info) = v.get("deployed") {
                result = Some(Ok(serde_json::from_value::<FunctionInfo>(info.clone())?));
            } else if let Some(e) = v.get("error").and_then(|e| e.as_str()) {
                let code = v.get("status").and_then(|s| s.as_u64()).unwrap_or(0);
                result = Some(Err(anyhow!("{e} (HTTP {code})")));
            } else {
                match serde_json::from_value::<Stage>(v)? {
                    Stage::Hash { bytes } => say(format!("hashing {:.1} MiB", mib(bytes))),
                    Stage::Compile => say("compiling".into()),
                    Stage::Compiled { ms } => {
                        say(format!("compiled in {:.1} s", ms as f64 / 1000.0))
                    }
                    Stage::Start => say("starting the sandbox".into()),
                    Stage::Ready { ms } => say(format!("ready in {ms} ms")),
                }
            }
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    result.unwrap_or_else(|| Err(anyhow!("the server ended the deploy without its result")))
}

pub fn dashboard(t: &Target) -> anyhow::Result<()> {
    println!("{}/dashboard", t.url);
    match &t.token {
        Some(token) => println!(
            "open this link to log in (it holds the admin token): {}/dashboard/login#token={token}",
            t.url
        ),
        None => {
            println!("log in with the admin token (SURGE_ADMIN_TOKEN, or <state dir>/admin-token)")
        }
    }
    Ok(())
}

pub async fn list(t: &Target) -> anyhow::Result<()> {
    let r = call(
        t,
        Method::GET,
        "/admin/v1/functions",
        &[],
        Bytes::new(),
        true,
    )
    .await?;
    if !r.status.is_success() {
        return Err(admin_error(&r));
    }
    let fs: Vec<FunctionInfo> = serde_json::from_slice(&r.body)?;
    println!(
        "{:<24} {:>7} {:<6} {:<16} {:>9} {:>7} {:>8}",
        "NAME", "VERSION", "KIND", "ROUTE", "INSTANCES", "MEMORY", "CPU"
    );
    for f in fs {
        println!(
            "{:<24} {:>7} {:<6} {:<16} {:>9} {:>7} {:>8}",
            f.name,
            f.version,
            f.kind,
            f.route.as_deref().unwrap_or("-"),
            f.instances,
            f.memory,
            f.cpu
        );
    }
    Ok(())
}

pub async fn remove(t: &Target, name: &str) -> anyhow::Result<()> {
    let r = call(
        t,
        Method::DELETE,
        &format!("/admin/v1/functions/{name}"),
        &[],
        Bytes::new(),
        true,
    )
    .await?;
    if !r.status.is_success() {
        return Err(admin_error(&r));
    }
    println!("removed {name}");
    Ok(())
}

pub async fn status(t: &Target) -> anyhow::Result<()> {
    let r = call(t, Method::GET, "/admin/v1/status", &[], Bytes::new(), true).await?;
    if !r.status.is_success() {
        return Err(admin_error(&r));
    }
    let s: StatusReport = serde_json::from_slice(&r.body)?;
    println!("surge {} at {}; {}", s.version, t.url, s.cgroups);
    println!(
        "{:<20} {:>4} {:>5} {:>7} {:>4} {:>9} {:>6} {:>8} {:>6} {:>5} {:>7} {:>8} {:>8}",
        "NAME",
        "VER",
        "READY",
        "DESIRED",
        "MAX",
        "IN-FLIGHT",
        "QUEUE",
        "REQ/S",
        "MODE",
        "COLD",
        "PID",
        "REQS",
        "ERRORS"
    );
    for f in &s.functions {
        println!(
            "{:<20} {:>4} {:>5} {:>7} {:>4} {:>9} {:>6} {:>8.1} {:>6} {:>5} {:>7} {:>8} {:>8}",
            f.name,
            f.version,
            f.instances,
            f.desired,
            f.max_instances,
            f.executing,
            f.queued,
            f.rps,
            f.mode,
            f.cold_starts,
            f.sandbox_pid
                .map(|p| p.to_string())
                .unwrap_or_else(|| "-".into()),
            f.requests,
            f.errors,
        );
    }
    print_keepalive(&s);
    print_vertical(&s);
    print_queues(&s);
    Ok(())
}

/// The asynchronous table of `surge status`: each function's event queue that has seen
/// any event since the host started, or holds any.
fn print_queues(s: &StatusReport) {
    let busy: Vec<_> = s
        .queues
        .iter()
        .filter(|q| {
            q.queued + q.in_flight + q.succeeded + q.failed + q.dead_letters + q.throttled > 0
        })
        .collect();
    if busy.is_empty() {
        return;
    }
    println!();
    println!(
        "{:<20} {:>7} {:>9} {:>8} {:>10} {:>9} {:>7} {:>9} {:>12}",
        "ASYNC",
        "QUEUED",
        "IN-FLIGHT",
        "RETRYING",
        "OLDEST",
        "SUCCEEDED",
        "FAILED",
        "THROTTLED",
        "DEAD-LETTERS"
    );
    for q in busy {
        println!(
            "{:<20} {:>7} {:>9} {:>8} {:>9.1}s {:>9} {:>7} {:>9} {:>12}",
            q.function,
            q.queued,
            q.in_flight,
            q.retrying,
            q.oldest_age_s,
            q.succeeded,
            q.failed,
            q.throttled,
            q.dead_letters
        );
    }
}

/// `surge dlq list`: every entry of the function's dead-letter store, oldest first; with
/// `json`, one object per line.
pub async fn dlq_list(t: &Target, name: &str, json: bool) -> anyhow::Result<()> {
    let mut after = 0;
    let mut first = true;
    loop {
        let path = format!("/admin/v1/functions/{name}/dlq?after={after}");
        let r = call(t, Method::GET, &path, &[], Bytes::new(), true).await?;
        if !r.status.is_success() {
            return Err(admin_error(&r));
        }
        let page: DeadLetterPage = serde_json::from_slice(&r.body)?;
        if !json && first {
            println!(
                "{:>8} {:<36} {:<17} {:>8} {:<24} DESTINATION",
                "ID", "REQUEST ID", "CONDITION", "ATTEMPTS", "TIME"
            );
        }
        first = false;
        for e in &page.entries {
            if json {
                println!("{}", serde_json::to_string(e)?);
            } else {
                println!(
                    "{:>8} {:<36} {:<17} {:>8} {:<24} {}",
                    e.id,
                    e.request_id,
                    e.condition,
                    e.approximate_invoke_count,
                    e.timestamp,
                    if e.destination.is_empty() {
                        "-"
                    } else {
                        &e.destination
                    }
                );
            }
        }
        match page.next {
            Some(n) => after = n,
            None => return Ok(()),
        }
    }
}

/// `surge dlq show`: one entry, with its record, as JSON.
pub async fn dlq_show(t: &Target, name: &str, id: i64) -> anyhow::Result<()> {
    let path = format!("/admin/v1/functions/{name}/dlq/{id}");
    let r = call(t, Method::GET, &path, &[], Bytes::new(), true).await?;
    if !r.status.is_success() {
        return Err(admin_error(&r));
    }
    let e: serde_json::Value = serde_json::from_slice(&r.body)?;
    println!("{}", serde_json::to_string_pretty(&e)?);
    Ok(())
}

/// `surge dlq replay`: entries back into the queue (one, or all of the function's).
pub async fn dlq_replay(t: &Target, name: &str, id: Option<i64>) -> anyhow::Result<()> {
    let path = format!("/admin/v1/functions/{name}/dlq/replay");
    let r = post_json(t, &path, &ReplayRequest { id }).await?;
    let v: serde_json::Value = serde_json::from_slice(&r.body)?;
    println!("replayed {} event(s) of {name}", v["replayed"]);
    Ok(())
}

/// `surge dlq purge`: delete every entry of the function's.
pub async fn dlq_purge(t: &Target, name: &str) -> anyhow::Result<()> {
    let path = format!("/admin/v1/functions/{name}/dlq");
    let r = call(t, Method::DELETE, &path, &[], Bytes::new(), true).await?;
    if !r.status.is_success() {
        return Err(admin_error(&r));
    }
    let v: serde_json::Value = serde_json::from_slice(&r.body)?;
    println!("purged {} dead letter(s) of {name}", v["purged"]);
    Ok(())
}

/// The keep-alive table of `surge status`: each function's policy, the pattern it sees,
/// its windows, the next arrival it expects, and what pre-warming saved.
fn print_keepalive(s: &StatusReport) {
    println!();
    println!(
        "{:<20} {:>10} {:>9} {:>9} {:>9} {:>9} {:>10} {:>8} {:>9} {:>8}",
        "NAME",
        "POLICY",
        "PATTERN",
        "PREWARM",
        "KEEP",
        "NEXT",
        "FORECAST/S",
        "ACTUAL/S",
        "COLD-REQS",
        "AVOIDED"
    );
    let secs = |s: f64| format!("{s:.1}s");
    for f in &s.functions {
        println!(
            "{:<20} {:>10} {:>9} {:>9} {:>9} {:>9} {:>10} {:>8.2} {:>9} {:>8}",
            f.name,
            f.policy,
            f.pattern,
            secs(f.prewarm_s),
            secs(f.keepalive_s),
            f.next_arrival_s.map_or("-".into(), secs),
            f.forecast_rps.map_or("-".into(), |r| format!("{r:.2}")),
            f.rps,
            f.cold_requests,
            f.prewarm_hits,
        );
    }
}

/// The second table of `surge status`: each function's quota, what its cgroup holds and
/// uses, and the node's capacity.
fn print_vertical(s: &StatusReport) {
    let n = &s.node;
    println!();
    println!(
        "node: memory {} of {} committed ({} asked), cpu {}m of {}m guaranteed ({}m asked)",
        human_bytes(n.committed.memory_bytes),
        human_bytes(n.capacity.memory_bytes),
        human_bytes(n.demand.memory_bytes),
        n.committed.cpu_millicores,
        n.capacity.cpu_millicores,
        n.demand.cpu_millicores,
    );
    println!(
        "{:<20} {:>10} {:>9} {:>8} {:>9} {:>9} {:>12} {:>8} {:>6} {:>4} {:>8} {:>5} {:>9}",
        "NAME",
        "MEM/INST",
        "MEM-LIMIT",
        "MEM-USED",
        "WASM-PEAK",
        "CPU/INST",
        "CPU-GUAR/LIM",
        "CPU-USED",
        "THROT",
        "OOM",
        "RESIZES",
        "LAST",
        "CAPACITY"
    );
    for f in &s.functions {
        let pin = |p: bool| if p { "*" } else { "" };
        println!(
            "{:<20} {:>10} {:>9} {:>8} {:>9} {:>9} {:>12} {:>8} {:>5.0}% {:>4} {:>8} {:>5} {:>9}",
            f.name,
            format!(
                "{}{}",
                human_bytes(f.memory_quota_bytes),
                pin(f.memory_pinned)
            ),
            f.memory_limit_bytes
                .map(human_bytes)
                .unwrap_or_else(|| "-".into()),
            human_bytes(f.memory_usage_bytes),
            human_bytes(f.wasm_memory_peak_bytes),
            format!("{}m{}", f.cpu_quota_millicores, pin(f.cpu_pinned)),
            match (f.cpu_guaranteed_millicores, f.cpu_limit_millicores) {
                (Some(g), Some(l)) => format!("{g}/{l}m"),
                _ => "-".into(),
            },
            format!("{}m", f.cpu_usage_millicores),
            f.throttled_fraction * 100.0,
            f.oom_events,
            f.resizes_auto + f.resizes_manual,
            f.last_resize.as_deref().unwrap_or("-"),
            if f.capacity_limited {
                format!("short:{}", f.capacity_refusals)
            } else {
                format!("ok:{}", f.capacity_refusals)
            },
        );
    }
    println!(
        "(* pinned by `surge resize`; THROT: share of CFS periods throttled in the last interval)"
    );
}

/// Bytes in binary units, short: `12.5Mi`.
pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["", "Ki", "Mi", "Gi", "Ti"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < UNITS.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 || v >= 100.0 || v.fract() == 0.0 {
        format!("{v:.0}{}", UNITS[i])
    } else {
        format!("{v:.1}{}", UNITS[i])
    }
}

/// The request `surge resize` sends: each flag is a quantity, or `auto` to unpin.
pub fn resize_request(memory: Option<&str>, cpu: Option<&str>) -> anyhow::Result<ResizeRequest> {
    let mut r = ResizeRequest::default();
    match memory {
        Some("auto") => r.clear_memory = true,
        Some(m) => {
            r.update.memory_bytes = Some(
                m.parse::<crate::manifest::Bytes>()
                    .map_err(|e| anyhow!("--memory: {e}"))?
                    .0,
            )
        }
        None => {}
    }
    match cpu {
        Some("auto") => r.clear_cpu = true,
        Some(c) => {
            r.update.cpu_millicores = Some(
                c.parse::<crate::manifest::Millicores>()
                    .map_err(|e| anyhow!("--cpu: {e}"))?
                    .0 as u64,
            )
        }
        None => {}
    }
    if r == ResizeRequest::default() {
        bail!("resize: give --memory and/or --cpu (a quantity, or `auto` to unpin)");
    }
    Ok(r)
}

pub async fn resize(
    t: &Target,
    name: &str,
    memory: Option<&str>,
    cpu: Option<&str>,
) -> anyhow::Result<()> {
    let req = resize_request(memory, cpu)?;
    let r = post_json(t, &format!("/admin/v1/functions/{name}/resize"), &req).await?;
    let f: FunctionInfo = serde_json::from_slice(&r.body)?;
    let pin = |p: bool| if p { " (pinned)" } else { " (auto)" };
    if r.status == StatusCode::ACCEPTED {
        println!("accepted: the sandbox is starting or stopping; the resize applies when it is up");
    }
    println!(
        "resized {}: memory {}{} cpu {}m{}; cgroup limits: memory {} cpu {} (guaranteed {})",
        f.name,
        human_bytes(f.memory_quota_bytes),
        pin(f.memory_pinned),
        f.cpu_quota_millicores,
        pin(f.cpu_pinned),
        f.memory_limit_bytes
            .map(human_bytes)
            .unwrap_or_else(|| "- (at zero)".into()),
        f.cpu_limit_millicores
            .map(|c| format!("{c}m"))
            .unwrap_or_else(|| "-".into()),
        f.cpu_guaranteed_millicores
            .map(|c| format!("{c}m"))
            .unwrap_or_else(|| "-".into()),
    );
    Ok(())
}

/// Invoke through the Lambda API; the payload goes to stdout. A function error is printed
/// to stderr and exits non-zero.
pub async fn invoke(t: &Target, name: &str, data: Option<String>) -> anyhow::Result<()> {
    let payload: Bytes = match data {
        None => Bytes::new(),
        Some(d) => match d.strip_prefix('@') {
            Some(file) => std::fs::read(PathBuf::from(file))
                .with_context(|| format!("--data @{file}"))?
                .into(),
            None => d.into_bytes().into(),
        },
    };
    let r = call(
        t,
        Method::POST,
        &format!("/2015-03-31/functions/{name}/invocations"),
        &[],
        payload,
        false,
    )
    .await?;
    if let Some(kind) = r
        .headers
        .get("x-amzn-errortype")
        .and_then(|v| v.to_str().ok())
    {
        let msg = serde_json::from_slice::<serde_json::Value>(&r.body)
            .ok()
            .and_then(|v| {
                v.get("message")
                    .and_then(|m| m.as_str())
                    .map(str::to_string)
            })
            .unwrap_or_default();
        bail!("{kind}: {msg} (HTTP {})", r.status.as_u16());
    }
    if r.headers.contains_key("x-amz-function-error") {
        bail!(
            "function {name} failed: {}",
            String::from_utf8_lossy(&r.body).trim()
        );
    }
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(&r.body)?;
    if !r.body.ends_with(b"\n") {
        out.write_all(b"\n")?;
    }
    Ok(())
}
