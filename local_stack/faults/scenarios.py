"""One scenario of the fault-injection suite: fresh resources, the functions process, the replay, a fault.

Every scenario gets its own hubs, consumer groups, models container and database (names prefixed
``<scenario>-<random>-``) on the suite's servers, and the same champion, copied blob for blob from a
template container (same version, same signature), so every scenario must give the same
predictions. Then it starts ``python -m local_stack functions`` (:class:`FunctionsProcess`), starts
the ingestor's replay (``python -m ingestor replay``), injects its fault while the replay flows,
waits until the functions checkpointed every event, stops them, and reads everything back.

Faults (:data:`FAULTS`; times are wall seconds after the replay started):

``baseline``
    none: the reference.
``kill``
    SIGKILL of the functions process at ``kills`` random points of the replay (seeded; at least
    :data:`MIN_UP_S` after the previous restart), each followed by a restart; the outage of a kill
    lasts until the new process checkpointed its first batch of ticks.
``storage-outage``
    Azurite stopped for ``outage_s`` (10 s), then MariaDB stopped for ``outage_s``.
``broker-freeze``
    MariaDB stopped and Tansu SIGSTOPped together for ``freeze_s`` (20 s).
``fuzz``
    :mod:`local_stack.faults.fuzz` messages, ``fuzz`` on the ticks hub and ``fuzz`` on the
    predictions hub, spread over the replay, interleaved with the valid ticks.
"""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from local_stack.appsettings import write_local_settings
from local_stack.cmd_functions import FunctionsProcess
from local_stack.faults import fuzz as fuzzing
from local_stack.faults.expected import Expected
from local_stack.faults.readback import read_hub, wait_drained
from local_stack.faults.report import compare

__all__ = ["FAULTS", "Plan", "run_scenario"]

REPO = Path(__file__).resolve().parents[2]
MIN_UP_S = 3.0
"""Least time the functions process runs between a restart and the next kill, seconds."""
FAULTS = ("baseline", "kill", "storage-outage", "broker-freeze", "fuzz")
"""The scenarios, in the order the suite runs them."""


@dataclass
class Plan:
    """Sizes and timings of a suite run (the full run's defaults; the CI test passes smaller ones).

    ``speed`` maps a scenario to its replay speed factor (``default`` for the others); ``limit``
    publishes only the first ``limit`` trades; times in seconds.
    """

    replay: Path
    limit: int | None = None
    speed: dict[str, float] = field(default_factory=lambda: {"default": 60.0, "kill": 6.0})
    kills: int = 10
    fuzz: int = 10_000
    outage_s: float = 10.0
    freeze_s: float = 20.0
    seed: int = 13
    drain_timeout_s: float = 240.0

    def speed_of(self, scenario: str) -> float:
        """Replay speed of ``scenario``."""
        return self.speed.get(scenario, self.speed["default"])


def copy_blobs(source, target) -> int:
    """Copy every blob of container client ``source`` into ``target``; return how many."""
    n = 0
    for blob in source.list_blobs():
        target.upload_blob(blob.name, source.download_blob(blob.name).readall(), overwrite=True)
        n += 1
    return n


