//! `event` handlers: WASI preview1 commands. The event is the command's stdin, the response
//! its stdout, its stderr the invocation's log, its exit code the verdict.
//!
//! A command's `_start` runs once per instance, so every event gets a fresh instance from the
//! `InstancePre`; with the pooling allocator and copy-on-write images that is a slot reuse
//! and a few page mappings, not a compile or a copy.

use std::sync::Arc;

use bytes::Bytes;
use wasmtime::{Engine, InstancePre, Linker, Module, Store};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::{MemoryInputPipe, MemoryOutputPipe};
use wasmtime_wasi::{I32Exit, WasiCtxBuilder};

use crate::engine::EpochClock;

use super::{
    arm_deadline, classify, set_budget, wall_limit, Budgeted, CheckError, InstanceLimiter,
    MemoryLedger, Outcome, WALL_TIMEOUT_MESSAGE,
};

/// The only import module an event handler may use.
pub const WASI_P1: &str = "wasi_snapshot_preview1";
/// Bytes of stderr kept per invocation (the log tail returned to callers).
pub const MAX_LOG_BYTES: usize = 64 << 10;

pub struct EventState {
    wasi: WasiP1Ctx,
    limiter: InstanceLimiter,
    deadline: Option<tokio::time::Instant>,
}

impl Budgeted for EventState {
    fn deadline(&mut self) -> &mut Option<tokio::time::Instant> {
        &mut self.deadline
    }
}

fn linker(engine: &Engine) -> wasmtime::Result<Linker<EventState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p1::add_to_linker_async(&mut linker, |s: &mut EventState| &mut s.wasi)?;
    Ok(linker)
}

/// Check that `module` is a preview1 command this host can link.
pub fn check_module(module: &Module) -> Result<(), CheckError> {
    let foreign: Vec<String> = module
        .imports()
        .filter(|i| i.module() != WASI_P1)
        .map(|i| format!("{}::{}", i.module(), i.name()))
        .collect();
    if !foreign.is_empty() {
        return Err(CheckError::Imports(foreign));
    }
    let linker = linker(module.engine()).map_err(|e| CheckError::Other(e.to_string()))?;
    if let Err(e) = linker.instantiate_pre(module) {
        // A preview1 import this host does not define (e.g. a newer or misspelled function).
        let mut store = Store::new(
            module.engine(),
            EventState {
                wasi: WasiCtxBuilder::new().build_p1(),
                limiter: InstanceLimiter::new(0),
                deadline: None,
            },
        );
        let missing: Vec<String> = module
            .imports()
            .filter(|i| linker.get_by_import(&mut store, i).is_none())
            .map(|i| format!("{}::{}", i.module(), i.name()))
            .collect();
        return Err(if missing.is_empty() {
            CheckError::Other(e.to_string())
        } else {
            CheckError::Imports(missing)
        });
    }
    match module.get_export("_start") {
        Some(wasmtime::ExternType::Func(_)) => Ok(()),
        _ => Err(CheckError::Export(
            "an event handler must be a WASI command exporting `_start` (build it as a program with main, not as a library)".into(),
        )),
    }
}

/// What one event invocation produced.
#[derive(Debug)]
pub struct EventResult {
    pub outcome: Outcome,
    pub exit_code: i32,
    pub stdout: Bytes,
    pub stderr: Bytes,
    /// Why it failed, in words a caller may see.
    pub message: Option<String>,
    /// Peak linear memory of the instance, in bytes.
    pub peak_memory_bytes: usize,
}

pub struct EventSettings {
    pub name: String,
    pub env: Vec<(String, String)>,
    pub memory: Arc<MemoryLedger>,
    pub timeout_ms: u64,
    /// Largest response (stdout) in bytes.
    pub max_output_bytes: usize,
    /// Ticks while an event runs (its timeout).
    pub clock: Arc<EpochClock>,
}

pub struct EventHandler {
    engine: Engine,
    pre: InstancePre<EventState>,
    settings: EventSettings,
}

impl EventHandler {
    pub fn new(
        engine: &Engine,
        module: &Module,
        settings: EventSettings,
    ) -> wasmtime::Result<Self> {
        let pre = linker(engine)?.instantiate_pre(module)?;
        Ok(EventHandler {
            engine: engine.clone(),
            pre,
            settings,
        })
    }

    /// Run one event through a fresh instance.
    pub async fn invoke(&self, event: Bytes) -> EventResult {
        let s = &self.settings;
        let stdout = MemoryOutputPipe::new(s.max_output_bytes);
        let stderr = MemoryOutputPipe::new(MAX_LOG_BYTES);
        let wasi = WasiCtxBuilder::new()
            .stdin(MemoryInputPipe::new(event))
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .arg(&s.name)
            .envs(&s.env)
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build_p1();
        let mut store = Store::new(
            &self.engine,
            EventState {
                wasi,
                limiter: InstanceLimiter::following(s.memory.clone()),
                deadline: None,
            },
        );
        store.limiter(|s| &mut s.limiter);
        arm_deadline(&mut store);
        set_budget(&mut store, s.timeout_ms);

        let run = async {
            let _running = s.clock.running();
            let instance = self.pre.instantiate_async(&mut store).await?;
            let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
            start.call_async(&mut store, ()).await
        };
        let result = tokio::time::timeout(wall_limit(s.timeout_ms), run).await;
        let (outcome, exit_code, message) = match result {
            Err(_) => (Outcome::Timeout, -1, Some(WALL_TIMEOUT_MESSAGE.to_string())),
            Ok(Ok(())) => (Outcome::Ok, 0, None),
            Ok(Err(e)) => match e.downcast_ref::<I32Exit>() {
                Some(I32Exit(0)) => (Outcome::Ok, 0, None),
                Some(I32Exit(code)) => {
                    let o = if store.data().limiter.denied {
                        Outcome::Memory
                    } else {
                        Outcome::Error
                    };
                    (
                        o,
                        *code,
                        Some(format!("the handler exited with code {code}")),
                    )
                }
                None => {
                    let (o, msg) = classify(&e, &store.data().limiter);
                    (o, -1, Some(msg))
                }
            },
        };
        let peak_memory_bytes = store.data().limiter.peak_bytes;
        s.memory.observe(&store.data().limiter);
        drop(store);
        EventResult {
            outcome,
            exit_code,
            stdout: stdout
                .try_into_inner()
                .map(|b| b.freeze())
                .unwrap_or_default(),
            stderr: stderr
                .try_into_inner()
                .map(|b| b.freeze())
                .unwrap_or_default(),
            message,
            peak_memory_bytes,
        }
    }
}
