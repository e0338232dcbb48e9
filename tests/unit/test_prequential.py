"""The one prequential stepper: its five callers forecast bit-identically on the same real bars.

The engine (fed the ticks of the bars), retrain's stepping, initial training, the backtest and
promotion's smoke test step through the same bars — with gaps — and must give equal (``==``)
forecasts and end with byte-identical models. The gap rule is pinned by counts derived from
the bar times alone, so a caller (or the stepper) that learned across a gap would fail here.
"""

from __future__ import annotations

import copy
import pickle
from functools import cache
from types import SimpleNamespace

import pytest

from shared.contracts.events import Bar, Prediction, Tick
from shared.forecast.forecaster import make_forecaster
from shared.forecast.prequential import PrequentialStepper
from shared.forecast.training import train_prequential
from shared.lifecycle.promotion import smoke_test
from shared.lifecycle.retrain import Prequential
from shared.offline.backtest import run_backtest
from shared.offline.ohlcv import load_minute_bars
from shared.serving.engine import ForecastEngine
from shared.stream.bars import MINUTE_MS
from shared.stream.features import BarFeatures
from tests.data_files import FTX_1M, data_file

FAMILIES = ["linear", "tree"]
SPLIT = 1_500  # retrain's training/holdout boundary (index into the bars)


def _ticks_of(bars: list[Bar]) -> list[Tick]:
    """Four ticks per bar (open with the volume, high, low, close), then one that closes the last bar."""
    ticks, trade_id = [], 0
    for b in bars:
        for i, (price, qty) in enumerate(((b.open, b.volume), (b.high, 0.0), (b.low, 0.0), (b.close, 0.0))):
            trade_id += 1
            ms = b.open_time_ms + 10_000 * i
            ticks.append(Tick("ftx", "BTC-PERP", trade_id, price, qty, "buy", ms, ms + 5))
    end = bars[-1].open_time_ms + MINUTE_MS
    ticks.append(Tick("ftx", "BTC-PERP", trade_id + 1, bars[-1].close, 0.0, "buy", end, end + 5))
    return ticks


@cache
def _raw_bars() -> tuple[Bar, ...]:
    bars = load_minute_bars(data_file(FTX_1M)).bars[:2_404]
    # gaps: minute 700 missing, minutes 1,200-1,202 missing
    return tuple(bars[:700] + bars[701:1_200] + bars[1_203:])


@cache
def _engine_run(family: str) -> tuple[list[Bar], list[Prediction], ForecastEngine]:
    """The engine fed the bars' ticks; the bars it closed are the ones every other caller gets."""
    engine = ForecastEngine(lambda e, s: None, forecast_model=family, clock=lambda: 0)
    out = engine.process(_ticks_of(list(_raw_bars())))
    return [e for e in out if isinstance(e, Bar)], [e for e in out if isinstance(e, Prediction)], engine


def _expected_counts(bars: list[Bar]) -> tuple[int, int]:
    """(resolved, gaps) from bar times alone: the forecast made at bar i (i >= 1; the first bar
    has no features) is resolved when bar i + 1 is the next minute, else dropped as a gap."""
    pairs = list(zip(bars[1:], bars[2:]))
    resolved = sum(b.open_time_ms == a.open_time_ms + MINUTE_MS for a, b in pairs)
    return resolved, len(pairs) - resolved


def _resolved(bars: list[Bar], predictions: list[Prediction]) -> list[tuple[Prediction, float]]:
    """The engine's predictions whose target bar arrived, each with the realised close."""
    close = {b.open_time_ms: b.close for b in bars}
    return [(p, close[p.target_time_ms]) for p in predictions if p.target_time_ms in close]


def _mae(pairs: list[tuple[Prediction, float]]) -> float:
    total = 0.0
    for p, actual in pairs:  # summed in order, as the callers do
        total += abs(p.predicted_close - actual)
    return total / len(pairs)


@pytest.mark.parametrize("family", FAMILIES)
def test_the_five_callers_forecast_bit_identically_on_real_bars_with_gaps(family):
    bars, predictions, engine = _engine_run(family)
    assert len(bars) == len(_raw_bars()) and [b.open_time_ms for b in bars] == [b.open_time_ms for b in _raw_bars()]
    resolved, gaps = _expected_counts(bars)
    assert gaps == 2 and resolved == len(bars) - 2 - gaps
    pairs = _resolved(bars, predictions)
    assert len(pairs) == resolved
    state = engine.symbols[("ftx", "BTC-PERP")]
    stats = engine.stats
    assert (stats.predictions, stats.learned, stats.unlearned_gaps) == (len(bars) - 1, resolved, gaps)
    assert state.forecaster.steps == resolved
    engine_model = pickle.dumps(state.forecaster)

    # the backtest: every scored minute is the engine's forecast of it, gaps neither scored nor learned
    result = run_backtest(bars, family, 0.9, warmup=0)
    s = result.series
    assert (result.scored, result.unlearned_gaps) == (resolved, gaps)
    assert s.time_ms.tolist() == [p.target_time_ms for p, _ in pairs]
    assert s.pred.tolist() == [p.predicted_close for p, _ in pairs]
    assert s.lower.tolist() == [p.lower for p, _ in pairs]
    assert s.upper.tolist() == [p.upper for p, _ in pairs]
    assert s.last.tolist() == [p.last_close for p, _ in pairs]
    assert s.actual.tolist() == [a for _, a in pairs]
    # warm-up: the first 300 resolved forecasts are learned, not scored; the rest are the same forecasts
    warm = run_backtest(bars, family, 0.9, warmup=300).series
    assert warm.pred.tolist() == s.pred.tolist()[300:] and warm.time_ms.tolist() == s.time_ms.tolist()[300:]

    # initial training
    trained, report = train_prequential(bars, model=family)
    assert pickle.dumps(trained) == engine_model
    assert (report.bars, report.scored) == (len(bars), resolved)
    assert report.mae_model == _mae(pairs)
    assert report.max_abs_error == max(abs(p.predicted_close - a) for p, a in pairs)

    # retrain's stepping: a training pass, then a scored holdout pass continuing the same stream
    run = Prequential(make_forecaster(family))
    run.feed(bars[:SPLIT])
    holdout = run.feed(bars[SPLIT:], score=True)
    assert pickle.dumps(run.forecaster) == engine_model
    in_holdout = [(p, a) for p, a in pairs if p.target_time_ms >= bars[SPLIT].open_time_ms]
    assert holdout.n == len(in_holdout) and holdout.mae_usd == _mae(in_holdout)
    assert holdout.coverage == sum(p.lower <= a <= p.upper for p, a in in_holdout) / len(in_holdout)

    # promotion's smoke test on the same bars: its last forecast is the engine's last prediction
    model = make_forecaster(family)
    before = pickle.dumps(model)
    assert smoke_test(model, bars) == predictions[-1].predicted_close
    assert pickle.dumps(model) == before  # the candidate itself is left untouched


