use std::io::Write;
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{HeaderMap, Request, Response, StatusCode};
use tokio::io::AsyncWriteExt;
use tokio::net::{UnixListener, UnixStream};
use wasmtime::component::Component;
use wasmtime::Module;

use super::frame;
use super::protocol::{self, HostCommand, SandboxReport, SandboxSpec};
use crate::engine::{pooled_engine, EpochClock, PoolShape};
use crate::exec::event::{EventHandler, EventSettings};
use crate::exec::http::{Answer, HttpHandler, HttpSettings, ResponseSink};
use crate::exec::{MemoryLedger, Outcome};
use crate::Kind;

enum Handler {
    Http(Arc<HttpHandler>),
    Event(Arc<EventHandler>),
}

/// What a sandbox sets up before it knows its function: the first walls
/// (`lockdown::enter`). A spare sandbox (forked by the fork server ahead of need) raises
/// them while it waits; a sandbox forked on demand does it once its fds are placed. It keeps
/// one fd, at `lockdown::FD_DIR`, and starts no thread (a user namespace can only be
/// entered by a process with one).
pub struct Early {
    entered: Result<super::lockdown::Entered, super::lockdown::LockdownError>,
}

pub fn early() -> Early {
    Early {
        entered: super::lockdown::enter(),
    }
}

/// The process's name in `ps` and `/proc/<pid>/comm` (at most 15 bytes).
pub fn name_process(name: &std::ffi::CStr) {
    // SAFETY: prctl reads a NUL-terminated string that outlives the call.
    unsafe { nix::libc::prctl(nix::libc::PR_SET_NAME, name.as_ptr(), 0, 0, 0) };
}

/// Wait for the host's [`protocol::PLACED`] message and write this process into the cgroup
/// files it carries. Single-threaded still: on v1 `tasks` moves its one thread.
fn enter_cgroup() -> wasmtime::Result<()> {
    // SAFETY: the fork server's child placed the host's placement socket at PLACEMENT_FD
    // (`zygote::place_fds`); nothing else in this process owns it.
    let sock = unsafe { OwnedFd::from_raw_fd(protocol::PLACEMENT_FD) };
    let mut buf = [0u8; 64];
    let placed = super::fdpass::recv(std::os::fd::AsRawFd::as_raw_fd(&sock), &mut buf)
        .map_err(|e| wasmtime::format_err!("waiting for its cgroup: {e}"))?;
    let (n, files) = (placed.len, placed.fds);
    if n == 0 {
        std::process::exit(0); // the host gave up on this start, or is gone
    }
    if &buf[..n] != protocol::PLACED.as_bytes() {
        wasmtime::bail!("expected `{}` on the placement socket", protocol::PLACED);
    }
    for f in &files {
        // "0": the writer itself.
        nix::unistd::write(f, b"0")
            .map_err(|e| wasmtime::format_err!("entering its cgroup: {e}"))?;
    }
    Ok(())
}

/// What a spare does while it waits: the start's first steps on a throwaway runtime and
/// engine. The lazy, process-wide state they set up (CPU feature detection, the RNG,
/// wasmtime's one-time set-up) and the code pages they fault in stay for the real start
/// (the engine 0.46 → 0.31 ms, the spec to the runtime 0.44 → 0.15 ms). Everything it
/// opens is closed again before the hand-over places its fds.
pub fn rehearse() {
    drop(runtime());
    drop(pooled_engine(PoolShape {
        instances: 1,
        memory_per_instance_bytes: 1 << 16,
    }));
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .max_blocking_threads(2)
        .enable_all()
        .build()
}

/// The sandbox's main: read the spec from stdin, load, wait to be placed in its cgroup,
/// lock down, warm up, serve until the host goes. Startup failures are printed as one line
/// on stdout (the host reports it) and exit 1.
pub fn run(early: Early) -> ! {
    let code = match start(early) {
        Ok(()) => 0,
        Err(e) => {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "error: {}", format!("{e:#}").replace('\n', " "));
            let _ = out.flush();
            1
        }
    };
    std::process::exit(code)
}

