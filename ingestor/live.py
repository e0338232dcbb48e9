"""The live ingestor: exchange websockets -> bounded buffer -> Event Hubs / Kafka, with /healthz.

:func:`run_live` wires the parts together and runs until SIGTERM / SIGINT (or a given
``stop`` event), then shuts down in order:

1. every connection stops reading (the message in hand is finished);
2. the tick buffer is closed and the pump publishes everything already received;
3. the publisher flushes and closes -- all within ``INGESTOR_SHUTDOWN_SECONDS``
   (Container Apps sends SIGKILL 30 s after SIGTERM by default);

and returns the final counters (``undelivered`` = ticks still unpublished at the end).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Callable
from typing import Any

from ingestor.backoff import Backoff
from ingestor.buffer import BoundedBuffer
from ingestor.config import IngestorConfig
from ingestor.health import HealthServer
from ingestor.metrics import Metrics
from ingestor.publishers import TickPublisher, make_publisher
from ingestor.pump import Pump
from ingestor.sources import make_source
from ingestor.sources.connection import Connection
from shared.contracts.events import DeadLetter, Tick

log = logging.getLogger(__name__)

__all__ = ["BufferSink", "Ingestor", "run_live"]

DEADLETTER_BUFFER = 10_000
"""Bound of the dead-letter buffer (malformed input must not crowd out valid ticks)."""


class BufferSink:
    """What the connections write to: the tick buffer (with back-pressure) and the dead-letter buffer."""

    def __init__(
        self, ticks: BoundedBuffer[Tick], letters: BoundedBuffer[DeadLetter], metrics: Metrics
    ) -> None:
        self.ticks = ticks
        self.letters = letters
        self.metrics = metrics

    async def put(self, tick: Tick) -> bool:
        """Buffer a tick (waiting for room up to the buffer's wait); count it as dropped if refused."""
        if not self.ticks.closed and await self.ticks.put(tick):
            return True
        self.metrics.inc("dropped")
        dropped = self.metrics.counters["dropped"]
        if dropped == 1 or dropped % 1000 == 0:
            log.error(
                "publish buffer full: dropping ticks",
                extra={"fields": {"dropped": dropped, "capacity": self.ticks.capacity}},
            )
        return False

    def deadletter(self, letter: DeadLetter) -> None:
        """Buffer a dead letter without waiting; count it as dropped if there is no room."""
        if self.letters.closed or not self.letters.put_nowait(letter):
            self.metrics.inc("deadletters_dropped")


class Ingestor:
    """The assembled live ingestor (see the module docstring); use :func:`run_live` to run it.

    Parameters
    ----------
    config : IngestorConfig
        Settings (subscriptions, endpoints, timeouts, buffer bound, health port).
    publisher : TickPublisher, optional
        Default: :func:`ingestor.publishers.make_publisher` for ``config``.
    """

    def __init__(self, config: IngestorConfig, publisher: TickPublisher | None = None) -> None:
        self.config = config
        self.metrics = Metrics()
        self.publisher = publisher if publisher is not None else make_publisher(config)
        self.ticks: BoundedBuffer[Tick] = BoundedBuffer(config.buffer_events, config.buffer_wait_seconds)
        self.letters: BoundedBuffer[DeadLetter] = BoundedBuffer(DEADLETTER_BUFFER, 0)
        self.sink = BufferSink(self.ticks, self.letters, self.metrics)
        self.pump = Pump(self.ticks, self.letters, self.publisher, self.metrics)
        self.connections = [
            Connection(
                make_source(sub, config.source_urls.get(sub.source)),
                self.sink,
                self.metrics,
                heartbeat_seconds=config.heartbeat_seconds,
                ping_interval=config.ping_interval_seconds,
                ping_timeout=config.ping_timeout_seconds,
                backoff=Backoff(config.backoff_initial_seconds, config.backoff_max_seconds),
                close_timeout=min(2.0, config.ping_timeout_seconds),
            )
            for sub in config.subscriptions
        ]
        self.health = HealthServer(
            self.metrics,
            stale_seconds=config.stale_seconds,
            publish_lag=self.pump.lag_seconds,
            alive=self._alive,
            port=config.health_port,
        )
        self._tasks: dict[str, asyncio.Task[Any]] = {}
        self._stopping = False

    def _alive(self) -> tuple[bool, str]:
        for name, task in self._tasks.items():
            if task.done() and not self._stopping:
                exc = None if task.cancelled() else task.exception()
                return False, f"{name} ended: {exc!r}"
        return True, "ok"

    def _on_done(self, name: str) -> Callable[[asyncio.Task[Any]], None]:
        def done(task: asyncio.Task[Any]) -> None:
            if not task.cancelled() and task.exception() is not None:
                log.error("%s failed", name, exc_info=task.exception())

        return done

    async def _log_stats(self) -> None:
        every = self.config.stats_seconds
        while every > 0:
            await asyncio.sleep(every)
            log.info(
                "counters",
                extra={
                    "fields": {**self.metrics.counters, "publish_lag_s": round(self.pump.lag_seconds(), 3)}
                },
            )

    async def run(
        self, stop: asyncio.Event, started: Callable[[Ingestor], None] | None = None
    ) -> dict[str, Any]:
        """Run until ``stop`` is set, then shut down gracefully; returns the final snapshot.

        ``started(self)`` is called once the publisher, the health server and every task run.
        """
        await self.publisher.start()
        await self.health.start()
        self._tasks["pump"] = asyncio.create_task(self.pump.run(), name="pump")
        for conn in self.connections:
            self._tasks[conn.source.label] = asyncio.create_task(conn.run(), name=conn.source.label)
        stats_task = asyncio.create_task(self._log_stats(), name="stats")
        for name, task in self._tasks.items():
            task.add_done_callback(self._on_done(name))
        log.info(
            "ingestor started",
            extra={
                "fields": {
                    "publisher": self.publisher.name,
                    "subscriptions": [c.source.label for c in self.connections],
                    "health_port": self.health.port,
                }
            },
        )
        if started is not None:
            started(self)
        try:
            await stop.wait()
        finally:
            snapshot = await self._shutdown(stats_task)
        return snapshot

    async def _shutdown(self, stats_task: asyncio.Task[Any]) -> dict[str, Any]:
        self._stopping = True
        deadline = time.monotonic() + self.config.shutdown_seconds
        log.info("stopping: publishing what was received", extra={"fields": {"buffered": len(self.ticks)}})
        stats_task.cancel()
        conn_tasks = [t for n, t in self._tasks.items() if n != "pump"]
        for conn in self.connections:
            conn.stop()
        if conn_tasks:
            _, pending = await asyncio.wait(
                conn_tasks, timeout=max(0.1, min(5.0, deadline - time.monotonic()))
            )
            for task in pending:
                task.cancel()
        self.ticks.close()
        self.letters.close()
        pump_task = self._tasks["pump"]
        try:
            await asyncio.wait_for(asyncio.shield(pump_task), timeout=max(0.1, deadline - time.monotonic()))
        except (TimeoutError, Exception):
            if not pump_task.done():
                log.error("shutdown deadline reached with ticks still unpublished")
            pump_task.cancel()
        undelivered = len(self.ticks) + self.pump.inflight
        self.metrics.counters["undelivered"] = undelivered
        self.metrics.inc("deadletters_dropped", len(self.letters))
        try:
            await self.publisher.close(timeout=max(0.5, deadline - time.monotonic()))
        except Exception:
            log.exception("closing the publisher failed")
        await self.health.stop()
        snapshot = self.metrics.snapshot()
        log.info("stopped", extra={"fields": dict(self.metrics.counters)})
        return snapshot


async def run_live(
    config: IngestorConfig,
    *,
    publisher: TickPublisher | None = None,
    stop: asyncio.Event | None = None,
    handle_signals: bool = True,
    started: Callable[[Ingestor], None] | None = None,
) -> dict[str, Any]:
    """Run the live ingestor until SIGTERM / SIGINT or ``stop``; return the final snapshot.

    Parameters
    ----------
    config : IngestorConfig
        Complete settings (``config.check()`` must pass).
    publisher : TickPublisher, optional
        Use this instead of the one ``config`` names.
    stop : asyncio.Event, optional
        Set it to stop (tests); created when omitted.
    handle_signals : bool, default True
        Install SIGTERM / SIGINT handlers that set ``stop``.
    started : callable, optional
        Called with the :class:`Ingestor` once it is assembled (tests read its health port).

    Returns
    -------
    dict
        ``{"counters": {...}, "connections": {...}, "uptime_s": ...}``.

    Raises
    ------
    shared.settings.SettingsError
        Incomplete settings for the chosen publisher.
    """
    stop = stop or asyncio.Event()
    ingestor = Ingestor(config, publisher)
    loop = asyncio.get_running_loop()
    installed = []
    if handle_signals:
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, stop.set)
                installed.append(sig)
            except (NotImplementedError, RuntimeError):  # not the main thread
                pass
    try:
        return await ingestor.run(stop, started)
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
