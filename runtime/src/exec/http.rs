//! `http` handlers: components exporting `wasi:http/incoming-handler@0.2.x`, served from a
//! pool of pre-instantiated instances that are reused for up to `reuse` requests.
//!
//! Why not wasmtime-wasi-http's `ProxyHandler`: in 48 it instantiates on the request path when
//! no worker is free (no pre-warm) and its reuse path rests on the component-model-async
//! machinery. Here every instance is instantiated ahead of the request that uses it, and an
//! instance that trapped, timed out or reached `reuse` is replaced in the background.

use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Wake, Waker};

use bytes::{Bytes, BytesMut};
use http_body::Body;
use parking_lot::Mutex;
use tokio::sync::{oneshot, Notify};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::bindings::{Proxy, ProxyPre};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use super::logtail::LogTail;
use crate::engine::EpochClock;

use super::{
    arm_deadline, classify, set_budget, wall_limit, Budgeted, CheckError, InstanceLimiter,
    MemoryLedger, Outcome, WALL_TIMEOUT_MESSAGE,
};

pub struct HttpState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    limiter: InstanceLimiter,
    deadline: Option<tokio::time::Instant>,
    hooks: NoOutbound,
    /// The guest's stderr: the last bytes of the request under way.
    stderr: LogTail,
}

/// Bytes of a request's stderr kept (what the host returns as Lambda's log tail).
const STDERR_TAIL: usize = 4096;

/// Guests get no outbound HTTP: every `outgoing-handler.handle` is denied.
struct NoOutbound;

type OutgoingFuture = Box<
    dyn std::future::Future<
            Output = wasmtime_wasi_http::Result<(
                http::Response<wasmtime_wasi_http::WasiBody>,
                Box<dyn std::future::Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
            )>,
        > + Send,
>;

impl wasmtime_wasi_http::WasiHttpHooks for NoOutbound {
    fn send_request(
        &mut self,
        _request: http::Request<wasmtime_wasi_http::WasiBody>,
        _options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: Box<dyn std::future::Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> OutgoingFuture {
        Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) })
    }
}

impl WasiView for HttpState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for HttpState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

impl Budgeted for HttpState {
    fn deadline(&mut self) -> &mut Option<tokio::time::Instant> {
        &mut self.deadline
    }
}

/// All of WASI 0.2 plus wasi:http 0.2: componentize-py output imports cli, filesystem and
/// sockets besides the proxy world. The linker matches any 0.2.x patch version.
fn linker(engine: &Engine) -> wasmtime::Result<Linker<HttpState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    Ok(linker)
}

/// Check that `component` links here and exports the incoming handler.
pub fn check_component(engine: &Engine, component: &Component) -> Result<(), CheckError> {
    let linker = linker(engine).map_err(|e| CheckError::Other(e.to_string()))?;
    let pre = match linker.instantiate_pre(component) {
        Ok(pre) => pre,
        Err(e) => {
            let foreign: Vec<String> = component
                .component_type()
                .imports(engine)
                .map(|(name, _)| name.to_string())
                .filter(|n| !(n.starts_with("wasi:") && n.contains("@0.2.")))
                .collect();
            return Err(if foreign.is_empty() {
                CheckError::Imports(vec![format!("{e}")])
            } else {
                CheckError::Imports(foreign)
            });
        }
    };
    ProxyPre::new(pre).map(|_| ()).map_err(|_| {
        let exports: Vec<String> = component.component_type().exports(engine).map(|(n, _)| n.to_string()).collect();
        CheckError::Export(format!(
            "an http handler must export wasi:http/incoming-handler@0.2.x; this component exports: {}",
            if exports.is_empty() { "nothing".to_string() } else { exports.join(", ") }
        ))
    })
}

