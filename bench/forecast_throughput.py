"""Benchmark: bar steps per second of feature update + predict + learn, per model family, one core.

A bar step is what the engine does at each bar close: update the features with the closed
bar, teach the model the label of the previous forecast, and forecast the next close with
its interval (through :class:`shared.forecast.prequential.PrequentialStepper`, the stepper every
caller uses). Prints figures (not a timed test); issue 16 asks for >= 20,000 bar steps per
second for the default family.

How it measures on a shared, noisy machine: the state after a warm-up (``--warmup`` bars, so the
day-long volatility window and the interval's score windows are full, as in serving) is
copied, and the next ``--chunk`` bars are timed from that copy, ``--repeat`` times; the
fastest chunk is reported (a chunk lasts tens of milliseconds, so some run without being
preempted by other processes). ``--against DIR`` runs the same measurement on the code of
another checkout (e.g. ``git worktree add /tmp/old e08163d``) in a subprocess, alternating
rounds with this one, and prints the ratio; compare ratios, not absolute figures, between
machines.

Run: ``.venv/bin/python bench/forecast_throughput.py [--repeat N] [--rounds N] [--against DIR]``.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "ftx_BTC-PERP_1m_20211231-20220201.csv.gz"
FALLBACK = REPO / "samples" / "ftx_BTC-PERP_1m_20211231-20220201.csv.gz"
TARGET = 20_000
"""Bar steps per second issue 16 asks of the default family."""


def measure(code: Path, warmup: int, chunk: int, repeat: int) -> dict[str, float]:
    """Microseconds per bar step of the code in ``code``: features only and each family, best chunk.

    Imports ``shared`` from ``code`` (call it in a fresh process for a checkout other than this one).
    """
    sys.path.insert(0, str(code))
    from shared.forecast.families import MODEL_NAMES
    from shared.forecast.forecaster import make_forecaster
    from shared.forecast.prequential import PrequentialStepper
    from shared.offline.ohlcv import read_ohlcv
    from shared.stream.features import BarFeatures

    bars = read_ohlcv(DATA if DATA.exists() else FALLBACK)[: warmup + chunk]
    warm, timed = bars[:warmup], bars[warmup:]

    def best(state, method: str, n: int) -> float:
        fastest = math.inf
        for _ in range(n):
            fn = getattr(copy.deepcopy(state), method)
            t = time.perf_counter()
            for bar in timed:
                fn(bar)
            fastest = min(fastest, time.perf_counter() - t)
        return fastest / len(timed) * 1e6

    features = BarFeatures()
    for bar in warm:
        features.update(bar)
    out = {"features only": best(features, "update", repeat)}
    for i, name in enumerate(MODEL_NAMES):
        stepper = PrequentialStepper(make_forecaster(name))
        for bar in warm:
            stepper.step(bar)
        out[name + (" (default)" if i == 0 else "")] = best(stepper, "step", repeat if i == 0 else max(1, repeat // 5))
    return out


def _subprocess(code: Path, args) -> dict[str, float]:
    cmd = [sys.executable, __file__, "--worker", str(code), "--warmup", str(args.warmup), "--chunk", str(args.chunk),
           "--repeat", str(args.repeat)]
    return json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeat", type=int, default=20, help="timed chunks per line and round; the fastest counts")
    p.add_argument("--rounds", type=int, default=3, help="rounds (alternating with --against); the best counts")
    p.add_argument("--warmup", type=int, default=3_000, help="bars stepped before timing (not timed)")
    p.add_argument("--chunk", type=int, default=1_000, help="bars per timed chunk")
    p.add_argument("--against", type=Path, help="another checkout to measure the same way, for a ratio")
    p.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(measure(args.worker, args.warmup, args.chunk, args.repeat)))
        return
    this: dict[str, float] = {}
    other: dict[str, float] = {}
    for _ in range(args.rounds):
        for code, best in ((REPO, this), *(((args.against, other),) if args.against else ())):
            for name, us in _subprocess(code, args).items():
                best[name] = min(best.get(name, math.inf), us)
    src = DATA if DATA.exists() else FALLBACK
    print(f"data: {src.name}, {args.warmup:,} bars of warm-up, then the fastest of {args.repeat} chunks of "
          f"{args.chunk:,} bars, best of {args.rounds} rounds" + (f" alternating with {args.against}" if other else ""))
    for name, us in this.items():
        line = f"{name:<22} {1e6 / us:>9,.0f} bar steps/s  {us:7.2f} µs each"
        if name != "features only":
            line += f"  ({1e6 / us / TARGET:.2f}x the {TARGET:,}/s target)"
        if name in other:
            line += f"  | {args.against.name}: {1e6 / other[name]:>8,.0f}/s, speed ratio new/old {other[name] / us:.2f}"
        print(line)


if __name__ == "__main__":
    main()
