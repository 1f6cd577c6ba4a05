//! The fork server (zygote): `surge __zygote`, one per host, started at the host's start
//! and already past exec and dynamic loading. For each [`ForkRequest`] on its control
//! socket it forks a child that places itself, takes its fds and continues into the sandbox
//! (or a probe) with no exec. Exec and loading were half of a cold start (~2.8 ms of 5.7).
//!
//! It stays single-threaded for its whole life: a fork copies only the calling thread, so a
//! child of a one-threaded process holds no lock another thread held, and a sandbox must
//! have one thread to enter its user namespace.
//!
//! # Threat model
//!
//! What it holds: its end of the control socket to the host, a signalfd, and a pristine
//! copy of the binary with the seccomp filters compiled ([`lockdown::prepare`]). No guest
//! code, no artifact, no function's spec or environment (those reach the child on its own
//! stdin, after the fork), and no privilege: the host started it as `sandbox.uid` with
//! no-new-privs, no capabilities and no fds but its socket, and it makes itself
//! non-dumpable (no same-uid `ptrace` or `/proc/<pid>/mem` on it). The only cgroup files it
//! ever holds are those a request carries (opened by the host, which is what lets an
//! unprivileged child write itself into them), and it closes them right after the fork.
//!
//! What a compromised child could reach: nothing of the zygote's. Before any function code
//! runs, the child drops the control socket and the signalfd (`close_range`), so it cannot
//! ask for forks or see other children's exits; then it raises the same walls as before
//! (namespaces, empty root, no capabilities, seccomp). Its filters refuse `ptrace` (kill)
//! and a signal to any process but itself, and it has no `/proc`. What forked children do
//! share is the zygote's address-space layout: the binary, its libraries and the heap sit
//! at the same addresses in every sandbox, as in Android's zygote, so a pointer leaked from
//! one sandbox is valid in the others. Guest memory is not shared: each child maps its own
//! pooling allocator after the fork. The host trusts the zygote's replies only as far as
//! pids and exit statuses; the children answer the host on their own pipes.

#![allow(unsafe_code)]

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{ForkResult, Pid};

use super::protocol::{
    ForkRequest, ZygoteMessage, ARTIFACT_FD, LISTEN_FD, ZYGOTE_FD, ZYGOTE_FDS_MAX,
    ZYGOTE_MESSAGE_MAX,
};
use super::{lockdown, probe};

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

