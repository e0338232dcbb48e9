"""Benchmark: how fast the per-symbol hot paths run on one core, on real recorded data.

Prints figures (not a timed test): ticks per second through decode + bar building,
and bar steps per second through features + predict + learn (the work done at each
bar close). Ratios between lines of one run are what to compare: machines here are
shared and noisy.

Run: ``make bench`` (or ``.venv/bin/python bench/engine_throughput.py``).
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from shared.stream.bars import BarBuilder
from shared.serving.engine import ForecastEngine
from shared.contracts.events import decode_tick, encode
from shared.stream.features import BarFeatures
from shared.forecast.forecaster import ReturnForecaster
from shared.offline.ohlcv import read_ohlcv
from ingestor.parsers.recorded import read_recorded

DATA = REPO.parent / "shared" / "data"
TRADES = DATA / "binance_spot_BTCUSDT_trades_20240808T2354Z-20240809T0005Z.csv.gz"
BARS = REPO / "samples" / "ftx_BTC-PERP_1m_20211231-20220201.csv.gz"


def best_of(n: int, fn) -> float:
    """Best wall time in seconds of ``n`` runs of ``fn()``."""
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ticks = [r.tick for r in read_recorded(TRADES if TRADES.exists() else REPO / "samples" /
                                          "kraken_XBTUSD_trades_20190701T00Z-01Z.csv.gz") if r.tick]
    bodies = [encode(t) for t in ticks]
    bars = read_ohlcv(BARS)

    def bar_build():
        b = BarBuilder(ticks[0].exchange, ticks[0].symbol)
        for t in ticks:
            b.add(t)

    def decode():
        for body in bodies:
            decode_tick(body)

    def engine():
        ForecastEngine(lambda e, s: (ReturnForecaster(), "bench")).process(ticks)

    def features_only():
        f = BarFeatures()
        for bar in bars:
            f.update(bar)

    def bar_steps():
        f, m = BarFeatures(), ReturnForecaster()
        prev = None
        for bar in bars:
            x = f.update(bar)
            if prev is not None:
                m.learn(prev[0], math.log(bar.close / prev[1]))
            if x is not None:
                m.predict_price(x, bar.close)
                prev = (x, bar.close)

    print(f"data: {len(ticks):,} ticks ({TRADES.name}), {len(bars):,} one-minute bars ({BARS.name})")
    for label, fn, n in [
        ("tick: bar builder update", bar_build, len(ticks)),
        ("tick: JSON decode + validation", decode, len(ticks)),
        ("tick: engine (bars + bar-close work)", engine, len(ticks)),
    ]:
        s = best_of(5, fn)
        print(f"{label:<42} {n / s:>12,.0f} per second   {s / n * 1e6:8.2f} µs each")
    for label, fn in [("bar: features only", features_only), ("bar: features + predict + learn", bar_steps)]:
        s = best_of(3, fn)
        print(f"{label:<42} {len(bars) / s:>12,.0f} per second   {s / len(bars) * 1e6:8.2f} µs each")


if __name__ == "__main__":
    main()