/// Threads, runtimes and wake-ups. The sandbox runs one single-threaded tokio runtime per
/// worker thread, and each connection from the host lives on one of them for its whole life:
/// the request is read, the guest runs and the response is written on one thread, with no
/// hand-off. A multi-threaded runtime wakes idle workers to steal work; on a small machine
/// those wake-ups cost more context switches than the guest costs cycles (see BENCHMARKS.md).
fn start(early: Early) -> wasmtime::Result<()> {
    name_process(c"surge-sandbox");
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    let spec: SandboxSpec = serde_json::from_str(&line)?;
    let workers = spec.threads.clamp(1, spec.instances.max(1)) as usize;
    let target = Arc::new(Target {
        pool: AtomicU32::new(spec.initial),
        controller: OnceLock::new(),
        active_threads: AtomicU32::new(match spec.active_threads {
            0 => workers as u32,
            n => n,
        }),
    });
    let memory = Arc::new(MemoryLedger::new(
        spec.memory_per_instance_bytes
            .min(spec.memory_ceiling_bytes),
    ));
    let entered = early.entered?;
    let main = runtime()?;
    // Loading runs while the host makes the cgroup; what it touches is charged to the host.
    let (clock, handler) = load(&spec, memory.clone(), &entered)?;
    // Loading ran while the host made the cgroup: now into it, before any guest code.
    enter_cgroup()?;
    // The walls go up before any guest code runs (the first instantiation is in the warm-up)
    // and before the sandbox starts a thread: capabilities are dropped per thread, and the
    // filters are installed on every thread there is.
    let walls = super::lockdown::finish(entered)?;
    tracing::debug!(function = %spec.function, %walls, "sandbox locked down");
    // An http sandbox is ready once an instance is warm, and instantiation is guest code:
    // the clock that bounds it runs first. An event sandbox instantiates per event, so it
    // says it is ready first and starts its threads while the host connects.
    if let Handler::Http(h) = &handler {
        clock.spawn()?;
        main.block_on(h.warm_up())?;
    }
    let handler = Arc::new(handler);
    let max_body = spec.max_body_bytes as usize;

    // SAFETY: the fork server's child placed the host's listening socket at LISTEN_FD
    // (dup2, `zygote::place_fds`) and nothing else in this process owns that descriptor.
    let fd = unsafe { OwnedFd::from_raw_fd(protocol::LISTEN_FD) };
    let std_listener = std::os::unix::net::UnixListener::from(fd);
    std_listener.set_nonblocking(true)?;
    // Ready, and how many instances are warm, in one write: the host's gate opens on the
    // warm count, and the request that woke the function need not wait for the pool thread.
    let warm = warm_now(&handler, spec.initial);
    {
        let mut out = std::io::stdout().lock();
        write!(
            out,
            "{}\n{}\n",
            protocol::READY_LINE,
            SandboxReport::Warm {
                ready: warm.0,
                slots: warm.1
            }
        )?;
        out.flush()?;
    }
    // The rest of the threads start on a thread of their own while this one accepts the
    // host's first connection: the clock (for an event sandbox; a guest counted in before
    // it starts finds it ticking from its start), the host-command reader (commands queue
    // in the pipe meanwhile), the pool's controller and workers 1..n. Until worker i is up,
    // its turn of connections is served here (worker 0).
    let others: Arc<parking_lot::Mutex<Vec<Worker>>> = Arc::default();
    {
        let (others, handler, target) = (others.clone(), handler.clone(), target.clone());
        let (runtime_handle, ceiling, instances) = (
            main.handle().clone(),
            spec.memory_ceiling_bytes,
            spec.instances,
        );
        std::thread::Builder::new()
            .name("starter".into())
            .spawn(move || {
                let started = (|| {
                    if let Handler::Event(_) = &*handler {
                        clock.spawn()?;
                    }
                    read_host_commands(target.clone(), memory.clone(), ceiling);
                    control_pool(
                        handler.clone(),
                        target,
                        memory,
                        runtime_handle,
                        instances,
                        warm,
                    )?;
                    for i in 1..workers {
                        let w = start_worker(i, handler.clone(), max_body)?;
                        others.lock().push(w);
                    }
                    Ok::<_, std::io::Error>(())
                })();
                if let Err(e) = started {
                    tracing::error!(error = %e, "starting the sandbox's threads");
                }
            })?;
    }
    let accepting = target.clone();
    main.block_on(async move {
        let listener = UnixListener::from_std(std_listener)?;
        let mut next = 0usize;
        loop {
            let (stream, _) = listener.accept().await?;
            let active =
                (accepting.active_threads.load(Ordering::Relaxed) as usize).clamp(1, workers);
            let this = next % active;
            next = this + 1;
            let worker = match this {
                0 => None,
                n => others.lock().get(n - 1).cloned(),
            };
            match worker {
                None => {
                    tokio::spawn(serve_connection(stream, handler.clone(), max_body));
                }
                Some(w) => w
                    .send(stream.into_std()?)
                    .map_err(|_| wasmtime::format_err!("sandbox worker {this} is gone"))?,
            }
        }
    })
}

