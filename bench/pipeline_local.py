"""The broker-free parts of ``bench/pipeline.py``: synthetic ticks, the in-process predict service,
footprint with many symbols, ingestor parser rates, profiles.

Figures only (no timed test); see ``bench/pipeline.py`` for what each means.
"""

from __future__ import annotations

import cProfile
import gc
import io
import math
import os
import pstats
import random
import resource
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BAR_EVERY = 50
"""Ticks per symbol per bar of the synthetic stream (event time advances 60 s / 50 = 1.2 s a tick)."""
EXCHANGE = "bench"
BATCH = 500
"""Events per in-process batch: host.json ``maxEventBatchSize``."""


def pct(values: list[float], q: float) -> float:
    """The ``q``-quantile (0..1) of ``values`` by nearest rank; NaN when empty."""
    if not values:
        return math.nan
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))]


@dataclass
class Stats:
    """Latency summary: ``n`` samples, p50 / p99 / max in ms."""

    n: int
    p50: float
    p99: float
    max: float

    @classmethod
    def of(cls, values: list[float]) -> Stats:
        return cls(len(values), pct(values, 0.5), pct(values, 0.99), max(values, default=math.nan))


def make_ticks(symbols: int, n: int, ingest_ms: int | None = None, bar_every: int = BAR_EVERY,
               seed: int = 7) -> list:
    """``n`` synthetic ticks round-robin over ``symbols``, a bar every ``bar_every`` ticks per symbol.

    Returns ``(opens, Tick)`` pairs: ``opens`` is True for the first tick of a minute (the tick that
    closes the previous bar). Event times start far enough in the past that, at the paced rate or
    pre-produced, none is ahead of its ingest time (``shared.stream.sanity`` ``future``);
    ``ingest_ms`` default: now (the paced producer stamps each tick again at send).
    """
    from shared.contracts.events import Tick

    rng = random.Random(seed)
    now = int(time.time() * 1000) if ingest_ms is None else ingest_ms
    per = n // symbols + 1
    step = 60_000 // bar_every
    start = (now - per * step - 3_600_000) // 60_000 * 60_000
    prices = [100.0 + 10 * s for s in range(symbols)]
    out = []
    for i in range(n):
        s, k = i % symbols, i // symbols
        prices[s] *= math.exp(rng.gauss(0.0, 2e-4))
        event = start + k * step
        out.append((k % bar_every == 0, Tick(EXCHANGE, f"S{s:04d}/USD", k + 1, round(prices[s], 6),
                                             round(rng.uniform(0.001, 2.0), 6), rng.choice(("buy", "sell")),
                                             event, now)))
    return out


def profiled(fn: Callable[[], object], path: Path | None) -> object:
    """Run ``fn``, under cProfile into ``path`` if given."""
    if path is None:
        return fn()
    prof = cProfile.Profile()
    try:
        return prof.runcall(fn)
    finally:
        prof.dump_stats(path)


def print_profiles(directory: Path, top: int = 18) -> None:
    """Print the top lines (by own time) of every ``*.prof`` in ``directory``."""
    for path in sorted(directory.glob("*.prof")):
        out = io.StringIO()
        pstats.Stats(str(path), stream=out).strip_dirs().sort_stats("tottime").print_stats(top)
        print(f"\n== profile {path.name} (by own time; cumulative: python -m pstats {path}) ==")
        print("\n".join(line for line in out.getvalue().splitlines()[6:] if line.strip()))


def _service(store: bool, azurite, clock: Callable[[], int] | None = None, snapshot_seconds: float = 0.0):
    """A fresh :class:`PredictService` as ``make_predict_service`` builds it (no registry: cold models),
    with a state store on a new Azurite container when ``store``, saved every ``snapshot_seconds``."""
    from azure.storage.blob import ContainerClient

    from shared.lifecycle.registry.signing import ModelSigner
    from shared.serving.predicting import build_predict_service
    from shared.serving.statestore import PartitionStateStore
    from shared.serving.wiring import SERVING_BLOB_CLIENT

    state = None
    if store:
        container = ContainerClient.from_connection_string(azurite.connection_string,
                                                           f"bench-{os.urandom(4).hex()}", **SERVING_BLOB_CLIENT)
        state = PartitionStateStore(container, ModelSigner(os.urandom(32).hex()), "ticks", "predict")
        state.ensure_container()
    return build_predict_service(None, "default", 0.9, 60.0, clock=clock, price_update_ms=1000, state_store=state,
                                 snapshot_seconds=snapshot_seconds)


