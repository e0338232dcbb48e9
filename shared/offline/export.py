"""Per-minute export of a backtest (``tickcast backtest --csv OUT``), and reading it back.

One row per scored minute, in time order, with a header:

=====================  ========================================================================
``target_time_ms``     open time of the forecast minute, ms since epoch UTC
``last_close``         close of the minute the forecast was made at (quote currency, e.g. USD)
``forecast``           forecast close (quote currency)
``lower``, ``upper``   prediction interval bounds (quote currency)
``realised_close``     the forecast minute's close (quote currency)
``model_return_bp``    the model's log return before the guard, basis points
``sigma_bp``           the volatility scale the forecast was made with, bp per minute
``half_width_sigma``   interval half-width in units of sigma (the conformal quantile)
``guard_weight``       the model's weight in the served forecast, in (0, 1)
=====================  ========================================================================

The last four are empty for a forecaster that does not expose them. Floats are written with
Python's shortest round-trip representation, so :func:`read_series` gives back the same numbers.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from shared.offline.backtest import BacktestSeries

COLUMNS = ("target_time_ms", "last_close", "forecast", "lower", "upper", "realised_close",
           "model_return_bp", "sigma_bp", "half_width_sigma", "guard_weight")
"""Header of the export, in order."""
_BP = 1e4


def write_csv(series: BacktestSeries, path: str | Path) -> Path:
    """Write ``series`` as CSV (columns :data:`COLUMNS`); return the path. Parent folders are created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = len(series.actual)
    inner = [series.model_return, series.sigma, series.half_width, series.guard_weight]
    scale = (_BP, _BP, 1.0, 1.0)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(COLUMNS)
        cols = [series.time_ms.tolist(), series.last.tolist(), series.pred.tolist(), series.lower.tolist(),
                series.upper.tolist(), series.actual.tolist()]
        cols += [(a * f).tolist() if a is not None else [""] * n for a, f in zip(inner, scale)]
        out.writerows(zip(*cols))
    return path


def read_series(path: str | Path) -> BacktestSeries:
    """Read an export of :func:`write_csv` back (internals in their own units: sigma as a log return).

    Raises
    ------
    ValueError
        If the header is not :data:`COLUMNS`.
    """
    with open(path, newline="", encoding="utf-8") as fh:
        rows = csv.reader(fh)
        header = tuple(next(rows, ()))
        if header != COLUMNS:
            raise ValueError(f"{path}: not a backtest export (header {header})")
        data = list(rows)
    t = np.array([int(r[0]) for r in data], dtype=np.int64)
    num = np.array([[float(v) if v else math.nan for v in r[1:]] for r in data], dtype=float).reshape(-1, 9)
    inner = [num[:, 5] / _BP, num[:, 6] / _BP, num[:, 7], num[:, 8]]
    inner = [a if not np.isnan(a).all() else None for a in inner] if len(data) else [None] * 4
    return BacktestSeries(t, num[:, 0], num[:, 4], num[:, 1], num[:, 2], num[:, 3], *inner)