/// (ready, slots) with `want` as the pool's target. An event instance is made per event:
/// the whole target is ready at once.
fn warm_now(handler: &Handler, want: u32) -> (u32, u32) {
    match handler {
        Handler::Http(h) => (h.warm(), h.slots()),
        Handler::Event(_) => (want, want),
    }
}

/// Where worker threads 1..n take their connections from.
type Worker = tokio::sync::mpsc::UnboundedSender<std::os::unix::net::UnixStream>;

/// Worker thread `i`: its own single-threaded runtime, serving the connections it is sent.
fn start_worker(i: usize, handler: Arc<Handler>, max_body: usize) -> std::io::Result<Worker> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<std::os::unix::net::UnixStream>();
    std::thread::Builder::new()
        .name(format!("worker-{i}"))
        .spawn(move || {
            let rt = match runtime() {
                Ok(rt) => rt,
                Err(e) => {
                    // Its connections are refused as they come (the channel closes).
                    tracing::error!(error = %e, "building worker {i}'s runtime");
                    return;
                }
            };
            rt.block_on(async move {
                while let Some(s) = rx.recv().await {
                    match UnixStream::from_std(s) {
                        Ok(s) => {
                            tokio::spawn(serve_connection(s, handler.clone(), max_body));
                        }
                        Err(e) => tracing::warn!(error = %e, "registering a connection"),
                    }
                }
            })
        })?;
    Ok(tx)
}

/// Load the artifact and build the handler. No guest code runs here, and no thread starts.
fn load(
    spec: &SandboxSpec,
    memory: Arc<MemoryLedger>,
    entered: &super::lockdown::Entered,
) -> wasmtime::Result<(Arc<EpochClock>, Handler)> {
    // Memory slots are sized for the ceiling, so the quota can be raised in place.
    let engine = pooled_engine(PoolShape {
        instances: spec.instances,
        memory_per_instance_bytes: spec
            .memory_ceiling_bytes
            .max(spec.memory_per_instance_bytes),
    })?;
    let clock = EpochClock::new(&engine);
    let handler = match spec.kind {
        Kind::Http => {
            // SAFETY: the artifact was produced by this same build's `Component::serialize`
            // with the same base config, written atomically into the host's private compile
            // cache, and opened by the host (not by the guest-facing process) for us.
            let component = entered.with_fd_path(protocol::ARTIFACT_FD, |artifact| unsafe {
                Component::deserialize_file(&engine, artifact)
            })??;
            let h = HttpHandler::new(
                &engine,
                &component,
                HttpSettings {
                    env: spec.env.clone(),
                    memory: memory.clone(),
                    timeout_ms: spec.timeout_ms,
                    instances: spec.initial.clamp(1, spec.instances.max(1)),
                    reuse: spec.reuse,
                    clock: clock.clone(),
                },
            )?;
            Handler::Http(h)
        }
        Kind::Event => {
            // SAFETY: as above, for a core module.
            let module = entered.with_fd_path(protocol::ARTIFACT_FD, |artifact| unsafe {
                Module::deserialize_file(&engine, artifact)
            })??;
            let h = EventHandler::new(
                &engine,
                &module,
                EventSettings {
                    name: spec.function.clone(),
                    env: spec.env.clone(),
                    memory,
                    timeout_ms: spec.timeout_ms,
                    max_output_bytes: spec.max_body_bytes as usize,
                    clock: clock.clone(),
                },
            )?;
            Handler::Event(Arc::new(h))
        }
    };

    Ok((clock, handler))
}

/// One kept-alive connection from the host, served on the current thread until it closes:
/// a request frame in, the guest, then a response frame out, or a streamed response's head,
/// pieces and end (`frame.rs`).
async fn serve_connection(mut stream: UnixStream, handler: Arc<Handler>, max_body: usize) {
    loop {
        let payload = match frame::read(&mut stream, max_body + frame::MAX_HEAD_BYTES).await {
            Ok(Some(Ok(p))) => p,
            // The host's gateway bounds bodies by max_body before they get here: a frame
            // over the limit, or one that does not parse, ends the connection.
            Ok(Some(Err(e))) => {
                static BAD_FRAME: crate::ratelimit::RateLimit =
                    crate::ratelimit::RateLimit::new(10, std::time::Duration::from_secs(10));
                if let Some(suppressed) = BAD_FRAME.check() {
                    tracing::warn!(error = %e, suppressed, "refusing a request frame");
                }
                return;
            }
            Ok(None) | Err(_) => return,
        };
        let answer = match frame::decode_request(payload) {
            Ok(req) => dispatch(&handler, req, max_body, &mut Connection(&mut stream)).await,
            Err(e) => Answer::Whole(failure(
                Outcome::Error,
                &format!("bad request frame: {e}"),
                None,
            )),
        };
        let last = match answer {
            Answer::Whole(resp) => frame::encode_response(&resp),
            Answer::Streamed(Ok(())) => frame::encode_end(&HeaderMap::new()),
            Answer::Streamed(Err(f)) => {
                frame::encode_end(failure(f.outcome, &f.message, None).headers())
            }
        };
        if stream.write_all(&last).await.is_err() {
            return;
        }
    }
}

