"""Replay without a broker: pacing, merging, stop and limit; the replay CLI's usage errors; a
Kafka publisher whose broker is unreachable (nothing listens on its port, no server is started).

The helpers ``make_tick`` and ``_cli`` are shared with ``tests/integration/test_kafka.py``.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from ingestor.publisher import KafkaPublisher
from ingestor.replay import ReplaySource, merged_records, replay
from shared.contracts.events import DeadLetter, Tick
from tests.data_files import BTC_SPOT_CSV, ETH_SPOT_CSV, KRAKEN_CSV, data_file

REPO = Path(__file__).resolve().parents[2]


class ListPublisher:
    """In-memory publisher for replay tests that do not need a broker."""

    def __init__(self) -> None:
        self.ticks: list[Tick] = []
        self.letters: list[DeadLetter] = []
        self.published = self.delivered = self.failed = 0

    def publish(self, tick: Tick) -> None:
        self.ticks.append(tick)
        self.published += 1
        self.delivered += 1

    def publish_deadletter(self, letter: DeadLetter) -> None:
        self.letters.append(letter)

    def poll(self, timeout: float = 0.0) -> int:
        time.sleep(timeout)
        return 0

    def flush(self, timeout: float = 30.0) -> int:
        return 0

    def close(self, timeout: float = 30.0) -> int:
        return 0


def test_replay_pacing_is_proportional_to_recorded_time():
    """Deterministic pacing check with a fake clock: waits add up to span / speed."""
    path = data_file(KRAKEN_CSV)
    clock = [0.0]
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        clock[0] += seconds

    source = ReplaySource(path, speed=60, sleep=sleep, monotonic=lambda: clock[0], now_ms=lambda: 42)
    records = list(source)
    ticks = [r.tick for r in records if r.tick]
    span_s = (ticks[-1].event_time_ms - ticks[0].event_time_ms) / 1000
    assert clock[0] == pytest.approx(span_s / 60, abs=0.002)
    assert all(w > 0 for w in waits) and 0 < len(waits) < 2_672
    assert {t.ingest_time_ms for t in ticks} == {42}
    assert source.stats.published == 2_672


def test_replay_merges_files_by_exchange_time():
    btc, eth = data_file(BTC_SPOT_CSV), data_file(ETH_SPOT_CSV)
    publisher = ListPublisher()
    stats = replay([btc, eth], publisher, speed=0)
    assert stats.published == 19_904 + 14_515 and stats.undelivered == 0
    times = [t.event_time_ms for t in publisher.ticks]
    assert times == sorted(times)
    assert {t.symbol for t in publisher.ticks[:50]} == {"BTCUSDT", "ETHUSDT"}
    assert len(list(merged_records([btc, eth]))) == 19_904 + 14_515


def test_replay_stop_event_and_limit():
    import threading

    path = data_file(BTC_SPOT_CSV)
    assert replay(path, ListPublisher(), speed=0, limit=100).published == 100
    stop = threading.Event()
    stop.set()
    stats = replay(path, ListPublisher(), speed=0, stop=stop)
    assert stats.interrupted and stats.published == 0


def test_cli_usage_errors():
    proc = _cli("/nonexistent/file.csv", "--bootstrap-servers", "127.0.0.1:1")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "nonexistent" in err


def test_publisher_counts_failures_when_broker_is_unreachable():
    publisher = KafkaPublisher("127.0.0.1:1", "nowhere", config={"message.timeout.ms": 500})
    publisher.publish(make_tick(1))
    assert publisher.close(timeout=5) == 1
    assert publisher.failed == 1 and publisher.delivered == 0
    with pytest.raises(RuntimeError, match="closed"):
        publisher.publish(make_tick(2))


def make_tick(i: int, symbol: str = "BTCUSDT") -> Tick:
    return Tick("binance", symbol, i, 60_000.0 + i / 100, 0.001 * (i % 7), "buy" if i % 2 else "sell",
                1_723_161_255_000 + i, 1_723_161_256_000 + i)


def _cli(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "ingestor", "--log-level", "WARNING", "replay", *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