pub struct HttpSettings {
    pub env: Vec<(String, String)>,
    pub memory: Arc<MemoryLedger>,
    pub timeout_ms: u64,
    /// Instances to keep warm at start (a 0.2 handler serves one request at a time);
    /// [`HttpHandler::set_target`] changes it.
    pub instances: u32,
    /// Requests an instance serves before it is replaced.
    pub reuse: u32,
    /// Ticks while guest code runs (instantiation and requests: their timeout).
    pub clock: Arc<EpochClock>,
}

struct Warm {
    store: Store<HttpState>,
    proxy: Proxy,
    served: u32,
    // Field order: `_live` drops (warm count down) before `_slot` frees the place.
    _live: Live,
    _slot: Slot,
}

/// One of the pool's places, held by an instance (idle, busy, or being instantiated) and
/// given back when it is dropped.
struct Slot(Arc<Places>);

/// Held by an instantiated instance: counts it as warm (ready to serve) while it lives.
struct Live(Arc<Places>);

struct Places {
    taken: AtomicU32,
    /// The target pool size: places beyond it are not handed out, and instances beyond it
    /// are dropped when they go idle.
    limit: AtomicU32,
    /// Instances instantiated and alive (idle or busy).
    warm: AtomicU32,
    /// Signalled when a place frees up or an instance goes idle.
    changed: Notify,
    /// Woken whenever `warm` changes (the sandbox's reporter thread).
    observer: OnceLock<std::thread::Thread>,
}

impl Places {
    fn take(self: &Arc<Self>) -> Option<Slot> {
        self.taken
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| {
                (t < self.limit.load(Ordering::Acquire)).then_some(t + 1)
            })
            .ok()
            .map(|_| Slot(self.clone()))
    }

    fn over_target(&self) -> bool {
        self.taken.load(Ordering::Acquire) > self.limit.load(Ordering::Acquire)
    }

    fn warm_changed(&self) {
        if let Some(t) = self.observer.get() {
            t.unpark();
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.taken.fetch_sub(1, Ordering::AcqRel);
        self.0.changed.notify_waiters();
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.0.warm.fetch_sub(1, Ordering::AcqRel);
        self.0.warm_changed();
    }
}

/// A failed request: how it ended and a message for the caller.
#[derive(Debug)]
pub struct HttpFailure {
    pub outcome: Outcome,
    pub message: String,
    /// What the guest wrote on stderr during the request (its last bytes).
    pub log: Vec<u8>,
}

pub struct HttpHandler {
    engine: Engine,
    pre: ProxyPre<HttpState>,
    settings: HttpSettings,
    idle: Mutex<Vec<Warm>>,
    /// Instances alive (idle, busy or instantiating) never exceed the target once the
    /// excess has drained: the sandbox's cgroup memory limit is sized for that many.
    places: Arc<Places>,
}

impl HttpHandler {
    pub fn new(
        engine: &Engine,
        component: &Component,
        settings: HttpSettings,
    ) -> wasmtime::Result<Arc<Self>> {
        let pre = ProxyPre::new(linker(engine)?.instantiate_pre(component)?)?;
        let n = settings.instances.max(1);
        Ok(Arc::new(HttpHandler {
            engine: engine.clone(),
            pre,
            settings,
            idle: Mutex::new(Vec::new()),
            places: Arc::new(Places {
                taken: AtomicU32::new(0),
                limit: AtomicU32::new(n),
                warm: AtomicU32::new(0),
                changed: Notify::new(),
                observer: OnceLock::new(),
            }),
        }))
    }

    /// Instantiate one instance now (it proves the component starts, and the first request
    /// finds it warm) and the rest of the pool in the background, so the sandbox is ready
    /// after one instantiation, not `instances` of them.
    pub async fn warm_up(self: &Arc<Self>) -> wasmtime::Result<()> {
        if let Some(slot) = self.places.take() {
            let w = self.instantiate(slot).await?;
            self.give_back(w);
        }
        for _ in 1..self.settings.instances {
            self.replenish();
        }
        Ok(())
    }