/// The host's connection, as the sink of a streamed response.
struct Connection<'a>(&'a mut UnixStream);

impl ResponseSink for Connection<'_> {
    async fn head(&mut self, mut head: http::response::Parts) -> std::io::Result<()> {
        // The host reads these as the sandbox's own verdict: a guest must not set them.
        for name in protocol::RESERVED {
            head.headers.remove(*name);
        }
        self.0
            .write_all(&frame::encode_head(head.status, &head.headers))
            .await
    }

    async fn piece(&mut self, data: Bytes) -> std::io::Result<()> {
        self.0.write_all(&frame::encode_chunk(&data)).await
    }
}

async fn dispatch(
    handler: &Handler,
    req: Request<Bytes>,
    max_body: usize,
    conn: &mut Connection<'_>,
) -> Answer {
    match handler {
        Handler::Http(h) => {
            let mut req = req;
            // As an HTTP/1.1 client would have sent it: the body's length, when it has one.
            if !req.body().is_empty() {
                let n = req.body().len();
                req.headers_mut()
                    .insert(http::header::CONTENT_LENGTH, n.into());
            }
            let req = req.map(Full::new);
            match h.handle(req, max_body, frame::STREAM_AFTER, conn).await {
                Ok(Answer::Whole(mut resp)) => {
                    for name in protocol::RESERVED {
                        resp.headers_mut().remove(*name);
                    }
                    if let Some(r) = resp
                        .extensions_mut()
                        .remove::<crate::exec::http::CallReport>()
                    {
                        let h = resp.headers_mut();
                        h.insert(protocol::PEAK_MEMORY, r.peak_bytes.into());
                        if let Some(v) = log_tail(&r.log) {
                            h.insert(protocol::LOG_TAIL, v);
                        }
                    }
                    Answer::Whole(resp)
                }
                Ok(streamed) => streamed,
                Err(f) => Answer::Whole(failure(
                    f.outcome,
                    &f.message,
                    log_tail(&f.log).and_then(|v| v.to_str().ok().map(str::to_string)),
                )),
            }
        }
        Handler::Event(h) => {
            let event = req.into_body();
            if event.len() > max_body {
                return Answer::Whole(failure(
                    Outcome::Error,
                    "request body over the function's max_body",
                    None,
                ));
            }
            let r = h.invoke(event).await;
            let mut b = Response::builder()
                .status(StatusCode::OK)
                .header(protocol::OUTCOME, r.outcome.as_str())
                .header(protocol::EXIT_CODE, r.exit_code.to_string())
                .header(protocol::PEAK_MEMORY, r.peak_memory_bytes.to_string());
            if let Some(v) = log_tail(&r.stderr) {
                b = b.header(protocol::LOG_TAIL, v);
            }
            if let Some(m) = &r.message {
                b = b.header(protocol::MESSAGE, protocol::header_safe(m));
            }
            Answer::Whole(b.body(r.stdout).expect("valid response"))
        }
    }
}

/// The last `LOG_TAIL_BYTES` of a guest's stderr as the header carries it (base64); None
/// when it wrote nothing.
fn log_tail(log: &[u8]) -> Option<http::HeaderValue> {
    if log.is_empty() {
        return None;
    }
    let tail = &log[log.len().saturating_sub(protocol::LOG_TAIL_BYTES)..];
    http::HeaderValue::from_str(&base64::engine::general_purpose::STANDARD.encode(tail)).ok()
}

