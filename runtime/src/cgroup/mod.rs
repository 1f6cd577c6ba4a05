//! The cgroup driver: one cgroup per sandbox, below a root that is a subtree of the host's
//! own cgroup (per controller on v1), so surge stays inside whatever limits it was started
//! under and never writes outside that subtree.
//!
//! Built on cgroups-rs. [`Driver`] is the seam the host uses; [`CgroupRoot`] implements it
//! for v1 (separate `memory`, `cpu,cpuacct` and `pids` hierarchies) and v2 (one unified
//! tree). The pure conversions from quotas to kernel values live in [`limits`].

pub mod limits;
pub mod usage;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use cgroups_rs::fs::cpu::CpuController;
use cgroups_rs::fs::hierarchies;
use cgroups_rs::fs::memory::MemController;
use cgroups_rs::fs::pid::PidController;
use cgroups_rs::fs::{Cgroup, ControllIdentifier, Controller, MaxValue};
pub use limits::SandboxLimits;
pub use usage::Usage;

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("cgroup {path}: {detail}")]
    Op { path: String, detail: String },
    #[error("no writable cgroup: {0}")]
    Unavailable(String),
    #[error(
        "cgroup {path} already holds processes ({pids}): another surge host uses the same \
         cgroup subtree; give each host its own `cgroup.subtree` in its config"
    )]
    InUse { path: String, pids: String },
}

fn op(path: &str, e: impl std::fmt::Display) -> CgroupError {
    CgroupError::Op {
        path: path.to_string(),
        detail: e.to_string(),
    }
}

/// True when v1's cpuacct is mounted apart from cpu (not as `cpu,cpuacct`).
fn cpuacct_separate() -> bool {
    let real = |c: &str| std::fs::canonicalize(Path::new("/sys/fs/cgroup").join(c)).ok();
    match (real("cpu"), real("cpuacct")) {
        (Some(cpu), Some(acct)) => cpu != acct,
        _ => false,
    }
}

/// The controllers a sandbox cgroup uses.
const CONTROLLERS: [&str; 3] = ["memory", "cpu", "pids"];

/// Creates sandbox cgroups. The host holds one for its lifetime.
pub trait Driver: Send + Sync {
    /// Create (or reuse) the cgroup `name` below the root, with `limits` applied.
    fn create(
        &self,
        name: &str,
        limits: &SandboxLimits,
    ) -> Result<Box<dyn SandboxCgroup>, CgroupError>;
    /// The directories the cgroup `name` has (or would have), one per hierarchy.
    fn dirs_of(&self, name: &str) -> Vec<PathBuf>;
    /// The root, for messages.
    fn describe(&self) -> String;
    /// Remove the root itself (after every sandbox cgroup is gone).
    fn remove_root(&self);
}

/// One sandbox's cgroup.
pub trait SandboxCgroup: Send + Sync {
    /// Directories (one per hierarchy) that hold this cgroup.
    fn dirs(&self) -> Vec<PathBuf>;
    /// The files a new process writes "0" into, between fork and exec, to enter this
    /// cgroup.
    ///
    /// On v1 that is `tasks`, not `cgroup.procs`: the child is single-threaded there, so
    /// moving its one thread moves the process, and a single-thread self-migration skips
    /// the kernel's global `cgroup_threadgroup_rwsem` write lock. That lock waits for an RCU
    /// grace period unless one passed recently: `cgroup.procs` took a median 7 ms (up to
    /// 19 ms) per start on the build machines, `tasks` 0.1 ms. Threads the sandbox creates
    /// after exec are born in the cgroup. v2 has no `tasks` (`cgroup.threads` is for
    /// threaded subtrees only), so it keeps `cgroup.procs`.
    fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs()
            .into_iter()
            .map(|d| {
                let tasks = d.join("tasks");
                if tasks.exists() {
                    tasks
                } else {
                    d.join("cgroup.procs")
                }
            })
            .collect()
    }
    /// Rewrite the limits in place.
    fn apply(&self, limits: &SandboxLimits) -> Result<(), CgroupError>;
    fn pids(&self) -> Vec<u64>;
    fn usage(&self) -> Usage;
    /// Kill whatever is left inside and remove the cgroup.
    fn destroy(&self) -> Result<(), CgroupError>;
}

/// Where sandbox cgroups go: `<own cgroup>/<subtree>/<sandbox>` per controller.
pub struct CgroupRoot {
    v2: bool,
    /// Per controller, the root's path relative to that hierarchy's mount (v1); for v2 the
    /// key "" holds the one path.
    rel: HashMap<String, String>,
}

