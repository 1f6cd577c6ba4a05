//! The sandbox's walls beyond wasm: namespaces, an empty read-only root, no capabilities and
//! system-call filters, raised by the sandbox itself before any guest code runs (the first
//! instantiation). Steps 1–3 and the kill-list and own-pid filters of step 4 come first
//! ([`enter`]: a spare raises them ahead of need, before it knows its function); the
//! allow-list comes last ([`finish`]), once the artifact is mapped, since it forbids
//! opening it.
//!
//! Order matters:
//! 1. `unshare` a new user namespace together with new mount, network, IPC and UTS
//!    namespaces. The sandbox is unprivileged (the host started its fork server as
//!    `sandbox.uid`, with no-new-privs): the user namespace is what lets it own the others. Its only
//!    network interface is a loopback that is down; the host's sockets, abstract Unix
//!    sockets and SysV IPC are out of reach. Its listening socket was inherited as an fd and
//!    keeps working.
//! 2. The root becomes an empty tmpfs, mounted read-only, no exec, no devices: no host file
//!    can be named. The artifact, inherited as an fd, is mapped through the process's own
//!    fd directory, opened before the root went ([`FD_DIR`]) and closed before guest code.
//! 3. Every capability the new user namespace granted is dropped.
//! 4. Three seccomp filters on every thread (TSYNC). An allow-list answers ENOSYS to every
//!    call not on it, as runc's default profile does: libc takes ENOSYS for "this kernel
//!    has no such call" and falls back where it can (glibc's `clone3` → `clone`; a filter
//!    cannot read clone3's flags, so clone3 stays off the list), and a rare path of our own,
//!    of the runtime or of wasmtime that makes an unforeseen call fails like any refused
//!    call rather than killing a healthy sandbox. A kill-list ends the process at once on
//!    calls that only an escape would make (exec, ptrace, mount, namespaces, sockets,
//!    kernel modules, bpf, identity changes): when filters are stacked, the kernel takes
//!    the strictest answer. A third filter lets `kill` and `tgkill` name only the
//!    sandbox's own process. It is the only per-process part, so the fork server compiles
//!    the other two once ([`prepare`]) and each sandbox only installs them.
//!
//! A PID namespace is not entered: `unshare(CLONE_NEWPID)` moves only later children, and
//! the sandbox has none. Its view of other processes is cut instead: no `/proc` in its root,
//! `ptrace` kills it, and `kill`/`tgkill` may only name its own process.

#![allow(unsafe_code)]

use std::collections::BTreeMap;
use std::os::fd::FromRawFd;

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

/// What the kernel let the sandbox enter, for the host's one start-up line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Walls {
    /// Namespaces entered: user, mount, network, ipc, uts.
    pub namespaces: bool,
    /// The root is an empty read-only tmpfs.
    pub empty_root: bool,
    pub seccomp: bool,
    /// What could not be set up, each with the kernel's reason.
    pub missing: Vec<String>,
}