fn serve() -> std::io::Result<()> {
    // SAFETY: prctl on integers.
    unsafe { nix::libc::prctl(nix::libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    lockdown::prepare().map_err(std::io::Error::other)?;
    // What a probe's `kill-host` and `ptrace` aim at (a child's own parent is the zygote).
    let host = nix::unistd::getppid();
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGCHLD);
    mask.thread_block()?;
    let children = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)?;
    // SAFETY: the host placed the zygote's end of the control socket at ZYGOTE_FD before
    // exec; nothing else in this process owns it.
    let sock = unsafe { OwnedFd::from_raw_fd(ZYGOTE_FD) };
    let me = nix::unistd::getpid();
    loop {
        let mut fds = [
            PollFd::new(sock.as_fd(), PollFlags::POLLIN),
            PollFd::new(children.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(nix::Error::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
        let request = fds[0].revents().unwrap_or(PollFlags::empty());
        while let Ok(Some(_)) = children.read_signal() {}
        // Every exit, whatever woke us: signals of one kind coalesce.
        reap(&sock)?;
        if request.is_empty() {
            continue;
        }
        match receive(&sock)? {
            None => return Ok(()), // the host is gone; children die by their death signal
            Some(Err(reason)) => send(&sock, &ZygoteMessage::Failed { reason }, None)?,
            Some(Ok((req, fds))) => fork_one(&sock, [me, host], &mask, req, fds)?,
        }
    }
}

/// Report every child that has exited.
fn reap(sock: &OwnedFd) -> std::io::Result<()> {
    loop {
        let (pid, status) = match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(nix::Error::ECHILD) => return Ok(()),
            Ok(WaitStatus::Exited(pid, code)) => (pid, (code & 0xff) << 8),
            Ok(WaitStatus::Signaled(pid, sig, core)) => {
                (pid, sig as i32 | if core { 0x80 } else { 0 })
            }
            Ok(_) => continue, // stopped or continued: not an exit
            Err(nix::Error::EINTR) => continue,
            Err(e) => return Err(e.into()),
        };
        send(
            sock,
            &ZygoteMessage::Exited {
                pid: pid.as_raw() as u32,
                status,
            },
            None,
        )?;
    }
}

type Received = Result<(ForkRequest, Vec<OwnedFd>), String>;

/// The next request: `None` when the host closed the socket.
fn receive(sock: &OwnedFd) -> std::io::Result<Option<Received>> {
    let mut buf = [0u8; ZYGOTE_MESSAGE_MAX];
    let mut cmsg = nix::cmsg_space!([RawFd; ZYGOTE_FDS_MAX]);
    let mut iov = [IoSliceMut::new(&mut buf)];
    let msg = loop {
        match recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Ok(m) => break m,
            Err(nix::Error::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    };
    let mut fds = Vec::new();
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(raw) = c {
            // SAFETY: the kernel just installed these descriptors for us; nothing else owns
            // them.
            fds.extend(
                raw.into_iter()
                    .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
            );
        }
    }
    let (len, truncated) = (
        msg.bytes,
        msg.flags
            .intersects(MsgFlags::MSG_TRUNC | MsgFlags::MSG_CTRUNC),
    );
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

fn send(sock: &OwnedFd, msg: &ZygoteMessage, fd: Option<BorrowedFd<'_>>) -> std::io::Result<()> {
    let text = msg.to_string();
    let raw = fd.map(|f| [f.as_raw_fd()]);
    let cmsgs: Vec<ControlMessage<'_>> = raw
        .as_ref()
        .map(|r| ControlMessage::ScmRights(&r[..]))
        .into_iter()
        .collect();
    loop {
        match sendmsg::<()>(
            sock.as_raw_fd(),
            &[IoSlice::new(text.as_bytes())],
            &cmsgs,
            MsgFlags::MSG_NOSIGNAL,
            None,
        ) {
            Ok(_) => return Ok(()),
            Err(nix::Error::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// `family`: the zygote's pid and the host's.
fn fork_one(
    sock: &OwnedFd,
    family: [Pid; 2],
    mask: &SigSet,
    req: ForkRequest,
    fds: Vec<OwnedFd>,
) -> std::io::Result<()> {
    // SAFETY: this process has one thread (see the module docs), so the child's copy of
    // memory holds no lock that another thread held.
    match unsafe { nix::unistd::fork() } {
        Err(e) => send(
            sock,
            &ZygoteMessage::Failed {
                reason: format!("fork: {e}"),
            },
            None,
        ),
        Ok(ForkResult::Child) => child(family, mask, req, fds),
        Ok(ForkResult::Parent { child }) => {
            drop(fds);
            // The child cannot be reaped before we call waitpid, so this pidfd names it and
            // no later process that reuses its pid.
            // SAFETY: a raw syscall on integers.
            let pidfd = unsafe { nix::libc::syscall(nix::libc::SYS_pidfd_open, child.as_raw(), 0) };
            if pidfd < 0 {
                let e = std::io::Error::last_os_error();
                let _ = nix::sys::signal::kill(child, Signal::SIGKILL);
                return send(
                    sock,
                    &ZygoteMessage::Failed {
                        reason: format!("pidfd_open: {e} (Linux 5.3+ is needed)"),
                    },
                    None,
                );
            }
            // SAFETY: pidfd_open just returned this descriptor.
            let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd as RawFd) };
            send(
                sock,
                &ZygoteMessage::Forked {
                    pid: child.as_raw() as u32,
                },
                Some(pidfd.as_fd()),
            )
        }
    }
}

/// The forked child: become the sandbox (or the probe) the request asked for. Failures
/// before the sandbox's own main go to its stdout as `error: …`, which the host reports,
/// as a sandbox's own start-up failures do.
fn child([zygote, host]: [Pid; 2], mask: &SigSet, req: ForkRequest, fds: Vec<OwnedFd>) -> ! {
    fn fail(what: &str, e: std::io::Error) -> ! {
        // Once fd 1 is the host's pipe, the host reads this as the start's failure.
        let line = format!("error: {what}: {e}\n");
        let _ = nix::unistd::write(std::io::stdout(), line.as_bytes());
        std::process::exit(1)
    }
    // SAFETY: prctl on integers. The child dies with the zygote (its only thread: the
    // death signal follows the thread that forked).
    unsafe { nix::libc::prctl(nix::libc::PR_SET_PDEATHSIG, nix::libc::SIGKILL, 0, 0, 0) };
    if nix::unistd::getppid() != zygote {
        std::process::exit(1); // the zygote died between fork and prctl
    }
    // A sandbox writes its own id maps, which needs a dumpable process.
    // SAFETY: prctl on integers.
    unsafe { nix::libc::prctl(nix::libc::PR_SET_DUMPABLE, 1, 0, 0, 0) };
    let _ = mask.thread_unblock();
    // Move every received fd above the targets, then into place: a received fd may sit
    // where another must go.
    let high: Vec<OwnedFd> = match fds
        .iter()
        .map(|fd| fd.try_clone_to_owned_above(16))
        .collect()
    {
        Ok(v) => v,
        Err(e) => fail("taking the fds", e),
    };
    drop(fds);
    let targets: &[RawFd] = match &req {
        ForkRequest::Sandbox { .. } => &[0, 1, LISTEN_FD, ARTIFACT_FD],
        ForkRequest::Probe { .. } => &[0, 1],
    };
    for (fd, &target) in high.iter().zip(targets) {
        if let Err(e) = nix::unistd::dup2(fd.as_raw_fd(), target) {
            fail("placing the fds", e.into());
        }
    }
    // Into its cgroup, through files the host opened: "0" is the writer itself (its only
    // thread on v1's `tasks`, its process on v2's `cgroup.procs`).
    for fd in &high[targets.len()..] {
        if let Err(e) = nix::unistd::write(fd, b"0") {
            fail("entering its cgroup", e.into());
        }
    }
    drop(high);
    // Nothing of the zygote's crosses: its control socket (ZYGOTE_FD, unless a listener
    // replaced it), its signalfd and anything else above the child's own fds.
    let keep = targets.iter().max().map_or(3, |m| m + 1).max(3);
    // SAFETY: a raw syscall on integers.
    let r = unsafe { nix::libc::syscall(nix::libc::SYS_close_range, keep as u32, u32::MAX, 0u32) };
    if r != 0 {
        fail("closing the zygote's fds", std::io::Error::last_os_error());
    }
    match req {
        ForkRequest::Sandbox { .. } => super::server::run(),
        ForkRequest::Probe { action } => probe::run(&action, host),
    }
}

trait CloneAbove {
    fn try_clone_to_owned_above(&self, min: RawFd) -> std::io::Result<OwnedFd>;
}

impl CloneAbove for OwnedFd {
    fn try_clone_to_owned_above(&self, min: RawFd) -> std::io::Result<OwnedFd> {
        let raw = nix::fcntl::fcntl(self.as_raw_fd(), nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(min))?;
        // SAFETY: F_DUPFD_CLOEXEC just returned this descriptor.
        Ok(unsafe { OwnedFd::from_raw_fd(raw) })
    }
}
