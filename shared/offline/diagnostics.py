"""Diagnostics of a backtest's per-minute series: the figures issue 16 asks for, from the export.

Every function reads a :class:`shared.offline.backtest.BacktestSeries` (or its arrays), so the
figures can be recomputed from a ``--csv`` export (:mod:`shared.offline.export`) alone.

- :func:`newey_west_dm`: Diebold-Mariano test of equal mean absolute error with a Newey-West
  (Bartlett kernel) long-run variance (W. K. Newey and K. D. West, "A simple, positive
  semi-definite, heteroskedasticity and autocorrelation consistent covariance matrix",
  Econometrica 55, 1987), lag ``floor(4 (n / 100)^(2/9))`` (their 1994 rule of thumb, "Automatic
  lag selection in covariance matrix estimation", Review of Economic Studies 61), computed by
  :func:`shared.forecast.comparison.paired_test`;
- :func:`sign_balance`: share of forecasts that differ from the last close and lie below it;
- :func:`coverage_by_tercile`: coverage in each tercile of relative interval width;
- :func:`interval_score`: the interval score of T. Gneiting and A. E. Raftery, "Strictly proper
  scoring rules, prediction, and estimation", JASA 102 (2007), eq. 43, beside that of
  :func:`rolling_quantile_interval`, a naive interval of empirical quantiles of past returns;
- :func:`summary`: all of them, and the MAE ratio on each half of the series.

Examples
--------
>>> import numpy as np
>>> lo, hi = rolling_quantile_interval(np.array([100.0, 101.0, 100.0, 102.0]), 0.5, window=2)
>>> np.isnan(lo[:3]).all() and bool(lo[3] < 100.0 < hi[3])  # from close 100 and returns +1 %, -1 %
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from shared.forecast.comparison import newey_west_lags, paired_test
from shared.offline.backtest import MOVE_THRESHOLD, BacktestSeries

NAIVE_WINDOW = 1_000
"""Past one-minute returns in the naive interval's window: the conformal window at 90 %
(:func:`shared.forecast.conformal.default_window`), so both rest on the same amount of history."""


@dataclass(frozen=True)
class NeweyWestDM:
    """Diebold-Mariano statistic with a Newey-West variance; negative = the first forecast better."""

    statistic: float
    p_value: float
    lags: int
    n: int


def newey_west_dm(loss_a: np.ndarray, loss_b: np.ndarray, lags: int | None = None) -> NeweyWestDM:
    """DM test of ``mean(loss_a - loss_b) = 0`` with a Bartlett-kernel long-run variance
    (:func:`shared.forecast.comparison.paired_test`; two-sided p from the normal).

    Raises
    ------
    ValueError
        Lengths differ or fewer than 2 losses.
    """
    t = paired_test(loss_a, loss_b, lags)
    return NeweyWestDM(t.statistic, t.p_two_sided, t.lags, t.n)


def sign_balance(series: BacktestSeries) -> tuple[float, int]:
    """``(share below, count)`` of forecasts differing from the last close by >= ``MOVE_THRESHOLD``."""
    rel = series.pred / series.last - 1.0
    moved = np.abs(rel) >= MOVE_THRESHOLD
    n = int(moved.sum())
    return (float((rel[moved] < 0).mean()) if n else math.nan), n


def coverage_by_tercile(series: BacktestSeries) -> list[tuple[float, float]]:
    """Coverage in each tercile of relative interval width ``(upper - lower) / last``.

    Returns ``[(coverage, mean relative width), ...]`` from the narrowest tercile to the widest.
    """
    width = (series.upper - series.lower) / series.last
    inside = (series.lower <= series.actual) & (series.actual <= series.upper)
    order = np.argsort(width, kind="stable")
    return [(float(inside[part].mean()), float(width[part].mean())) for part in np.array_split(order, 3)]


def interval_score(lower: np.ndarray, upper: np.ndarray, actual: np.ndarray, level: float) -> np.ndarray:
    """Per-minute interval score (Gneiting & Raftery 2007, eq. 43), in the unit of the prices (lower is better).

    ``(u - l) + (2 / alpha) (l - y) 1{y < l} + (2 / alpha) (y - u) 1{y > u}`` with ``alpha = 1 - level``.
    """
    alpha = 1.0 - level
    return (upper - lower) + (2.0 / alpha) * (np.maximum(lower - actual, 0.0) + np.maximum(actual - upper, 0.0))


def rolling_quantile_interval(closes: np.ndarray, level: float, window: int = NAIVE_WINDOW) -> tuple[np.ndarray, np.ndarray]:
    """Naive interval for ``closes[t]`` from ``closes[t-1]`` and the past ``window`` one-minute log returns.

    ``closes[t-1] * exp(q)`` at the empirical ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles
    of ``ln(closes[s] / closes[s-1])`` for ``t - window <= s <= t - 1`` (NaN before ``window``
    returns exist). Uses no information from minute ``t`` itself.
    """
    closes = np.asarray(closes, float)
    r = np.diff(np.log(closes))
    n = len(closes)
    lo, hi = np.full(n, np.nan), np.full(n, np.nan)
    if len(r) >= window:
        from numpy.lib.stride_tricks import sliding_window_view

        views = sliding_window_view(r, window)[: n - window - 1 + 1]  # views[j] = r[j : j + window]
        qs = np.quantile(views, [(1 - level) / 2, (1 + level) / 2], axis=1)
        t = np.arange(window + 1, n + 1)[: len(views)]  # views[j] ends at return j + window - 1, i.e. close j + window
        keep = t < n
        lo[t[keep]] = closes[t[keep] - 1] * np.exp(qs[0][keep])
        hi[t[keep]] = closes[t[keep] - 1] * np.exp(qs[1][keep])
    return lo, hi


def _ratio(series: BacktestSeries, part: slice) -> tuple[float, NeweyWestDM]:
    a = np.abs(series.pred[part] - series.actual[part])
    b = np.abs(series.last[part] - series.actual[part])
    return float(a.mean() / b.mean()), newey_west_dm(a, b)


def summary(series: BacktestSeries, level: float = 0.9) -> dict[str, float]:
    """Every figure of issue 16 for one series: MAE ratio with Newey-West DM on the whole run and
    each half, sign balance, coverage overall and by width tercile, interval score beside the naive
    interval's (on the minutes where both exist), guard weight quantiles when exported.

    The naive interval needs consecutive closes: it is computed on ``series.last`` followed by
    the last realised close, i.e. on the scored minutes' own closes.
    """
    n = len(series.actual)
    out: dict[str, float] = {"minutes": n}
    half = n // 2
    for name, part in (("all", slice(None)), ("first_half", slice(0, half)), ("second_half", slice(half, None))):
        ratio, dm = _ratio(series, part)
        out |= {f"mae_ratio_{name}": ratio, f"nw_dm_{name}": dm.statistic, f"nw_p_{name}": dm.p_value}
    out["nw_lags"] = newey_west_lags(n)
    out["share_below"], out["moved_forecasts"] = sign_balance(series)
    inside = (series.lower <= series.actual) & (series.actual <= series.upper)
    out["coverage"] = float(inside.mean())
    for i, (cov, width) in enumerate(coverage_by_tercile(series), start=1):
        out[f"coverage_t{i}"], out[f"width_bp_t{i}"] = cov, width * 1e4
    closes = np.r_[series.last, series.actual[-1:]]
    lo, hi = rolling_quantile_interval(closes, level)
    lo, hi = lo[1:], hi[1:]  # aligned with series.actual
    ok = ~np.isnan(lo)
    if ok.any():
        model_is = interval_score(series.lower[ok], series.upper[ok], series.actual[ok], level).mean()
        naive_is = interval_score(lo[ok], hi[ok], series.actual[ok], level).mean()
        naive_in = (lo[ok] <= series.actual[ok]) & (series.actual[ok] <= hi[ok])
        out |= {"interval_score": float(model_is), "interval_score_naive": float(naive_is),
                "interval_score_ratio": float(model_is / naive_is), "coverage_naive": float(naive_in.mean())}
    if series.guard_weight is not None:
        w = series.guard_weight
        out |= {"guard_weight_median": float(np.median(w)), "guard_weight_min": float(w.min())}
    return out
