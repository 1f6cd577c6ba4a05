//! The sandbox process: one per function version, in the function's own cgroup, as an
//! unprivileged user. It maps the precompiled artifact, instantiates the pool ahead of
//! traffic, prints [`protocol::READY_LINE`], and serves the host over the inherited socket.

pub mod protocol;
mod server;

pub use server::run;
