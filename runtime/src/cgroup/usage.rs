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

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use parking_lot::Mutex;
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
    UsageReader::new(dirs.to_vec()).read()
}

/// The files a figure comes from, in the order they are tried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Figure {
    Memory,
    MemoryPeak,
    OomKills,
    CpuUsage,
    CpuStat,
}

const FILES: [(&str, Figure); 8] = [
    ("memory.usage_in_bytes", Figure::Memory),
    ("memory.current", Figure::Memory),
    ("memory.max_usage_in_bytes", Figure::MemoryPeak),
    ("memory.peak", Figure::MemoryPeak),
    ("memory.oom_control", Figure::OomKills),
    ("memory.events", Figure::OomKills),
    ("cpuacct.usage", Figure::CpuUsage),
    ("cpu.stat", Figure::CpuStat),
];

/// Reads one cgroup's figures again and again, through files it keeps open.
///
/// Opening a cgroup file walks its whole path through kernfs: with a thousand sandboxes
/// sampled every second, the opens (most of them misses: v1 spreads the figures over four
/// hierarchies) took 60 % of the host's CPU. The reader finds the files once and re-reads
/// them with `pread` at offset 0, which regenerates a cgroup file's text. A cgroup that is
/// removed (scaled to zero) turns its open files stale (`ENODEV`); the next read finds the
/// files afresh, so a recreated cgroup of the same name is picked up.
pub struct UsageReader {
    dirs: Vec<PathBuf>,
    open: Mutex<Found>,
}

#[derive(Default)]
struct Found {
    files: Vec<(Figure, File)>,
    /// Every directory existed. A cgroup is made one hierarchy at a time (a directory's
    /// files come with its `mkdir`): files found while only some of its directories
    /// existed are looked for again at the next read, or the missing hierarchies' figures
    /// would read 0 for the cgroup's whole life. (v1's `pids` directory holds none of
    /// these figures, so "has files" would be the wrong test.)
    complete: bool,
}

impl UsageReader {
    pub fn new(dirs: Vec<PathBuf>) -> Self {
        UsageReader {
            dirs,
            open: Mutex::new(Found::default()),
        }
    }

    /// The cgroup's directories, whether or not it exists now.
    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// Every figure now; 0 for what the cgroup does not hold (or while it does not exist).
    pub fn read(&self) -> Usage {
        let mut open = self.open.lock();
        if open.complete {
            if let Some(u) = read_open(&open.files) {
                return u;
            }
        }
        *open = self.find();
        read_open(&open.files).unwrap_or_default()
    }

    /// Open the files that exist, one per figure and directory.
    fn find(&self) -> Found {
        let mut found = Found {
            files: Vec::new(),
            complete: true,
        };
        for d in &self.dirs {
            // One lookup for a cgroup that is not there (a function at zero), not eight.
            if !d.is_dir() {
                found.complete = false;
                continue;
            }
            let mut have: Vec<Figure> = Vec::new();
            for (name, figure) in FILES {
                if have.contains(&figure) {
                    continue;
                }
                if let Ok(f) = File::open(d.join(name)) {
                    have.push(figure);
                    found.files.push((figure, f));
                }
            }
        }
        found
    }
}

/// `None` when a file could not be read (its cgroup is gone).
fn read_open(open: &[(Figure, File)]) -> Option<Usage> {
    let mut u = Usage::default();
    let mut buf = [0u8; 4096];
    for (figure, f) in open {
        let n = f.read_at(&mut buf, 0).ok()?;
        let text = std::str::from_utf8(&buf[..n]).ok()?;
        match figure {
            Figure::Memory => u.memory_bytes = text.trim().parse().ok()?,
            Figure::MemoryPeak => u.memory_peak_bytes = text.trim().parse().ok()?,
            Figure::CpuUsage => u.cpu_usage_ns = text.trim().parse().ok()?,
            Figure::OomKills => {
                if let Some((_, v)) = keyed(text).find(|(k, _)| *k == "oom_kill") {
                    u.oom_kills = v;
                }
            }
            Figure::CpuStat => apply_cpu_stat(&mut u, text),
        }
    }
    Some(u)
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
    fn a_reader_keeps_its_files_and_finds_a_cgroup_that_appears() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("fn-v1");
        let reader = UsageReader::new(vec![dir.clone()]);
        // At zero: no cgroup, every figure 0.
        assert_eq!(reader.read(), Usage::default());
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("memory.current"), "4096\n").unwrap();
        std::fs::write(dir.join("cpu.stat"), "usage_usec 10\n").unwrap();
        assert_eq!(reader.read().memory_bytes, 4096);
        // The same open file, read again from offset 0, gives the new text.
        let f = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(dir.join("memory.current"))
            .unwrap();
        std::io::Write::write_all(&mut &f, b"8192\n").unwrap();
        let u = reader.read();
        assert_eq!((u.memory_bytes, u.cpu_usage_ns), (8192, 10_000));
    }

    #[test]
    fn a_hierarchy_made_after_the_first_read_is_found() {
        // v1 makes a cgroup one hierarchy at a time; a read can fall in between.
        let root = tempfile::tempdir().unwrap();
        let (mem, cpu) = (root.path().join("memory"), root.path().join("cpuacct"));
        let reader = UsageReader::new(vec![cpu.clone(), mem.clone()]);
        std::fs::create_dir(&mem).unwrap();
        std::fs::write(mem.join("memory.usage_in_bytes"), "4096\n").unwrap();
        assert_eq!(reader.read().memory_bytes, 4096);
        std::fs::create_dir(&cpu).unwrap();
        std::fs::write(cpu.join("cpuacct.usage"), "77\n").unwrap();
        let u = reader.read();
        assert_eq!((u.memory_bytes, u.cpu_usage_ns), (4096, 77));
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
