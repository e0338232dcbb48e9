"""The main job, locally: replay real trades through the whole pipeline and report.

Steps (each one prints a line):

1. start Tansu (Kafka-compatible broker) and create the hubs as topics;
2. start Azurite (Blob Storage) and create the models container;
3. open the history store (SQLite file, or MySQL when ``MYSQL_URL`` is set);
4. train the initial model prequentially on a bundled one-minute history and
   register it as the champion of ``MODEL_KEY``;
5. drive the Event Hub functions (``predict``, ``archive``, ``broadcast``) from
   Kafka consumers, each with its trigger's consumer group, and print every
   prediction from one more consumer group (an external consumer);
   drive ``retrain`` on a short timer (every ``RETRAIN_EVERY_S`` seconds) and
   ``promote_model`` from a poller of Azurite standing in for Event Grid, printing
   each retrain outcome, promotion decision and model swap;
6. list what it drives, like ``func start``: every function with its trigger, and
   the HTTP routes with their URLs (:mod:`local_stack.listing`);
7. run the ingestor (a child process, :mod:`local_stack.feeds`) on a bundled recorded
   trade file, and wait for the replay: no fixed deadline, it takes the files' span
   divided by the speed, which is printed; or, with ``live``, stream the exchanges'
   websockets until Ctrl-C;
8. wait until every tick was processed and every output archived, print a
   summary per symbol (predictions, MAE of model and persistence, latency), and
   stop every process it started.

Inputs are checked before any server starts (:mod:`local_stack.inputs`). With ``web``
(``make run`` passes it), the HTTP API, the dashboard and a local SignalR hub fed by
``broadcast`` are served from the start (the URL is printed), and after a replay until
Ctrl-C unless ``--exit-when-done``. Every Kafka client made here logs through the Python
logger ``tickcast.local.kafka`` (confluent-kafka's ``logger`` setting), never raw to stderr.

The local stack's own settings (``REPLAY_SPEED``, ``RETRAIN_EVERY_S``, ``DASHBOARD_PORT``,
``EXIT_WHEN_DONE``) are read by :class:`shared.settings.LocalSettings` when it runs.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from confluent_kafka import Consumer

from local_stack.inputs import InputError, check_history, check_mysql, check_speed, replay_plan

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "samples"
DEFAULT_REPLAY = SAMPLES / "kraken_XBTUSD_trades_20190701T00Z-01Z.csv.gz"
DEFAULT_HISTORY = SAMPLES / "ftx_BTC-PERP_1m_20211231-20220201.csv.gz"

log = logging.getLogger("tickcast.local")
KAFKA_LOG = logging.getLogger("tickcast.local.kafka")
"""Where librdkafka's log lines go (confluent-kafka's ``logger`` setting): forwarded only inside
``poll()`` / ``consume()`` / ``flush()`` calls, so nothing prints once the clients stopped."""
DRAIN_STALL_S = 120.0
"""After the feed ended: give up when the pipeline makes no progress for this long, seconds."""


def _fmt_time(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M")


def format_prediction(event: dict) -> str:
    """One console line for a prediction event (prices in quote currency)."""
    return (
        f"{_fmt_time(event['target_time_ms'])}Z {event['exchange']:>8} {event['symbol']:<9}"
        f" last {event['last_close']:>11,.2f}  forecast {event['predicted_close']:>11,.2f}"
        f"  [{event['lower']:,.2f} … {event['upper']:,.2f}] {event['interval_level']:.0%}"
        f"  model {event['model_version']}  {event['latency_ms']} ms"
    )


class PredictionPrinter:
    """An external consumer of the predictions hub that prints each prediction as it arrives."""

    def __init__(self, consumer_config: dict, topic: str, out=sys.stdout) -> None:
        self.consumer = Consumer({**consumer_config, "group.id": "console", "enable.auto.commit": True})
        self.consumer.subscribe([topic])
        self.topic = topic
        self.out = out
        self.printed = 0
        self.seen = 0

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            for m in self.consumer.consume(100, 0.1):
                if m.error() is not None:
                    continue
                self.seen += 1
                try:
                    event = json.loads(m.value())
                except ValueError:
                    continue
                if event.get("type") == "prediction":
                    print(format_prediction(event), file=self.out, flush=True)
                    self.printed += 1
        self.consumer.close()


def print_summary(store, out=sys.stdout) -> dict:
    """Print the per-symbol summary table from the history store; return it as a dict."""
    from shared.offline.evaluation import summarise

    rows = {}
    print("\nSummary (realised minutes only for MAE; prices in quote currency)", file=out)
    header = (
        f"{'exchange':>10} {'symbol':<9} {'predictions':>11} {'realised':>8} {'MAE model':>10}"
        f" {'MAE persist.':>12} {'ratio':>7} {'coverage':>8} {'p50 ms':>7} {'p99 ms':>7}"
    )
    print(header, file=out)
    for exchange, symbol in store.symbols():
        s = summarise(store.predictions(exchange, symbol))
        rows[f"{exchange}:{symbol}"] = s.__dict__ | {"mae_ratio": s.mae_ratio}
        print(
            f"{exchange:>10} {symbol:<9} {s.predictions:>11} {s.realised:>8} {s.mae_model:>10.3f}"
            f" {s.mae_persistence:>12.3f} {s.mae_ratio:>7.4f} {s.coverage:>8.1%}"
            f" {s.latency_p50_ms:>7.0f} {s.latency_p99_ms:>7.0f}",
            file=out,
        )
    return rows


def run(
    replay_files: Sequence[Path],
    history_file: Path,
    speed: float,
    workdir: Path,
    env: dict[str, str] | None = None,
    out=sys.stdout,
    timeout_s: float | None = None,
    broker=None,
    azurite=None,
    web=None,
    live: str | None = None,
    live_urls: Sequence[str] = (),
    stop: threading.Event | None = None,
) -> dict:
    """Run the local stack end to end; return the summary (see :func:`print_summary`).

    The inputs are checked first, before any server starts. The feed is a replay of
    ``replay_files`` at ``speed`` (waited for: no deadline unless ``timeout_s``), or with
    ``live`` (``source:SYM,SYM;source:SYM``) the live ingestor on those subscriptions, with
    ``live_urls`` (``SOURCE=ws://...``) overriding endpoints, until Ctrl-C or ``stop``.

    ``web`` (a :class:`~local_stack.http_host.WebOptions`) also serves the HTTP API,
    the dashboard and a local SignalR hub fed by ``broadcast``, and may keep serving
    after a replay until ``web.serve_until`` is set; ``None`` (the default) serves
    nothing and returns when the pipeline drained.

    ``broker`` (a started :class:`~local_stack.tansu.TansuBroker`) and ``azurite`` (a
    started :class:`~local_stack.azurite.AzuriteServer`) may be given, e.g. by tests
    that share one server per session; otherwise both are started here and stopped
    at the end. ``env`` overrides app settings (topic names, ``MYSQL_URL``, …); the
    process environment is restored afterwards.

    Raises
    ------
    local_stack.inputs.InputError
        An input that cannot be used (checked before anything starts).
    RuntimeError
        If a server fails to start, the ingestor fails, the pipeline stalls, or ``timeout_s``
        seconds pass first.
    """
    from local_stack.azurite import AzuriteServer
    from local_stack.feeds import LiveFeed, ReplayFeed
    from local_stack.tansu import TansuBroker

    started = time.monotonic()
    say = lambda msg: print(f"[{time.monotonic() - started:6.1f}s] {msg}", file=out, flush=True)
    check_speed(speed)
    if live is not None:
        check_subscriptions(live, live_urls)
        feed = LiveFeed(live, live_urls, say, stop)
    else:
        feed = ReplayFeed(replay_files, speed, replay_plan(replay_files))
    check_history(history_file)
    check_mysql({**os.environ, **(env or {})})
    deadline = None if timeout_s is None else started + timeout_s
    with contextlib.ExitStack() as stack:
        if broker is None:
            broker = stack.enter_context(TansuBroker())
        if azurite is None:
            azurite = stack.enter_context(AzuriteServer(in_memory=True))
        say(f"Tansu broker on {broker.bootstrap_servers}; Azurite blob service on {azurite.blob_endpoint}")
        from shared.settings import LocalSettings

        from local_stack.appsettings import local_app_settings

        # every documented default, as the app settings the binding expressions resolve against (the
        # local stack's own settings are not app settings: they keep the caller's values); a random
        # model-signing key and state container per run
        settings_env = local_app_settings(azurite.connection_string, history_sqlite_path=workdir / "history.sqlite3",
                                          bootstrap_servers=broker.bootstrap_servers,
                                          overrides={**LIFECYCLE_ENV, **(env or {})})
        stack.enter_context(_environment(settings_env))
        local = LocalSettings.from_env()
        stack.enter_context(_lifecycle_log(say))
        server = None
        if web is not None:
            from local_stack.http_host import serve_dashboard

            server = stack.enter_context(serve_dashboard(web, settings_env, say))
        summary = _run_pipeline(feed, history_file, broker, settings_env, say, out, deadline=deadline,
                                retrain_every_s=local.retrain_every_s, server=server)
        if server is not None and live is None:
            from local_stack.http_host import linger

            linger(server, web, say)
    say("stopped every process started")
    return summary


def check_subscriptions(live: str, urls: Sequence[str]) -> None:
    """Check ``--live`` subscriptions and ``--url`` overrides as the ingestor will read them.

    Raises
    ------
    local_stack.inputs.InputError
        A malformed group, an unknown source, or a URL that is not ``SOURCE=ws[s]://...``.
    """
    from ingestor.config import parse_source_urls, parse_subscriptions
    from shared.settings import SettingsError

    try:
        parse_subscriptions(live)
        parse_source_urls(",".join(urls))
    except SettingsError as exc:
        message = str(exc).replace("INGESTOR_SUBSCRIPTIONS", "--live").replace("INGESTOR_SOURCE_URLS", "--url")
        raise InputError(f"{message} (e.g. --live 'binance:BTCUSDT,ETHUSDT;coinbase:BTC-USD')") from None


@contextlib.contextmanager
def _environment(values: dict[str, str]):
    """Set app settings in ``os.environ`` (where the functions read them), restore them on exit."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _run_pipeline(feed, history_file, broker, settings_env, say, out, deadline, retrain_every_s,
                  server=None) -> dict:
    import function_app
    from functions import reset_services
    from local_stack.functions_host import EventHubFunctionDriver, app_functions
    from local_stack.listing import function_listing
    from local_stack.tansu import consumer_config, producer_config
    from shared.storage.history import HistoryStore
    from shared.settings import Settings
    from shared.serving.wiring import make_registry

    signalr = server.hub.publish if server is not None else None
    settings = Settings.from_env()
    broker.create_topics([settings.ticks_hub, settings.predictions_hub, settings.deadletter_hub])
    say(f"topics {settings.ticks_hub}, {settings.predictions_hub}, {settings.deadletter_hub} ready")
    store = HistoryStore.from_settings(settings)
    say(f"history store: {store!r}")
    registry = make_registry(settings)
    registry.ensure_container()
    _register_initial_model(registry, settings.model_key, history_file, settings.interval_level, say,
                            family=settings.forecast_model)

    reset_services()  # a fresh worker: functions build their clients from these settings
    # group.id is set per consumer: from each trigger, and "console" for the printer; every client
    # (these, and the drivers' own, made from these configs) logs through KAFKA_LOG
    ccfg = consumer_config(broker.bootstrap_servers, group_id="local-stack", logger=KAFKA_LOG)
    pcfg = producer_config(broker.bootstrap_servers, logger=KAFKA_LOG)
    stop = threading.Event()
    functions = app_functions(function_app.app)
    drivers = [EventHubFunctionDriver(fn, settings_env, ccfg, pcfg, signalr=signalr) for fn in functions
               if fn.get_trigger().get_dict_repr().get("type") == "eventHubTrigger"]
    printer = PredictionPrinter(ccfg, settings.predictions_hub, out)
    # The model lifecycle: retrain on a short timer, and a poller of Azurite in place of Event Grid.
    lifecycle = _lifecycle_drivers(function_app.app, settings_env, registry.container, pcfg, retrain_every_s, signalr)
    threads = [threading.Thread(target=t, args=(stop,), daemon=True, name=name)
               for t, name in [(d.run, d.name) for d in drivers + lifecycle] + [(printer.run, "printer")]]
    for t in threads:
        t.start()
    replay_stats = None
    try:
        for d in drivers:  # like a warm Functions host: consumers own their partitions before ticks flow
            if not d.assigned.wait(60):
                raise RuntimeError(f"{d.name}: consumer group {d.group} was not assigned partitions within 60 s")
        for line in function_listing(functions, settings_env, base_url=server.url if server else None,
                                     http_functions=server.http.functions if server else (),
                                     timer_every_s=retrain_every_s):
            say(line)
        say(f"ingestor: {feed.describe()}")
        feed.start(broker.bootstrap_servers, settings.ticks_hub, settings.deadletter_hub)
        published = feed.wait(lambda: _check_threads(threads), deadline)
        say(feed.summary())
        replay_stats = feed.stats
        readers = [d for d in drivers if d.topic == settings.predictions_hub]  # archive, broadcast
        _wait_drained(next(d for d in drivers if d.name == "predict"), readers, printer, published,
                      deadline, threads)
        say(f"pipeline drained: {_counts(drivers)}")
    finally:
        feed.stop()
        stop.set()
        for t in threads:
            t.join(10)
        for d in drivers + lifecycle:
            d.close()
        drivers.clear()
        lifecycle.clear()
        reset_services()
        gc.collect()  # drop Kafka clients now, before the broker goes away
    summary = print_summary(store, out)
    store.close()
    return {"symbols": summary, "replay": replay_stats, "printed": printer.printed}


