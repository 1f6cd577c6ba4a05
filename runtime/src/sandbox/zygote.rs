//! The fork server (zygote): `surge __zygote`, one per host, started at the host's start
//! and already past exec and dynamic loading. For each [`ForkRequest`] on its control
//! socket it hands over a child that takes its fds and continues into the sandbox (or a
//! probe) with no exec. Exec and loading were half of a cold start (~2.8 ms of 5.7).
//!
//! A sandbox request goes to the *spare* when there is one: a child forked ahead of need
//! that has already raised every wall but the seccomp allow-list (`server::early`), and
//! rehearsed a runtime and an engine (`server::rehearse`), and waits on a socket of its own
//! for its fds. The zygote forks the next
//! spare once requests have paused for [`SPARE_AFTER_MS`], so that making it does not
//! compete for the CPU with the start it follows. A spare belongs to the host, not to any
//! function: a function at zero still has no process. Probes are always forked afresh.
//!
//! It stays single-threaded for its whole life: a fork copies only the calling thread, so a
//! child of a one-threaded process holds no lock another thread held, and a sandbox must
//! have one thread to enter its user namespace.
//!
//! # Threat model
//!
//! What it holds: its end of the control socket to the host, a signalfd, the spare's socket
//! and pidfd, and a pristine copy of the binary with the seccomp filters compiled
//! ([`lockdown::prepare`]). No guest code, no artifact, no function's spec or environment
//! (those reach the child on its own stdin, after the fork), no cgroup file (the host moves
//! each child into its cgroup by pid), and no privilege: the host started it as
//! `sandbox.uid` with no-new-privs, no capabilities and no fds but its socket, and it makes
//! itself non-dumpable (no same-uid `ptrace` or `/proc/<pid>/mem` on it). A request's fds
//! pass through it and are closed right after the hand-over.
//!
//! What a compromised child could reach: nothing of the zygote's. Before any function code
//! runs, the child drops the control socket, the signalfd and its spare socket
//! (`close_range`), so it cannot ask for forks or see other children's exits; then it
//! raises the same walls as before (namespaces, empty root, no capabilities, seccomp). A
//! spare holds nothing of any function until its hand-over; the one extra fd it keeps, its
//! own `/proc/<pid>/fd` directory for mapping the artifact, is closed before the
//! allow-list goes in and before any guest code. Its filters refuse `ptrace` (kill)
//! and a signal to any process but itself, and it has no `/proc`. What forked children do
//! share is the zygote's address-space layout: the binary, its libraries and the heap sit
//! at the same addresses in every sandbox, as in Android's zygote, so a pointer leaked from
//! one sandbox is valid in the others. Guest memory is not shared: each child maps its own
//! pooling allocator after the fork. The host trusts the zygote's replies only as far as
//! pids and exit statuses; the children answer the host on their own pipes.

#![allow(unsafe_code)]

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::socket::{socketpair, AddressFamily, MsgFlags, SockFlag, SockType};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{ForkResult, Pid};

use super::protocol::{
    ForkRequest, ZygoteMessage, ARTIFACT_FD, LISTEN_FD, PLACEMENT_FD, ZYGOTE_FD, ZYGOTE_MESSAGE_MAX,
};
use super::{fdpass, lockdown, probe, server};

/// Requests must pause this long before the zygote forks a new spare.
pub const SPARE_AFTER_MS: u16 = 20;
/// A spare that dies before its hand-over doubles the wait for the next, up to this: a
/// spare that cannot live must not cost a fork every 20 ms.
const SPARE_BACKOFF_MAX_MS: u16 = 5_000;

/// Where a spare keeps its end of its socket to the zygote until its hand-over: above the
/// fds it is handed and the lockdown's fd directory.
const SPARE_FD: RawFd = 7;

/// The zygote's main: serve fork requests until the host closes the socket.
pub fn run() -> ! {
    match serve() {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            eprintln!("surge fork server: {e}");
            std::process::exit(1)
        }
    }
}

/// A child forked ahead of need, waiting for a sandbox's fds.
struct Spare {
    pid: Pid,
    pidfd: OwnedFd,
    sock: OwnedFd,
}

struct Zygote {
    sock: OwnedFd,
    /// SIGCHLD, blocked here and unblocked in every child.
    mask: SigSet,
    me: Pid,
    /// What a probe's `kill-host` and `ptrace` aim at (a child's own parent is the zygote).
    host: Pid,
    spare: Option<Spare>,
}

