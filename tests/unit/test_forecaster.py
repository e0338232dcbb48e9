"""The forecaster: family selection, guard, calibrated interval, drift count, bounds, pickling."""

from __future__ import annotations

import math
import pickle
import random
from functools import cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.stream.bars import MINUTE_MS
from shared.contracts.events import Bar
from shared.stream.features import FEATURE_NAMES, BarFeatures
from shared.forecast.forecaster import MAX_ABS_Z, MODEL_NAMES, ReturnForecaster, make_forecaster
from shared.forecast.conformal import AdaptiveConformalInterval, default_rate
from shared.forecast.guard import ZeroReturnGuard
from shared.offline.ohlcv import read_ohlcv
from shared.forecast.training import train_prequential
from tests.data_files import BINANCE_1M, FTX_1M, data_file


@cache
def _bars(name: str) -> tuple[Bar, ...]:
    return tuple(read_ohlcv(data_file(name)))


def _x(**over) -> dict[str, float]:
    return dict.fromkeys(FEATURE_NAMES, 0.0) | {"vol_15": 1e-3, "vol_60": 1e-3, "window_fill": 1.0} | over


class Recording(ReturnForecaster):
    """A ReturnForecaster that remembers every (last_close, predicted, lower, upper) it produced."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.made: list[tuple[float, float, float, float]] = []

    def predict_price(self, x, last_close):
        out = super().predict_price(x, last_close)
        self.made.append((last_close, *out))
        return out


# ----------------------------------------------------------------------------- families
def test_families_by_name():
    assert MODEL_NAMES == ("linear", "tree")
    assert make_forecaster().name == "linear" == ReturnForecaster().name
    for name in MODEL_NAMES:
        f = make_forecaster(name, 0.8)
        assert f.name == name and f.interval_level == 0.8 and f.drift_alarms == 0 and f.steps == 0
    assert make_forecaster(" Tree ").name == "tree"


def test_unknown_family_lists_the_valid_names():
    with pytest.raises(ValueError, match="linear, tree"):
        make_forecaster("snarimax")


def test_settings_default_names_a_family():
    from shared.settings import SETTINGS

    assert SETTINGS["FORECAST_MODEL"].default in MODEL_NAMES


@pytest.mark.parametrize("level", [0.0, 1.0, -0.1, 1.5, 90, math.nan, math.inf])
def test_interval_level_outside_unit_interval(level):
    with pytest.raises(ValueError, match="interval_level"):
        make_forecaster("", level)


# ----------------------------------------------------------------------------- real data
@cache
def _trained(name: str):
    model = Recording(interval_level=0.9)
    trained, report = train_prequential(_bars(name), model)
    assert trained is model
    return model, report


@pytest.mark.parametrize("name", [FTX_1M, BINANCE_1M])
def test_prequential_training_report_agrees_with_the_forecasts(name):
    bars = _bars(name)
    model, rep = _trained(name)
    assert len(model.made) == len(bars) - 1 and model.steps == rep.scored
    err_model = err_persist = inside = n = 0
    for (last, pred, lo, hi), made, target in zip(model.made, bars[1:], bars[2:]):
        assert math.isfinite(pred) and lo <= pred <= hi and abs(pred / last - 1) < 0.05
        if target.open_time_ms != made.open_time_ms + MINUTE_MS:
            continue
        n += 1
        err_model += abs(pred - target.close)
        err_persist += abs(last - target.close)
        inside += lo <= target.close <= hi
    assert n == rep.scored
    assert rep.mae_model == pytest.approx(err_model / n, rel=1e-9)
    assert rep.mae_persistence == pytest.approx(err_persist / n, rel=1e-9)
    assert rep.coverage == inside / n
    assert rep.mae_ratio < 1.0 and 0.89 <= rep.coverage <= 0.91


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


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_pickle_round_trip_before_learning(name):
    bars = _bars(FTX_1M)[:1_200]
    model = make_forecaster(name)
    clone = pickle.loads(pickle.dumps(model))
    assert clone is not model and clone.steps == 0 and clone.name == name
    assert _continue(clone, bars) == _continue(model, bars)
    assert clone.steps == model.steps == len(bars) - 2


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_pickle_round_trip_after_learning(name):
    bars = _bars(BINANCE_1M)
    model, rep = train_prequential(bars[:2_500], model=name)
    clone = pickle.loads(pickle.dumps(model))
    assert clone.steps == model.steps == rep.scored > 2_400
    assert (clone.drift_alarms, clone.guard_weight) == (model.drift_alarms, model.guard_weight)
    probe = _x(ret_1=4e-4, ret_5=-1e-3, rsi_14=0.3)
    # River's Hoeffding tree keeps sets whose iteration order (hence float summation order)
    # may differ after unpickling under hash randomisation: equal to ~1 ulp, not bit for bit.
    def same(a, b) -> bool:
        if name == "linear":
            return a == b
        flat = lambda seq: [v for item in seq for v in (item if isinstance(item, tuple) else (item,))]
        return flat(a) == pytest.approx(flat(b), rel=1e-9, abs=1e-15)

    assert same([clone.predict(probe)], [model.predict(probe)])
    assert same(_continue(clone, bars[2_500:3_500]), _continue(model, bars[2_500:3_500]))
    assert clone.steps == model.steps


# ----------------------------------------------------------------------------- bounds
class _Wild:
    """A regressor gone bad: predicts what it is told, whatever it learns."""

    def __init__(self, value: float) -> None:
        self.value = value

    def predict_one(self, x):
        return self.value

    def learn_one(self, x, y, w=1.0):
        pass


@pytest.mark.parametrize("value", [1e6, -1e6, math.inf, -math.inf, math.nan])
def test_a_diverged_regressor_is_contained(value):
    f = ReturnForecaster(regressor=_Wild(value))
    x = _x()
    for _ in range(50):
        f.learn(x, 0.0005)
    r, lo, hi = f.predict(x)
    assert abs(r) <= MAX_ABS_Z * 1e-3 + 1e-15  # at most MAX_ABS_Z volatility units
    assert -0.05 <= lo <= r <= hi <= 0.05
    pred, plo, phi = f.predict_price(x, 40_000.0)
    assert plo <= pred <= phi and abs(pred / 40_000.0 - 1) < 0.05


def test_bad_inputs_raise():
    f = make_forecaster()
    with pytest.raises(ValueError, match="finite"):
        f.learn(_x(), math.nan)
    with pytest.raises(ValueError, match="last_close"):
        f.predict_price(_x(), 0.0)
    assert f.steps == 0


def test_warm_up_shrinks_the_forecast():
    f = ReturnForecaster(regressor=_Wild(1.0))
    full, _, _ = f.predict(_x())
    part, _, _ = f.predict(_x(window_fill=0.25))
    assert full > 0 and part == pytest.approx(0.25 * full)


# ----------------------------------------------------------------------------- guard
def test_guard_follows_the_better_expert():
    rng = random.Random(1)
    good, bad = ZeroReturnGuard(), ZeroReturnGuard()
    for _ in range(5_000):
        r = rng.gauss(0, 1e-3)
        hint = 2e-4 if r > 0 else -2e-4  # knows the sign
        good.update(hint, r)
        bad.update(-hint, r)
    assert good.weight > 0.99 and bad.weight < 1e-2


def test_guard_forgets_a_bad_stretch_and_one_shock_moves_it_a_bounded_step():
    rng = random.Random(11)
    g = ZeroReturnGuard()
    for _ in range(3_000):  # the model is wrong for two days: persistence wins
        r = rng.gauss(0, 1e-3)
        g.update(-2e-4 if r > 0 else 2e-4, r, 1e-3)
    assert g.weight < 1e-2 and g.weight >= 0.5 / 10_080  # never below Fixed-Share's floor
    for t in range(20_000):  # then it knows the sign: the weight comes back within days, not never
        r = rng.gauss(0, 1e-3)
        g.update(2e-4 if r > 0 else -2e-4, r, 1e-3)
        if g.weight > 0.9:
            break
    assert t < 10_080
    before = g.weight
    g.update(7e-5, -0.2, 1e-3)  # a -20 % bad print against a model at its cap: one bounded step
    assert g.weight > 0.5 * before


def test_guard_regret_to_persistence_is_bounded():
    rng = random.Random(2)
    g = ZeroReturnGuard()
    served = zero = model = sq = 0.0
    for _ in range(20_000):
        r = rng.gauss(0, 1e-3)
        m = rng.gauss(0, 3e-4)  # a model with no skill
        served += abs(r - g.forecast(m))
        zero += abs(r)
        model += abs(r - m)
        sq += m * m
        g.update(m, r)
    assert model > zero  # the model alone loses
    assert served - min(zero, model) <= math.sqrt(2 * math.log(2) * sq)


# ----------------------------------------------------------------------------- interval
def test_adaptive_conformal_meets_its_coverage_bound_under_a_shift():
    rng = random.Random(3)
    c = AdaptiveConformalInterval(0.9)
    n = 20_000
    for t in range(n):
        scale = 1.0 if t < n // 2 else 4.0  # volatility regime the scores do not know about
        c.update(abs(rng.gauss(0, scale)))
    bound = (max(0.1, 0.9) + default_rate(0.9)) / (default_rate(0.9) * n)
    assert abs(c.misses / n - 0.1) <= bound


def test_drift_alarms_are_counted_when_the_error_regime_changes():
    f = make_forecaster()
    rng = random.Random(4)
    x = _x()
    for t in range(6_000):
        f.learn(x, rng.gauss(0, 1e-3 if t < 3_000 else 4e-3))
    assert f.drift_alarms >= 1


features = st.fixed_dictionaries({name: st.floats(-0.2, 0.2) for name in FEATURE_NAMES} | {
    "vol_15": st.floats(0.0, 0.2), "vol_60": st.floats(0.0, 0.2), "window_fill": st.floats(0.01, 1.0)})


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(features, st.floats(-0.2, 0.2)), min_size=0, max_size=40),
    features,
    st.floats(1e-3, 1e7),
    st.sampled_from([0.5, 0.9, 0.99]),
)
def test_lower_point_upper_always_ordered(history, x, last_close, level):
    f = make_forecaster("", level)
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
