"""Train a forecaster prequentially on a run of one-minute bars, and score it on the way.

Prequential evaluation (A. P. Dawid, "Present position and potential developments:
some personal views: statistical theory: the prequential approach", JRSS A 147, 1984):
each bar's label is first predicted, then learned, so every error counted is out of
sample. The persistence baseline (next close = last close) is scored on the same minutes.
The rule is the one of :class:`shared.forecast.prequential.PrequentialStepper`, as served.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from shared.contracts.events import Bar
from shared.forecast.forecaster import DEFAULT_INTERVAL_LEVEL, ReturnForecaster, make_forecaster
from shared.forecast.prequential import PrequentialStepper


@dataclass
class TrainingReport:
    """Out-of-sample scores of one prequential pass (prices in quote currency).

    ``mae_model``/``mae_persistence`` are mean absolute errors of the predicted close
    over ``scored`` minutes; ``coverage`` is the share of realised closes inside the
    interval; ``max_abs_error`` guards against divergence.
    """

    bars: int = 0
    scored: int = 0
    mae_model: float = 0.0
    mae_persistence: float = 0.0
    coverage: float = 0.0
    max_abs_error: float = 0.0
    start_ms: int | None = None
    end_ms: int | None = None

    @property
    def mae_ratio(self) -> float:
        """MAE of the model divided by MAE of persistence (< 1 is better than the baseline)."""
        return self.mae_model / self.mae_persistence if self.mae_persistence else math.nan


def train_prequential(
    bars: Iterable[Bar],
    forecaster: ReturnForecaster | None = None,
    model: str = "",
    interval_level: float = DEFAULT_INTERVAL_LEVEL,
) -> tuple[ReturnForecaster, TrainingReport]:
    """Predict-then-learn over ``bars`` (ascending, one symbol); return the forecaster and its scores.

    Parameters
    ----------
    bars : one-minute bars of one symbol in ascending order.
    forecaster : the forecaster to train (taught in place); default a fresh one of
        family ``model`` at ``interval_level`` (:func:`shared.forecast.forecaster.make_forecaster`).

    Minutes after a gap in ``bars`` are not learned from (their label spans more than a minute).

    Raises
    ------
    ValueError
        Unknown ``model`` name or bad ``interval_level`` (when ``forecaster`` is not given).
    """
    model = forecaster if forecaster is not None else make_forecaster(model, interval_level)
    step = PrequentialStepper(model).step
    rep = TrainingReport()
    abs_model = abs_persist = 0.0
    inside = 0
    for bar in bars:
        rep.bars += 1
        rep.start_ms = bar.open_time_ms if rep.start_ms is None else rep.start_ms
        rep.end_ms = bar.open_time_ms
        done = step(bar)
        if done is not None:
            close = bar.close
            err = abs(done.predicted - close)
            abs_model += err
            abs_persist += abs(done.last_close - close)
            inside += done.lower <= close <= done.upper
            rep.max_abs_error = max(rep.max_abs_error, err)
            rep.scored += 1
    if rep.scored:
        rep.mae_model = abs_model / rep.scored
        rep.mae_persistence = abs_persist / rep.scored
        rep.coverage = inside / rep.scored
    return model, rep
