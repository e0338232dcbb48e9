"""The bad-print experiment of issue 16: corrupt one bar, backtest, score the minutes after it.

A bad print is one minute whose close (and low) are off by a factor (0.8: a 20 % drop that
is gone the next minute), in a file that is otherwise clean. The bar stays consistent
(close = low), so no input check can refuse it: the forecaster itself has to survive it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from shared.contracts.events import Bar
from shared.offline.backtest import BacktestResult, run_backtest

DEFAULT_AT = 10_000
"""Index of the corrupted bar (issue 16: "10,000 minutes into a file")."""
DEFAULT_FACTOR = 0.8
"""Factor applied to the bar's close and low (a 20 % bad print)."""


@dataclass
class BadPrintOutcome:
    """The clean and the corrupted backtests, and the figures comparing them (MAE ratios to persistence)."""

    clean: BacktestResult
    shocked: BacktestResult
    figures: dict[str, float]


def corrupt(bars: list[Bar], at: int, factor: float) -> list[Bar]:
    """A copy of ``bars`` with ``bars[at]``'s close and low multiplied by ``factor`` (low kept <= close).

    Raises
    ------
    IndexError
        If ``at`` is not an index of ``bars``.
    """
    out = list(bars)
    b = out[at]
    close = b.close * factor
    out[at] = replace(b, close=close, low=min(b.low * factor, close), high=max(b.high, close))
    return out


def _ratio(result: BacktestResult, start_ms: int) -> float:
    s = result.series
    keep = s.time_ms >= start_ms
    return float(np.abs(s.pred[keep] - s.actual[keep]).sum() / np.abs(s.last[keep] - s.actual[keep]).sum())


def bad_print_run(bars: list[Bar], at: int = DEFAULT_AT, factor: float = DEFAULT_FACTOR, model: str = "") -> BadPrintOutcome:
    """Backtest ``bars`` clean and with a bad print at ``at``; MAE ratios from the bad minute on.

    ``figures``: ``ratio_from_shock`` (the bad minute, its rebound and all later minutes),
    ``ratio_after_rebound`` (from two minutes after the bad one), the clean run's ratio over
    the same minutes, and the guard weight (minimum and at the end) and the largest sigma
    (bp per minute) from the shock on.
    """
    t_bad = bars[at].open_time_ms
    clean = run_backtest(bars, model)
    shocked = run_backtest(corrupt(bars, at, factor), model)
    s = shocked.series
    after = s.time_ms >= t_bad
    figures = {
        "ratio_from_shock": _ratio(shocked, t_bad),
        "ratio_from_shock_clean_file": _ratio(clean, t_bad),
        "ratio_after_rebound": _ratio(shocked, t_bad + 120_000),
        "ratio_after_rebound_clean_file": _ratio(clean, t_bad + 120_000),
        "minutes_from_shock": int(after.sum()),
    }
    if s.guard_weight is not None:
        figures |= {
            "guard_weight_before_shock": float(s.guard_weight[~after][-1]),
            "guard_weight_min_after": float(s.guard_weight[after].min()),
            "guard_weight_end": float(s.guard_weight[-1]),
            "sigma_bp_max_after": float(s.sigma[after].max() * 1e4),
            "sigma_bp_before_shock": float(s.sigma[~after][-1] * 1e4),
        }
    return BadPrintOutcome(clean, shocked, figures)
