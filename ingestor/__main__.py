"""Command line of the ingestor.

Usage::

    python -m ingestor replay PATH [PATH ...] --bootstrap-servers HOST:PORT [--topic ticks]
        [--speed 60] [--deadletter-topic deadletter] [--exchange binance-usdm] [--limit N]
        [-X librdkafka.key=value ...] [--progress]

``replay`` streams recorded trade files (Binance trade CSV, Kraken trade CSV, raw
websocket recordings; plain or gzip) to a Kafka topic as tick events keyed by symbol.
Several files are merged by exchange time. ``--speed 1`` keeps the recorded pace,
``60`` plays a recorded hour in a minute, ``0`` goes as fast as possible. Malformed
lines are counted, logged with their position and, with ``--deadletter-topic``,
published there as dead-letter events. At the end the counts are printed as one JSON
object on stdout.

Exit status: 0 when every message was delivered, 1 when some were not, 2 for usage
errors, 130 / 143 when stopped by SIGINT / SIGTERM (after flushing).

    python -m ingestor live [--subscriptions "binance:BTCUSDT,ETHUSDT;kraken:BTC/USD"]
        [--publisher eventhubs|kafka] [--bootstrap-servers HOST:PORT] [--topic ticks]
        [--deadletter-topic deadletter] [--health-port 8080] [--url SOURCE=ws://...]
        [-X librdkafka.key=value ...] [--log-format json|text]

``live`` streams trades from the exchanges' websockets to Event Hubs or Kafka until
SIGTERM / SIGINT (see :mod:`ingestor.live`); every option defaults to its app
setting (:mod:`ingestor.config`). At the end everything already received is
published and the counters are printed as one JSON object on stdout. Exit status:
0 when nothing received was left unpublished, 1 otherwise, 2 for settings errors.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

from ingestor import OneLineErrorParser, program_name, version
from shared.settings import SettingsReader

DESCRIPTION = """tickcast ingestor: exchange trades to tick events on Event Hubs or Kafka.

  live    stream the exchanges' websockets until SIGTERM / Ctrl-C (options default to the
          INGESTOR_* settings; see docs/ingestor.md)
  replay  replay recorded trade files (Binance / Kraken trade CSV, websocket recordings;
          plain or gzip) to a Kafka topic at a chosen speed

Exit status: 0 success, 1 some messages not delivered, 2 bad input or settings,
130 / 143 stopped by SIGINT / SIGTERM (replay, after flushing)."""

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _speed(text: str) -> float:
    """``--speed``: a finite number >= 0."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a speed: give a number >= 0 (1 = recorded pace, 60 = an hour per minute,"
            " 0 = as fast as possible)"
        )
    return value


def _port(text: str) -> int:
    """``--health-port``: 0-65535."""
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a TCP port: give 0-65535 (0 = any free port)")
    return int(text)


def _config_pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), value


