//! Starting a sandbox process: the same binary in its hidden `__sandbox` mode, placed in its
//! cgroup *before* exec, as an unprivileged user with no-new-privs, with nothing inherited but
//! its listening socket, its artifact and a stdin pipe whose closing means "host gone".
//! The only module of the host with `unsafe`: the code between fork and exec.

#![allow(unsafe_code)]

use std::io::ErrorKind;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use surge_runtime::sandbox::protocol::{SandboxSpec, ARTIFACT_FD, LISTEN_FD, READY_LINE};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("sandbox for {function}: {what}: {source}")]
    Io {
        function: String,
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("sandbox for {function} failed to start: {reason}")]
    Start { function: String, reason: String },
    #[error("sandbox for {function} was not ready within {secs}s")]
    Timeout { function: String, secs: u64 },
}

/// Who the sandbox runs as, and where it goes.
#[derive(Clone, Debug)]
pub struct Placement {
    /// The surge binary, run as `surge __sandbox`.
    pub exe: PathBuf,
    /// Files the child writes itself into before exec (`tasks` on v1, `cgroup.procs` on v2).
    pub procs_files: Vec<PathBuf>,
    /// uid/gid to drop to when the host runs as root.
    pub uid: u32,
    pub gid: u32,
}

/// A started, ready sandbox.
pub struct Started {
    pub child: Child,
    pub pid: u32,
    pub socket: PathBuf,
    /// The write end of the sandbox's stdin: `HostCommand` lines. Dropping it tells the
    /// sandbox to exit.
    pub stdin: tokio::process::ChildStdin,
    /// The sandbox's stdout after its ready line: `SandboxReport` lines.
    pub reports: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

pub async fn spawn(
    spec: &SandboxSpec,
    artifact: &Path,
    socket: PathBuf,
    placement: &Placement,
    start_timeout: Duration,
) -> Result<Started, SpawnError> {
    let function = spec.function.clone();
    let io = |what: &str| {
        let function = function.clone();
        let what = what.to_string();
        move |source| SpawnError::Io {
            function,
            what,
            source,
        }
    };
    match std::fs::remove_file(&socket) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(io("removing a stale socket")(e)),
    }
    let listener = std::os::unix::net::UnixListener::bind(&socket)
        .map_err(io(&format!("binding {}", socket.display())))?;
    let listen_fd = above_targets(listener.into()).map_err(io("duplicating the listener"))?;
    let artifact_fd = std::fs::File::open(artifact)
        .map_err(io(&format!("opening {}", artifact.display())))
        .and_then(|f| above_targets(f.into()).map_err(io("duplicating the artifact fd")))?;

    let mut cmd = Command::new(&placement.exe);
    cmd.arg("__sandbox");
    confine(
        &mut cmd,
        placement,
        Some((listen_fd.as_raw_fd(), artifact_fd.as_raw_fd())),
    );
    let mut child = cmd.spawn().map_err(io("spawning"))?;
    drop(listen_fd);
    drop(artifact_fd);
    let pid = child.id().unwrap_or(0);

    let mut stdin = child.stdin.take().expect("piped stdin");
    let mut line = serde_json::to_vec(spec).expect("spec serializes");
    line.push(b'\n');
    stdin
        .write_all(&line)
        .await
        .map_err(io("sending the spec"))?;
    let stdout = child.stdout.take().expect("piped stdout");
    let mut first = String::new();
    let mut reader = BufReader::new(stdout);
    match tokio::time::timeout(start_timeout, reader.read_line(&mut first)).await {
        Err(_) => {
            let _ = child.start_kill();
            return Err(SpawnError::Timeout {
                function,
                secs: start_timeout.as_secs(),
            });
        }
        Ok(Err(e)) => {
            let _ = child.start_kill();
            return Err(io("reading readiness")(e));
        }
        Ok(Ok(_)) => {}
    }
    let first = first.trim();
    if first != READY_LINE {
        let _ = child.start_kill();
        let reason = match first.strip_prefix("error: ") {
            Some(r) => r.to_string(),
            None if first.is_empty() => match child.wait().await {
                Ok(status) => format!("it exited ({status}) before it was ready"),
                Err(e) => e.to_string(),
            },
            None => format!("unexpected first line {first:?}"),
        };
        return Err(SpawnError::Start { function, reason });
    }
    Ok(Started {
        child,
        pid,
        socket,
        stdin,
        reports: reader.lines(),
    })
}

