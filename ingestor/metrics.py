"""Counters and per-connection gauges of the live ingestor.

One :class:`Metrics` object is shared by the connections, the publish pump and the
health server (all on one asyncio loop, so plain integers suffice). The counters are
logged periodically as one JSON line, served by ``/healthz``, and printed as JSON when
the ingestor exits.

Counters
--------
messages            websocket messages received (any kind)
received            valid trades parsed from them (duplicates included)
duplicates          trades whose trade id was not above the last one seen for the symbol
                    (re-sent or replayed by the exchange): not published again
published           ticks the publisher confirmed (broker ack / Event Hubs send_batch done)
dropped             ticks dropped because the publish buffer stayed full (back-pressure exhausted)
undelivered         ticks still unpublished when the process stopped (buffered or failed)
malformed           messages that were not JSON objects or held an invalid trade
unknown             JSON messages of no known kind
exchange_errors     error replies of an exchange (e.g. a refused subscription)
deadlettered        dead letters (malformed / unknown / error messages) published
deadletters_dropped dead letters lost (their own buffer full, or publish failed at exit)
control, ignored    subscription replies / heartbeats, and known non-trade messages
connects            websocket connections opened (the first of each source included)
connect_failures    connection attempts that failed (refused, DNS, no network, handshake timeout,
                    a 429 / 5xx handshake); each is logged with its reason and retried after a backoff
reconnects          connections opened again after a loss
disconnects         connections lost (closed by the server, network error, stall)
heartbeat_timeouts  connections given up because no message arrived for INGESTOR_HEARTBEAT_SECONDS
ping_timeouts       connections closed because a keepalive ping was not answered in time
gaps                jumps in a symbol's trade ids (trades missed, e.g. while disconnected)
gap_trades          trade ids skipped by those jumps
publish_failures    publish attempts that failed and were retried
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

__all__ = ["COUNTERS", "ConnectionStats", "Metrics"]

COUNTERS = (
    "messages",
    "received",
    "duplicates",
    "published",
    "dropped",
    "undelivered",
    "malformed",
    "unknown",
    "exchange_errors",
    "deadlettered",
    "deadletters_dropped",
    "control",
    "ignored",
    "connects",
    "connect_failures",
    "reconnects",
    "disconnects",
    "heartbeat_timeouts",
    "ping_timeouts",
    "gaps",
    "gap_trades",
    "publish_failures",
)


@dataclass
class ConnectionStats:
    """Gauges of one websocket connection (one subscription group).

    Times: ``*_monotonic`` are :func:`time.monotonic` seconds; skews are ms
    (local receive time minus exchange trade time: clock offset plus network latency).
    ``connect_failures`` counts failed connection attempts, ``failures_in_a_row`` those since
    the last successful one; ``last_error`` is the newest reason the connection failed or was
    lost, and ``retry_in_s`` / ``retry_at_monotonic`` the delay before the next attempt.
    """

    name: str
    source: str
    symbols: tuple[str, ...]
    connected: bool = False
    connects: int = 0
    connected_monotonic: float | None = None
    last_message_monotonic: float | None = None
    skew_ms_last: int | None = None
    skew_ms_min: int | None = None
    skew_ms_max: int | None = None
    last_trade_ids: dict[str, int] = field(default_factory=dict)
    connect_failures: int = 0
    failures_in_a_row: int = 0
    last_error: str | None = None
    retry_in_s: float | None = None
    retry_at_monotonic: float | None = None

    def observe_skew(self, skew_ms: int) -> None:
        """Record one trade's receive-minus-trade time, ms."""
        self.skew_ms_last = skew_ms
        self.skew_ms_min = skew_ms if self.skew_ms_min is None else min(self.skew_ms_min, skew_ms)
        self.skew_ms_max = skew_ms if self.skew_ms_max is None else max(self.skew_ms_max, skew_ms)

    def message_age(self, now: float | None = None) -> float | None:
        """Seconds since the newest message of the current connection (None: none yet / not connected)."""
        if not self.connected or self.last_message_monotonic is None:
            return None
        return (time.monotonic() if now is None else now) - self.last_message_monotonic

    def as_dict(self, now: float | None = None) -> dict[str, Any]:
        """JSON-ready view (ages rounded to ms)."""
        age = self.message_age(now)
        return {
            "source": self.source,
            "symbols": list(self.symbols),
            "connected": self.connected,
            "connects": self.connects,
            "last_message_age_s": None if age is None else round(age, 3),
            "clock_skew_ms": {"last": self.skew_ms_last, "min": self.skew_ms_min, "max": self.skew_ms_max},
            "last_trade_ids": dict(self.last_trade_ids),
            "connect_failures": self.connect_failures,
            "failures_in_a_row": self.failures_in_a_row,
            "last_error": self.last_error,
        }

    def not_ready_because(self, stale_seconds: float, now: float | None = None) -> str | None:
        """Why this connection is not ready (``None``: it is): not connected and why, no message
        yet, or its newest message older than ``stale_seconds``.

        >>> s = ConnectionStats("binance:BTCUSDT", "binance", ("BTCUSDT",))
        >>> s.not_ready_because(30.0)
        'not connected yet (connecting)'
        >>> s.failures_in_a_row, s.last_error = 3, "ConnectionRefusedError: [Errno 111] refused"
        >>> s.retry_at_monotonic = 12.0
        >>> s.not_ready_because(30.0, now=10.0)
        'not connected: ConnectionRefusedError: [Errno 111] refused (3 failed attempts in a row; next in 2.0 s)'
        >>> s.connected, s.last_message_monotonic = True, 0.0
        >>> s.not_ready_because(30.0, now=45.0)
        'no message for 45.0 s (limit INGESTOR_STALE_SECONDS=30)'
        """
        now = time.monotonic() if now is None else now
        if not self.connected:
            if self.last_error is None:
                return "not connected yet (connecting)"
            attempts = ""
            if self.failures_in_a_row:
                plural = "s" if self.failures_in_a_row != 1 else ""
                attempts = f" ({self.failures_in_a_row} failed attempt{plural} in a row"
                if self.retry_at_monotonic is not None:
                    attempts += f"; next in {max(0.0, self.retry_at_monotonic - now):.1f} s"
                attempts += ")"
            return f"not connected: {self.last_error}{attempts}"
        age = self.message_age(now)
        if age is None:
            return "connected, no message received yet"
        if age > stale_seconds:
            return f"no message for {age:.1f} s (limit INGESTOR_STALE_SECONDS={stale_seconds:g})"
        return None


