"""Incremental features from completed one-minute bars, per symbol.

:class:`BarFeatures` keeps just the state it needs (rings of recent closes,
returns and volumes, running sums, River's exponentially weighted and rolling
statistics) and turns each completed bar into a feature dict in O(1). Only
completed bars enter, so no feature can see the minute it helps to predict.

Features (all dimensionless; "returns" are natural-log returns, so 1e-4 = 1 basis point):

===============  ===========================================================================
``ret_1``        log return of the last minute, ``ln(c_t / c_{t-1})``
``ret_5``        log return over the last 5 minutes, ``ln(c_t / c_{t-5})``
``ret_15``       log return over the last 15 minutes
``ret_60``       log return over the last 60 minutes
``vol_15``       jump-robust realised volatility per minute over the last 15 returns (MedRV, below)
``vol_60``       the same over the last 60 returns
``vol_1440``     the same over the last 1,440 returns (one day)
``rsi_14``       Wilder's RSI(14) rescaled from [0, 100] to [-1, 1]
``macd_hist``    MACD histogram (12, 26, 9) divided by the close
``bb_pctb``      Bollinger %B (20 bars, 2 standard deviations): 0 at the lower band, 1 at the upper
``atr_14``       Wilder's ATR(14) divided by the close
``vwap_dist``    ``ln(c_t / VWAP_60)``: distance of the close from the 60-bar rolling VWAP
``volume_z``     z-score of the bar's volume within the last 60 bars' volumes (bar included)
``tod_sin``      ``sin(2 pi m / 1440)``, m = minute of day (UTC) of the minute being forecast
``tod_cos``      ``cos(2 pi m / 1440)``
``window_fill``  share of the longest window (60 returns) filled so far, in (0, 1]
===============  ===========================================================================

Sources of the formulas:

- realised volatility: T. G. Andersen and T. Bollerslev, "Answering the skeptics: yes,
  standard volatility models do provide accurate forecasts", International Economic
  Review 39 (1998) -- the sum of squared intraday returns; here its per-minute mean,
  so windows of different lengths share one unit. Made jump-robust twice over:

  * each one-minute return is first winsorised to ``±WINSOR_SD`` times the previous
    ``vol_60`` (once ``SHORT_VOL`` returns exist), as the forecaster's labels are: a bad
    print of -20 % then +20 % enters as two 5-sigma minutes, not as two 100-sigma ones;
  * the squared return is replaced by MedRV's term (T. G. Andersen, D. Dobrev and
    E. Schaumburg, "Jump-robust volatility estimation using nearest neighbor truncation",
    Journal of Econometrics 169, 2012): ``c * med(|r_{i-1}|, |r_i|, |r_{i+1}|)^2`` with
    ``c = pi / (6 - 4 sqrt 3 + pi)`` (≈ 1.4176, unbiased for Gaussian returns), the newest
    term centred on the previous return; an isolated jump then does not enter at all.
    Until three returns exist the plain squared return stands in;
- RSI and ATR: J. Welles Wilder, *New Concepts in Technical Trading Systems* (1978):
  the first average is the simple mean of the first 14 values, then
  ``avg = (avg * 13 + value) / 14``; the true range is
  ``max(high - low, |high - c_{t-1}|, |low - c_{t-1}|)`` (``high - low`` for the first bar);
- MACD: G. Appel, *Technical Analysis: Power Tools for Active Investors* (2005):
  ``EMA_12(c) - EMA_26(c)``, signal line ``EMA_9(MACD)``, histogram = MACD - signal,
  with ``EMA_n`` the exponential average of smoothing ``2 / (n + 1)`` seeded with the
  first value (pandas ``ewm(span=n, adjust=False)``, River ``stats.EWMean``);
- Bollinger bands: J. Bollinger, *Bollinger on Bollinger Bands* (2001): middle band
  = 20-bar simple mean, bands at ±2 population standard deviations,
  ``%B = (c - lower) / (upper - lower)``;
- VWAP of the typical price ``(high + low + close) / 3`` weighted by volume
  (S. Berkowitz, D. Logue, E. Noser, "The total cost of transactions on the NYSE",
  Journal of Finance 43, 1988).

Warm-up (windows not yet full): every window uses the bars available so far, like
pandas ``rolling(n, min_periods=1)``; the neutral value is used where a statistic is
undefined: ``bb_pctb`` = 0.5 and ``volume_z`` = 0 when the window has no spread,
``vwap_dist`` = 0 when the window traded no volume, ``rsi_14`` = 0 when prices have
not moved. ``window_fill`` tells the model how much history the features rest on;
:class:`shared.forecast.forecaster.ReturnForecaster` weights learning and shrinks its forecast
by it. A dict is returned from the second bar on (the first has no return).

Examples
--------
>>> from shared.contracts.events import Bar
>>> f = BarFeatures()
>>> f.update(Bar("x", "S", 0, 100, 100, 100, 100, 1, 1)) is None
True
>>> x = f.update(Bar("x", "S", 60_000, 100, 101, 100, 101, 1, 1))
>>> round(x["ret_1"], 6), x["rsi_14"], x["window_fill"]
(0.00995, 1.0, 0.016666666666666666)
"""