def _check_threads(threads) -> None:
    dead = [t.name for t in threads if not t.is_alive()]
    if dead:
        raise RuntimeError(f"driver thread(s) died: {', '.join(dead)} (their errors are logged above)")


LIFECYCLE_ENV = {
    # A replayed hour is about 60 bars: retrain on what the replay has archived so far.
    "RETRAIN_MIN_BARS": "25",
    "RETRAIN_HOLDOUT_MINUTES": "10",
    "RETRAIN_SCHEDULE": "*/15 * * * * *",
    "MODEL_POLL_SECONDS": "1",
    "MODEL_CHECKPOINT_SECONDS": "10",
}
"""App settings of the local stack's short model lifecycle (overridable through ``env``)."""


def _lifecycle_drivers(app, settings_env: dict, container, pcfg, retrain_every_s: float, signalr=None) -> list:
    from local_stack.functions_host import app_functions
    from local_stack.lifecycle_host import BlobTriggerPoller, TimerFunctionDriver

    drivers = []
    for fn in app_functions(app):
        kind = fn.get_trigger().get_dict_repr().get("type")
        if kind == "timerTrigger":
            drivers.append(TimerFunctionDriver(fn, settings_env, pcfg, interval_s=retrain_every_s, signalr=signalr))
        elif kind == "blobTrigger":
            drivers.append(BlobTriggerPoller(fn, settings_env, container, pcfg, poll_s=0.5, signalr=signalr))
    return drivers