impl std::fmt::Display for Walls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.missing.is_empty() {
            write!(
                f,
                "namespaces (user, mount, network, ipc, uts), empty read-only root, seccomp"
            )
        } else {
            write!(f, "missing: {}", self.missing.join("; "))
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LockdownError {
    #[error("sandbox lockdown: {what}: {source}")]
    Sys {
        what: &'static str,
        #[source]
        source: nix::Error,
    },
    #[error("sandbox lockdown: seccomp: {0}")]
    Seccomp(String),
}

fn sys(what: &'static str) -> impl FnOnce(nix::Error) -> LockdownError {
    move |source| LockdownError::Sys { what, source }
}

/// Where [`enter`] keeps the process's own fd directory (`/proc/<pid>/fd` of the host's
/// procfs) until [`finish`]: above the fds a sandbox is handed (0, 1, 3, 4, 5), below
/// everything the fork server closes.
pub const FD_DIR: i32 = 6;

/// The walls raised before the sandbox knows its function (a spare raises them ahead of
/// need): the namespaces, the empty root, no capabilities, and the kill-list and own-pid
/// filters. What is left for [`finish`] is the allow-list, which forbids what loading the
/// artifact needs.
pub struct Entered {
    namespaces: Result<(), LockdownError>,
    empty_root: Option<Result<(), LockdownError>>,
    /// Opened before the root was emptied: the artifact is mapped through it.
    fd_dir: Option<std::os::fd::OwnedFd>,
}

/// Best effort for the namespaces and the empty root (a kernel without unprivileged user
/// namespaces says so in [`finish`]'s walls); not for the capabilities and the filters.
pub fn enter() -> Result<Entered, LockdownError> {
    let namespaces = enter_namespaces();
    let (mut empty, mut fd_dir) = (None, None);
    if namespaces.is_ok() {
        fd_dir = open_fd_dir();
        empty = Some(empty_root());
        drop_capabilities()?;
    }
    install(&[&kill_list()?, &own_signals()?])?;
    Ok(Entered {
        namespaces,
        empty_root: empty,
        fd_dir,
    })
}

impl Entered {
    /// Call `f` with a path that names inherited fd `fd` (the artifact, for wasmtime's
    /// `deserialize_file`): `/proc/self/fd/<fd>`, or once the root is empty, `<fd>` relative
    /// to the fd directory kept open, made the working directory for the call.
    pub fn with_fd_path<T>(&self, fd: i32, f: impl FnOnce(&str) -> T) -> Result<T, LockdownError> {
        let Some(dir) = &self.fd_dir else {
            return Ok(f(&format!("/proc/self/fd/{fd}")));
        };
        nix::unistd::fchdir(std::os::fd::AsRawFd::as_raw_fd(dir))
            .map_err(sys("entering the fd directory"))?;
        let r = f(&fd.to_string());
        nix::unistd::chdir("/").map_err(sys("chdir /"))?;
        Ok(r)
    }
}

/// This process's fd directory, at [`FD_DIR`].
fn open_fd_dir() -> Option<std::os::fd::OwnedFd> {
    use nix::fcntl::{fcntl, open, FcntlArg, OFlag};
    let fd = open(
        "/proc/self/fd",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .ok()?;
    let placed = fcntl(fd, FcntlArg::F_DUPFD_CLOEXEC(FD_DIR)).ok();
    let _ = nix::unistd::close(fd);
    // SAFETY: F_DUPFD_CLOEXEC just returned this descriptor.
    placed.map(|p| unsafe { std::os::fd::OwnedFd::from_raw_fd(p) })
}

/// The rest, once the artifact is loaded and before any guest code: the fd directory is
/// closed and the allow-list installed. A sandbox that cannot install it does not start.
pub fn finish(entered: Entered) -> Result<Walls, LockdownError> {
    let mut walls = Walls::default();
    drop(entered.fd_dir);
    match entered.namespaces {
        Ok(()) => {
            walls.namespaces = true;
            match entered.empty_root {
                Some(Ok(())) => walls.empty_root = true,
                Some(Err(e)) => walls.missing.push(format!("empty root: {e}")),
                None => {}
            }
        }
        Err(e) => walls.missing.push(format!(
            "user, mount, network, ipc and uts namespaces: {e} (unprivileged user \
             namespaces disabled? see user.max_user_namespaces)"
        )),
    }
    prepare()?;
    install(&[&PREPARED.get().expect("prepared above").allow])?;
    walls.seccomp = true;
    Ok(walls)
}

/// Every wall at once, for a process with nothing to load (a probe).
pub fn apply() -> Result<Walls, LockdownError> {
    finish(enter()?)
}

fn enter_namespaces() -> Result<(), LockdownError> {
    let (uid, gid) = (nix::unistd::getuid(), nix::unistd::getgid());
    unshare(
        CloneFlags::CLONE_NEWUSER
            | CloneFlags::CLONE_NEWNS
            | CloneFlags::CLONE_NEWNET
            | CloneFlags::CLONE_NEWIPC
            | CloneFlags::CLONE_NEWUTS,
    )
    .map_err(sys("unshare"))?;
    // The same ids inside as outside: files it could still reach keep their owners.
    let write = |path: &str, text: String| {
        std::fs::write(path, text).map_err(|e| LockdownError::Sys {
            what: "writing the id maps",
            source: nix::Error::from_raw(e.raw_os_error().unwrap_or(nix::libc::EIO)),
        })
    };
    write("/proc/self/setgroups", "deny".into())?;
    write("/proc/self/uid_map", format!("{uid} {uid} 1"))?;
    write("/proc/self/gid_map", format!("{gid} {gid} 1"))?;
    Ok(())
}

/// Replace the root with an empty tmpfs: mount it over a directory every system has,
/// pivot into it, detach the old root, and make it read-only.
fn empty_root() -> Result<(), LockdownError> {
    let none: Option<&str> = None;
    mount(none, "/", none, MsFlags::MS_REC | MsFlags::MS_PRIVATE, none)
        .map_err(sys("making mounts private"))?;
    let dir = ["/tmp", "/mnt", "/dev", "/var"]
        .into_iter()
        .find(|d| std::path::Path::new(d).is_dir())
        .unwrap_or("/tmp");
    let locked = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount(
        Some("tmpfs"),
        dir,
        Some("tmpfs"),
        locked,
        Some("size=4k,mode=0555"),
    )
    .map_err(sys("mounting the empty root"))?;
    nix::unistd::chdir(dir).map_err(sys("entering the empty root"))?;
    nix::unistd::pivot_root(".", ".").map_err(sys("pivot_root"))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(sys("detaching the old root"))?;
    nix::unistd::chdir("/").map_err(sys("chdir /"))?;
    mount(
        none,
        "/",
        none,
        MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY | locked,
        none,
    )
    .map_err(sys("making the root read-only"))?;
    Ok(())
}

/// Clear the capabilities the user namespace gave (effective, permitted, inheritable,
/// ambient and the bounding set): with no exec after the unshare, they would stay.
fn drop_capabilities() -> Result<(), LockdownError> {
    for cap in 0..=nix::libc::c_ulong::from(63u8) {
        // EINVAL past the kernel's last capability: done.
        // SAFETY: prctl on integers.
        if unsafe { nix::libc::prctl(nix::libc::PR_CAPBSET_DROP, cap, 0, 0, 0) } != 0 {
            break;
        }
    }
    // SAFETY: prctl on integers.
    unsafe {
        nix::libc::prctl(
            nix::libc::PR_CAP_AMBIENT,
            nix::libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        )
    };
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
    let header = Header {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [Data {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    // SAFETY: capset reads one header and two data structs, laid out as the kernel's
    // `__user_cap_header_struct` / `__user_cap_data_struct` (version 3).
    let r = unsafe { nix::libc::syscall(nix::libc::SYS_capset, &header, data.as_ptr()) };
    if r != 0 {
        return Err(LockdownError::Sys {
            what: "capset",
            source: nix::Error::last(),
        });
    }
    Ok(())
}

/// The two process-independent filters, compiled once. The fork server compiles them
/// before its first fork, so a sandbox only installs them (compiling took ~0.4 ms a start).
pub struct Filters {
    allow: BpfProgram,
    kill: BpfProgram,
}

static PREPARED: std::sync::OnceLock<Filters> = std::sync::OnceLock::new();

impl Filters {
    fn compile() -> Result<Filters, LockdownError> {
        let arch = target_arch()?;
        let allow = SeccompFilter::new(
            allowed(),
            SeccompAction::Errno(nix::libc::ENOSYS as u32),
            SeccompAction::Allow,
            arch,
        )
        .and_then(TryInto::try_into)
        .map_err(|e| LockdownError::Seccomp(e.to_string()))?;
        let kill = SeccompFilter::new(
            killed().into_iter().map(|n| (n, vec![])).collect(),
            SeccompAction::Allow,
            SeccompAction::KillProcess,
            arch,
        )
        .and_then(TryInto::try_into)
        .map_err(|e| LockdownError::Seccomp(e.to_string()))?;
        Ok(Filters { allow, kill })
    }
}

/// Compile the filters ahead of [`apply`], which otherwise compiles them itself. A forked
/// child inherits them.
pub fn prepare() -> Result<(), LockdownError> {
    if PREPARED.get().is_none() {
        let _ = PREPARED.set(Filters::compile()?);
    }
    Ok(())
}

fn target_arch() -> Result<TargetArch, LockdownError> {
    std::env::consts::ARCH
        .try_into()
        .map_err(|e| LockdownError::Seccomp(format!("{e:?}")))
}

fn kill_list() -> Result<BpfProgram, LockdownError> {
    prepare()?;
    Ok(PREPARED.get().expect("prepared above").kill.clone())
}

/// The one per-process rule, small enough to compile here: `kill` and `tgkill` may only
/// name this process (EPERM otherwise, as the kernel answers a signal it may not send).
fn own_signals() -> Result<BpfProgram, LockdownError> {
    let pid = u64::from(std::process::id());
    SeccompFilter::new(
        [nix::libc::SYS_kill, nix::libc::SYS_tgkill]
            .into_iter()
            .map(|n| (n, vec![rule(vec![ne(0, pid)])]))
            .collect(),
        SeccompAction::Allow,
        SeccompAction::Errno(nix::libc::EPERM as u32),
        target_arch()?,
    )
    .and_then(TryInto::try_into)
    .map_err(|e| LockdownError::Seccomp(e.to_string()))
}

/// Install filters on every thread, in order. The kill-list comes first and the allow-list
/// last: installing a filter takes prctl and seccomp, which the allow-list refuses.
fn install(filters: &[&BpfProgram]) -> Result<(), LockdownError> {
    for p in filters {
        seccompiler::apply_filter_all_threads(p)
            .map_err(|e| LockdownError::Seccomp(e.to_string()))?;
    }
    Ok(())
}

fn eq(arg: u8, value: u64) -> SeccompCondition {
    SeccompCondition::new(arg, SeccompCmpArgLen::Qword, SeccompCmpOp::Eq, value)
        .expect("a valid condition")
}

fn ne(arg: u8, value: u64) -> SeccompCondition {
    SeccompCondition::new(arg, SeccompCmpArgLen::Qword, SeccompCmpOp::Ne, value)
        .expect("a valid condition")
}

fn masked(arg: u8, mask: u64, value: u64) -> SeccompCondition {
    SeccompCondition::new(
        arg,
        SeccompCmpArgLen::Qword,
        SeccompCmpOp::MaskedEq(mask),
        value,
    )
    .expect("a valid condition")
}

fn rule(conditions: Vec<SeccompCondition>) -> SeccompRule {
    SeccompRule::new(conditions).expect("a rule has conditions")
}

/// Every call the sandbox makes once it serves: the tokio runtimes, Unix-socket I/O,
/// wasmtime's memory management and traps, threads, time and randomness. The rules on a
/// call narrow its arguments; an empty list allows it whole.
fn allowed() -> BTreeMap<i64, Vec<SeccompRule>> {
    use nix::libc::*;
    let mut m: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    let whole = [
        // I/O on the fds it holds.
        SYS_read,
        SYS_write,
        SYS_readv,
        SYS_writev,
        SYS_pread64,
        SYS_pwrite64,
        SYS_close,
        SYS_lseek,
        SYS_fstat,
        SYS_recvfrom,
        SYS_recvmsg,
        SYS_sendto,
        SYS_sendmsg,
        SYS_accept4,
        SYS_shutdown,
        SYS_getsockopt,
        SYS_setsockopt,
        SYS_getsockname,
        SYS_getpeername,
        SYS_fcntl,
        SYS_dup,
        SYS_dup3,
        // Readiness.
        SYS_epoll_create1,
        SYS_epoll_ctl,
        SYS_epoll_pwait,
        SYS_epoll_pwait2,
        SYS_eventfd2,
        SYS_ppoll,
        SYS_pselect6,
        SYS_pipe2,
        // Memory: the pooling allocator, copy-on-write images, the allocator.
        SYS_mmap,
        SYS_munmap,
        SYS_mprotect,
        SYS_madvise,
        SYS_mremap,
        SYS_brk,
        SYS_msync,
        SYS_mincore,
        SYS_membarrier,
        SYS_memfd_create,
        SYS_ftruncate,
        // Threads and their synchronisation.
        SYS_futex,
        SYS_set_robust_list,
        SYS_get_robust_list,
        SYS_rseq,
        SYS_sched_yield,
        SYS_sched_getaffinity,
        SYS_gettid,
        SYS_getpid,
        SYS_getppid,
        SYS_set_tid_address,
        SYS_exit,
        SYS_exit_group,
        SYS_restart_syscall,
        // Signals: wasmtime's trap handlers, per-thread alternate stacks.
        SYS_rt_sigaction,
        SYS_rt_sigprocmask,
        SYS_rt_sigreturn,
        SYS_sigaltstack,
        // Time and randomness.
        SYS_clock_gettime,
        SYS_clock_getres,
        SYS_clock_nanosleep,
        SYS_nanosleep,
        SYS_gettimeofday,
        SYS_getrandom,
        // Identity and limits (read only).
        SYS_getuid,
        SYS_geteuid,
        SYS_getgid,
        SYS_getegid,
        SYS_getrlimit,
        SYS_prlimit64,
        SYS_getrusage,
        SYS_uname,
        SYS_sysinfo,
    ];
    for n in whole {
        m.insert(n, vec![]);
    }
    #[cfg(target_arch = "x86_64")]
    for n in [
        SYS_epoll_wait,
        SYS_poll,
        SYS_select,
        SYS_pipe,
        SYS_dup2,
        SYS_arch_prctl,
        SYS_time,
        SYS_getrlimit,
    ] {
        m.insert(n, vec![]);
    }
    // New threads only: a process (no CLONE_THREAD) or a new namespace is refused. clone3
    // passes its flags in memory a filter cannot read, so it is not listed (ENOSYS) and
    // libc falls back to clone.
    m.insert(
        SYS_clone,
        vec![rule(vec![masked(
            0,
            (CLONE_THREAD | CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID) as u64,
            CLONE_THREAD as u64,
        )])],
    );
    // Signals: to itself only, which a third, per-process filter checks.
    m.insert(SYS_kill, vec![]);
    m.insert(SYS_tgkill, vec![]);
    // Thread names, and reading its own state.
    m.insert(
        SYS_prctl,
        [PR_SET_NAME, PR_GET_NAME, PR_GET_DUMPABLE, PR_SET_VMA]
            .into_iter()
            .map(|op| rule(vec![eq(0, op as u64)]))
            .collect(),
    );
    // Non-blocking and close-on-exec flags: std sets them through ioctl. (The request's type
    // is c_ulong on glibc and c_int on musl: the cast is needed on one of them.)
    #[allow(clippy::unnecessary_cast)]
    m.insert(
        SYS_ioctl,
        [FIONBIO, FIOCLEX]
            .into_iter()
            .map(|op| rule(vec![eq(1, op as u64)]))
            .collect(),
    );
    m
}

/// Calls that only an escape would make: the process dies on the spot. Not `socketpair`:
/// a connected pair to itself reaches nothing, and a tokio runtime built after [`enter`]
/// makes one for its signal driver (the allow-list refuses it later).
fn killed() -> Vec<i64> {
    use nix::libc::*;
    let mut v = vec![
        SYS_execve,
        SYS_execveat,
        SYS_ptrace,
        SYS_process_vm_readv,
        SYS_process_vm_writev,
        SYS_mount,
        SYS_umount2,
        SYS_pivot_root,
        SYS_chroot,
        SYS_unshare,
        SYS_setns,
        SYS_fsopen,
        SYS_fsmount,
        SYS_move_mount,
        SYS_open_tree,
        SYS_bpf,
        SYS_perf_event_open,
        SYS_init_module,
        SYS_finit_module,
        SYS_delete_module,
        SYS_kexec_load,
        SYS_kexec_file_load,
        SYS_keyctl,
        SYS_add_key,
        SYS_request_key,
        SYS_userfaultfd,
        SYS_open_by_handle_at,
        SYS_name_to_handle_at,
        SYS_socket,
        SYS_connect,
        SYS_bind,
        SYS_listen,
        SYS_setuid,
        SYS_setgid,
        SYS_setreuid,
        SYS_setregid,
        SYS_setresuid,
        SYS_setresgid,
        SYS_setgroups,
        SYS_capset,
        SYS_pidfd_open,
        SYS_pidfd_getfd,
        SYS_io_uring_setup,
    ];
    v.sort_unstable();
    v.dedup();
    v
}