def _batches(ticks: list, partitions: int = 1) -> list[tuple[list, list]]:
    """Encode ``ticks`` into host-sized batches of ``(RawEvent list, event ids)``, one partition each."""
    from shared.contracts.batches import RawEvent
    from shared.contracts.events import encode

    out = []
    seqs = [0] * partitions
    by_partition: list[list] = [[] for _ in range(partitions)]
    for _, tick in ticks:
        by_partition[hash(tick.symbol) % partitions].append(encode(tick))
    for p, bodies in enumerate(by_partition):
        for i in range(0, len(bodies), BATCH):
            chunk = bodies[i:i + BATCH]
            out.append(([RawEvent(b, f"ticks[{j}]") for j, b in enumerate(chunk)],
                        [(f"partition {p}", seqs[p] + j) for j in range(len(chunk))]))
            seqs[p] += len(chunk)
    return out


def in_process(azurite, symbols: int, profile: Path | None, n: int = 100_000,
               rounds: int = 5) -> list[tuple[str, float]]:
    """Ticks/s of ``PredictService.handle`` on host-sized batches, no broker: memory only, with the
    Azurite state store saved every ``STATE_SNAPSHOT_SECONDS`` (the default, as in serving), and
    saved every batch. The three run in alternating rounds, best of ``rounds`` each: this machine's
    speed moves by up to 2x within a minute, and the lines are compared with each other."""
    from shared.settings import SETTINGS

    every = float(SETTINGS["STATE_SNAPSHOT_SECONDS"].default)
    batches = _batches(make_ticks(symbols, n))
    configs = (("in process, no state store", False, 0.0),
               (f"in process, Azurite state store, saved every {every:g} s", True, every),
               ("in process, Azurite state store, saved every batch", True, 0.0))
    best = [math.inf] * len(configs)
    for attempt in range(rounds):
        for i, (_, store, seconds) in enumerate(configs):
            service = _service(store, azurite, snapshot_seconds=seconds)
            gc.collect()

            def run() -> None:
                for events, ids in batches:
                    service.handle(events, ids)

            t = time.perf_counter()
            profiled(run, profile / f"in_process_{('store' if seconds else 'store_every_batch') if store else 'memory'}.prof"
                     if profile and attempt == 0 else None)
            if not (profile and attempt == 0):  # a profiled run is the profiler's figure
                best[i] = min(best[i], time.perf_counter() - t)
    return [(f"predict {label} ({n:,} ticks, {symbols} symbols)", n / t) for (label, _, _), t in zip(configs, best)]


