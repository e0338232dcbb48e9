"""Prediction intervals calibrated online: normalised conformal scores, per volatility tercile, tracked.

Nonconformity score of a realised minute: ``s_t = |r_t - r_hat_t| / sigma_t``, the absolute
out-of-sample error of the log return in units of the volatility ``sigma_t`` known when the
forecast was made (normalised conformal prediction: H. Papadopoulos, V. Vovk, A. Gammerman,
"Normalized nonconformity measures for regression conformal prediction", AIA 2008). The
interval is ``r_hat ± q_t * sigma_t``.

Served: :class:`MondrianInterval`, one :class:`QuantileTracker` per tercile of ``sigma``.
The tracker is the quantile tracking of A. N. Angelopoulos, E. J. Candès and R. J.
Tibshirani, "Conformal PID control for time series prediction", NeurIPS 2023, §2 (online
gradient descent on the quantile loss): after each minute ``q <- q + step * (miss - alpha)``
with ``alpha = 1 - level`` and ``miss = 1`` if the score exceeded ``q``. Summing the updates
telescopes, so on *any* sequence of scores, after T minutes,
``mean(miss) - alpha = (q_{T+1} - q_1) / (step * T)`` exactly (their Proposition 1 bounds it
by ``(B + step) / (step * T)`` for scores in ``[0, B]``).

Defaults, derived from the level and the score bound rather than fitted:

- ``step``: the smallest step for which that bound is at most 1 percentage point after one
  week of minutes (T = 10,080) when ``q`` ranges over ``[0, Z_CLIP]`` (five sigma, the bound
  the forecaster winsorises labels at): ``step = Z_CLIP / (0.01 * T - 1)`` ≈ 0.050, see
  :func:`default_step`;
- ``q_1``: the Gaussian quantile ``z_{1 - alpha / 2}`` (1.645 at 90 %).

Why a tracker and not the quantile of a window of scores adapted by ACI (below, kept for
models pickled before): on both one-minute files the windowed quantile (1,000 scores per
tercile, about two days) over-covered the widest minutes (91.5 % in the widest tercile of
width on Binance 2019 at 90 % overall) because a window of past scores lags the score
distribution after volatility bursts; the tracker moves with the misses themselves (issue 16,
docs/forecasting.md).

:class:`AdaptiveConformalInterval` (the interval of models pickled before the tracker):
``q_t`` is the conformal quantile of the last ``window`` scores (V. Vovk, A. Gammerman,
G. Shafer, *Algorithmic Learning in a Random World*, 2005): the ``ceil((n + 1)(1 - a))``-th
smallest of ``n`` scores, with the level ``a`` adapted online (adaptive conformal inference,
I. Gibbs and E. Candès, "Adaptive conformal inference under distribution shift", NeurIPS
2021): after each minute ``a <- a + rate * (alpha - miss)``. Their Proposition 4.1 bounds the
long-run miss rate on *any* sequence: ``|mean(miss) - alpha| <= (max(a_1, 1 - a_1) + rate) /
(rate * T)`` after T minutes. Defaults: ``rate`` from that bound at 1 pp after one week
(≈ 0.009 at 90 %, :func:`default_rate`); ``window = ceil(100 / alpha)`` scores (at least 100
exceedances, :func:`default_window`); before ``ceil(1 / alpha)`` scores exist, the Gaussian
quantile.

Examples
--------
>>> c = AdaptiveConformalInterval(0.9)
>>> round(c.half_width(), 4)  # Gaussian cold start
1.6449
>>> for i in range(2000):
...     _ = c.update(float(i % 100) / 100)
>>> 0.8 < c.half_width() < 1.0
True
>>> t = QuantileTracker(0.9)
>>> q1 = t.q
>>> for i in range(20_000):
...     _ = t.update(float(i % 100) / 100)
>>> 0.8 < t.half_width() < 1.05  # the 90 % quantile of 0.00, 0.01, ..., 0.99, within a step
True
>>> abs(t.misses / t.seen - 0.1 - (t.q - q1) / (t.step * t.seen)) < 1e-12  # the identity
True
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from statistics import NormalDist

from shared.forecast.limits import Z_CLIP

COVERAGE_TOLERANCE = 0.01
"""Long-run coverage error the adaptive rate guarantees after :data:`GUARANTEE_MINUTES` (1 pp)."""
GUARANTEE_MINUTES = 10_080
"""One week of one-minute bars."""
MIN_EXCEEDANCES = 100
"""Scores beyond the quantile that the window must hold on average."""


def default_rate(level: float) -> float:
    """ACI step ``(1 - alpha) / (COVERAGE_TOLERANCE * GUARANTEE_MINUTES - 1)`` for ``alpha = 1 - level``.

    Solves Gibbs & Candès' bound ``(max(alpha, 1 - alpha) + rate) / (rate T) = tolerance`` for rate.

    >>> round(default_rate(0.9), 5)
    0.00902
    """
    alpha = 1.0 - level
    return max(alpha, 1.0 - alpha) / (COVERAGE_TOLERANCE * GUARANTEE_MINUTES - 1.0)


def default_step(level: float) -> float:
    """Quantile-tracking step ``Z_CLIP / (COVERAGE_TOLERANCE * GUARANTEE_MINUTES - 1)`` (score units).

    Solves Angelopoulos, Candès & Tibshirani's bound ``(B + step) / (step T) = tolerance`` for the
    step, with ``B = Z_CLIP`` (5 sigma) the range the half-width moves in; it does not depend on
    the level (``level`` is validated only).

    Raises
    ------
    ValueError
        If ``level`` is not in (0, 1).

    >>> round(default_step(0.9), 4)
    0.0501
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"interval_level must lie in (0, 1), got {level}")
    return Z_CLIP / (COVERAGE_TOLERANCE * GUARANTEE_MINUTES - 1.0)


