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
    def __init__(self):
        self.bins = [0] * RANGE
        self.oob = 0

    def idle(self, minutes):
        if minutes < RANGE:
            self.bins[minutes] += 1
        else:
            self.oob += 1

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
        if seen == 0 or self.oob >= 0.5 * seen:
            return 0, RANGE
        mean = n / RANGE
        cv = statistics.pstdev(self.bins) / mean if n else 0.0
        if cv < 2.0:
            return 0, RANGE
        head, tail = self.pct(5), self.pct(99)
        prewarm = math.floor(head * 0.9)
        end = math.ceil(tail * 1.1)
        return prewarm, max(0, end - prewarm) + 1


def make(policy):
    if policy.startswith("fixed:"):
        return Fixed(int(policy[6:]))
    if policy == "kpa":  # scale to zero after 60 s idle: a minute on this model
        return Fixed(1)
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
            i, c, w = simulate(counts, make(name))
            tot_inv += i
            tot_cold += c
            gbmin += w * mem.get((r[1], r[2]), median) / 1024
            shares.append(c / i)
        q = statistics.quantiles(shares, n=100, method="inclusive")
        print(json.dumps({"policy": name, "model": "minute", "functions": len(shares),
                          "invocations": tot_inv, "cold_starts": tot_cold,
                          "cold_share": tot_cold / tot_inv, "cold_share_p50": q[49],
                          "cold_share_p75": q[74], "wasted_gb_min": gbmin}))


if __name__ == "__main__":
    main()
