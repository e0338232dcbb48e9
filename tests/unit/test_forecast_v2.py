"""Issue 16 on the real one-minute files: export, bad prints, sign balance, conditional calibration,
input checks, the comparison statistics and old-model compatibility."""

from __future__ import annotations

import gzip
import math
import pickle
import random
from functools import cache

import numpy as np
import pytest

from shared.contracts.events import Bar
from shared.forecast.comparison import paired_test
from shared.forecast.conformal import AdaptiveConformalInterval, MondrianInterval, QuantileTracker, default_step
from shared.forecast.forecaster import ReturnForecaster, make_forecaster
from shared.offline.backtest import run_backtest
from shared.offline.badprint import corrupt
from shared.offline.diagnostics import interval_score, rolling_quantile_interval, summary
from shared.offline.export import COLUMNS, read_series, write_csv
from shared.offline.ohlcv import load_minute_bars
from shared.stream.features import FEATURE_NAMES
from tests.data_files import BINANCE_1M, FTX_1M, data_file
from tickcast.__main__ import main


@cache
def _bars(name: str) -> tuple[Bar, ...]:
    return tuple(load_minute_bars(data_file(name)).bars)


@cache
def _result(name: str):
    return run_backtest(_bars(name))


# ----------------------------------------------------------------------------- export
def test_export_round_trips_and_the_cli_writes_it(tmp_path, capsys):
    res = run_backtest(_bars(FTX_1M)[:2_000], warmup=200)
    path = write_csv(res.series, tmp_path / "x.csv")
    assert path.read_text().splitlines()[0] == ",".join(COLUMNS)
    back = read_series(path)
    for name in ("time_ms", "last", "actual", "pred", "lower", "upper", "model_return", "sigma", "half_width",
                 "guard_weight"):
        np.testing.assert_allclose(getattr(back, name), getattr(res.series, name), rtol=1e-12, err_msg=name)
    s = back
    assert ((s.guard_weight > 0) & (s.guard_weight < 1)).all() and (s.sigma > 0).all()
    # the served forecast is the guard weight times the model's return
    np.testing.assert_allclose(np.log(s.pred / s.last), s.guard_weight * s.model_return, rtol=1e-9, atol=1e-15)
    src = tmp_path / "bars.csv"
    src.write_text("timestamp_ms,open,high,low,close,volume\n" + "\n".join(
        f"{b.open_time_ms},{b.open},{b.high},{b.low},{b.close},{b.volume}" for b in _bars(FTX_1M)[:700]))
    assert main(["backtest", str(src), "--warmup", "100", "--csv", str(tmp_path / "out.csv"), "--no-progress"]) == 0
    assert "per-minute series written" in capsys.readouterr().out
    assert len(read_series(tmp_path / "out.csv").actual) == 700 - 2 - 100


# ----------------------------------------------------------------------------- the targets
@pytest.mark.parametrize("name", [FTX_1M, BINANCE_1M])
def test_no_sign_bias_and_conditional_calibration(name):
    fig = summary(_result(name).series)
    assert 0.45 <= fig["share_below"] <= 0.55
    assert 0.89 <= fig["coverage"] <= 0.91
    assert all(0.885 <= fig[f"coverage_t{i}"] <= 0.915 for i in (1, 2, 3)), fig  # every tercile of width
    assert fig["mae_ratio_all"] < 1.0 and fig["interval_score_ratio"] < 1.0


@pytest.mark.parametrize("name", [FTX_1M, BINANCE_1M])
def test_a_twenty_percent_bad_print_does_not_switch_the_model_off(name):
    bars = list(_bars(name))
    t_bad = bars[10_000].open_time_ms
    s = run_backtest(corrupt(bars, 10_000, 0.8)).series
    after = s.time_ms >= t_bad
    ratio = np.abs(s.pred[after] - s.actual[after]).sum() / np.abs(s.last[after] - s.actual[after]).sum()
    assert ratio <= 1.000
    assert s.guard_weight[after].min() > 0.1 and s.sigma[after].max() < 10 * s.sigma[~after][-1]
    assert np.all(s.upper[after] / s.last[after] < 1.05)