fn serve() -> std::io::Result<()> {
    server::name_process(c"surge-zygote");
    // SAFETY: prctl on integers.
    unsafe { nix::libc::prctl(nix::libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    lockdown::prepare().map_err(std::io::Error::other)?;
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGCHLD);
    mask.thread_block()?;
    let children = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)?;
    let mut z = Zygote {
        // SAFETY: the host placed the zygote's end of the control socket at ZYGOTE_FD
        // before exec; nothing else in this process owns it.
        sock: unsafe { OwnedFd::from_raw_fd(ZYGOTE_FD) },
        mask,
        me: nix::unistd::getpid(),
        host: nix::unistd::getppid(),
        spare: None,
    };
    // The first spare at once: the host's start-up deploys follow.
    let mut quiet = PollTimeout::ZERO;
    let mut spare_after = SPARE_AFTER_MS;
    loop {
        let mut fds = [
            PollFd::new(z.sock.as_fd(), PollFlags::POLLIN),
            PollFd::new(children.as_fd(), PollFlags::POLLIN),
        ];
        let woke = match poll(&mut fds, quiet) {
            Ok(n) => n,
            Err(nix::Error::EINTR) => 1,
            Err(e) => return Err(e.into()),
        };
        let request = fds[0].revents().unwrap_or(PollFlags::empty());
        while let Ok(Some(_)) = children.read_signal() {}
        // Every exit, whatever woke us: signals of one kind coalesce.
        if z.reap()? {
            // The spare died before its hand-over: another, later and later.
            spare_after = spare_after.saturating_mul(2).min(SPARE_BACKOFF_MAX_MS);
            quiet = PollTimeout::from(spare_after);
        }
        if woke == 0 {
            // Requests paused: make the next spare.
            z.make_spare();
            quiet = PollTimeout::NONE;
            continue;
        }
        if request.is_empty() {
            continue;
        }
        match receive(z.sock.as_fd())? {
            None => return Ok(()), // the host is gone; children die by their death signal
            Some(Err(reason)) => send(z.sock.as_fd(), &ZygoteMessage::Failed { reason }, &[])?,
            Some(Ok((req, fds))) => {
                let was_spare = matches!(req, ForkRequest::Sandbox) && z.spare.is_some();
                z.hand_over(req, fds)?;
                if was_spare {
                    spare_after = SPARE_AFTER_MS;
                }
                if z.spare.is_none() {
                    quiet = PollTimeout::from(spare_after);
                }
            }
        }
    }
}