def test_a_stepper_pickled_mid_stream_continues_identically():
    bars = list(_raw_bars()[:900])  # spans the first gap
    a = PrequentialStepper(make_forecaster())
    for bar in bars[:650]:
        a.step(bar)
    b = pickle.loads(pickle.dumps(a))
    c = copy.deepcopy(a)
    assert b.pending.x == a.pending.x and b.pending.predicted == a.pending.predicted
    runs = [[(d.target_time_ms, d.predicted, d.lower, d.upper) for bar in bars[650:] if (d := s.step(bar))]
            for s in (a, b, c)]
    assert runs[0] == runs[1] == runs[2] and len(runs[0]) == 900 - 650 - 1
    assert (a.resolved, a.gaps) == (b.resolved, b.gaps) == (c.resolved, c.gaps) == (900 - 3, 1)
    assert a.forecaster.steps == b.forecaster.steps == c.forecaster.steps == 900 - 3


def test_retrain_warm_up_only_advances_the_features():
    bars = list(_raw_bars()[:400])
    run = Prequential(make_forecaster())
    assert run.feed(bars[:300], learn=False, predict=False) is None
    assert run.pending is None and run.resolved == 0 and run.forecaster.steps == 0
    score = run.feed(bars[300:], learn=False, score=True)  # scored, never learned
    assert score.n == 99 and run.resolved == 99 and run.forecaster.steps == 0
    features = BarFeatures()
    for bar in bars:
        x = features.update(bar)
    assert run.pending.x == x and run.pending.target_time_ms == bars[-1].open_time_ms + MINUTE_MS


CALLS: list[tuple] = []


class _Recorder:
    """A forecaster that records, in :data:`CALLS`, which model learned and predicted."""

    interval_level = 0.9

    def __init__(self, name: str) -> None:
        self.name = name

    def learn(self, x, r) -> None:
        CALLS.append(("learn", self.name))

    def predict_price(self, x, last_close):
        CALLS.append(("predict", self.name))
        return last_close, last_close - 1.0, last_close + 1.0


class _SwappingProvider:
    """Starts with model ``old`` v1; swaps in ``new`` v2 on the ``swap_on``-th refresh; checkpoints always."""

    def __init__(self, swap_on: int) -> None:
        self.swap_on, self.refreshes = swap_on, 0

    def initial(self, exchange, symbol):
        return SimpleNamespace(forecaster=_Recorder("old"), version="v1")

    def refresh(self, exchange, symbol, serving_version):
        self.refreshes += 1
        CALLS.append(("refresh", serving_version))
        if self.refreshes == self.swap_on:
            return SimpleNamespace(forecaster=_Recorder("new"), version="v2")
        return None

    def checkpoint(self, exchange, symbol, forecaster, version):
        CALLS.append(("checkpoint", forecaster.name, version))
        return True


def test_the_engine_swaps_the_model_between_learning_and_predicting():
    ticks = _ticks_of(list(_raw_bars()[:8]))
    minute_starts = [i for i, t in enumerate(ticks) if t.event_time_ms % MINUTE_MS == 0]  # each closes a bar
    engine = ForecastEngine(_SwappingProvider(swap_on=5), clock=lambda: 0)
    CALLS.clear()
    engine.process(ticks[: minute_starts[5]])  # bars 0-3 closed: refreshes 1-4, no swap yet
    assert ("refresh", "v1") in CALLS and all(c[1] == "old" for c in CALLS if c[0] in ("learn", "predict"))
    state = engine.symbols[("ftx", "BTC-PERP")]
    seen = state.features.bars_seen
    CALLS.clear()
    out = engine.process(ticks[minute_starts[5]: minute_starts[5] + 1])  # closes bar 4: the 5th refresh swaps
    assert CALLS == [("learn", "old"), ("checkpoint", "old", "v1"), ("refresh", "v1"), ("predict", "new")]
    assert [(p.model_version, p.target_time_ms) for p in out if isinstance(p, Prediction)] == [
        ("v2", _raw_bars()[5].open_time_ms)]
    assert state.features.bars_seen == seen + 1  # the features survived the swap
    CALLS.clear()
    engine.process(ticks[minute_starts[6]: minute_starts[6] + 1])  # the new model learns its own forecast's label
    assert CALLS == [("learn", "new"), ("checkpoint", "new", "v2"), ("refresh", "v2"), ("predict", "new")]
    stats = engine.stats
    assert (stats.model_swaps, stats.learned, stats.checkpoints, stats.unlearned_gaps) == (1, 4, 4, 0)