class _SayHandler(logging.Handler):
    """Prints the lifecycle's decisions (retrain outcomes, promotions, model swaps) as run lines."""

    def __init__(self, say) -> None:
        super().__init__(logging.INFO)
        self.say = say

    def emit(self, record: logging.LogRecord) -> None:
        self.say(record.getMessage())


@contextlib.contextmanager
def _lifecycle_log(say):
    loggers = [logging.getLogger(n) for n in ("shared.lifecycle.retrain", "shared.lifecycle.promotion", "shared.lifecycle.champions")]
    handler = _SayHandler(say)
    saved = [(lg.level, lg.propagate) for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.INFO)
        lg.propagate = False
    try:
        yield
    finally:
        for lg, (level, propagate) in zip(loggers, saved):
            lg.removeHandler(handler)
            lg.setLevel(level)
            lg.propagate = propagate


def _counts(drivers) -> str:
    return "; ".join(
        f"{d.name} consumed {d.totals.consumed}"
        + "".join(f", produced {n} to {t}" for t, n in sorted(d.totals.produced.items()))
        + (f", LOST {d.totals.lost} events (failed invocations checkpointed past)" if d.totals.lost else "")
        for d in drivers
    )


def _register_initial_model(registry, key: str, history_file: Path, level: float, say, family: str = "") -> None:
    from shared.stream.features import FEATURE_NAMES
    from shared.offline.ohlcv import OhlcvReader
    from shared.forecast.training import train_prequential

    t0 = time.perf_counter()
    reader = OhlcvReader(history_file, exchange="history", symbol="BTC")
    model, rep = train_prequential(reader, model=family, interval_level=level)
    meta = registry.save(
        key, model, training_start_ms=rep.start_ms, training_end_ms=rep.end_ms, feature_names=FEATURE_NAMES,
        extra={"source": history_file.name, "bars": rep.bars, "mae_ratio_prequential": rep.mae_ratio,
               "coverage_prequential": rep.coverage},
    )
    registry.set_current(key, meta.version, force=True)
    say(
        f"initial {model.name} model {meta.version} trained on {rep.bars:,} bars of {history_file.name} in"
        f" {time.perf_counter() - t0:.1f}s (prequential MAE ratio to persistence {rep.mae_ratio:.4f},"
        f" {level:.0%} interval coverage {rep.coverage:.1%}); registered as champion of '{key}'"
    )