def run_scenario(name: str, servers, template, signing_key: str, expected: Expected, plan: Plan,
                 workdir: Path, say) -> dict:
    """Run scenario ``name`` on ``servers`` (a started :class:`~local_stack.cmd_servers.StackServers`).

    ``template`` is the container client holding the champion; ``say`` prints a progress line.
    Returns the figures of :func:`local_stack.faults.report.compare` plus ``scenario``, ``wall_s``,
    ``outage_s``, ``lost``, ``kills``, ``replay`` (the ingestor's counters) and ``outages``.

    Raises
    ------
    RuntimeError
        The functions process or the ingestor failed, or the pipeline did not drain.
    """
    t0 = time.monotonic()
    prefix = f"{name}-{uuid.uuid4().hex[:6]}-"
    values = servers.app_settings(prefix=prefix, signing_key=signing_key)
    copy_blobs(template, servers.create_container(values["MODELS_CONTAINER"]))
    sdir = workdir / name
    settings = write_local_settings(sdir / "local.settings.json", values)
    functions = FunctionsProcess(settings, sdir)
    say(f"{name}: functions ready in {functions.start():.1f} s; replaying at speed {plan.speed_of(name):g}")
    speed = plan.speed_of(name)
    duration = (expected.last_event_ms - expected.first_event_ms) / 1000 / speed if speed else 5.0
    bootstrap = servers.tansu.bootstrap_servers
    cmd = [sys.executable, "-m", "ingestor", "--log-level", "WARNING", "replay", str(plan.replay),
           "--bootstrap-servers", bootstrap, "--topic", values["TICKS_HUB_NAME"],
           "--deadletter-topic", values["DEADLETTER_HUB_NAME"], "--speed", str(speed)]
    if plan.limit:
        cmd += ["--limit", str(plan.limit)]
    started = time.monotonic()
    ingestor_log = open(sdir / "ingestor.log", "wb")
    ingestor = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=ingestor_log, text=True)
    fault = _Fault(name, servers, functions, plan, values, expected, started, duration, say)
    thread = threading.Thread(target=fault.run, name=f"fault-{name}", daemon=True)
    thread.start()
    try:
        stdout, _ = ingestor.communicate(timeout=duration * 3 + plan.drain_timeout_s)
        if ingestor.returncode != 0:
            tail = (sdir / "ingestor.log").read_text(errors="replace").splitlines()[-15:]
            raise RuntimeError(f"ingestor failed with exit code {ingestor.returncode}:\n" + "\n".join(tail))
        replay = json.loads(stdout.strip().splitlines()[-1])
        thread.join(plan.drain_timeout_s)
        if fault.error is not None:
            raise RuntimeError(f"{name}: fault injection failed: {fault.error!r}")
        drained = wait_drained(bootstrap, [(values["PREDICT_CONSUMER_GROUP"], values["TICKS_HUB_NAME"]),
                                           (values["ARCHIVE_CONSUMER_GROUP"], values["PREDICTIONS_HUB_NAME"])],
                               plan.drain_timeout_s, alive=lambda: functions.proc.poll() is None)
        say(f"{name}: replay of {replay['published']} ticks done, pipeline drained {drained:.1f} s after the faults")
    finally:
        if ingestor.poll() is None:
            ingestor.kill()
            ingestor.wait()
        ingestor_log.close()
        fault.stop.set()
        thread.join(60)
        functions.terminate()
    outputs = read_hub(bootstrap, values["PREDICTIONS_HUB_NAME"])
    deadletters = read_hub(bootstrap, values["DEADLETTER_HUB_NAME"])
    bars, predictions = _store_rows(values, expected)
    row = compare(expected, outputs, deadletters, fuzz=fault.delivered, store_bars=bars,
                  store_predictions=predictions, valid_symbols={(k[0], k[1]) for k in expected.bars})
    hub_replays = _hub_replays(functions.log_path)
    row.update(scenario=name, wall_s=round(time.monotonic() - t0, 1), outage_s=round(fault.longest_outage, 1),
               lost=functions.lost, kills=functions.kills, replay=replay, outages=fault.outages,
               fuzz_undelivered=fault.undelivered, prefix=prefix, hub_replays=len(hub_replays),
               hub_replayed_events=sum(hub_replays))
    return row


_REPLAYED = re.compile(rb"replayed (\d+) event\(s\) from the hub")


def _hub_replays(log_path: Path) -> list[int]:
    """Events replayed from the ticks hub by each restore of a partition state older than the
    stream (``shared.serving.partitions``' warning line), from the functions processes' log."""
    try:
        return [int(m.group(1)) for m in _REPLAYED.finditer(log_path.read_bytes())]
    except OSError:
        return []


