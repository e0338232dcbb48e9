"""Incremental features from completed one-minute bars, per symbol.

:class:`BarFeatures` keeps just the state it needs (a short ring of closes and
Wilder's running averages) and turns each completed bar into a feature dict in
O(1). Only completed bars enter, so no feature can see the minute it helps to
predict. Windows that are not yet full use the bars available so far.

Features (all dimensionless):

============  =================================================================
``ret_1``     log return of the last minute, ``ln(c_t / c_{t-1})``
``ret_5``     log return over the last 5 minutes, ``ln(c_t / c_{t-5})``
``ret_15``    log return over the last 15 minutes
``vol_15``    sample standard deviation of the last 15 one-minute log returns
``rsi_14``    Wilder's RSI(14) rescaled from [0, 100] to [-1, 1]
``range_1``   ``ln(high / low)`` of the last bar (Parkinson's range, unscaled)
============  =================================================================

RSI follows J. Welles Wilder, *New Concepts in Technical Trading Systems* (1978):
the first average gain/loss is the simple mean of the first 14 changes, then
``avg = (avg * 13 + change) / 14``.

Examples
--------
>>> from shared.events import Bar
>>> f = BarFeatures()
>>> f.update(Bar("x", "S", 0, 100, 100, 100, 100, 1, 1)) is None
True
>>> x = f.update(Bar("x", "S", 60_000, 100, 101, 100, 101, 1, 1))
>>> round(x["ret_1"], 6), x["rsi_14"]
(0.00995, 1.0)
"""

from __future__ import annotations

import math
from collections import deque

from shared.events import Bar

FEATURE_NAMES = ("ret_1", "ret_5", "ret_15", "vol_15", "rsi_14", "range_1")
"""Names of the features :meth:`BarFeatures.update` returns, in a stable order."""

RSI_PERIOD = 14
VOL_WINDOW = 15
LONGEST_LAG = 15


class BarFeatures:
    """Feature state for one symbol; feed it completed bars in time order.

    ``update(bar)`` costs O(1) time; the state holds at most 16 closes and 15
    returns, so it pickles small and can be warmed from stored history.
    """

    __slots__ = ("_closes", "_returns", "_sum", "_sumsq", "_gain", "_loss", "_changes")

    def __init__(self) -> None:
        self._closes: deque[float] = deque(maxlen=LONGEST_LAG + 1)
        self._returns: deque[float] = deque(maxlen=VOL_WINDOW)
        self._sum = 0.0
        self._sumsq = 0.0
        self._gain = 0.0
        self._loss = 0.0
        self._changes = 0

    def __getstate__(self) -> dict:
        return {name: getattr(self, name) for name in self.__slots__}

    def __setstate__(self, state: dict) -> None:
        for name, value in state.items():
            setattr(self, name, value)

    @property
    def bars_seen(self) -> int:
        """How many bars have entered (capped at the longest window + 1)."""
        return len(self._closes)

    def update(self, bar: Bar) -> dict[str, float] | None:
        """Add a completed bar; return its features, or ``None`` for the very first bar.

        Raises
        ------
        ValueError
            If ``bar.close`` or ``bar.low`` is not a positive number (the event
            codec already refuses those, so this guards direct callers).
        """
        close = bar.close
        if not (close > 0 and bar.low > 0):
            raise ValueError(f"bar prices must be > 0, got close={close!r} low={bar.low!r}")
        closes = self._closes
        if not closes:
            closes.append(close)
            return None
        prev = closes[-1]
        r = math.log(close / prev)

        returns = self._returns
        if len(returns) == returns.maxlen:
            old = returns[0]
            self._sum -= old
            self._sumsq -= old * old
        returns.append(r)
        self._sum += r
        self._sumsq += r * r

        change = close - prev
        gain = change if change > 0 else 0.0
        loss = -change if change < 0 else 0.0
        self._changes += 1
        n = self._changes
        if n <= RSI_PERIOD:  # simple mean of the first 14 changes (Wilder's seed)
            self._gain += (gain - self._gain) / n
            self._loss += (loss - self._loss) / n
        else:
            self._gain = (self._gain * (RSI_PERIOD - 1) + gain) / RSI_PERIOD
            self._loss = (self._loss * (RSI_PERIOD - 1) + loss) / RSI_PERIOD
        total = self._gain + self._loss
        rsi = 0.0 if total == 0 else (self._gain - self._loss) / total  # = (RSI - 50) / 50

        closes.append(close)
        k = len(returns)
        var = (self._sumsq - self._sum * self._sum / k) / (k - 1) if k > 1 else 0.0
        return {
            "ret_1": r,
            "ret_5": math.log(close / closes[-min(6, len(closes))]),
            "ret_15": math.log(close / closes[0]),
            "vol_15": math.sqrt(var) if var > 0 else 0.0,
            "rsi_14": rsi,
            "range_1": math.log(bar.high / bar.low),
        }