# ----------------------------------------------------------------------------- input checks
T0 = 1_700_000_000_000 - 1_700_000_000_000 % 60_000
"""A minute boundary in 2023; rows below are at ``T0 + offset`` ms."""


def _write(path, lines: list[str]) -> None:
    """A gzip CSV whose first column holds offsets from T0 in ms."""
    rows = [lines[0]] + [f"{T0 + int(line.split(',', 1)[0])},{line.split(',', 1)[1]}" for line in lines[1:]]
    with gzip.open(path, "wt") as fh:
        fh.write("\n".join(rows) + "\n")


def test_inconsistent_bars_are_refused_and_counted(tmp_path):
    src = tmp_path / "bad.csv.gz"
    _write(src, ["timestamp_ms,open,high,low,close,volume",
                 "60000,100,101,99,100,1", "120000,100,101,99,98,1",  # close below low
                 "180000,102,101,99,100,1", "240000,100,99,101,100,1",  # open above high; high < low
                 "300000,100,101,99,100.5,1"])
    series = load_minute_bars(src)
    assert [b.open_time_ms - T0 for b in series.bars] == [60_000, 300_000]
    assert series.inconsistent == 3 and series.skipped == 3


def test_sub_minute_rows_are_resampled_to_minutes(tmp_path):
    src = tmp_path / "secs.csv.gz"
    _write(src, ["ts_ms,open,high,low,close,volume",
                 "60001,100,102,99,101,1", "60030,101,105,100,104,2", "60059,104,104,97,98,3",
                 "120000,98,99,98,99,4", "120020,99,99,96,97,1"])
    series = load_minute_bars(src)
    assert series.resampled == 5
    a, b = series.bars
    assert (a.open_time_ms - T0, a.open, a.high, a.low, a.close, a.volume) == (60_000, 100, 105, 97, 98, 6)
    assert (b.open_time_ms - T0, b.open, b.high, b.low, b.close, b.volume) == (120_000, 98, 99, 96, 97, 5)


# ----------------------------------------------------------------------------- statistics
def test_paired_test_matches_a_direct_newey_west_computation():
    rng = np.random.default_rng(3)
    a = np.abs(rng.normal(0, 1, 800))
    b = np.abs(rng.normal(0, 1.05, 800))
    d = a - b
    n, lags = len(d), 6  # floor(4 * 8 ** (2 / 9)) = 6
    dc = d - d.mean()
    lrv = dc @ dc / n + sum(2 * (1 - k / (lags + 1)) * (dc[k:] @ dc[:-k]) / n for k in range(1, lags + 1))
    t = paired_test(a, b)
    assert t.lags == lags and t.statistic == pytest.approx(d.mean() / math.sqrt(lrv / n), rel=1e-12)
    assert t.statistic_hln == pytest.approx(t.statistic * math.sqrt((n - 1) / n), rel=1e-12)
    assert (t.p_better < 0.5) == (t.statistic < 0)


def test_interval_score_and_the_naive_interval():
    lo, hi, y = np.array([1.0, 1.0, 1.0]), np.array([2.0, 2.0, 2.0]), np.array([1.5, 0.5, 3.0])
    assert list(interval_score(lo, hi, y, 0.9)) == pytest.approx([1.0, 1.0 + 20 * 0.5, 1.0 + 20 * 1.0])
    closes = np.exp(np.cumsum(np.random.default_rng(4).normal(0, 1e-3, 5_000)))
    nlo, nhi = rolling_quantile_interval(closes, 0.9)
    ok = ~np.isnan(nlo)
    assert ok.sum() == 5_000 - 1_001 and 0.87 < ((nlo[ok] <= closes[ok]) & (closes[ok] <= nhi[ok])).mean() < 0.93


def test_mondrian_interval_covers_within_each_volatility_tercile():
    rng = random.Random(5)
    m, flat = MondrianInterval(0.9), AdaptiveConformalInterval(0.9)
    hits = {0: [], 1: [], 2: []}
    flat_hits = {0: [], 1: [], 2: []}
    for _ in range(30_000):
        level = rng.randrange(3)
        sigma = (1.0, 2.0, 4.0)[level]
        score = abs(rng.gauss(0, (0.7, 1.0, 1.4)[level]))  # the scale over-reacts: storms score lower
        b = m.bin_of(sigma)
        q = m.half_width(b)
        hits[level].append(score <= q)
        flat_hits[level].append(score <= flat.half_width())
        m.update(score, q, b, sigma)
        flat.update(score)
    cov = [np.mean(hits[k][5_000:]) for k in range(3)]
    assert all(abs(c - 0.9) < 0.015 for c in cov), cov
    assert np.mean(flat_hits[0][5_000:]) > 0.95  # one quantile for all over-covers calm ones


