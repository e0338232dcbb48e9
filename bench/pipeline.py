"""Benchmark: the whole ``predict`` pipeline on one Tansu broker, against the floor and a peer (issue 15).

Prints figures (not a timed test), in one run on one broker, each with its ratio to the floor:

* **bare round trip**: one producer -> topic -> one consumer, 1,000 messages/s, the producer and
  consumer configs the ingestor and the function driver use (``linger.ms`` 5, ``fetch.wait.max.ms``
  10); send -> receive, p50 / p99. The floor any Kafka pipeline of one hop pays on this broker.
* **tick -> prediction**: synthetic ticks at ``--rate`` (1,000/s) over ``--symbols`` (10), a bar
  every 50 ticks per symbol (event time advances 1.2 s a tick), produced as the ingestor does;
  ``predict`` driven by :class:`local_stack.functions_host.EventHubFunctionDriver` as ``make run``
  drives it (host.json batching, Azurite state store, signed partition state saved every batch);
  an external consumer of the predictions topic takes receive time - ingest time of the tick that
  closed the bar (the first tick of the prediction's target minute), p50 / p99, and the ratio of
  the p99 to the bare round trip's p99 (target <= 1.6).
* **drain**: ``--drain`` pre-produced ticks, then ``predict`` started on them: ticks per second
  from the end of the first batch to the end of the last one (target >= 150,000/s).
* **in process**: the same :class:`~shared.serving.predicting.PredictService`, no broker, batches
  of host.json's ``maxEventBatchSize``, with and without the Azurite state store (the per-batch
  save is the difference); target >= 400,000 ticks/s per core (:mod:`bench.pipeline_local`).
* **footprint**: RSS and partition-state (checkpoint) bytes per symbol with 1,000 symbols in one
  partition, and the time of one save; ingestor replay and live-parser throughput per core.
* **Quix Streams** (``bench/peers/quix_job.py``, its own venv ``.venv-peers`` made here from
  ``bench/peers/requirements.txt``): the same job idiomatically (tumbling 1-minute OHLCV per key
  on event time, a River model, predictions to a topic), same broker, same ticks: latency, drain.

Ratios between lines of one run are what to compare: this machine is shared and noisy.
``--profile DIR`` writes cProfile stats of the in-process and drain paths (top lines printed).

Run: ``make bench-pipeline`` (or ``.venv/bin/python bench/pipeline.py [--no-peers] [--profile DIR]``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import pipeline_local as local  # noqa: E402  (bench/pipeline_local.py)
from pipeline_local import BAR_EVERY, Stats, make_ticks  # noqa: E402

TARGET_P99_RATIO = 1.6
TARGET_DRAIN = 150_000
TARGET_IN_PROCESS = 400_000


def _consumer(bootstrap: str, topic: str):
    from confluent_kafka import Consumer

    from local_stack.tansu import consumer_config

    c = Consumer(consumer_config(bootstrap, f"bench-{uuid.uuid4().hex[:8]}"))
    assigned = threading.Event()
    c.subscribe([topic], on_assign=lambda *_: assigned.set())
    deadline = time.monotonic() + 30
    while not assigned.is_set() and time.monotonic() < deadline:
        c.poll(0.05)
    return c


def bare_round_trip(broker, rate: int, seconds: float) -> Stats:
    """Send -> receive of one hop at ``rate`` messages/s for ``seconds``; latencies in ms."""
    from confluent_kafka import Producer

    from local_stack.tansu import producer_config

    topic = f"bench-bare-{uuid.uuid4().hex[:8]}"
    broker.create_topics([topic])
    consumer = _consumer(broker.bootstrap_servers, topic)
    producer = Producer(producer_config(broker.bootstrap_servers))
    n = int(rate * seconds)
    sent: dict[int, float] = {}
    lat: list[float] = []
    done = threading.Event()

    def read() -> None:
        while len(lat) < n and not done.is_set():
            m = consumer.poll(0.05)
            if m is None or m.error():
                continue
            lat.append(time.time() * 1000 - sent[int(m.value())])

    sent[-1] = time.time() * 1000  # warm-up: a new idempotent producer's first delivery waits ~0.5 s
    producer.produce(topic, value=b"-1", key=b"k")
    producer.flush(10)
    while consumer.poll(0.05) is None:
        pass
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    t0 = time.perf_counter()
    for i in range(n):
        _pace(t0, i, rate, producer)
        sent[i] = time.time() * 1000
        producer.produce(topic, value=str(i).encode(), key=b"k")
        producer.poll(0)
    producer.flush(10)
    reader.join(30)
    done.set()
    consumer.close()
    return Stats.of(lat[len(lat) // 10:])  # the first tenth warms connections


def _pace(t0: float, i: int, rate: int, producer) -> None:
    """Sleep until message ``i`` is due at ``rate``/s (never spin: a spinning producer thread would
    starve the consumer thread of the same process, and the job under test of a core)."""
    wait = t0 + i / rate - time.perf_counter()
    if wait > 0:
        time.sleep(wait)


def paced_ticks(bootstrap: str, topic: str, ticks: list, rate: int, closers: dict, warm_topic: str = "") -> None:
    """Produce ``ticks`` (``(key, Tick)``) at ``rate``/s, stamping ingest time at send as the ingestor
    does; remember the send time (ms, float) of each tick that opens a minute, by (symbol, minute)."""
    from confluent_kafka import Producer

    from ingestor.publisher import default_producer_config
    from shared.contracts.events import encode

    producer = Producer(default_producer_config(bootstrap))
    if warm_topic:  # a new idempotent producer's first delivery waits ~0.5 s: not the job's latency
        producer.produce(warm_topic, value=b"{}")
        producer.flush(10)
    t0 = time.perf_counter()
    for i, (opens, tick) in enumerate(ticks):
        _pace(t0, i, rate, producer)
        now = time.time() * 1000
        tick = replace(tick, ingest_time_ms=int(now))
        if opens:
            closers[(tick.symbol, tick.event_time_ms // 60_000 * 60_000)] = now
        producer.produce(topic, value=encode(tick), key=tick.symbol.encode())
        producer.poll(0)
    producer.flush(30)


def load_and_measure(bootstrap: str, src: str, dst: str, args) -> Stats:
    """Tick -> prediction latency of whatever consumes ``src`` and writes ``dst``, measured by a load
    generator in its own process (paced producer + external consumer), so that neither the job under
    test nor the generator competes for the other's interpreter lock. The first tenth is dropped."""
    cmd = [sys.executable, __file__, "--loadgen", bootstrap, src, dst, "--rate", str(args.rate),
           "--symbols", str(args.symbols), "--seconds", str(args.seconds)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=args.seconds + 120).stdout
    lat = json.loads(out.strip().splitlines()[-1])
    return Stats.of(lat[len(lat) // 10:])


def _loadgen(bootstrap: str, src: str, dst: str, args) -> None:
    """The load generator's process: print the latencies (ms) as one JSON line."""
    consumer = _consumer(bootstrap, dst)
    ticks = make_ticks(args.symbols, int(args.rate * args.seconds))
    closers: dict = {}
    want = sum(opens for opens, _ in ticks) - args.symbols
    producer = threading.Thread(target=paced_ticks, args=(bootstrap, src, ticks, args.rate, closers, dst))
    producer.start()
    lat = collect(consumer, closers, want, args.seconds + 30)
    producer.join()
    consumer.close()
    print(json.dumps(lat))


def collect(consumer, closers: dict, want: int, timeout: float) -> list[float]:
    """External consumer: receive - ingest time of the closing tick for each prediction, ms."""
    lat: list[float] = []
    deadline = time.monotonic() + timeout
    while len(lat) < want and time.monotonic() < deadline:
        m = consumer.poll(0.05)
        if m is None or m.error():
            continue
        now = time.time() * 1000
        event = json.loads(m.value())
        if event.get("type", "prediction") != "prediction" or "target_time_ms" not in event:
            continue
        sent = closers.get((event["symbol"], event["target_time_ms"]))
        if sent is not None:
            lat.append(now - sent)
    return lat


def _app_settings(azurite, bootstrap: str, tmp: Path) -> dict[str, str]:
    from local_stack.appsettings import local_app_settings

    tag = uuid.uuid4().hex[:8]
    return local_app_settings(azurite.connection_string, bootstrap_servers=bootstrap,
                              history_sqlite_path=tmp / f"history-{tag}.sqlite3", overrides={
                                  "TICKS_HUB_NAME": f"ticks-{tag}", "PREDICTIONS_HUB_NAME": f"predictions-{tag}",
                                  "DEADLETTER_HUB_NAME": f"deadletter-{tag}", "PREDICT_CONSUMER_GROUP": f"predict-{tag}",
                                  "STATE_CONTAINER": f"state-{tag}"})


def predict_driver(broker, azurite, tmp: Path, partitions: int, on_batch=None, store: bool = True):
    """A fresh ``predict`` worker: app settings in ``os.environ``, topics, the host-faithful driver.

    ``store`` False: the worker's state store is dropped after wiring (state in memory only), to
    show what the per-batch save costs."""
    import function_app
    from functions import reset_services
    from functions.predict import service
    from local_stack.functions_host import EventHubFunctionDriver, app_functions
    from local_stack.tansu import consumer_config, producer_config
    from shared.serving.wiring import make_registry
    from shared.settings import Settings

    env = _app_settings(azurite, broker.bootstrap_servers, tmp)
    os.environ.update(env)
    reset_services()
    settings = Settings.from_env()
    broker.create_topics([settings.ticks_hub], partitions=partitions)
    broker.create_topics([settings.predictions_hub, settings.deadletter_hub])
    make_registry(settings).ensure_container()
    service.get().partitions.store.ensure_container()
    if not store:
        service.get().partitions.store = None
    fn = next(f for f in app_functions(function_app.app) if f.get_function_name() == "predict")
    driver = EventHubFunctionDriver(fn, env, consumer_config(broker.bootstrap_servers, "unused"),
                                    producer_config(broker.bootstrap_servers), on_batch=on_batch)
    return driver, settings


def tickcast_latency(broker, azurite, tmp: Path, args, store: bool = True) -> tuple[Stats, dict]:
    """Tick -> prediction at an external consumer, ``predict`` in the host-faithful driver."""
    driver, settings = predict_driver(broker, azurite, tmp, args.partitions, store=store)
    stop = threading.Event()
    thread = threading.Thread(target=driver.run, args=(stop,), daemon=True)
    thread.start()
    driver.assigned.wait(60)
    lat = load_and_measure(broker.bootstrap_servers, settings.ticks_hub, settings.predictions_hub, args)
    stop.set()
    thread.join(10)
    counts = dict(driver.totals.produced, consumed=driver.totals.consumed)
    driver.close()
    return lat, counts


def tickcast_drain(broker, azurite, tmp: Path, args, profile: Path | None, n: int) -> float:
    """Ticks/s of ``predict`` through the broker on ``n`` pre-produced ticks (under cProfile into
    ``profile`` if given: then the figure is the profiler's, not the code's)."""
    from confluent_kafka import Producer

    from local_stack.tansu import producer_config
    from shared.contracts.events import encode

    marks: list[tuple[float, int]] = []
    driver, settings = predict_driver(broker, azurite, tmp, args.partitions,
                                      on_batch=lambda r: marks.append((time.perf_counter(), r.consumed)))
    producer = Producer(producer_config(broker.bootstrap_servers))
    ticks = make_ticks(args.symbols, n, ingest_ms=int(time.time() * 1000))
    for _, tick in ticks:
        producer.produce(settings.ticks_hub, value=encode(tick), key=tick.symbol.encode())
        producer.poll(0)
    producer.flush(60)
    stop = threading.Event()

    def run() -> None:
        while sum(c for _, c in marks) < n and not stop.is_set():
            driver.run_once(stop)

    deadline = threading.Timer(300, stop.set)
    deadline.start()
    local.profiled(run, profile / "drain.prof" if profile else None)
    deadline.cancel()
    driver.close()
    if len(marks) < 2:
        return float("nan")
    return (sum(c for _, c in marks) - marks[0][1]) / (marks[-1][0] - marks[0][0])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rate", type=int, default=1_000, help="ticks per second of the latency runs")
    p.add_argument("--symbols", type=int, default=10, help="symbols of the latency and drain runs")
    p.add_argument("--seconds", type=float, default=20.0, help="length of each latency run, s")
    p.add_argument("--drain", type=int, default=200_000, help="pre-produced ticks of each drain run")
    p.add_argument("--partitions", type=int, default=1, help="partitions of the ticks topic (make run: 1)")
    p.add_argument("--footprint-symbols", type=int, default=1_000, help="symbols of the footprint run")
    p.add_argument("--no-peers", action="store_true", help="skip the Quix Streams job")
    p.add_argument("--only-peers", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--loadgen", nargs=3, help=argparse.SUPPRESS)
    p.add_argument("--profile", type=Path, help="write cProfile stats here and print their top lines")
    args = p.parse_args(argv)
    if args.loadgen:
        _loadgen(*args.loadgen, args)
        return
    os.environ.setdefault("PYTHONHASHSEED", "0")
    import logging

    logging.basicConfig(level=logging.ERROR)
    from local_stack.azurite import AzuriteServer
    from local_stack.tansu import TansuBroker

    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    rows: list[tuple[str, str, str]] = []
    with TansuBroker(startup_timeout=30.0) as broker, AzuriteServer() as azurite, \
            tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        bare = bare_round_trip(broker, args.rate, args.seconds)
        rows.append(("bare one-hop round trip, p50 / p99", f"{bare.p50:.1f} / {bare.p99:.1f} ms", "1.00x (the floor)"))
        quix = None
        if not args.no_peers:
            from peers.run_quix import run_quix

            quix = run_quix(broker, args, bare)
        if not args.only_peers:
            lat, counts = tickcast_latency(broker, azurite, tmp, args)
            rows.append((f"tick -> prediction, {args.rate:,} ticks/s, {args.symbols} symbols, p50 / p99",
                         f"{lat.p50:.1f} / {lat.p99:.1f} ms (n={lat.n})",
                         f"p99 {lat.p99 / bare.p99:.2f}x floor (target <= {TARGET_P99_RATIO})"))
            lat, _ = tickcast_latency(broker, azurite, tmp, args, store=False)
            rows.append(("  the same, state store dropped (what the per-batch save costs)",
                         f"{lat.p50:.1f} / {lat.p99:.1f} ms (n={lat.n})", f"p99 {lat.p99 / bare.p99:.2f}x floor"))
            drain = tickcast_drain(broker, azurite, tmp, args, None, args.drain)
            if args.profile:
                tickcast_drain(broker, azurite, tmp, args, args.profile, min(args.drain, 50_000))
            rows.append((f"predict drain through the broker ({args.drain:,} ticks)", f"{drain:,.0f} ticks/s",
                         f"{drain / TARGET_DRAIN:.2f}x target {TARGET_DRAIN:,}"))
            for label, rate in local.in_process(azurite, args.symbols, args.profile):
                rows.append((label, f"{rate:,.0f} ticks/s", f"{rate / TARGET_IN_PROCESS:.2f}x target "
                             f"{TARGET_IN_PROCESS:,}; {rate / drain:.2f}x drain"))
            for label, value in local.footprint(azurite, args.footprint_symbols):
                rows.append((label, value, ""))
            for label, rate in local.ingestor_rates():
                rows.append((label, f"{rate:,.0f} ticks/s", "per core"))
        if quix is not None:
            for label, value, ratio in quix:
                rows.append((label, value, ratio))
    width = max(len(r[0]) for r in rows)
    print(f"pipeline benchmark: Tansu, bar every {BAR_EVERY} ticks per symbol, {os.cpu_count()} CPUs (shared)")
    for label, value, ratio in rows:
        print(f"{label:<{width}}  {value:>28}  {ratio}")
    if args.profile:
        local.print_profiles(args.profile)


if __name__ == "__main__":
    main()