from __future__ import annotations

import math
from collections import deque
from itertools import islice

from shared.contracts.events import Bar

FEATURE_NAMES = (
    "ret_1", "ret_5", "ret_15", "ret_60", "vol_15", "vol_60", "vol_1440", "rsi_14", "macd_hist", "bb_pctb",
    "atr_14", "vwap_dist", "volume_z", "tod_sin", "tod_cos", "window_fill",
)
"""Names of the features :meth:`BarFeatures.update` returns, in a stable order."""

RETURN_LAGS = (1, 5, 15, 60)
"""Horizons (minutes) of the log-return features."""
SHORT_VOL, LONG_VOL, DAY_VOL = 15, 60, 1440
"""Windows (returns) of the realised-volatility features."""
WINSOR_SD = 5.0
"""Returns are winsorised to ``±WINSOR_SD * vol_60`` before entering the volatilities (the
forecaster's ``Z_CLIP``: five standard units)."""
MEDRV_C = math.pi / (6.0 - 4.0 * math.sqrt(3.0) + math.pi)
"""MedRV's scale constant (Andersen, Dobrev & Schaumburg 2012, eq. 2.3)."""
WILDER_PERIOD = 14
"""Period of RSI and ATR (Wilder 1978)."""
MACD_FAST, MACD_SLOW, MACD_SIGNAL = 12, 26, 9
"""Spans of the MACD exponential averages (Appel)."""
BOLLINGER_WINDOW, BOLLINGER_K = 20, 2.0
"""Window and band width in standard deviations (Bollinger)."""
VWAP_WINDOW = 60
"""Bars in the rolling VWAP."""
VOLUME_WINDOW = 60
"""Bars in the volume z-score's window."""
LONGEST = 60
"""Longest window, in returns; ``window_fill`` = returns seen / LONGEST, capped at 1."""
MINUTES_PER_DAY = 1440
MINUTE_MS = 60_000


SPREAD_FLOOR = 1e-9
"""A rolling standard deviation at or below ``SPREAD_FLOOR`` times the window's level counts
as no spread (a flat window): below it, rounding in the running moments would dominate."""


def _ema_factor(span: int) -> float:
    return 2.0 / (span + 1.0)


_FAST, _SLOW, _SIGNAL = (_ema_factor(span) for span in (MACD_FAST, MACD_SLOW, MACD_SIGNAL))


class _RollingMoments:
    """Exact mean and population variance of the last ``size`` values.

    Running sums of deviations from an anchor (a recent value, so the variance formula
    ``E[d^2] - E[d]^2`` does not cancel catastrophically at price levels of 10^4-10^5),
    recomputed from the stored window every ``size`` updates so rounding cannot accumulate.
    """

    __slots__ = ("anchor", "s1", "s2", "since", "size", "values")

    def __init__(self, size: int) -> None:
        self.size = size
        self.values: deque[float] = deque(maxlen=size)
        self.anchor = 0.0
        self.s1 = 0.0
        self.s2 = 0.0
        self.since = size  # force a recomputation (and a fresh anchor) on the first update

    def __getstate__(self) -> dict:
        return {name: getattr(self, name) for name in self.__slots__}

    def __setstate__(self, state: dict) -> None:
        for name, value in state.items():
            setattr(self, name, value)

    def update(self, value: float) -> tuple[float, float]:
        """Add ``value``; return :meth:`mean_sd` of the window it completes."""
        values = self.values
        self.since += 1
        if self.since >= self.size:
            values.append(value)
            a = self.anchor = value
            self.s1 = s1 = sum(v - a for v in values)
            self.s2 = s2 = sum((v - a) * (v - a) for v in values)
            self.since = 0
        else:
            a = self.anchor
            s1, s2 = self.s1, self.s2
            if len(values) == self.size:
                d = values[0] - a
                s1 -= d
                s2 -= d * d
            values.append(value)
            d = value - a
            self.s1 = s1 = s1 + d
            self.s2 = s2 = s2 + d * d
        n = len(values)
        m = s1 / n
        var = s2 / n - m * m
        return a + m, math.sqrt(var) if var > 0 else 0.0

    def mean_sd(self) -> tuple[float, float]:
        """``(mean, population standard deviation)`` of the window (``(0, 0)`` when empty)."""
        n = len(self.values)
        if not n:
            return 0.0, 0.0
        m = self.s1 / n
        var = self.s2 / n - m * m
        return self.anchor + m, math.sqrt(var) if var > 0 else 0.0


