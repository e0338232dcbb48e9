"""Incremental bar features against a batch reference on real FTX one-minute bars."""

from __future__ import annotations

import math
import pickle
import random
from functools import lru_cache

import numpy as np
import pytest

from shared.events import Bar
from shared.features import FEATURE_NAMES, BarFeatures
from shared.ohlcv import read_ohlcv
from tests.data_files import FTX_1M, data_file

N = 2_000


@lru_cache(maxsize=None)
def _bars() -> tuple[Bar, ...]:
    bars = read_ohlcv(data_file(FTX_1M), "ftx", "BTC-PERP")
    assert len(bars) == 45_031
    return tuple(bars)


def _run(bars) -> list[dict[str, float] | None]:
    f = BarFeatures()
    return [f.update(b) for b in bars]


def _rsi_reference(closes: np.ndarray) -> list[float]:
    """Wilder's RSI(14) after each change, rescaled to [-1, 1]; partial seed before 14 changes."""
    changes = np.diff(closes)
    gains = np.where(changes > 0, changes, 0.0)
    losses = np.where(changes < 0, -changes, 0.0)
    out = []
    for k in range(1, len(changes) + 1):
        if k <= 14:  # seed: simple mean of the changes so far (of the first 14 once complete)
            g, l = gains[:k].mean(), losses[:k].mean()  # noqa: E741
        else:
            g = (g * 13 + gains[k - 1]) / 14
            l = (l * 13 + losses[k - 1]) / 14  # noqa: E741
        if g + l == 0:
            rsi = 50.0
        elif l == 0:
            rsi = 100.0
        else:
            rsi = 100.0 - 100.0 / (1.0 + g / l)
        out.append((rsi - 50.0) / 50.0)
    return out


def _reference(bars) -> list[dict[str, float]]:
    """Features of bars[1:], computed in batch from the whole array of closes."""
    c = np.array([b.close for b in bars], dtype=float)
    r = np.log(c[1:] / c[:-1])
    rsi = _rsi_reference(c)
    out = []
    for t in range(1, len(c)):
        window = r[max(0, t - 15):t]
        out.append({
            "ret_1": math.log(c[t] / c[t - 1]),
            "ret_5": math.log(c[t] / c[max(0, t - 5)]),
            "ret_15": math.log(c[t] / c[max(0, t - 15)]),
            "vol_15": float(np.std(window, ddof=1)) if len(window) > 1 else 0.0,
            "rsi_14": rsi[t - 1],
            "range_1": math.log(bars[t].high / bars[t].low),
        })
    return out


def test_first_bar_gives_no_features():
    f = BarFeatures()
    assert f.update(_bars()[0]) is None
    assert f.bars_seen == 1
    x = f.update(_bars()[1])
    assert tuple(x) == FEATURE_NAMES


def test_features_match_batch_reference():
    bars = _bars()[:N]
    got = _run(bars)
    ref = _reference(bars)
    assert got[0] is None and len(got) == len(ref) + 1
    worst = {name: 0.0 for name in FEATURE_NAMES}
    for t, (x, expected) in enumerate(zip(got[1:], ref), start=1):
        assert set(x) == set(FEATURE_NAMES)
        for name in FEATURE_NAMES:
            assert math.isclose(x[name], expected[name], rel_tol=1e-9, abs_tol=1e-15), (
                t, name, x[name], expected[name])
            if expected[name]:
                worst[name] = max(worst[name], abs(x[name] / expected[name] - 1))
    # the data exercises every feature: non-trivial values, the RSI away from its bounds
    vol = [x["vol_15"] for x in got[16:]]
    assert 1e-4 < float(np.median(vol)) < 5e-3
    rsi = [x["rsi_14"] for x in got[15:]]
    assert min(rsi) < -0.5 and max(rsi) > 0.5 and all(-1 <= v <= 1 for v in rsi)
    assert worst["vol_15"] < 1e-9


def test_warm_up_uses_the_bars_available_so_far():
    bars = _bars()[:20]
    got = _run(bars)
    c = [b.close for b in bars]
    # second bar: one return, no spread yet; RSI is +-1 after a single move
    assert got[1]["vol_15"] == 0.0
    assert got[1]["rsi_14"] == (1.0 if c[1] > c[0] else -1.0 if c[1] < c[0] else 0.0)
    assert got[3]["ret_5"] == pytest.approx(math.log(c[3] / c[0]), rel=1e-12)
    assert got[3]["ret_15"] == pytest.approx(math.log(c[3] / c[0]), rel=1e-12)
    assert got[19]["ret_15"] == pytest.approx(math.log(c[19] / c[4]), rel=1e-12)


def test_vol_15_stays_exact_over_the_whole_month():
    # running sums could drift over 45,000 updates; compare to a fresh window every 500 bars
    bars = _bars()
    got = _run(bars)
    c = np.array([b.close for b in bars])
    r = np.log(c[1:] / c[:-1])
    worst = 0.0
    for t in range(16, len(bars), 500):
        expected = float(np.std(r[t - 15:t], ddof=1))
        worst = max(worst, abs(got[t]["vol_15"] - expected) / expected)
    assert worst < 1e-9


def test_no_look_ahead():
    bars = _bars()[:N]
    full = _run(bars)
    rng = random.Random(20240809)
    for k in sorted(rng.sample(range(1, N), 40)) + [1, 2, 14, 15, 16, N - 1]:
        prefix = _run(bars[: k + 1])
        assert prefix[-1] == full[k], k
    # changing every later bar leaves the earlier features unchanged
    k = 777
    changed = list(bars[: k + 1]) + [
        Bar(b.exchange, b.symbol, b.open_time_ms, 1.0, 2.0, 0.5, 1.5, 0.0, 0) for b in bars[k + 1:]
    ]
    assert _run(changed)[: k + 1] == full[: k + 1]


@pytest.mark.parametrize("cut", [0, 1, 5, 15, 16, 400])
def test_pickle_mid_stream_continues_identically(cut):
    bars = _bars()[:600]
    f = BarFeatures()
    for b in bars[:cut]:
        f.update(b)
    clone = pickle.loads(pickle.dumps(f))
    assert clone.bars_seen == f.bars_seen
    original = [f.update(b) for b in bars[cut:]]
    resumed = [clone.update(b) for b in bars[cut:]]
    assert resumed == original
    assert resumed == _run(bars)[cut:]


@pytest.mark.parametrize("close, low", [(0.0, 1.0), (-1.0, 1.0), (1.0, 0.0), (float("nan"), 1.0)])
def test_non_positive_prices_raise(close, low):
    f = BarFeatures()
    with pytest.raises(ValueError, match="must be > 0"):
        f.update(Bar("x", "S", 0, 1.0, 1.0, low, close, 1.0, 1))
    assert f.bars_seen == 0  # the bad bar left no trace


def test_flat_prices_give_zero_volatility_and_neutral_rsi():
    f = BarFeatures()
    for i in range(30):
        x = f.update(Bar("x", "S", i * 60_000, 100.0, 100.0, 100.0, 100.0, 1.0, 1))
    assert x == {"ret_1": 0.0, "ret_5": 0.0, "ret_15": 0.0, "vol_15": 0.0, "rsi_14": 0.0, "range_1": 0.0}