impl Zygote {
    /// Report every child that has exited (a spare that died before its hand-over is
    /// forgotten: the host never knew it). Whether the spare was among them.
    fn reap(&mut self) -> std::io::Result<bool> {
        let mut spare_lost = false;
        loop {
            let (pid, status) = match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(nix::Error::ECHILD) => return Ok(spare_lost),
                Ok(WaitStatus::Exited(pid, code)) => (pid, (code & 0xff) << 8),
                Ok(WaitStatus::Signaled(pid, sig, core)) => {
                    (pid, sig as i32 | if core { 0x80 } else { 0 })
                }
                Ok(_) => continue, // stopped or continued: not an exit
                Err(nix::Error::EINTR) => continue,
                Err(e) => return Err(e.into()),
            };
            if self.spare.as_ref().is_some_and(|s| s.pid == pid) {
                self.spare = None;
                spare_lost = true;
                continue;
            }
            let msg = ZygoteMessage::Exited {
                pid: pid.as_raw() as u32,
                status,
            };
            send(self.sock.as_fd(), &msg, &[])?;
        }
    }

    /// Give `req` a child: the spare for a sandbox when there is one, else a fresh fork.
    fn hand_over(&mut self, req: ForkRequest, fds: Vec<OwnedFd>) -> std::io::Result<()> {
        if matches!(req, ForkRequest::Sandbox) {
            if let Some(spare) = self.spare.take() {
                let borrowed: Vec<BorrowedFd<'_>> = fds.iter().map(AsFd::as_fd).collect();
                match send_text(spare.sock.as_fd(), &req.to_string(), &borrowed) {
                    Ok(()) => return self.forked(spare.pid, spare.pidfd),
                    // It died meanwhile: fork afresh (its exit is reaped and forgotten).
                    Err(_) => {
                        let _ = nix::sys::signal::kill(spare.pid, Signal::SIGKILL);
                    }
                }
            }
        }
        // SAFETY: this process has one thread (see the module docs), so the child's copy of
        // memory holds no lock that another thread held.
        match unsafe { nix::unistd::fork() } {
            Err(e) => send(
                self.sock.as_fd(),
                &ZygoteMessage::Failed {
                    reason: format!("fork: {e}"),
                },
                &[],
            ),
            Ok(ForkResult::Child) => {
                self.become_child(false);
                match req {
                    ForkRequest::Sandbox => {
                        place_fds(&req, fds, false);
                        let early = server::early();
                        server::run(early)
                    }
                    ForkRequest::Probe { ref action } => {
                        place_fds(&req, fds, false);
                        probe::run(action, self.host)
                    }
                }
            }
            Ok(ForkResult::Parent { child }) => {
                drop(fds);
                match pidfd_open(child) {
                    Ok(pidfd) => self.forked(child, pidfd),
                    Err(e) => {
                        let _ = nix::sys::signal::kill(child, Signal::SIGKILL);
                        let reason = format!("pidfd_open: {e} (Linux 5.3+ is needed)");
                        send(self.sock.as_fd(), &ZygoteMessage::Failed { reason }, &[])
                    }
                }
            }
        }
    }

    fn forked(&self, pid: Pid, pidfd: OwnedFd) -> std::io::Result<()> {
        let msg = ZygoteMessage::Forked {
            pid: pid.as_raw() as u32,
        };
        send(self.sock.as_fd(), &msg, &[pidfd.as_fd()])
    }

    /// Fork a spare (best effort: without one, the next sandbox is forked on demand).
    fn make_spare(&mut self) {
        if self.spare.is_some() {
            return;
        }
        let Ok((ours, theirs)) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        ) else {
            return;
        };
        // SAFETY: as in `hand_over`: one thread.
        match unsafe { nix::unistd::fork() } {
            Err(_) => {}
            Ok(ForkResult::Child) => {
                drop(ours);
                let theirs = move_to(theirs, SPARE_FD);
                self.become_child(true);
                server::name_process(c"surge-spare");
                let early = server::early();
                server::rehearse();
                // Until the hand-over. A closed socket means the zygote is gone.
                let (req, fds) = match receive(theirs.as_fd()) {
                    Ok(Some(Ok(r))) => r,
                    _ => std::process::exit(0),
                };
                drop(theirs);
                place_fds(&req, fds, true);
                server::run(early)
            }
            Ok(ForkResult::Parent { child }) => match pidfd_open(child) {
                Ok(pidfd) => {
                    self.spare = Some(Spare {
                        pid: child,
                        pidfd,
                        sock: ours,
                    })
                }
                Err(_) => {
                    let _ = nix::sys::signal::kill(child, Signal::SIGKILL);
                }
            },
        }
    }

    /// The first steps of every child: die with the zygote, be dumpable again (a sandbox
    /// writes its own id maps), unblock SIGCHLD, and for a spare drop the zygote's fds (all
    /// but stdin, stdout, stderr and its own socket; a child with a request drops them as
    /// it places the request's fds).
    fn become_child(&self, spare: bool) {
        // SAFETY: prctl on integers. The death signal follows the thread that forked: the
        // zygote's only one.
        unsafe { nix::libc::prctl(nix::libc::PR_SET_PDEATHSIG, nix::libc::SIGKILL, 0, 0, 0) };
        if nix::unistd::getppid() != self.me {
            std::process::exit(1); // the zygote died between fork and prctl
        }
        // SAFETY: prctl on integers.
        unsafe { nix::libc::prctl(nix::libc::PR_SET_DUMPABLE, 1, 0, 0, 0) };
        let _ = self.mask.thread_unblock();
        if spare {
            // The control socket (ZYGOTE_FD), the signalfd, and anything else.
            let _ = close_fds(3, SPARE_FD - 1);
            let _ = close_fds(SPARE_FD + 1, u32::MAX as RawFd);
        }
    }
}