_MAX_Z = tuple(math.sqrt(n - 1) if n > 1 else 0.0 for n in range(max(BOLLINGER_WINDOW, VOLUME_WINDOW) + 1))


def _bounded_z(z: float, n: int) -> float:
    """Clamp a z-score of a value within its own window of ``n`` values to ``±sqrt(n - 1)``.

    With the population standard deviation no member of a window of ``n`` values lies more
    than ``sqrt(n - 1)`` deviations from its mean (R. E. Shiffler, "Maximum Z scores and
    outliers", The American Statistician 42, 1988), so the clamp only removes rounding.
    """
    bound = _MAX_Z[n]
    return bound if z > bound else (-bound if z < -bound else z)


def _ewmean(mean: float, x: float, alpha: float) -> float:
    """One step after the first of River's ``stats.EWMean`` (0.26): ``alpha x + (1 - alpha) mean``."""
    return alpha * x + (1.0 - alpha) * mean


_TIME_OF_DAY = tuple((math.sin(2.0 * math.pi * m / 1440), math.cos(2.0 * math.pi * m / 1440)) for m in range(1440))
"""``(sin, cos)`` of each minute of the day's angle (a table: the same values, computed once)."""


class _RobustVol:
    """Winsorised MedRV per minute over the last ``SHORT_VOL``, ``LONG_VOL`` and ``DAY_VOL`` returns.

    Running sums of the newest terms of each window, recomputed from the stored terms every
    ``DAY_VOL`` updates so that rounding cannot accumulate; O(1) amortised per return.
    """

    __slots__ = ("a1", "a2", "n", "since", "sums", "terms")

    def __init__(self) -> None:
        self.terms: deque[float] = deque(maxlen=DAY_VOL)
        self.sums = [0.0, 0.0, 0.0]
        self.a1 = self.a2 = 0.0  # |r| of the two previous (winsorised) returns, newest first
        self.n = 0
        self.since = 0

    def __getstate__(self) -> dict:
        return {name: getattr(self, name) for name in self.__slots__}

    def __setstate__(self, state: dict) -> None:
        for name, value in state.items():
            setattr(self, name, value)

    def update(self, r: float) -> tuple[float, float, float]:
        """Add a one-minute log return; return ``(vol_15, vol_60, vol_1440)`` per minute."""
        n = self.n
        terms, sums = self.terms, self.sums
        k = len(terms)
        if n >= SHORT_VOL:  # winsorise to WINSOR_SD * vol_60 (k >= SHORT_VOL terms exist)
            s60 = sums[1]
            if s60 > 0.0:  # a flat start (no move yet) bounds nothing
                bound = WINSOR_SD * math.sqrt(s60 / (k if k < LONG_VOL else LONG_VOL))
                if bound > 0.0:
                    r = bound if r > bound else (-bound if r < -bound else r)
        a = r if r >= 0.0 else -r
        if n >= 2:  # median of (a, a1, a2), written as comparisons
            a1, a2 = self.a1, self.a2
            lo, hi = (a, a1) if a <= a1 else (a1, a)
            hi = hi if hi <= a2 else a2
            med = lo if lo >= hi else hi
            term = MEDRV_C * med * med
        else:
            term = r * r
        self.a2, self.a1 = self.a1, a
        s15, s60, s1440 = sums
        if k == DAY_VOL:
            s1440 -= terms[0]
        if k >= LONG_VOL:
            s60 -= terms[k - LONG_VOL]
        if k >= SHORT_VOL:
            s15 -= terms[k - SHORT_VOL]
        terms.append(term)
        s15 += term
        s60 += term
        s1440 += term
        self.n = n + 1
        self.since += 1
        k += k < DAY_VOL
        if self.since >= DAY_VOL:
            self.since = 0
            s15, s60, s1440 = (sum(islice(terms, max(0, k - w), k)) for w in (SHORT_VOL, LONG_VOL, DAY_VOL))
        self.sums = [s15, s60, s1440]
        return (math.sqrt(s15 / (k if k < SHORT_VOL else SHORT_VOL)) if s15 > 0 else 0.0,
                math.sqrt(s60 / (k if k < LONG_VOL else LONG_VOL)) if s60 > 0 else 0.0,
                math.sqrt(s1440 / k) if s1440 > 0 else 0.0)

    def vol(self, window: int) -> float:
        """Current volatility per minute over ``window`` (one of the three windows), 0 when empty."""
        k = min(len(self.terms), window)
        if not k:
            return 0.0
        s = self.sums[(SHORT_VOL, LONG_VOL, DAY_VOL).index(window)]
        return math.sqrt(s / k) if s > 0 else 0.0


