"""The online forecaster: next-minute log return with River, guarded, with a calibrated interval.

At the close of minute m the forecaster sees the features ``x`` of :mod:`shared.stream.features`
and forecasts ``r = ln(close_{m+1} / close_m)``; it is taught each label when it is
realised (predict, then learn; no look-ahead). The chain, per step:

1. **scale** ``sigma = sqrt((vol_15^2 + vol_60^2 + vol_1440^2) / 3)`` (floored at
   :data:`MIN_SCALE`): F. Corsi's HAR combination ("A simple approximate long-memory model of
   realized volatility", J. Financial Econometrics 7, 2009) of jump-robust (winsorised MedRV)
   volatilities over 15 minutes, an hour and a day, with equal weights (not fitted). The daily
   term pulls the scale toward its level as volatility mean-reverts. Everything below is in
   units of ``sigma``, so one model fits venues, years and price levels alike;
2. **model** (a family of :mod:`shared.forecast.families`, chosen by name) predicts ``z = r / sigma``
   from the sign-carrying features in sigma units, winsorised (:mod:`shared.forecast.inputs`);
   its output is clipped to ``±MAX_ABS_Z`` and multiplied by ``sigma`` and by the
   ``window_fill`` feature (the share of the longest feature window filled, so forecasts
   from short warm-up windows are shrunk, and learned with that weight);
3. **guard** (:class:`shared.forecast.guard.ZeroReturnGuard`) mixes that forecast with the
   zero-return forecast, Fixed-Share weights on losses in sigma units, so the served
   forecast cannot do much worse than persistence for long, and recovers after a shock;
4. **interval** (:class:`shared.forecast.conformal.MondrianInterval`): normalised conformal
   interval ``r_hat ± q * sigma`` at ``interval_level``, with ``q`` tracked online (quantile
   tracking, Angelopoulos, Candès & Tibshirani 2023) per tercile of ``sigma`` (Mondrian
   conformal prediction);
5. **drift**: River's ``drift.ADWIN`` (A. Bifet and R. Gavaldà, "Learning from time-changing
   data with adaptive windowing", SDM 2007; ``delta = 0.002``, River's default) watches the
   conformal score ``|r - r_hat| / sigma`` (winsorised at ``Z_CLIP``); its alarms are counted
   in :attr:`ReturnForecaster.drift_alarms`, carried in every prediction event. An alarm
   means the model's error relative to volatility changed level: the adaptive interval and
   the guard already respond to it, so the count is a monitoring signal.

Bounds (why nothing can diverge on real data): the label is winsorised to ``±Z_CLIP``, the
model's output to ``±MAX_ABS_Z`` standard units, and the served log return to
``±max_abs_return`` (5 %); a non-finite model output is read as 0 (persistence).

The constants and their derivations live in :mod:`shared.forecast.limits`.

Examples
--------
>>> f = make_forecaster()
>>> x = dict.fromkeys(FEATURE_NAMES, 0.0) | {"vol_15": 0.001, "vol_60": 0.001, "window_fill": 1.0}
>>> r, lo, hi = f.predict(x)
>>> lo <= r <= hi
True
>>> f.learn(x, 0.0005)
>>> f.steps, f.name, f.interval_level, f.drift_alarms
(1, 'linear', 0.9, 0)
"""

from __future__ import annotations

import math

from river import drift

from shared.stream.features import FEATURE_NAMES
from shared.forecast.families import DEFAULT_MODEL, MODEL_NAMES, family
from shared.forecast.limits import (
    DEFAULT_INTERVAL_LEVEL,
    DEFAULT_MAX_ABS_RETURN,
    DRIFT_DELTA,
    MAX_ABS_EDGE,
    MAX_ABS_Z,
    MIN_SCALE,
    Z_CLIP,
)
from shared.forecast.conformal import MondrianInterval
from shared.forecast.guard import ZeroReturnGuard
from shared.forecast.inputs import model_inputs

INPUTS_VERSION = 2
"""Version of the regressor's inputs and scale: 2 = :mod:`shared.forecast.inputs` and the
three-horizon scale (issue 16); models pickled before it load as version 1 and keep theirs."""

__all__ = [
    "DEFAULT_INTERVAL_LEVEL",
    "DEFAULT_MAX_ABS_RETURN",
    "DEFAULT_MODEL",
    "DRIFT_DELTA",
    "MAX_ABS_EDGE",
    "FEATURE_NAMES",
    "MAX_ABS_Z",
    "MIN_SCALE",
    "MODEL_NAMES",
    "Z_CLIP",
    "ReturnForecaster",
    "make_forecaster",
]

