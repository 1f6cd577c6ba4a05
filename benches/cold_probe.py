#!/usr/bin/env python3
"""Cold-start probe: a private copy of a function (echo by default, its shipped manifest
with scale_to_zero_after = 1s), one request 0.3 s after its sandbox process is gone, timed at
the client. For conditions the harness does not make: another quota, dropped page cache,
several CPU hogs. Prints one JSON line.

  python3 benches/cold_probe.py target/release/surge ROUNDS [hog]
  env: FN=hello (another example), CPU=50m (its quota), HOGS=3 (busy loops, with `hog`),
       DROP=1 (drop the page cache before each start; root)"""
import http.client
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

surge, rounds = sys.argv[1], int(sys.argv[2])
hog = len(sys.argv) > 3 and sys.argv[3] == "hog"
root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
work = tempfile.mkdtemp(prefix="cold-")
FN = os.environ.get("FN", "echo")
fd = os.path.join(work, "functions", "cold" + FN)
os.makedirs(fd)
shutil.copy(os.path.join(root, f"functions/{FN}/{FN}.wasm"), fd)
m = open(os.path.join(root, f"functions/{FN}/function.toml")).read()
m = m.replace(f'name = "{FN}"', f'name = "cold{FN}"').replace(f'route = "/{FN}"', f'route = "/cold{FN}"')
if "CPU" in os.environ:
    m = m.replace('cpu = "250m"', f'cpu = "{os.environ["CPU"]}"')
m = m.replace('[scaling]', '[scaling]\nscale_to_zero_after = "1s"')
open(os.path.join(fd, "function.toml"), "w").write(m)
s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
cfg = os.path.join(work, "surge.toml")
open(cfg, "w").write(f'cache_dir = "{root}/target/bench-cache"\n[cgroup]\nsubtree = "surge-cold-{os.getpid()}"\n')
log = open(os.path.join(work, "host.log"), "w")
env = dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "surge=debug"))
p = subprocess.Popen([surge, "serve", "--config", cfg, "--listen", f"127.0.0.1:{port}",
                      "--state-dir", os.path.join(work, "state"), "--functions-dir", os.path.join(work, "functions")],
                     stdout=log, stderr=log, env=env)
def children():
    # The sandboxes: children of the host's fork server (itself the host's child), but not
    # its spare, which belongs to no function.
    zygotes = subprocess.run(["pgrep", "-P", str(p.pid)], capture_output=True, text=True).stdout.split()
    out = []
    for z in zygotes:
        for c in subprocess.run(["pgrep", "-P", z], capture_output=True, text=True).stdout.split():
            try:
                if open(f"/proc/{c}/comm").read().strip() != "surge-spare":
                    out.append(c)
            except OSError:
                pass
    return out
def post():
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.request("POST", f"/cold{FN}", body=b'{"cold":1}')
    r = c.getresponse(); r.read(); c.close(); return r.status
deadline = time.time() + 120
while True:
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=2); c.request("GET", "/healthz"); c.getresponse().read(); break
    except Exception:
        time.sleep(0.05)
while "ready:" not in open(os.path.join(work, "host.log")).read():
    time.sleep(0.05)
nhogs = int(os.environ.get("HOGS", "1"))
hogp = [subprocess.Popen(["python3", "-c", "while True: pass"]) for _ in range(nhogs)] if hog else []
times = []
for i in range(rounds):
    while children():
        time.sleep(0.02)
    time.sleep(0.3)
    if os.environ.get("DROP"): open("/proc/sys/vm/drop_caches","w").write("3")
    t0 = time.perf_counter(); st = post(); dt = (time.perf_counter() - t0) * 1e3
    assert st == 200, st
    times.append(dt)
for h in hogp: h.kill()
p.terminate(); p.wait()
text = re.sub(r"\x1b\[[0-9;]*m", "", open(os.path.join(work, "host.log")).read())
ready = [int(x) / 1000 for x in re.findall(r"start_to_ready_us=(\d+)", text)]
ts = sorted(times)
print(json.dumps({"hog": hog, "client_ms": [round(t, 1) for t in times], "p50": round(statistics.median(ts), 1),
                  "max": round(ts[-1], 1), "start_to_ready_ms": ready}))
shutil.copy(os.path.join(work, "host.log"), "/tmp/cold-host.log") if os.environ.get("KEEP_LOG") else None
shutil.rmtree(work, ignore_errors=True)
