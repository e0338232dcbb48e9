"""Benchmark: how fast the per-symbol hot paths run on one core, on real recorded data.

Prints figures (not a timed test): ticks per second through decode, bar building and
the whole engine (bar steps alone: ``bench/forecast_throughput.py``). Ratios between lines of one run are what to compare: machines here are
shared and noisy.

Run: ``make bench`` (or ``.venv/bin/python bench/engine_throughput.py``).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from shared.stream.bars import BarBuilder
from shared.serving.engine import ForecastEngine
from shared.contracts.events import decode_tick, encode
from shared.forecast.forecaster import ReturnForecaster
from ingestor.parsers.recorded import read_recorded

DATA = REPO.parent / "shared" / "data"
TRADES = DATA / "binance_spot_BTCUSDT_trades_20240808T2354Z-20240809T0005Z.csv.gz"


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

    def bar_build():
        b = BarBuilder(ticks[0].exchange, ticks[0].symbol)
        for t in ticks:
            b.add(t)

    def decode():
        for body in bodies:
            decode_tick(body)

    def engine():
        ForecastEngine(lambda e, s: (ReturnForecaster(), "bench")).process(ticks)

    print(f"data: {len(ticks):,} ticks ({TRADES.name})")
    for label, fn, n in [
        ("tick: bar builder update", bar_build, len(ticks)),
        ("tick: JSON decode + validation", decode, len(ticks)),
        ("tick: engine (bars + bar-close work)", engine, len(ticks)),
    ]:
        s = best_of(5, fn)
        print(f"{label:<42} {n / s:>12,.0f} per second   {s / n * 1e6:8.2f} µs each")

if __name__ == "__main__":
    main()