def _add_pairs(parser: argparse.ArgumentParser, flag: str, dest: str, metavar: str, help: str) -> None:
    """A repeatable ``flag KEY=VALUE`` option collected as a list of pairs in ``dest``."""
    parser.add_argument(flag, dest=dest, action="append", type=_config_pair, default=[], metavar=metavar, help=help)


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m ingestor`` argument parser."""
    ticks_hub = SettingsReader().text("TICKS_HUB_NAME")
    parser = OneLineErrorParser(prog=program_name("ingestor"), description=DESCRIPTION,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s (tickcast {version()})")
    parser.add_argument("--log-level", default="INFO", type=str.upper, choices=LOG_LEVELS,
                        help="logging level (default INFO)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{live,replay}")

    rp = sub.add_parser("replay", help="replay recorded trade files to a Kafka topic")
    rp.add_argument("paths", nargs="+", metavar="PATH", help="recorded trade file(s), plain or .gz")
    rp.add_argument("--bootstrap-servers", required=True, help="Kafka bootstrap servers HOST:PORT[,...]")
    rp.add_argument(
        "--topic", default=ticks_hub, help=f"tick topic (default TICKS_HUB_NAME or {ticks_hub!r})"
    )
    rp.add_argument(
        "--speed",
        type=_speed,
        default=1.0,
        help="replay speed factor: 1 = recorded pace, 60 = an hour per minute, 0 = as fast as possible",
    )
    rp.add_argument("--deadletter-topic", default=None, help="topic for malformed lines (default: none)")
    rp.add_argument("--exchange", default=None, help="override the exchange id inferred from file names")
    rp.add_argument("--format", dest="fmt", default=None, choices=("binance-csv", "kraken-csv", "ws"))
    rp.add_argument("--limit", type=int, default=None, help="stop after publishing this many ticks")
    _add_pairs(rp, "-X", "config", "KEY=VALUE",
               "extra librdkafka producer setting (repeatable), e.g. -X security.protocol=SASL_SSL")
    rp.add_argument(
        "--flush-timeout", type=float, default=30.0, help="seconds to wait for deliveries at exit"
    )
    rp.add_argument("--progress", action="store_true", help="show a progress bar on stderr (needs tqdm)")

    lv = sub.add_parser("live", help="stream live exchange trades to Event Hubs or Kafka")
    lv.add_argument(
        "--subscriptions",
        default=None,
        help="';'-separated source:SYMBOL,SYMBOL groups (default INGESTOR_SUBSCRIPTIONS)",
    )
    lv.add_argument("--publisher", choices=("eventhubs", "kafka"), default=None,
                    help="default INGESTOR_PUBLISHER")
    lv.add_argument(
        "--bootstrap-servers", default=None, help="Kafka bootstrap servers (default KAFKA_BOOTSTRAP_SERVERS)"
    )
    lv.add_argument("--topic", default=None, help="tick hub / topic (default TICKS_HUB_NAME)")
    lv.add_argument(
        "--deadletter-topic", default=None, help="dead-letter hub / topic (default DEADLETTER_HUB_NAME)"
    )
    lv.add_argument(
        "--health-port", type=_port, default=None, help="/healthz port (default INGESTOR_HEALTH_PORT; 0 = any)"
    )
    _add_pairs(lv, "--url", "urls", "SOURCE=URL",
               "websocket endpoint override (repeatable), e.g. --url binance=ws://127.0.0.1:9000/stream")
    _add_pairs(lv, "-X", "config", "KEY=VALUE", "extra librdkafka producer setting (repeatable; Kafka publisher only)")
    lv.add_argument(
        "--log-format", choices=("json", "text"), default="json", help="log line format (default json)"
    )
    return parser


def _progress_printer() -> Any:
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm is optional: fall back to log lines
        log = logging.getLogger("ingestor.replay")
        return lambda stats: log.info("published %d ticks (%d malformed)", stats.published, stats.malformed)
    bar = tqdm(unit=" ticks", file=sys.stderr)

    def show(stats: Any) -> None:
        bar.update(stats.published - bar.n)
        bar.set_postfix(malformed=stats.malformed, skipped=stats.skipped, refresh=False)

    return show


class InputError(Exception):
    """Bad input found before anything started; its text is the one line printed."""


def check_replay_files(paths: Sequence[str], fmt: str | None = None, exchange: str | None = None) -> None:
    """Open every recorded file and detect its format, before a publisher exists.

    Raises
    ------
    InputError
        A file that is missing, unreadable, broken gzip, or of no known recorded format.
    """
    from ingestor.parsers.recorded import FORMATS, read_recorded

    for path in paths:
        if not os.path.isfile(path):
            raise InputError(f"{path}: no such file; give the path of a recorded trade file")
        try:
            records = read_recorded(path, fmt=fmt, exchange=exchange)
            next(iter(records), None)  # reads the first line: broken gzip shows here
            close = getattr(records, "close", None)
            if close is not None:
                close()
        except (OSError, EOFError, UnicodeError, ValueError) as exc:
            reason = _reason(exc).removeprefix(f"{path}: ")
            raise InputError(
                f"cannot replay {path}: {reason}; give a recorded trade file ({', '.join(FORMATS)}; plain or gzip)"
            ) from None


def _reason(exc: BaseException) -> str:
    text = str(exc)
    return text if text else type(exc).__name__


def _kafka_client(make: Any) -> Any:
    """``make()``, with librdkafka's refusal of a setting (``-X``) turned into an :class:`InputError`."""
    from confluent_kafka import KafkaException

    try:
        return make()
    except KafkaException as exc:
        raise InputError(f"invalid Kafka setting: {_kafka_reason(exc)}; check the -X options") from None