fn failure(outcome: Outcome, message: &str, log: Option<String>) -> Response<Bytes> {
    let status = if outcome == Outcome::Timeout {
        StatusCode::GATEWAY_TIMEOUT
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    let mut b = Response::builder()
        .status(status)
        .header(protocol::OUTCOME, outcome.as_str())
        .header(protocol::MESSAGE, protocol::header_safe(message));
    if let Some(l) = log {
        b = b.header(protocol::LOG_TAIL, l);
    }
    b.body(Bytes::new()).expect("valid response")
}

/// The pool size the host asked for, and the thread that applies it.
struct Target {
    pool: AtomicU32,
    controller: OnceLock<std::thread::Thread>,
    /// The worker threads new connections go to (1..=workers).
    active_threads: AtomicU32,
}

/// Read the host's commands from stdin. The host holds the write end: when it goes away
/// (exit, crash, SIGKILL), the read returns EOF and the sandbox exits with it. No orphan
/// outlives its host.
fn read_host_commands(target: Arc<Target>, memory: Arc<MemoryLedger>, ceiling_bytes: u64) {
    std::thread::Builder::new()
        .name("host-watch".into())
        .spawn(move || {
            let stdin = std::io::stdin();
            let mut lock = stdin.lock();
            let mut line = String::new();
            loop {
                line.clear();
                match std::io::BufRead::read_line(&mut lock, &mut line) {
                    Ok(0) | Err(_) => std::process::exit(0),
                    Ok(_) => {
                        match line.parse::<HostCommand>() {
                            Ok(HostCommand::Pool(n)) => {
                                target.pool.store(n, Ordering::Release);
                                if let Some(t) = target.controller.get() {
                                    t.unpark();
                                }
                            }
                            // Bounded by the slot size: a larger grow would fail in the
                            // allocator instead of the limiter, as a trap not an OOM.
                            Ok(HostCommand::Memory(b)) => memory.set_limit(b.min(ceiling_bytes)),
                            Ok(HostCommand::Threads(n)) => {
                                target.active_threads.store(n.max(1), Ordering::Relaxed)
                            }
                            Err(e) => tracing::warn!(error = %e, "ignoring a host command"),
                        }
                    }
                }
            }
        })
        .expect("spawn host-watch thread");
}

/// Apply the host's pool target and report the warm count back, on one thread woken by
/// either (a missed wake-up is caught by the periodic re-check).
/// `reported`: the warm count the ready line carried.
fn control_pool(
    handler: Arc<Handler>,
    target: Arc<Target>,
    memory: Arc<MemoryLedger>,
    runtime: tokio::runtime::Handle,
    max: u32,
    reported: (u32, u32),
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("pool".into())
        .spawn(move || {
            let me = std::thread::current();
            let _ = target.controller.set(me.clone());
            if let Handler::Http(h) = &*handler {
                h.observe_warm(me);
            }
            let mut reported = Some(reported);
            let mut last_want = None;
            let mut quiet_rounds = 0u32;
            loop {
                let want = target.pool.load(Ordering::Acquire).min(max.max(1));
                // Applied on every wake, not only when the target changes: it refills places
                // that two instances dropped at once, or whose background instantiation
                // failed. The host admits only as many requests as there are warm instances,
                // so no request would come to refill them.
                if let Handler::Http(h) = &*handler {
                    // Instances for a larger pool are instantiated on the main runtime.
                    let _enter = runtime.enter();
                    h.set_target(want);
                }
                let now = warm_now(&handler, want);
                let mut lines = String::new();
                if reported != Some(now) {
                    let warm = SandboxReport::Warm {
                        ready: now.0,
                        slots: now.1,
                    };
                    lines += &format!("{warm}\n");
                    reported = Some(now);
                }
                if let Some((peak_bytes, denied_bytes)) = memory.take() {
                    let mem = SandboxReport::Memory {
                        peak_bytes,
                        denied_bytes,
                    };
                    lines += &format!("{mem}\n");
                }
                if !lines.is_empty() {
                    let mut out = std::io::stdout().lock();
                    if out
                        .write_all(lines.as_bytes())
                        .and_then(|_| out.flush())
                        .is_err()
                    {
                        std::process::exit(0);
                    }
                }
                // Re-checked every 250 ms while something happens, backing off to 2 s in a
                // quiet sandbox: a thousand idle sandboxes waking 4 times a second cost the
                // node 50 ms of CPU a second. The host's commands and warm-count changes
                // wake this thread at once whatever the wait; a quiet sandbox's first memory
                // peak is reported up to 2 s late.
                // A pool short of its target (a background instantiation failed, which wakes
                // no one) keeps retrying at the short period.
                let active = !lines.is_empty() || last_want != Some(want) || now.0 < want;
                last_want = Some(want);
                quiet_rounds = if active {
                    0
                } else {
                    quiet_rounds.saturating_add(1)
                };
                std::thread::park_timeout(Duration::from_millis(250 << quiet_rounds.min(3)));
            }
        })
        .map(drop)
}