    /// Set the target pool size. Growing instantiates the new instances in the background
    /// (call inside the runtime that should run them); shrinking drops idle instances now
    /// and busy ones as they finish.
    pub fn set_target(self: &Arc<Self>, n: u32) {
        self.places.limit.store(n, Ordering::Release);
        let taken = self.places.taken.load(Ordering::Acquire);
        for _ in taken..n {
            self.replenish();
        }
        let mut dropped = Vec::new();
        {
            let mut idle = self.idle.lock();
            while self.places.taken.load(Ordering::Acquire) as usize - dropped.len() > n as usize {
                match idle.pop() {
                    Some(w) => dropped.push(w),
                    None => break,
                }
            }
        }
        drop(dropped);
    }

    /// Instances instantiated and alive: what the host may send requests to.
    pub fn warm(&self) -> u32 {
        self.places.warm.load(Ordering::Acquire)
    }

    /// Pool places taken: instances ready, busy or still instantiating.
    pub fn slots(&self) -> u32 {
        self.places.taken.load(Ordering::Acquire)
    }

    /// Wake `thread` (unpark) whenever [`Self::warm`] changes.
    pub fn observe_warm(&self, thread: std::thread::Thread) {
        let _ = self.places.observer.set(thread);
    }

    fn give_back(&self, w: Warm) {
        if self.places.over_target() {
            drop(w);
        } else {
            self.idle.lock().push(w);
        }
        self.places.changed.notify_waiters();
    }

    /// Instantiate one instance and drop it: what a request pays when no warm instance is
    /// left. Benchmarks use it to price instantiation from the pool.
    pub async fn instantiate_once(&self) -> wasmtime::Result<()> {
        let slot = Slot(self.places.clone());
        self.places.taken.fetch_add(1, Ordering::AcqRel);
        self.instantiate(slot).await.map(drop)
    }

    async fn instantiate(&self, slot: Slot) -> wasmtime::Result<Warm> {
        let stderr = LogTail::new(STDERR_TAIL);
        let wasi = WasiCtxBuilder::new()
            .stderr(stderr.clone())
            .envs(&self.settings.env)
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let mut store = Store::new(
            &self.engine,
            HttpState {
                wasi,
                http: WasiHttpCtx::new(),
                table: ResourceTable::new(),
                limiter: InstanceLimiter::following(self.settings.memory.clone()),
                deadline: None,
                hooks: NoOutbound,
                stderr,
            },
        );
        store.limiter(|s| &mut s.limiter);
        arm_deadline(&mut store);
        // Instantiation runs guest start code: it gets the request timeout too.
        set_budget(&mut store, self.settings.timeout_ms);
        let proxy = {
            let _running = self.settings.clock.running();
            self.pre.instantiate_async(&mut store).await?
        };
        self.places.warm.fetch_add(1, Ordering::AcqRel);
        self.places.warm_changed();
        Ok(Warm {
            store,
            proxy,
            served: 0,
            _live: Live(self.places.clone()),
            _slot: slot,
        })
    }

    /// Replace a retired instance in the background, so the pool stays warm.
    fn replenish(self: &Arc<Self>) {
        let Some(slot) = self.places.take() else {
            return;
        };
        let this = self.clone();
        tokio::spawn(async move {
            match this.instantiate(slot).await {
                Ok(w) => this.give_back(w),
                Err(e) => {
                    // Guest start code that traps does so at every replacement.
                    static REINSTANTIATE: crate::ratelimit::RateLimit =
                        crate::ratelimit::RateLimit::new(10, std::time::Duration::from_secs(10));
                    if let Some(suppressed) = REINSTANTIATE.check() {
                        tracing::warn!(error = %e, suppressed, "re-instantiation failed; the next request will retry")
                    }
                }
            }
        });
    }