def _store_rows(values: dict, expected: Expected) -> tuple[list, list]:
    from shared.settings import Settings
    from shared.storage.history import HistoryStore

    store = HistoryStore.from_settings(Settings.from_env(values))
    try:
        symbols = {(k[0], k[1]) for k in expected.bars}
        return ([b for s in symbols for b in store.bars(*s)], [p for s in symbols for p in store.predictions(*s)])
    finally:
        store.close()


class _Fault:
    """The fault of one scenario, run on its own thread from the replay's start."""

    def __init__(self, name, servers, functions, plan, values, expected, started, duration, say) -> None:
        self.name, self.servers, self.functions, self.plan = name, servers, functions, plan
        self.values, self.expected, self.started, self.duration, self.say = values, expected, started, duration, say
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.outages: list[tuple[str, float, float]] = []
        """``(what, from, to)`` seconds after the replay started."""
        self.delivered: dict[tuple[str, int, int], fuzzing.FuzzMessage] = {}
        self.undelivered = 0

    @property
    def longest_outage(self) -> float:
        """Longest time anything was down, seconds: back-to-back outages (under 1 s apart) count as one."""
        longest, start, end = 0.0, None, None
        for _, a, b in sorted(self.outages, key=lambda o: o[1]):
            if start is None or a > end + 1.0:
                start, end = a, b
            end = max(end, b)
            longest = max(longest, end - start)
        return longest

    def _at(self, t: float) -> None:
        self.stop.wait(max(0.0, self.started + t - time.monotonic()))

    def _now(self) -> float:
        return time.monotonic() - self.started

    def run(self) -> None:
        try:
            self._wait_flowing()
            getattr(self, "_" + self.name.replace("-", "_"))()
        except BaseException as exc:  # reported by run_scenario
            self.error = exc

    def _wait_flowing(self, timeout_s: float = 60.0) -> None:
        """Wait until ``predict`` checkpointed its first events; fault times count from then.

        A fault before the first tick would test a cold start during an outage, not an outage
        mid-stream (the ingestor takes a few seconds to start).
        """
        deadline = time.monotonic() + timeout_s
        while not self.stop.is_set() and time.monotonic() < deadline:
            predict = self.functions.counters().get("drivers", {}).get("predict", {})
            if predict.get("consumed", 0) > 0:
                break
            time.sleep(0.1)
        self.say(f"{self.name}: ticks flowing {time.monotonic() - self.started:.1f} s after the replay started")
        self.started = time.monotonic()

    def _baseline(self) -> None:
        pass

    def _kill(self) -> None:
        rng = random.Random(self.plan.seed)
        span = max(self.duration - 4.0, 1.0)
        points = sorted(rng.uniform(2.0, 2.0 + span) for _ in range(self.plan.kills))
        for t in points:
            self._at(max(t, self._now() + MIN_UP_S))
            if self.stop.is_set():
                return
            down = self._now()
            self.functions.kill()
            self.functions.start()
            self._wait_processing()
            self.outages.append(("kill", down, self._now()))
            self.say(f"kill {self.functions.kills}/{self.plan.kills} at {down:.1f} s: processing again after "
                     f"{self._now() - down:.1f} s")

    def _wait_processing(self, timeout_s: float = 20.0) -> None:
        """Wait until the restarted ``predict`` checkpointed a batch (at most ``timeout_s``: none may be left)."""
        deadline = time.monotonic() + timeout_s
        while not self.stop.is_set() and time.monotonic() < deadline:
            if self.functions.counters().get("drivers", {}).get("predict", {}).get("consumed", 0) > 0:
                return
            time.sleep(0.1)

    def _storage_outage(self) -> None:
        for server, t in (("azurite", 0.15), ("mariadb", 0.15 + (self.plan.outage_s * 2) / max(self.duration, 1))):
            self._at(max(3.0, t * self.duration))
            down = self._now()
            self.servers.stop_server(server)
            self._at(down + self.plan.outage_s)
            self.servers.start_server(server)
            self.outages.append((server, down, self._now()))
            self.say(f"{server} down from {down:.1f} s to {self._now():.1f} s")

    def _broker_freeze(self) -> None:
        self._at(max(3.0, 0.2 * self.duration))
        down = self._now()
        self.servers.stop_server("mariadb")
        self.servers.freeze_broker()
        self._at(down + self.plan.freeze_s)
        self.servers.thaw_broker()
        self.servers.start_server("mariadb")
        self.outages.append(("tansu+mariadb", down, self._now()))
        self.say(f"Tansu frozen and MariaDB down from {down:.1f} s to {self._now():.1f} s")

    def _fuzz(self) -> None:
        from confluent_kafka import Producer

        from local_stack.tansu import producer_config
        from shared.serving.engine import now_ms

        exchange, symbol = next(iter(self.expected.bars))[:2]
        common = dict(exchange=exchange, symbol=symbol, start_ms=self.expected.first_event_ms)
        lists = {"ticks": fuzzing.fuzz_ticks(self.plan.fuzz, seed=self.plan.seed, ingest_ms=now_ms(), **common),
                 "predictions": fuzzing.fuzz_outputs(self.plan.fuzz, seed=self.plan.seed + 1, now_ms=now_ms(), **common)}
        topics = {"ticks": self.values["TICKS_HUB_NAME"], "predictions": self.values["PREDICTIONS_HUB_NAME"]}
        producer = Producer(producer_config(self.servers.tansu.bootstrap_servers, **{"message.max.bytes": 1_000_000}))
        positions: dict[str, list] = {hub: [None] * len(msgs) for hub, msgs in lists.items()}

        def delivered(hub: str, i: int):
            def report(err, msg) -> None:
                if err is None:
                    positions[hub][i] = (hub, msg.partition(), msg.offset())
            return report

        # interleaved; the valid symbol's bad ticks wait until its first valid tick is in the hub
        order = [(i, hub) for i in range(self.plan.fuzz) for hub in lists]
        deferred: list[tuple[int, str]] = []
        started_symbol = False
        spread = max(self.duration * 0.8, 1.0)
        for n, (i, hub) in enumerate(order):
            if self.stop.is_set():
                break
            self._at(spread * n / len(order))
            if not started_symbol and lists[hub][i].after_start:
                started_symbol = self._valid_tick_seen(symbol)
            batch = [(i, hub)] if started_symbol or not lists[hub][i].after_start else []
            if started_symbol and deferred:
                batch, deferred = deferred + batch, []
            elif not batch:
                deferred.append((i, hub))
            for j, h in batch:
                m = lists[h][j]
                producer.produce(topics[h], value=m.value, key=m.key, on_delivery=delivered(h, j))
                producer.poll(0)
        if deferred and self._valid_tick_seen(symbol, wait_s=30.0):
            for j, h in deferred:
                producer.produce(topics[h], value=lists[h][j].value, key=lists[h][j].key, on_delivery=delivered(h, j))
                producer.poll(0)
        producer.flush(60)
        for hub, msgs in lists.items():
            for i, m in enumerate(msgs):
                if positions[hub][i] is None:
                    self.undelivered += 1
                else:
                    self.delivered[positions[hub][i]] = m
        self.say(f"fuzz: {len(self.delivered)} messages delivered, {self.undelivered} not")

    def _valid_tick_seen(self, symbol: str, wait_s: float = 0.0) -> bool:
        """Whether the ticks hub holds a tick of the valid ``symbol`` (keyed by it) yet."""
        from local_stack.faults.readback import read_hub

        deadline = time.monotonic() + wait_s
        while True:
            records = read_hub(self.servers.tansu.bootstrap_servers, self.values["TICKS_HUB_NAME"], idle_s=0.5)
            if any(r.key == symbol.encode() for r in records):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.5)
