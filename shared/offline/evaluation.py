"""Accuracy of realised forecasts next to the persistence baseline, per symbol.

The persistence (naive) forecast says the next close equals the last close; every
report shows it beside the model (``docs/architecture.md``, "Forecast semantics").
Latency percentiles use the nearest-rank method.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol


class RealisedForecast(Protocol):
    """What :func:`summarise` reads from a stored prediction (prices in quote currency)."""

    last_close: float
    predicted_close: float
    lower: float
    upper: float
    latency_ms: int
    realised_close: float | None


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile ``q`` in [0, 100] of ``values`` (NaN when empty)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class ForecastSummary:
    """Scores of one symbol's forecasts.

    ``mae_model``/``mae_persistence`` are mean absolute errors in quote currency over
    the ``realised`` predictions; ``coverage`` is the share of realised closes inside
    the interval; latencies in ms (tick ingest to prediction).
    """

    predictions: int
    realised: int
    mae_model: float
    mae_persistence: float
    coverage: float
    latency_p50_ms: float
    latency_p99_ms: float

    @property
    def mae_ratio(self) -> float:
        """``mae_model / mae_persistence`` (< 1: better than persistence; NaN if undefined)."""
        return self.mae_model / self.mae_persistence if self.mae_persistence else math.nan


def summarise(records: Iterable[RealisedForecast]) -> ForecastSummary:
    """Score ``records`` (one symbol's predictions, realised or not)."""
    records = list(records)
    done = [r for r in records if r.realised_close is not None]
    n = len(done)
    latencies = [r.latency_ms for r in records]

    def mean(values: list[float]) -> float:
        return sum(values) / len(values) if values else math.nan

    return ForecastSummary(
        predictions=len(records),
        realised=n,
        mae_model=mean([abs(r.predicted_close - r.realised_close) for r in done]),
        mae_persistence=mean([abs(r.last_close - r.realised_close) for r in done]),
        coverage=mean([1.0 if r.lower <= r.realised_close <= r.upper else 0.0 for r in done]),
        latency_p50_ms=percentile(latencies, 50),
        latency_p99_ms=percentile(latencies, 99),
    )


# ----------------------------------------------------------------------------------------------
# Statistics for backtests (see shared/offline/backtest.py)


@dataclass(frozen=True)
class DieboldMariano:
    """Diebold-Mariano test of equal accuracy of two forecasts.

    ``statistic`` is asymptotically standard normal under the null of equal expected loss;
    negative means the first forecast had the smaller loss. ``p_value`` is two-sided.
    """

    statistic: float
    p_value: float
    n: int


def diebold_mariano(loss_a: Sequence[float], loss_b: Sequence[float], horizon: int = 1) -> DieboldMariano:
    """Diebold-Mariano statistic of the loss differential ``d_t = loss_a[t] - loss_b[t]``.

    F. X. Diebold and R. S. Mariano, "Comparing predictive accuracy", Journal of Business &
    Economic Statistics 13 (1995): ``DM = mean(d) / sqrt(f / n)`` with ``f`` the long-run
    variance of ``d``, estimated from its autocovariances up to lag ``horizon - 1`` (a
    ``horizon``-step forecast's errors are MA(horizon - 1)); for one-step forecasts ``f`` is
    the sample variance. p-value from the standard normal (``erfc(|DM| / sqrt 2)``).

    Parameters
    ----------
    loss_a, loss_b : per-step losses of the two forecasts (same length n >= 2), e.g.
        absolute errors in USD.
    horizon : forecast horizon in steps (>= 1).

    Raises
    ------
    ValueError
        If the lengths differ, fewer than 2 losses are given, or ``horizon < 1``.

    Examples
    --------
    >>> r = diebold_mariano([1.0, 2.0, 1.0, 2.0], [2.0, 2.0, 2.0, 2.0])
    >>> round(r.statistic, 4), r.n
    (-2.0, 4)
    """
    import numpy as np

    a = np.asarray(loss_a, dtype=float)
    b = np.asarray(loss_b, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"loss sequences must be 1-D and of equal length, got {a.shape} and {b.shape}")
    if len(a) < 2:
        raise ValueError("need at least 2 losses")
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")
    d = a - b
    n = len(d)
    mean = float(d.mean())
    dc = d - mean
    lrv = float(dc @ dc) / n
    for lag in range(1, horizon):
        lrv += 2.0 * float(dc[lag:] @ dc[:-lag]) / n
    if lrv <= 0:
        stat = 0.0 if mean == 0 else math.copysign(math.inf, mean)
    else:
        stat = mean / math.sqrt(lrv / n)
    return DieboldMariano(stat, math.erfc(abs(stat) / math.sqrt(2.0)), n)


def wilson_interval(successes: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (default 95 %, ``z = Phi^-1(0.975)``).

    E. B. Wilson, "Probable inference, the law of succession, and statistical inference",
    JASA 22 (1927): ``(p + z^2/2n ± z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n)``.

    Raises
    ------
    ValueError
        If ``n < 1`` or ``successes`` is outside ``[0, n]``.

    Examples
    --------
    >>> lo, hi = wilson_interval(50, 100)
    >>> round(lo, 4), round(hi, 4)
    (0.4038, 0.5962)
    """
    if n < 1 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n and n >= 1, got {successes}, {n}")
    p = successes / n
    z2 = z * z
    centre = p + z2 / (2 * n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    denom = 1 + z2 / n
    # exact at p = 0 or 1 (one bound equals p); min/max only remove rounding there
    return max(0.0, min(p, (centre - half) / denom)), min(1.0, max(p, (centre + half) / denom))
