//! The host's side of the fork server (`surge_runtime::sandbox::zygote`): starts it (as an
//! unprivileged user with no-new-privs, between fork and exec: with `sandbox/zygote.rs`,
//! the host's only `unsafe`), sends it fork requests with their fds, and follows its
//! children. One per host; a zygote that
//! dies is started again at the next request, and the children it had die with it (their
//! death signal), which their supervisors see as an exit.
//!
//! Replies come back in the order of the requests (the zygote serves one at a time), and a
//! child's `exited` always comes after its `forked`: one reader task matches both.

#![allow(unsafe_code)]

use std::collections::{HashMap, VecDeque};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;

use nix::sys::socket::{socketpair, AddressFamily, MsgFlags, SockFlag, SockType};
use parking_lot::Mutex;
use surge_runtime::sandbox::fdpass;
use surge_runtime::sandbox::protocol::{
    ForkRequest, ZygoteMessage, ZYGOTE_FD, ZYGOTE_FDS_MAX, ZYGOTE_MESSAGE_MAX,
};
use tokio::io::unix::AsyncFd;
use tokio::sync::oneshot;

/// Who the fork server runs as.
#[derive(Clone, Debug)]
pub struct Placement {
    /// The surge binary, run as `surge __zygote`.
    pub exe: PathBuf,
    /// uid/gid to drop to when the host runs as root.
    pub uid: u32,
    pub gid: u32,
}

/// A child the zygote forked: its pid, a pidfd to signal it by (never a reused pid), and
/// its exit status once the zygote reaped it. Killed when dropped, as a `kill_on_drop`
/// child is.
pub struct Forked {
    pub pid: u32,
    pidfd: OwnedFd,
    exit: oneshot::Receiver<ExitStatus>,
    status: Option<ExitStatus>,
}

impl Forked {
    /// Wait for the child's exit. Cancel-safe.
    pub async fn wait(&mut self) -> std::io::Result<ExitStatus> {
        if let Some(s) = self.status {
            return Ok(s);
        }
        match (&mut self.exit).await {
            Ok(s) => {
                self.status = Some(s);
                Ok(s)
            }
            Err(_) => {
                // The zygote is gone, and with it (by their death signal) its children.
                let s = ExitStatus::from_raw(nix::libc::SIGKILL);
                self.status = Some(s);
                Err(std::io::Error::other(
                    "the fork server ended, and the sandbox with it",
                ))
            }
        }
    }

    /// Send SIGKILL (a no-op once it has exited).
    pub fn start_kill(&self) {
        // SAFETY: a raw syscall on a pidfd we own and integers.
        unsafe {
            nix::libc::syscall(
                nix::libc::SYS_pidfd_send_signal,
                self.pidfd.as_raw_fd(),
                nix::libc::SIGKILL,
                std::ptr::null::<()>(),
                0u32,
            )
        };
    }

    pub async fn kill(&mut self) {
        self.start_kill();
        let _ = self.wait().await;
    }
}

impl Drop for Forked {
    fn drop(&mut self) {
        if self.status.is_none() {
            self.start_kill();
        }
    }
}

/// The fork server, started on first use.
pub struct Zygote {
    placement: Placement,
    conn: tokio::sync::Mutex<Option<Arc<Conn>>>,
}

struct Conn {
    sock: AsyncFd<OwnedFd>,
    state: Arc<Mutex<Pending>>,
    /// The zygote process, killed when the connection drops (its reader holds only a
    /// duplicate of the socket and the pending state, so it does not keep it alive).
    _process: tokio::process::Child,
}

#[derive(Default)]
struct Pending {
    replies: VecDeque<oneshot::Sender<Result<Forked, String>>>,
    exits: HashMap<u32, oneshot::Sender<ExitStatus>>,
    closed: bool,
}

impl Zygote {
    /// `placement` says which binary and user. The zygote stays in the host's cgroup, and
    /// each child enters its own.
    pub fn new(placement: Placement) -> Self {
        Zygote {
            placement,
            conn: tokio::sync::Mutex::new(None),
        }
    }

