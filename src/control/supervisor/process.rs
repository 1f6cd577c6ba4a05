//! Starting a sandbox: the host's fork server ([`super::zygote`]) hands over a child of a
//! process that is already loaded, with nothing inherited but its listening socket, its
//! artifact and two pipes: stdin, whose closing means "host gone", and stdout for its
//! reports, and a placement socket. The child loads its artifact while the supervisor makes
//! its cgroup; the host then sends it the cgroup's files, and it writes itself in before
//! any guest code runs.

use std::io::ErrorKind;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::socket::{socketpair, AddressFamily, MsgFlags, SockFlag, SockType};
use surge_runtime::sandbox::fdpass;
use surge_runtime::sandbox::protocol::{ForkRequest, SandboxSpec, PLACED, READY_LINE};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::pipe;

use super::zygote::{Forked, Zygote};

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

/// A started, ready sandbox.
pub struct Started {
    pub child: Forked,
    pub pid: u32,
    pub socket: PathBuf,
    /// The write end of the sandbox's stdin: `HostCommand` lines. Dropping it tells the
    /// sandbox to exit.
    pub stdin: pipe::Sender,
    /// The sandbox's stdout after its ready line: `SandboxReport` lines.
    pub reports: tokio::io::Lines<BufReader<pipe::Receiver>>,
}

/// A pipe for a child: the child's end blocks (the sandbox reads its stdin with blocking
/// reads), ours is non-blocking for tokio. Both are close-on-exec.
fn child_pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(std::io::Error::from)
}

/// Where a sandbox goes once it is forked: its cgroup's process files (`tasks` on v1,
/// `cgroup.procs` on v2; none without cgroups), or `None` if the start was called off.
/// The supervisor makes the cgroup while the sandbox forks and loads.
pub type Destination = tokio::sync::oneshot::Receiver<Option<Vec<PathBuf>>>;

pub async fn spawn(
    spec: &SandboxSpec,
    artifact: &Path,
    socket: PathBuf,
    destination: Destination,
    zygote: &Zygote,
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
    let artifact_fd =
        std::fs::File::open(artifact).map_err(io(&format!("opening {}", artifact.display())))?;
    let (stdin_r, stdin_w) = child_pipe().map_err(io("making its stdin"))?;
    let (stdout_r, stdout_w) = child_pipe().map_err(io("making its stdout"))?;
    // The placement socket: its cgroup's files follow once the cgroup is made.
    let (placement, placement_child) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|e| io("making its placement socket")(e.into()))?;
    let fds: [OwnedFd; 5] = [
        stdin_r,
        stdout_w,
        listener.into(),
        artifact_fd.into(),
        placement_child,
    ];
    let mut child = zygote
        .fork(&ForkRequest::Sandbox, &fds)
        .await
        .map_err(io("forking"))?;
    drop(fds);
    let pid = child.pid;
    let mut stdin = pipe::Sender::from_owned_fd(stdin_w).map_err(io("its stdin"))?;
    let stdout = pipe::Receiver::from_owned_fd(stdout_r).map_err(io("its stdout"))?;
    let deadline = tokio::time::Instant::now() + start_timeout;
    let timed_out = || SpawnError::Timeout {
        function: function.clone(),
        secs: start_timeout.as_secs(),
    };

    let mut line = serde_json::to_vec(spec).expect("spec serializes");
    line.push(b'\n');
    stdin
        .write_all(&line)
        .await
        .map_err(io("sending the spec"))?;
    // It loads while its cgroup is made; it runs nothing of the guest's before it is in.
    let files = match tokio::time::timeout_at(deadline, destination).await {
        Err(_) => return Err(timed_out()),
        Ok(Ok(Some(files))) => files,
        Ok(Ok(None) | Err(_)) => {
            return Err(SpawnError::Start {
                function,
                reason: "its cgroup could not be made".into(),
            })
        }
    };
    let mut opened = Vec::with_capacity(files.len());
    for f in &files {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(f)
            .map_err(io(&format!("opening {}", f.display())))?;
        opened.push(OwnedFd::from(file));
    }
    // One message on a fresh socket: it never blocks.
    let raw: Vec<std::os::fd::RawFd> = opened.iter().map(AsRawFd::as_raw_fd).collect();
    fdpass::send(
        placement.as_raw_fd(),
        PLACED.as_bytes(),
        &raw,
        MsgFlags::MSG_DONTWAIT,
    )
    .map_err(io("sending its cgroup"))?;
    drop(placement);
    let mut first = String::new();
    let mut reader = BufReader::new(stdout);
    match tokio::time::timeout_at(deadline, reader.read_line(&mut first)).await {
        Err(_) => {
            child.start_kill();
            return Err(timed_out());
        }
        Ok(Err(e)) => {
            child.start_kill();
            return Err(io("reading readiness")(e));
        }
        Ok(Ok(_)) => {}
    }
    let first = first.trim();
    if first != READY_LINE {
        child.start_kill();
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

/// What one probe (a fork server child running `surge_runtime::sandbox::probe`) came to.
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

/// Fork a probe as a sandbox is forked (without a cgroup) and wait for it.
pub async fn probe(zygote: &Zygote, action: &str) -> std::io::Result<ProbeOutcome> {
    let (stdin_r, stdin_w) = child_pipe()?;
    let (stdout_r, stdout_w) = child_pipe()?;
    let req = ForkRequest::Probe {
        action: action.to_string(),
    };
    let mut child = zygote.fork(&req, &[stdin_r, stdout_w]).await?;
    drop(stdin_w);
    let mut stdout = pipe::Receiver::from_owned_fd(stdout_r)?;
    let run = async {
        let mut out = Vec::new();
        stdout.read_to_end(&mut out).await?;
        let status = child.wait().await?;
        Ok::<_, std::io::Error>((out, status))
    };
    let (out, status) = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .map_err(|_| std::io::Error::new(ErrorKind::TimedOut, "the probe did not end"))??;
    use std::os::unix::process::ExitStatusExt;
    let text = String::from_utf8_lossy(&out);
    let mut lines = text.lines();
    let walls = lines.next().unwrap_or("").to_string();
    if let Some(e) = walls.strip_prefix("error ") {
        return Err(std::io::Error::other(e.to_string()));
    }
    let walls = walls.strip_prefix("walls ").unwrap_or(&walls).to_string();
    let result = match (lines.next(), status.signal()) {
        (Some(r), _) => r.to_string(),
        (None, Some(sig)) => format!(
            "killed by {}",
            nix::sys::signal::Signal::try_from(sig).map_or(sig.to_string(), |s| s.to_string())
        ),
        (None, None) => format!("exited ({status}) without an answer"),
    };
    Ok(ProbeOutcome {
        action: action.to_string(),
        walls,
        result,
    })
}
