"""``python -m tickcast backtest PATH [--symbol S] [--model NAME] [--json OUT] [--plot OUT.png]``
and ``python -m tickcast models [KEY]`` (the registry's keys, versions and promotion decisions,
see :mod:`tickcast.models`).

PATH is a one-minute OHLCV CSV or CSV.gz (header styles as in :mod:`shared.offline.ohlcv`), or the
URL of the history store (``mysql://user:pass@host/db`` or ``sqlite:///file``) together
with ``--exchange`` and ``--symbol``. Prints the report table of :mod:`shared.offline.backtest`.
Exit status: 0 on success, 2 on bad input (with a one-line reason on stderr).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from shared.offline.backtest import DEFAULT_WARMUP, plot_backtest, run_backtest
from shared.forecast.families import MODEL_NAMES
from shared.offline.ohlcv import OhlcvFormatError, load_minute_bars
from shared.settings import SettingsError
from tickcast import models


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tickcast", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    b = sub.add_parser("backtest", help="prequential backtest of a model beside persistence")
    b.add_argument("path", help="one-minute OHLCV CSV(.gz), or a history store URL (mysql://…, sqlite:///…)")
    b.add_argument("--symbol", help="symbol to keep (files with a symbol column; required for a store)")
    b.add_argument("--exchange", help="exchange of the symbol (history store only)")
    b.add_argument("--model", default="", help=f"model family: {', '.join(MODEL_NAMES)} (default {MODEL_NAMES[0]})")
    b.add_argument("--level", type=float, default=0.9, help="prediction interval level in (0, 1) (default 0.9)")
    b.add_argument("--warmup", type=int, default=DEFAULT_WARMUP,
                   help=f"realised minutes learned before scoring (default {DEFAULT_WARMUP})")
    b.add_argument("--json", type=Path, help="write the figures to this JSON file")
    b.add_argument("--plot", type=Path, help="write a PNG (price, forecast, interval band, rolling MAE ratio)")
    b.add_argument("--no-progress", action="store_true", help="no progress bar")
    models.add_parser(sub)
    return p


def _load(args) -> tuple[list, str, str]:
    if "://" in args.path:
        if not (args.symbol and args.exchange):
            raise ValueError("a history store needs --exchange and --symbol")
        from shared.storage.history import HistoryStore

        with HistoryStore.from_url(args.path) as store:
            bars = store.bars(args.exchange, args.symbol)
        if not bars:
            raise ValueError(f"no bars for {args.exchange}:{args.symbol} in the history store")
        return bars, f"history {args.exchange}", ""
    series = load_minute_bars(args.path, args.symbol)
    note = (f"{series.skipped} invalid rows skipped, {series.duplicates} duplicate minutes dropped,"
            f" {series.gaps} missing minutes")
    return series.bars, Path(args.path).name, note


def _finite(obj):
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    return obj


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = _parser().parse_args(argv)
    if args.command == "models":
        try:
            return models.main(args, sys.stdout)
        except SettingsError as exc:
            print(f"tickcast models: {exc}", file=sys.stderr)
            return 2
    try:
        bars, source, note = _load(args)
        result = run_backtest(bars, args.model, args.level, args.warmup, source=source,
                              progress=not args.no_progress)
    except (ValueError, OhlcvFormatError, FileNotFoundError) as exc:
        print(f"tickcast backtest: {exc}", file=sys.stderr)
        return 2
    print(result.table())
    if note:
        print(f"input: {note}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(_finite(result.to_dict()), indent=2) + "\n")
        print(f"figures written to {args.json}")
    if args.plot:
        plot_backtest(result, args.plot)
        print(f"plot written to {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
