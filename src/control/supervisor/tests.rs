//! The supervisor's state machine, driven through start, pool changes, resizes, death and
//! restart, zero and retire against a fake process and a fake cgroup driver. Only here does
//! a fake stand in for the kernel: `tests/` runs the same paths on real sandboxes and cgroups.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use surge_runtime::cgroup::{CgroupError, Driver, SandboxCgroup, SandboxLimits, Usage};
use surge_runtime::sandbox::protocol::{HostCommand, SandboxReport};
use tokio::sync::{mpsc, Notify};

use super::driver::{BoxFuture, Sandbox, SandboxEvent, SpawnRequest, Spawner};
use super::process::SpawnError;
use super::*;
use crate::control::node::{Node, Resources};
use crate::control::version::{Phase, VersionControl};
use crate::control::vertical::quota::QuotaUpdate;
use crate::control::vertical::state::Applied;
use crate::manifest::{FunctionSpec, HostConfig};

const MI: u64 = 1 << 20;

/// What the fakes saw, in order: the supervisor's promise is about order (limits grow
/// before the pool does, and shrink only after the sandbox reports).
#[derive(Clone, Debug, PartialEq)]
enum Seen {
    Create(SandboxLimits),
    Apply(SandboxLimits),
    Destroy,
    Spawn { pid: u32, initial: u32, memory: u64 },
    Command(u32, HostCommand),
    Stop(u32),
}

#[derive(Default)]
struct World {
    seen: Mutex<Vec<Seen>>,
    /// The event senders of the sandboxes spawned, by pid.
    sandboxes: Mutex<Vec<(u32, mpsc::UnboundedSender<SandboxEvent>)>>,
    next_pid: AtomicU32,
    /// Spawns to fail before one succeeds.
    fail_spawns: AtomicU32,
    /// What the fake cgroup reports it uses.
    memory_used: parking_lot::Mutex<u64>,
    changed: Notify,
}

impl World {
    fn see(&self, s: Seen) {
        self.seen.lock().push(s);
        self.changed.notify_waiters();
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().clone()
    }

    fn count(&self, f: impl Fn(&Seen) -> bool) -> usize {
        self.seen.lock().iter().filter(|s| f(s)).count()
    }

    fn last_limits(&self) -> Option<SandboxLimits> {
        self.seen.lock().iter().rev().find_map(|s| match s {
            Seen::Create(l) | Seen::Apply(l) => Some(*l),
            _ => None,
        })
    }

    /// The sandbox with `pid` does something.
    fn event(&self, pid: u32, ev: SandboxEvent) {
        let tx = self
            .sandboxes
            .lock()
            .iter()
            .find(|(p, _)| *p == pid)
            .map(|(_, tx)| tx.clone())
            .expect("a sandbox with that pid");
        tx.send(ev).expect("the supervisor listens");
    }

    fn report_warm(&self, pid: u32, ready: u32, slots: u32) {
        self.event(
            pid,
            SandboxEvent::Report(SandboxReport::Warm { ready, slots }),
        );
    }
}

struct FakeSpawner(Arc<World>);

impl Spawner for FakeSpawner {
    fn spawn<'a>(
        &'a self,
        req: SpawnRequest<'a>,
    ) -> BoxFuture<'a, Result<Box<dyn Sandbox>, SpawnError>> {
        Box::pin(async move {
            let w = &self.0;
            // As the real spawner does: no sandbox without its cgroup.
            if !matches!(req.destination.await, Ok(Some(_))) {
                return Err(SpawnError::Start {
                    function: req.spec.function.clone(),
                    reason: "its cgroup could not be made".into(),
                });
            }
            let failing = w
                .fail_spawns
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
                .is_ok();
            if failing {
                return Err(SpawnError::Start {
                    function: req.spec.function.clone(),
                    reason: "the fake refused".into(),
                });
            }
            let pid = w.next_pid.fetch_add(1, Ordering::AcqRel) + 100;
            let (tx, rx) = mpsc::unbounded_channel();
            w.sandboxes.lock().push((pid, tx));
            w.see(Seen::Spawn {
                pid,
                initial: req.spec.initial,
                memory: req.spec.memory_per_instance_bytes,
            });
            Ok(Box::new(FakeSandbox {
                pid,
                socket: req.socket,
                events: rx,
                world: w.clone(),
            }) as Box<dyn Sandbox>)
        })
    }
}