def _wait_drained(predict, readers, printer, published_ticks: int, deadline: float | None, threads=(),
                  stall_s: float = DRAIN_STALL_S) -> None:
    """Wait until ``predict`` committed every published tick, and every driver reading the
    predictions hub (``readers``: ``archive``, ``broadcast``) and the printer consumed every
    output of ``predict``.

    There is no fixed deadline: it waits while the counts move, and gives up after ``stall_s``
    seconds without progress (or at ``deadline``, a ``time.monotonic()`` time, if given).

    Counts, not watermarks: Tansu 0.6 reports a high watermark that is not the
    next offset (measured: 1 after ten single-record produces), so lag from
    watermarks is wrong against it.

    Raises
    ------
    RuntimeError
        A driver thread of ``threads`` died, the pipeline stalled, or the deadline passed first.
    """
    last, last_change = None, time.monotonic()
    while True:
        _check_threads(threads)
        outputs = predict.totals.produced.get(printer.topic, 0)
        consumed = [d.totals.consumed for d in readers] + [printer.seen]
        if predict.totals.consumed >= published_ticks and min(consumed) >= outputs:
            return
        now = time.monotonic()
        progress = (predict.totals.consumed, outputs, *consumed)
        if progress != last:
            last, last_change = progress, now
        stalled = now - last_change > stall_s
        if stalled or (deadline is not None and now > deadline):
            raise RuntimeError(
                ("the pipeline made no progress for" f" {stall_s:g} s" if stalled else "--timeout passed")
                + f" before it drained: predict consumed {predict.totals.consumed} of {published_ticks} ticks, "
                + ", ".join(f"{d.name} {d.totals.consumed} events" for d in readers)
            )
        time.sleep(0.2)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line of ``python -m local_stack`` (what ``make run`` and ``make live`` call): see
    :func:`local_stack.cli.main`."""
    from local_stack.cli import main as cli_main

    return cli_main(argv)

