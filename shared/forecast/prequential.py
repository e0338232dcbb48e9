"""The one prequential stepper: forecast the next close, learn it once it is realised.

Prequential evaluation (A. P. Dawid, "Present position and potential developments:
some personal views: statistical theory: the prequential approach", JRSS A 147, 1984):
each label is first forecast, then learned, so every error counted is out of sample and
the model never sees a label before forecasting it. Every caller steps through bars
with :class:`PrequentialStepper`, so serving and training cannot disagree on the rule:
the engine (:mod:`shared.serving.engine`), retrain (:mod:`shared.lifecycle.retrain`),
initial training (:mod:`shared.forecast.training`), the backtest
(:mod:`shared.offline.backtest`) and promotion's smoke test (:mod:`shared.lifecycle.promotion`).

The rule, at the close of the bar of minute ``m`` (one symbol, completed bars in time order):

1. the features are updated with the bar (:class:`shared.stream.features.BarFeatures`);
2. a forecast still pending is *resolved* when it targeted minute ``m``: the forecaster
   learns the realised log return ``ln(close_m / last_close)``. When it targeted another
   minute (the target minute had no bar: a *gap*), it is dropped, neither scored nor
   learned, because its label would span more than one minute; it is counted in
   :attr:`PrequentialStepper.gaps`;
3. the forecaster forecasts the close of minute ``m + 1`` (from the first bar's features on);
   that forecast is pending until the next bar.

Callers that need to act between learning and forecasting (the engine checkpoints the model
after learning and may swap in a new champion at the minute boundary) call
:meth:`PrequentialStepper.resolve` and :meth:`PrequentialStepper.forecast` themselves;
the others call :meth:`PrequentialStepper.step`. Warm-up scoring (the first ``n`` resolved
forecasts learned but not scored) is the caller's: compare :attr:`PrequentialStepper.resolved`.

Examples
--------
>>> from shared.contracts.events import Bar
>>> from shared.forecast.forecaster import make_forecaster
>>> bar = lambda minute, close: Bar("x", "BTC", minute * 60_000, close, close + 1, close - 1, close, 1.0, 3)
>>> stepper = PrequentialStepper(make_forecaster())
>>> stepper.step(bar(0, 100.0)), stepper.pending  # the first bar gives no features yet
(None, None)
>>> stepper.step(bar(1, 101.0)) is None, stepper.pending.target_time_ms  # forecasts minute 2
(True, 120000)
>>> done = stepper.step(bar(2, 100.5))  # resolves that forecast, learns its label, forecasts minute 3
>>> done.target_time_ms, done.last_close, done.realised_close, done.lower <= done.predicted <= done.upper
(120000, 101.0, 100.5, True)
>>> stepper.step(bar(4, 102.0)) is None  # minute 3 had no bar: a gap, neither scored nor learned
True
>>> stepper.resolved, stepper.gaps, stepper.forecaster.steps, stepper.pending.target_time_ms
(1, 1, 1, 300000)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from shared.contracts.events import Bar, Tick
from shared.stream.bars import MINUTE_MS
from shared.stream.features import BarFeatures
from shared.stream.orderflow import OrderFlow

__all__ = ["Forecast", "PrequentialStepper"]


@dataclass(slots=True)
class Forecast:
    """One forecast of the close of minute ``target_time_ms``, made at the close of the minute before.

    Attributes
    ----------
    x : the features it was made from (``{name: value}``, see :data:`shared.stream.features.FEATURE_NAMES`).
    last_close : close of the bar it was made at, quote currency (USD).
    target_time_ms : open time of the forecast minute, ms since epoch UTC.
    predicted, lower, upper : forecast close and its interval bounds, quote currency (USD).
    realised_close : the target bar's close once resolved (quote currency), ``None`` while pending.
    """

    x: dict[str, float] = field(repr=False)
    last_close: float
    target_time_ms: int
    predicted: float
    lower: float
    upper: float
    realised_close: float | None = None


class PrequentialStepper:
    """Steps one symbol's completed bars through features and a forecaster: forecast, then learn.

    State (features, forecaster, pending forecast, counters) carries over between calls, so
    a training pass and a holdout pass form one stream. Instances pickle and deep-copy.

    Parameters
    ----------
    forecaster : has ``predict_price(x, last_close) -> (close, lower, upper)`` in quote
        currency and ``learn(x, r)`` with ``r`` the realised log return; taught in place.
        Callers may replace :attr:`forecaster` between steps (the engine's model swap).
    features : feature state to continue from (default: a fresh :class:`BarFeatures`).

    Attributes
    ----------
    flow : :class:`shared.stream.orderflow.OrderFlow` or ``None``
        Tick-level order flow of the symbol, when the caller runs on ticks and feeds it
        (:meth:`add_tick`); its features of the closing minute join the bar features. ``None``
        (the default, and for callers on bars alone): bar features only.
    pending : the forecast waiting for its target bar, or ``None``.
    resolved : forecasts whose target bar arrived (learned unless ``learn=False``).
    gaps : forecasts dropped because their target minute had no bar.
    """

    __slots__ = ("forecaster", "features", "pending", "resolved", "gaps", "_x", "flow")

    def __init__(self, forecaster: Any, features: BarFeatures | None = None) -> None:
        self.forecaster = forecaster
        self.features = features if features is not None else BarFeatures()
        self.pending: Forecast | None = None
        self.resolved = 0
        self.gaps = 0
        self._x: dict[str, float] | None = None
        self.flow: OrderFlow | None = None

    def __getstate__(self) -> dict:
        return {name: getattr(self, name) for cls in type(self).__mro__
                for name in getattr(cls, "__slots__", ()) if hasattr(self, name)}

    def __setstate__(self, state) -> None:
        if isinstance(state, tuple):  # pickled before __getstate__ existed: (dict, slots)
            state = {**(state[0] or {}), **state[1]}
        self.flow = None
        for name, value in state.items():
            setattr(self, name, value)

    def flow_features(self, bar: Bar) -> dict[str, float] | None:
        """The order-flow features :meth:`resolve` joins to ``bar``'s (``None`` without :attr:`flow`)."""
        return self.flow.features(bar.open_time_ms) if self.flow is not None else None

    def add_tick(self, tick: Tick) -> None:
        """Feed an accepted tick to :attr:`flow` (created on the first tick)."""
        if self.flow is None:
            self.flow = OrderFlow()
        self.flow.add(tick)

    def resolve(self, bar: Bar, learn: bool = True, flow: dict[str, float] | None = None) -> Forecast | None:
        """Update the features with ``bar``; resolve (and learn) or drop the pending forecast.

        Parameters
        ----------
        bar : the completed bar of the minute that just closed (after the previous one).
        learn : teach the forecaster the realised label (``False``: only score it).
        flow : the order-flow features of ``bar``'s minute to join the bar features; ``None``:
            :attr:`flow`'s (a replay passes the ones the live step used, :meth:`flow_features`).

        Returns
        -------
        Forecast or None
            The pending forecast when it targeted ``bar``'s minute, with
            :attr:`Forecast.realised_close` set; ``None`` when nothing was pending or it
            targeted another minute (counted in :attr:`gaps`). No forecast is pending afterwards.

        Raises
        ------
        ValueError
            From :meth:`BarFeatures.update` for a bar with bad prices or volume (nothing changes).
        """
        x = self._x = self.features.update(bar)
        if x is not None:
            if flow is None and self.flow is not None:
                flow = self.flow.features(bar.open_time_ms)
            if flow:
                x.update(flow)
        pending = self.pending
        if pending is None:
            return None
        self.pending = None
        if pending.target_time_ms != bar.open_time_ms:
            self.gaps += 1
            return None
        close = pending.realised_close = bar.close
        self.resolved += 1
        if learn:
            self.forecaster.learn(pending.x, math.log(close / pending.last_close))
        return pending

    def forecast(self, bar: Bar) -> Forecast | None:
        """Forecast the close of the minute after ``bar`` and keep it pending.

        Parameters
        ----------
        bar : the bar just passed to :meth:`resolve` (its features are the ones used).

        Returns
        -------
        Forecast or None
            The new pending forecast; ``None`` when ``bar`` gave no features (the first bar).
        """
        x = self._x
        if x is None:
            return None
        close = bar.close
        predicted, lower, upper = self.forecaster.predict_price(x, close)
        pending = self.pending = Forecast(x, close, bar.open_time_ms + MINUTE_MS, predicted, lower, upper)
        return pending

    def step(self, bar: Bar, learn: bool = True, predict: bool = True) -> Forecast | None:
        """:meth:`resolve` then, when ``predict``, :meth:`forecast`; return the resolved forecast.

        Parameters
        ----------
        bar : the completed bar of the minute that just closed.
        learn : teach the forecaster the realised label.
        predict : forecast the next close (``False``: only advance the features; nothing pending).

        Returns
        -------
        Forecast or None
            What :meth:`resolve` returned (the new forecast, if any, is :attr:`pending`).
        """
        done = self.resolve(bar, learn)
        if predict:
            self.forecast(bar)
        return done
