"""Benchmark: bar steps per second of feature update + predict + learn, per model family, one core.

A bar step is what the engine does at each bar close: update the features with the closed
bar, teach the model the label of the previous forecast, and forecast the next close with
its interval. Prints figures (not a timed test); issue 4 asks for >= 20,000 steps per second
for the default family. Machines here are shared and noisy: the best of several runs is
printed, and ratios between lines of one run are what to compare.

Run: ``.venv/bin/python bench/forecast_throughput.py [--repeat N] [--bars N]``.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from shared.stream.features import BarFeatures
from shared.forecast.forecaster import make_forecaster
from shared.forecast.prequential import PrequentialStepper
from shared.forecast.families import DEFAULT_MODEL, MODEL_NAMES
from shared.offline.ohlcv import read_ohlcv

DATA = REPO.parent / "shared" / "data" / "ftx_BTC-PERP_1m_20211231-20220201.csv.gz"
FALLBACK = REPO / "samples" / "ftx_BTC-PERP_1m_20211231-20220201.csv.gz"


def features_only(bars) -> None:
    """Feature updates alone."""
    f = BarFeatures()
    for bar in bars:
        f.update(bar)


def bar_steps(bars, name: str) -> None:
    """Features + learn (previous label) + predict, through the stepper every caller uses."""
    step = PrequentialStepper(make_forecaster(name)).step
    for bar in bars:
        step(bar)


def best_of(n: int, fn, *args) -> float:
    """Best wall time in seconds of ``n`` runs of ``fn(*args)``."""
    best = math.inf
    for _ in range(n):
        t = time.perf_counter()
        fn(*args)
        best = min(best, time.perf_counter() - t)
    return best


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeat", type=int, default=3, help="runs per line; the best is printed")
    p.add_argument("--bars", type=int, default=20_000, help="bars per run (from the FTX one-minute file)")
    args = p.parse_args(argv)
    bars = read_ohlcv(DATA if DATA.exists() else FALLBACK)[: args.bars]
    print(f"data: {len(bars):,} one-minute bars of {DATA.name}; best of {args.repeat} runs")
    s = best_of(args.repeat, features_only, bars)
    base = len(bars) / s
    print(f"{'features only':<40} {base:>10,.0f} bar steps/s  {s / len(bars) * 1e6:7.2f} µs each")
    for name in MODEL_NAMES:
        s = best_of(args.repeat if name == DEFAULT_MODEL else 1, bar_steps, bars, name)
        rate = len(bars) / s
        tag = " (default)" if name == DEFAULT_MODEL else ""
        print(f"{'features + predict + learn: ' + name + tag:<40} {rate:>10,.0f} bar steps/s"
              f"  {s / len(bars) * 1e6:7.2f} µs each  ({rate / 20_000:.2f}x the 20,000/s target)")


if __name__ == "__main__":
    main()
