#!/usr/bin/env python3
"""Side-by-side benchmarks: surge against the reference hosts, on the same .wasm files,
alternating target by target in one run. Writes results.json and results.md.

Run it through benches/run.sh, which installs the tools and builds everything first:

    bash benches/run.sh                 # the full run: 3 rounds of 10 s, 100 functions
    bash benches/run.sh --smoke         # one short round of each scenario (what CI runs)
    python3 benches/harness.py --check target/bench/results.json

Scenarios (names are the JSON keys):
  warm_http   hello (Python wasi:http) with wrk at 16 connections (closed loop), then oha at a
              fixed offered rate of half the reference's peak (open loop, latency measured from
              each request's scheduled time, so no coordinated omission).
              surge twice: the tuned manifest (min_instances = 2, cpu = 1000m), and every example
              function deployed with the manifests as shipped (surge_shipped: what a user gets).
              References: `wasmtime serve -S cli=y` with --max-instance-reuse-count 1000, and
              with its default of one instance per request.
  event       echo (C, WASI preview1) through the Lambda Invoke API at 16 connections, against
              `wasmtime run` of the same module, precompiled, one process per event.
  async_queue echo as shipped through the Invoke API with X-Amz-Invocation-Type: Event: events
              accepted per second into the durable queue and the 202's latency, against
              synchronous invocations of echo and the disk's fsyncs per second in the same run,
              and the rate the queue delivers them at.
  cold_start  a request to a function scaled to zero (no sandbox process, no cgroup) until its
              answer, at the client, against the spawn of `wasmtime serve --allow-precompiled`
              to its first 200 (hello), and one whole `wasmtime run` (echo).
  cold_start_busy
              echo's cold start as above, on a busy node: a CPU hog (a Python busy loop, one
              process) saturates a core the whole time, outside surge's cgroups, as a build
              or a neighbour would; the reference `wasmtime run` meets the same hog.
  reaction    a 10x step in closed-loop clients on echo: how long until the pool serves the
              new load with no request queued for a whole second.
  memory      RSS and PSS from /proc of the host and every sandbox, with 1 and N copies of
              hello deployed and warm, against one `wasmtime serve` per function.
  density     N copies of echo (1000 in the full run), each warm with one instance at its
              vertical floor (memory = 16Mi, echo's floor), deployed from functions_dir at
              start: the time to ready, the node ledger, host and sandbox memory, the node's
              CPU while all idle, and open-loop latency of requests each to a random copy,
              against the same load on one copy in the same run.
  vertical    in-place resizes: the time from a resize decision to the cgroup files holding
              the new limits (manual resizes through the admin API, timed by the host, and
              checked in the files), with the sandbox's pid and restarts; and spin's
              throughput at cpu = 100m before and after the recommender's automatic raise.

Only the standard library: the harness must run before anything else is installed.
"""

import argparse
import concurrent.futures
import http.client
import json
import math
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCHEMA = 10
SCENARIOS = ("warm_http", "event", "async_queue", "inference", "cold_start", "cold_start_busy", "reaction", "memory",
             "density", "vertical", "records", "cluster")
HOG = "a Python busy loop (`while True: pass`), one process, outside surge's cgroups"
LAMBDA_PATH = "/2015-03-31/functions/{}/invocations"


# ---------------------------------------------------------------------------------------------
# Processes and probes


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Proc:
    """A server started by the harness, killed (with its process group) on exit."""

    live = []

    def __init__(self, argv, log, env=None):
        self.log = open(log, "w")
        self.started = time.perf_counter()
        self.p = subprocess.Popen(
            argv, stdout=self.log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        Proc.live.append(self)

    @property
    def pid(self):
        return self.p.pid

    def stop(self):
        if self.p.poll() is None:
            # SIGTERM lets surge stop its sandboxes and remove its cgroups.
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.p.pid, signal.SIGKILL)
                self.p.wait()
        self.log.close()
        if self in Proc.live:
            Proc.live.remove(self)

    @classmethod
    def stop_all(cls):
        for p in list(cls.live):
            p.stop()


def request(port, path, body=None, timeout=30):
    """One request on a fresh connection: (status, body bytes), or (None, error)."""
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        c.request("POST" if body is not None else "GET", path, body=body)
        r = c.getresponse()
        data = r.read()
        c.close()
        return r.status, data
    except OSError as e:
        return None, str(e).encode()


def wait_for_200(port, path, body=None, deadline_s=300, proc=None):
    """Poll every millisecond until path answers 200. Returns seconds since the call."""
    t0 = time.perf_counter()
    while True:
        status, data = request(port, path, body, timeout=60)
        if status == 200:
            return time.perf_counter() - t0
        if proc is not None and proc.p.poll() is not None:
            raise RuntimeError(f"{proc.p.args[0]} exited ({proc.p.returncode}) before {path} answered")
        if time.perf_counter() - t0 > deadline_s:
            raise RuntimeError(f"{path} on port {port} did not answer 200 in {deadline_s} s: {status} {data[:200]!r}")
        time.sleep(0.001)


def wait_for_line(path, prefix, proc, deadline_s=300):
    t0 = time.perf_counter()
    while True:
        with open(path) as f:
            for line in f:
                if line.startswith(prefix):
                    if "ready:" in prefix and not line.strip().endswith(", 0 failed"):
                        raise RuntimeError(f"surge started with failures: {line.strip()}; see {path}")
                    return line.strip()
        if proc.p.poll() is not None:
            raise RuntimeError(f"{proc.p.args[0]} exited ({proc.p.returncode}); see {path}")
        if time.perf_counter() - t0 > deadline_s:
            raise RuntimeError(f"no {prefix!r} line in {path} after {deadline_s} s")
        time.sleep(0.002)


def _children():
    children = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(d))
    return children