def in_process_parts(symbols: int, n: int = 100_000, rounds: int = 5) -> list[tuple[str, str]]:
    """What the in-process rate is made of: the service on the benchmark's stream and on the same
    number of ticks that never close a bar (every tick the common one), in alternating rounds, best
    of each (this machine's speed moves by up to 2x within a minute: the pair must see the same
    moments); from the two rates the time of one bar close, in us, at one close per ``BAR_EVERY``
    ticks per symbol; and the validated decode alone
    (:data:`~shared.contracts.events.decode_tick_wire` of every body, the least a tick costs)."""
    from shared.contracts.events import decode_tick_wire

    inputs = {"closing": _batches(make_ticks(symbols, n)),
              "common": _batches(make_ticks(symbols, n, bar_every=n))}
    bodies = [e.body for events, _ in inputs["common"] for e in events]
    best = {"closing": math.inf, "common": math.inf, "decode": math.inf}
    for _ in range(rounds):
        for name, batches in inputs.items():
            service = _service(False, None)  # a fresh one: a second pass would be redeliveries, skipped
            gc.collect()
            t = time.perf_counter()
            for events, ids in batches:
                service.handle(events, ids)
            best[name] = min(best[name], time.perf_counter() - t)
        t = time.perf_counter()
        for body in bodies:
            decode_tick_wire(body)
        best["decode"] = min(best["decode"], time.perf_counter() - t)
    per_close_us = (best["closing"] - best["common"]) / (n / BAR_EVERY) * 1e6
    return [
        (f"  the same service, paired with the next line ({rounds} alternating rounds)",
         f"{n / best['closing']:,.0f} ticks/s"),
        ("  the same service, no bar closing (every tick the common one)", f"{n / best['common']:,.0f} ticks/s"),
        (f"  one bar close (from the two rates, one per {BAR_EVERY} ticks per symbol)", f"{per_close_us:,.1f} us"),
        ("  validated decode alone (msgspec, the floor of any tick)", f"{n / best['decode']:,.0f} ticks/s"),
    ]


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def footprint(azurite, symbols: int, bars: int = 30, ticks_per_bar: int = 5) -> list[tuple[str, str]]:
    """RSS and saved partition-state bytes per symbol with ``symbols`` symbols in one partition, each
    ``bars`` bars in (the feature windows are not full: a day of bars would take too long here), and
    the time of one save of that partition (done at the end of every batch)."""
    from shared.serving.statestore import PartitionStateStore

    clock = iter(range(0, 1 << 62, 3_600_000))  # the new-symbol rate gate admits one per minute of its clock
    ticks = make_ticks(symbols, symbols * bars * ticks_per_bar, bar_every=ticks_per_bar)
    batches = _batches(ticks)
    gc.collect()
    before = _rss_bytes()
    service = _service(True, azurite, clock=lambda: next(clock))
    t = time.perf_counter()
    for events, ids in batches:
        service.handle(events, ids)
    feed_s = time.perf_counter() - t
    gc.collect()
    rss = _rss_bytes() - before
    store, tracker = service.partitions.store, service.partitions
    blob = store.container.get_blob_client(store.blob_name("partition 0")).download_blob().readall()
    saves = []
    for _ in range(5):
        t = time.perf_counter()
        tracker.commit("partition 0", [])
        saves.append(time.perf_counter() - t)
    t = time.perf_counter()
    PartitionStateStore.decode(store.signer, "ticks", "predict", "partition 0", blob)
    load_s = time.perf_counter() - t
    n = len(service.engine.symbols)
    day = _day_core_bytes()
    return [
        (f"footprint: {n:,} symbols, {bars} bars each, {len(ticks):,} ticks in {feed_s:.1f} s", ""),
        ("  RSS per symbol", f"{rss / n / 1024:,.1f} KiB"),
        ("  partition state (checkpoint) per symbol", f"{len(blob) / n / 1024:,.2f} KiB ({len(blob) / 2**20:.1f} MiB)"),
        (f"  one save of the {n:,}-symbol partition (median of 5)", f"{statistics.median(saves) * 1000:,.0f} ms"),
        ("  one load (verify + unpickle)", f"{load_s * 1000:,.0f} ms"),
        ("  one symbol's model-side state after a day of bars (1,440)", f"{day / 1024:,.2f} KiB pickled"),
    ]


def _day_core_bytes(bars: int = 1_440) -> int:
    """Pickled model-side state (features, forecaster, pending forecast) of one symbol after ``bars``
    bars, when the day-long feature windows are full: the steady-state checkpoint of a symbol."""
    from shared.serving.engine import pickle_core as _core

    service = _service(False, None)
    for events, ids in _batches(make_ticks(1, bars * 2 + 1, bar_every=2)):
        service.handle(events, ids)
    return len(_core(next(iter(service.engine.symbols.values()))))


def ingestor_rates() -> list[tuple[str, float]]:
    """Ticks/s per core of the recorded-file reader (replay) and of the Binance live parser."""
    import json

    from ingestor.parsers import binance
    from ingestor.parsers.recorded import read_recorded
    from shared.contracts.events import encode

    data = REPO.parent / "shared" / "data" / "binance_spot_BTCUSDT_trades_20240808T2354Z-20240809T0005Z.csv.gz"
    path = data if data.exists() else REPO / "samples" / "kraken_XBTUSD_trades_20190701T00Z-01Z.csv.gz"
    best = math.inf
    for _ in range(3):
        t = time.perf_counter()
        ticks = [encode(r.tick) for r in read_recorded(path) if r.tick is not None]
        best = min(best, time.perf_counter() - t)
    replay = len(ticks) / best
    messages = [json.dumps({"e": "trade", "E": 1_723_161_240_000 + i, "s": "BTCUSDT", "t": 1000 + i,
                            "p": f"{60000 + i % 100:.2f}", "q": "0.01000", "T": 1_723_161_240_000 + i,
                            "m": bool(i % 2), "M": True}).encode() for i in range(50_000)]
    first = binance.parse_message(messages[0], ingest_time_ms=0)
    assert first.kind == "trades", first
    best = math.inf
    for _ in range(3):
        t = time.perf_counter()
        for m in messages:
            for tick in binance.parse_message(m, ingest_time_ms=0).ticks:
                encode(tick)
        best = min(best, time.perf_counter() - t)
    return [(f"ingestor replay: read + parse + encode ({path.name[:24]}...)", replay),
            ("ingestor live: Binance message parse + encode", len(messages) / best)]
