//! The wasmtime engine configuration. Compilation (in the host) and execution (in the
//! sandbox) must agree on every setting that shapes compiled code, so both build on
//! [`base_config`]; only the sandbox adds the pooling allocator.

use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// Epoch ticks are this long: timeouts are enforced to within one tick.
pub const EPOCH_TICK_MS: u64 = 10;

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
