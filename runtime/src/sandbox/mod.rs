//! The sandbox process: one per function version, forked by the host's fork server
//! ([`zygote`]), in the function's own cgroup, as an unprivileged user. It maps the precompiled artifact, instantiates the pool ahead of
//! traffic, prints [`protocol::READY_LINE`], and serves the host over the inherited socket.

// Messages with fds attached.
#[allow(unsafe_code)]
pub mod fdpass;
pub mod frame;
// Namespaces, the empty root, capabilities (capset, prctl) and the seccomp filters.
pub mod lockdown;
// Tries forbidden calls from inside the walls.
pub mod probe;
pub mod protocol;
// Maps the host's precompiled artifact and takes over the inherited listening fd.
#[allow(unsafe_code)]
mod server;

// Forks sandboxes from a process that is already loaded.
pub mod zygote;
