//! Reading what a sandbox cgroup used, on v1 and v2, straight from its files. Every reader
//! takes the cgroup's directories, so the tests run against fixture files in a temp dir.
//!
//! | figure | v1 | v2 |
//! | --- | --- | --- |
//! | memory now | `memory.usage_in_bytes` | `memory.current` |
//! | memory peak | `memory.max_usage_in_bytes` | `memory.peak` (kernel ≥ 5.19; else 0) |
//! | OOM kills | `memory.oom_control` `oom_kill` | `memory.events` `oom_kill` |
//! | CPU used | `cpuacct.usage` (ns) | `cpu.stat` `usage_usec` |
//! | throttling | `cpu.stat` `nr_periods`, `nr_throttled`, `throttled_time` (ns) | `cpu.stat` `nr_periods`, `nr_throttled`, `throttled_usec` |

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// What a sandbox cgroup reports. Counters are cumulative since the cgroup was created.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Usage {
    pub memory_bytes: u64,
    pub memory_peak_bytes: u64,
    pub cpu_usage_ns: u64,
    /// CFS periods in which the cgroup had runnable tasks.
    pub nr_periods: u64,
    /// Of those, the periods in which it ran out of quota.
    pub nr_throttled: u64,
    pub throttled_ns: u64,
    pub oom_kills: u64,
}

/// Read every figure that one of `dirs` holds (v1: one directory per hierarchy; v2: one).
/// A missing file leaves its figure at 0: the cgroup may be gone already.
pub fn read(dirs: &[PathBuf]) -> Usage {
    let mut u = Usage::default();
    for d in dirs {
        let num = |f: &str| read_u64(&d.join(f));
        if let Some(v) = num("memory.usage_in_bytes").or_else(|| num("memory.current")) {
            u.memory_bytes = v;
        }
        if let Some(v) = num("memory.max_usage_in_bytes").or_else(|| num("memory.peak")) {
            u.memory_peak_bytes = v;
        }
        for f in ["memory.oom_control", "memory.events"] {
            if let Some(v) = read_keyed(&d.join(f), "oom_kill") {
                u.oom_kills = v;
            }
        }
        if let Some(v) = num("cpuacct.usage") {
            u.cpu_usage_ns = v;
        }
        if let Ok(text) = std::fs::read_to_string(d.join("cpu.stat")) {
            apply_cpu_stat(&mut u, &text);
        }
    }
    u
}

/// Fold `cpu.stat` (v1 or v2) into `u`.
pub fn apply_cpu_stat(u: &mut Usage, text: &str) {
    for (key, v) in keyed(text) {
        match key {
            "nr_periods" => u.nr_periods = v,
            "nr_throttled" => u.nr_throttled = v,
            "throttled_time" => u.throttled_ns = v,
            "throttled_usec" => u.throttled_ns = v.saturating_mul(1000),
            "usage_usec" => u.cpu_usage_ns = v.saturating_mul(1000),
            _ => {}
        }
    }
}

fn keyed(text: &str) -> impl Iterator<Item = (&str, u64)> {
    text.lines().filter_map(|l| {
        let mut it = l.split_whitespace();
        Some((it.next()?, it.next()?.parse().ok()?))
    })
}

fn read_u64(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn read_keyed(path: &Path, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    let v = keyed(&text).find(|(k, _)| *k == key).map(|(_, v)| v);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(files: &[(&str, &str)]) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(d.path().join(name), text).unwrap();
        }
        d
    }

    #[test]
    fn reads_v1_hierarchies() {
        let mem = fixture(&[
            ("memory.usage_in_bytes", "10485760\n"),
            ("memory.max_usage_in_bytes", "20971520\n"),
            (
                "memory.oom_control",
                "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
            ),
        ]);
        let cpu = fixture(&[
            ("cpuacct.usage", "123456789\n"),
            (
                "cpu.stat",
                "nr_periods 40\nnr_throttled 10\nthrottled_time 500000000\n",
            ),
        ]);
        let u = read(&[cpu.path().into(), mem.path().into()]);
        assert_eq!(
            u,
            Usage {
                memory_bytes: 10 << 20,
                memory_peak_bytes: 20 << 20,
                cpu_usage_ns: 123_456_789,
                nr_periods: 40,
                nr_throttled: 10,
                throttled_ns: 500_000_000,
                oom_kills: 2,
            }
        );
    }

    #[test]
    fn reads_v2_unified() {
        let d = fixture(&[
            ("memory.current", "4096\n"),
            ("memory.peak", "8192\n"),
            (
                "memory.events",
                "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\noom_group_kill 0\n",
            ),
            (
                "cpu.stat",
                "usage_usec 2000\nuser_usec 1500\nsystem_usec 500\nnr_periods 7\nnr_throttled 3\nthrottled_usec 900\n",
            ),
        ]);
        let u = read(&[d.path().into()]);
        assert_eq!(u.memory_bytes, 4096);
        assert_eq!(u.memory_peak_bytes, 8192);
        assert_eq!(u.oom_kills, 1);
        assert_eq!(u.cpu_usage_ns, 2_000_000);
        assert_eq!((u.nr_periods, u.nr_throttled), (7, 3));
        assert_eq!(u.throttled_ns, 900_000);
    }

    #[test]
    fn missing_files_read_as_zero() {
        let d = fixture(&[("cpu.stat", "garbage\nnr_periods x\n")]);
        assert_eq!(read(&[d.path().into()]), Usage::default());
        assert_eq!(
            read(&[PathBuf::from("/nonexistent/cgroup")]),
            Usage::default()
        );
    }
}
