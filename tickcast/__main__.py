"""The ``tickcast`` command (also ``python -m tickcast``): ``backtest`` and ``models``.

``tickcast backtest PATH [--symbol S] [--model NAME] [--json OUT] [--plot OUT.png] [--csv OUT.csv]`` runs a
prequential backtest of a model beside persistence. PATH is a one-minute OHLCV CSV or CSV.gz
(header styles as in :mod:`shared.offline.ohlcv`), or the URL of the history store
(``mysql://user:pass@host/db`` or ``sqlite:///file``) together with ``--exchange`` and
``--symbol``. Prints the report table of :mod:`shared.offline.backtest`.

``tickcast models [KEY]`` lists the registry's keys, versions and promotion decisions
(:mod:`tickcast.models`).

Bad input is checked before any work: one line on stderr naming the problem and the fix, exit
status 2 (1 for a model key the registry does not hold); no traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from ingestor import OneLineErrorParser, program_name, version
from shared.offline.ohlcv import OhlcvFormatError, load_minute_bars
from shared.settings import SettingsError
from tickcast import models

DESCRIPTION = """tickcast: next-minute price forecasts; offline tools.

  backtest  prequential backtest of a model beside persistence, from a one-minute OHLCV
            CSV(.gz) or the history store (mysql://... or sqlite:///...)
  models    the model registry: keys, versions, holdout MAE, promotion decisions

Exit status: 0 success, 1 unknown model key, 2 bad input (one line on stderr)."""


class InputError(Exception):
    """Bad input; its text is the one line printed."""


def _level(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not an interval level: give a number in (0, 1), e.g. 0.9")
    return value


def _warmup(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of minutes: give an integer >= 0")
    return int(text)


def _parser() -> argparse.ArgumentParser:
    p = OneLineErrorParser(prog=program_name("tickcast"), description=DESCRIPTION,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    sub = p.add_subparsers(dest="command", required=True, metavar="{backtest,models}")
    b = sub.add_parser("backtest", help="prequential backtest of a model beside persistence",
                       description="Prequential backtest (predict, then learn) of a model beside persistence.")
    b.add_argument("path", help="one-minute OHLCV CSV(.gz), or a history store URL (mysql://..., sqlite:///...)")
    b.add_argument("--symbol", help="symbol to keep (files with a symbol column; required for a store)")
    b.add_argument("--exchange", help="exchange of the symbol (history store only)")
    b.add_argument("--model", default="",
                   help="model family, e.g. linear (the default) or tree; a wrong name lists the valid ones")
    b.add_argument("--level", type=_level, default=0.9, help="prediction interval level in (0, 1) (default 0.9)")
    b.add_argument("--warmup", type=_warmup, default=None,
                   help="realised minutes learned before scoring (default 500)")
    b.add_argument("--json", type=Path, help="write the figures to this JSON file")
    b.add_argument("--plot", type=Path, help="write a PNG (price, forecast, interval band, rolling MAE ratio)")
    b.add_argument("--csv", type=Path, help="write one row per scored minute (columns: shared/offline/export.py)")
    b.add_argument("--no-progress", action="store_true", help="no progress bar")
    models.add_parser(sub)
    return p


def check_writable(path: Path | None, flag: str) -> None:
    """Fail before the run if ``path`` (an output file) cannot be written.

    Raises
    ------
    InputError
        Its folder cannot be created, or the file cannot be opened for writing.
    """
    if path is None:
        return
    if path.parent.exists() and not path.parent.is_dir():
        raise InputError(f"{flag} {path}: {path.parent} is a file, not a folder; give a writable path")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        existed = path.exists()
        with open(path, "a"):
            pass
        if not existed:
            path.unlink()
    except OSError as exc:
        raise InputError(f"{flag} {path}: cannot write there ({exc.strerror or exc}); give a writable path") from None


def _load(args) -> tuple[list, str, str]:
    if "://" in args.path:
        if not (args.symbol and args.exchange):
            raise InputError("a history store needs --exchange and --symbol")
        from sqlalchemy.exc import SQLAlchemyError

        from shared.storage.history import HistoryStore

        try:
            with HistoryStore.from_url(args.path) as store:
                bars = store.bars(args.exchange, args.symbol)
        except SQLAlchemyError as exc:
            reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
            raise InputError(f"cannot read the history store {_hide_password(args.path)}: {reason};"
                             " check the URL and that the database is up") from None
        if not bars:
            raise InputError(f"no bars for {args.exchange}:{args.symbol} in the history store;"
                             " check --exchange and --symbol")
        return bars, f"history {args.exchange}", ""
    path = Path(args.path)
    if not path.is_file():
        raise InputError(f"{path}: no such file; give a one-minute OHLCV CSV(.gz) or a history store URL")
    try:
        series = load_minute_bars(path, args.symbol)
    except (OSError, EOFError, UnicodeError) as exc:  # e.g. a .gz that is not gzip
        raise InputError(f"cannot read {path}: {exc}; give a one-minute OHLCV CSV, plain or gzip") from None
    note = (f"{series.skipped} invalid rows skipped ({series.inconsistent} with open or close outside"
            f" [low, high]), {series.duplicates} duplicate rows dropped, {series.gaps} missing minutes")
    if series.resampled:
        note += f"; {series.resampled:,} sub-minute rows resampled to {len(series.bars):,} one-minute bars"
    return series.bars, path.name, note


def _hide_password(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL: say nothing of it
        return "(the given URL)"


def _finite(obj):
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    return obj


def backtest(args: argparse.Namespace) -> int:
    """Run ``backtest`` with parsed ``args``; returns the exit status.

    Raises
    ------
    InputError
        An unreadable input, an unreachable store, an unwritable output path, or bars the
        backtest cannot use.
    """
    check_writable(args.json, "--json")
    check_writable(args.plot, "--plot")
    check_writable(args.csv, "--csv")
    bars, source, note = _load(args)
    # River (through shared.forecast and shared.offline.backtest) takes seconds to import: only a
    # backtest about to run imports it, so --help, --version and bad input answer at once.
    from shared.forecast.families import family
    from shared.offline.backtest import DEFAULT_WARMUP, plot_backtest, run_backtest

    try:
        family(args.model)
    except ValueError as exc:
        raise InputError(f"--model: {exc}") from None

    warmup = DEFAULT_WARMUP if args.warmup is None else args.warmup
    try:
        result = run_backtest(bars, args.model, args.level, warmup, source=source, progress=not args.no_progress)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    print(result.table())
    if note:
        print(f"input: {note}")
    if args.json:
        args.json.write_text(json.dumps(_finite(result.to_dict()), indent=2) + "\n")
        print(f"figures written to {args.json}")
    if args.csv:
        from shared.offline.export import write_csv

        write_csv(result.series, args.csv)
        print(f"per-minute series written to {args.csv}")
    if args.plot:
        plot_backtest(result, args.plot)
        print(f"plot written to {args.plot}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the command line (``tickcast`` / ``python -m tickcast``); returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "models":
            return models.main(args, sys.stdout)
        return backtest(args)
    except (InputError, OhlcvFormatError, SettingsError, models.RegistryUnavailable) as exc:
        print(f"{parser.prog} {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{parser.prog} {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