impl CgroupRoot {
    /// Find the host's own cgroup and prepare `<own>/<subtree>` (or `<root>` when given) as the
    /// root. Fails, naming the path, when it is not writable.
    pub fn detect(explicit_root: &str, subtree: &str) -> Result<Self, CgroupError> {
        let v2 = hierarchies::is_cgroup2_unified_mode();
        let own = read_own_cgroups()?;
        let mut rel = HashMap::new();
        let join = |base: &str| {
            if explicit_root.is_empty() {
                format!("{}/{}", base.trim_end_matches('/'), subtree)
            } else {
                explicit_root.trim_end_matches('/').to_string()
            }
        };
        if v2 {
            let base = own.get("").cloned().unwrap_or_else(|| "/".into());
            rel.insert(String::new(), join(&base));
        } else {
            for c in CONTROLLERS {
                let base = own.get(c).cloned().ok_or_else(|| {
                    CgroupError::Unavailable(format!("/proc/self/cgroup names no {c} hierarchy"))
                })?;
                rel.insert(c.to_string(), join(&base));
            }
            // cpuacct may be its own hierarchy rather than co-mounted with cpu. Then it is a
            // fourth hierarchy to place the sandbox in and to clean up: left out, every
            // version would leave an empty cgroup behind there.
            if let (true, Some(base)) = (cpuacct_separate(), own.get("cpuacct")) {
                rel.insert("cpuacct".to_string(), join(base));
            }
        }
        let root = CgroupRoot { v2, rel };
        // Create the root directories now, so a read-only cgroupfs fails at start, by name.
        for dir in root.dirs_for("") {
            std::fs::create_dir_all(&dir)
                .map_err(|e| CgroupError::Unavailable(format!("{}: {e}", dir.display())))?;
        }
        if v2 {
            root.enable_v2_controllers()?;
        }
        root.remove_stale();
        Ok(root)
    }

    /// Remove sandbox cgroups left by a host that was killed before it could clean up.
    /// Only empty ones go: `rmdir` refuses a cgroup that still holds a task.
    fn remove_stale(&self) {
        for dir in self.dirs_for("") {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    let _ = std::fs::remove_dir(e.path());
                }
            }
        }
    }

    fn mount(controller: &str) -> PathBuf {
        let base = PathBuf::from("/sys/fs/cgroup");
        if controller.is_empty() {
            return base;
        }
        // `cpu` is often co-mounted as `cpu,cpuacct`; the `cpu` symlink points at it.
        base.join(controller)
    }

    /// Absolute directories for `name` below the root (the root itself for "").
    fn dirs_for(&self, name: &str) -> Vec<PathBuf> {
        let mut v: Vec<(String, PathBuf)> = self
            .rel
            .iter()
            .map(|(c, r)| {
                let mut p = Self::mount(c);
                p.push(r.trim_start_matches('/'));
                if !name.is_empty() {
                    p.push(name);
                }
                (c.clone(), p)
            })
            .collect();
        v.sort();
        v.into_iter().map(|(_, p)| p).collect()
    }

    /// On v2 a cgroup with processes cannot delegate controllers to children ("no internal
    /// processes"), so the root enables memory, cpu and pids for its own children only.
    fn enable_v2_controllers(&self) -> Result<(), CgroupError> {
        let root = &self.dirs_for("")[0];
        let ctl = root.join("cgroup.subtree_control");
        for c in CONTROLLERS {
            std::fs::write(&ctl, format!("+{c}"))
                .map_err(|e| op(&ctl.display().to_string(), format!("enabling {c}: {e}")))?;
        }
        Ok(())
    }
}

impl Driver for CgroupRoot {
    fn create(
        &self,
        name: &str,
        limits: &SandboxLimits,
    ) -> Result<Box<dyn SandboxCgroup>, CgroupError> {
        // An empty leftover (a host killed before its cleanup) is reused; one with processes
        // belongs to a live sandbox of another host, and sharing it would mix two sandboxes
        // under one set of limits.
        for d in self.dirs_for(name) {
            let procs = std::fs::read_to_string(d.join("cgroup.procs")).unwrap_or_default();
            let pids: Vec<&str> = procs.split_whitespace().collect();
            if !pids.is_empty() {
                return Err(CgroupError::InUse {
                    path: d.display().to_string(),
                    pids: pids.join(", "),
                });
            }
        }
        let mut groups = Vec::new();
        if self.v2 {
            let rel = format!("{}/{}", self.rel[""].trim_start_matches('/'), name);
            let cg = Cgroup::new_with_specified_controllers(
                hierarchies::auto(),
                &rel,
                Some(CONTROLLERS.iter().map(|s| s.to_string()).collect()),
            )
            .map_err(|e| op(&rel, e))?;
            groups.push((rel, cg));
        } else {
            let separate = self.rel.contains_key("cpuacct");
            let hierarchies = [
                ("memory", None),
                ("cpu", (!separate).then_some("cpuacct")),
                ("pids", None),
                ("cpuacct", None),
            ];
            for (c, extra) in hierarchies {
                let Some(root) = self.rel.get(c) else {
                    continue;
                };
                let rel = format!("{}/{}", root.trim_start_matches('/'), name);
                let mut ctrls = vec![c.to_string()];
                ctrls.extend(extra.map(String::from));
                let cg =
                    Cgroup::new_with_specified_controllers(hierarchies::auto(), &rel, Some(ctrls))
                        .map_err(|e| op(&rel, e))?;
                groups.push((rel, cg));
            }
        }
        let sc = CgroupsRs {
            groups,
            v2: self.v2,
            dirs: self.dirs_for(name),
        };
        if let Err(e) = sc.apply(limits) {
            let _ = sc.destroy();
            return Err(e);
        }
        Ok(Box::new(sc))
    }