    /// Fork a child for `req`, handing it `fds` (in the order [`ForkRequest`] lists).
    pub async fn fork(&self, req: &ForkRequest, fds: &[OwnedFd]) -> std::io::Result<Forked> {
        if fds.len() != req.fds() || fds.len() > ZYGOTE_FDS_MAX {
            return Err(std::io::Error::other(format!(
                "fork request `{req}` with {} fds",
                fds.len()
            )));
        }
        // The lock orders requests on the socket with their places in the reply queue.
        let mut guard = self.conn.lock().await;
        let conn = match guard.as_ref() {
            Some(c) if !c.state.lock().closed => c.clone(),
            _ => {
                let c = Conn::start(&self.placement)?;
                *guard = Some(c.clone());
                c
            }
        };
        let (tx, rx) = oneshot::channel();
        conn.state.lock().replies.push_back(tx);
        if let Err(e) = conn.send(req, fds).await {
            conn.close();
            return Err(e);
        }
        drop(guard);
        match rx.await {
            Ok(Ok(forked)) => Ok(forked),
            Ok(Err(reason)) => Err(std::io::Error::other(reason)),
            Err(_) => Err(std::io::Error::other(
                "the fork server ended before it answered",
            )),
        }
    }
}

impl Conn {
    fn start(placement: &Placement) -> std::io::Result<Arc<Conn>> {
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        )?;
        // Its end blocks: the zygote is a single-threaded poll loop.
        nix::fcntl::fcntl(
            theirs.as_raw_fd(),
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::empty()),
        )?;
        let theirs = above_targets(theirs)?;
        let mut cmd = tokio::process::Command::new(&placement.exe);
        cmd.arg("__zygote")
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        confine(&mut cmd, placement, &[(theirs.as_raw_fd(), ZYGOTE_FD)]);
        let process = cmd.spawn().map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("starting the fork server {}: {e}", placement.exe.display()),
            )
        })?;
        drop(theirs);
        tracing::debug!(pid = process.id(), "fork server started");
        // SAFETY (both registrations): each OwnedFd is a valid descriptor that only its
        // AsyncFd owns, neither replaced nor closed while registered.
        let reader = unsafe { AsyncFd::register(ours.try_clone()?)? };
        let state = Arc::new(Mutex::new(Pending::default()));
        tokio::spawn(read_messages(reader, state.clone()));
        Ok(Arc::new(Conn {
            sock: unsafe { AsyncFd::register(ours)? },
            state,
            _process: process,
        }))
    }

    async fn send(&self, req: &ForkRequest, fds: &[OwnedFd]) -> std::io::Result<()> {
        let text = req.to_string();
        let raw: Vec<RawFd> = fds.iter().map(AsRawFd::as_raw_fd).collect();
        loop {
            let mut ready = self.sock.writable().await?;
            match ready.try_io(|s| {
                fdpass::send(
                    s.get_ref().as_raw_fd(),
                    text.as_bytes(),
                    &raw,
                    MsgFlags::MSG_DONTWAIT,
                )
            }) {
                Ok(r) => return r,
                Err(_would_block) => continue,
            }
        }
    }

    fn close(&self) {
        self.state.lock().close();
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        // Ended on purpose: the reader's EOF is no news.
        self.state.lock().closed = true;
    }
}

impl Pending {
    /// Fail every request waiting for a reply, and end every child's wait.
    fn close(&mut self) {
        self.closed = true;
        self.replies.clear();
        self.exits.clear();
    }
}