def default_window(level: float) -> int:
    """Scores kept: ``ceil(MIN_EXCEEDANCES / alpha)`` with ``alpha = 1 - level``.

    >>> default_window(0.9), default_window(0.99)
    (1000, 10000)
    """
    return math.ceil(MIN_EXCEEDANCES / (1.0 - level) - 1e-9)


def _count_miss(interval, score: float, half_width: float | None) -> bool:
    """Whether ``score`` fell outside ``half_width`` (default: the interval's current one), counted in
    the interval's ``seen`` and ``misses``.

    Raises
    ------
    ValueError
        If ``score`` is negative or NaN.
    """
    if not score >= 0.0:
        raise ValueError(f"score must be >= 0, got {score!r}")
    q = interval.half_width() if half_width is None else half_width
    miss = score > q
    interval.seen += 1
    interval.misses += miss
    return miss


class AdaptiveConformalInterval:
    """Half-width of a symmetric interval in score units, calibrated online.

    Parameters
    ----------
    level : target coverage in (0, 1), e.g. 0.9.
    window : number of recent scores kept (default :func:`default_window`).
    rate : ACI step size (default :func:`default_rate`).

    Raises
    ------
    ValueError
        If ``level`` is not in (0, 1), ``window`` < 1 or ``rate`` is not > 0.
    """

    def __init__(self, level: float, window: int | None = None, rate: float | None = None) -> None:
        if not 0.0 < level < 1.0:
            raise ValueError(f"interval_level must lie in (0, 1), got {level}")
        self.level = level
        self.alpha = 1.0 - level
        self.window = default_window(level) if window is None else int(window)
        self.rate = default_rate(level) if rate is None else float(rate)
        if self.window < 1 or not self.rate > 0:
            raise ValueError(f"window must be >= 1 and rate > 0, got {window}, {rate}")
        self.alpha_t = self.alpha
        self.misses = 0
        self.seen = 0
        self._fifo: deque[float] = deque()
        self._sorted: list[float] = []
        self._cold = NormalDist().inv_cdf(1.0 - self.alpha / 2.0)
        self._min_scores = math.ceil(1.0 / self.alpha - 1e-9)

    def half_width(self) -> float:
        """Current half-width ``q_t`` (score units, i.e. multiples of sigma; may be ``inf``)."""
        n = len(self._sorted)
        if n < self._min_scores:
            return self._cold
        k = math.ceil((n + 1) * (1.0 - self.alpha_t))
        if k > n:
            return math.inf
        if k < 1:
            return 0.0
        return self._sorted[k - 1]

    def update(self, score: float, half_width: float | None = None) -> bool:
        """Add the score of a realised minute; return whether it was a miss.

        Parameters
        ----------
        score : ``|r - r_hat| / sigma`` of the minute, >= 0.
        half_width : the half-width the minute's interval was made with (default: the current one).

        Raises
        ------
        ValueError
            If ``score`` is negative or NaN.
        """
        miss = _count_miss(self, score, half_width)
        self.alpha_t += self.rate * (self.alpha - miss)
        fifo, ordered = self._fifo, self._sorted
        if len(fifo) == self.window:
            old = fifo.popleft()
            del ordered[bisect.bisect_left(ordered, old)]
        fifo.append(score)
        bisect.insort(ordered, score)
        return miss


