"""An independent reimplementation of `surge replay --model minute`, to check the Rust one
against: the same rules (Shahrad et al., "Serverless in the Wild", USENIX ATC'20; the Azure
Functions trace 2019 is CC-BY 4.0), computed another way. Rust does interval arithmetic per
busy minute; this walks every minute of the day and asks whether an instance is loaded.

  python3 tests/replay_reference.py INV.csv MEM.csv POLICY...   (one JSON line per policy)
"""

import csv
import json
import math
import statistics
import sys

RANGE = 240  # the hybrid histogram: 1-minute bins over 4 hours


class Fixed:
    def __init__(self, k):
        self.k = k

    def idle(self, minutes):
        pass

    def windows(self):
        return 0, self.k


class Hybrid:
    """The paper's hybrid histogram policy; when most idle times are out of bounds, the next
    is predicted by an AR(1) around the mean of the last 64 idle times (least squares on
    the demeaned series, no intercept: ARIMA(1,0,0) by Hannan-Rissanen), loaded from 85 %
    to 115 % of the prediction."""

    def __init__(self):
        self.bins = [0] * RANGE
        self.oob = 0
        self.history = []
        self.predicted = None

    def idle(self, minutes):
        if minutes < RANGE:
            self.bins[minutes] += 1
        else:
            self.oob += 1
        self.history = (self.history + [minutes])[-64:]
        self.predicted = self.predict()

    def predict(self):
        if len(self.history) < 4:
            return None
        y = [float(m) for m in self.history]
        mean = sum(y) / len(y)
        x = [v - mean for v in y]
        a = b = 0.0
        for t in range(1, len(x)):
            a += x[t - 1] * x[t - 1]
            b += x[t - 1] * x[t]
        if a <= 1e-12 * max(a, 1.0):
            return max(mean, 0.0)
        # As a 1 x 1 Cholesky solve: divided by sqrt(a) twice.
        phi = b / math.sqrt(a) / math.sqrt(a)
        return max(phi * x[-1] + mean, 0.0)

    def pct(self, p):
        n = sum(self.bins)
        want = max(1, math.ceil(p / 100 * n))
        seen = 0
        for m, c in enumerate(self.bins):
            seen += c
            if seen >= want:
                return m
        return RANGE - 1

    def windows(self):
        n = sum(self.bins)
        seen = n + self.oob
        if seen > 0 and self.oob >= 0.5 * seen:
            if self.predicted is None:
                return 0, RANGE
            prewarm = math.floor(self.predicted * 0.85)
            end = math.ceil(self.predicted * 1.15)
            return prewarm, max(0, end - prewarm) + 1
        if seen == 0:
            return 0, RANGE
        mean = n / RANGE
        cv = statistics.pstdev(self.bins) / mean if n else 0.0
        if cv < 2.0:
            return 0, RANGE
        head, tail = self.pct(5), self.pct(99)
        prewarm = math.floor(head * 0.9)
        end = math.ceil(tail * 1.1)
        return prewarm, max(0, end - prewarm) + 1