/// One message and the fd it carries; `None` at EOF.
async fn receive(sock: &AsyncFd<OwnedFd>) -> std::io::Result<Option<(String, Option<OwnedFd>)>> {
    loop {
        let mut ready = sock.readable().await?;
        let mut buf = [0u8; ZYGOTE_MESSAGE_MAX];
        match ready.try_io(|s| fdpass::recv(s.get_ref().as_raw_fd(), &mut buf)) {
            Ok(Ok(m)) if m.len == 0 && m.fds.is_empty() => return Ok(None),
            // A reply carries one fd at most (a pidfd); any other is closed here.
            Ok(Ok(m)) => {
                let text = String::from_utf8_lossy(&buf[..m.len]).into_owned();
                return Ok(Some((text, m.fds.into_iter().next())));
            }
            Ok(Err(e)) => return Err(e),
            Err(_would_block) => continue,
        }
    }
}

/// Match the zygote's messages to the requests and children waiting for them, until it
/// closes its socket.
async fn read_messages(sock: AsyncFd<OwnedFd>, state: Arc<Mutex<Pending>>) {
    loop {
        let (text, fd) = match receive(&sock).await {
            Ok(Some(m)) => m,
            Ok(None) | Err(_) => {
                let mut st = state.lock();
                if !st.closed {
                    tracing::warn!("the fork server ended; it starts again at the next sandbox");
                }
                st.close();
                return;
            }
        };
        let mut st = state.lock();
        match text.parse::<ZygoteMessage>() {
            Ok(ZygoteMessage::Forked { pid }) => {
                let reply = st.replies.pop_front();
                let forked = match fd {
                    Some(pidfd) => {
                        let (tx, rx) = oneshot::channel();
                        st.exits.insert(pid, tx);
                        Ok(Forked {
                            pid,
                            pidfd,
                            exit: rx,
                            status: None,
                        })
                    }
                    None => Err(format!("the fork server sent no pidfd for {pid}")),
                };
                if let Some(r) = reply {
                    let _ = r.send(forked);
                }
            }
            Ok(ZygoteMessage::Failed { reason }) => {
                if let Some(r) = st.replies.pop_front() {
                    let _ = r.send(Err(format!("the fork server could not fork: {reason}")));
                }
            }
            Ok(ZygoteMessage::Exited { pid, status }) => {
                if let Some(tx) = st.exits.remove(&pid) {
                    let _ = tx.send(ExitStatus::from_raw(status));
                }
            }
            Err(e) => tracing::warn!(error = %e, "ignoring a fork server message"),
        }
    }
}

/// Set `cmd` up as the fork server: no environment but RUST_LOG, `/` as its directory,
/// and between fork and exec: the inherited fds (`fds`: (source, target) pairs, dup2'd into
/// place; nothing else above stderr survives), the uid drop when the host is root, and
/// no-new-privs. Its stdin and stdout are the caller's to set. Each sandbox raises the rest
/// of its walls itself (`surge_runtime::sandbox::lockdown`).
fn confine(cmd: &mut tokio::process::Command, placement: &Placement, fds: &[(i32, i32)]) {
    cmd.env_clear()
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .current_dir("/")
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true);

    // Everything the child needs is prepared here, before fork: pre_exec runs between fork
    // and exec, where only async-signal-safe calls are allowed (no allocation, no locks).
    let fds: Vec<(i32, i32)> = fds.to_vec();
    let keep_below = fds.iter().map(|&(_, t)| t + 1).max().unwrap_or(3).max(3);
    let drop_to = (nix::unistd::geteuid().is_root()).then_some((placement.uid, placement.gid));
    // SAFETY: the closure only makes raw syscalls (dup2, close_range, setgroups, setgid,
    // setuid, prctl) on values prepared above; it allocates nothing and takes no lock.
    unsafe {
        cmd.pre_exec(move || {
            for &(src, target) in &fds {
                // dup2 clears CLOEXEC on the target; the sources stay CLOEXEC and vanish at
                // exec.
                nix::unistd::dup2(src, target).map_err(std::io::Error::from)?;
            }
            // Nothing else crosses, CLOEXEC or not (close_range, Linux 5.9+; on older
            // kernels this fails with ENOSYS and CLOEXEC alone applies).
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

/// The lowest fd a source may have: above the targets, so the child's dup2s can neither be
/// no-ops (which would keep CLOEXEC) nor clobber another source.
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