def test_quantile_tracking_meets_its_coverage_bound_under_a_shift_and_never_inverts():
    """Angelopoulos, Candès & Tibshirani (2023): mean(miss) - alpha = (q_end - q_start) / (step T)
    on any sequence; bounded by (Z_CLIP + step) / (step T) while q stays in [0, Z_CLIP]."""
    rng = random.Random(6)
    t = QuantileTracker(0.9)
    q1, n, widths = t.q, 20_000, []
    for i in range(n):
        scale = 1.0 if i < n // 2 else 3.0  # a volatility regime the scores do not know about
        widths.append(t.half_width())
        t.update(abs(rng.gauss(0, scale)) if i % 500 else 0.0)
    assert t.misses / n - 0.1 == pytest.approx((t.q - q1) / (t.step * n), abs=1e-12)
    assert abs(t.misses / n - 0.1) <= (5.0 + default_step(0.9)) / (default_step(0.9) * n)
    assert 0.0 < min(widths) and 1.645 * 3 * 0.9 < widths[-1] < 1.645 * 3 * 1.1
    flat = QuantileTracker(0.9)
    for _ in range(5_000):  # a market that never moves: the width shrinks to 0, never below
        flat.update(0.0)
    assert flat.half_width() == 0.0
    assert flat.update(1e-9) and flat.half_width() == pytest.approx(flat.step * 0.9)  # the first move widens it


def test_an_interval_pickled_with_windowed_cells_keeps_them():
    old = make_forecaster()
    old.interval.cells = [AdaptiveConformalInterval(0.9) for _ in range(3)]  # before quantile tracking
    loaded = pickle.loads(pickle.dumps(old))
    x = dict.fromkeys(FEATURE_NAMES, 0.0) | {"vol_15": 1e-3, "vol_60": 1e-3, "window_fill": 1.0, "ret_1": 2e-3}
    for _ in range(20):
        r, lo, hi = loaded.predict(x)
        assert lo <= r <= hi
        loaded.learn(x, 1e-3)
    assert all(isinstance(c, AdaptiveConformalInterval) for c in loaded.interval.cells)
    assert loaded.interval.seen == 20
    assert all(isinstance(c, QuantileTracker) for c in make_forecaster().interval.cells)


# ----------------------------------------------------------------------------- compatibility
def test_a_forecaster_pickled_before_issue_16_loads_and_forecasts():
    old = make_forecaster()
    old.interval = AdaptiveConformalInterval(0.9)
    del old.__dict__["inputs_version"]
    old.guard.__class__.__setstate__(old.guard, {"excess_loss": -0.01, "range_sq": 1e-6, "weight": 0.8})
    state = old.__getstate__()
    blob = pickle.dumps(old)
    assert "inputs_version" not in state
    loaded = pickle.loads(blob)
    assert loaded.inputs_version == 1 and loaded.guard.weight == 0.8
    x = dict.fromkeys(FEATURE_NAMES, 0.0) | {"vol_15": 1e-3, "vol_60": 1e-3, "window_fill": 1.0, "ret_1": 2e-3}
    for _ in range(20):
        r, lo, hi = loaded.predict(x)
        assert lo <= r <= hi and all(math.isfinite(v) for v in (r, lo, hi))
        loaded.learn(x, 1e-3)
    assert isinstance(ReturnForecaster().interval, MondrianInterval)


