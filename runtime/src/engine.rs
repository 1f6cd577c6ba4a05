//! The wasmtime engine configuration. Compilation (in the host) and execution (in the
//! sandbox) must agree on every setting that shapes compiled code, so both build on
//! [`base_config`]; only the sandbox adds the pooling allocator.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::Thread;
use std::time::Duration;

use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// Epoch ticks are this long: timeouts are enforced to within one tick.
pub const EPOCH_TICK_MS: u64 = 10;

/// Ticks without a guest before the clock parks: 50 ms.
const IDLE_TICKS_BEFORE_PARK: u32 = 5;

/// The epoch clock behind every timeout: it ticks every [`EPOCH_TICK_MS`] while guest code
/// may be running, and sleeps once none has run for [`IDLE_TICKS_BEFORE_PARK`] ticks. An
/// idle sandbox that ticked anyway woke 100 times a second; a thousand of them kept both
/// cores of the node half busy in the kernel.
///
/// Guest code runs only inside a [`Running`] guard (instantiation and calls). The guard
/// counts itself in before the guest starts, and wakes the clock only if it is parked: a
/// busy sandbox's guards make no system call. (Waking it on every 0 → 1 cut its sleep short
/// too: under load the epoch advanced on each request instead of every tick, so deadlines
/// came early, and the wake-ups cost a quarter of warm throughput.) The clock says it is
/// parked before it looks at the count one last time, and a guard counts in before it looks
/// at that flag (both SeqCst): one of them sees the other, so the clock never sleeps through
/// a guest that started. A wake-up that lands before the park is kept by the thread's park
/// token.
pub struct EpochClock {
    engine: Engine,
    running: AtomicUsize,
    parked: AtomicBool,
    /// Ticks so far: what the engine's epoch advanced by.
    ticks: AtomicU64,
    ticker: OnceLock<Thread>,
}

impl EpochClock {
    /// A clock for `engine`, not yet ticking: [`EpochClock::spawn`] starts its thread (a
    /// sandbox does so only after its lockdown, which needs a single-threaded process).
    pub fn new(engine: &Engine) -> Arc<Self> {
        Arc::new(EpochClock {
            engine: engine.clone(),
            running: AtomicUsize::new(0),
            parked: AtomicBool::new(false),
            ticks: AtomicU64::new(0),
            ticker: OnceLock::new(),
        })
    }

    /// Start the ticking thread. It runs on its own OS thread: a guest spinning on every
    /// executor thread must not be able to stop the clock that interrupts it.
    // The epoch is wall time by definition: this reads the clock (the time rule is for the
    // host's control path).
    #[allow(clippy::disallowed_types, clippy::disallowed_methods)]
    pub fn spawn(self: &Arc<Self>) -> std::io::Result<()> {
        let clock = self.clone();
        let handle = std::thread::Builder::new()
            .name("epoch".into())
            .spawn(move || {
                let tick = Duration::from_millis(EPOCH_TICK_MS);
                let mut idle = 0u32;
                let mut last = std::time::Instant::now();
                loop {
                    if clock.running.load(Ordering::SeqCst) > 0 {
                        idle = 0;
                    } else if idle >= IDLE_TICKS_BEFORE_PARK {
                        clock.parked.store(true, Ordering::SeqCst);
                        if clock.running.load(Ordering::SeqCst) == 0 {
                            std::thread::park();
                        }
                        clock.parked.store(false, Ordering::SeqCst);
                        idle = 0;
                        // No guest ran while it slept: ticks start over from now.
                        last = std::time::Instant::now();
                        continue;
                    }
                    // By the clock, not by wake-ups: a guard that raced the park above
                    // leaves a token that ends this sleep early.
                    let since = last.elapsed();
                    if since < tick {
                        std::thread::park_timeout(tick - since);
                        continue;
                    }
                    last += tick;
                    if last.elapsed() > tick {
                        last = std::time::Instant::now(); // fell behind (a stall): no burst
                    }
                    if clock.running.load(Ordering::SeqCst) == 0 {
                        idle += 1;
                    }
                    clock.engine.increment_epoch();
                    clock.ticks.fetch_add(1, Ordering::Relaxed);
                }
            })?;
        // The clock starts unparked: a guard counted in before this finds it ticking.
        let _ = self.ticker.set(handle.thread().clone());
        Ok(())
    }

    /// Count guest code in until the guard drops.
    pub fn running(self: &Arc<Self>) -> Running {
        self.running.fetch_add(1, Ordering::SeqCst);
        if self.parked.load(Ordering::SeqCst) {
            if let Some(t) = self.ticker.get() {
                t.unpark();
            }
        }
        Running(self.clone())
    }