class Predictive:
    """surge's predictive policy (src/control/keepalive/predictive.rs), written again from
    its description: a timer (the last 4 idle times within max(1, a tenth) of the
    shortest, at least 5) is pre-warmed over that range widened by a fed-back margin (1..3:
    +1 on a miss, -1 after 8 hits in a row), while the window's hindsight gain over the
    keep-alive is not negative; otherwise the keep-alive is the rung of
    break-even x (1/4, 1/2, 1, 2, 4) that is cheapest in hindsight, once it leads the
    current one by more than 4 cold starts' worth."""

    def __init__(self, break_even, cap=RANGE):
        self.be = break_even
        self.rungs = [int(min(max(round_half_away(break_even * m), 1), cap)) for m in (0.25, 0.5, 1, 2, 4)]
        self.loss = [0.0] * 5
        self.rung = 2
        self.recent = []
        self.period = None
        self.margin = 1
        self.hits = 0
        self.gain = 0.0  # hindsight: the keep-alive's cost less the window's, under runs

    def window(self):
        lo, hi = self.period
        p = max(lo - self.margin, 0)
        return p, hi + self.margin - p + 1

    def idle(self, g):
        if self.period:
            p, k = self.window()
            ka = self.rungs[self.rung]
            under_window = self.be if g < p else (g - p if g < p + k else self.be + k)
            under_keepalive = g if g < ka else self.be + ka
            self.gain += under_keepalive - under_window
            if g < p or g >= p + k:
                self.margin, self.hits = min(self.margin + 1, 3), 0
            else:
                self.hits += 1
                if self.hits >= 8:
                    self.margin, self.hits = max(self.margin - 1, 1), 0
        for i, k in enumerate(self.rungs):
            self.loss[i] += g if g < k else self.be + k
        best = min(range(5), key=lambda i: (self.loss[i], i))
        if self.loss[best] < self.loss[self.rung] - 4 * self.be:
            self.rung = best
        self.recent = (self.recent + [g])[-8:]
        self.period = None
        if len(self.recent) >= 4:
            run = self.recent[-4:]
            lo, hi = min(run), max(run)
            if lo >= 5 and hi - lo <= max(1.0, 0.1 * lo):
                self.period = (lo, hi)

    def windows(self):
        if self.period and self.gain >= 0:
            return self.window()
        return 0, self.rungs[self.rung]


def round_half_away(x):
    return math.floor(x + 0.5)


def make(policy, memory_mb, cold_start_gb_s):
    if policy.startswith("fixed:"):
        return Fixed(int(policy[6:]))
    if policy == "kpa":  # scale to zero after 60 s idle: a minute on this model
        return Fixed(1)
    if policy.startswith("predictive"):
        gb_s = float(policy[11:]) * 60 if ":" in policy else cold_start_gb_s
        return Predictive(gb_s / (memory_mb / 1024) / 60)
    assert policy == "hybrid", policy
    return Hybrid()


def simulate(counts, policy):
    """(invocations, cold starts, wasted minutes), minute by minute."""
    inv = cold = waste = 0
    span = None  # (first, last) loaded minute after the last busy one
    prev = None
    for m, n in enumerate(counts, start=1):
        loaded = span is not None and span[0] <= m <= span[1]
        if n == 0:
            waste += loaded
            continue
        inv += n
        if not loaded:
            cold += 1
        if prev is not None:
            policy.idle(m - prev - 1)
        p, k = policy.windows()
        span = (m + p + 1, m + p + k)
        prev = m
    return inv, cold, waste


def main():
    inv_path, mem_path, policies = sys.argv[1], sys.argv[2], sys.argv[3:]
    # config/surge.toml's [keepalive]: cold_start_cost / memory_cost, GB-s per cold start.
    cold_start_gb_s = 0.014 / 0.0000166667
    with open(mem_path) as f:
        mem = {(r["HashOwner"], r["HashApp"]): float(r["AverageAllocatedMb"]) for r in csv.DictReader(f)}
    median = statistics.median(mem.values())
    with open(inv_path) as f:
        rows = list(csv.reader(f))[1:]
    for name in policies:
        tot_inv = tot_cold = 0
        gbmin = 0.0
        shares = []
        for r in rows:
            counts = [int(x) for x in r[3:]]
            if not any(counts):
                continue
            mb = mem.get((r[1], r[2]), median)
            i, c, w = simulate(counts, make(name, mb, cold_start_gb_s))
            tot_inv += i
            tot_cold += c
            gbmin += w * mb / 1024
            shares.append(c / i)
        q = statistics.quantiles(shares, n=100, method="inclusive")
        print(json.dumps({"policy": name, "model": "minute", "functions": len(shares),
                          "invocations": tot_inv, "cold_starts": tot_cold,
                          "cold_share": tot_cold / tot_inv, "cold_share_p50": q[49],
                          "cold_share_p75": q[74], "wasted_gb_min": gbmin}))


if __name__ == "__main__":
    main()
