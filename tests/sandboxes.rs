//! Sandbox processes in their cgroups: real processes, real cgroups.

// Integration tests drive real processes from plain threads against the wall clock: the
// time rule of `.clippy.toml` is for the host, not for them.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

mod common;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{cgroups_writable, skip, Host};

fn read(p: &PathBuf) -> String {
    std::fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .trim()
        .to_string()
}

#[test]
fn a_function_cgroup_carries_its_limits_holds_its_sandbox_and_goes_with_remove() {
    if let Err(why) = cgroups_writable() {
        return skip(
            "a_function_cgroup_carries_its_limits_holds_its_sandbox_and_goes_with_remove",
            &why,
        );
    }
    let h = Host::start(&["echo"]);
    let f = h.function("echo").expect("echo deployed");
    let pid = f["sandbox_pid"].as_u64().expect("sandbox pid") as u32;
    let dirs: Vec<PathBuf> = f["cgroup"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| PathBuf::from(d.as_str().unwrap()))
        .collect();
    assert!(!dirs.is_empty());
    for d in &dirs {
        assert!(d.is_dir(), "{} exists", d.display());
        assert!(
            d.to_string_lossy().contains(&h.subtree),
            "{} is inside this host's subtree",
            d.display()
        );
        let procs = read(&d.join("cgroup.procs"));
        assert!(
            procs.lines().any(|l| l == pid.to_string()),
            "{} holds {pid}: {procs}",
            d.display()
        );
    }
    // echo: memory 64Mi × 1 instance + 4Mi overhead (an event sandbox's) + its compiled
    // artifact (a few KiB); cpu 250m guaranteed (the
    // weight: 256 shares, or v2's weight 1 + 254 × 9999 / 262142), bursting to one core (the
    // CFS quota); pids 64.
    let overhead = f["memory_overhead_bytes"].as_u64().unwrap();
    let artifact = overhead.saturating_sub(4 << 20);
    assert!(artifact > 0 && artifact < 1 << 20, "{overhead}");
    let want_mem = (64u64 << 20) + overhead;
    let v2 = dirs.len() == 1;
    if v2 {
        let d = &dirs[0];
        assert_eq!(read(&d.join("memory.max")), want_mem.to_string());
        assert_eq!(read(&d.join("cpu.max")), "100000 100000");
        assert_eq!(read(&d.join("cpu.weight")), "10");
        assert_eq!(read(&d.join("pids.max")), "64");
    } else {
        let find = |file: &str| {
            dirs.iter()
                .map(|d| d.join(file))
                .find(|p| p.exists())
                .unwrap_or_else(|| panic!("{file} in {dirs:?}"))
        };
        assert_eq!(read(&find("memory.limit_in_bytes")), want_mem.to_string());
        assert_eq!(read(&find("cpu.cfs_quota_us")), "100000");
        assert_eq!(read(&find("cpu.shares")), "256");
        assert_eq!(read(&find("cpu.cfs_period_us")), "100000");
        assert_eq!(read(&find("pids.max")), "64");
    }
    // The sandbox is not the host's user, and cannot gain privileges.
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(
        !uid_line.split_whitespace().skip(1).any(|u| u == "0"),
        "sandbox runs as root: {uid_line}"
    );
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("NoNewPrivs:") && l.ends_with('1')),
        "no_new_privs set"
    );
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("CapEff:") && l.ends_with("0000000000000000")),
        "no capabilities"
    );
    // Behind its own namespaces, with the system-call filter on every thread.
    assert!(
        status.lines().any(|l| l == "Seccomp:\t2"),
        "seccomp filter mode: {status}"
    );
    for ns in ["user", "mnt", "net", "ipc", "uts"] {
        let theirs = std::fs::read_link(format!("/proc/{pid}/ns/{ns}")).unwrap();
        let ours = std::fs::read_link(format!("/proc/self/ns/{ns}")).unwrap();
        assert_ne!(theirs, ours, "the sandbox has a {ns} namespace of its own");
    }
    // Its root is empty: nothing of the host's filesystem is there to name.
    let root: Vec<_> = std::fs::read_dir(format!("/proc/{pid}/root"))
        .unwrap()
        .collect();
    assert!(root.is_empty(), "an empty root: {root:?}");

    let (code, out, err) = h.cli(&["remove", "echo"]);
    assert_eq!(code, 0, "{out}{err}");
    for d in &dirs {
        assert!(!d.exists(), "{} removed with the function", d.display());
    }
    assert!(
        !PathBuf::from(format!("/proc/{pid}")).exists(),
        "sandbox {pid} gone"
    );
    assert_eq!(h.invoke("echo", b"{}").status, 404);

    // Stopping the host removes its whole subtree.
    let roots: Vec<PathBuf> = dirs
        .iter()
        .map(|d| d.parent().unwrap().to_path_buf())
        .collect();
    assert!(roots.iter().all(|r| r.is_dir()));
    let mut h = h;
    h.stop();
    for r in &roots {
        assert!(!r.exists(), "{} removed when the host stopped", r.display());
    }
    // Nothing left in any hierarchy, including ones surge only touches indirectly (cpuacct
    // mounted apart from cpu).
    let left = dirs_named(Path::new("/sys/fs/cgroup"), &h.subtree, 5);
    assert!(left.is_empty(), "left behind: {left:?}");
}