# ----------------------------------------------------------------------------- speed (item 9) and ticks (item 6)
def test_the_fast_linear_model_computes_what_rivers_pipeline_computes():
    """``linear.build()`` (plain lists) against River's StandardScaler | LinearRegression, to the last bit."""
    from shared.forecast.families import linear
    from shared.forecast.prequential import PrequentialStepper

    bars = _bars(FTX_1M)[:6_000]
    made = []
    for regressor in (linear.river_pipeline(), linear.build()):
        stepper = PrequentialStepper(ReturnForecaster(regressor, name="linear"))
        out = []
        for bar in bars:
            stepper.step(bar)
            out.append((stepper.pending.predicted, stepper.pending.lower, stepper.pending.upper)
                       if stepper.pending else None)
        made.append(out)
    assert made[0] == made[1] and sum(p is not None and p[0] != b.close for p, b in zip(made[0], bars)) > 4_000
    clone = pickle.loads(pickle.dumps(stepper))  # the fast model pickles and continues identically
    for bar in _bars(FTX_1M)[6_000:6_200]:
        assert clone.step(bar) == stepper.step(bar)


def test_bar_features_pickled_with_rivers_ewmean_continue_identically():
    """Feature state saved before the MACD averages became plain floats (River ``stats.EWMean``) loads."""
    from river import stats

    from shared.stream.features import MACD_FAST, MACD_SIGNAL, MACD_SLOW, BarFeatures

    bars = _bars(FTX_1M)[:300]
    f = BarFeatures()
    fast, slow, signal = (stats.EWMean(2.0 / (n + 1.0)) for n in (MACD_FAST, MACD_SLOW, MACD_SIGNAL))
    for bar in bars[:200]:
        f.update(bar)
        fast.update(bar.close)
        slow.update(bar.close)
        signal.update(fast.get() - slow.get())
    state = f.__getstate__() | {"_ema_fast": fast, "_ema_slow": slow, "_ema_signal": signal}
    old = BarFeatures.__new__(BarFeatures)
    old.__setstate__(pickle.loads(pickle.dumps(state)))  # River's EWMean pickles (its state is Rust's)
    assert [old.update(b) for b in bars[200:]] == [f.update(b) for b in bars[200:]]


def test_order_flow_features_reach_the_model_only_when_the_engine_runs_on_ticks():
    from shared.serving.engine import ForecastEngine
    from shared.stream.orderflow import OrderFlow
    from tests.data_files import BTC_SPOT_CSV
    from ingestor.parsers.recorded import read_recorded

    ticks = [r.tick for r in read_recorded(data_file(BTC_SPOT_CSV)) if r.tick is not None]
    seen = {}
    for on in (False, True):
        engine = ForecastEngine(lambda exchange, symbol: None, tick_features=on, clock=lambda: 0)
        preds = [e for e in engine.process(ticks) if e.type == "prediction"]
        state = next(iter(engine.symbols.values()))
        seen[on] = preds, state
    (off_preds, off_state), (on_preds, on_state) = seen[False], seen[True]
    assert off_state.flow is None and "ofi_1" not in off_state.forecaster.regressor.extra
    # the first minute (seen in part) gives no features at all; every later one carries its flow,
    # so every label learned came with it
    learned = on_state.forecaster.regressor.extra
    assert learned["ofi_1"][0] == on_state.forecaster.steps == len(on_preds) - 1 >= 7
    assert on_state.flow.complete and not OrderFlow().complete
    assert -1.0 <= on_state.pending.x["ofi_1"] <= 1.0 and "flow_1" in on_state.pending.x
    assert len(on_preds) == len(off_preds) and on_preds != off_preds
    # all-or-nothing: the state round-trips through pickle with its flow
    clone = pickle.loads(pickle.dumps(on_state))
    assert clone.flow.minute == on_state.flow.minute and clone.flow.buy == on_state.flow.buy


def test_a_stepper_pickled_before_it_had_a_flow_loads_without_one():
    from shared.forecast.prequential import PrequentialStepper

    stepper = PrequentialStepper(make_forecaster())
    for bar in _bars(FTX_1M)[:50]:
        stepper.step(bar)
    legacy = (None, {k: getattr(stepper, k) for k in ("forecaster", "features", "pending", "resolved", "gaps", "_x")})
    old = PrequentialStepper.__new__(PrequentialStepper)
    old.__setstate__(legacy)
    assert old.flow is None and old.step(_bars(FTX_1M)[50]) == stepper.step(_bars(FTX_1M)[50])