/// A received request's fds into place: stdin, stdout, and a sandbox's listener, artifact
/// and placement socket. Failures go to the child's stdout as `error: …` (the host reports it, as a
/// sandbox's own start-up failures), once fd 1 is the host's pipe.
/// `entered`: the first walls are up, and their fd directory at [`lockdown::FD_DIR`] stays.
fn place_fds(req: &ForkRequest, fds: Vec<OwnedFd>, entered: bool) {
    fn fail(what: &str, e: std::io::Error) -> ! {
        let line = format!("error: {what}: {e}\n");
        let _ = nix::unistd::write(std::io::stdout(), line.as_bytes());
        std::process::exit(1)
    }
    let targets: &[RawFd] = match req {
        ForkRequest::Sandbox => &[0, 1, LISTEN_FD, ARTIFACT_FD, PLACEMENT_FD],
        ForkRequest::Probe { .. } => &[0, 1],
    };
    // Every received fd above the targets first: one may sit where another must go.
    let high: Vec<OwnedFd> = match fds.iter().map(|fd| dup_above(fd.as_fd(), 16)).collect() {
        Ok(v) => v,
        Err(e) => fail("taking the fds", e),
    };
    drop(fds);
    for (fd, &target) in high.iter().zip(targets) {
        if let Err(e) = nix::unistd::dup2(fd.as_raw_fd(), target) {
            fail("placing the fds", e.into());
        }
    }
    drop(high);
    let keep = targets.iter().max().map_or(3, |m| m + 1).max(3);
    let closed = if entered {
        close_fds(keep, lockdown::FD_DIR - 1)
            .and_then(|()| close_fds(lockdown::FD_DIR + 1, u32::MAX as RawFd))
    } else {
        close_fds(keep, u32::MAX as RawFd)
    };
    if let Err(e) = closed {
        fail("closing the zygote's fds", e);
    }
}

/// Close `first..=last` (nothing if the range is empty).
fn close_fds(first: RawFd, last: RawFd) -> std::io::Result<()> {
    if first > last {
        return Ok(());
    }
    // SAFETY: a raw syscall on integers.
    let r =
        unsafe { nix::libc::syscall(nix::libc::SYS_close_range, first as u32, last as u32, 0u32) };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// `fd` at exactly `target` (a spare's socket).
fn move_to(fd: OwnedFd, target: RawFd) -> OwnedFd {
    if fd.as_raw_fd() == target {
        return fd;
    }
    if nix::unistd::dup2(fd.as_raw_fd(), target).is_err() {
        std::process::exit(1);
    }
    drop(fd);
    // SAFETY: dup2 just made `target` a copy that nothing else owns.
    unsafe { OwnedFd::from_raw_fd(target) }
}

fn dup_above(fd: BorrowedFd<'_>, min: RawFd) -> std::io::Result<OwnedFd> {
    let raw = nix::fcntl::fcntl(fd.as_raw_fd(), nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(min))?;
    // SAFETY: F_DUPFD_CLOEXEC just returned this descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// A pidfd for a child not yet reaped: it names that child, never a later process that
/// reuses its pid.
fn pidfd_open(child: Pid) -> std::io::Result<OwnedFd> {
    // SAFETY: a raw syscall on integers.
    let fd = unsafe { nix::libc::syscall(nix::libc::SYS_pidfd_open, child.as_raw(), 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: pidfd_open just returned this descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

type Received = Result<(ForkRequest, Vec<OwnedFd>), String>;

/// The next request: `None` when the other end closed the socket.
fn receive(sock: BorrowedFd<'_>) -> std::io::Result<Option<Received>> {
    let mut buf = [0u8; ZYGOTE_MESSAGE_MAX];
    let fdpass::Received {
        len,
        fds,
        truncated,
    } = fdpass::recv(sock.as_raw_fd(), &mut buf)?;
    if len == 0 && fds.is_empty() {
        return Ok(None);
    }
    if truncated {
        return Ok(Some(Err("a request too large to read whole".into())));
    }
    let text = String::from_utf8_lossy(&buf[..len]);
    let req: ForkRequest = match text.parse() {
        Ok(r) => r,
        Err(e) => return Ok(Some(Err(e.to_string()))),
    };
    if fds.len() != req.fds() {
        return Ok(Some(Err(format!(
            "`{req}` carries {} fds, not {}",
            fds.len(),
            req.fds()
        ))));
    }
    Ok(Some(Ok((req, fds))))
}

fn send(sock: BorrowedFd<'_>, msg: &ZygoteMessage, fds: &[BorrowedFd<'_>]) -> std::io::Result<()> {
    send_text(sock, &msg.to_string(), fds)
}

fn send_text(sock: BorrowedFd<'_>, text: &str, fds: &[BorrowedFd<'_>]) -> std::io::Result<()> {
    let raw: Vec<RawFd> = fds.iter().map(AsRawFd::as_raw_fd).collect();
    fdpass::send(sock.as_raw_fd(), text.as_bytes(), &raw, MsgFlags::empty())
}
