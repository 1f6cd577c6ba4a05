"""The predictive policy against hybrid and fixed keep-alives on slices of the Azure sample
(Shahrad et al., "Serverless in the Wild", USENIX ATC'20; the trace is CC-BY 4.0): each
half of the functions, and each half of the day, with the same costs. It uses
tests/replay_reference.py, which tests/replay.rs checks against `surge replay`.

  python3 benches/replay_slices.py     (BENCHMARKS.md, the `surge replay` section)
"""

import csv
import os
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
import replay_reference as ref  # noqa: E402

TRACE = os.path.join(HERE, "..", "traces", "azure2019")
# config/surge.toml's [keepalive]: cold_start_cost / memory_cost, GB-s per cold start.
COLD_START_GB_S = 0.014 / 0.0000166667


def main():
    with open(os.path.join(TRACE, "500_mem.csv")) as f:
        mem = {(r["HashOwner"], r["HashApp"]): float(r["AverageAllocatedMb"]) for r in csv.DictReader(f)}
    median = statistics.median(mem.values())
    with open(os.path.join(TRACE, "500_inv.csv")) as f:
        rows = [(r, [int(x) for x in r[3:]]) for r in list(csv.reader(f))[1:]]

    def run(part, policy):
        cold, waste = 0, 0.0
        for r, counts in part:
            if not any(counts):
                continue
            mb = mem.get((r[1], r[2]), median)
            _, c, w = ref.simulate(counts, ref.make(policy, mb, COLD_START_GB_S))
            cold += c
            waste += w * mb / 1024
        return cold, waste

    slices = {
        "functions 1-250": rows[:250],
        "functions 251-500": rows[250:],
        "minutes 1-720": [(r, c[:720]) for r, c in rows],
        "minutes 721-1440": [(r, c[720:]) for r, c in rows],
    }
    print("slice | policy | cold | GB-min | cold / hybrid's | waste / hybrid's")
    for name, part in slices.items():
        hc, hw = run(part, "hybrid")
        for policy in ["hybrid", "predictive", "fixed:60", "fixed:75", "fixed:90"]:
            c, w = run(part, policy)
            print(f"{name} | {policy} | {c} | {w:.0f} | {c / hc:.3f} | {w / hw:.3f}")


if __name__ == "__main__":
    main()
