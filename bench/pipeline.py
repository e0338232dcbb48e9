"""Benchmark: the whole ``predict`` pipeline on one Tansu broker, against the floor and a peer (issue 15).

Prints figures (not a timed test), in one run on one broker, each with its ratio to the floor:

* **bare round trip**: one producer -> topic -> one consumer, 1,000 messages/s, the producer and
  consumer configs the ingestor and the function driver use (``linger.ms`` 5, ``fetch.wait.max.ms``
  10); send -> receive, p50 / p99. The floor any Kafka pipeline of one hop pays on this broker.
* **two bare hops in series**: the bare round trip again at ``OUTPUT_RATE`` (100/s) flushing each
  message (a job flushes its outputs at once), and sums of independent draws from the two: the least any job
  between two topics can show (its input hop, then its consumer's), against which the target ratio
  can be judged.
* **tick -> prediction**: synthetic ticks at ``--rate`` (1,000/s) over ``--symbols`` (10), a bar
  every 50 ticks per symbol (event time advances 1.2 s a tick), produced as the ingestor does;
  ``predict`` driven by :class:`local_stack.functions_host.EventHubFunctionDriver` as ``make run``
  drives it (host.json batching, Azurite state store, signed partition state saved every
  ``STATE_SNAPSHOT_SECONDS``, 5 s; a line below saves it every batch, another drops the store);
  an external consumer of the predictions topic takes receive time - ingest time of the tick that
  closed the bar (the first tick of the prediction's target minute), p50 / p99, and the ratio of
  the p99 to the bare round trip's p99 (target <= 1.6).
  Under each latency line, **where the time goes**: the two legs at the external consumer (tick
  sent -> prediction produced, by the prediction's Kafka timestamp | -> received); per batch of the
  driver that produced outputs, p50 / p99 of its :class:`~local_stack.functions_host.BatchReport`
  timings (``hop`` enqueued -> in the driver, ``waited`` in the driver, ``build`` the event objects,
  ``invoke`` the function, ``produce``, ``flush``, ``commit`` the checkpoint), of the GC pauses
  and the longest stall of a 1 ms sleeper thread (:class:`Stalls`: this process could not run) in
  that batch; how many invocations took over 20 ms and how far apart; and the batches the slowest
  1 % of the predictions came from, with their parts. ``--diagnose`` adds latency runs that each
  remove one suspect (:data:`DIAGNOSES`); ``--latency-only`` stops after the latency runs.
* **drain**: ``--drain`` pre-produced ticks, then ``predict`` started on them: ticks per second
  from the end of the first batch to the end of the last one (target >= 150,000/s); under it, the
  share of that time each driver step took. Above it, two ceilings of the same drain: a bare
  consumer (the broker's) and the driver invoking a function that does nothing (the host
  stand-in's: building the events, checkpointing, on the cores the broker shares).
* **in process**: the same :class:`~shared.serving.predicting.PredictService`, no broker, batches
  of host.json's ``maxEventBatchSize``, without the Azurite state store, with it saved every
  ``STATE_SNAPSHOT_SECONDS`` (the default), and saved every batch; target >= 400,000 ticks/s per
  core (:mod:`bench.pipeline_local`). Under it, what the figure is made of: the validated decode
  alone (the least any tick costs), the same ticks with no bar closing (the common tick's rate),
  and from the two the cost of one bar close.
* **footprint**: RSS and partition-state (checkpoint) bytes per symbol with 1,000 symbols in one
  partition, and the time of one save; ingestor replay and live-parser throughput per core.
* **Quix Streams** (``bench/peers/quix_job.py``, its own venv ``.venv-peers`` made here from
  ``bench/peers/requirements.txt``): the same job idiomatically (tumbling 1-minute OHLCV per key
  on event time, a River model, predictions to a topic), same broker, same ticks: latency, drain.

Ratios between lines of one run are what to compare: this machine is shared and noisy.
``--profile DIR`` writes cProfile stats of the in-process and drain paths (top lines printed).

Run: ``make bench-pipeline`` (or ``.venv/bin/python bench/pipeline.py [--no-peers] [--profile DIR]
[--latency-only] [--diagnose]``).
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
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import pipeline_local as local  # noqa: E402  (bench/pipeline_local.py)
from pipeline_local import BAR_EVERY, Stats, make_ticks  # noqa: E402

TARGET_P99_RATIO = 1.6
TARGET_DRAIN = 150_000
TARGET_IN_PROCESS = 400_000
DIAGNOSES: list[tuple[str, dict]] = [
    ("champion polls off (MODEL_POLL_SECONDS 3600)", {"app_settings": {"MODEL_POLL_SECONDS": "3600"}}),
    ("driver producer linger.ms 0", {"producer": {"linger.ms": 0}}),
    ("a checkpoint every 1,000 batches", {"options": {"batch_checkpoint_frequency": 1000}}),
]
"""``--diagnose``: variants of the latency run that each remove one suspect of the tail. Not one:
a driver ``fetch.wait.max.ms`` under Tansu's 10 ms; at 2 ms, fetches on Tansu came back seconds
late (hop p50 4.6 s, p99 28 s, one run), so the one-hop floor keeps 10 ms on both sides."""
OUTPUT_RATE = 100
"""Messages/s of the flushed bare hop: about what ``predict`` writes in the latency runs (a price
update per symbol per second, plus a bar and a prediction per symbol per minute, in batches)."""
SLOW_INVOKE_MS = 20.0
"""An invocation slower than this is counted, with the median gap between two such (s), to show a period."""


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


def bare_round_trip(broker, rate: int, seconds: float, flush: bool = False) -> list[float]:
    """Send -> receive latencies (ms) of one hop at ``rate`` messages/s for ``seconds``, the first tenth
    (which warms connections) left out; ``flush``: flush the producer after each message, as the
    function driver does after each invocation's outputs (``flush`` does not wait for ``linger.ms``)."""
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
        if flush:
            producer.flush(10)
        else:
            producer.poll(0)
    producer.flush(10)
    reader.join(30)
    done.set()
    consumer.close()
    return lat[len(lat) // 10:]


def two_hops(first: list[float], second: list[float], pairs: int = 200_000, seed: int = 1) -> Stats:
    """Latencies of two bare hops in series: sums of independent draws from ``first`` and ``second`` (ms).

    Any job between two topics pays at least this: the input hop (the ingestor's producer, which
    lingers) and, for the consumer of its output, a second one (the job flushes its outputs at once:
    ``second`` is measured flushing each message), with nothing done in between. The two waits are independent:
    the external consumer fetches on its own schedule. On Tansu, which holds every fetch for the full
    ``fetch.wait.max.ms`` (:func:`local_stack.tansu.consumer_config`), a hop's wait is spread over that
    window, so the p99 of two hops is well above the p99 of one: their ratio is the least any two-hop
    job can show against ``TARGET_P99_RATIO``.
    """
    import random

    rng = random.Random(seed)
    return Stats.of([rng.choice(first) + rng.choice(second) for _ in range(pairs)])


def bare_drain(broker, n: int, symbols: int) -> float:
    """Messages/s of a bare consumer (the driver's consumer settings, ``consume`` of 500 at a time,
    nothing done with them) draining ``n`` pre-produced ticks: the ceiling of any drain on this broker."""
    from confluent_kafka import Producer

    from local_stack.tansu import producer_config
    from shared.contracts.events import encode

    topic = f"bench-drain-{uuid.uuid4().hex[:8]}"
    broker.create_topics([topic])
    producer = Producer(producer_config(broker.bootstrap_servers))
    for _, tick in make_ticks(symbols, n, ingest_ms=int(time.time() * 1000)):
        producer.produce(topic, value=encode(tick), key=tick.symbol.encode())
        producer.poll(0)
    producer.flush(60)
    consumer = _consumer(broker.bootstrap_servers, topic)
    total, got, first, last = 0, 0, None, None
    deadline = time.monotonic() + 300
    while total < n and time.monotonic() < deadline:
        batch = [m for m in consumer.consume(500, 2.0) if not m.error()]
        if not batch:
            if first is not None:
                break  # the joining poll may have taken a message: stop once the topic runs dry
            continue
        total += len(batch)
        last = time.perf_counter()
        if first is None:
            first = last  # from the end of the first batch, as the drain is timed
        else:
            got += len(batch)
    consumer.close()
    return got / (last - first) if first is not None and last is not None and last > first else float("nan")


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


def load_and_measure(bootstrap: str, src: str, dst: str, args, split: dict | None = None) -> Stats:
    """Tick -> prediction latency of whatever consumes ``src`` and writes ``dst``, measured by a load
    generator in its own process (paced producer + external consumer), so that neither the job under
    test nor the generator competes for the other's interpreter lock. The first tenth is dropped.

    ``split``, if given, gets the two legs of each latency as :class:`Stats`: ``"in"`` from the
    closing tick's send to the prediction's Kafka timestamp (set when the job produced it: input
    hop + the job's work) and ``"out"`` from there to its receipt (the job's flush + output hop);
    and ``"each"``: ``(latency, Kafka timestamp)`` of every prediction kept, ms."""
    cmd = [sys.executable, __file__, "--loadgen", bootstrap, src, dst, "--rate", str(args.rate),
           "--symbols", str(args.symbols), "--seconds", str(args.seconds)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=args.seconds + 120).stdout
    legs = json.loads(out.strip().splitlines()[-1])
    skip = len(legs["lat"]) // 10
    if split is not None:
        split.update({leg: Stats.of(legs[leg][skip:]) for leg in ("in", "out")})
        split["each"] = list(zip(legs["lat"][skip:], legs["at"][skip:], strict=True))
    return Stats.of(legs["lat"][skip:])


def _loadgen(bootstrap: str, src: str, dst: str, args) -> None:
    """The load generator's process: print the latencies and their legs (ms) as one JSON line."""
    consumer = _consumer(bootstrap, dst)
    ticks = make_ticks(args.symbols, int(args.rate * args.seconds))
    closers: dict = {}
    want = sum(opens for opens, _ in ticks) - args.symbols
    producer = threading.Thread(target=paced_ticks, args=(bootstrap, src, ticks, args.rate, closers, dst))
    producer.start()
    legs = collect(consumer, closers, want, args.seconds + 30)
    producer.join()
    consumer.close()
    print(json.dumps(legs))


def collect(consumer, closers: dict, want: int, timeout: float) -> dict[str, list[float]]:
    """External consumer: receive - ingest time of the closing tick for each prediction, ms (``"lat"``),
    split at the prediction's Kafka timestamp (its producer's create time, ``"at"``) into ``"in"`` and ``"out"``."""
    legs: dict[str, list[float]] = {"lat": [], "in": [], "out": [], "at": []}
    deadline = time.monotonic() + timeout
    while len(legs["lat"]) < want and time.monotonic() < deadline:
        m = consumer.poll(0.05)
        if m is None or m.error():
            continue
        now = time.time() * 1000
        event = json.loads(m.value())
        if event.get("type", "prediction") != "prediction" or "target_time_ms" not in event:
            continue
        sent = closers.get((event["symbol"], event["target_time_ms"]))
        if sent is not None:
            produced = m.timestamp()[1]
            legs["lat"].append(now - sent)
            legs["in"].append(produced - sent)
            legs["out"].append(now - produced)
            legs["at"].append(produced)
    return legs


def _app_settings(azurite, bootstrap: str, tmp: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    from local_stack.appsettings import local_app_settings

    tag = uuid.uuid4().hex[:8]
    return local_app_settings(azurite.connection_string, bootstrap_servers=bootstrap,
                              history_sqlite_path=tmp / f"history-{tag}.sqlite3", overrides={
                                  "TICKS_HUB_NAME": f"ticks-{tag}", "PREDICTIONS_HUB_NAME": f"predictions-{tag}",
                                  "DEADLETTER_HUB_NAME": f"deadletter-{tag}", "PREDICT_CONSUMER_GROUP": f"predict-{tag}",
                                  "STATE_CONTAINER": f"state-{tag}", **(extra or {})})


def predict_driver(broker, azurite, tmp: Path, partitions: int, on_batch=None, store: bool = True,
                   app_settings: dict[str, str] | None = None, producer: dict | None = None,
                   consumer: dict | None = None, options: dict | None = None):
    """A fresh ``predict`` worker: app settings in ``os.environ``, topics, the host-faithful driver.

    ``store`` False: the worker's state store is dropped after wiring (state in memory only), to
    show what the per-batch save costs. ``app_settings``, ``producer``, ``consumer`` and ``options``
    override app settings, the driver's client configs and host.json's Event Hubs options
    (``--diagnose`` variants)."""
    import function_app
    from functions import reset_services
    from functions.predict import service
    from local_stack.functions_host import EventHubFunctionDriver, app_functions
    from local_stack.hostjson import EventHubOptions
    from local_stack.tansu import consumer_config, producer_config
    from shared.serving.wiring import make_registry
    from shared.settings import Settings

    env = _app_settings(azurite, broker.bootstrap_servers, tmp, app_settings)
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
    hostjson = EventHubOptions.from_host_json()
    driver = EventHubFunctionDriver(fn, env, consumer_config(broker.bootstrap_servers, "unused", **(consumer or {})),
                                    producer_config(broker.bootstrap_servers, **(producer or {})), on_batch=on_batch,
                                    options=replace(hostjson, **options) if options else hostjson)
    return driver, settings


class GcPauses:
    """The garbage collector's pauses in this process (``gc.callbacks``), ms, while entered.

    ``since_last()`` is the pause time since its previous call: called from a driver's ``on_batch``,
    the GC time that fell into that batch's fetch, wait and invocation."""

    def __init__(self) -> None:
        self.pauses: list[tuple[int, float]] = []
        """(generation, ms) of each collection."""
        self._start = 0.0
        self._seen = 0

    def _callback(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.pauses.append((info["generation"], (time.perf_counter() - self._start) * 1e3))

    def since_last(self) -> float:
        new, self._seen = self.pauses[self._seen:], len(self.pauses)
        return sum(ms for _, ms in new)

    def __enter__(self) -> GcPauses:
        import gc

        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *_exc) -> None:
        import gc

        gc.callbacks.remove(self._callback)


class Stalls:
    """A probe thread sleeping 1 ms at a time; its oversleep (ms) is how long this process could not
    run Python: CPU starvation on the shared machine, a GC pause, or a holder of the interpreter lock
    past its switch interval (5 ms). ``since_last()``: the longest oversleep since its previous call."""

    def __init__(self) -> None:
        self._worst = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            t = time.perf_counter()
            time.sleep(0.001)
            self._worst = max(self._worst, (time.perf_counter() - t) * 1e3 - 1.0)

    def since_last(self) -> float:
        worst, self._worst = self._worst, 0.0
        return worst

    def __enter__(self) -> Stalls:
        self._thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._stop.set()
        self._thread.join(1)


@dataclass
class BatchSample:
    """One batch of the driver as the bench saw it: its report, the GC pause time and the longest
    :class:`Stalls` oversleep that fell into it (ms), and the wall clock when it was done (ms since
    epoch UTC; ``on_batch`` runs right after the checkpoint)."""

    report: Any
    gc_ms: float
    stall_ms: float
    done_ms: float

    def produced_between(self) -> tuple[float, float]:
        """Wall-clock window (ms since epoch UTC) of its produce step, 1 ms wider each side (the Kafka
        timestamp of an output is set at ``produce`` and truncated to the ms)."""
        r = self.report
        end = self.done_ms - r.commit_ms - r.flush_ms
        return end - r.produce_ms - 1.0, end + 1.0


def breakdown(samples: list[BatchSample], split: dict, slowest: int = 4) -> list[tuple[str, str, str]]:
    """Table rows: where a prediction's latency goes.

    The legs at the external consumer (``split``, see :func:`load_and_measure`), p50 / p99; then
    per batch of the driver (:class:`~local_stack.functions_host.BatchReport` timings, GC, stalls),
    p50 / p99 over the batches that produced something (the ones a prediction can come from; the
    first tenth dropped, like the latencies); then the slowest 1 % of the predictions, grouped by the
    batch that produced them (matched by their Kafka timestamps; at most ``slowest`` batches), each
    with that batch's parts."""
    from local_stack.functions_host import BatchReport

    rows = [("    legs: tick sent -> prediction produced | -> received",
             f"{split['in'].p50:.1f} / {split['in'].p99:.1f} | {split['out'].p50:.1f} / {split['out'].p99:.1f}",
             "p50 / p99 ms")]
    kept = [b for b in samples[len(samples) // 10:] if sum(b.report.produced.values())]
    if not kept:
        return rows

    def parts_of(batches: list[BatchSample]) -> dict[str, Stats]:
        parts = {name.removesuffix("_ms"): Stats.of([getattr(b.report, name) for b in batches])
                 for name in BatchReport.TIMINGS}
        parts["gc"] = Stats.of([b.gc_ms for b in batches])
        parts["stall"] = Stats.of([b.stall_ms for b in batches])
        parts["events"] = Stats.of([float(b.report.consumed) for b in batches])
        return parts

    line = "  ".join(f"{k} {v.p50:.1f}/{v.p99:.1f}" for k, v in parts_of(kept).items())
    rows.append((f"    per batch with outputs (n={len(kept)}), p50/p99", line, "ms (events: count)"))
    slow = [b.done_ms for b in samples[len(samples) // 10:] if b.report.invoke_ms > SLOW_INVOKE_MS]
    episodes = [t for i, t in enumerate(slow) if i == 0 or t - slow[i - 1] > 1_000]  # a second apart
    gaps = sorted(b - a for a, b in zip(episodes, episodes[1:]))
    rows.append((f"    invocations over {SLOW_INVOKE_MS:g} ms", f"{len(slow)} of {len(samples) - len(samples) // 10}",
                 f"in {len(episodes)} episodes; median gap {gaps[len(gaps) // 2] / 1e3:.1f} s" if gaps else ""))
    each = sorted(split.get("each", []), reverse=True)
    tail: dict[int, list[float]] = {}  # batch index (-1: none matched) -> latencies of the slowest 1 %
    for lat, at in each[:max(1, len(each) // 100)]:
        i = next((i for i, b in enumerate(kept) if b.produced_between()[0] <= at <= b.produced_between()[1]), -1)
        tail.setdefault(i, []).append(lat)
    for i, lats in list(tail.items())[:slowest]:
        line = "no batch matched" if i < 0 else "  ".join(f"{k} {v.p50:.1f}" for k, v in parts_of([kept[i]]).items())
        rows.append((f"    slowest 1 %: {len(lats)} at {min(lats):.0f}-{max(lats):.0f} ms, from the batch", line, "ms"))
    return rows


def tickcast_latency(broker, azurite, tmp: Path, args, store: bool = True, **variant) -> tuple[Stats, dict, list]:
    """Tick -> prediction at an external consumer, ``predict`` in the host-faithful driver.

    ``variant``: ``app_settings`` / ``producer`` overrides of :func:`predict_driver`.
    Returns the latencies, the driver's totals, and the :func:`breakdown` rows."""
    samples: list[BatchSample] = []
    with GcPauses() as pauses, Stalls() as stalls:
        def on_batch(report) -> None:
            samples.append(BatchSample(report, pauses.since_last(), stalls.since_last(), time.time() * 1e3))

        driver, settings = predict_driver(broker, azurite, tmp, args.partitions, on_batch=on_batch, store=store,
                                          **variant)
        stop = threading.Event()
        thread = threading.Thread(target=driver.run, args=(stop,), daemon=True)
        thread.start()
        driver.assigned.wait(60)
        split: dict = {}
        lat = load_and_measure(broker.bootstrap_servers, settings.ticks_hub, settings.predictions_hub, args, split)
        stop.set()
        thread.join(10)
    counts = dict(driver.totals.produced, consumed=driver.totals.consumed)
    driver.close()
    return lat, counts, breakdown(samples, split)


def _noop_predict(events, predictions, deadletters, context=None) -> None:
    """``predict``'s signature, nothing done: what the driver costs without the function (:func:`tickcast_drain`)."""


def tickcast_drain(broker, azurite, tmp: Path, args, profile: Path | None, n: int,
                   shares: dict[str, float] | None = None, noop: bool = False) -> float:
    """Ticks/s of ``predict`` through the broker on ``n`` pre-produced ticks (under cProfile into
    ``profile`` if given: then the figure is the profiler's, not the code's). ``shares``, if given,
    gets the fraction of that time each :class:`~local_stack.functions_host.BatchReport` timing
    took (``hop`` and ``waited`` left out: they overlap the others).

    ``noop``: the driver invokes :func:`_noop_predict` instead (same bindings, so the same events
    built, the same checkpoints, no outputs): the ceiling of any function's drain through the
    host stand-in on this machine, as the bare consumer is the broker's."""
    from local_stack.functions_host import BatchReport

    from confluent_kafka import Producer

    from local_stack.tansu import producer_config
    from shared.contracts.events import encode

    marks: list[tuple[float, int]] = []
    reports: list = []
    driver, settings = predict_driver(broker, azurite, tmp, args.partitions,
                                      on_batch=lambda r: (marks.append((time.perf_counter(), r.consumed)),
                                                          reports.append(r)))
    if noop:
        driver.user_function = _noop_predict
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
    seconds = marks[-1][0] - marks[0][0]
    if shares is not None:
        shares.update({name.removesuffix("_ms"): sum(getattr(r, name) for r in reports[1:]) / 1e3 / seconds
                       for name in BatchReport.TIMINGS if name not in ("hop_ms", "waited_ms")})
    return (sum(c for _, c in marks) - marks[0][1]) / seconds


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
    p.add_argument("--diagnose", action="store_true",
                   help="also latency runs (state store dropped) with one suspect of the tail removed each: "
                        "champion polls, the producer's linger, per-batch checkpoints")
    p.add_argument("--latency-only", action="store_true",
                   help="only the bare round trip and the latency runs (with their breakdown)")
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
        hop = bare_round_trip(broker, args.rate, args.seconds)
        flushed = bare_round_trip(broker, OUTPUT_RATE, args.seconds, flush=True)
        bare, unlingered, series = Stats.of(hop), Stats.of(flushed), two_hops(hop, flushed)
        rows.append(("bare one-hop round trip, p50 / p99", f"{bare.p50:.1f} / {bare.p99:.1f} ms", "1.00x (the floor)"))
        rows.append((f"  the same, {OUTPUT_RATE}/s, each message flushed (a job's output hop)",
                     f"{unlingered.p50:.1f} / {unlingered.p99:.1f} ms", f"p99 {unlingered.p99 / bare.p99:.2f}x floor"))
        rows.append(("  two bare hops in series (one of each, drawn apart)", f"{series.p50:.1f} / {series.p99:.1f} ms",
                     f"p99 {series.p99 / bare.p99:.2f}x floor (no two-hop job can do better)"))
        quix = None
        if not args.no_peers:
            from peers.run_quix import run_quix

            quix = run_quix(broker, args, bare)
        if not args.only_peers:
            lat, counts, parts = tickcast_latency(broker, azurite, tmp, args)
            rows.append((f"tick -> prediction, {args.rate:,} ticks/s, {args.symbols} symbols, p50 / p99",
                         f"{lat.p50:.1f} / {lat.p99:.1f} ms (n={lat.n})",
                         f"p99 {lat.p99 / bare.p99:.2f}x floor (target <= {TARGET_P99_RATIO})"))
            rows.extend(parts)
            lat, _, parts = tickcast_latency(broker, azurite, tmp, args, app_settings={"STATE_SNAPSHOT_SECONDS": "0"})
            rows.append(("  the same, state saved every batch (STATE_SNAPSHOT_SECONDS=0)",
                         f"{lat.p50:.1f} / {lat.p99:.1f} ms (n={lat.n})", f"p99 {lat.p99 / bare.p99:.2f}x floor"))
            rows.extend(parts)
            lat, _, parts = tickcast_latency(broker, azurite, tmp, args, store=False)
            rows.append(("  the same, state store dropped (what the saves cost)",
                         f"{lat.p50:.1f} / {lat.p99:.1f} ms (n={lat.n})", f"p99 {lat.p99 / bare.p99:.2f}x floor"))
            rows.extend(parts)
            for label, variant in DIAGNOSES if args.diagnose else ():
                lat, _, parts = tickcast_latency(broker, azurite, tmp, args, store=False, **variant)
                rows.append((f"  diagnosis, state store dropped, {label}", f"{lat.p50:.1f} / {lat.p99:.1f} ms (n={lat.n})",
                             f"p99 {lat.p99 / bare.p99:.2f}x floor"))
                rows.extend(parts)
        if not args.only_peers and not args.latency_only:
            shares: dict[str, float] = {}
            drain = tickcast_drain(broker, azurite, tmp, args, None, args.drain, shares)
            if args.profile:
                tickcast_drain(broker, azurite, tmp, args, args.profile, min(args.drain, 50_000))
            bare = bare_drain(broker, args.drain, args.symbols)
            host = tickcast_drain(broker, azurite, tmp, args, None, args.drain, noop=True)
            rows.append((f"bare consumer draining the same ({args.drain:,} ticks)", f"{bare:,.0f} ticks/s",
                         "1.00x (the broker's ceiling)"))
            rows.append(("the driver draining the same into a function that does nothing", f"{host:,.0f} ticks/s",
                         f"{host / TARGET_DRAIN:.2f}x target {TARGET_DRAIN:,} (the host stand-in's ceiling)"))
            rows.append((f"predict drain through the broker ({args.drain:,} ticks)", f"{drain:,.0f} ticks/s",
                         f"{drain / TARGET_DRAIN:.2f}x target {TARGET_DRAIN:,}; {drain / host:.2f}x the driver's "
                         f"ceiling; {drain / bare:.2f}x bare"))
            rows.append(("    share of the drain's time per driver step", "  ".join(
                f"{k} {v:.0%}" for k, v in shares.items()) + f"  other {1 - sum(shares.values()):.0%}", ""))
            for label, rate in local.in_process(azurite, args.symbols, args.profile):
                rows.append((label, f"{rate:,.0f} ticks/s", f"{rate / TARGET_IN_PROCESS:.2f}x target "
                             f"{TARGET_IN_PROCESS:,}; {rate / drain:.2f}x drain"))
            for label, value in local.in_process_parts(args.symbols):
                rows.append((label, value, ""))
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