    /// A warm instance for a request: an idle one; else, when the pool has a free place
    /// (an instance was dropped), a new one instantiated inline; else wait for one to go
    /// idle or for the replacement already under way. The host admits no more requests than
    /// there are warm instances, so the wait is the exception.
    async fn checkout(self: &Arc<Self>) -> Result<Warm, HttpFailure> {
        loop {
            let changed = self.places.changed.notified();
            if let Some(w) = self.idle.lock().pop() {
                return Ok(w);
            }
            if let Some(slot) = self.places.take() {
                return self.instantiate(slot).await.map_err(|e| HttpFailure {
                    outcome: Outcome::Trap,
                    message: format!(
                        "instantiation failed: {}",
                        e.to_string().lines().next().unwrap_or("")
                    ),
                    log: Vec::new(),
                });
            }
            changed.await;
        }
    }

    /// Serve one request on a warm instance. The response comes back whole when the guest
    /// finishes its body before it waits on anything and within `stream_after` bytes (the
    /// common case: one frame to the host); otherwise it goes to `sink` as the guest writes
    /// it, a piece each time the guest waits or `stream_after` bytes pile up. Either way the
    /// body is capped at `max_body` bytes. `Err`: the call failed before anything was sent.
    ///
    /// The guest call and the reading of its response body run jointly in the caller's task
    /// (no spawn, no cross-thread hand-off per request): the guest may keep writing the body
    /// after it sets the response head, so the two must progress together. The call is
    /// polled first in each pass, so the body side knows whether the guest has just gone to
    /// wait (a sleep, a full body stream): that is when what it wrote so far is sent.
    pub async fn handle<B, S: ResponseSink>(
        self: &Arc<Self>,
        req: hyper::Request<B>,
        max_body: usize,
        stream_after: usize,
        sink: &mut S,
    ) -> Result<Answer, HttpFailure>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let mut inst = self.checkout().await?;
        set_budget(&mut inst.store, self.settings.timeout_ms);
        let (tx, rx) = oneshot::channel();
        let prepared = {
            let mut http = inst.store.data_mut().http();
            http.new_incoming_request(Scheme::Http, req)
                .and_then(|req| Ok((req, http.new_response_outparam(tx)?)))
        };
        let (wreq, out) = match prepared {
            Ok(v) => v,
            Err(e) => {
                self.give_back(inst);
                return Err(HttpFailure {
                    outcome: Outcome::Error,
                    message: format!("bad request: {e}"),
                    log: Vec::new(),
                });
            }
        };
        let call = inst
            .proxy
            .wasi_http_incoming_handler()
            .call_handle(&mut inst.store, wreq, out);
        // Where the guest call stood after its last poll (the call is polled first in each
        // pass), and whether the head went out.
        let call_state = AtomicU8::new(RUNNING);
        let began = AtomicBool::new(false);
        let returned = || call_state.load(Ordering::Relaxed) == RETURNED;
        let response = async {
            let mut rx = rx;
            // A guest writes its response only while its call runs, so once the call has
            // returned, what is not there yet never comes.
            let set = poll_fn(|cx| match Pin::new(&mut rx).poll(cx) {
                Poll::Ready(r) => Poll::Ready(Some(r)),
                Poll::Pending if returned() => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            })
            .await;
            let resp = match set {
                Some(Ok(Ok(resp))) => resp,
                Some(Ok(Err(code))) => {
                    return Err(Some(format!("handler returned an error: {code:?}")))
                }
                // Dropped without a response: the call's own result says why.
                Some(Err(_)) => return Err(None),
                None => {
                    return Err(Some(
                        "the handler returned without setting a response".into(),
                    ))
                }
            };
            let (parts, mut body) = resp.into_parts();
            let mut head = Some(parts);
            let mut held = BytesMut::new();
            let mut total = 0usize;
            let over = || {
                Some(format!(
                    "the response body is over the function's max_body of {max_body} bytes"
                ))
            };
            loop {
                // The next piece of the body; or, when there is none for now: if the guest
                // is waiting, send what it wrote (the head at least), and if it returned,
                // the body never ends. Else its next write wakes this task.
                let unsent = head.is_some() || !held.is_empty();
                let step = poll_fn(|cx| match Pin::new(&mut body).poll_frame(cx) {
                    Poll::Ready(frame) => Poll::Ready(Step::Frame(frame)),
                    Poll::Pending => match call_state.load(Ordering::Relaxed) {
                        RETURNED => Poll::Ready(Step::Unfinished),
                        WAITING if unsent => Poll::Ready(Step::Send),
                        _ => Poll::Pending,
                    },
                })
                .await;
                match step {
                    Step::Frame(Some(Ok(frame))) => {
                        if let Ok(data) = frame.into_data() {
                            total += data.len();
                            if total > max_body {
                                return Err(over());
                            }
                            held.extend_from_slice(&data);
                        }
                    }
                    Step::Frame(Some(Err(e))) => {
                        return Err(Some(format!("the response body failed: {e:?}")))
                    }
                    Step::Frame(None) => break,
                    Step::Send => {
                        send(sink, &mut head, &mut held, &began).await?;
                        continue;
                    }
                    Step::Unfinished => return Err(Some(UNFINISHED.into())),
                }
                if held.len() >= stream_after {
                    send(sink, &mut head, &mut held, &began).await?;
                }
            }
            match head {
                Some(parts) => Ok(Some(hyper::Response::from_parts(parts, held.freeze()))),
                None => {
                    if !held.is_empty() {
                        send(sink, &mut head, &mut held, &began).await?;
                    }
                    Ok(None)
                }
            }
        };
        let joined = {
            let _running = self.settings.clock.running();
            let (mut call, mut response) = (pin!(call), pin!(response));
            let (mut called, mut responded) = (None, None);
            // Unconstrained by tokio's budget, both sides: a budget-forced Pending (woken
            // later, not at once) would read as a guest that waits, and, once the call has
            // returned, as a response that never comes.
            tokio::time::timeout(
                wall_limit(self.settings.timeout_ms),
                tokio::task::unconstrained(poll_fn(|cx| {
                    if called.is_none() {
                        // Pending and already woken is a yield (an epoch tick), not a
                        // wait: the guest is still running.
                        let watch = Arc::new(WakeWatch {
                            woken: AtomicBool::new(false),
                            task: cx.waker().clone(),
                        });
                        let waker = Waker::from(watch.clone());
                        match call.as_mut().poll(&mut Context::from_waker(&waker)) {
                            Poll::Ready(r) => {
                                called = Some(r);
                                call_state.store(RETURNED, Ordering::Relaxed);
                            }
                            Poll::Pending if watch.woken.load(Ordering::Relaxed) => {
                                call_state.store(RUNNING, Ordering::Relaxed)
                            }
                            Poll::Pending => call_state.store(WAITING, Ordering::Relaxed),
                        }
                    }
                    if responded.is_none() {
                        if let Poll::Ready(r) = response.as_mut().poll(cx) {
                            responded = Some(r);
                        }
                    }
                    if called.is_some() && responded.is_some() {
                        Poll::Ready((called.take().unwrap(), responded.take().unwrap()))
                    } else {
                        Poll::Pending
                    }
                })),
            )
            .await
        };
        let streamed = began.load(Ordering::Relaxed);
        let answer = |r: Result<Option<hyper::Response<Bytes>>, HttpFailure>| match r {
            Ok(Some(resp)) => Ok(Answer::Whole(resp)),
            Ok(None) => Ok(Answer::Streamed(Ok(()))),
            Err(f) if streamed => Ok(Answer::Streamed(Err(f))),
            Err(f) => Err(f),
        };
        let Ok((called, response)) = joined else {
            // Parked in a host call past the deadline: this instance's state is unknown.
            let log = inst.store.data().stderr.take();
            drop(inst);
            self.replenish();
            return answer(Err(HttpFailure {
                outcome: Outcome::Timeout,
                message: WALL_TIMEOUT_MESSAGE.into(),
                log,
            }));
        };
        inst.served += 1;
        self.settings.memory.observe(&inst.store.data().limiter);
        let report = CallReport {
            peak_bytes: inst.store.data().limiter.peak_bytes as u64,
            log: inst.store.data().stderr.take(),
        };
        let failure = called
            .err()
            .map(|e| classify(&e, &inst.store.data().limiter));
        // A guest whose response failed (left unfinished, over max_body, a host that went
        // away) is in a state nobody checked: it is replaced, not reused.
        if failure.is_none()
            && response.is_ok()
            && inst.served < self.settings.reuse
            && !inst.store.data().limiter.denied
        {
            self.give_back(inst);
        } else {
            drop(inst);
            self.replenish();
        }
        answer(match (response, failure) {
            (Ok(Some(mut resp)), None) => {
                resp.extensions_mut().insert(report);
                Ok(Some(resp))
            }
            (Ok(resp), None) => Ok(resp),
            (_, Some((outcome, message))) => Err(HttpFailure {
                outcome,
                message,
                log: report.log,
            }),
            (Err(Some(message)), None) => Err(HttpFailure {
                outcome: Outcome::Error,
                message,
                log: report.log,
            }),
            (Err(None), None) => Err(HttpFailure {
                outcome: Outcome::Error,
                message: "the handler returned without setting a response".into(),
                log: report.log,
            }),
        })
    }
}

