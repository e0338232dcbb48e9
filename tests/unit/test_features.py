"""Incremental bar features against batch references (pandas) on real one-minute bars; no look-ahead."""

from __future__ import annotations

import math
import pickle
import random
from functools import cache

import numpy as np
import pandas as pd
import pytest

from shared.contracts.events import Bar
from shared.stream.features import FEATURE_NAMES, SPREAD_FLOOR, BarFeatures
from shared.offline.ohlcv import read_ohlcv
from tests.data_files import BINANCE_1M, FTX_1M, data_file

N = 3_000
FILES = {FTX_1M: 45_031, BINANCE_1M: 15_000}


@cache
def _bars(name: str = FTX_1M) -> tuple[Bar, ...]:
    bars = read_ohlcv(data_file(name), "x", "BTC")
    assert len(bars) == FILES[name]
    return tuple(bars)


def _run(bars) -> list[dict[str, float] | None]:
    f = BarFeatures()
    return [f.update(b) for b in bars]


def _wilder(values: np.ndarray, period: int = 14) -> np.ndarray:
    """Wilder's smoothing: running mean of the first ``period`` values, then (a * 13 + v) / 14."""
    out = np.empty(len(values))
    a = 0.0
    for k, v in enumerate(values, start=1):
        a = a + (v - a) / k if k <= period else (a * (period - 1) + v) / period
        out[k - 1] = a
    return out


def _medrv_terms(r: np.ndarray) -> np.ndarray:
    """MedRV terms of winsorised returns, written out plainly (a loop: the bound uses the previous vol_60)."""
    c = math.pi / (6 - 4 * math.sqrt(3) + math.pi)
    w = np.empty(len(r))
    terms = np.empty(len(r))
    for i, x in enumerate(r):
        if i >= 15:
            bound = 5.0 * math.sqrt(terms[max(0, i - 60):i].mean())
            x = min(max(x, -bound), bound) if bound > 0 else x
        w[i] = x
        terms[i] = c * float(np.median(np.abs(w[i - 2:i + 1]))) ** 2 if i >= 2 else x * x
    return terms


def test_winsorised_medrv_ignores_an_isolated_jump_and_bounds_a_bad_print():
    bars = list(_bars()[:400])
    calm = _run(bars)[-1]
    jump = [b if i < 390 else Bar(b.exchange, b.symbol, b.open_time_ms, b.open * 1.03, b.high * 1.03, b.low * 1.03,
                                       b.close * 1.03, b.volume, b.trade_count) for i, b in enumerate(bars)]
    assert _run(jump)[-1]["vol_15"] == pytest.approx(calm["vol_15"], rel=0.35)  # a 3 % level shift at bar 390
    bad = list(bars)
    b = bad[395]
    bad[395] = Bar(b.exchange, b.symbol, b.open_time_ms, b.open, b.high, b.low * 0.8, b.close * 0.8, b.volume, 1)
    x = _run(bad)[-1]
    assert x["vol_15"] < 2.5 * calm["vol_15"] and x["vol_60"] < 1.5 * calm["vol_60"]