class Metrics:
    """Counters (:data:`COUNTERS`) plus :class:`ConnectionStats` per connection.

    Examples
    --------
    >>> m = Metrics()
    >>> m.inc("received", 3); m.inc("published", 2)
    >>> m.counters["received"], m.counters["published"], m.counters["dropped"]
    (3, 2, 0)
    """

    def __init__(self) -> None:
        self.counters: dict[str, int] = dict.fromkeys(COUNTERS, 0)
        self.connections: dict[str, ConnectionStats] = {}
        self.started_monotonic = time.monotonic()
        self.last_publish_monotonic: float | None = None

    def inc(self, name: str, n: int = 1) -> None:
        """Add ``n`` to counter ``name`` (a KeyError for names not in :data:`COUNTERS`)."""
        self.counters[name] += n

    def connection(self, name: str, source: str, symbols: tuple[str, ...]) -> ConnectionStats:
        """The stats object of connection ``name``, created on first use."""
        stats = self.connections.get(name)
        if stats is None:
            stats = self.connections[name] = ConnectionStats(name, source, symbols)
        return stats

    def snapshot(self) -> dict[str, Any]:
        """Counters and connection gauges as one JSON-ready dict."""
        now = time.monotonic()
        return {
            "counters": dict(self.counters),
            "connections": {n: c.as_dict(now) for n, c in self.connections.items()},
            "uptime_s": round(now - self.started_monotonic, 3),
        }
