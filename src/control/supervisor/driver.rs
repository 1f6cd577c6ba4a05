//! What the supervisor drives: a sandbox process behind a trait, so the state machine can
//! be tested against a fake. The real one is [`ProcessSpawner`] over [`super::process`];
//! the cgroup side is already a trait in `surge_runtime::cgroup`.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use surge_runtime::sandbox::protocol::{HostCommand, SandboxReport, SandboxSpec};
use tokio::io::AsyncWriteExt;

use super::process::{self, SpawnError, Started};
use super::zygote::{Placement, Zygote};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Everything one sandbox start needs.
pub struct SpawnRequest<'a> {
    pub spec: &'a SandboxSpec,
    pub artifact: &'a Path,
    pub socket: PathBuf,
    /// Its cgroup's process files, sent once the cgroup is made (the sandbox forks and
    /// loads meanwhile); `None` calls the start off.
    pub destination: process::Destination,
    pub start_timeout: Duration,
}

/// Starts sandboxes; the start resolves once the sandbox is ready.
pub trait Spawner: Send + Sync {
    fn spawn<'a>(
        &'a self,
        req: SpawnRequest<'a>,
    ) -> BoxFuture<'a, Result<Box<dyn Sandbox>, SpawnError>>;
}

/// What a running sandbox did.
#[derive(Debug)]
pub enum SandboxEvent {
    Report(SandboxReport),
    /// The process is gone; how it ended.
    Exited(String),
}

/// A ready sandbox.
pub trait Sandbox: Send {
    fn pid(&self) -> u32;
    fn socket(&self) -> &Path;
    /// The next report or the exit. Cancel-safe: the supervisor selects over it.
    fn next_event(&mut self) -> BoxFuture<'_, SandboxEvent>;
    fn send(&mut self, cmd: HostCommand) -> BoxFuture<'_, std::io::Result<()>>;
    /// Close its stdin (it exits on EOF); kill it if it is still there after `grace`.
    fn stop(self: Box<Self>, grace: Duration) -> BoxFuture<'static, ()>;
}

/// The real spawner: sandboxes forked by the host's fork server.
pub struct ProcessSpawner {
    pub zygote: Arc<Zygote>,
}

impl ProcessSpawner {
    /// `placement.exe` runs the fork server: the host's own executable, except in
    /// benchmarks, which are a different binary and point here at the built `surge`.
    pub fn new(placement: Placement) -> Self {
        ProcessSpawner {
            zygote: Arc::new(Zygote::new(placement)),
        }
    }
}

impl Spawner for ProcessSpawner {
    fn spawn<'a>(
        &'a self,
        req: SpawnRequest<'a>,
    ) -> BoxFuture<'a, Result<Box<dyn Sandbox>, SpawnError>> {
        Box::pin(async move {
            let started = process::spawn(
                req.spec,
                req.artifact,
                req.socket,
                req.destination,
                &self.zygote,
                req.start_timeout,
            )
            .await?;
            Ok(Box::new(Process {
                started,
                reports_open: true,
            }) as Box<dyn Sandbox>)
        })
    }
}

struct Process {
    started: Started,
    reports_open: bool,
}

impl Sandbox for Process {
    fn pid(&self) -> u32 {
        self.started.pid
    }

    fn socket(&self) -> &Path {
        &self.started.socket
    }

    fn next_event(&mut self) -> BoxFuture<'_, SandboxEvent> {
        Box::pin(async move {
            loop {
                let s = &mut self.started;
                // Both are cancel-safe: a line half read stays buffered in `reports`.
                tokio::select! {
                    status = s.child.wait() => {
                        use std::os::unix::process::ExitStatusExt;
                        return SandboxEvent::Exited(match status {
                            // Only an escape makes the calls on the filter's kill-list.
                            Ok(st) if st.signal() == Some(nix::libc::SIGSYS) => format!(
                                "{st}: killed by its seccomp filter (a forbidden system call)"
                            ),
                            Ok(st) => st.to_string(),
                            Err(e) => e.to_string(),
                        })
                    }
                    line = s.reports.next_line(), if self.reports_open => match line {
                        Ok(Some(line)) => match line.parse() {
                            Ok(r) => return SandboxEvent::Report(r),
                            Err(e) => {
                                // A sandbox runs hostile code: it may say anything, often.
                                static BAD_REPORT: surge_runtime::ratelimit::RateLimit =
                                    surge_runtime::ratelimit::RateLimit::new(10, std::time::Duration::from_secs(10));
                                if let Some(suppressed) = BAD_REPORT.check() {
                                    tracing::warn!(pid = s.pid, error = %e, suppressed, "ignoring a sandbox report")
                                }
                            }
                        },
                        // Its stdout closed: only its exit is left to wait for.
                        Ok(None) | Err(_) => self.reports_open = false,
                    },
                }
            }
        })
    }

    fn send(&mut self, cmd: HostCommand) -> BoxFuture<'_, std::io::Result<()>> {
        Box::pin(async move {
            let line = format!("{cmd}\n");
            self.started.stdin.write_all(line.as_bytes()).await
        })
    }

    fn stop(self: Box<Self>, grace: Duration) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let Started {
                mut child, stdin, ..
            } = self.started;
            drop(stdin);
            if tokio::time::timeout(grace, child.wait()).await.is_err() {
                let _ = child.kill().await;
            }
        })
    }
}
