//! Asynchronous invocations (`X-Amz-Invocation-Type: Event`), as Lambda documents them: a
//! durable queue, delivered at least once, retried on Lambda's schedule, ending in a
//! destination or in surge's dead-letter store. Nothing accepted is dropped silently.
//!
//! - **Accept.** An event is committed to `queue.db` (fsynced; the writer batches many
//!   events into one commit) before the caller gets its 202 (`Queue::enqueue`).
//! - **Deliver.** One task (`Queue::run`) hands due events to the function whenever it has
//!   warm capacity that no synchronous request waits for, so a backlog never starves
//!   synchronous callers. The backlog counts in the function's demand
//!   (`Deployment::set_backlog`): the autoscaler grows the pool as for queued requests, up
//!   to `max_instances`, from zero too.
//! - **Retry** (`schedule.rs`): a function error twice, about 1 and 2 minutes later;
//!   throttling with backoff from 1 s to 5 min; never past the event's maximum age. The
//!   clock runs `[async] time_scale` times faster than the wall's.
//! - **End** (`record.rs`): a record in Lambda's shape goes to the on-success or on-failure
//!   destination (another function, queued in the same transaction that deletes the
//!   event; or the dead-letter store), and a failure with no destination goes to the
//!   dead-letter store.
//!
//! Claims are in memory: on a restart every stored event is due again, so an attempt a
//! crash cut short runs once more (at least once; its `approximateInvokeCount` counts both).
//!
//! The queue calls functions through [`Invoker`], which the gateway implements (the
//! Invoke API's classification and metrics), so this module never points up at it.

pub mod claims;
pub mod config;
pub mod record;
pub mod schedule;
pub mod store;

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::aws::{self, Destination};
use crate::dispatch::routes::Resolved;
use crate::manifest::config::AsyncConfig;
use crate::registry::catalog::EVENT_INVOKE_CONFIG;
use crate::registry::{DeployError, Registry};
use config::{Effective, InvokeConfig};
use record::{Ended, Response};
use schedule::{Clock, Condition, Next, Outcome, Rules, Tries};
use store::{Finish, Letter, NewEvent, QueueStore, QueueStoreError, Row};

/// Lambda's payload limits: 1 MiB for an event (since 2025), 6 MiB synchronous. Both are
/// also capped by the function's `max_body`.
pub const ASYNC_PAYLOAD_LIMIT: u64 = 1 << 20;
pub const SYNC_PAYLOAD_LIMIT: u64 = 6 << 20;

/// While a due backlog waits for capacity, the queue looks again this often.
const CAPACITY_POLL: Duration = Duration::from_millis(20);
/// Payloads up to this size are kept in memory while queued, up to [`PAYLOAD_CACHE`] bytes
/// in all; larger ones, or past it, are read back from the store.
const PAYLOAD_CACHED_MAX: usize = 64 << 10;
const PAYLOAD_CACHE: u64 = 64 << 20;
/// Events of a function that is not deployed, settled per round.
const MISSING_PER_ROUND: usize = 64;

/// How the pump hands an event over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Via {
    /// To the function.
    Invoke,
    /// The function is not deployed: a throttle (backoff, until the event's age).
    Missing,
    /// The function's reserved concurrency is 0: it ends now, `RetriesExhausted` after no
    /// attempt, at its failure destination.
    Refused,
}

/// How one delivery went.
pub enum Attempt {
    Success(Response),
    /// The handler failed or timed out.
    FunctionError(Response),
    /// It never ran: no capacity, or a host-side failure (the reason, for the log).
    Throttled(String),
}

/// The queue's way to call a function (the gateway's Invoke path).
pub trait Invoker: Send + Sync + 'static {
    fn invoke(
        &self,
        function: String,
        request_id: String,
        payload: Bytes,
    ) -> Pin<Box<dyn Future<Output = Attempt> + Send>>;
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error(transparent)]
    Store(#[from] QueueStoreError),
    #[error("the event queue holds its maximum of {0} events ([async] max_queued)")]
    Full(u64),
    #[error("the event queue's write was interrupted: {0}")]
    Interrupted(String),
    #[error("the cluster could not take the event: {0}")]
    Cluster(String),
    /// A config change the cluster refused or could not take.
    #[error(transparent)]
    Setting(DeployError),
}

/// Why an event-invoke config change did not happen.
enum ConfigChange {
    /// Update needs a config in force, and there is none.
    NoneInForce,
    Cluster(DeployError),
}

