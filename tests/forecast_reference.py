"""Reference fits from statsmodels for `tests/forecast.rs`: on series drawn from the Azure
sample (traces/azure2019: Shahrad et al., USENIX ATC'20; CC-BY 4.0), each function's
invocations summed per 10 minutes:

- AutoReg with an intercept at several lags (`"model": "ar"`): the fitted parameters and
  12 forecast steps;
- ETSModel with additive errors, without and with an additive trend (`"model": "ets"`),
  fitted by maximum likelihood: 12 forecast steps;
- ARIMA(p, d, q) by Hannan-Rissanen without its bias correction (`"model": "arima"`):
  the AR and MA parameters and the innovations' variance.

Prints one JSON object per case.

  python tests/forecast_reference.py traces/azure2019/500_inv.csv
"""

import csv
import json
import sys

import numpy as np
from statsmodels.tsa.ar_model import AutoReg
from statsmodels.tsa.arima.estimators.hannan_rissanen import hannan_rissanen
from statsmodels.tsa.exponential_smoothing.ets import ETSModel


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
            print(json.dumps({"model": "ar", "series": y, "lags": lags,
                              "params": list(map(float, res.params)),
                              "forecast": list(map(float, res.forecast(12)))}))
        for trend in (None, "add"):
            res = ETSModel(np.array(y), error="add", trend=trend).fit(disp=False)
            # The concentrated log-likelihood, -n/2 log(SSE), the units augurs reports.
            ll = -len(y) / 2 * np.log(np.sum(np.asarray(res.resid) ** 2))
            print(json.dumps({"model": "ets", "series": y, "trend": trend or "none",
                              "loglik": float(ll),
                              "forecast": list(map(float, res.forecast(12)))}))
        for p, d, q in ((1, 0, 0), (2, 1, 0), (1, 0, 1), (2, 1, 1), (0, 1, 1)):
            w = np.diff(np.array(y), n=d)
            params, _ = hannan_rissanen(w, ar_order=p, ma_order=q, demean=True, unbiased=False)
            print(json.dumps({"model": "arima", "series": y, "order": [p, d, q],
                              "ar": list(map(float, params.ar_params)),
                              "ma": list(map(float, params.ma_params)),
                              "sigma2": float(params.sigma2)}))


if __name__ == "__main__":
    main()
