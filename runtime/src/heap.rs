//! Giving freed heap back to the kernel. Compiling and checking a component allocates
//! hundreds of megabytes on blocking threads, and glibc keeps what they free in its
//! per-thread arenas: ten 18 MB components left the host at 333 MB PSS after their deploys,
//! 99 MB after a trim (BENCHMARKS.md, "Memory at zero"). The host trims once its start-up
//! deploys are done and after each deploy, off the request path.

#![allow(unsafe_code)]

/// Return free heap pages of every arena to the kernel (glibc `malloc_trim`). Blocking: it
/// walks the arenas, tens of milliseconds on a large heap.
pub fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes the allocator's own locks and touches only free chunks.
    unsafe {
        nix::libc::malloc_trim(0);
    }
}