impl From<DeployError> for ConfigChange {
    fn from(e: DeployError) -> Self {
        ConfigChange::Cluster(e)
    }
}

/// One event the queue holds.
struct Meta {
    request_id: String,
    enqueued_ms: i64,
    due_ms: i64,
    attempts: u32,
    throttles: u32,
    last: Option<Response>,
    in_flight: bool,
    /// The payload, kept in memory when small (within [`PAYLOAD_CACHE`]); else read from
    /// the store when it is delivered.
    payload: Option<Bytes>,
}

#[derive(Default)]
struct FunctionState {
    events: HashMap<i64, Meta>,
    /// (due, id) of the events not in flight.
    due: BTreeSet<(i64, i64)>,
    in_flight: u32,
    /// Of those in flight, the ones handed to the function and not yet back: what the
    /// function's capacity is shared with (an event whose end is being written holds none).
    running: u32,
    succeeded: u64,
    failed: u64,
    throttled: u64,
    dead_lettered: u64,
    /// Letters in the store now.
    letters: u64,
}

impl FunctionState {
    fn add(&mut self, id: i64, m: Meta) {
        self.due.insert((m.due_ms, id));
        self.events.insert(id, m);
    }
}

#[derive(Default)]
struct State {
    functions: HashMap<String, FunctionState>,
    /// Events held (queued, retrying or in flight), plus enqueues under way.
    total: u64,
    /// Bytes of payload held in memory.
    cached: u64,
    /// The configs set through the API, with their last change (Unix ms).
    configs: HashMap<String, (InvokeConfig, i64)>,
}

impl State {
    /// `payload`, if it may be kept in memory (then counted in `cached`).
    fn cache(&mut self, payload: &Bytes) -> Option<Bytes> {
        let n = payload.len() as u64;
        let keep = payload.len() <= PAYLOAD_CACHED_MAX && self.cached + n <= PAYLOAD_CACHE;
        keep.then(|| {
            self.cached += n;
            payload.clone()
        })
    }

    fn uncache(&mut self, m: &Meta) {
        if let Some(p) = &m.payload {
            self.cached -= p.len() as u64;
        }
    }
}

/// A function's queue, as status and metrics show it.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct FunctionQueue {
    pub function: String,
    /// Waiting to be delivered, retries included.
    pub queued: u64,
    pub in_flight: u64,
    /// Of the queued: waiting for a retry (after a function error or a throttle).
    pub retrying: u64,
    /// Seconds since the oldest held event was accepted (wall clock).
    pub oldest_age_s: f64,
    /// Events that ended since the host started: with success, with failure, and
    /// throttles met on the way.
    pub succeeded: u64,
    pub failed: u64,
    pub throttled: u64,
    /// Records written to the dead-letter store since start, and held there now.
    pub dead_lettered: u64,
    pub dead_letters: u64,
}

/// Where a function's event-invoke config comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigSource {
    Api,
    Manifest,
}

pub struct Queue {
    store: QueueStore,
    state: Mutex<State>,
    wake: Notify,
    clock: Clock,
    max_queued: u64,
    registry: Arc<Registry>,
    /// Seconds from acceptance to the end (success or failure), per function.
    delivery: prometheus::HistogramVec,
    /// In a cluster: events are published to it, claimed, and delivered only while the
    /// claim holds.
    claims: std::sync::OnceLock<Arc<dyn claims::Claims>>,
    /// Held by a change of an event-invoke config, through the API or the cluster's watch.
    config_changes: tokio::sync::Mutex<()>,
}

impl Queue {
    pub fn open(
        state_dir: &Path,
        cfg: &AsyncConfig,
        registry: Arc<Registry>,
        delivery: prometheus::HistogramVec,
    ) -> Result<Arc<Queue>, QueueError> {
        let store = QueueStore::open(state_dir)?;
        let mut st = State {
            configs: store.configs()?,
            ..State::default()
        };
        for (f, n) in store.letter_counts()? {
            st.functions.entry(f).or_default().letters = n;
        }
        let rows = store.events()?;
        st.total = rows.len() as u64;
        if !rows.is_empty() {
            tracing::info!(events = rows.len(), "event queue: resuming held events");
        }
        for r in rows {
            let (id, f) = (r.id, r.function.clone());
            st.functions.entry(f).or_default().add(id, meta(r));
        }
        Ok(Arc::new(Queue {
            store,
            state: Mutex::new(st),
            wake: Notify::new(),
            clock: Clock {
                scale: cfg.time_scale,
            },
            max_queued: cfg.max_queued,
            registry,
            delivery,
            claims: std::sync::OnceLock::new(),
            config_changes: tokio::sync::Mutex::new(()),
        }))
    }