class QuantileTracker:
    """Half-width of a symmetric interval in score units, tracked online (quantile tracking).

    ``q <- max(0, q + step * (miss - alpha))`` after each realised minute (Angelopoulos, Candès
    & Tibshirani 2023, §2; module docstring), i.e. projected onto ``q >= 0``. The projection
    binds only after minutes scoring exactly 0 (the forecast hit the close, as in a market
    that does not move), which any width covers; without it a flat stretch would drive ``q``
    far below 0 and the first moves after it would all be misses. Where it binds, the identity
    of the module docstring becomes ``mean(miss) - alpha <= (q_{T+1} - q_1) / (step T)``: it
    can only add coverage, on such ties.

    Parameters
    ----------
    level : target coverage in (0, 1), e.g. 0.9.
    step : tracking step in score units (multiples of sigma; default :func:`default_step`).

    Attributes
    ----------
    q : float
        Tracked quantile (score units, >= 0); starts at the Gaussian ``z_{1 - alpha / 2}``.
    misses, seen : int
        Scores above the half-width they were made with, and scores seen.

    Raises
    ------
    ValueError
        If ``level`` is not in (0, 1) or ``step`` is not > 0.
    """

    def __init__(self, level: float, step: float | None = None) -> None:
        self.step = default_step(level) if step is None else float(step)
        if not self.step > 0:
            raise ValueError(f"step must be > 0, got {step}")
        self.level = level
        self.alpha = 1.0 - level
        self.q = NormalDist().inv_cdf(1.0 - self.alpha / 2.0)
        self.misses = 0
        self.seen = 0

    def half_width(self) -> float:
        """Current half-width (score units, i.e. multiples of sigma; >= 0)."""
        return self.q

    def update(self, score: float, half_width: float | None = None) -> bool:
        """Add the score of a realised minute; return whether it was a miss.

        Parameters
        ----------
        score : ``|r - r_hat| / sigma`` of the minute, >= 0.
        half_width : the half-width the minute's interval was made with (default: the current one).

        Raises
        ------
        ValueError
            If ``score`` is negative or NaN.
        """
        miss = _count_miss(self, score, half_width)
        q = self.q + self.step * (miss - self.alpha)
        self.q = q if q > 0.0 else 0.0
        return miss


class MondrianInterval:
    """Intervals tracked per tercile of the volatility scale: coverage in calm and in storm.

    Mondrian conformal prediction (V. Vovk, A. Gammerman, G. Shafer, *Algorithmic Learning in a
    Random World*, 2005, §4.5; V. Vovk, D. Lindsay, I. Nouretdinov, A. Gammerman, "Mondrian
    confidence machine", 2003) calibrates separately within each category of a taxonomy fixed
    before the label is seen, so coverage holds *within* each category and not only on average.
    Here the category is the tercile of the forecast's ``sigma`` among the last
    ``bins * window`` scales seen, and each category runs its own :class:`QuantileTracker`
    (so the tracking guarantee holds per category, on the minutes of that category). Why: a
    realised-volatility scale over-reacts (volatility mean-reverts), so one quantile for all
    minutes covers calm minutes too little and storm minutes too much (issue 16: 87 % and
    92.5 % by tercile of width at 90 % overall).

    Parameters
    ----------
    level : target coverage in (0, 1).
    window : scales kept per category for the terciles (default :func:`default_window`, 1,000
        at 90 %: ``bins * window`` = 3,000 minutes, about two days).
    rate : tracking step of each category (default :func:`default_step`).
    bins : number of categories (3, terciles).

    Notes
    -----
    Intervals pickled before the tracker keep their :class:`AdaptiveConformalInterval` cells
    (same methods), so a stored model forecasts as it did.

    Raises
    ------
    ValueError
        If ``bins`` < 1, ``level`` is not in (0, 1), ``window`` < 1 or ``rate`` is not > 0.

    Examples
    --------
    >>> m = MondrianInterval(0.9)
    >>> for i in range(3000):
    ...     s = 1.0 + i % 3  # three volatility levels
    ...     b = m.bin_of(s)
    ...     _ = m.update(float(i % 97) / 97 * (2.0 if s == 3.0 else 1.0), m.half_width(b), b, s)
    >>> m.bin_of(0.5), m.bin_of(2.0), m.bin_of(9.0)
    (0, 1, 2)
    """

    def __init__(self, level: float, window: int | None = None, rate: float | None = None, bins: int = 3) -> None:
        if bins < 1:
            raise ValueError(f"bins must be >= 1, got {bins}")
        self.cells = [QuantileTracker(level, rate) for _ in range(bins)]
        window = default_window(level) if window is None else int(window)
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.level = level
        self.history = bins * window
        self._fifo: deque[float] = deque()
        self._sorted: list[float] = []

    @property
    def misses(self) -> int:
        """Misses over all categories."""
        return sum(c.misses for c in self.cells)

    @property
    def seen(self) -> int:
        """Scores over all categories."""
        return sum(c.seen for c in self.cells)

    def bin_of(self, sigma: float) -> int:
        """Category of a forecast made with scale ``sigma``: its tercile among the recent scales."""
        n = len(self._sorted)
        if n == 0:
            return len(self.cells) // 2
        rank = bisect.bisect_left(self._sorted, sigma) + bisect.bisect_right(self._sorted, sigma)
        return min(len(self.cells) - 1, rank * len(self.cells) // (2 * n))

    def half_width(self, category: int) -> float:
        """Current half-width of ``category`` (score units; see :meth:`AdaptiveConformalInterval.half_width`)."""
        return self.cells[category].half_width()

    def update(self, score: float, half_width: float, category: int, sigma: float) -> bool:
        """Add a realised minute's score to its category, and its ``sigma`` to the recent scales; return whether it missed.

        Raises
        ------
        ValueError
            If ``score`` is negative or NaN.
        """
        miss = self.cells[category].update(score, half_width)
        fifo, ordered = self._fifo, self._sorted
        if len(fifo) == self.history:
            del ordered[bisect.bisect_left(ordered, fifo.popleft())]
        fifo.append(sigma)
        bisect.insort(ordered, sigma)
        return miss