    fn dirs_of(&self, name: &str) -> Vec<PathBuf> {
        self.dirs_for(name)
    }

    fn describe(&self) -> String {
        let dirs: Vec<String> = self
            .dirs_for("")
            .iter()
            .map(|d| d.display().to_string())
            .collect();
        format!(
            "cgroup {} at {}",
            if self.v2 { "v2" } else { "v1" },
            dirs.join(", ")
        )
    }

    fn remove_root(&self) {
        for d in self.dirs_for("") {
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// A sandbox cgroup through cgroups-rs: one `Cgroup` per hierarchy on v1, one on v2.
struct CgroupsRs {
    groups: Vec<(String, Cgroup)>,
    /// v2 takes `cpu.weight` (1..=10000) where v1 takes `cpu.shares`.
    v2: bool,
    dirs: Vec<PathBuf>,
}

impl CgroupsRs {
    fn find<'a, T>(&'a self) -> Option<(&'a str, &'a T)>
    where
        &'a T: From<&'a cgroups_rs::fs::Subsystem>,
        T: Controller + ControllIdentifier,
    {
        self.groups
            .iter()
            .find_map(|(p, cg)| cg.controller_of::<T>().map(|c| (p.as_str(), c)))
    }
}

impl SandboxCgroup for CgroupsRs {
    fn dirs(&self) -> Vec<PathBuf> {
        self.dirs.clone()
    }

    fn apply(&self, l: &SandboxLimits) -> Result<(), CgroupError> {
        if let Some((p, mem)) = self.find::<MemController>() {
            mem.set_limit(l.memory_bytes as i64)
                .map_err(|e| op(p, format!("memory limit {}: {e}", l.memory_bytes)))?;
        }
        if let Some((p, cpu)) = self.find::<CpuController>() {
            cpu.set_cfs_quota_and_period(
                Some(l.cfs_quota_us() as i64),
                Some(limits::CPU_PERIOD_US),
            )
            .map_err(|e| op(p, format!("cpu quota {}: {e}", l.cpu_max())))?;
            let weight = if self.v2 {
                l.cpu_weight()
            } else {
                l.cpu_shares()
            };
            cpu.set_shares(weight)
                .map_err(|e| op(p, format!("cpu weight {weight}: {e}")))?;
        }
        if let Some((p, pids)) = self.find::<PidController>() {
            pids.set_pid_max(MaxValue::Value(l.pids_max as i64))
                .map_err(|e| op(p, format!("pids.max {}: {e}", l.pids_max)))?;
        }
        Ok(())
    }

    fn pids(&self) -> Vec<u64> {
        let mut v: Vec<u64> = self
            .groups
            .iter()
            .flat_map(|(_, cg)| cg.procs())
            .map(|p| p.pid)
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    fn usage(&self) -> Usage {
        usage::read(&self.dirs)
    }

    // Blocking by design: callers run it on a blocking thread (the supervisor's
    // spawn_blocking), never on an async worker.
    #[allow(clippy::disallowed_methods)]
    fn destroy(&self) -> Result<(), CgroupError> {
        for (p, cg) in &self.groups {
            if !cg.procs().is_empty() {
                let _ = cg.kill();
            }
            // A killed task leaves the cgroup asynchronously: retry briefly.
            let mut last = Ok(());
            for _ in 0..50 {
                last = cg.delete();
                if last.is_ok() || !cg.exists() {
                    last = Ok(());
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            last.map_err(|e| op(p, e))?;
        }
        Ok(())
    }
}

/// `/proc/self/cgroup` as controller → path ("" for the v2 line).
fn read_own_cgroups() -> Result<HashMap<String, String>, CgroupError> {
    let text = std::fs::read_to_string("/proc/self/cgroup")
        .map_err(|e| CgroupError::Unavailable(format!("/proc/self/cgroup: {e}")))?;
    Ok(parse_proc_cgroup(&text))
}

/// Parse `/proc/<pid>/cgroup` lines `id:controllers:path`.
pub fn parse_proc_cgroup(text: &str) -> HashMap<String, String> {
    let mut m = HashMap::new();
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, ctrls, path) = match (parts.next(), parts.next(), parts.next()) {
            (Some(a), Some(b), Some(c)) => (a, b, c),
            _ => continue,
        };
        if ctrls.is_empty() {
            m.insert(String::new(), path.to_string());
        }
        for c in ctrls.split(',').filter(|c| !c.is_empty()) {
            m.insert(c.to_string(), path.to_string());
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_v1_and_v2_proc_cgroup() {
        let m = parse_proc_cgroup(
            "4:memory:/process_api/abc\n2:cpu,cpuacct:/\n8:pids:/x\n0::/user.slice\n",
        );
        assert_eq!(m["memory"], "/process_api/abc");
        assert_eq!(m["cpu"], "/");
        assert_eq!(m["cpuacct"], "/");
        assert_eq!(m["pids"], "/x");
        assert_eq!(m[""], "/user.slice");
    }
}