class BarFeatures:
    """Feature state for one symbol; feed it completed bars in time order.

    ``update(bar)`` costs O(1) time; the state holds at most 61 closes and 60
    returns and volumes, so it pickles small and can be warmed from stored history.
    """

    __slots__ = (
        "_atr",
        "_bb",
        "_changes",
        "_closes",
        "_ema_fast",
        "_ema_signal",
        "_ema_slow",
        "_gain",
        "_loss",
        "_pv",
        "_pv_sum",
        "_returns",
        "_rvol",
        "_v_sum",
        "_vol_stats",
    )

    def __init__(self) -> None:
        self._closes: deque[float] = deque(maxlen=LONGEST + 1)
        self._returns = 0
        self._rvol = _RobustVol()
        self._gain = 0.0
        self._loss = 0.0
        self._atr = 0.0
        self._changes = 0
        self._ema_fast = 0.0  # River stats.EWMean's state (see _ewmean), kept as floats
        self._ema_slow = 0.0
        self._ema_signal = 0.0
        self._bb = _RollingMoments(BOLLINGER_WINDOW)
        self._pv: deque[tuple[float, float]] = deque(maxlen=VWAP_WINDOW)  # (price * volume, volume)
        self._pv_sum = 0.0
        self._v_sum = 0.0
        self._vol_stats = _RollingMoments(VOLUME_WINDOW)

    def __getstate__(self) -> dict:
        return {name: getattr(self, name) for name in self.__slots__}

    def __setstate__(self, state: dict) -> None:
        for name, value in state.items():
            if name.startswith("_ema_") and not isinstance(value, float):  # pickled with River's EWMean
                value = float(value.get())
            setattr(self, name, value)

    @property
    def bars_seen(self) -> int:
        """How many bars have entered (capped at the longest window + 1)."""
        return len(self._closes)

    def update(self, bar: Bar) -> dict[str, float] | None:
        """Add a completed bar; return its features, or ``None`` for the very first bar.

        Parameters
        ----------
        bar : the bar of the minute that just closed (prices in quote currency,
            ``open_time_ms`` in ms since epoch UTC); bars must come in time order.

        Returns
        -------
        dict or None
            ``{name: value}`` for every name in :data:`FEATURE_NAMES`, all finite.

        Raises
        ------
        ValueError
            If ``bar.close``, ``bar.high`` or ``bar.low`` is not a positive finite
            number, or ``bar.volume`` is negative or not finite (the event codec
            already refuses those, so this guards direct callers). The state is
            left unchanged.
        """
        close, high, low, volume = bar.close, bar.high, bar.low, bar.volume
        if not (0 < close < math.inf and 0 < low < math.inf and 0 < high < math.inf):
            raise ValueError(f"bar prices must be > 0 and finite, got close={close!r} high={high!r} low={low!r}")
        if not 0 <= volume < math.inf:
            raise ValueError(f"bar volume must be >= 0 and finite, got {volume!r}")
        closes = self._closes
        prev = closes[-1] if closes else None

        # --- state shared by the first bar and the rest --------------------------------------
        if prev is None:
            tr = high - low
        else:
            tr = high - low
            d = high - prev
            d = d if d >= 0.0 else -d
            tr = tr if tr >= d else d
            d = low - prev
            d = d if d >= 0.0 else -d
            tr = tr if tr >= d else d
        n = self._changes = self._changes + 1  # number of true ranges so far (one per bar)
        if n <= WILDER_PERIOD:
            self._atr += (tr - self._atr) / n
        else:
            self._atr = (self._atr * (WILDER_PERIOD - 1) + tr) / WILDER_PERIOD
        if n == 1:  # the exponential averages are seeded with the first value
            ema_fast = ema_slow = close
            signal = macd = 0.0
        else:
            ema_fast = _ewmean(self._ema_fast, close, _FAST)
            ema_slow = _ewmean(self._ema_slow, close, _SLOW)
            macd = ema_fast - ema_slow
            signal = _ewmean(self._ema_signal, macd, _SIGNAL)
        self._ema_fast, self._ema_slow, self._ema_signal = ema_fast, ema_slow, signal
        bb_mean, bb_sd = self._bb.update(close)
        typical = (high + low + close) / 3.0
        pv = self._pv
        pv_sum, v_sum = self._pv_sum, self._v_sum
        if len(pv) == VWAP_WINDOW:
            old_pv, old_v = pv[0]
            pv_sum -= old_pv
            v_sum -= old_v
        pv.append((typical * volume, volume))
        self._pv_sum = pv_sum = pv_sum + typical * volume
        self._v_sum = v_sum = v_sum + volume
        v_mean, v_sd = self._vol_stats.update(volume)
        closes.append(close)
        if prev is None:
            return None

        # --- returns ----------------------------------------------------------------------------
        r = math.log(close / prev)
        vol_15, vol_60, vol_1440 = self._rvol.update(r)
        k = self._returns = self._returns + 1
        if k > LONGEST:
            k = LONGEST

        # --- RSI (Wilder): changes start at the second bar ------------------------------------
        change = close - prev
        m = n - 1  # number of price changes so far
        gain, loss = self._gain, self._loss
        up = change if change > 0 else 0.0
        down = -change if change < 0 else 0.0
        if m <= WILDER_PERIOD:  # Wilder's seed: simple mean of the first 14 changes
            gain += (up - gain) / m
            loss += (down - loss) / m
        else:
            gain = (gain * (WILDER_PERIOD - 1) + up) / WILDER_PERIOD
            loss = (loss * (WILDER_PERIOD - 1) + down) / WILDER_PERIOD
        self._gain, self._loss = gain, loss
        total = gain + loss
        rsi = 0.0 if total <= 0 else (gain - loss) / total  # = (RSI - 50) / 50

        # --- bands, VWAP, volume ----------------------------------------------------------------
        if bb_sd > SPREAD_FLOOR * close:
            z = (close - bb_mean) / bb_sd
            pctb = 0.5 + _bounded_z(z, len(self._bb.values)) / (2.0 * BOLLINGER_K)
        else:
            pctb = 0.5
        vwap = pv_sum / v_sum if v_sum > 0 else 0.0
        vwap_dist = math.log(close / vwap) if vwap > 0 else 0.0
        if v_mean > 0 and v_sd > SPREAD_FLOOR * v_mean:
            volume_z = _bounded_z((volume - v_mean) / v_sd, len(self._vol_stats.values))
        else:
            volume_z = 0.0

        tod_sin, tod_cos = _TIME_OF_DAY[(bar.open_time_ms // MINUTE_MS + 1) % MINUTES_PER_DAY]
        c = len(closes)
        return {
            "ret_1": r,
            "ret_5": math.log(close / closes[-6 if c > 6 else -c]),
            "ret_15": math.log(close / closes[-16 if c > 16 else -c]),
            "ret_60": math.log(close / closes[0]),
            "vol_15": vol_15,
            "vol_60": vol_60,
            "vol_1440": vol_1440,
            "rsi_14": rsi,
            "macd_hist": (macd - signal) / close,
            "bb_pctb": pctb,
            "atr_14": self._atr / close,
            "vwap_dist": vwap_dist,
            "volume_z": volume_z,
            "tod_sin": tod_sin,
            "tod_cos": tod_cos,
            "window_fill": k / LONGEST,
        }
