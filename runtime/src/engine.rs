//! The wasmtime engine configuration. Compilation (in the host) and execution (in the
//! sandbox) must agree on every setting that shapes compiled code, so both build on
//! [`base_config`]; only the sandbox adds the pooling allocator.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::Thread;
use std::time::Duration;

use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// Epoch ticks are this long: timeouts are enforced to within one tick.
pub const EPOCH_TICK_MS: u64 = 10;

/// The epoch clock behind every timeout: it ticks every [`EPOCH_TICK_MS`] while guest code
/// may be running, and sleeps while none is. An idle sandbox that ticked anyway woke 100
/// times a second; a thousand of them kept both cores of the node half busy in the kernel.
///
/// Guest code runs only inside a [`Running`] guard (instantiation and calls). The guard
/// counts itself in before the guest starts and wakes the clock on 0 → 1; the clock parks
/// when the count is 0. A wake-up that lands before the park is kept by the thread's park
/// token, so the clock never sleeps through a guest that started.
pub struct EpochClock {
    engine: Engine,
    running: AtomicUsize,
    ticker: OnceLock<Thread>,
}

impl EpochClock {
    /// A clock for `engine`, not yet ticking: [`EpochClock::spawn`] starts its thread (a
    /// sandbox does so only after its lockdown, which needs a single-threaded process).
    pub fn new(engine: &Engine) -> Arc<Self> {
        Arc::new(EpochClock {
            engine: engine.clone(),
            running: AtomicUsize::new(0),
            ticker: OnceLock::new(),
        })
    }

    /// Start the ticking thread. It runs on its own OS thread: a guest spinning on every
    /// executor thread must not be able to stop the clock that interrupts it.
    pub fn spawn(self: &Arc<Self>) -> std::io::Result<()> {
        let clock = self.clone();
        let handle = std::thread::Builder::new()
            .name("epoch".into())
            .spawn(move || loop {
                if clock.running.load(Ordering::SeqCst) == 0 {
                    std::thread::park();
                    continue;
                }
                std::thread::park_timeout(Duration::from_millis(EPOCH_TICK_MS));
                clock.engine.increment_epoch();
            })?;
        let _ = self.ticker.set(handle.thread().clone());
        // A guard counted in before the thread was registered found no one to wake: wake
        // it now, so it looks at the count again (the park token keeps an early wake).
        handle.thread().unpark();
        Ok(())
    }

    /// Count guest code in until the guard drops.
    pub fn running(self: &Arc<Self>) -> Running {
        if self.running.fetch_add(1, Ordering::SeqCst) == 0 {
            if let Some(t) = self.ticker.get() {
                t.unpark();
            }
        }
        Running(self.clone())
    }

    /// Guests counted in now.
    pub fn active(&self) -> usize {
        self.running.load(Ordering::Acquire)
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