def _scale(x: dict[str, float]) -> float:
    """HAR scale: root mean of the 15-minute, hourly and daily jump-robust variances (floored)."""
    v15 = x.get("vol_15", 0.0)
    v60 = x.get("vol_60", v15)
    v1440 = x.get("vol_1440", v60)
    s = math.sqrt((v15 * v15 + v60 * v60 + v1440 * v1440) / 3.0)
    return max(MIN_SCALE, s)


def _scale_v1(x: dict[str, float]) -> float:
    """The scale of models pickled before issue 16 (15 and 60 minutes only)."""
    v15 = x.get("vol_15", 0.0)
    v60 = x.get("vol_60", v15)
    return max(MIN_SCALE, math.sqrt(0.5 * (v15 * v15 + v60 * v60)))


class ReturnForecaster:
    """Online forecaster of the next one-minute log return with a calibrated interval.

    Parameters
    ----------
    regressor : a River regressor of ``z = r / sigma`` (default: the default family's).
    interval_level : coverage of the prediction interval, in (0, 1).
    name : family name reported in :attr:`name` (default: the default family's).
    max_abs_return : bound on the served log return and on the interval bounds.
    residual_window, interval_rate : scales kept per volatility tercile and the quantile-tracking
        step of the interval (defaults derived, see :mod:`shared.forecast.conformal`).

    Attributes
    ----------
    steps : int
        Labels learned.
    drift_alarms : int
        ADWIN alarms since creation.

    Raises
    ------
    ValueError
        If ``interval_level`` is not in (0, 1) or ``max_abs_return`` is not > 0.
    """

    def __init__(
        self,
        regressor=None,
        interval_level: float = DEFAULT_INTERVAL_LEVEL,
        *,
        name: str | None = None,
        max_abs_return: float = DEFAULT_MAX_ABS_RETURN,
        residual_window: int | None = None,
        interval_rate: float | None = None,
    ) -> None:
        if not 0.0 < interval_level < 1.0:
            raise ValueError(f"interval_level must lie in (0, 1), got {interval_level}")
        if not max_abs_return > 0.0:
            raise ValueError(f"max_abs_return must be > 0, got {max_abs_return}")
        self.interval_level = float(interval_level)
        self.max_abs_return = float(max_abs_return)
        self.name = name or DEFAULT_MODEL
        self.regressor = regressor if regressor is not None else family(self.name).build()
        self.guard = ZeroReturnGuard()
        self.interval = MondrianInterval(self.interval_level, residual_window, interval_rate)
        self.drift = drift.ADWIN(delta=DRIFT_DELTA)
        self.drift_alarms = 0
        self.steps = 0
        self.inputs_version = INPUTS_VERSION
        self._last: tuple | None = None  # (x, model_return, r_hat, sigma, half_width, weight) of the last predict

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_last"] = None  # a cache keyed on object identity: meaningless after unpickling
        return state

    def __setstate__(self, state: dict) -> None:
        state.setdefault("inputs_version", 1)  # pickled before issue 16: raw features, two-horizon scale
        self.__dict__.update(state)

    # ------------------------------------------------------------------------------------------
    def _inputs(self, x: dict[str, float], sigma: float) -> dict[str, float]:
        """The regressor's inputs (:func:`shared.forecast.inputs.model_inputs`; version 1: raw features)."""
        if self.inputs_version >= 2:
            return model_inputs(x, sigma)
        return {k: v for k, v in x.items() if k != "window_fill"}

    def _sigma(self, x: dict[str, float]) -> float:
        return _scale(x) if self.inputs_version >= 2 else _scale_v1(x)

    def _model_return(self, x: dict[str, float], sigma: float, inputs: dict[str, float]) -> float:
        z = self.regressor.predict_one(inputs)
        if not math.isfinite(z):
            return 0.0
        z = MAX_ABS_Z if z > MAX_ABS_Z else max(z, -MAX_ABS_Z)
        return z * sigma * x.get("window_fill", 1.0)

    def _bound(self, r: float) -> float:
        cap = self.max_abs_return
        if not math.isfinite(r):
            return cap if r > 0 else -cap if r < 0 else 0.0
        return cap if r > cap else max(r, -cap)

    def _forecast(self, x: dict[str, float]) -> tuple:
        """``(x, model_return, r_hat, sigma, half_width, weight, category, inputs)`` for ``x``, cached by identity.

        The hot path of every bar close: the helpers above, inlined (same operations, same results).
        """
        last = self._last
        if last is not None and last[0] is x:
            return last
        if self.inputs_version >= 2:
            sigma = _scale(x)
            inputs = model_inputs(x, sigma)
        else:
            sigma = _scale_v1(x)
            inputs = self._inputs(x, sigma)
        z = self.regressor.predict_one(inputs)
        if math.isfinite(z):  # else persistence
            z = MAX_ABS_Z if z > MAX_ABS_Z else (-MAX_ABS_Z if z < -MAX_ABS_Z else z)
            m = z * sigma * x.get("window_fill", 1.0)
        else:
            m = 0.0
        weight = self.guard.weight
        r_hat = weight * m  # the guard's forecast, then the cap
        cap = self.max_abs_return
        r_hat = cap if r_hat > cap else (-cap if r_hat < -cap else r_hat)
        interval = self.interval
        if isinstance(interval, MondrianInterval):
            category = interval.bin_of(sigma)
            q = interval.cells[category].half_width()
        else:  # a model pickled before issue 16: one adaptive interval
            category, q = 0, interval.half_width()
        self._last = last = (x, m, r_hat, sigma, q, weight, category, inputs)
        return last

    def predict(self, x: dict[str, float]) -> tuple[float, float, float]:
        """Return ``(r_hat, lower, upper)``: the served log return and the interval bounds.

        ``x`` is a feature dict of :class:`shared.stream.features.BarFeatures`; all three values are
        finite and ``-max_abs_return <= lower <= r_hat <= upper <= max_abs_return``.
        """
        _, _, r_hat, sigma, q, _, _, _ = self._forecast(x)
        half = q * sigma
        return r_hat, self._bound(r_hat - half), self._bound(r_hat + half)

    def _price(self, x: dict[str, float], last_close: float) -> tuple[float, float, float]:
        _, _, r_hat, sigma, q, _, _, _ = self._forecast(x)
        half = q * sigma
        cap = self.max_abs_return
        lo, hi = r_hat - half, r_hat + half  # q may be inf: the cap bounds it
        lo = cap if lo > cap else (-cap if lo < -cap else lo)
        hi = cap if hi > cap else (-cap if hi < -cap else hi)
        exp = math.exp
        return last_close * exp(r_hat), last_close * exp(lo), last_close * exp(hi)

    def learn(self, x: dict[str, float], r: float) -> None:
        """Teach the realised log return ``r`` for the features ``x`` it was forecast from.

        The interval, guard and drift detector are scored on the forecast made *before*
        this step (out of sample), then the regressor learns.

        Raises
        ------
        ValueError
            If ``r`` is not finite.
        """
        if not math.isfinite(r):
            raise ValueError(f"realised log return must be finite, got {r!r}")
        _, m, r_hat, sigma, q, _, category, inputs = self._forecast(x)
        self._last = None
        score = abs(r - r_hat) / sigma
        interval = self.interval
        if isinstance(interval, MondrianInterval):
            interval.update(score, q, category, sigma)
        else:
            interval.update(score, q)
        self.guard.update(m, r, sigma)
        drift = self.drift
        drift.update(Z_CLIP if score > Z_CLIP else score)
        if drift.drift_detected:
            self.drift_alarms += 1
        z = r / sigma
        z = Z_CLIP if z > Z_CLIP else (-Z_CLIP if z < -Z_CLIP else z)
        fill = x.get("window_fill", 1.0)
        if fill >= 1.0:
            self.regressor.learn_one(inputs, z)
        else:
            self.regressor.learn_one(inputs, z, w=fill)
        self.steps += 1

    def predict_price(self, x: dict[str, float], last_close: float) -> tuple[float, float, float]:
        """Return ``(predicted_close, lower, upper)`` in the quote currency of ``last_close`` (e.g. USD).

        Raises
        ------
        ValueError
            If ``last_close`` is not a positive finite number.
        """
        if not 0.0 < last_close < math.inf:
            raise ValueError(f"last_close must be a positive finite price, got {last_close!r}")
        return self._price(x, last_close)

    def internals(self, x: dict[str, float]) -> tuple[float, float, float, float]:
        """What the forecast for ``x`` was made of: ``(model_return, sigma, half_width, guard_weight)``.

        ``model_return`` is the model's log return before the guard, ``sigma`` the volatility
        scale (log return per minute), ``half_width`` the interval's half-width in units of
        ``sigma``, ``guard_weight`` the model's weight in the served forecast.
        """
        _, m, _, sigma, q, weight, _, _ = self._forecast(x)
        return m, sigma, q, weight

    @property
    def guard_weight(self) -> float:
        """Current weight of the model against the zero-return forecast, in (0, 1)."""
        return self.guard.weight


def make_forecaster(name: str = "", interval_level: float = DEFAULT_INTERVAL_LEVEL) -> ReturnForecaster:
    """A fresh forecaster of the family ``name`` (``""`` = the default, :data:`DEFAULT_MODEL`).

    Raises
    ------
    ValueError
        If ``name`` is not one of :data:`MODEL_NAMES` (the message lists them) or
        ``interval_level`` is not in (0, 1).
    """
    module = family(name)
    return ReturnForecaster(module.build(), interval_level, name=module.NAME)
