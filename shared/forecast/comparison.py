"""Is one forecast more accurate than another? The Diebold-Mariano test with a Newey-West variance.

For per-minute losses ``a_t`` and ``b_t`` of two forecasts of the same minutes (absolute
errors in quote currency, say), the loss differential ``d_t = a_t - b_t`` has mean 0 under
equal accuracy (F. X. Diebold and R. S. Mariano, "Comparing predictive accuracy", Journal of
Business & Economic Statistics 13, 1995). Its long-run variance is estimated with the
Bartlett kernel (W. K. Newey and K. D. West, Econometrica 55, 1987) up to lag
``floor(4 (n / 100)^(2/9))`` (Newey & West, Review of Economic Studies 61, 1994), since
one-minute errors of online models are autocorrelated through volatility clustering.
``DM = mean(d) / sqrt(lrv / n)``; negative means ``a`` had the smaller loss.

For the short samples of a promotion holdout, the statistic is also given with the
small-sample correction of D. Harvey, S. Leybourne and P. Newbold ("Testing the equality of
prediction mean squared errors", International Journal of Forecasting 13, 1997):
``DM* = DM * sqrt((n + 1 - 2h + h (h - 1) / n) / n)`` with ``h = 1``, judged against
Student's t with ``n - 1`` degrees of freedom.

>>> r = paired_test([1.0, 2.0, 1.0, 2.0, 1.0, 1.5], [2.0, 2.0, 2.0, 2.5, 2.0, 2.0])
>>> r.n, r.statistic < 0, 0 < r.p_better < 0.05
(6, True, True)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats


def newey_west_lags(n: int) -> int:
    """Newey & West's (1994) rule of thumb ``floor(4 (n / 100)^(2/9))`` (0 for n < 1).

    >>> newey_west_lags(44_529), newey_west_lags(100), newey_west_lags(10)
    (15, 4, 2)
    """
    return int(math.floor(4.0 * (n / 100.0) ** (2.0 / 9.0))) if n >= 1 else 0


@dataclass(frozen=True)
class PairedTest:
    """Diebold-Mariano comparison of loss ``a`` against loss ``b`` on the same ``n`` minutes.

    Attributes
    ----------
    n : paired minutes; lags : Newey-West truncation lag.
    mean_diff : ``mean(a - b)`` in the unit of the losses (e.g. USD); negative = ``a`` better.
    statistic : DM with the Newey-West variance (asymptotically N(0, 1) under equal accuracy).
    p_two_sided : two-sided p of ``statistic`` from the normal.
    statistic_hln : Harvey-Leybourne-Newbold corrected statistic.
    p_better : one-sided p that ``a`` is better, from Student's t with ``n - 1`` degrees of
        freedom on ``statistic_hln`` (small = evidence that ``a`` has the smaller loss).
    """

    n: int
    lags: int
    mean_diff: float
    statistic: float
    p_two_sided: float
    statistic_hln: float
    p_better: float

    def to_dict(self) -> dict[str, float]:
        """JSON-ready dict (non-finite values as ``None``)."""
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in asdict(self).items()}


def paired_test(loss_a: Sequence[float], loss_b: Sequence[float], lags: int | None = None) -> PairedTest:
    """Compare two forecasts' per-minute losses (see the module docstring).

    Raises
    ------
    ValueError
        Lengths differ, or fewer than 2 pairs.
    """
    a = np.asarray(loss_a, dtype=float)
    b = np.asarray(loss_b, dtype=float)
    if a.shape != b.shape or a.ndim != 1 or len(a) < 2:
        raise ValueError(f"need two 1-D loss sequences of equal length >= 2, got {a.shape} and {b.shape}")
    d = a - b
    n = len(d)
    lags = newey_west_lags(n) if lags is None else int(lags)
    mean = float(d.mean())
    dc = d - mean
    lrv = float(dc @ dc) / n
    for lag in range(1, min(lags, n - 1) + 1):
        lrv += 2.0 * (1.0 - lag / (lags + 1.0)) * float(dc[lag:] @ dc[:-lag]) / n
    if lrv <= 0.0:
        stat = 0.0 if mean == 0 else math.copysign(math.inf, mean)
    else:
        stat = mean / math.sqrt(lrv / n)
    hln = stat * math.sqrt((n - 1) / n)
    return PairedTest(n, lags, mean, stat, math.erfc(abs(stat) / math.sqrt(2.0)), hln,
                      float(stats.t.cdf(hln, df=n - 1)))