struct FakeSandbox {
    pid: u32,
    socket: PathBuf,
    events: mpsc::UnboundedReceiver<SandboxEvent>,
    world: Arc<World>,
}

impl Sandbox for FakeSandbox {
    fn pid(&self) -> u32 {
        self.pid
    }

    fn socket(&self) -> &Path {
        &self.socket
    }

    fn next_event(&mut self) -> BoxFuture<'_, SandboxEvent> {
        Box::pin(async move {
            match self.events.recv().await {
                Some(ev) => ev,
                None => std::future::pending().await,
            }
        })
    }

    fn send(&mut self, cmd: HostCommand) -> BoxFuture<'_, std::io::Result<()>> {
        self.world.see(Seen::Command(self.pid, cmd));
        Box::pin(async { Ok(()) })
    }

    fn stop(self: Box<Self>, _grace: Duration) -> BoxFuture<'static, ()> {
        self.world.see(Seen::Stop(self.pid));
        Box::pin(async {})
    }
}

struct FakeCgroups(Arc<World>);

impl Driver for FakeCgroups {
    fn create(
        &self,
        _name: &str,
        limits: &SandboxLimits,
    ) -> Result<Box<dyn SandboxCgroup>, CgroupError> {
        self.0.see(Seen::Create(*limits));
        Ok(Box::new(FakeCgroup(self.0.clone())))
    }

    fn dirs_of(&self, name: &str) -> Vec<PathBuf> {
        vec![PathBuf::from(format!("/fake/{name}"))]
    }

    fn describe(&self) -> String {
        "fake".into()
    }

    fn remove_root(&self) {}
}

struct FakeCgroup(Arc<World>);

impl SandboxCgroup for FakeCgroup {
    fn dirs(&self) -> Vec<PathBuf> {
        vec![]
    }

    fn apply(&self, limits: &SandboxLimits) -> Result<(), CgroupError> {
        self.0.see(Seen::Apply(*limits));
        Ok(())
    }

    fn pids(&self) -> Vec<u64> {
        vec![]
    }

    fn usage(&self) -> Usage {
        Usage {
            memory_bytes: *self.0.memory_used.lock(),
            ..Usage::default()
        }
    }

    fn destroy(&self) -> Result<(), CgroupError> {
        self.0.see(Seen::Destroy);
        Ok(())
    }
}

struct Rig {
    world: Arc<World>,
    ctx: Arc<SandboxCtx>,
    _dir: tempfile::TempDir,
}

fn rig(node_memory: u64) -> Rig {
    let world = Arc::new(World::default());
    let dir = tempfile::tempdir().unwrap();
    let cfg = HostConfig::embedded();
    let ctx = Arc::new(SandboxCtx {
        spawner: Arc::new(FakeSpawner(world.clone())),
        cgroups: Some(Arc::new(FakeCgroups(world.clone()))),
        run_dir: dir.path().to_path_buf(),
        config: cfg.sandbox.clone(),
        poke: Arc::new(Notify::new()),
        node: Arc::new(Node::new(Resources {
            memory_bytes: node_memory,
            cpu_millicores: 4000,
        })),
        vertical: crate::control::vertical::params(&cfg.vertical),
        keepalive: cfg.keepalive.clone(),
    });
    Rig {
        world,
        ctx,
        _dir: dir,
    }
}

/// A hard-capped function (`cpu_burst = false`): its CPU ceiling is its quota, so the
/// start-up allowance shows.
fn spec(min_instances: u32) -> FunctionSpec {
    spec_with(min_instances, false)
}

fn spec_with(min_instances: u32, cpu_burst: bool) -> FunctionSpec {
    let text = format!(
        "name = \"f\"\nhandler = \"f.wasm\"\nkind = \"event\"\n\
         [limits]\nmemory = \"64Mi\"\ncpu = \"250m\"\ncpu_burst = {cpu_burst}\n\
         [scaling]\nmin_instances = {min_instances}\nmax_instances = 8\n\
         [vertical]\nenabled = false\nmemory = {{ min = \"16Mi\", max = \"256Mi\" }}\n"
    );
    FunctionSpec::parse(
        Path::new("functions/f/function.toml"),
        &text,
        &HostConfig::embedded().defaults,
    )
    .unwrap()
}

