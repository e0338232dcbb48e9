"""The breaker behind "outages degrade, never stall" (no servers; the real outages: tests/integration/test_outages.py)."""

from __future__ import annotations

from shared.lifecycle.champions import Backoff
from shared.serving.wiring import HistoryWarmup


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_backoff_doubles_up_to_its_cap_and_a_success_closes_it() -> None:
    clock = Clock()
    breaker = Backoff(first_seconds=1, max_seconds=5, clock=clock)
    assert breaker.ready()
    assert [breaker.failed() for _ in range(5)] == [1, 2, 4, 5, 5]
    clock.now = 4.9
    assert not breaker.ready() and breaker.skipped == 1
    clock.now = 5.0
    assert breaker.ready()  # the probe
    breaker.succeeded()
    assert breaker.failed() == 1  # back to the first period


def test_history_warmup_tries_once_per_back_off_and_recovers() -> None:
    clock = Clock()
    attempts: list[float] = []
    up = {"yes": False}

    class Store:
        def latest_bars(self, exchange: str, symbol: str, n: int) -> list[str]:
            return [f"{symbol}-{i}" for i in range(n)]

        def close(self) -> None:
            pass

    def open_store() -> Store:
        attempts.append(clock.now)
        if not up["yes"]:
            raise ConnectionRefusedError("database down")
        return Store()

    warm = HistoryWarmup(open_store, 2, Backoff(clock=clock))
    assert warm("x", "A") == [] and warm("x", "B") == []  # B is skipped without a connection attempt
    assert attempts == [0.0] and warm.skipped == 2
    up["yes"] = True
    clock.now = 1.0
    assert warm("x", "C") == ["C-0", "C-1"]
    assert attempts == [0.0, 1.0]
    warm.close()