def _reference(bars) -> pd.DataFrame:
    """All features of bars[1:], computed in batch with pandas from the whole arrays."""
    df = pd.DataFrame([(b.open_time_ms, b.high, b.low, b.close, b.volume) for b in bars],
                      columns=["t", "h", "l", "c", "v"])
    c, h, lo, v = df.c, df.h, df.l, df.v
    out = pd.DataFrame(index=df.index)
    for k in (1, 5, 15, 60):
        out[f"ret_{k}"] = np.log(c / c.shift(k).fillna(c.iloc[0]))
    terms = _medrv_terms(np.log(c / c.shift(1)).to_numpy()[1:])
    for k in (15, 60, 1440):
        out[f"vol_{k}"] = np.r_[np.nan, np.sqrt(pd.Series(terms).rolling(k, min_periods=1).mean().to_numpy())]
    change = c.diff()
    gain = _wilder(change.clip(lower=0).to_numpy()[1:])
    loss = _wilder((-change).clip(lower=0).to_numpy()[1:])
    with np.errstate(invalid="ignore", divide="ignore"):
        rsi = np.where(gain + loss > 0, (gain - loss) / (gain + loss), 0.0)
    out["rsi_14"] = np.r_[np.nan, rsi]
    macd = c.ewm(span=12, adjust=False).mean() - c.ewm(span=26, adjust=False).mean()
    out["macd_hist"] = (macd - macd.ewm(span=9, adjust=False).mean()) / c
    mid, sd = c.rolling(20, min_periods=1).mean(), c.rolling(20, min_periods=1).std(ddof=0)
    out["bb_pctb"] = np.where(sd > SPREAD_FLOOR * c, (c - (mid - 2 * sd)) / (4 * sd), 0.5)
    prev = c.shift(1)
    tr = pd.concat([h - lo, (h - prev).abs(), (lo - prev).abs()], axis=1).max(axis=1)
    out["atr_14"] = _wilder(tr.to_numpy()) / c
    tp = (h + lo + c) / 3
    vsum = v.rolling(60, min_periods=1).sum()
    vwap = (tp * v).rolling(60, min_periods=1).sum() / vsum
    out["vwap_dist"] = np.where(vsum > 0, np.log(c / vwap.where(vsum > 0, 1.0)), 0.0)
    vm, vs = v.rolling(60, min_periods=1).mean(), v.rolling(60, min_periods=1).std(ddof=0)
    out["volume_z"] = np.where((vm > 0) & (vs > SPREAD_FLOOR * vm), (v - vm) / vs.where(vs > 0, 1.0), 0.0)
    minute = (df.t // 60_000 + 1) % 1440
    out["tod_sin"] = np.sin(2 * np.pi * minute / 1440)
    out["tod_cos"] = np.cos(2 * np.pi * minute / 1440)
    out["window_fill"] = np.minimum(df.index, 60) / 60
    return out.iloc[1:][list(FEATURE_NAMES)]


# Running sums in the incremental code vs pandas' own rolling algorithms: agreement to
# ~1e-9 relative; the windowed volume statistic is compared on a coarser absolute scale
# (its z-score divides by a spread that can be small).
# Volatilities: a window that returns to flat keeps ~1e-11 of rounding in its running sum (1e-7 bp).
TOLERANCE = {name: (1e-7, 1e-12) for name in FEATURE_NAMES} | {"volume_z": (1e-6, 1e-8), "bb_pctb": (1e-6, 1e-9)} \
    | {f"vol_{k}": (1e-7, 1e-10) for k in (15, 60, 1440)}


@pytest.mark.parametrize("name", list(FILES))
def test_features_match_batch_reference(name):
    bars = _bars(name)[:N]
    got = _run(bars)
    assert got[0] is None and all(x is not None for x in got[1:])
    ref = _reference(bars)
    frame = pd.DataFrame(got[1:], columns=list(FEATURE_NAMES))
    assert list(frame.columns) == list(FEATURE_NAMES)
    assert np.isfinite(frame.to_numpy()).all()
    for feature in FEATURE_NAMES:
        rel, abs_ = TOLERANCE[feature]
        np.testing.assert_allclose(frame[feature].to_numpy(), ref[feature].to_numpy(), rtol=rel, atol=abs_,
                                   err_msg=f"{name}: {feature}")
    # the data exercise every feature: non-trivial spreads, bounded oscillators
    late = frame.iloc[100:]
    assert 1e-4 < late.vol_15.median() < 5e-3
    assert late.rsi_14.min() < -0.5 and late.rsi_14.max() > 0.5
    assert late.bb_pctb.min() < 0 and late.bb_pctb.max() > 1  # closes outside the bands happen
    assert late.volume_z.max() > 3 and (late.volume_z.abs() <= math.sqrt(59) + 1e-9).all()
    assert late.macd_hist.abs().max() > 1e-4 and late.atr_14.min() > 0


def test_binance_flat_start_takes_the_neutral_values():
    # the Binance export opens with minutes at exactly 10,000 and almost no volume
    got = _run(_bars(BINANCE_1M)[:5])
    first = got[1]
    assert first["ret_1"] == 0.0 and first["bb_pctb"] == 0.5 and first["rsi_14"] == 0.0
    assert first["vwap_dist"] == 0.0


def test_first_bar_gives_no_features_then_every_bar_does():
    f = BarFeatures()
    assert f.update(_bars()[0]) is None
    assert f.bars_seen == 1
    x = f.update(_bars()[1])
    assert tuple(x) == FEATURE_NAMES and x["window_fill"] == 1 / 60


def test_features_stay_exact_over_the_whole_month():
    # running sums could drift over 45,000 updates; compare against pandas every 500 bars
    bars = _bars()
    got = _run(bars)
    ref = _reference(bars)
    for t in range(100, len(bars), 500):
        for feature in ("vol_15", "vol_60", "vol_1440", "bb_pctb", "vwap_dist", "atr_14"):
            assert got[t][feature] == pytest.approx(ref[feature].iloc[t - 1], rel=1e-7, abs=1e-12), (t, feature)


def test_no_look_ahead_on_random_prefixes():
    bars = _bars()[:N]
    full = _run(bars)
    rng = random.Random(20240809)
    for k in sorted(rng.sample(range(1, N), 30)) + [1, 2, 14, 15, 20, 26, 60, 61, N - 1]:
        assert _run(bars[: k + 1])[-1] == full[k], k
    # changing every later bar leaves the earlier features unchanged
    k = 777
    changed = list(bars[: k + 1]) + [
        Bar(b.exchange, b.symbol, b.open_time_ms, 1.0, 2.0, 0.5, 1.5, 0.0, 0) for b in bars[k + 1:]
    ]
    assert _run(changed)[: k + 1] == full[: k + 1]


@pytest.mark.parametrize("cut", [0, 1, 5, 15, 16, 61, 400])
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


@pytest.mark.parametrize("close, high, low, volume", [
    (0.0, 1.0, 1.0, 1.0), (-1.0, 1.0, 1.0, 1.0), (1.0, 1.0, 0.0, 1.0), (float("nan"), 1.0, 1.0, 1.0),
    (1.0, float("inf"), 1.0, 1.0), (1.0, 1.0, 1.0, -1.0), (1.0, 1.0, 1.0, float("nan")),
])
def test_bad_bars_raise_and_leave_no_trace(close, high, low, volume):
    f = BarFeatures()
    f.update(Bar("x", "S", 0, 1.0, 1.0, 1.0, 1.0, 1.0, 1))
    with pytest.raises(ValueError, match="must be"):
        f.update(Bar("x", "S", 60_000, 1.0, high, low, close, volume, 1))
    assert f.bars_seen == 1
    x = f.update(Bar("x", "S", 60_000, 1.0, 1.0, 1.0, 1.0, 1.0, 1))
    assert x["ret_1"] == 0.0


def test_flat_prices_give_neutral_values():
    f = BarFeatures()
    for i in range(80):
        x = f.update(Bar("x", "S", i * 60_000, 100.0, 100.0, 100.0, 100.0, 1.0, 1))
    assert {k: x[k] for k in ("ret_1", "ret_60", "vol_15", "vol_60", "rsi_14", "macd_hist", "atr_14",
                              "vwap_dist", "volume_z")} == dict.fromkeys(
        ("ret_1", "ret_60", "vol_15", "vol_60", "rsi_14", "macd_hist", "atr_14", "vwap_dist", "volume_z"), 0.0)
    assert x["bb_pctb"] == 0.5 and x["window_fill"] == 1.0