def descendants(pid):
    """pid and every process below it, from /proc/*/stat."""
    children = _children()
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def comm(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return None


def sandboxes_of(host_pid):
    """A surge host's sandbox processes: the children of its fork server (the host's own
    child), not the fork server itself nor its spare (a child forked ahead of need, which
    belongs to no function)."""
    children = _children()
    return [s for z in children.get(host_pid, []) for s in children.get(z, [])
            if comm(s) != "surge-spare"]


def memory_of(pids):
    """Summed RSS and PSS in KiB. PSS splits shared pages (the mapped artifact, libraries)
    among the processes that map them, so it does not count them once per process."""
    rss = pss = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                for line in f:
                    k, v = line.split(":", 1)
                    if k == "Rss":
                        rss += int(v.split()[0])
                    elif k == "Pss":
                        pss += int(v.split()[0])
        except OSError:
            pass
    return {"rss_kib": rss, "pss_kib": pss, "processes": len(pids)}


# ---------------------------------------------------------------------------------------------
# Load generators


WRK_LUA = r"""
local body = os.getenv("WRK_BODY")
if body and body ~= "" then
  wrk.method = "POST"
  wrk.body = body
  wrk.headers["Content-Type"] = "application/json"
end
done = function(s, latency, requests)
  local e = s.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d,"max_us":%d,"non2xx":%d,"socket_errors":%d}\n',
    s.requests, s.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9), latency.max,
    e.status, e.connect + e.read + e.write + e.timeout))
end
"""


def wrk(tools, url, seconds, connections, lua, body=None, headers=()):
    env = dict(os.environ, WRK_BODY=body or "")
    hs = [x for h in headers for x in ("-H", h)]
    out = subprocess.run(
        [tools["wrk"], "-t2", f"-c{connections}", f"-d{seconds}s", *hs, "-s", lua, url],
        capture_output=True, text=True, env=env, timeout=seconds + 60,
    )
    line = next((l for l in out.stdout.splitlines() if l.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result for {url}: {out.stdout[-500:]} {out.stderr[-500:]}")
    r = json.loads(line[len("WRKJSON "):])
    secs = r["duration_us"] / 1e6
    ok = r["requests"] - r["non2xx"]
    return {
        "rps": ok / secs,
        "p50_ms": r["p50_us"] / 1e3,
        "p90_ms": r["p90_us"] / 1e3,
        "p99_ms": r["p99_us"] / 1e3,
        "p999_ms": r["p999_us"] / 1e3,
        "max_ms": r["max_us"] / 1e3,
        "requests": r["requests"],
        "errors": r["non2xx"] + r["socket_errors"],
    }


def oha(tools, url, seconds, rate, connections=64, body=None, urls_file=None):
    """Open loop: oha sends at `rate` per second whatever the server does, and with
    --latency-correction each latency runs from the request's scheduled start. With
    `urls_file`, each request goes to a random line of it."""
    target = ["--urls-from-file", urls_file] if urls_file else [url]
    post = ["-m", "POST", "-d", body] if body is not None else []
    out = subprocess.run(
        [tools["oha"], "--no-tui", "--output-format", "json", "-z", f"{seconds}s",
         "-q", str(rate), "--latency-correction", "-w", "-c", str(connections), *post, *target],
        capture_output=True, text=True, timeout=seconds + 60,
    )
    if out.returncode != 0:
        raise RuntimeError(f"oha failed on {url}: {out.stderr[-800:]}")
    r = json.loads(out.stdout)
    s, p = r["summary"], r["latencyPercentiles"]
    codes = r.get("statusCodeDistribution", {})
    ok = codes.get("200", 0)
    total = sum(codes.values())
    errors = sum(r.get("errorDistribution", {}).values()) + (total - ok)
    return {
        "offered_rps": rate,
        "achieved_rps": ok / s["total"] if s["total"] else 0.0,
        "p50_ms": p["p50"] * 1e3,
        "p90_ms": p["p90"] * 1e3,
        "p99_ms": p["p99"] * 1e3,
        "p999_ms": p["p99.9"] * 1e3,
        "max_ms": s["slowest"] * 1e3,
        "requests": total,
        "errors": errors,
    }


def process_per_event(argv, payload, seconds, workers, expect=None):
    """The naive host: one `wasmtime run` process per event, `workers` at a time. An answer
    other than `expect` (by default the payload: an echo) counts as an error."""
    expect = payload if expect is None else expect
    deadline = time.perf_counter() + seconds
    lat, errors = [], [0]

    def worker():
        mine = []
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            r = subprocess.run(argv, input=payload, capture_output=True)
            mine.append(time.perf_counter() - t0)
            if r.returncode != 0 or r.stdout != expect:
                errors[0] += 1
        return mine

    t0 = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(workers) as ex:
        for f in [ex.submit(worker) for _ in range(workers)]:
            lat.extend(f.result())
    elapsed = time.perf_counter() - t0
    lat.sort()
    return {
        "rps": (len(lat) - errors[0]) / elapsed,
        "p50_ms": pct(lat, 50) * 1e3,
        "p90_ms": pct(lat, 90) * 1e3,
        "p99_ms": pct(lat, 99) * 1e3,
        "p999_ms": pct(lat, 99.9) * 1e3,
        "max_ms": lat[-1] * 1e3,
        "requests": len(lat),
        "errors": errors[0],
    }


def pct(sorted_values, q):
    if not sorted_values:
        return float("nan")
    i = min(len(sorted_values) - 1, max(0, math.ceil(q / 100 * len(sorted_values)) - 1))
    return sorted_values[i]


def medians(rounds):
    """Per-key median of a list of result dicts (numbers only), plus every round."""
    keys = rounds[0].keys()
    m = {k: statistics.median(r[k] for r in rounds) for k in keys}
    m["errors"] = sum(r["errors"] for r in rounds)
    m["rounds"] = rounds
    return m


def ratio(a, b):
    return round(a / b, 3) if b else None


# ---------------------------------------------------------------------------------------------
# Fixtures


class Bench:
    def __init__(self, args, tools):
        self.args = args
        self.tools = tools
        self.work = tempfile.mkdtemp(prefix="surge-bench-")
        self.cache = os.path.join(ROOT, "target", "bench-cache")
        os.makedirs(self.cache, exist_ok=True)
        self.surge = os.path.join(ROOT, "target", "release", "surge")
        self.lua = os.path.join(self.work, "json.lua")
        with open(self.lua, "w") as f:
            f.write(WRK_LUA)
        self.wasm = {n: os.path.join(ROOT, "functions", n, f"{n}.wasm")
                     for n in ("hello", "echo", "spin", "loop", "memhog", "classify")}
        self.cwasm = {}
        for n in ("hello", "echo", "classify"):
            w = self.wasm[n]
            self.cwasm[n] = os.path.join(self.work, f"{n}.cwasm")
            subprocess.run([tools["wasmtime"], "compile", w, "-o", self.cwasm[n]], check=True)

    def functions_dir(self, tag, specs):
        """specs: [(name, source function, {manifest key: new line})]. The .wasm is hard-linked,
        not copied: 100 copies of an 18 MB component would otherwise cost 1.8 GB of disk."""
        d = os.path.join(self.work, tag, "functions")
        for name, src, edits in specs:
            fd = os.path.join(d, name)
            os.makedirs(fd)
            os.link(self.wasm[src], os.path.join(fd, f"{src}.wasm"))
            with open(os.path.join(ROOT, "functions", src, "function.toml")) as f:
                lines = f.read().splitlines()
            out = []
            for line in lines:
                key = line.split("=", 1)[0].strip()
                out.append(edits.get(key, line))
            with open(os.path.join(fd, "function.toml"), "w") as f:
                f.write("\n".join(out) + "\n")
        return d

    def start_surge(self, tag, functions, state=None, extra=""):
        port = free_port()
        base = os.path.join(self.work, tag)
        os.makedirs(base, exist_ok=True)
        state = state or os.path.join(base, "state")
        config = os.path.join(base, "surge.toml")
        with open(config, "w") as f:
            # The compile cache outlives the run: a restart of the harness never recompiles.
            # A cgroup subtree of its own: a `surge serve` already running on this machine
            # (the default subtree) must not meet the harness's sandboxes.
            f.write(f'cache_dir = "{self.cache}"\n{extra}\n[cgroup]\nsubtree = "surge-bench-{os.getpid()}-{tag}"\n')
        log = os.path.join(base, f"surge-{len(os.listdir(base))}.log")
        p = Proc([self.surge, "serve", "--config", config, "--listen", f"127.0.0.1:{port}",
                  "--state-dir", state, "--functions-dir", functions], log)
        return p, port, log

    def start_wasmtime_serve(self, tag, component, extra=()):
        port = free_port()
        log = os.path.join(self.work, f"{tag}-{port}.log")
        p = Proc([self.tools["wasmtime"], "serve", "-S", "cli=y", *extra,
                  "--addr", f"127.0.0.1:{port}", component], log)
        return p, port, log


# The example functions, deployed as they ship for the "what a user gets" figures.
SHIPPED = ("hello", "echo", "spin", "loop", "memhog")


def hello_bench_specs(name="hello"):
    # Two warm instances with a core each: the cgroup lets surge use both cores, as
    # wasmtime serve (which has no limits) can. The sandbox, its cgroup and its limits stay on.
    return [(name, "hello", {"min_instances": "min_instances = 2", "cpu": 'cpu = "1000m"'})]


# ---------------------------------------------------------------------------------------------
# Scenarios


def warm_http(b):
    a = b.args
    fdir = b.functions_dir("warm", hello_bench_specs())
    surge, sport, slog = b.start_surge("warm", fdir)
    wait_for_line(slog, "ready:", surge)
    # What a user gets: every example function deployed with the manifests as shipped.
    shipped_dir = b.functions_dir("shipped", [(n, n, {}) for n in SHIPPED])
    shipped, hport, hlog = b.start_surge("shipped", shipped_dir)
    wait_for_line(hlog, "ready:", shipped)
    wt, wport, _ = b.start_wasmtime_serve("wt-reuse", b.cwasm["hello"],
                                          ["--allow-precompiled", "--max-instance-reuse-count", "1000"])
    wd, dport, _ = b.start_wasmtime_serve("wt-default", b.cwasm["hello"], ["--allow-precompiled"])
    targets = {"surge": sport, "surge_shipped": hport, "wasmtime_serve_reuse1000": wport,
               "wasmtime_serve_default": dport}
    for port in targets.values():
        wait_for_200(port, "/hello")
    servers = {"surge": surge, "surge_shipped": shipped, "wasmtime_serve_reuse1000": wt,
               "wasmtime_serve_default": wd}
    hz = os.sysconf("SC_CLK_TCK")
    closed = {k: [] for k in targets}
    for r in range(a.rounds):
        for who, port in targets.items():
            # CPU the server spent per answered request: its whole process tree (for surge
            # the host, its fork server and the sandboxes), user + system.
            tree = descendants(servers[who].pid)
            c0 = cpu_ticks(tree)
            res = wrk(b.tools, f"http://127.0.0.1:{port}/hello", a.seconds, 16, b.lua)
            ok = res["requests"] - res["errors"]
            res["server_cpu_us_per_request"] = (cpu_ticks(tree) - c0) * 1e6 / hz / max(1, ok)
            closed[who].append(res)
            log(f"warm_http round {r + 1} {who}: {res['rps']:.0f} req/s, p99 {res['p99_ms']:.2f} ms, "
                f"server CPU {res['server_cpu_us_per_request']:.1f} us/request")
    closed = {k: medians(v) for k, v in closed.items()}
    # Half the reference's peak, offered open loop to surge and to the reference alike.
    rate = max(10, int(closed["wasmtime_serve_reuse1000"]["rps"] * 0.5))
    opened = {"surge": [], "wasmtime_serve_reuse1000": []}
    for r in range(a.rounds):
        for who in opened:
            res = oha(b.tools, f"http://127.0.0.1:{targets[who]}/hello", a.seconds, rate)
            opened[who].append(res)
            log(f"warm_http open loop {rate}/s round {r + 1} {who}: p99 {res['p99_ms']:.2f} ms")
    opened = {k: medians(v) for k, v in opened.items()}
    for p in (surge, shipped, wt, wd):
        p.stop()
    s, ref = closed["surge"], closed["wasmtime_serve_reuse1000"]
    return {
        "function": "hello",
        "closed_loop": {"tool": f"wrk -t2 -c16 -d{a.seconds}s", "concurrency": 16, **closed},
        "open_loop": {"tool": f"oha -q {rate} --latency-correction -c 64 -z {a.seconds}s",
                      "offered_rps": rate, **opened},
        "ratios": {
            "rps_vs_reuse1000": ratio(s["rps"], ref["rps"]),
            "shipped_rps_vs_reuse1000": ratio(closed["surge_shipped"]["rps"], ref["rps"]),
            "rps_vs_default": ratio(s["rps"], closed["wasmtime_serve_default"]["rps"]),
            "p99_vs_reuse1000": ratio(s["p99_ms"], ref["p99_ms"]),
            "server_cpu_per_request_vs_reuse1000": ratio(s["server_cpu_us_per_request"],
                                                         ref["server_cpu_us_per_request"]),
            "shipped_server_cpu_per_request_vs_reuse1000": ratio(
                closed["surge_shipped"]["server_cpu_us_per_request"],
                ref["server_cpu_us_per_request"]),
            "open_loop_p99_vs_reuse1000": ratio(opened["surge"]["p99_ms"],
                                                opened["wasmtime_serve_reuse1000"]["p99_ms"]),
        },
    }


def event(b):
    a = b.args
    payload = b'{"key":"value","n":1}'
    fdir = b.functions_dir("event", [("echo", "echo", {"min_instances": "min_instances = 2", "cpu": 'cpu = "1000m"'})])
    surge, sport, slog = b.start_surge("event", fdir)
    wait_for_line(slog, "ready:", surge)
    path = LAMBDA_PATH.format("echo")
    wait_for_200(sport, path, payload)
    argv = [b.tools["wasmtime"], "run", "--allow-precompiled", b.cwasm["echo"]]
    runs = {"surge": [], "wasmtime_run_per_event": []}
    for r in range(a.rounds):
        res = wrk(b.tools, f"http://127.0.0.1:{sport}{path}", a.seconds, 16, b.lua, payload.decode())
        runs["surge"].append(res)
        log(f"event round {r + 1} surge: {res['rps']:.0f} events/s")
        res = process_per_event(argv, payload, a.seconds, 16)
        runs["wasmtime_run_per_event"].append(res)
        log(f"event round {r + 1} wasmtime run: {res['rps']:.0f} events/s")
    surge.stop()
    runs = {k: medians(v) for k, v in runs.items()}
    return {
        "function": "echo",
        "tool": f"surge: wrk -t2 -c16 -d{a.seconds}s POST {path}; reference: 16 workers, "
                "each running `wasmtime run --allow-precompiled echo.cwasm` per event",
        **runs,
        "ratios": {
            "rps": ratio(runs["surge"]["rps"], runs["wasmtime_run_per_event"]["rps"]),
            "p50": ratio(runs["surge"]["p50_ms"], runs["wasmtime_run_per_event"]["p50_ms"]),
        },
    }


def records(b):
    """What invocation records cost a request: one binary, two hosts, the same functions as
    shipped, one with `[logs] records = true` (the default) and one with `false`, loaded in
    alternating rounds: warm `hello` on its route and `echo` through the Invoke API (the
    lightest request, where a record weighs most), then the same with a busy loop on a core."""
    a = b.args
    fdir = b.functions_dir("records", [("hello", "hello", {}), ("echo", "echo", {})])
    hosts = {}
    for who, on in (("records_on", "true"), ("records_off", "false")):
        p, port, lg = b.start_surge(f"records-{who}", fdir, extra=f"[logs]\nrecords = {on}\n")
        wait_for_line(lg, "ready:", p)
        hosts[who] = (p, port)
    payload = '{"key":"value","n":1}'
    targets = {"hello": ("/hello", None), "echo": (LAMBDA_PATH.format("echo"), payload)}
    for _, port in hosts.values():
        for path, body in targets.values():
            wait_for_200(port, path, body.encode() if body else None)
    hz = os.sysconf("SC_CLK_TCK")
    out = {}
    for busy in (False, True):
        hog = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
        try:
            for fn, (path, body) in targets.items():
                runs = {who: [] for who in hosts}
                for r in range(a.rounds):
                    for who, (p, port) in hosts.items():
                        tree = descendants(p.pid)
                        c0 = cpu_ticks(tree)
                        res = wrk(b.tools, f"http://127.0.0.1:{port}{path}", a.seconds, 16, b.lua, body)
                        ok = res["requests"] - res["errors"]
                        res["server_cpu_us_per_request"] = (cpu_ticks(tree) - c0) * 1e6 / hz / max(1, ok)
                        runs[who].append(res)
                        log(f"records {fn}{' busy' if busy else ''} round {r + 1} {who}: {res['rps']:.0f} req/s, "
                            f"p99 {res['p99_ms']:.2f} ms, {res['server_cpu_us_per_request']:.1f} us CPU/request")
                m = {k: medians(v) for k, v in runs.items()}
                on, off = m["records_on"], m["records_off"]
                out[f"{fn}{'_busy' if busy else ''}"] = {
                    **m,
                    "ratios": {"rps": ratio(on["rps"], off["rps"]), "p99": ratio(on["p99_ms"], off["p99_ms"]),
                               "server_cpu_per_request": ratio(on["server_cpu_us_per_request"],
                                                               off["server_cpu_us_per_request"])},
                }
        finally:
            if hog:
                hog.kill()
                hog.wait()
    # The records the loaded host kept: its bound holds, and how many were dropped.
    text = request(hosts["records_on"][1], "/metrics")[1].decode()
    figures = {}
    for line in text.splitlines():
        for k in ("surge_log_records", "surge_log_records_dropped_total", "surge_log_records_pruned_total"):
            if line.startswith(k + " "):
                figures[k] = float(line.split()[1])
    for p, _ in hosts.values():
        p.stop()
    return {"tool": f"wrk -t2 -c16 -d{a.seconds}s per host and function, hosts alternating", "runs": out,
            "store": figures}


ETCD = "/usr/bin/etcd"
CLUSTER_TOKEN = "bench-cluster-token"


def start_etcd(b, tag):
    """Three etcd members on loopback: their client URLs."""
    ports = [(free_port(), free_port()) for _ in range(3)]
    initial = ",".join(f"e{i}=http://127.0.0.1:{peer}" for i, (_, peer) in enumerate(ports))
    urls = []
    for i, (client, peer) in enumerate(ports):
        d = os.path.join(b.work, tag, f"e{i}")
        os.makedirs(d, exist_ok=True)
        Proc([ETCD, "--name", f"e{i}", "--data-dir", d,
              "--listen-client-urls", f"http://127.0.0.1:{client}",
              "--advertise-client-urls", f"http://127.0.0.1:{client}",
              "--listen-peer-urls", f"http://127.0.0.1:{peer}",
              "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
              "--initial-cluster", initial, "--initial-cluster-state", "new",
              "--initial-cluster-token", f"{tag}-{os.getpid()}",
              "--heartbeat-interval", "100", "--election-timeout", "1000"],
             os.path.join(b.work, tag, f"e{i}.log"))
        urls.append(f"http://127.0.0.1:{client}")
    deadline = time.time() + 30
    while time.time() < deadline:
        st, body = request(int(urls[0].rsplit(":", 1)[1]), "/v3/maintenance/status", b"{}")
        if st == 200 and b'"leader"' in body:
            return urls
        time.sleep(0.1)
    raise RuntimeError("etcd: no leader within 30 s")


def served_by(port, path, body):
    """(status, the x-surge-node header) of one request."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request("POST", path, body=body)
        r = c.getresponse()
        r.read()
        return r.status, r.getheader("x-surge-node")
    except OSError:
        return None, None
    finally:
        c.close()


def cluster(b):
    """Three surge nodes on a three-member etcd, all on this machine's two cores, against
    one node alone with the same functions as shipped: the cluster's overhead (forwarding,
    etcd), not scale. Then the time from a node's SIGKILL to the first request rerouted."""
    a = b.args
    if not os.access(ETCD, os.X_OK):
        return {"skipped": "etcd is not installed (scripts/test.sh installs Debian's etcd-server)"}
    fdir = b.functions_dir("cluster", [("hello", "hello", {}), ("echo", "echo", {})])
    single, sport, slog = b.start_surge("cluster-single", fdir)
    wait_for_line(slog, "ready:", single)
    urls = start_etcd(b, "cluster-etcd")
    env = dict(os.environ, SURGE_ADMIN_TOKEN=CLUSTER_TOKEN)
    nodes = []
    for i in range(3):
        port = free_port()
        base = os.path.join(b.work, f"cluster-n{i}")
        os.makedirs(base, exist_ok=True)
        config = os.path.join(base, "surge.toml")
        with open(config, "w") as f:
            f.write(f'cache_dir = "{b.cache}"\n[cgroup]\nsubtree = "surge-bench-{os.getpid()}-n{i}"\n'
                    f'[cluster]\netcd = {json.dumps(urls)}\nnode = "n{i}"\n')
        lg = os.path.join(base, "surge.log")
        p = Proc([b.surge, "serve", "--config", config, "--listen", f"127.0.0.1:{port}",
                  "--state-dir", os.path.join(base, "state"), "--functions-dir", fdir], lg, env=env)
        nodes.append((p, port, lg))
    for p, port, lg in nodes:
        wait_for_line(lg, "ready:", p)
    payload = '{"key":"value","n":1}'
    targets = {"hello": ("/hello", None), "echo": (LAMBDA_PATH.format("echo"), payload)}
    for port in [sport] + [n[1] for n in nodes]:
        for path, body in targets.values():
            wait_for_200(port, path, body.encode() if body else None)
    out = {}
    conns = 18
    for fn, (path, body) in targets.items():
        runs = {"single": [], "cluster": []}
        for r in range(a.rounds):
            res = wrk(b.tools, f"http://127.0.0.1:{sport}{path}", a.seconds, conns, b.lua, body)
            runs["single"].append(res)
            # One wrk per node, a third of the connections each, at once.
            with concurrent.futures.ThreadPoolExecutor(3) as ex:
                parts = list(ex.map(lambda n: wrk(b.tools, f"http://127.0.0.1:{n[1]}{path}", a.seconds,
                                                  conns // 3, b.lua, body), nodes))
            total = {"rps": sum(x["rps"] for x in parts), "requests": sum(x["requests"] for x in parts),
                     "errors": sum(x["errors"] for x in parts), "p99_ms": max(x["p99_ms"] for x in parts)}
            runs["cluster"].append(total)
            log(f"cluster {fn} round {r + 1}: single {res['rps']:.0f} req/s, 3 nodes {total['rps']:.0f} req/s")
        m = {k: medians(v) for k, v in runs.items()}
        out[fn] = {**m, "ratio_rps": ratio(m["cluster"]["rps"], m["single"]["rps"])}
    single.stop()
    # Death to reroute: a client on one node sends to echo's home, another node, which is
    # SIGKILLed; the first answer after the kill that another node served is the reroute.
    path, body = targets["echo"][0], payload.encode()
    st, home = served_by(nodes[0][1], path, body)
    victim = next(n for n in nodes if f"n{nodes.index(n)}" == home)
    entry = next(n for n in nodes if n is not victim)
    warm_until = time.perf_counter() + 1.0
    while time.perf_counter() < warm_until:
        served_by(entry[1], path, body)
    os.killpg(victim[0].pid, signal.SIGKILL)
    killed = time.perf_counter()
    reroute_ms, failed = None, 0
    while time.perf_counter() - killed < 10:
        st, by = served_by(entry[1], path, body)
        if st == 200 and by != home:
            reroute_ms = (time.perf_counter() - killed) * 1000
            break
        failed += st != 200
    victim[0].p.wait()
    if victim in Proc.live:
        victim[0].log.close()
        Proc.live.remove(victim[0])
    for p, _, _ in nodes:
        if p.p.poll() is None:
            p.stop()
    return {"tool": f"wrk -t2, {conns} connections: one wrk on the single node; one wrk of {conns // 3} "
                    f"connections per node at once on the cluster", "runs": out,
            "reroute_ms": reroute_ms, "failed_during_reroute": failed}


def fsync_rate(directory, seconds):
    """The disk's own rate of small durable writes where the host keeps its queue: 64-byte
    writes, each followed by fsync, for `seconds`."""
    path = os.path.join(directory, ".fsync-probe")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    n, t0 = 0, time.time()
    try:
        while time.time() - t0 < seconds:
            os.write(fd, b"x" * 64)
            os.fsync(fd)
            n += 1
    finally:
        os.close(fd)
        os.unlink(path)
    return n / (time.time() - t0)


def queue_of(state, port, fn):
    st = admin_get(state, port, "/admin/v1/status")
    return next((q for q in st.get("queues", []) if q["function"] == fn), {})


def async_queue(b):
    """`echo` as shipped, invoked with `X-Amz-Invocation-Type: Event`, 16 at a time: events
    accepted per second into the durable queue and the latency of their 202 (each event is
    fsynced before it), against synchronous invocations of the same function in the same run
    and the disk's own fsyncs per second; then how long the queue takes to deliver them all."""
    a = b.args
    payload = '{"key":"value","n":1}'
    fdir = b.functions_dir("async", [("echo", "echo", {})])
    surge, sport, slog = b.start_surge("async", fdir)
    wait_for_line(slog, "ready:", surge)
    state = os.path.join(b.work, "async", "state")
    path = LAMBDA_PATH.format("echo")
    url = f"http://127.0.0.1:{sport}{path}"
    wait_for_200(sport, path, payload.encode())
    runs = {"sync": [], "event": []}
    fsyncs = []
    accepted_total = 0
    for r in range(a.rounds):
        fsyncs.append({"fsyncs_per_s": fsync_rate(state, 1.0), "errors": 0})
        res = wrk(b.tools, url, a.seconds, 16, b.lua, payload)
        runs["sync"].append(res)
        before = queue_of(state, sport, "echo").get("succeeded", 0)
        t0 = time.time()
        res = wrk(b.tools, url, a.seconds, 16, b.lua, payload, headers=["X-Amz-Invocation-Type: Event"])
        intake_s = time.time() - t0
        accepted = res["requests"] - res["errors"]
        accepted_total += accepted
        deadline = time.time() + 600
        while True:
            q = queue_of(state, sport, "echo")
            if q.get("queued", 1) == 0 and q.get("in_flight", 1) == 0:
                break
            if time.time() > deadline:
                raise RuntimeError(f"async_queue: the queue did not drain: {q}")
            time.sleep(0.05)
        res["drain_s"] = time.time() - t0
        res["delivered"] = q["succeeded"] - before
        res["delivered_per_s"] = res["delivered"] / res["drain_s"]
        res["backlog_after_intake_s"] = res["drain_s"] - intake_s
        runs["event"].append(res)
        log(f"async_queue round {r + 1}: sync {runs['sync'][-1]['rps']:.0f}/s, events accepted "
            f"{res['rps']:.0f}/s (p99 {res['p99_ms']:.2f} ms), delivered {res['delivered_per_s']:.0f}/s, "
            f"disk {fsyncs[-1]['fsyncs_per_s']:.0f} fsyncs/s")
    final = queue_of(state, sport, "echo")
    surge.stop()
    out = {k: medians(v) for k, v in runs.items()}
    disk = medians(fsyncs)
    return {
        "function": "echo",
        "tool": f"wrk -t2 -c16 -d{a.seconds}s POST {path}, with and without "
                "X-Amz-Invocation-Type: Event; the disk: 64-byte write + fsync in a loop, 1 s",
        **out,
        "disk": disk,
        "accepted_total": accepted_total,
        "succeeded_total": final.get("succeeded", 0),
        "dead_letters": final.get("dead_letters", 0),
        "ratios": {
            "accepted_vs_sync_rps": ratio(out["event"]["rps"], out["sync"]["rps"]),
            "accepted_vs_disk_fsyncs": ratio(out["event"]["rps"], disk["fsyncs_per_s"]),
            "p99_202_vs_sync_p99": ratio(out["event"]["p99_ms"], out["sync"]["p99_ms"]),
            "delivered_vs_sync_rps": ratio(out["event"]["delivered_per_s"], out["sync"]["rps"]),
        },
    }


def inference(b):
    """`classify`, a neural network on 8x8 digits (functions/classify): images per second at
    batches of 1 and 50 held-back images, through the Invoke API, 16 at a time, against one
    `wasmtime run` of the precompiled module per event."""
    a = b.args
    with open(os.path.join(ROOT, "functions", "classify", "build", "test.json")) as f:
        images = json.load(f)["images"]
    fdir = b.functions_dir("inference", [("classify", "classify", {
        "min_instances": "min_instances = 2", "cpu": 'cpu = "1000m"'})])
    surge, sport, slog = b.start_surge("inference", fdir)
    wait_for_line(slog, "ready:", surge)
    path = LAMBDA_PATH.format("classify")
    argv = [b.tools["wasmtime"], "run", "--allow-precompiled", b.cwasm["classify"]]
    out = {"function": "classify",
           "tool": f"surge: wrk -t2 -c16 -d{a.seconds}s POST {path}; reference: 16 workers, "
                   "each running `wasmtime run --allow-precompiled classify.cwasm` per event"}
    for batch in (1, 50):
        payload = json.dumps(images[:batch]).encode()
        wait_for_200(sport, path, payload)
        expect = subprocess.run(argv, input=payload, capture_output=True, check=True).stdout
        runs = {"surge": [], "wasmtime_run_per_event": []}
        for r in range(a.rounds):
            res = wrk(b.tools, f"http://127.0.0.1:{sport}{path}", a.seconds, 16, b.lua,
                      payload.decode())
            runs["surge"].append(res)
            log(f"inference batch {batch} round {r + 1} surge: {res['rps'] * batch:.0f} images/s")
            res = process_per_event(argv, payload, a.seconds, 16, expect)
            runs["wasmtime_run_per_event"].append(res)
            log(f"inference batch {batch} round {r + 1} wasmtime run: {res['rps'] * batch:.0f} images/s")
        runs = {k: medians(v) for k, v in runs.items()}
        out[f"batch_{batch}"] = {
            **runs,
            "images_per_s": {k: v["rps"] * batch for k, v in runs.items()},
            "ratios": {"rps": ratio(runs["surge"]["rps"], runs["wasmtime_run_per_event"]["rps"])},
        }
    surge.stop()
    return out


# Scaling keys for the scale-to-zero scenarios, added under [scaling] (every example has
# `concurrency = 1` there), and a control loop of 100 ms.
FAST_ZERO = ('concurrency = 1\nstable_window = "1s"\npanic_window = "200ms"\n'
             'scale_to_zero_after = "200ms"')
FAST_TICK = '[autoscaler]\ntick = "100ms"'


def metrics_of(port, fn):
    """Every per-function figure from one /metrics scrape: {name: value}."""
    status, body = request(port, "/metrics")
    out = {}
    if status != 200:
        return out
    tag = f'{{function="{fn}"}} '
    for line in body.decode().splitlines():
        if tag in line and not line.startswith("#"):
            name, value = line.split(tag, 1)
            out[name] = float(value)
    return out


def metric(port, name, fn):
    """One per-function figure from /metrics, or None."""
    return metrics_of(port, fn).get(name)


def wait_at_zero(port, fn, host_pid, deadline_s=30):
    """Until the function has no instance, no target and no sandbox process."""
    t0 = time.perf_counter()
    while True:
        if (metric(port, "surge_function_instances", fn) == 0
                and metric(port, "surge_function_desired_instances", fn) == 0
                and not sandboxes_of(host_pid)):
            return
        if time.perf_counter() - t0 > deadline_s:
            raise RuntimeError(f"{fn} did not scale to zero within {deadline_s} s")
        time.sleep(0.01)


def cold_start(b, functions=("hello", "echo"), tag="cold"):
    """A cold start from zero: the function is deployed and stored, its artifact compiled,
    but it has no sandbox process and no cgroup. The clock runs at the client, from sending
    the request to the whole answer. References: a fresh `wasmtime serve` on a precompiled
    component, spawn to first 200, and a whole `wasmtime run` of the precompiled module."""
    a = b.args
    payload = b'{"cold":true}'
    out = {}
    cases = [c for c in (("hello", "/hello", None), ("echo", LAMBDA_PATH.format("echo"), payload))
             if c[0] in functions]
    for fn, path, body in cases:
        fdir = b.functions_dir(f"{tag}-{fn}", [(fn, fn, {"min_instances": "min_instances = 0",
                                                         "concurrency": FAST_ZERO})])
        p, port, slog = b.start_surge(f"{tag}-{fn}", fdir, extra=FAST_TICK)
        wait_for_line(slog, "ready:", p)
        surge, ref = [], []
        for r in range(a.cold_rounds):
            wait_at_zero(port, fn, p.pid)
            t0 = time.perf_counter()
            status, data = request(port, path, body)
            surge.append((time.perf_counter() - t0) * 1e3)
            if status != 200:
                raise RuntimeError(f"cold start {fn}: {status} {data[:200]!r}")
            if fn == "hello":
                w, wport, _ = b.start_wasmtime_serve("cold-wt", b.cwasm["hello"], ["--allow-precompiled"])
                wait_for_200(wport, "/hello", proc=w)
                ref.append((time.perf_counter() - w.started) * 1e3)
                w.stop()
            else:
                t0 = time.perf_counter()
                r_ = subprocess.run([b.tools["wasmtime"], "run", "--allow-precompiled", b.cwasm["echo"]],
                                    input=payload, capture_output=True)
                if r_.stdout != payload:
                    raise RuntimeError(f"wasmtime run echo answered {r_.stdout!r}")
                ref.append((time.perf_counter() - t0) * 1e3)
            log(f"cold_start {fn} round {r + 1}: surge {surge[-1]:.1f} ms, reference {ref[-1]:.1f} ms")
        cold = metric(port, "surge_function_cold_starts_total", fn)
        p.stop()
        if cold is None or cold < a.cold_rounds:
            raise RuntimeError(f"cold start {fn}: the host counted {cold} cold starts for {a.cold_rounds} rounds")
        refname = "wasmtime_serve_precompiled" if fn == "hello" else "wasmtime_run_precompiled"
        ss, rs = sorted(surge), sorted(ref)
        out[fn] = {
            "measure": "surge: ms from sending a request to a function at zero (no process, no "
                       "cgroup) to its whole answer; reference: spawn to first 200 / whole run",
            "surge": {"median_ms": statistics.median(ss), "p99_ms": pct(ss, 99),
                      "max_ms": ss[-1], "samples_ms": surge},
            refname: {"median_ms": statistics.median(rs), "p99_ms": pct(rs, 99),
                      "max_ms": rs[-1], "samples_ms": ref},
            "ratio_median": ratio(statistics.median(ss), statistics.median(rs)),
        }
    return out


def cold_start_busy(b):
    """echo's cold start from zero with a core saturated by a CPU hog outside surge's
    cgroups, for the whole run (surge and the reference alike)."""
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        out = cold_start(b, functions=("echo",), tag="cold-busy")
    finally:
        hog.kill()
        hog.wait()
    out["hog"] = HOG
    return out


def reaction(b):
    """A 10x load step: 2 closed-loop clients on echo for a few seconds, then 20. Reaction
    time is from the step to the start of the first whole second in which no request had to
    wait in the activator queue: the host's exact counter of queued requests
    (surge_function_queued_requests_total), read every 20 ms, did not move."""
    a = b.args
    before_s, after_s = (2, 4) if a.smoke else (4, 8)
    fdir = b.functions_dir("reaction", [("echo", "echo", {
        "min_instances": "min_instances = 1", "max_instances": "max_instances = 32",
        "concurrency": 'concurrency = 1\nstable_window = "10s"\npanic_window = "1s"'})])
    p, port, slog = b.start_surge("reaction", fdir, extra='[autoscaler]\ntick = "1s"')
    wait_for_line(slog, "ready:", p)
    path = LAMBDA_PATH.format("echo")
    stop = {"all": False, "step": False}
    samples = []  # (t, queued_total, ready, desired), one scrape each
    latencies = []  # (t_end, ms)

    def client(after_step):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while not stop["all"]:
            if after_step and not stop["step"]:
                time.sleep(0.001)
                continue
            t0 = time.perf_counter()
            c.request("POST", path, body=b'{"x":1}')
            r = c.getresponse()
            r.read()
            t1 = time.perf_counter()
            if r.status != 200:
                raise RuntimeError(f"reaction: echo answered {r.status}")
            latencies.append((t1, (t1 - t0) * 1e3))

    def sampler():
        while not stop["all"]:
            t = time.perf_counter()
            m = metrics_of(port, "echo")
            samples.append((t, m.get("surge_function_queued_requests_total", 0),
                            m.get("surge_function_instances", 0),
                            m.get("surge_function_desired_instances", 0)))
            time.sleep(0.02)

    with concurrent.futures.ThreadPoolExecutor(max_workers=24) as ex:
        futs = [ex.submit(client, i >= 2) for i in range(20)] + [ex.submit(sampler)]
        time.sleep(before_s)
        ready_before = metric(port, "surge_function_instances", "echo")
        step = time.perf_counter()
        stop["step"] = True
        time.sleep(after_s)
        stop["all"] = True
        for f in futs:
            f.result()
    p.stop()
    # From the last sample before the step on, so the first interval covers the step.
    first = max((i for i, smp in enumerate(samples) if smp[0] < step), default=0)
    after = samples[first:]
    reaction_s = None
    for i, (t, q0, _, _) in enumerate(after):
        if after[-1][0] < t + 1.0:
            break
        end = next(smp for smp in after[i:] if smp[0] >= t + 1.0)
        if end[1] == q0:
            reaction_s = max(0.0, t - step)
            break
    queued_after = (after[-1][1] - after[0][1]) if after else 0
    ready_after = max((r for _, _, r, _ in after), default=0)
    lat_after = sorted(ms for t, ms in latencies if t >= step)
    res = {
        "function": "echo",
        "step": "2 -> 20 closed-loop clients (10x), autoscaler tick 1 s, panic window 1 s",
        # None: no quiet second came before the run ended (reported, not a harness failure).
        "reaction_s": reaction_s,
        "ready_before": ready_before,
        "ready_after": ready_after,
        "queued_after_step": queued_after,
        "p99_ms_after_step": pct(lat_after, 99),
        "reference_s": {"knative_panic_window": 6.0, "kubernetes_hpa_sync_period": 15.0},
    }
    log(f"reaction: {reaction_s} s to no queueing; ready {ready_before} -> {ready_after}, "
        f"{queued_after} requests queued after the step")
    return res


def memory(b):
    a = b.args
    out = {}
    for n in sorted({1, a.functions}):
        names = ["hello"] if n == 1 else [f"hello-{i:03}" for i in range(n)]
        # Kept warm (min_instances = 1): this case measures warm functions.
        specs = [(nm, "hello", {"name": f'name = "{nm}"', "route": f'route = "/{nm}"',
                                "min_instances": "min_instances = 1"}) for nm in names]
        fdir = b.functions_dir(f"mem-{n}", specs)
        surge, sport, slog = b.start_surge(f"mem-{n}", fdir)
        wait_for_line(slog, "ready:", surge, deadline_s=60 + 10 * n)
        for nm in names:
            for _ in range(3):
                if request(sport, f"/{nm}")[0] != 200:
                    raise RuntimeError(f"memory: /{nm} did not answer 200 on surge")
        s = memory_of(descendants(surge.pid))
        surge.stop()
        servers = []
        for nm in names:
            w, wport, _ = b.start_wasmtime_serve(f"mem-wt-{nm}", b.cwasm["hello"],
                                                 ["--allow-precompiled", "--max-instance-reuse-count", "1000"])
            servers.append((w, wport))
        for w, wport in servers:
            wait_for_200(wport, "/hello", proc=w)
            for _ in range(2):
                request(wport, "/hello")
        pids = [pid for w, _ in servers for pid in descendants(w.pid)]
        ref = memory_of(pids)
        for w, _ in servers:
            w.stop()
        log(f"memory {n} functions: surge PSS {s['pss_kib'] / 1024:.0f} MiB, "
            f"wasmtime serve PSS {ref['pss_kib'] / 1024:.0f} MiB")
        out[f"functions_{n}"] = {
            "functions": n,
            "surge": {**s, "pss_per_function_kib": s["pss_kib"] / n},
            "wasmtime_serve_reuse1000_per_function": {**ref, "pss_per_function_kib": ref["pss_kib"] / n},
            "ratio_pss": ratio(s["pss_kib"], ref["pss_kib"]),
            "ratio_rss": ratio(s["rss_kib"], ref["rss_kib"]),
        }
    # The same N functions, able to scale to zero: once all are at zero, what is left is the
    # host, its fork server and the fork server's spare. Measured at N and at N/10: the difference over the difference of the counts
    # is what one more function at zero costs (the host's fixed costs cancel); the host's PSS
    # over N counts them as per-function.
    def at_zero(n):
        names = [f"hello-{i:03}" for i in range(n)]
        specs = [(nm, "hello", {"name": f'name = "{nm}"', "route": f'route = "/{nm}"',
                                "min_instances": "min_instances = 0", "concurrency": FAST_ZERO})
                 for nm in names]
        fdir = b.functions_dir(f"mem-zero-{n}", specs)
        surge, sport, slog = b.start_surge(f"mem-zero-{n}", fdir, extra=FAST_TICK)
        wait_for_line(slog, "ready:", surge, deadline_s=60 + 10 * n)
        # The last one deployed idles to zero last; no sandbox below the host means all are.
        wait_at_zero(sport, names[-1], surge.pid, deadline_s=60)
        z = memory_of(descendants(surge.pid))
        surge.stop()
        log(f"memory {n} functions at zero: surge PSS {z['pss_kib'] / 1024:.0f} MiB in {z['processes']} process(es)")
        return z

    n = a.functions
    few = max(1, n // 10)
    z_few, z = at_zero(few), at_zero(n)
    out["scaled_to_zero"] = {
        "measured": True,
        "functions": n,
        "surge": {**z, "pss_per_function_kib": z["pss_kib"] / n},
        "fewer": {"functions": few, **z_few},
        "marginal_pss_per_function_kib": (z["pss_kib"] - z_few["pss_kib"]) / max(1, n - few),
    }
    return out


def cpu_ticks(pids):
    """User + system clock ticks of `pids` so far."""
    t = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            t += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return t


def node_ticks():
    """(busy, total) clock ticks of the whole node so far."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    return sum(v) - idle, sum(v)


def admin_get(state, port, path):
    with open(os.path.join(state, "admin-token")) as f:
        token = f.read().strip()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    c.request("GET", path, headers={"authorization": f"Bearer {token}"})
    r = c.getresponse()
    body = r.read()
    c.close()
    return json.loads(body)


DENSITY_RATE = 200


def density(b):
    a = b.args
    n = a.density
    names = [f"d{i:04}" for i in range(n)]
    specs = [(nm, "echo", {"name": f'name = "{nm}"', "route": f'route = "/{nm}"',
                           "min_instances": "min_instances = 1", "memory": 'memory = "16Mi"'})
             for nm in names]
    fdir = b.functions_dir("density", specs)
    state = os.path.join(b.work, "density", "state")
    t0 = time.perf_counter()
    surge, port, slog = b.start_surge("density", fdir, state=state)
    ready = wait_for_line(slog, "ready:", surge, deadline_s=120 + n)
    ready_s = time.perf_counter() - t0
    deployed = int(ready.split("ready:", 1)[1].split()[0])
    failed = int(ready.split(",")[-1].split()[0])
    # Let the first vertical intervals pass (CPU shares settle), then measure the idle node.
    time.sleep(5)
    pids = sandboxes_of(surge.pid)
    hz = os.sysconf("SC_CLK_TCK")
    h0, s0, (nb0, nt0) = cpu_ticks([surge.pid]), cpu_ticks(pids), node_ticks()
    time.sleep(5)
    h1, s1, (nb1, nt1) = cpu_ticks([surge.pid]), cpu_ticks(pids), node_ticks()
    idle = {"host_cpu_ms_per_s": (h1 - h0) * 1000 / hz / 5,
            "sandboxes_cpu_ms_per_s": (s1 - s0) * 1000 / hz / 5,
            "node_busy_fraction": (nb1 - nb0) / max(1, nt1 - nt0)}
    host_mem = memory_of([surge.pid])
    sandboxes = memory_of(pids)
    node = admin_get(state, port, "/admin/v1/status")["node"]
    urls = os.path.join(b.work, "density", "urls.txt")
    with open(urls, "w") as f:
        f.write("".join(f"http://127.0.0.1:{port}/{nm}\n" for nm in names))
    body = '{"key":"value","n":1}'
    seconds = max(10, a.seconds)
    rounds = {"random": [], "one": []}
    for _ in range(a.rounds):
        rounds["random"].append(oha(b.tools, None, seconds, DENSITY_RATE, 16, body, urls_file=urls))
        rounds["one"].append(oha(b.tools, f"http://127.0.0.1:{port}/{names[0]}", seconds,
                                 DENSITY_RATE, 16, body))
    surge.stop()
    rnd, one = medians(rounds["random"]), medians(rounds["one"])
    res = {
        "functions": n,
        "deployed": deployed,
        "failed": failed,
        "ready_s": ready_s,
        "manifest": "echo as shipped, min_instances = 1, memory = 16Mi (its vertical floor)",
        "node": node,
        "memory_committed_per_function_bytes": node["committed"]["memory_bytes"] / max(1, deployed),
        "host": {**host_mem, "pss_per_function_kib": host_mem["pss_kib"] / n},
        "sandboxes": {**sandboxes, "pss_per_sandbox_kib": sandboxes["pss_kib"] / max(1, sandboxes["processes"])},
        "idle": idle,
        "offered_rps": DENSITY_RATE,
        "random": rnd,
        "one": one,
        "ratio_p99_random_vs_one": ratio(rnd["p99_ms"], one["p99_ms"]),
    }
    log(f"density: {deployed} deployed ({failed} failed) in {ready_s:.1f} s; ledger "
        f"{node['committed']['memory_bytes'] / 2**30:.1f} of {node['capacity']['memory_bytes'] / 2**30:.1f} GiB, "
        f"cpu {node['committed']['cpu_millicores']} of {node['capacity']['cpu_millicores']}m; "
        f"sandboxes PSS {sandboxes['pss_kib'] / 1024:.0f} MiB; idle host {idle['host_cpu_ms_per_s']:.0f} ms/s, "
        f"sandboxes {idle['sandboxes_cpu_ms_per_s']:.0f} ms/s; random p99 {rnd['p99_ms']:.2f} ms, "
        f"one p99 {one['p99_ms']:.2f} ms")
    return res


# ---------------------------------------------------------------------------------------------
# Output and checks


def machine():
    model = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kib = int(f.readline().split()[1])
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip() or "unknown"
    return {
        "cores": os.cpu_count(),
        "cpu": model,
        "kernel": platform.release(),
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "cgroup": "v2" if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else "v1",
        "surge_commit": commit,
    }


def admin_post(state, port, path, doc):
    """POST JSON to the admin API with the host's token: (status, parsed body)."""
    with open(os.path.join(state, "admin-token")) as f:
        token = f.read().strip()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.request("POST", path, body=json.dumps(doc).encode(),
              headers={"authorization": f"Bearer {token}", "content-type": "application/json"})
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, json.loads(body or b"null")


def cgroup_cpu_quota_us(dirs):
    for d in dirs:
        for name in ("cpu.cfs_quota_us", "cpu.max"):
            p = os.path.join(d, name)
            if os.path.exists(p):
                with open(p) as f:
                    return int(f.read().split()[0])
    return None


def vertical(b):
    """In-place resizes. (1) Manual: alternate spin's quota through the admin API, which
    answers once the supervisor wrote the cgroup; the host times each from the decision to
    the files written (last_resize_latency_us), and the harness reads the file back. (2)
    Automatic: spin at cpu = 100m under one closed-loop client; the recommender sees the
    throttling and raises the quota in place. Throughput before the first raise against the
    last seconds of the run."""
    a = b.args
    n_resizes = 10 if a.smoke else 100
    run_s = 8 if a.smoke else 16
    # A hard cap (cpu_burst = false): a bursting spin would use the idle node, not throttle.
    edits = {"cpu": 'cpu = "100m"\ncpu_burst = false', "min_instances": "min_instances = 1",
             "max_instances": "max_instances = 1"}
    fdir = b.functions_dir("vertical", [("spin", "spin", edits)])
    state = os.path.join(b.work, "vertical", "state")
    p, port, slog = b.start_surge("vertical", fdir, state=state,
                                  extra='[vertical]\ninterval = "500ms"')
    wait_for_line(slog, "ready:", p)
    host_us, client_ms, mismatches, pids = [], [], 0, set()
    for i in range(n_resizes):
        cpu = 200 + 100 * (i % 2)
        mem = (32 + 16 * (i % 2)) << 20
        t0 = time.perf_counter()
        st, f = admin_post(state, port, "/admin/v1/functions/spin/resize",
                           {"update": {"memory_bytes": mem, "cpu_millicores": cpu}})
        client_ms.append((time.perf_counter() - t0) * 1e3)
        if st != 200:
            raise RuntimeError(f"vertical: resize answered {st}: {f}")
        host_us.append(f["last_resize_latency_us"])
        if cgroup_cpu_quota_us(f["cgroup"]) != cpu * 100:
            mismatches += 1
        pids.add(f["sandbox_pid"])
    restarts = f["restarts"]
    # Back to the manifest's 100m, unpinned: the recommender's turn.
    admin_post(state, port, "/admin/v1/functions/spin/resize",
               {"update": {"cpu_millicores": 100}})
    st, f = admin_post(state, port, "/admin/v1/functions/spin/resize", {"clear_cpu": True})
    path = LAMBDA_PATH.format("spin")
    done = []  # (t_end, cpu quota when it started)
    quota = {"now": 100}
    stop = {"all": False}

    def sampler():
        while not stop["all"]:
            q = metric(port, "surge_function_cpu_quota_millicores", "spin")
            if q is not None:
                quota["now"] = q
            time.sleep(0.05)

    def client():
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while not stop["all"]:
            q = quota["now"]
            c.request("POST", path, body=b'{"n": 10000000}')
            r = c.getresponse()
            r.read()
            if r.status != 200:
                raise RuntimeError(f"vertical: spin answered {r.status}")
            done.append((time.perf_counter(), q))

    t_start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as ex:
        futs = [ex.submit(sampler), ex.submit(client)]
        time.sleep(run_s)
        stop["all"] = True
        for fu in futs:
            fu.result()
    st, f = admin_post(state, port, "/admin/v1/functions/spin/resize", {"clear_memory": True})
    p.stop()
    before = [t for t, q in done if q == 100]
    t_first_raise = next((t for t, q in done if q > 100), None)
    before_rps = len(before) / (before[-1] - t_start) if len(before) > 1 else None
    tail = [t for t, _ in done if t >= t_start + run_s - 4]
    after_rps = len(tail) / 4.0 if tail else None
    hs = sorted(host_us)
    cs = sorted(client_ms)
    res = {
        "function": "spin",
        "manual_resizes": n_resizes,
        "apply_us": {"p50": pct(hs, 50), "p99": pct(hs, 99), "max": hs[-1]},
        "admin_round_trip_ms": {"p50": pct(cs, 50), "p99": pct(cs, 99)},
        "cgroup_file_mismatches": mismatches,
        "sandbox_pids": len(pids),
        "restarts": restarts,
        "auto_raise": {
            "from_millicores": 100,
            "to_millicores": f["cpu_quota_millicores"],
            "seconds_to_first_raise": None if t_first_raise is None else round(t_first_raise - t_start, 2),
            "auto_apply_us": f["last_resize_latency_us"],
            "rps_before": before_rps,
            "rps_after": after_rps,
            "ratio": ratio(after_rps, before_rps) if before_rps and after_rps else None,
        },
    }
    log(f"vertical: apply p50 {res['apply_us']['p50']} us p99 {res['apply_us']['p99']} us, "
        f"{mismatches} mismatches, {len(pids)} pid(s), {restarts} restarts; spin "
        f"{before_rps} -> {after_rps} req/s at {f['cpu_quota_millicores']}m")
    return res


def fmt(v, digits=0):
    return "—" if v is None else f"{v:,.{digits}f}"


def markdown(res):
    m = res["machine"]
    L = [f"# surge benchmarks, {res['date']} ({res['mode']})", "",
         f"{m['cores']} cores ({m['cpu']}), {m['memory_gib']} GiB, Linux {m['kernel']}, "
         f"cgroup {m['cgroup']}, surge {m['surge_commit']}, wasmtime {res['reference']['wasmtime']}. "
         f"Medians of {res['settings']['rounds']} rounds of {res['settings']['seconds']} s; "
         "ratios are surge / reference.", ""]
    w = res["scenarios"]["warm_http"]
    c = w["closed_loop"]
    L += ["## Warm `hello` (wasi:http), 16 connections, closed loop", "",
          "| host | req/s | p50 ms | p99 ms | p99.9 ms | server CPU µs/request | errors |",
          "| --- | --- | --- | --- | --- | --- | --- |"]
    for k in ("surge", "surge_shipped", "wasmtime_serve_reuse1000", "wasmtime_serve_default"):
        r = c[k]
        L.append(f"| {k} | {fmt(r['rps'])} | {fmt(r['p50_ms'], 2)} | {fmt(r['p99_ms'], 2)} | "
                 f"{fmt(r['p999_ms'], 2)} | {fmt(r.get('server_cpu_us_per_request'), 1)} | {r['errors']} |")
    o = w["open_loop"]
    L += ["", f"Open loop at {o['offered_rps']} req/s (half the reference's peak), latency from the scheduled send:", "",
          "| host | achieved req/s | p50 ms | p99 ms | p99.9 ms | errors |", "| --- | --- | --- | --- | --- | --- |"]
    for k in ("surge", "wasmtime_serve_reuse1000"):
        r = o[k]
        L.append(f"| {k} | {fmt(r['achieved_rps'])} | {fmt(r['p50_ms'], 2)} | {fmt(r['p99_ms'], 2)} | "
                 f"{fmt(r['p999_ms'], 2)} | {r['errors']} |")
    rt = w["ratios"]
    L += ["", f"Ratios: req/s {rt['rps_vs_reuse1000']}× reuse=1000, {rt['rps_vs_default']}× default; "
              f"with the shipped manifests {rt['shipped_rps_vs_reuse1000']}× reuse=1000; "
              f"p99 {rt['p99_vs_reuse1000']}× closed loop, {rt['open_loop_p99_vs_reuse1000']}× open loop; "
              f"server CPU per request {rt.get('server_cpu_per_request_vs_reuse1000')}× "
              f"({rt.get('shipped_server_cpu_per_request_vs_reuse1000')}× shipped).", ""]
    e = res["scenarios"]["event"]
    L += ["## Events: `echo` through the Invoke API, 16 at a time", "",
          "| host | events/s | p50 ms | p99 ms | errors |", "| --- | --- | --- | --- | --- |"]
    for k in ("surge", "wasmtime_run_per_event"):
        r = e[k]
        L.append(f"| {k} | {fmt(r['rps'])} | {fmt(r['p50_ms'], 2)} | {fmt(r['p99_ms'], 2)} | {r['errors']} |")
    L += ["", f"Ratio: {e['ratios']['rps']}× the events/s.", ""]
    q = res["scenarios"]["async_queue"]
    L += ["## Asynchronous invocations: `echo` as shipped, `Event`, 16 at a time", "",
          "| | per s | p50 ms | p99 ms | errors |", "| --- | --- | --- | --- | --- |",
          f"| synchronous Invoke | {fmt(q['sync']['rps'])} | {fmt(q['sync']['p50_ms'], 2)} | "
          f"{fmt(q['sync']['p99_ms'], 2)} | {q['sync']['errors']} |",
          f"| Event accepted (202, durable) | {fmt(q['event']['rps'])} | {fmt(q['event']['p50_ms'], 2)} | "
          f"{fmt(q['event']['p99_ms'], 2)} | {q['event']['errors']} |",
          f"| Event delivered (queue drained) | {fmt(q['event']['delivered_per_s'])} | | | |",
          f"| the disk's fsyncs | {fmt(q['disk']['fsyncs_per_s'])} | | | |",
          "", f"Ratios: accepted {q['ratios']['accepted_vs_sync_rps']}× the synchronous rate and "
              f"{q['ratios']['accepted_vs_disk_fsyncs']}× the disk's fsyncs (group commit); the 202's p99 "
              f"{q['ratios']['p99_202_vs_sync_p99']}× the synchronous p99. {q['accepted_total']} accepted, "
              f"{q['succeeded_total']} delivered, {q['dead_letters']} dead-lettered.", ""]
    inf = res["scenarios"]["inference"]
    L += ["## Inference: `classify` (a neural network on 8x8 digits), 16 at a time", "",
          "| batch | host | images/s | p50 ms | p99 ms | errors |",
          "| --- | --- | --- | --- | --- | --- |"]
    for batch in (1, 50):
        x = inf[f"batch_{batch}"]
        for k in ("surge", "wasmtime_run_per_event"):
            r = x[k]
            L.append(f"| {batch} | {k} | {fmt(x['images_per_s'][k])} | {fmt(r['p50_ms'], 2)} | "
                     f"{fmt(r['p99_ms'], 2)} | {r['errors']} |")
    L += ["", f"Ratios: {inf['batch_1']['ratios']['rps']}× at batch 1, "
              f"{inf['batch_50']['ratios']['rps']}× at batch 50.", ""]
    L += ["## Cold start from zero (no process, no cgroup), at the client", "",
          "| function | surge p50 ms | surge p99 ms | reference | reference p50 ms | ratio p50 |",
          "| --- | --- | --- | --- | --- | --- |"]
    busy = res["scenarios"].get("cold_start_busy", {})
    rows = [(fn, cs) for fn, cs in res["scenarios"]["cold_start"].items()]
    rows += [(f"{fn}, busy node", cs) for fn, cs in busy.items() if fn != "hog"]
    for fn, cs in rows:
        refk = next(k for k in cs if k.startswith("wasmtime"))
        L.append(f"| {fn} | {fmt(cs['surge']['median_ms'], 1)} | {fmt(cs['surge']['p99_ms'], 1)} | {refk} | "
                 f"{fmt(cs[refk]['median_ms'], 1)} | {cs['ratio_median']} |")
    if busy:
        L += ["", f"Busy node: {busy.get('hog', HOG)} saturates a core for the whole run."]
    rx = res["scenarios"]["reaction"]
    L += ["", "## Reaction to a 10x load step (echo, 2 -> 20 clients)", "",
          "| reaction s | ready before | ready after | requests queued after the step | p99 ms after the step |",
          "| --- | --- | --- | --- | --- |",
          f"| {fmt(rx['reaction_s'], 3) if rx['reaction_s'] is not None else 'not reached'} | {fmt(rx['ready_before'])} | {fmt(rx['ready_after'])} | "
          f"{fmt(rx['queued_after_step'])} | {fmt(rx['p99_ms_after_step'], 2)} |"]
    L += ["", "## Memory: host + sandboxes (PSS, RSS from /proc)", "",
          "| functions | surge PSS MiB | surge RSS MiB | wasmtime serve PSS MiB | wasmtime serve RSS MiB | PSS ratio |",
          "| --- | --- | --- | --- | --- | --- |"]
    for k, v in res["scenarios"]["memory"].items():
        if not k.startswith("functions_"):
            continue
        s, r = v["surge"], v["wasmtime_serve_reuse1000_per_function"]
        L.append(f"| {v['functions']} | {fmt(s['pss_kib'] / 1024)} | {fmt(s['rss_kib'] / 1024)} | "
                 f"{fmt(r['pss_kib'] / 1024)} | {fmt(r['rss_kib'] / 1024)} | {v['ratio_pss']} |")
    z = res["scenarios"]["memory"]["scaled_to_zero"]
    L += ["", f"{z['functions']} functions, all scaled to zero: surge PSS {fmt(z['surge']['pss_kib'] / 1024)} MiB "
          f"in {z['surge']['processes']} process(es), {fmt(z['surge']['pss_per_function_kib'])} KiB per function; "
          f"one more function at zero costs {fmt(z['marginal_pss_per_function_kib'])} KiB "
          f"(against {z['fewer']['functions']} functions)."]
    d = res["scenarios"]["density"]
    nd, idle = d["node"], d["idle"]
    L += ["", f"## Density: {d['functions']} copies of echo, each warm with one instance at its vertical floor", "",
          f"{d['deployed']} deployed, {d['failed']} failed, ready {fmt(d['ready_s'], 1)} s after start. "
          f"Ledger: memory {fmt(nd['committed']['memory_bytes'] / 2**30, 1)} of "
          f"{fmt(nd['capacity']['memory_bytes'] / 2**30, 1)} GiB "
          f"({fmt(d['memory_committed_per_function_bytes'] / 2**20, 1)} MiB per function), "
          f"CPU {nd['committed']['cpu_millicores']} of {nd['capacity']['cpu_millicores']}m guaranteed. "
          f"Sandboxes PSS {fmt(d['sandboxes']['pss_kib'] / 1024)} MiB "
          f"({fmt(d['sandboxes']['pss_per_sandbox_kib'])} KiB each), host PSS {fmt(d['host']['pss_kib'] / 1024)} MiB. "
          f"All idle: host {fmt(idle['host_cpu_ms_per_s'])} ms/s of CPU, sandboxes "
          f"{fmt(idle['sandboxes_cpu_ms_per_s'])} ms/s, node {fmt(100 * idle['node_busy_fraction'], 1)} % busy.", "",
          f"| {d['offered_rps']} req/s, open loop | p50 ms | p99 ms | p99.9 ms | max ms | errors |",
          "| --- | --- | --- | --- | --- | --- |"]
    for k, label in (("random", "each to a random copy"), ("one", "all to one copy")):
        r = d[k]
        L.append(f"| {label} | {fmt(r['p50_ms'], 2)} | {fmt(r['p99_ms'], 2)} | {fmt(r['p999_ms'], 2)} | "
                 f"{fmt(r['max_ms'], 2)} | {r['errors']} |")
    v = res["scenarios"]["vertical"]
    ar = v["auto_raise"]
    L += ["", "## Vertical: resizes in place (spin)", "",
          "| manual resizes | decision → cgroup files p50 µs | p99 µs | max µs | admin round trip p50 ms | "
          "file mismatches | sandbox pids | restarts |",
          "| --- | --- | --- | --- | --- | --- | --- | --- |",
          f"| {v['manual_resizes']} | {fmt(v['apply_us']['p50'])} | {fmt(v['apply_us']['p99'])} | "
          f"{fmt(v['apply_us']['max'])} | {fmt(v['admin_round_trip_ms']['p50'], 2)} | "
          f"{v['cgroup_file_mismatches']} | {v['sandbox_pids']} | {v['restarts']} |", "",
          "| automatic CPU raise | first raise after s | req/s at 100m | req/s after | ratio |",
          "| --- | --- | --- | --- | --- |",
          f"| 100m → {ar['to_millicores']}m | {fmt(ar['seconds_to_first_raise'], 2)} | "
          f"{fmt(ar['rps_before'], 1)} | {fmt(ar['rps_after'], 1)} | {ar['ratio']} |"]
    rec = res["scenarios"].get("records")
    if rec:
        L += ["## Invocation records: the same host with records on and off", "",
              f"{rec['tool']}; the records host kept {fmt(rec['store'].get('surge_log_records'))} records, "
              f"dropped {fmt(rec['store'].get('surge_log_records_dropped_total'))}.", "",
              "| case | on req/s | off req/s | req/s on/off | p99 on/off | server CPU/request on/off |",
              "| --- | --- | --- | --- | --- | --- |"]
        for case, v in rec["runs"].items():
            rt = v["ratios"]
            L.append(f"| {case} | {fmt(v['records_on']['rps'])} | {fmt(v['records_off']['rps'])} | "
                     f"{rt['rps']} | {rt['p99']} | {rt['server_cpu_per_request']} |")
        L.append("")
    cl = res["scenarios"].get("cluster")
    if cl and "skipped" not in cl:
        L += ["## Cluster: three nodes on etcd against one node, the same two cores", "",
              f"{cl['tool']}. A node SIGKILLed under a client's requests: the first request "
              f"served elsewhere {fmt(cl['reroute_ms'], 1)} ms after the kill, "
              f"{cl['failed_during_reroute']} failed in between.", "",
              "| function | one node req/s | three nodes req/s | ratio | p99 one / three ms |",
              "| --- | --- | --- | --- | --- |"]
        for fn, v in cl["runs"].items():
            L.append(f"| {fn} | {fmt(v['single']['rps'])} | {fmt(v['cluster']['rps'])} | {v['ratio_rps']} | "
                     f"{fmt(v['single']['p99_ms'], 2)} / {fmt(v['cluster']['p99_ms'], 2)} |")
        L.append("")
    elif cl:
        L += [f"## Cluster: skipped ({cl['skipped']})", ""]
    return "\n".join(L) + "\n"


def check(res):
    """The shape CI asserts: every scenario present, every figure a finite number, every
    reference answered, no request failed."""
    problems = []

    def num(path, v, positive=True):
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
            problems.append(f"{path}: {v!r} is not a finite number")
        elif positive and v <= 0:
            problems.append(f"{path}: {v!r} is not positive")

    if res.get("schema") != SCHEMA:
        problems.append(f"schema: {res.get('schema')!r}, expected {SCHEMA}")
    for k in ("cores", "cpu", "kernel"):
        if not res.get("machine", {}).get(k):
            problems.append(f"machine.{k} missing")
    sc = res.get("scenarios", {})
    for name in SCENARIOS:
        if name not in sc:
            problems.append(f"scenario {name} missing")
    if problems:
        return problems
    w = sc["warm_http"]
    for k in ("surge", "surge_shipped", "wasmtime_serve_reuse1000", "wasmtime_serve_default"):
        for f in ("rps", "p50_ms", "p99_ms", "p999_ms", "server_cpu_us_per_request"):
            num(f"warm_http.closed_loop.{k}.{f}", w["closed_loop"][k][f])
        if w["closed_loop"][k]["errors"]:
            problems.append(f"warm_http.closed_loop.{k}: {w['closed_loop'][k]['errors']} errors")
    for k in ("surge", "wasmtime_serve_reuse1000"):
        for f in ("achieved_rps", "p50_ms", "p99_ms", "p999_ms"):
            num(f"warm_http.open_loop.{k}.{f}", w["open_loop"][k][f])
        if w["open_loop"][k]["errors"]:
            problems.append(f"warm_http.open_loop.{k}: {w['open_loop'][k]['errors']} errors")
    for k, v in w["ratios"].items():
        num(f"warm_http.ratios.{k}", v)
    e = sc["event"]
    for k in ("surge", "wasmtime_run_per_event"):
        num(f"event.{k}.rps", e[k]["rps"])
        if e[k]["errors"]:
            problems.append(f"event.{k}: {e[k]['errors']} errors")
    num("event.ratios.rps", e["ratios"]["rps"])
    q = sc["async_queue"]
    for k in ("sync", "event"):
        num(f"async_queue.{k}.rps", q[k]["rps"])
        num(f"async_queue.{k}.p99_ms", q[k]["p99_ms"])
        if q[k]["errors"]:
            problems.append(f"async_queue.{k}: {q[k]['errors']} errors")
    num("async_queue.event.delivered_per_s", q["event"]["delivered_per_s"])
    num("async_queue.disk.fsyncs_per_s", q["disk"]["fsyncs_per_s"])
    # wrk stops mid-request: up to one event per connection and round is enqueued (and
    # delivered) without wrk seeing its 202.
    slack = 16 * len(q["event"]["rounds"])
    if not q["accepted_total"] <= q["succeeded_total"] <= q["accepted_total"] + slack or q["dead_letters"]:
        problems.append(f"async_queue: {q['accepted_total']} accepted but {q['succeeded_total']} "
                        f"succeeded and {q['dead_letters']} dead-lettered")
    for batch in (1, 50):
        x = sc["inference"][f"batch_{batch}"]
        for k in ("surge", "wasmtime_run_per_event"):
            num(f"inference.batch_{batch}.{k}.rps", x[k]["rps"])
            if x[k]["errors"]:
                problems.append(f"inference.batch_{batch}.{k}: {x[k]['errors']} errors")
    for scenario, fns in (("cold_start", ("hello", "echo")), ("cold_start_busy", ("echo",))):
        for fn in fns:
            cs = sc[scenario].get(fn)
            if cs is None:
                problems.append(f"{scenario}.{fn} missing")
                continue
            num(f"{scenario}.{fn}.surge.median_ms", cs["surge"]["median_ms"])
            num(f"{scenario}.{fn}.surge.p99_ms", cs["surge"]["p99_ms"])
            num(f"{scenario}.{fn}.ratio_median", cs["ratio_median"])
    rx = sc["reaction"]
    if rx["reaction_s"] is not None:
        num("reaction.reaction_s", rx["reaction_s"], positive=False)
    num("reaction.p99_ms_after_step", rx["p99_ms_after_step"])
    if not rx["ready_after"] > rx["ready_before"]:
        problems.append(f"reaction: the pool did not grow ({rx['ready_before']} -> {rx['ready_after']})")
    z = sc["memory"].get("scaled_to_zero", {})
    num("memory.scaled_to_zero.marginal_pss_per_function_kib",
        z.get("marginal_pss_per_function_kib"), positive=False)
    if z.get("surge", {}).get("processes") != 3:
        problems.append(f"memory.scaled_to_zero: {z.get('surge', {}).get('processes')} processes, "
                        "expected the host, its fork server and the spare alone")
    mem = [v for k, v in sc["memory"].items() if k.startswith("functions_")]
    if not any(v["functions"] == 1 for v in mem) or len(mem) < 2:
        problems.append("memory: needs a row for 1 function and one for many")
    d = sc["density"]
    if d["deployed"] != d["functions"] or d["failed"]:
        problems.append(f"density: {d['deployed']} of {d['functions']} deployed, {d['failed']} failed")
    for k in ("memory_bytes", "cpu_millicores"):
        if d["node"]["committed"][k] > d["node"]["capacity"][k]:
            problems.append(f"density: the ledger's {k} is over the capacity ({d['node']})")
    for k in ("random", "one"):
        num(f"density.{k}.p99_ms", d[k]["p99_ms"])
        if d[k]["errors"]:
            problems.append(f"density.{k}: {d[k]['errors']} errors")
    if d["sandboxes"]["processes"] != d["functions"]:
        problems.append(f"density: {d['sandboxes']['processes']} sandboxes for {d['functions']} functions")
    v = sc["vertical"]
    num("vertical.apply_us.p50", v["apply_us"]["p50"])
    if v["cgroup_file_mismatches"] or v["sandbox_pids"] != 1 or v["restarts"]:
        problems.append(f"vertical: {v['cgroup_file_mismatches']} mismatches, {v['sandbox_pids']} pids, "
                        f"{v['restarts']} restarts (expected 0, 1, 0)")
    if not v["auto_raise"]["to_millicores"] > 100:
        problems.append(f"vertical: the recommender did not raise spin's CPU ({v['auto_raise']})")
    for v in mem:
        num(f"memory.functions_{v['functions']}.surge.pss_kib", v["surge"]["pss_kib"])
        num(f"memory.functions_{v['functions']}.ratio_pss", v["ratio_pss"])
        if v["surge"]["processes"] < 1 + v["functions"]:
            problems.append(f"memory.functions_{v['functions']}: {v['surge']['processes']} processes, "
                            f"expected the host and {v['functions']} sandboxes")
    cl = sc["cluster"]
    if "skipped" not in cl:
        for fn in ("hello", "echo"):
            for who in ("single", "cluster"):
                num(f"cluster.{fn}.{who}.rps", cl["runs"][fn][who]["rps"])
                if cl["runs"][fn][who]["errors"]:
                    problems.append(f"cluster.{fn}.{who}: {cl['runs'][fn][who]['errors']} errors")
        num("cluster.reroute_ms", cl["reroute_ms"])
    rec = sc["records"]
    for case, v in rec["runs"].items():
        for who in ("records_on", "records_off"):
            num(f"records.{case}.{who}.rps", v[who]["rps"])
            if v[who]["errors"]:
                problems.append(f"records.{case}.{who}: {v[who]['errors']} errors")
    if "surge_log_records" not in rec["store"]:
        problems.append(f"records: the host reported no surge_log_records ({rec['store']})")
    return problems


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="one short round of each scenario")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--cold-rounds", type=int, default=20)
    ap.add_argument("--functions", type=int, default=100, help="functions in the large memory case")
    ap.add_argument("--density", type=int, default=1000, help="copies of echo in the density case")
    ap.add_argument("--only", action="append", choices=SCENARIOS, help="run only these scenarios")
    ap.add_argument("--out", default=os.path.join(ROOT, "target", "bench"))
    ap.add_argument("--wasmtime", default=shutil.which("wasmtime"))
    ap.add_argument("--oha", default=shutil.which("oha"))
    ap.add_argument("--wrk", default=shutil.which("wrk"))
    ap.add_argument("--check", metavar="RESULTS_JSON", help="only check a results file's shape")
    a = ap.parse_args()
    if a.check:
        with open(a.check) as f:
            problems = check(json.load(f))
        for p in problems:
            print(f"{a.check}: {p}", file=sys.stderr)
        sys.exit(1 if problems else 0)
    if a.smoke:
        a.rounds, a.seconds, a.cold_rounds, a.functions, a.density = 1, 2, 2, 10, 50
    tools = {"wasmtime": a.wasmtime, "oha": a.oha, "wrk": a.wrk}
    for k, v in tools.items():
        if not v or not os.access(v, os.X_OK):
            sys.exit(f"harness: {k} not found (pass --{k} PATH, or run benches/run.sh, which installs it)")
    version = subprocess.run([a.wasmtime, "--version"], capture_output=True, text=True).stdout.split()
    res = {
        "schema": SCHEMA,
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "mode": "smoke" if a.smoke else "full",
        "machine": machine(),
        "reference": {"wasmtime": version[1] if len(version) > 1 else "unknown"},
        "settings": {"rounds": a.rounds, "seconds": a.seconds, "cold_rounds": a.cold_rounds,
                     "functions": a.functions, "density": a.density},
        "scenarios": {},
    }
    b = Bench(a, tools)
    runs = {"warm_http": warm_http, "event": event, "async_queue": async_queue, "inference": inference, "cold_start": cold_start,
            "cold_start_busy": cold_start_busy, "reaction": reaction, "memory": memory,
            "density": density, "vertical": vertical, "records": records, "cluster": cluster}
    try:
        for name in a.only or SCENARIOS:
            log(f"== {name}")
            res["scenarios"][name] = runs[name](b)
    finally:
        Proc.stop_all()
        shutil.rmtree(b.work, ignore_errors=True)
    os.makedirs(a.out, exist_ok=True)
    stem = "smoke" if a.smoke else "results"
    with open(os.path.join(a.out, f"{stem}.json"), "w") as f:
        json.dump(res, f, indent=2)
    if not a.only:
        md = markdown(res)
        with open(os.path.join(a.out, f"{stem}.md"), "w") as f:
            f.write(md)
        print(md)
        problems = check(res)
        for p in problems:
            log(f"check: {p}")
        sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
