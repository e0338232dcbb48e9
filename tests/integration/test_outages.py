"""Outages degrade, never stall: ``predict`` against a real Azurite and MariaDB that go away.

* Blob Storage: a private Azurite (persistent, on a fixed port) is stopped for ~10 s while
  ``predict`` is fed a minute of ticks per batch. Every batch must stay far below the outage
  (``MAX_BATCH_SECONDS``), predictions go on from the cached champion (also for a symbol first
  seen during the outage), and after Azurite is back checkpoints and pointer refresh resume
  (a champion promoted after the restart is swapped in).
* MySQL: ``predict`` is built with ``MYSQL_URL`` on a closed port, predicts with cold features,
  and warms symbols first seen after the database answers (through a TCP forwarder opened
  later on that port).

Run with ``-s`` to see the measured worst batch latencies.
"""

from __future__ import annotations

import json
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from local_stack.azurite import AzuriteServer
from shared.contracts.batches import RawEvent
from shared.contracts.events import Bar, Tick, encode
from shared.lifecycle.registry import ModelRegistry, symbol_key
from shared.serving import wiring
from shared.serving.engine import new_forecaster
from shared.settings import Settings
from shared.stream.features import FEATURE_NAMES
from shared.storage.history import HistoryStore

MINUTE_MS = 60_000
EXCHANGE = "binance"
MAX_BATCH_SECONDS = 2.0
"""Bound on one batch's wall time during an outage: well under the 10 s outage itself."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Feed:
    """One batch per simulated minute: two ticks per symbol, closing the previous minute."""

    def __init__(self, start_ms: int) -> None:
        self.minute = start_ms - start_ms % MINUTE_MS
        self.trade_id = 0
        self.n = 0

    def batch(self, symbols: list[str]) -> list[RawEvent]:
        events = []
        for k, symbol in enumerate(symbols):
            for j in range(2):
                self.trade_id += 1
                t = self.minute + 1_000 + 20_000 * j
                price = 100.0 + k + (self.n % 7) * 0.1 + j * 0.05
                tick = Tick(EXCHANGE, symbol, self.trade_id, price, 0.5, "buy", t, t + 50)
                events.append(RawEvent(encode(tick), f"ticks/0@{self.trade_id}"))
        self.minute += MINUTE_MS
        self.n += 1
        return events


def save_model(registry: ModelRegistry) -> str:
    """Store a fresh forecaster as a new candidate of ``default``; return its version."""
    return registry.save("default", new_forecaster(), training_start_ms=0, training_end_ms=MINUTE_MS,
                         feature_names=list(FEATURE_NAMES)).version


def predictions(outputs: list[bytes]) -> list[dict]:
    return [e for e in map(json.loads, outputs) if e.get("type") == "prediction"]


# ------------------------------------------------------------------ Blob Storage


@pytest.fixture
def private_azurite(tmp_path: Path) -> Iterator[dict]:
    """A persistent Azurite on a fixed port, so it can be stopped and started again."""
    state = {"port": free_port(), "location": tmp_path / "azurite"}
    state["server"] = AzuriteServer(port=state["port"], location=state["location"]).start()
    try:
        yield state
    finally:
        state["server"].stop()


def test_blob_outage_costs_no_batch_more_than_two_seconds(
    private_azurite: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODEL_SIGNING_KEY", secrets.token_hex(32))  # model blobs are signed
    server = private_azurite["server"]
    settings = Settings.from_env({
        "MODEL_STORAGE": server.connection_string, "MODELS_CONTAINER": "models", "MODEL_KEY": "default",
        "MODEL_POLL_SECONDS": "0.5", "MODEL_CHECKPOINT_SECONDS": "1", "STATE_WARMUP_BARS": "0",
    })
    admin = ModelRegistry.from_settings(settings)
    admin.ensure_container()
    v1 = save_model(admin)
    admin.set_current("default", v1)

    service = wiring.make_predict_service(settings)
    source = service.engine.provider
    feed = Feed(time.time_ns() // 1_000_000 - 6 * 3600_000)  # six hours back: never ahead of now
    worst = {"healthy": 0.0, "outage": 0.0, "recovered": 0.0}
    made: dict[str, list[dict]] = {"healthy": [], "outage": [], "recovered": []}

    def run(phase: str, symbols: list[str]) -> None:
        t0 = time.perf_counter()
        result = service.handle(feed.batch(symbols))
        worst[phase] = max(worst[phase], time.perf_counter() - t0)
        made[phase].extend(predictions(result.outputs))
        time.sleep(0.1)

    try:
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline or source.checkpoints_saved == 0:
            run("healthy", ["BTCUSDT", "ETHUSDT"])
        saved_before = source.checkpoints_saved

        server.stop()
        outage_started = time.monotonic()
        while time.monotonic() - outage_started < 10:
            run("outage", ["BTCUSDT", "ETHUSDT", "NEWUSDT"])  # NEWUSDT: first seen while storage is down
        skipped = source.backoff.skipped
        server = private_azurite["server"] = AzuriteServer(
            port=private_azurite["port"], location=private_azurite["location"]).start()
        outage = time.monotonic() - outage_started

        admin = ModelRegistry.from_settings(settings)  # the old client's connections died with the server
        v2 = save_model(admin)
        admin.set_current("default", v2, force=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (
            source.checkpoints_saved > saved_before
            and {p["model_version"] for p in made["recovered"][-3:]} == {v2}
            and admin.load_checkpoint(symbol_key(EXCHANGE, "BTCUSDT"), v2) is not None
        ):
            run("recovered", ["BTCUSDT", "ETHUSDT", "NEWUSDT"])
    finally:
        service.close()

    print(f"\nblob outage of {outage:.1f} s: worst batch healthy {worst['healthy'] * 1000:.0f} ms, "
          f"during the outage {worst['outage'] * 1000:.0f} ms, after it {worst['recovered'] * 1000:.0f} ms; "
          f"{skipped} storage calls skipped, {len(made['outage'])} predictions during the outage")
    assert worst["outage"] < MAX_BATCH_SECONDS and worst["recovered"] < MAX_BATCH_SECONDS
    assert skipped > 0, "the breaker never skipped a call: the outage was not seen"
    assert made["outage"], "no predictions during the outage"
    assert {p["model_version"] for p in made["outage"]} == {v1}  # cached champion, also for NEWUSDT
    assert any(p["symbol"] == "NEWUSDT" for p in made["outage"])
    assert source.checkpoints_saved > saved_before, "checkpoints did not resume"
    assert {p["model_version"] for p in made["recovered"][-3:]} == {v2}, "pointer refresh did not resume"
    assert admin.load_checkpoint(symbol_key(EXCHANGE, "BTCUSDT"), v2) is not None  # the new champion's


# ------------------------------------------------------------------ MySQL


class Forwarder:
    """A TCP forwarder from ``127.0.0.1:port`` to ``target``: the database "coming back" there."""

    def __init__(self, port: int, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", port))
        self.sockets: list[socket.socket] = [self.listener]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self.sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        for s in self.sockets:
            s.close()


def test_predict_builds_and_predicts_with_mysql_down_then_warms_when_it_returns(
    mysql_url: str, mariadb_server
) -> None:
    database = mysql_url.rsplit("/", 1)[1]
    feed = Feed(time.time_ns() // 1_000_000 - 6 * 3600_000)
    with HistoryStore.from_url(mysql_url) as store:  # history of the symbol first seen after recovery
        start = feed.minute - 40 * MINUTE_MS
        store.upsert_bars([Bar(EXCHANGE, "LATEUSDT", start + i * MINUTE_MS, 1.0, 1.0, 1.0, 1.0, 1.0, 1)
                           for i in range(30)])
    port = free_port()  # nothing listens here yet: the database is down
    url = f"mysql+pymysql://{mariadb_server.user}:{mariadb_server.password}@127.0.0.1:{port}/{database}"
    settings = Settings.from_env({"MYSQL_URL": url, "STATE_WARMUP_BARS": "30"})

    t0 = time.perf_counter()
    service = wiring.make_predict_service(settings)
    built = time.perf_counter() - t0
    warmup = service.engine.warmup
    worst, made = 0.0, []
    forwarder = None
    try:
        for _ in range(8):
            t0 = time.perf_counter()
            made += predictions(service.handle(feed.batch(["BTCUSDT", "ETHUSDT"])).outputs)
            worst = max(worst, time.perf_counter() - t0)
        assert made, "no predictions with the database down"
        assert warmup.skipped == 2 and service.engine.stats.warmup_bars == 0  # both symbols started cold

        forwarder = Forwarder(port, (mariadb_server.host, mariadb_server.port))  # the database is back
        time.sleep(1.2)  # the first back-off (1 s) passes
        service.handle(feed.batch(["BTCUSDT", "ETHUSDT", "LATEUSDT"]))
        assert service.engine.stats.warmup_bars == 30, "a symbol first seen after recovery was not warmed"
    finally:
        service.close()
        if forwarder is not None:
            forwarder.close()
    print(f"\nMySQL down: service built in {built * 1000:.0f} ms, worst batch {worst * 1000:.0f} ms, "
          f"{len(made)} predictions with cold features")
    assert built < 1.0 and worst < MAX_BATCH_SECONDS
