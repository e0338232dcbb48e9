"""Print issue 16's figures for one or more backtest exports (``tickcast backtest --csv``), side by side.

Run: ``.venv/bin/python scripts/forecast_report.py LABEL=PATH.csv [LABEL=PATH.csv ...] [--level 0.9] [--json OUT]``

Each column is one export; the rows are the figures of :func:`shared.offline.diagnostics.summary`:
MAE ratio to persistence with the Newey-West Diebold-Mariano statistic and p on the whole run
and each half, the share of moved forecasts below the last close, coverage overall and per
tercile of interval width, the interval score beside a naive rolling-quantile interval, and the
guard weight.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from shared.offline.diagnostics import summary  # noqa: E402
from shared.offline.export import read_series  # noqa: E402

ROWS = [
    ("minutes scored", "minutes", "{:,.0f}"),
    ("MAE ratio", "mae_ratio_all", "{:.5f}"),
    ("  NW-DM stat (p)", ("nw_dm_all", "nw_p_all"), "{:+.2f} ({:.3f})"),
    ("MAE ratio, first half", "mae_ratio_first_half", "{:.5f}"),
    ("  NW-DM stat (p)", ("nw_dm_first_half", "nw_p_first_half"), "{:+.2f} ({:.3f})"),
    ("MAE ratio, second half", "mae_ratio_second_half", "{:.5f}"),
    ("  NW-DM stat (p)", ("nw_dm_second_half", "nw_p_second_half"), "{:+.2f} ({:.3f})"),
    ("moved forecasts below last close", "share_below", "{:.1%}"),
    ("coverage", "coverage", "{:.2%}"),
    ("coverage, narrowest width tercile", "coverage_t1", "{:.2%}"),
    ("coverage, middle tercile", "coverage_t2", "{:.2%}"),
    ("coverage, widest tercile", "coverage_t3", "{:.2%}"),
    ("interval score (USD)", "interval_score", "{:.3f}"),
    ("naive rolling-quantile interval score", "interval_score_naive", "{:.3f}"),
    ("interval score ratio model / naive", "interval_score_ratio", "{:.4f}"),
    ("naive interval coverage", "coverage_naive", "{:.2%}"),
    ("guard weight median", "guard_weight_median", "{:.3f}"),
    ("guard weight min", "guard_weight_min", "{:.2e}"),
]


def cell(fig: dict, key, fmt: str) -> str:
    keys = key if isinstance(key, tuple) else (key,)
    if any(k not in fig or fig[k] is None for k in keys):
        return "—"
    return fmt.format(*(fig[k] for k in keys))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("exports", nargs="+", help="LABEL=PATH.csv")
    p.add_argument("--level", type=float, default=0.9)
    p.add_argument("--json", type=Path, help="write the figures as JSON {label: {...}}")
    args = p.parse_args(argv)
    figures = {}
    for item in args.exports:
        label, _, path = item.partition("=")
        series = read_series(path or label)
        figures[label] = summary(series, args.level)
    labels = list(figures)
    w0 = max(len(r[0]) for r in ROWS)
    widths = [max(len(label), 16) for label in labels]
    print("| figure | " + " | ".join(labels) + " |")
    print("| --- | " + " | ".join("---" for _ in labels) + " |")
    for name, key, fmt in ROWS:
        print(f"| {name:<{w0}} | " + " | ".join(f"{cell(figures[lb], key, fmt):>{w}}" for lb, w in zip(labels, widths)) + " |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
