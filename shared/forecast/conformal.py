"""Prediction intervals calibrated online: normalised, adaptive conformal prediction.

Nonconformity score of a realised minute: ``s_t = |r_t - r_hat_t| / sigma_t``, the absolute
out-of-sample error of the log return in units of the volatility ``sigma_t`` known when the
forecast was made (normalised conformal prediction: H. Papadopoulos, V. Vovk, A. Gammerman,
"Normalized nonconformity measures for regression conformal prediction", AIA 2008). The
interval is ``r_hat ± q_t * sigma_t`` with ``q_t`` the conformal quantile of the last
``window`` scores (V. Vovk, A. Gammerman, G. Shafer, *Algorithmic Learning in a Random
World*, 2005): the ``ceil((n + 1)(1 - a))``-th smallest of ``n`` scores.

Markets are not exchangeable, so the level ``a`` is itself adapted online (adaptive
conformal inference, I. Gibbs and E. Candès, "Adaptive conformal inference under
distribution shift", NeurIPS 2021): after each minute ``a <- a + rate * (alpha - miss)``,
where ``alpha = 1 - level`` and ``miss`` is 1 if the realised return fell outside the
interval. Their Proposition 4.1 bounds the long-run miss rate on *any* sequence:
``|mean(miss) - alpha| <= (max(a_1, 1 - a_1) + rate) / (rate * T)`` after T minutes.

Defaults, derived from the level rather than fitted:

- ``rate``: the smallest rate for which that bound is at most 1 percentage point after one
  week of minutes (T = 10,080): ``rate = (1 - alpha) / (0.01 * T - 1)``
  (≈ 0.009 at 90 %), see :func:`default_rate`;
- ``window``: enough scores that the quantile rests on at least 100 exceedances,
  ``ceil(100 / alpha)`` (1,000 at 90 %, about 17 hours); the binomial standard error of the
  window's coverage is then ``sqrt(alpha (1 - alpha) / window)`` ≈ 0.95 pp, see
  :func:`default_window`;
- before ``ceil(1 / alpha)`` scores exist (the conformal quantile is infinite), the width
  is the Gaussian quantile ``z_{1 - alpha / 2}``.

River's ``conf.RegressionJackknife`` keeps un-normalised residual quantiles at a fixed level;
the level adapted here needs quantiles at a moving level, so the window is a sorted list.

Examples
--------
>>> c = AdaptiveConformalInterval(0.9)
>>> round(c.half_width(), 4)  # Gaussian cold start
1.6449
>>> for i in range(2000):
...     _ = c.update(float(i % 100) / 100)
>>> 0.8 < c.half_width() < 1.0
True
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from statistics import NormalDist

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


def default_window(level: float) -> int:
    """Scores kept: ``ceil(MIN_EXCEEDANCES / alpha)`` with ``alpha = 1 - level``.

    >>> default_window(0.9), default_window(0.99)
    (1000, 10000)
    """
    return math.ceil(MIN_EXCEEDANCES / (1.0 - level) - 1e-9)


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
        if not score >= 0.0:
            raise ValueError(f"score must be >= 0, got {score!r}")
        q = self.half_width() if half_width is None else half_width
        miss = score > q
        self.seen += 1
        self.misses += miss
        self.alpha_t += self.rate * (self.alpha - miss)
        fifo, ordered = self._fifo, self._sorted
        if len(fifo) == self.window:
            old = fifo.popleft()
            del ordered[bisect.bisect_left(ordered, old)]
        fifo.append(score)
        bisect.insort(ordered, score)
        return miss


class MondrianInterval:
    """Adaptive conformal intervals per tercile of the volatility scale: coverage in calm and in storm.

    Mondrian conformal prediction (V. Vovk, A. Gammerman, G. Shafer, *Algorithmic Learning in a
    Random World*, 2005, §4.5; V. Vovk, D. Lindsay, I. Nouretdinov, A. Gammerman, "Mondrian
    confidence machine", 2003) calibrates separately within each category of a taxonomy fixed
    before the label is seen, so coverage holds *within* each category and not only on average.
    Here the category is the tercile of the forecast's ``sigma`` among the last
    ``bins * window`` scales seen, and each category runs its own
    :class:`AdaptiveConformalInterval` (so the ACI bound holds per category, on the minutes of
    that category). Why: a realised-volatility scale over-reacts (volatility mean-reverts), so
    one quantile for all minutes covers calm minutes too little and storm minutes too much
    (issue 16: 87 % and 92.5 % by tercile of width at 90 % overall).

    Parameters
    ----------
    level : target coverage in (0, 1); window, rate : of each category's interval (defaults
        :func:`default_window`, :func:`default_rate`); bins : number of categories (3, terciles).

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
        self.cells = [AdaptiveConformalInterval(level, window, rate) for _ in range(bins)]
        self.level = level
        self.history = bins * self.cells[0].window
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
