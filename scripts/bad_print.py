"""Issue 16's bad-print check: one minute's close and low multiplied by 0.8, 10,000 minutes in.

Run: ``.venv/bin/python scripts/bad_print.py PATH [--at 10000] [--factor 0.8] [--csv OUT.csv]``

Prints the MAE ratio to persistence over the minutes from the bad print on (the bad minute,
its rebound and every later one), over the minutes after the rebound, and the same on the
clean file, with the guard weight and sigma around the shock. The figures come from
:func:`shared.offline.badprint.bad_print_run`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from shared.offline.badprint import bad_print_run  # noqa: E402
from shared.offline.ohlcv import load_minute_bars  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("path")
    p.add_argument("--at", type=int, default=10_000, help="index of the bar to corrupt (default 10,000)")
    p.add_argument("--factor", type=float, default=0.8, help="close and low multiplied by this (default 0.8)")
    p.add_argument("--csv", type=Path, help="write the corrupted run's per-minute export")
    args = p.parse_args(argv)
    bars = load_minute_bars(args.path).bars
    out = bad_print_run(bars, args.at, args.factor)
    print(f"{Path(args.path).name}: close and low of bar {args.at:,} x {args.factor}")
    for key, value in out.figures.items():
        print(f"  {key:<44} {value:.5f}" if isinstance(value, float) else f"  {key:<44} {value}")
    if args.csv:
        from shared.offline.export import write_csv

        write_csv(out.shocked.series, args.csv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
