#!/usr/bin/env python3
"""How long a freshly forked child takes to enter a cgroup by writing "0" into
`cgroup.procs` (the whole thread group: takes cgroup_threadgroup_rwsem, which waits for an
RCU grace period) against `tasks` (cgroup v1, one thread: skips that lock). The sandbox
spawn uses `tasks` on v1 for this reason (BENCHMARKS.md, "Cold start from zero").

    python3 benches/cgroup_migration.py [ROUNDS]     # as root, on cgroup v1

It creates and removes one cgroup under the cpu hierarchy of its own cgroup.
"""
import os
import statistics
import sys
import time


def own_cpu_cgroup():
    for line in open("/proc/self/cgroup"):
        _, ctrls, path = line.rstrip("\n").split(":", 2)
        if "cpu" in ctrls.split(","):
            return os.path.join("/sys/fs/cgroup/cpu", path.lstrip("/"))
    sys.exit("no cpu controller in /proc/self/cgroup (this compares cgroup v1 files)")


def migrate(path, rounds):
    times = []
    for _ in range(rounds):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            t = time.perf_counter()
            fd = os.open(path, os.O_WRONLY)
            os.write(fd, b"0")
            os.close(fd)
            os.write(w, str((time.perf_counter() - t) * 1e3).encode())
            os._exit(0)
        os.close(w)
        times.append(float(os.read(r, 64)))
        os.close(r)
        os.waitpid(pid, 0)
        time.sleep(0.3)  # longer than an RCU grace period: every round starts cold
    times.sort()
    return statistics.median(times), times[-1]


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    d = os.path.join(own_cpu_cgroup(), f"surge-migration-bench-{os.getpid()}")
    os.mkdir(d)
    try:
        for f in ("cgroup.procs", "tasks"):
            med, worst = migrate(os.path.join(d, f), rounds)
            print(f"{f:<13} median {med:.2f} ms  max {worst:.2f} ms  ({rounds} rounds)")
    finally:
        os.rmdir(d)


if __name__ == "__main__":
    main()
