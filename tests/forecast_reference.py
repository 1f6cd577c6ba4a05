"""Reference fits from statsmodels for `tests/forecast.rs`: on series drawn from the Azure
sample (traces/azure2019: Shahrad et al., USENIX ATC'20; CC-BY 4.0), each function's
invocations summed per 10 minutes, AutoReg with an intercept at several lags. Prints one
JSON object per case: the series, the lags, the fitted parameters and 12 forecast steps.

  python tests/forecast_reference.py traces/azure2019/500_inv.csv
"""

import csv
import json
import sys

import numpy as np
from statsmodels.tsa.ar_model import AutoReg


def main():
    with open(sys.argv[1]) as f:
        rows = list(csv.reader(f))[1:]
    series = []
    for r in rows:
        minutes = [int(x) for x in r[3:]]
        buckets = [float(sum(minutes[i:i + 10])) for i in range(0, len(minutes), 10)]
        series.append((sum(minutes), buckets))
    series.sort(key=lambda s: -s[0])
    # The busiest three, and two from the middle of the file's ranking.
    picked = [series[0], series[1], series[2], series[len(series) // 4], series[len(series) // 3]]
    for total, y in picked:
        if np.std(y) == 0:
            continue
        for lags in (1, 3, 6):
            res = AutoReg(np.array(y), lags=lags, trend="c").fit()
            print(json.dumps({"series": y, "lags": lags, "params": list(map(float, res.params)),
                              "forecast": list(map(float, res.forecast(12)))}))


if __name__ == "__main__":
    main()
