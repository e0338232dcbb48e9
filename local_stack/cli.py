"""The command line of ``python -m local_stack`` (``make run``, ``make live``, ``tickcast-local``).

Options are checked by argparse (a usage error is one line, exit status 2), the inputs by
:func:`local_stack.run.run` before any server starts (:mod:`local_stack.inputs`; one line, exit
status 2); a run that fails is one line and exit status 1. No traceback for any of them.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

__all__ = ["build_parser", "console_main", "main"]

def build_parser():
    """The ``python -m local_stack`` argument parser (usage errors are one line, exit status 2)."""
    from ingestor import OneLineErrorParser, program_name, version
    from local_stack.run import DEFAULT_HISTORY, DEFAULT_REPLAY
    from shared.settings import LocalSettings, SettingsError

    p = OneLineErrorParser(prog=program_name("local_stack"), description=DESCRIPTION,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    try:
        local = LocalSettings.from_env()
    except SettingsError as exc:
        p.error(f"invalid settings: {exc}")
    p.add_argument("--version", action="version", version=f"%(prog)s (tickcast {version()})")
    p.add_argument("files", nargs="*", type=Path, help=f"recorded trade files (default {DEFAULT_REPLAY.name})")
    p.add_argument("--live", metavar="SUBSCRIPTIONS", default=None,
                   help="stream live trades instead of a replay, until Ctrl-C: source:SYMBOL,SYMBOL groups"
                        " separated by ';', e.g. 'binance:BTCUSDT,ETHUSDT;coinbase:BTC-USD'")
    p.add_argument("--url", dest="urls", action="append", default=[], metavar="SOURCE=URL",
                   help="with --live: websocket endpoint of a source (repeatable), e.g."
                        " binance=ws://127.0.0.1:9000/stream (default: the exchange's, or INGESTOR_SOURCE_URLS)")
    p.add_argument("--history", type=Path, default=DEFAULT_HISTORY,
                   help=f"one-minute OHLCV file for the initial model (default {DEFAULT_HISTORY.name})")
    p.add_argument("--speed", type=_number, default=local.replay_speed,
                   help="replay speed factor: 1 = recorded pace, 0 = as fast as possible (default REPLAY_SPEED or 60)")
    p.add_argument("--workdir", type=Path, default=None, help="where the SQLite history goes (default: a temp dir)")
    p.add_argument("--timeout", type=_number, default=None,
                   help="seconds before giving up (default: none; the replay takes its span / speed)")
    p.add_argument("--web-port", type=_port, default=local.dashboard_port,
                   help="port of the dashboard, HTTP API and SignalR hub (default DASHBOARD_PORT or 7071; 0 = any)")
    p.add_argument("--exit-when-done", action="store_true", default=local.exit_when_done,
                   help="exit after the replay instead of serving the dashboard until Ctrl-C (env EXIT_WHEN_DONE=1)")
    return p


DESCRIPTION = """The main job of tickcast, locally: Tansu (Kafka), Azurite (Blob Storage) and a history
store; the function app's functions driven as the Functions host would; the dashboard, HTTP API
and SignalR hub; fed by a replay of recorded trades (default: a bundled hour of Kraken BTC/USD
at 60x), or with --live by the exchanges' websockets until Ctrl-C.

Subcommands: servers, functions, faults (python -m local_stack SUBCOMMAND --help).
Exit status: 0 done (or stopped with Ctrl-C after a live run), 1 the run failed, 2 bad input,
130 interrupted."""


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def _port(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a TCP port: give 0-65535 (0 = any free port)")
    return int(text)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``python -m local_stack`` with ``argv`` (default ``sys.argv[1:]``); returns the exit status.

    Bad input is one line on stderr and exit status 2, before any server starts; a failed run
    is one line and exit status 1; no traceback for either.
    """
    p = build_parser()
    args = p.parse_args(argv)
    if args.timeout is not None and not args.timeout > 0:
        p.error(f"--timeout {args.timeout:g}: give a number of seconds > 0, or leave it out (no deadline)")
    if args.urls and args.live is None:
        p.error("--url only applies with --live")
    if args.live is not None and args.files:
        p.error("give either recorded files or --live, not both")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # azure.functions warns that auth levels only apply to HTTP functions.
    logging.getLogger().handlers[0].addFilter(lambda r: "Auth level is not applied" not in r.getMessage())
    from local_stack.feeds import FeedError
    from local_stack.http_host import WebOptions
    from local_stack.inputs import InputError
    from local_stack.processes import ServerStartError
    from local_stack.run import DEFAULT_REPLAY, run

    try:
        with tempfile.TemporaryDirectory(prefix="tickcast-") as tmp:
            workdir = args.workdir or Path(tmp)
            workdir.mkdir(parents=True, exist_ok=True)
            serve_until = None if args.exit_when_done or args.live else threading.Event()
            web = WebOptions(port=args.web_port, serve_until=serve_until)
            run(args.files or [DEFAULT_REPLAY], args.history, args.speed, workdir, timeout_s=args.timeout, web=web,
                live=args.live, live_urls=args.urls)
    except InputError as exc:
        print(f"{p.prog}: {exc}", file=sys.stderr)
        return 2
    except (FeedError, ServerStartError, RuntimeError, OSError) as exc:
        print(f"{p.prog}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{p.prog}: interrupted; every process it started was stopped", file=sys.stderr)
        return 130
    return 0


def console_main() -> int:
    """The ``tickcast-local`` console script: ``python -m local_stack`` with its subcommands
    (the dispatcher in ``local_stack/__main__.py``), from any directory."""
    import runpy

    try:
        runpy.run_module("local_stack", run_name="__main__", alter_sys=False)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0
