"""The River forecaster trained prequentially on real one-minute BTC bars: stable, calibrated, honest."""

from __future__ import annotations

import math
import pickle
from functools import lru_cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from river.linear_model import LinearRegression

from shared.bars import MINUTE_MS
from shared.events import Bar
from shared.features import FEATURE_NAMES, BarFeatures
from shared.forecaster import ReturnForecaster
from shared.ohlcv import read_ohlcv
from shared.training import train_prequential
from tests.data_files import BINANCE_1M, FTX_1M, data_file

# file -> (number of bars, number of missing minutes)
FILES = {
    FTX_1M: (45_031, 0),
    BINANCE_1M: (15_000, 1),
}


@lru_cache(maxsize=None)
def _bars(name: str) -> tuple[Bar, ...]:
    bars = tuple(read_ohlcv(data_file(name)))
    assert len(bars) == FILES[name][0]
    return bars


class Recording(ReturnForecaster):
    """A ReturnForecaster that remembers every (last_close, predicted, lower, upper) it produced."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.made: list[tuple[float, float, float, float]] = []

    def predict_price(self, x, last_close):
        out = super().predict_price(x, last_close)
        self.made.append((last_close, *out))
        return out


@lru_cache(maxsize=None)
def _trained(name: str, plain_linear: bool = False):
    model = Recording(regressor=LinearRegression()) if plain_linear else Recording()
    trained, report = train_prequential(_bars(name), model)
    assert trained is model
    return model, report


@pytest.mark.parametrize("name", list(FILES))
def test_prequential_run_is_stable_and_calibrated(name):
    bars = _bars(name)
    n_bars, gaps = FILES[name]
    model, rep = _trained(name)

    assert rep.bars == n_bars
    assert len(model.made) == n_bars - 1  # every bar but the first has features
    assert rep.scored == n_bars - 2 - gaps  # the last forecast is never realised
    assert model.steps == rep.scored
    assert (rep.start_ms, rep.end_ms) == (bars[0].open_time_ms, bars[-1].open_time_ms)

    for last, pred, lo, hi in model.made:
        assert math.isfinite(pred) and math.isfinite(lo) and math.isfinite(hi)
        assert lo <= pred <= hi
        assert abs(pred / last - 1) < 0.05
    assert rep.max_abs_error < 0.05 * min(b.close for b in bars)
    assert rep.mae_ratio < 1.02
    assert 0.87 <= rep.coverage <= 0.93
    assert rep.mae_persistence > 0


@pytest.mark.parametrize("name", list(FILES))
def test_report_agrees_with_the_forecasts_it_scored(name):
    bars = _bars(name)
    model, rep = _trained(name)
    # prediction i was made at the close of bars[i + 1]; it targets bars[i + 2] if that is the next minute
    err_model = err_persist = inside = n = 0
    worst = 0.0
    for (last, pred, lo, hi), made, target in zip(model.made, bars[1:], bars[2:]):
        assert last == made.close
        if target.open_time_ms != made.open_time_ms + MINUTE_MS:
            continue
        n += 1
        err_model += abs(pred - target.close)
        err_persist += abs(last - target.close)
        inside += lo <= target.close <= hi
        worst = max(worst, abs(pred - target.close))
    assert n == rep.scored
    assert rep.mae_model == pytest.approx(err_model / n, rel=1e-9)
    assert rep.mae_persistence == pytest.approx(err_persist / n, rel=1e-9)
    assert rep.coverage == inside / n
    assert rep.max_abs_error == worst


@pytest.mark.parametrize("name", list(FILES))
def test_plain_river_linear_regression_is_worse(name):
    """Contrast: River's default LinearRegression (no scaling, no clipping) in place of the default.

    Measured here (River 0.26.1): with these dimensionless features it does NOT diverge -- its raw
    predictions stay below 0.15 % per minute, so the ±5 % bound never engages -- but it is clearly
    worse than the guarded default and worse than persistence on both files
    (MAE ratio 1.0075 vs 1.0008 on FTX, 1.0159 vs 1.0064 on Binance).
    """
    guarded = _trained(name)[1]
    plain_model, plain = _trained(name, plain_linear=True)
    assert all(math.isfinite(p) for _, p, _, _ in plain_model.made)
    assert max(abs(p / last - 1) for last, p, _, _ in plain_model.made) < 0.002
    assert plain.mae_ratio > 1.005
    assert plain.mae_ratio > guarded.mae_ratio + 0.004


class _Wild:
    """A regressor gone bad: predicts what it is told, whatever it learns."""

    def __init__(self, value: float) -> None:
        self.value = value

    def predict_one(self, x):
        return self.value

    def learn_one(self, x, y):
        pass


@pytest.mark.parametrize("value", [1e6, -1e6, math.inf, -math.inf, math.nan])
def test_output_bound_contains_a_diverged_regressor(value):
    f = ReturnForecaster(regressor=_Wild(value))
    x = dict.fromkeys(FEATURE_NAMES, 0.001)
    for _ in range(50):
        f.learn(x, 0.0005)
    r, lo, hi = f.predict(x)
    expected = 0.0 if math.isnan(value) or math.isinf(value) else math.copysign(0.05, value)
    assert r == expected
    assert -0.05 <= lo <= r <= hi <= 0.05
    pred, plo, phi = f.predict_price(x, 40_000.0)
    assert plo <= pred <= phi and abs(pred / 40_000.0 - 1) < 0.052


# ----------------------------------------------------------------------------- persistence
def _continue(model: ReturnForecaster, bars) -> list[tuple[float, float, float]]:
    feats, out, pending = BarFeatures(), [], None
    for bar in bars:
        x = feats.update(bar)
        if pending is not None:
            model.learn(pending[0], math.log(bar.close / pending[1]))
        if x is not None:
            out.append(model.predict_price(x, bar.close))
            pending = (x, bar.close)
    return out


def test_pickle_before_learning():
    bars = _bars(FTX_1M)[:1_500]
    model = ReturnForecaster()
    clone = pickle.loads(pickle.dumps(model))
    assert clone is not model and clone.steps == 0
    original = _continue(model, bars)
    resumed = _continue(clone, bars)
    assert resumed == original
    assert clone.steps == model.steps == len(bars) - 2


def test_pickle_after_learning_keeps_learning_identically():
    bars = _bars(FTX_1M)
    model, _ = train_prequential(bars[:3_000])
    clone = pickle.loads(pickle.dumps(model))
    assert clone.steps == model.steps == 2_998
    probe = dict(zip(FEATURE_NAMES, (0.0004, -0.001, 0.002, 0.0011, 0.3, 0.0015)))
    assert clone.predict(probe) == model.predict(probe)
    original = _continue(model, bars[3_000:4_500])
    resumed = _continue(clone, bars[3_000:4_500])
    assert resumed == original
    assert clone.predict(probe) == model.predict(probe)
    assert clone.steps == model.steps


# ----------------------------------------------------------------------------- contract
@pytest.mark.parametrize("level", [0.0, 1.0, -0.1, 1.5, 90, math.nan, math.inf])
def test_interval_level_outside_unit_interval(level):
    with pytest.raises(ValueError, match="interval_level"):
        ReturnForecaster(interval_level=level)


@pytest.mark.parametrize("level", [0.5, 0.8, 0.9, 0.99])
def test_interval_level_is_kept(level):
    assert ReturnForecaster(interval_level=level).interval_level == level


features = st.fixed_dictionaries({
    "ret_1": st.floats(-0.2, 0.2),
    "ret_5": st.floats(-0.5, 0.5),
    "ret_15": st.floats(-1.0, 1.0),
    "vol_15": st.floats(0.0, 0.2),
    "rsi_14": st.floats(-1.0, 1.0),
    "range_1": st.floats(0.0, 0.5),
})


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(features, st.floats(-0.2, 0.2)), min_size=0, max_size=40),
    features,
    st.floats(1e-3, 1e7),
    st.sampled_from([0.5, 0.9, 0.99]),
)
def test_lower_point_upper_always_ordered(history, x, last_close, level):
    f = ReturnForecaster(interval_level=level)
    for xi, r in history:
        f.learn(xi, r)
        r_hat, lo, hi = f.predict(xi)
        assert lo <= r_hat <= hi
    r_hat, lo, hi = f.predict(x)
    assert all(math.isfinite(v) for v in (r_hat, lo, hi))
    assert -0.05 <= lo <= r_hat <= hi <= 0.05
    pred, plo, phi = f.predict_price(x, last_close)
    assert plo <= pred <= phi
    assert all(math.isfinite(v) and v > 0 for v in (pred, plo, phi))