/// The task's waker, noting whether it was woken.
struct WakeWatch {
    woken: AtomicBool,
    task: Waker,
}

impl Wake for WakeWatch {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref()
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Relaxed);
        self.task.wake_by_ref()
    }
}

/// Where the guest call stands, as the body side of [`HttpHandler::handle`] sees it.
const RUNNING: u8 = 0;
const WAITING: u8 = 1;
const RETURNED: u8 = 2;

/// What the body side of [`HttpHandler::handle`] does next.
enum Step<F> {
    Frame(Option<F>),
    /// The guest waits with some of its response unsent.
    Send,
    /// The call returned and the body is not finished: it never will be.
    Unfinished,
}

const UNFINISHED: &str = "the handler returned without finishing its response body";

/// Send the head if it is still held, then the body held so far.
async fn send<S: ResponseSink>(
    sink: &mut S,
    head: &mut Option<http::response::Parts>,
    held: &mut BytesMut,
    began: &AtomicBool,
) -> Result<(), Option<String>> {
    let gone = |e: std::io::Error| Some(format!("the host stopped reading the response: {e}"));
    if let Some(parts) = head.take() {
        began.store(true, Ordering::Relaxed);
        sink.head(parts).await.map_err(gone)?;
    }
    if !held.is_empty() {
        let piece = held.split().freeze();
        sink.piece(piece).await.map_err(gone)?;
    }
    Ok(())
}

/// What a whole response's call left beside it (in the response's extensions: the sandbox
/// reports it to the host beside the guest's headers): the instance's peak linear memory,
/// bytes, and what the guest wrote on stderr during the call (its last 4 KiB).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallReport {
    pub peak_bytes: u64,
    pub log: Vec<u8>,
}

/// What [`HttpHandler::handle`] made of a call.
#[derive(Debug)]
pub enum Answer {
    /// The whole response, not yet sent.
    Whole(hyper::Response<Bytes>),
    /// The head and the body went to the sink; how the call ended.
    Streamed(Result<(), HttpFailure>),
}

/// Where a streamed response goes while the guest is still writing it.
pub trait ResponseSink: Send {
    /// The head, before any of the body; at most once.
    fn head(
        &mut self,
        head: http::response::Parts,
    ) -> impl std::future::Future<Output = std::io::Result<()>> + Send;
    /// The next piece of the body.
    fn piece(
        &mut self,
        data: Bytes,
    ) -> impl std::future::Future<Output = std::io::Result<()>> + Send;
}
