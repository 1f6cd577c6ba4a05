//! A probe: a child of the fork server, made exactly as a sandbox is (same uid drop,
//! no-new-privs, closed fds) that applies the same [`lockdown`](super::lockdown) and then
//! tries one thing a sandbox must never do. It prints one line, `walls <description>` and
//! then `allowed <detail>` or `refused <errno>`; a call on the kill-list ends it by SIGSYS
//! before it can print. The host runs it once at start (action `none`) to say which walls
//! the kernel allows, and `surge sandbox-check` runs every action.

use std::io::Write;

use super::lockdown;

/// The forbidden things, by name.
pub const ACTIONS: [&str; 6] = [
    "open-host-file",
    "connect",
    "ptrace",
    "mount",
    "execve",
    "kill-host",
];

/// Run behind the walls, aiming `kill-host` and `ptrace` at `host`.
pub fn run(action: &str, host: nix::unistd::Pid) -> ! {
    let walls = match lockdown::apply() {
        Ok(w) => w,
        Err(e) => {
            println!("error {e}");
            std::process::exit(2);
        }
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "walls {}", walls);
    let _ = out.flush();
    let result = attempt(action, host);
    let _ = match result {
        Ok(detail) => writeln!(out, "allowed {detail}"),
        Err(errno) => writeln!(out, "refused {errno}"),
    };
    let _ = out.flush();
    std::process::exit(0)
}

/// Try `action`: Ok(what succeeded), or the error.
fn attempt(action: &str, ppid: nix::unistd::Pid) -> Result<String, nix::Error> {
    use nix::libc;
    match action {
        "none" => Ok("nothing tried".into()),
        "open-host-file" => std::fs::read_to_string("/etc/passwd")
            .map(|t| format!("read /etc/passwd ({} bytes)", t.len()))
            .map_err(|e| nix::Error::from_raw(e.raw_os_error().unwrap_or(libc::EIO))),
        "connect" => std::net::TcpStream::connect("127.0.0.1:22")
            .map(|_| "connected to 127.0.0.1:22".to_string())
            .map_err(|e| nix::Error::from_raw(e.raw_os_error().unwrap_or(libc::EIO))),
        "ptrace" => nix::sys::ptrace::attach(ppid).map(|()| format!("attached to {ppid}")),
        "mount" => nix::mount::mount(
            Some("tmpfs"),
            "/",
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )
        .map(|()| "mounted a tmpfs".into()),
        "execve" => {
            let sh = c"/bin/sh";
            nix::unistd::execv(sh, &[sh]).map(|_| "exec'd /bin/sh".into())
        }
        // The host (its parent): a signal 0 only checks whether it may be sent.
        "kill-host" => nix::sys::signal::kill(ppid, None).map(|()| format!("may signal {ppid}")),
        other => Ok(format!("unknown action {other:?}: nothing tried")),
    }
}