    /// Join a cluster's claims (set once, at start).
    pub fn set_claims(&self, c: Arc<dyn claims::Claims>) {
        let _ = self.claims.set(c);
    }

    /// Take over an event another node accepted and can no longer deliver: it was claimed
    /// by this node already, so it is only stored here, keeping its age.
    pub async fn adopt(
        self: &Arc<Self>,
        function: &str,
        request_id: &str,
        payload: Bytes,
        enqueued_ms: i64,
    ) -> Result<(), QueueError> {
        let (q, f, r) = (
            Arc::clone(self),
            function.to_string(),
            request_id.to_string(),
        );
        detach(async move { q.store_event(&f, &r, payload, enqueued_ms).await }).await
    }

    /// Accept an event: answers once it is durable.
    pub async fn enqueue(
        self: &Arc<Self>,
        function: &str,
        request_id: &str,
        payload: Bytes,
    ) -> Result<(), QueueError> {
        let (q, f, r) = (
            Arc::clone(self),
            function.to_string(),
            request_id.to_string(),
        );
        detach(async move { q.enqueue_inner(&f, &r, payload).await }).await
    }

    async fn enqueue_inner(
        &self,
        function: &str,
        request_id: &str,
        payload: Bytes,
    ) -> Result<(), QueueError> {
        let now = aws::now_ms();
        self.reserve()?;
        // In a cluster, durable means in etcd, claimed by this node: if this node dies,
        // another delivers it. The room is reserved first: a refused event is never
        // published.
        if let Some(c) = self.claims.get() {
            if let Err(e) = c.publish(function, request_id, &payload, now).await {
                self.state.lock().total -= 1;
                return Err(QueueError::Cluster(e));
            }
        }
        let stored = self
            .store_reserved(function, request_id, payload, now)
            .await;
        if let (Err(_), Some(c)) = (&stored, self.claims.get()) {
            // Refused here after all: the cluster forgets it too.
            c.ended(request_id);
        }
        stored
    }

    /// Room for one more event (the `[async] max_queued` bound), or Full.
    fn reserve(&self) -> Result<(), QueueError> {
        let mut st = self.state.lock();
        if st.total >= self.max_queued {
            return Err(QueueError::Full(self.max_queued));
        }
        st.total += 1;
        Ok(())
    }

    async fn store_event(
        &self,
        function: &str,
        request_id: &str,
        payload: Bytes,
        now: i64,
    ) -> Result<(), QueueError> {
        // Taken over a second time (this node lost its lease and won the event back): the
        // row it already holds delivers it, under the new claim.
        let held = self
            .state
            .lock()
            .functions
            .get(function)
            .is_some_and(|f| f.events.values().any(|m| m.request_id == request_id));
        if held {
            return Ok(());
        }
        self.reserve()?;
        self.store_reserved(function, request_id, payload, now)
            .await
    }

    /// Store an event whose room [`reserve`](Self::reserve) took.
    async fn store_reserved(
        &self,
        function: &str,
        request_id: &str,
        payload: Bytes,
        now: i64,
    ) -> Result<(), QueueError> {
        let e = NewEvent {
            function: function.to_string(),
            request_id: request_id.to_string(),
            payload: payload.clone(),
            enqueued_ms: now,
        };
        match self.store.insert(vec![e]).await {
            Ok(ids) => {
                let mut st = self.state.lock();
                let cached = st.cache(&payload);
                let f = st.functions.entry(function.to_string()).or_default();
                f.add(ids[0], new_meta(request_id, now, cached));
                drop(st);
                self.wake.notify_one();
                Ok(())
            }
            Err(e) => {
                self.state.lock().total -= 1;
                Err(e.into())
            }
        }
    }