async fn start_version(r: &Rig, min_instances: u32) -> Result<Supervised, StartError> {
    start_spec(r, spec(min_instances)).await
}

async fn start_spec(r: &Rig, spec: FunctionSpec) -> Result<Supervised, StartError> {
    start(
        r.ctx.clone(),
        Version {
            spec,
            kind: Kind::Event,
            version: 1,
            wasm_sha256: "ab".repeat(32),
            deployed_at_unix: 0,
            artifact: PathBuf::from("/fake/artifact"),
            pins: QuotaUpdate::default(),
            at_zero: false,
            share: (0, 1),
            keepalive_state: None,
        },
    )
    .await
}

/// Wait (at most 10 s, a deadlock guard, not a timing assertion) until `f` holds.
async fn until(what: &str, f: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// A manual memory resize, as `surge resize --memory` makes it, and its acknowledgement.
async fn resize_memory(c: &VersionControl, memory_bytes: u64) -> Applied {
    let (next, pins) = c
        .vertical
        .prepare_manual(
            &QuotaUpdate {
                memory_bytes: Some(memory_bytes),
                cpu_millicores: None,
            },
            false,
            false,
        )
        .unwrap();
    assert_eq!(next.memory_bytes, memory_bytes);
    let generation = c.vertical.commit_manual(pins);
    c.vertical
        .wait_applied(generation, Duration::from_secs(10))
        .await
        .expect("applied")
}

fn limits(r: &Rig, memory_quota: u64, instances: u64) -> SandboxLimits {
    SandboxLimits {
        memory_bytes: memory_quota * instances + r.ctx.config.memory_overhead.of(Kind::Event),
        cpu_millicores: 250 * instances,
        cpu_ceiling_millicores: 250 * instances,
        pids_max: r.ctx.config.pids_max as u64,
    }
}

/// The limits under the start-up allowance.
fn lifted(r: &Rig, memory_quota: u64, instances: u64) -> SandboxLimits {
    SandboxLimits {
        cpu_ceiling_millicores: STARTUP_CPU_MILLICORES,
        ..limits(r, memory_quota, instances)
    }
}

fn committed(r: &Rig) -> Resources {
    r.ctx.node.status().committed
}

#[tokio::test]
async fn starts_grows_first_and_shrinks_on_report() {
    let r = rig(64 << 30);
    let s = start_version(&r, 1).await.unwrap();
    let c = s.control.clone();
    let w = &r.world;
    assert_eq!(c.lifecycle.phase(), Phase::Running);
    // The start runs under the start-up allowance; a deploy returns with the quota written
    // (no request waits on it).
    assert_eq!(
        w.seen(),
        vec![
            Seen::Create(lifted(&r, 64 * MI, 1)),
            Seen::Spawn {
                pid: 100,
                initial: 1,
                memory: 64 * MI
            },
            Seen::Apply(limits(&r, 64 * MI, 1)),
        ]
    );
    assert_eq!(
        committed(&r).cpu_millicores,
        250,
        "the ledger counts the quota"
    );
    assert_eq!(c.deployment.sandbox_pid(), Some(100));
    assert_eq!(
        committed(&r).memory_bytes,
        limits(&r, 64 * MI, 1).memory_bytes
    );

    // The sandbox reports its instance warm: the gate opens to it; nothing to rewrite.
    w.report_warm(100, 1, 1);
    until("ready", || c.deployment.ready() == 1).await;
    assert_eq!(c.deployment.gate.capacity(), 1);
    assert_eq!(w.count(|s| matches!(s, Seen::Apply(_))), 1);

    // Growth: the limits for 3 first, then the pool command.
    c.scaler.set_target(3);
    until("pool 3", || {
        w.count(|s| *s == Seen::Command(100, HostCommand::Pool(3))) == 1
    })
    .await;
    let seen = w.seen();
    let apply = seen
        .iter()
        .position(|s| *s == Seen::Apply(limits(&r, 64 * MI, 3)))
        .expect("limits for 3 applied");
    let pool = seen
        .iter()
        .position(|s| *s == Seen::Command(100, HostCommand::Pool(3)))
        .unwrap();
    assert!(apply < pool, "limits grow before the pool: {seen:?}");
    assert_eq!(committed(&r).cpu_millicores, 750);

    // Shrinking: the command goes out, the limits stay until the sandbox holds fewer.
    w.report_warm(100, 3, 3);
    c.scaler.set_target(1);
    until("pool 1", || {
        w.count(|s| *s == Seen::Command(100, HostCommand::Pool(1))) == 1
    })
    .await;
    assert_eq!(w.last_limits(), Some(limits(&r, 64 * MI, 3)));
    w.report_warm(100, 1, 1);
    until("limits for 1", || {
        w.last_limits() == Some(limits(&r, 64 * MI, 1))
    })
    .await;
    assert_eq!(c.deployment.ready(), 1);
    assert_eq!(
        committed(&r).memory_bytes,
        limits(&r, 64 * MI, 1).memory_bytes
    );
    assert_eq!(
        w.count(|s| matches!(s, Seen::Spawn { .. })),
        1,
        "no restart"
    );

    s.retire().await;
    assert_eq!(c.lifecycle.phase(), Phase::Stopped);
    let seen = w.seen();
    assert_eq!(&seen[seen.len() - 2..], &[Seen::Stop(100), Seen::Destroy]);
    assert_eq!(
        committed(&r),
        Resources::default(),
        "the node gets it all back"
    );
    assert_eq!(c.deployment.sandbox_pid(), None);
}

#[tokio::test]
async fn a_resize_rewrites_the_limits_in_place() {
    let r = rig(64 << 30);
    let s = start_version(&r, 2).await.unwrap();
    let c = s.control.clone();
    let w = &r.world;
    w.report_warm(100, 2, 2);
    until("ready", || c.deployment.ready() == 2).await;

    let applied = resize_memory(&c, 128 * MI).await;
    assert_eq!(applied.limits, Some(limits(&r, 128 * MI, 2)));
    assert_eq!(applied.quota.unwrap().memory_bytes, 128 * MI);
    assert_eq!(w.last_limits(), Some(limits(&r, 128 * MI, 2)));
    // The sandbox is told the quota for new instances; it keeps its pid.
    until("memory command", || {
        w.count(|s| *s == Seen::Command(100, HostCommand::Memory(128 * MI))) == 1
    })
    .await;
    assert_eq!(w.count(|s| matches!(s, Seen::Spawn { .. })), 1);
    assert_eq!(c.deployment.sandbox_pid(), Some(100));

    // A lower quota never writes the memory limit below what the cgroup uses.
    *w.memory_used.lock() = 200 * MI;
    let applied = resize_memory(&c, 32 * MI).await;
    assert_eq!(applied.limits.unwrap().memory_bytes, 200 * MI);
    s.retire().await;
}

#[tokio::test]
async fn a_dead_sandbox_is_restarted_in_the_same_cgroup() {
    let r = rig(64 << 30);
    let s = start_version(&r, 1).await.unwrap();
    let c = s.control.clone();
    let w = &r.world;
    w.report_warm(100, 1, 1);
    until("ready", || c.deployment.ready() == 1).await;
    // The first report ends the start-up allowance (a write on a blocking thread).
    until("the quota back", || {
        w.last_limits() == Some(limits(&r, 64 * MI, 1))
    })
    .await;

    let before = w.seen().len();
    w.event(100, SandboxEvent::Exited("signal: 9 (SIGKILL)".into()));
    until("a new sandbox", || c.deployment.sandbox_pid() == Some(101)).await;
    w.report_warm(101, 1, 1);
    until("the quota back", || w.seen().len() == before + 3).await;
    assert_eq!(
        &w.seen()[before..],
        &[
            Seen::Apply(lifted(&r, 64 * MI, 1)),
            Seen::Spawn {
                pid: 101,
                initial: 1,
                memory: 64 * MI
            },
            Seen::Apply(limits(&r, 64 * MI, 1)),
        ],
        "a restart gets the start-up allowance too"
    );
    assert_eq!(c.lifecycle.phase(), Phase::Running);
    assert_eq!(c.lifecycle.restarts.load(Ordering::Relaxed), 1);
    assert_eq!(c.lifecycle.cold_starts.load(Ordering::Relaxed), 0);
    assert_eq!(w.count(|s| matches!(s, Seen::Create(_))), 1, "same cgroup");
    assert_eq!(w.count(|s| *s == Seen::Destroy), 0);
    until("ready again", || c.deployment.ready() == 1).await;
    s.retire().await;
    assert_eq!(w.count(|s| *s == Seen::Destroy), 1);
}

#[tokio::test]
async fn zero_holds_nothing_and_the_next_start_is_cold() {
    let r = rig(64 << 30);
    let s = start_version(&r, 0).await.unwrap();
    let c = s.control.clone();
    let w = &r.world;
    w.report_warm(100, 1, 1);
    until("ready", || c.deployment.ready() == 1).await;

    c.scaler.set_target(0);
    until("zero", || c.lifecycle.phase() == Phase::Zero).await;
    let seen = w.seen();
    assert_eq!(&seen[seen.len() - 2..], &[Seen::Stop(100), Seen::Destroy]);
    assert_eq!(c.deployment.ready(), 0);
    assert_eq!(c.deployment.sandbox_pid(), None);
    assert_eq!(committed(&r), Resources::default());
    assert_eq!(c.vertical.applied().limits, None);

    // A resize at zero is taken now and applies at the next start.
    resize_memory(&c, 96 * MI).await;

    c.scaler.set_target(2);
    until("cold start", || c.deployment.sandbox_pid() == Some(101)).await;
    assert_eq!(c.lifecycle.phase(), Phase::Running);
    assert_eq!(c.lifecycle.cold_starts.load(Ordering::Relaxed), 1);
    assert_eq!(c.lifecycle.restarts.load(Ordering::Relaxed), 0);
    assert_eq!(w.count(|s| matches!(s, Seen::Create(_))), 2, "a new cgroup");
    assert!(w.seen().contains(&Seen::Spawn {
        pid: 101,
        initial: 2,
        memory: 96 * MI
    }));
    w.report_warm(101, 2, 2);
    until("the quota for 2 at 96Mi", || {
        w.last_limits() == Some(limits(&r, 96 * MI, 2))
    })
    .await;
    s.retire().await;
}

#[tokio::test]
async fn a_failed_first_start_leaves_nothing() {
    let r = rig(64 << 30);
    r.world.fail_spawns.store(1, Ordering::Release);
    let e = start_version(&r, 1).await.err().expect("the start fails");
    assert!(e.to_string().contains("the fake refused"), "{e}");
    assert_eq!(
        r.world.seen(),
        vec![
            Seen::Create(lifted(&r, 64 * MI, 1)),
            Seen::Apply(limits(&r, 64 * MI, 1)),
            Seen::Destroy
        ]
    );
    assert_eq!(committed(&r), Resources::default());
    assert_eq!(r.ctx.node.status().demand, Resources::default());
}

#[tokio::test]
async fn a_restart_that_fails_is_retried() {
    let r = rig(64 << 30);
    let s = start_version(&r, 1).await.unwrap();
    let c = s.control.clone();
    r.world.fail_spawns.store(1, Ordering::Release);
    r.world
        .event(100, SandboxEvent::Exited("exit status: 1".into()));
    until("restarted after a failure", || {
        c.deployment.sandbox_pid() == Some(101)
    })
    .await;
    assert_eq!(c.lifecycle.phase(), Phase::Running);
    s.retire().await;
}

#[tokio::test]
async fn the_node_cuts_a_pool_it_cannot_hold() {
    // Room for the overhead and two instances of 64Mi, not three.
    let overhead = HostConfig::embedded()
        .sandbox
        .memory_overhead
        .of(Kind::Event);
    let r = rig(overhead + 2 * 64 * MI + MI);
    let s = start_version(&r, 1).await.unwrap();
    let c = s.control.clone();
    let w = &r.world;
    c.scaler.set_target(4);
    until("pool 2", || {
        w.count(|s| *s == Seen::Command(100, HostCommand::Pool(2))) == 1
    })
    .await;
    let v = &c.vertical.counters;
    assert!(v.capacity_limited.load(Ordering::Relaxed));
    assert_eq!(v.capacity_refusals.load(Ordering::Relaxed), 1);
    assert_eq!(w.last_limits(), Some(limits(&r, 64 * MI, 2)));
    assert!(committed(&r).memory_bytes <= r.ctx.node.capacity().memory_bytes);
    // Back within what fits: no longer limited.
    c.scaler.set_target(2);
    until("not limited", || {
        !v.capacity_limited.load(Ordering::Relaxed)
    })
    .await;
    s.retire().await;
}

#[tokio::test]
async fn a_retiring_version_at_zero_starts_for_requests_draining_in() {
    let r = rig(64 << 30);
    let s = start_version(&r, 0).await.unwrap();
    let c = s.control.clone();
    c.scaler.set_target(0);
    until("zero", || c.lifecycle.phase() == Phase::Zero).await;
    // A request looked its route up before the swap: it holds the version.
    let hold = c.deployment.hold().expect("not retired yet");
    let retired = Arc::new(AtomicBool::new(false));
    let done = retired.clone();
    let task = tokio::spawn(async move {
        s.retire().await;
        done.store(true, Ordering::Release);
    });
    until("started for the draining request", || {
        c.deployment.sandbox_pid() == Some(101)
    })
    .await;
    assert!(!retired.load(Ordering::Acquire), "waits for the request");
    drop(hold);
    task.await.unwrap();
    assert_eq!(c.lifecycle.phase(), Phase::Stopped);
    assert!(
        c.deployment.hold().is_none(),
        "a retired version refuses holds: the caller looks the route up again"
    );
    assert_eq!(
        c.deployment.inflight(),
        0,
        "the refused hold is not counted"
    );
    assert_eq!(committed(&r), Resources::default());
    assert_eq!(r.world.seen().last(), Some(&Seen::Destroy));
}

#[tokio::test]
async fn a_version_restored_at_zero_holds_nothing_until_its_first_request() {
    let r = rig(64 << 30);
    let s = start(
        r.ctx.clone(),
        Version {
            spec: spec(0),
            kind: Kind::Event,
            version: 3,
            wasm_sha256: "ab".repeat(32),
            deployed_at_unix: 0,
            artifact: PathBuf::from("/fake/artifact"),
            pins: QuotaUpdate::default(),
            at_zero: true,
            share: (0, 1),
            keepalive_state: None,
        },
    )
    .await
    .unwrap();
    let c = s.control.clone();
    let w = &r.world;
    // Let the supervisor run into its wait at zero before looking.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(c.lifecycle.phase(), Phase::Zero);
    assert_eq!(c.scaler.target(), 0);
    assert!(w.seen().is_empty(), "no cgroup, no process: {:?}", w.seen());
    assert_eq!(committed(&r), Resources::default());
    assert_eq!(c.deployment.sandbox_pid(), None);
    // The first request's poke raises the target: a cold start, under the allowance.
    c.scaler.set_target(1);
    until("cold start", || c.deployment.sandbox_pid() == Some(100)).await;
    assert_eq!(c.lifecycle.phase(), Phase::Running);
    assert_eq!(c.lifecycle.cold_starts.load(Ordering::Relaxed), 1);
    assert_eq!(w.seen()[0], Seen::Create(lifted(&r, 64 * MI, 1)));
    assert_eq!(
        committed(&r).memory_bytes,
        limits(&r, 64 * MI, 1).memory_bytes
    );
    s.retire().await;
}

#[tokio::test]
async fn a_bursting_function_guarantees_its_quota_and_may_use_up_to_its_ceiling() {
    let r = rig(64 << 30);
    let s = start_spec(&r, spec_with(1, true)).await.unwrap();
    let c = s.control.clone();
    let w = &r.world;
    let burst = |instances: u64, ceiling: u64| SandboxLimits {
        cpu_ceiling_millicores: ceiling,
        ..limits(&r, 64 * MI, instances)
    };
    // One instance: guaranteed 250m, up to one core ([vertical] cpu.max), which is the
    // start-up allowance already: nothing is lifted, nothing rewritten after the start.
    assert_eq!(w.seen()[0], Seen::Create(burst(1, 1000)));
    assert_eq!(w.count(|s| matches!(s, Seen::Apply(_))), 0);
    w.report_warm(100, 1, 1);
    c.scaler.set_target(3);
    until("limits for 3", || w.last_limits() == Some(burst(3, 3000))).await;
    // Eight instances would burst to 8 cores: the ceiling stops at the node's 4. The ledger
    // counts only the guarantee.
    c.scaler.set_target(8);
    until("limits for 8", || w.last_limits() == Some(burst(8, 4000))).await;
    assert_eq!(committed(&r).cpu_millicores, 8 * 250);
    s.retire().await;
}