    /// How far the epoch has advanced.
    pub fn ticks(&self) -> u64 {
        self.ticks.load(Ordering::Relaxed)
    }

    /// Whether the clock sleeps (no guest for a while).
    pub fn parked(&self) -> bool {
        self.parked.load(Ordering::SeqCst)
    }
}

/// Held while guest code may run: the epoch clock ticks.
pub struct Running(Arc<EpochClock>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Settings that affect compiled code: everything a precompiled artifact depends on.
pub fn base_config() -> Config {
    let mut c = Config::new();
    c.wasm_component_model(true);
    c.epoch_interruption(true);
    c.cranelift_opt_level(wasmtime::OptLevel::Speed);
    c.parallel_compilation(true);
    // Copy-on-write images make instantiation a few page-table edits instead of a copy.
    c.memory_init_cow(true);
    c
}

/// An engine that only compiles (and checks imports); used by the host at deploy.
pub fn compile_engine() -> wasmtime::Result<Engine> {
    Engine::new(&base_config())
}

/// How big the pool is and what each instance may use.
#[derive(Clone, Copy, Debug)]
pub struct PoolShape {
    /// Instances alive at once (warm + busy), plus the spares replacing retired ones.
    pub instances: u32,
    /// Largest linear memory one instance may grow to, in bytes.
    pub memory_per_instance_bytes: u64,
}

/// The sandbox's engine: the base config plus a pooling allocator sized for `shape`.
pub fn pooled_engine(shape: PoolShape) -> wasmtime::Result<Engine> {
    let mut c = base_config();
    // Room for every live instance, and as many again being replaced in the background.
    let slots = shape.instances.saturating_mul(2).saturating_add(2);
    let mut p = PoolingAllocationConfig::default();
    p.total_component_instances(slots);
    // componentize-py components hold many core instances, memories and tables (the
    // interpreter, libc, adapters); these bounds are virtual reservations, not RSS.
    p.max_core_instances_per_component(64);
    p.total_core_instances(slots.saturating_mul(64));
    p.max_memories_per_component(16);
    p.max_memories_per_module(1);
    p.total_memories(slots.saturating_mul(16));
    p.max_tables_per_component(64);
    p.max_tables_per_module(4);
    p.total_tables(slots.saturating_mul(64));
    p.table_elements(200_000);
    p.total_stacks(slots);
    p.max_core_instance_size(16 << 20);
    p.max_component_instance_size(16 << 20);
    // A memory slot must hold the instance's whole quota; round up to 64 KiB wasm pages.
    let max_mem = shape.memory_per_instance_bytes.div_ceil(65536) * 65536;
    p.max_memory_size(usize::try_from(max_mem).unwrap_or(usize::MAX));
    // Keep a few freed slots warm so CoW images need not be re-mapped.
    p.max_unused_warm_slots(shape.instances.max(1));
    c.allocation_strategy(InstanceAllocationStrategy::Pooling(p));
    Engine::new(&c)
}

#[cfg(test)]
mod tests {
    // The clock is about wall time: these tests read it (the time rule is for the host).
    #![allow(clippy::disallowed_types, clippy::disallowed_methods)]
    use super::*;
    use std::time::Instant;

    fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
        let t = Instant::now();
        while !f() {
            assert!(t.elapsed() < Duration::from_secs(10), "{what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn the_epoch_advances_by_time_not_by_guests_and_the_clock_sleeps_when_idle() {
        let clock = EpochClock::new(&Engine::default());
        clock.spawn().unwrap();
        wait_for("an idle clock parks", || clock.parked());
        let parked_at = clock.ticks();
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(clock.ticks(), parked_at, "a parked clock does not tick");
        // Guests come and go as fast as they can, as requests under load do. Each one
        // that finds the clock parked wakes it; none of them may advance the epoch.
        let t = Instant::now();
        let mut entries = 0u64;
        while t.elapsed() < Duration::from_millis(300) {
            drop(clock.running());
            entries += 1;
        }
        let elapsed_ticks = t.elapsed().as_millis() as u64 / EPOCH_TICK_MS;
        let ticked = clock.ticks() - parked_at;
        assert!(entries > 1000, "{entries}");
        assert!(
            ticked <= elapsed_ticks + 2,
            "{ticked} ticks in {elapsed_ticks} ticks' time, with {entries} guests"
        );
        // A guest that stays keeps it ticking.
        let g = clock.running();
        let before = clock.ticks();
        wait_for("a running guest's clock ticks", || {
            clock.ticks() >= before + 3
        });
        assert!(!clock.parked());
        drop(g);
        wait_for("the clock parks again", || clock.parked());
    }
}