    /// Deliver until `shutdown` resolves. An attempt in progress then is abandoned: its
    /// event stays stored, and runs again at the next start.
    pub async fn run(
        self: Arc<Self>,
        invoker: Arc<dyn Invoker>,
        shutdown: impl Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        loop {
            let wait = self.pump(&invoker);
            tokio::select! {
                _ = &mut shutdown => return,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Start what can start now; answers how long until the next look.
    fn pump(self: &Arc<Self>, invoker: &Arc<dyn Invoker>) -> Duration {
        let now = aws::now_ms();
        let routes = self.registry.routes();
        let mut next_ms = now + 60_000;
        let mut starts: Vec<(String, i64, Via, Option<Bytes>)> = Vec::new();
        let mut st = self.state.lock();
        for (name, f) in st.functions.iter_mut() {
            if let Some(&(due, _)) = f.due.first() {
                if due > now {
                    next_ms = next_ms.min(due);
                }
            }
            let mut live = None;
            let (free, via) = match routes.resolve_name(name) {
                Resolved::Live(d) => {
                    live = Some(d);
                    if d.reserved() == 0 {
                        // Throttled for good: each event ends now, at its failure destination.
                        (MISSING_PER_ROUND as u64, Via::Refused)
                    } else {
                        (u64::from(d.spare_capacity(f.running)), Via::Invoke)
                    }
                }
                Resolved::Pending(_) => (0, Via::Invoke),
                Resolved::Unknown => (MISSING_PER_ROUND as u64, Via::Missing),
            };
            let mut taken = 0;
            while taken < free {
                let Some(&(due, id)) = f.due.first() else {
                    break;
                };
                if due > now {
                    break;
                }
                f.due.pop_first();
                if let Some(m) = f.events.get_mut(&id) {
                    m.in_flight = true;
                    f.in_flight += 1;
                    f.running += 1;
                    starts.push((name.clone(), id, via, m.payload.clone()));
                }
                taken += 1;
            }
            if let Some(d) = live {
                // The demand still waiting: due and not handed over (those just handed over
                // count in the load window from their admission). Counted up to what the
                // largest pool could take at once.
                let cap =
                    crate::dispatch::executions(&d.spec, d.kind, d.spec.scaling.max_instances);
                let backlog = match via {
                    Via::Refused => 0,
                    _ => f
                        .due
                        .iter()
                        .take_while(|&&(due, _)| due <= now)
                        .take(cap as usize + 1)
                        .count() as u64,
                };
                d.set_backlog(backlog);
            }
            if f.due.first().is_some_and(|&(due, _)| due <= now) {
                next_ms = next_ms.min(now + CAPACITY_POLL.as_millis() as i64);
            }
        }
        drop(st);
        for (name, id, via, payload) in starts {
            let q = Arc::clone(self);
            let invoker = Arc::clone(invoker);
            tokio::spawn(async move { q.deliver(&*invoker, name, id, via, payload).await });
        }
        Duration::from_millis((next_ms - now).clamp(1, 60_000) as u64)
    }

    /// One attempt at event `id` of `function`, and what follows from it.
    async fn deliver(
        self: &Arc<Self>,
        invoker: &dyn Invoker,
        function: String,
        id: i64,
        via: Via,
        cached: Option<Bytes>,
    ) {
        // Counted in `running` by the pump; given back when the function is done with it,
        // or on any way out before.
        let running = Running(self, &function);
        let Some((request_id, tries, last)) = ({
            let st = self.state.lock();
            st.functions
                .get(&function)
                .and_then(|f| f.events.get(&id))
                .map(|m| {
                    (
                        m.request_id.clone(),
                        Tries {
                            attempts: m.attempts,
                            throttles: m.throttles,
                            enqueued_ms: m.enqueued_ms,
                        },
                        m.last.clone(),
                    )
                })
        }) else {
            return;
        };
        // A claim that ended (the lease lost while cut off from etcd) is another node's
        // to deliver now: the event leaves this node's queue.
        if let Some(c) = self.claims.get() {
            if !c.holds(&request_id) {
                tracing::info!(
                    function,
                    request_id,
                    "event queue: the claim ended; another node delivers it"
                );
                let gone = Finish {
                    letter: None,
                    forward: None,
                    payload: Bytes::new(),
                };
                if self.store.finish(id, gone).await.is_ok() {
                    self.forget(&function, id);
                }
                return;
            }
        }
        let eff = self.effective(&function);
        let rules = Rules {
            retries: eff.retries,
            max_age_s: eff.max_age_s,
        };
        let read = match cached {
            Some(p) => Ok(Ok(Some(p))),
            None => {
                let q = Arc::clone(self);
                tokio::task::spawn_blocking(move || q.store.payload(id)).await
            }
        };
        let payload = {
            match read {
                Ok(Ok(Some(p))) => p,
                Ok(Ok(None)) => {
                    // Gone from the store (a purge of its function's queue): forget it.
                    self.forget(&function, id);
                    return;
                }
                Ok(Err(e)) => {
                    tracing::warn!(function, error = %e, "event queue: reading an event failed");
                    self.back_off(&function, id, tries, last, aws::now_ms() + 1000)
                        .await;
                    return;
                }
                Err(_) => {
                    self.back_off(&function, id, tries, last, aws::now_ms() + 1000)
                        .await;
                    return;
                }
            }
        };
        if schedule::expired(
            tries.enqueued_ms,
            rules.max_age_s,
            self.clock,
            aws::now_ms(),
        ) {
            let ended = (Condition::EventAgeExceeded, tries.attempts, last);
            return self
                .end(&function, id, &request_id, &payload, ended, &eff)
                .await;
        }
        let attempt = match via {
            Via::Missing => Attempt::Throttled(format!("function {function} is not deployed")),
            Via::Refused => {
                drop(running);
                let ended = (Condition::RetriesExhausted, tries.attempts, last);
                return self
                    .end(&function, id, &request_id, &payload, ended, &eff)
                    .await;
            }
            Via::Invoke => {
                self.store.started(id);
                invoker
                    .invoke(function.clone(), request_id.clone(), payload.clone())
                    .await
            }
        };
        // The function's capacity is free again before the outcome is written.
        drop(running);
        let (outcome, response, attempts) = match attempt {
            Attempt::Success(r) => (Outcome::Success, Some(r), tries.attempts + 1),
            Attempt::FunctionError(r) => (Outcome::FunctionError, Some(r), tries.attempts + 1),
            Attempt::Throttled(why) => {
                tracing::debug!(function, %why, "event throttled");
                (Outcome::Throttled, None, tries.attempts)
            }
        };
        let now = aws::now_ms();
        let t = Tries { attempts, ..tries };
        match schedule::after(outcome, t, rules, self.clock, now) {
            Next::Retry { due_ms, throttles } => {
                let last = response.or(last);
                let t = Tries { throttles, ..t };
                self.back_off(&function, id, t, last, due_ms).await;
            }
            Next::Done(condition) => {
                let last = response.or(last);
                self.end(
                    &function,
                    id,
                    &request_id,
                    &payload,
                    (condition, attempts, last),
                    &eff,
                )
                .await
            }
        }
    }

    /// Put event `id` back, due at `due_ms`.
    async fn back_off(
        &self,
        function: &str,
        id: i64,
        t: Tries,
        last: Option<Response>,
        due_ms: i64,
    ) {
        let stored = last.as_ref().map(Response::to_json);
        if let Err(e) = self
            .store
            .reschedule(id, due_ms, t.attempts, t.throttles, stored)
            .await
        {
            // The stored row keeps its older schedule; this one holds until a restart.
            tracing::warn!(function, error = %e, "event queue: a reschedule was not stored");
        }
        let mut st = self.state.lock();
        if let Some(f) = st.functions.get_mut(function) {
            let throttled = f.events.get(&id).is_some_and(|m| t.throttles > m.throttles);
            if let Some(m) = f.events.get_mut(&id) {
                m.in_flight = false;
                m.due_ms = due_ms;
                m.attempts = t.attempts;
                m.throttles = t.throttles;
                m.last = last;
                f.in_flight -= 1;
                f.due.insert((due_ms, id));
            }
            f.throttled += u64::from(throttled);
        }
        drop(st);
        self.wake.notify_one();
    }

    /// Event `id` has ended: its record goes where the config says, in the transaction
    /// that deletes it.
    async fn end(
        &self,
        function: &str,
        id: i64,
        request_id: &str,
        payload: &Bytes,
        (condition, attempts, last): (Condition, u32, Option<Response>),
        eff: &Effective,
    ) {
        let now = aws::now_ms();
        let record = record::record(&Ended {
            condition,
            request_id,
            function,
            attempts,
            payload,
            response: last.as_ref(),
            at_ms: now,
        });
        let success = condition == Condition::Success;
        let destination = if success {
            &eff.on_success
        } else {
            &eff.on_failure
        };
        let mut finish = Finish {
            letter: None,
            forward: None,
            payload: payload.clone(),
        };
        let letter = |destination: String| Letter {
            id: 0,
            function: function.to_string(),
            request_id: request_id.to_string(),
            condition: condition.as_str().to_string(),
            attempts,
            destination,
            at_ms: now,
            record: record.to_string(),
        };
        match destination {
            Some(Destination::Function(target)) => {
                finish.forward = Some(NewEvent {
                    function: target.clone(),
                    request_id: aws::request_id(),
                    payload: Bytes::from(record.to_string()),
                    enqueued_ms: now,
                })
            }
            Some(Destination::Store(arn)) => finish.letter = Some(letter(arn.clone())),
            // A failure with nowhere to go is kept, as if a dead-letter queue were always on.
            None if !success => finish.letter = Some(letter(String::new())),
            None => {}
        }
        let forward = finish.forward.clone();
        let lettered = finish.letter.is_some();
        // In a cluster, the destination's event is the cluster's too (claimed here) before
        // this one ends: whichever node delivers it, it is not lost with this one.
        let published = match (&forward, self.claims.get()) {
            (Some(e), Some(c)) => c
                .publish(&e.function, &e.request_id, &e.payload, e.enqueued_ms)
                .await
                .map_err(QueueError::Cluster),
            _ => Ok(()),
        };
        let finished = match published {
            Ok(()) => self
                .store
                .finish(id, finish)
                .await
                .map_err(QueueError::from),
            Err(e) => Err(e),
        };
        match finished {
            Ok(forward_id) => {
                if let Some(c) = self.claims.get() {
                    c.ended(request_id);
                }
                let mut st = self.state.lock();
                let mut enqueued = None;
                let mut gone = None;
                if let Some(f) = st.functions.get_mut(function) {
                    if let Some(m) = f.events.remove(&id) {
                        f.in_flight -= 1;
                        enqueued = Some(m.enqueued_ms);
                        gone = Some(m);
                    }
                    if success {
                        f.succeeded += 1;
                    } else {
                        f.failed += 1;
                    }
                    f.dead_lettered += u64::from(lettered);
                    f.letters += u64::from(lettered);
                }
                st.total -= 1;
                if let Some(m) = &gone {
                    st.uncache(m);
                }
                if let (Some(e), Some(new)) = (forward, forward_id) {
                    st.total += 1;
                    let cached = st.cache(&e.payload);
                    let f = st.functions.entry(e.function).or_default();
                    f.add(new, new_meta(&e.request_id, e.enqueued_ms, cached));
                }
                drop(st);
                if let Some(at) = enqueued {
                    self.delivery
                        .with_label_values(&[function])
                        .observe((now - at).max(0) as f64 / 1000.0);
                }
                self.wake.notify_one();
            }
            Err(e) => {
                // Still stored: it runs again (at least once), a second later.
                tracing::warn!(function, error = %e, "event queue: an ending was not stored");
                let held = self.state.lock().functions.get(function).and_then(|f| {
                    let m = f.events.get(&id)?;
                    Some(Tries {
                        attempts,
                        throttles: m.throttles,
                        enqueued_ms: m.enqueued_ms,
                    })
                });
                if let Some(t) = held {
                    self.back_off(function, id, t, last, now + 1000).await;
                }
            }
        }
    }

    fn forget(&self, function: &str, id: i64) {
        let mut st = self.state.lock();
        let gone = st.functions.get_mut(function).and_then(|f| {
            let m = f.events.remove(&id)?;
            f.in_flight -= 1;
            Some(m)
        });
        if let Some(m) = gone {
            st.total -= 1;
            st.uncache(&m);
        }
    }

    /// The settings in force for `function`: the API's config, else the manifest's
    /// `[async]`, else Lambda's defaults.
    pub fn effective(&self, function: &str) -> Effective {
        self.config(function)
            .map(|(c, _, _)| c.effective())
            .unwrap_or_default()
    }

    /// The config `GetFunctionEventInvokeConfig` answers, with its last change (Unix ms).
    pub fn config(&self, function: &str) -> Option<(InvokeConfig, i64, ConfigSource)> {
        if let Some((c, at)) = self.state.lock().configs.get(function) {
            return Some((c.clone(), *at, ConfigSource::Api));
        }
        let v = self.registry.version_of(function)?;
        let d = &v.deployment;
        let a = d.spec.async_invoke.as_ref()?;
        Some((
            InvokeConfig::from_manifest(a),
            d.deployed_at_unix * 1000,
            ConfigSource::Manifest,
        ))
    }

    /// Set `function`'s config through the API: `c` whole (Put), or merged onto what is in
    /// force (Update: None when none is). Answers the config stored.
    pub async fn put_config(
        self: &Arc<Self>,
        function: &str,
        c: InvokeConfig,
        merge: bool,
    ) -> Result<Option<(InvokeConfig, i64)>, QueueError> {
        let (q, f) = (Arc::clone(self), function.to_string());
        detach(async move { q.put_config_inner(&f, c, merge).await }).await
    }

    async fn put_config_inner(
        &self,
        function: &str,
        c: InvokeConfig,
        merge: bool,
    ) -> Result<Option<(InvokeConfig, i64)>, QueueError> {
        // One change at a time, and none while the cluster's watch applies one: the last
        // written here is the cluster's last.
        let _one = self.config_changes.lock().await;
        // In a cluster the config is the cluster's: merged onto what it holds.
        let from_manifest = self.manifest_config(function);
        let local = self.state.lock().configs.get(function).cloned();
        let set = self
            .registry
            .update_setting(function, EVENT_INVOKE_CONFIG, local, |held| {
                let base = held.map(|(c, _)| c).or_else(|| from_manifest.clone());
                let c = match (merge, base) {
                    (true, Some(old)) => old.merged(&c),
                    (true, None) => return Err(ConfigChange::NoneInForce),
                    (false, _) => c.clone(),
                };
                Ok(Some((c, aws::now_ms())))
            })
            .await;
        let (c, at) = match set {
            Ok(set) => set.expect("set above"),
            Err(ConfigChange::NoneInForce) => return Ok(None),
            Err(ConfigChange::Cluster(e)) => return Err(QueueError::Setting(e)),
        };
        self.keep_config(function, Some((c.clone(), at))).await?;
        Ok(Some((c, at)))
    }

    /// The config `function`'s manifest gives (`[async]`), if it is deployed here.
    fn manifest_config(&self, function: &str) -> Option<InvokeConfig> {
        let v = self.registry.version_of(function)?;
        v.deployment
            .spec
            .async_invoke
            .as_ref()
            .map(InvokeConfig::from_manifest)
    }

    /// Store `function`'s API config (None: delete it) and use it from now on.
    async fn keep_config(
        &self,
        function: &str,
        config: Option<(InvokeConfig, i64)>,
    ) -> Result<(), QueueError> {
        self.store.put_config(function, config.clone()).await?;
        let mut st = self.state.lock();
        match config {
            Some(c) => st.configs.insert(function.to_string(), c),
            None => st.configs.remove(function),
        };
        Ok(())
    }

    /// The cluster changed `function`'s config (through another node, or this one): keep
    /// it here.
    pub async fn apply_config(
        self: &Arc<Self>,
        function: &str,
        config: Option<(InvokeConfig, i64)>,
    ) -> Result<(), QueueError> {
        let (q, f) = (Arc::clone(self), function.to_string());
        detach(async move {
            let _one = q.config_changes.lock().await;
            if q.state.lock().configs.get(&f) == config.as_ref() {
                return Ok(());
            }
            q.keep_config(&f, config).await
        })
        .await
    }

    /// The functions with a config set through the API.
    pub fn configured(&self) -> Vec<String> {
        self.state.lock().configs.keys().cloned().collect()
    }

    /// Delete the API's config: answers whether there was one.
    pub async fn delete_config(self: &Arc<Self>, function: &str) -> Result<bool, QueueError> {
        let (q, f) = (Arc::clone(self), function.to_string());
        detach(async move { q.delete_config_inner(&f).await }).await
    }

    async fn delete_config_inner(&self, function: &str) -> Result<bool, QueueError> {
        let _one = self.config_changes.lock().await;
        let local = self.state.lock().configs.get(function).cloned();
        let mut had = false;
        self.registry
            .update_setting(function, EVENT_INVOKE_CONFIG, local, |held| {
                had = held.is_some();
                Ok::<_, DeployError>(None)
            })
            .await
            .map_err(QueueError::Setting)?;
        if had || self.state.lock().configs.contains_key(function) {
            self.keep_config(function, None).await?;
        }
        Ok(had)
    }

    /// Every function's queue, in name order: those deployed, and any other holding events
    /// or letters.
    pub fn stats(&self) -> Vec<FunctionQueue> {
        let now = aws::now_ms();
        let st = self.state.lock();
        let mut out: Vec<FunctionQueue> = st
            .functions
            .iter()
            .map(|(name, f)| {
                let mut q = FunctionQueue {
                    function: name.clone(),
                    in_flight: u64::from(f.in_flight),
                    succeeded: f.succeeded,
                    failed: f.failed,
                    throttled: f.throttled,
                    dead_lettered: f.dead_lettered,
                    dead_letters: f.letters,
                    ..FunctionQueue::default()
                };
                let mut oldest = now;
                for m in f.events.values() {
                    oldest = oldest.min(m.enqueued_ms);
                    if !m.in_flight {
                        q.queued += 1;
                        q.retrying += u64::from(m.attempts > 0 || m.throttles > 0);
                    }
                }
                q.oldest_age_s = if f.events.is_empty() {
                    0.0
                } else {
                    (now - oldest).max(0) as f64 / 1000.0
                };
                q
            })
            .collect();
        out.sort_by(|a, b| a.function.cmp(&b.function));
        out
    }

    pub fn function_stats(&self, function: &str) -> FunctionQueue {
        self.stats()
            .into_iter()
            .find(|q| q.function == function)
            .unwrap_or_else(|| FunctionQueue {
                function: function.to_string(),
                ..FunctionQueue::default()
            })
    }

    /// The dead-letter store's entries for `function` after id `after`, oldest first.
    pub fn letters(
        &self,
        function: &str,
        after: i64,
        limit: usize,
    ) -> Result<Vec<Letter>, QueueError> {
        Ok(self.store.letters(function, after, limit)?)
    }

    /// Put letters of `function` back into the queue (all, or the one `id`), due now with
    /// a fresh age and count. Answers how many.
    pub async fn replay(
        self: &Arc<Self>,
        function: &str,
        id: Option<i64>,
    ) -> Result<u64, QueueError> {
        let (q, f) = (Arc::clone(self), function.to_string());
        detach(async move { q.replay_inner(&f, id).await }).await
    }

    async fn replay_inner(&self, function: &str, id: Option<i64>) -> Result<u64, QueueError> {
        let rows = self.store.replay(function, id, aws::now_ms()).await?;
        let n = rows.len() as u64;
        let mut st = self.state.lock();
        st.total += n;
        let f = st.functions.entry(function.to_string()).or_default();
        f.letters = f.letters.saturating_sub(n);
        for r in rows {
            f.add(r.id, meta(r));
        }
        drop(st);
        self.wake.notify_one();
        Ok(n)
    }

    /// Delete the letters of `function`: answers how many.
    pub async fn purge(self: &Arc<Self>, function: &str) -> Result<u64, QueueError> {
        let (q, f) = (Arc::clone(self), function.to_string());
        detach(async move { q.purge_inner(&f).await }).await
    }

    async fn purge_inner(&self, function: &str) -> Result<u64, QueueError> {
        let n = self.store.purge(function).await?;
        if let Some(f) = self.state.lock().functions.get_mut(function) {
            f.letters = f.letters.saturating_sub(n);
        }
        Ok(n)
    }
}

/// Run a store write and the index update after it to their end even if the caller goes
/// away (a client that disconnects drops its handler): a committed event must reach the
/// index, or it would wait for a restart, and the counts would drift.
async fn detach<T: Send + 'static>(
    f: impl Future<Output = Result<T, QueueError>> + Send + 'static,
) -> Result<T, QueueError> {
    tokio::spawn(f)
        .await
        .unwrap_or_else(|e| Err(QueueError::Interrupted(e.to_string())))
}

/// An event handed to a function and not back yet (see `FunctionState::running`).
struct Running<'a>(&'a Queue, &'a str);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        if let Some(f) = self.0.state.lock().functions.get_mut(self.1) {
            f.running -= 1;
        }
        self.0.wake.notify_one();
    }
}

fn new_meta(request_id: &str, now: i64, payload: Option<Bytes>) -> Meta {
    Meta {
        request_id: request_id.to_string(),
        enqueued_ms: now,
        due_ms: now,
        attempts: 0,
        throttles: 0,
        last: None,
        in_flight: false,
        payload,
    }
}

fn meta(r: Row) -> Meta {
    Meta {
        request_id: r.request_id,
        enqueued_ms: r.enqueued_ms,
        due_ms: r.due_ms,
        attempts: r.attempts,
        throttles: r.throttles,
        last: r.last.as_deref().and_then(Response::from_json),
        in_flight: false,
        payload: None,
    }
}