/// Set `cmd` up as a sandbox: no environment but RUST_LOG, `/` as its directory, piped
/// stdin and stdout, and between fork and exec: its cgroup, the inherited fds (`fds`: the
/// listener and the artifact, dup2'd to LISTEN_FD and ARTIFACT_FD; nothing else above
/// stderr survives), the uid drop when the host is root, and no-new-privs. The sandbox
/// raises the rest of its walls itself (`surge_runtime::sandbox::lockdown`).
fn confine(cmd: &mut Command, placement: &Placement, fds: Option<(i32, i32)>) {
    cmd.env_clear()
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .current_dir("/")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);

    // Everything the child needs is prepared here, before fork: pre_exec runs between fork
    // and exec, where only async-signal-safe calls are allowed (no allocation, no locks).
    let procs: Vec<std::ffi::CString> = placement
        .procs_files
        .iter()
        .map(|p| {
            std::ffi::CString::new(p.as_os_str().as_encoded_bytes())
                .expect("cgroup path has no NUL")
        })
        .collect();
    let keep_below = if fds.is_some() { ARTIFACT_FD + 1 } else { 3 };
    let drop_to = (nix::unistd::geteuid().is_root()).then_some((placement.uid, placement.gid));
    // SAFETY: the closure only makes raw syscalls (open, write, close, dup2, close_range, setgroups,
    // setgid, setuid, prctl) on values prepared above; it allocates nothing and takes no lock.
    unsafe {
        cmd.pre_exec(move || {
            for p in &procs {
                let fd = libc_open(p)?;
                // "0" is the writer itself: its only thread (`tasks`), or its process.
                let r = nix::unistd::write(std::os::fd::BorrowedFd::borrow_raw(fd), b"0");
                let _ = nix::unistd::close(fd);
                r.map_err(std::io::Error::from)?;
            }
            if let Some((lfd, afd)) = fds {
                // dup2 clears CLOEXEC on the target; the sources stay CLOEXEC and vanish at
                // exec.
                nix::unistd::dup2(lfd, LISTEN_FD).map_err(std::io::Error::from)?;
                nix::unistd::dup2(afd, ARTIFACT_FD).map_err(std::io::Error::from)?;
            }
            // Nothing else crosses into the sandbox, CLOEXEC or not (close_range, Linux 5.9+;
            // on older kernels this fails with ENOSYS and CLOEXEC alone applies).
            // SAFETY: a raw syscall on integers; the fds below `keep_below` are kept.
            let _ = nix::libc::syscall(
                nix::libc::SYS_close_range,
                keep_below as u32,
                u32::MAX,
                0u32,
            );
            if let Some((uid, gid)) = drop_to {
                nix::unistd::setgroups(&[]).map_err(std::io::Error::from)?;
                nix::unistd::setgid(nix::unistd::Gid::from_raw(gid))
                    .map_err(std::io::Error::from)?;
                nix::unistd::setuid(nix::unistd::Uid::from_raw(uid))
                    .map_err(std::io::Error::from)?;
            }
            nix::sys::prctl::set_no_new_privs().map_err(std::io::Error::from)?;
            Ok(())
        });
    }
}

/// What one probe (`surge __sandbox-probe <action>`) came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeOutcome {
    pub action: String,
    /// The walls it stood behind, as it described them (`walls …` line).
    pub walls: String,
    /// `refused <errno>`, `killed by <signal>` (the filter's kill-list), or `allowed …`.
    pub result: String,
}

impl ProbeOutcome {
    /// Whether the forbidden thing failed.
    pub fn held(&self) -> bool {
        !self.result.starts_with("allowed")
    }
}

/// Spawn a probe as a sandbox is spawned (`placement`, without a cgroup) and wait for it.
pub async fn probe(placement: &Placement, action: &str) -> std::io::Result<ProbeOutcome> {
    use std::os::unix::process::ExitStatusExt;
    let mut cmd = Command::new(&placement.exe);
    cmd.arg("__sandbox-probe").arg(action);
    let placement = Placement {
        procs_files: Vec::new(),
        ..placement.clone()
    };
    confine(&mut cmd, &placement, None);
    let out = tokio::time::timeout(Duration::from_secs(30), cmd.output())
        .await
        .map_err(|_| std::io::Error::new(ErrorKind::TimedOut, "the probe did not end"))??;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let walls = lines.next().unwrap_or("").to_string();
    if let Some(e) = walls.strip_prefix("error ") {
        return Err(std::io::Error::other(e.to_string()));
    }
    let walls = walls.strip_prefix("walls ").unwrap_or(&walls).to_string();
    let result = match (lines.next(), out.status.signal()) {
        (Some(r), _) => r.to_string(),
        (None, Some(sig)) => format!(
            "killed by {}",
            nix::sys::signal::Signal::try_from(sig).map_or(sig.to_string(), |s| s.to_string())
        ),
        (None, None) => format!("exited ({}) without an answer", out.status),
    };
    Ok(ProbeOutcome {
        action: action.to_string(),
        walls,
        result,
    })
}

/// The lowest fd a source may have: above LISTEN_FD and ARTIFACT_FD, so the child's dup2s
/// can neither be no-ops (which would keep CLOEXEC) nor clobber the other source.
const SOURCE_FD_MIN: i32 = 10;

fn above_targets(fd: OwnedFd) -> std::io::Result<OwnedFd> {
    let raw = nix::fcntl::fcntl(
        fd.as_raw_fd(),
        nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(SOURCE_FD_MIN),
    )
    .map_err(std::io::Error::from)?;
    // SAFETY: `raw` is a fresh descriptor that F_DUPFD_CLOEXEC just returned; nothing else
    // owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

fn libc_open(path: &std::ffi::CStr) -> std::io::Result<i32> {
    use nix::fcntl::{open, OFlag};
    use nix::sys::stat::Mode;
    open(path, OFlag::O_WRONLY | OFlag::O_CLOEXEC, Mode::empty()).map_err(std::io::Error::from)
}