fn dirs_named(dir: &Path, name: &str, depth: u32) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for e in entries.flatten() {
        let p = e.path();
        if !e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            continue;
        }
        if e.file_name() == name {
            found.push(p);
        } else if depth > 0 {
            found.extend(dirs_named(&p, name, depth - 1));
        }
    }
    found
}

#[test]
fn a_killed_sandbox_is_replaced_and_the_next_request_succeeds() {
    let h = Host::start(&["echo", "hello"]);
    for name in ["echo", "hello"] {
        let pid = h.sandbox_pid(name).expect("sandbox pid");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        // Once the host has noticed the death (a request racing the kill itself may get a
        // 502), the next request is served: by the replacement, or after waiting for it.
        let mut noticed = false;
        for _ in 0..250 {
            if h.function(name).unwrap()["restarts"] == 1 {
                noticed = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(noticed, "{name}: the host noticed the dead sandbox");
        let r = if name == "echo" {
            h.post("/echo", b"after kill")
        } else {
            h.get("/hello")
        };
        assert_eq!(r.status, 200, "{name}: {}", r.text());
        let new_pid = h.sandbox_pid(name);
        assert!(
            new_pid.is_some() && new_pid != Some(pid),
            "{name} got a new sandbox: {new_pid:?}"
        );
    }
    assert_eq!(h.get("/healthz").status, 200, "the host survived");
}

fn parent_of(pid: u32) -> u32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    stat.rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap()
}

/// Every sandbox is a child of the host's fork server, and the fork server's death takes
/// its children with it (their death signal): each is restarted through a new one.
#[test]
fn a_killed_fork_server_takes_its_sandboxes_along_and_they_come_back_through_a_new_one() {
    let h = Host::start(&["echo", "hello"]);
    let pids: Vec<u32> = ["echo", "hello"]
        .iter()
        .map(|n| h.sandbox_pid(n).expect("sandbox pid"))
        .collect();
    let zygote = parent_of(pids[0]);
    assert_eq!(parent_of(pids[1]), zygote, "one fork server for the host");
    let cmdline = std::fs::read(format!("/proc/{zygote}/cmdline")).unwrap();
    assert!(
        String::from_utf8_lossy(&cmdline).contains("__zygote"),
        "{pids:?} are children of the fork server, not of {:?}",
        String::from_utf8_lossy(&cmdline)
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(zygote as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    common::wait_until(
        "both sandboxes die with their fork server",
        Duration::from_secs(10),
        || {
            pids.iter().all(|p| {
                !Path::new(&format!("/proc/{p}")).exists() || {
                    // A zombie until the dead zygote's reaper (init) collects it.
                    std::fs::read_to_string(format!("/proc/{p}/stat"))
                        .map(|s| s.rsplit(')').next().unwrap().trim_start().starts_with('Z'))
                        .unwrap_or(true)
                }
            })
        },
    );
    for name in ["echo", "hello"] {
        common::wait_until(
            &format!("{name} restarted"),
            Duration::from_secs(20),
            || h.function(name).unwrap()["restarts"].as_u64() >= Some(1),
        );
        let r = if name == "echo" {
            h.post("/echo", b"after the fork server")
        } else {
            h.get("/hello")
        };
        assert_eq!(r.status, 200, "{name}: {}", r.text());
        let new_pid = h.sandbox_pid(name).expect("a new sandbox");
        assert_ne!(
            parent_of(new_pid),
            zygote,
            "{name}: forked by a new fork server"
        );
    }
}

fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// The fork server's children named `name`.
fn children_named(zygote: u32, name: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&p| {
            std::fs::read_to_string(format!("/proc/{p}/stat")).is_ok_and(|s| {
                s.rsplit(')').next().unwrap().split_whitespace().nth(1) == Some(&zygote.to_string())
            }) && comm(p) == name
        })
        .collect()
}

/// The fork server keeps one spare child, already in its namespaces, and the next sandbox
/// is that child. A spare that dies is replaced.
#[test]
fn the_next_sandbox_is_the_spare_and_a_killed_spare_is_replaced() {
    let h = Host::start(&["echo"]);
    let first = h.sandbox_pid("echo").expect("sandbox pid");
    assert_eq!(comm(first), "surge-sandbox");
    let zygote = parent_of(first);
    assert_eq!(comm(zygote), "surge-zygote");
    let spare = |not: Option<u32>| {
        let mut found = None;
        common::wait_until("a spare", Duration::from_secs(10), || {
            found = children_named(zygote, "surge-spare")
                .into_iter()
                .find(|&p| Some(p) != not);
            found.is_some()
        });
        found.unwrap()
    };
    let s1 = spare(None);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(s1 as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let s2 = spare(Some(s1));
    // The sandbox that replaces a killed one is the spare, handed over.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(first as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    common::wait_until("echo restarted", Duration::from_secs(20), || {
        h.sandbox_pid("echo").is_some_and(|p| p != first)
    });
    assert_eq!(
        h.sandbox_pid("echo"),
        Some(s2),
        "the spare became the sandbox"
    );
    assert_eq!(comm(s2), "surge-sandbox");
    assert_eq!(h.post("/echo", b"from the spare").text(), "from the spare");
}

#[test]
fn a_second_host_on_the_same_cgroup_subtree_is_refused_not_mixed_in() {
    if let Err(why) = cgroups_writable() {
        return skip(
            "a_second_host_on_the_same_cgroup_subtree_is_refused_not_mixed_in",
            &why,
        );
    }
    let a = Host::start(&["echo"]);
    let b = Host::start_sharing_cgroups_with(&a);
    let manifest = common::repo().join("functions/echo/function.toml");
    let (code, _, err) = b.cli(&["deploy", manifest.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("already holds processes") && err.contains("cgroup.subtree"),
        "the error names the conflict and the fix: {err}"
    );
    // The first host's function is untouched.
    assert_eq!(a.post("/echo", b"still mine").text(), "still mine");
    assert!(
        b.function("echo").is_none(),
        "nothing half-deployed on the second host"
    );
}

/// Each forbidden thing, tried from inside a process spawned and locked down as a sandbox
/// is: it fails (refused by the filter, or the process killed by SIGSYS), and the command
/// says so line by line.
#[test]
fn forbidden_calls_fail_inside_the_sandbox_walls() {
    let out = std::process::Command::new(common::SURGE)
        .arg("sandbox-check")
        .current_dir(common::repo())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("{text}");
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for action in [
        "open-host-file",
        "connect",
        "ptrace",
        "mount",
        "execve",
        "kill-host",
    ] {
        let line = text
            .lines()
            .find(|l| l.split_whitespace().next() == Some(action))
            .unwrap_or_else(|| panic!("no line for {action}: {text}"));
        assert!(
            line.contains("refused") || line.contains("killed by SIGSYS"),
            "{action} must fail: {line}"
        );
    }
    assert!(
        text.contains(
            "walls: namespaces (user, mount, network, ipc, uts), empty read-only root, seccomp"
        ),
        "every wall up on this machine: {text}"
    );
}