def _kafka_reason(exc: Exception) -> str:
    error = exc.args[0] if exc.args else None
    return error.str() if hasattr(error, "str") else str(exc)


def run_replay(args: argparse.Namespace) -> int:
    """Run the ``replay`` command; returns the exit status.

    Raises
    ------
    InputError
        A recorded file cannot be replayed (checked before connecting to Kafka).
    """
    from ingestor.publisher import KafkaPublisher
    from ingestor.replay import replay

    check_replay_files(args.paths, args.fmt, args.exchange)

    stop = threading.Event()
    stopped_by: list[int] = []

    def on_sigterm(signum: int, frame: object) -> None:
        stopped_by.append(signum)
        stop.set()

    publisher = _kafka_client(lambda: KafkaPublisher(
        args.bootstrap_servers,
        args.topic,
        deadletter_topic=args.deadletter_topic,
        config=dict(args.config),
    ))
    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        stats = replay(
            args.paths,
            publisher,
            speed=args.speed,
            exchange=args.exchange,
            fmt=args.fmt,
            stop=stop,
            limit=args.limit,
            flush_timeout=args.flush_timeout,
            progress=_progress_printer() if args.progress else None,
        )
    finally:
        undelivered = publisher.close(args.flush_timeout)
        signal.signal(signal.SIGTERM, previous)
    result = stats.as_dict()
    result["undelivered"] = undelivered
    print(json.dumps(result), flush=True)
    if stopped_by:
        return 128 + stopped_by[0]
    if stats.interrupted:
        return 130
    return 1 if undelivered else 0


def live_config(args: argparse.Namespace) -> Any:
    """The :class:`~ingestor.config.IngestorConfig` of a ``live`` command: settings, then options.

    Raises
    ------
    shared.settings.SettingsError
        A setting or option that cannot be used.
    """
    from ingestor.config import IngestorConfig, parse_source_urls, parse_subscriptions

    config = IngestorConfig.from_env()
    urls = dict(config.source_urls)
    if args.urls:
        urls.update(parse_source_urls(",".join(f"{k}={v}" for k, v in args.urls)))
    config = config.replace(
        publisher=args.publisher,
        subscriptions=parse_subscriptions(args.subscriptions) if args.subscriptions is not None else None,
        kafka_bootstrap_servers=args.bootstrap_servers,
        ticks_hub=args.topic,
        deadletter_hub=args.deadletter_topic,
        health_port=args.health_port,
        source_urls=urls,
        kafka_config={**config.kafka_config, **dict(args.config)},
    )
    config.check()
    return config


def run_live_command(args: argparse.Namespace) -> int:
    """Run the ``live`` command; returns the exit status."""
    import asyncio

    from confluent_kafka import KafkaException

    from ingestor.live import run_live
    from shared.settings import SettingsError

    try:
        config = live_config(args)
    except SettingsError as exc:
        raise InputError(f"invalid settings: {exc}") from None
    try:
        snapshot = asyncio.run(run_live(config))
    except KafkaException as exc:
        raise InputError(f"invalid Kafka setting: {_kafka_reason(exc)}; check the -X options") from None
    except OSError as exc:  # e.g. the health port is taken
        raise InputError(
            f"cannot serve /healthz on port {config.health_port}: {exc.strerror or exc}; pass --health-port 0"
            " (any free port) or set INGESTOR_HEALTH_PORT"
        ) from None
    print(json.dumps(snapshot), flush=True)
    return 1 if snapshot["counters"]["undelivered"] else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m ingestor`` and of the ``tickcast-ingestor`` console script.

    Bad input (a missing or unreadable file, invalid settings) is one line on stderr and exit
    status 2, before anything connects.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "live":
            from ingestor.logs import configure_logging

            configure_logging(args.log_level, args.log_format)
            return run_live_command(args)
        logging.basicConfig(
            level=getattr(logging, args.log_level, logging.INFO),
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
            stream=sys.stderr,
        )
        return run_replay(args)
    except InputError as exc:
        print(f"{parser.prog} {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
