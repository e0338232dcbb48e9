"""Run one :class:`~ingestor.sources.base.Source`: connect, subscribe, read, watch, reconnect.

Robustness, in the order things go wrong:

* **connect failures** (refused, DNS, no network, handshake timeout, a 429 / 5xx
  handshake) are logged at WARNING with their reason, the attempt number and the delay
  before the next one, counted (``connect_failures``), kept on the connection's gauges
  (``last_error``, for ``/readyz``), and retried after a delay of the shared
  :class:`~ingestor.backoff.Backoff` (capped exponential, jittered). Each attempt is one
  ``await websockets.asyncio.client.connect(...)``: the retry loop is this module's, not
  websockets' own (whose log lines go to the muted ``websockets`` logger);
* **dropped connections** (closed by the exchange, network errors) are reopened after
  a delay from the same backoff; the backoff restarts once a session has delivered a
  trade, so a flapping endpoint backs off while a healthy one reconnects fast;
* **dead TCP paths** are found by websockets' keepalive pings (``ping_interval`` /
  ``ping_timeout``; a missing pong closes the connection with code 1011);
* **stalls** (the exchange still answers pings but sends nothing) are found by the
  heartbeat: no message for ``heartbeat_seconds`` closes the connection;
* every (re)connect sends the source's subscribe messages again (resubscribe);
* per symbol, trade ids not above the last one seen are **duplicates** (not published
  again) and jumps are **gaps** (counted with the number of missed ids);
* each trade's receive time minus its exchange time is recorded as **clock skew**;
* malformed, unknown and error messages are counted and handed to the dead-letter
  sink with their connection position; nothing in a message ends the connection.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Protocol

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from ingestor.backoff import Backoff
from ingestor.metrics import Metrics
from ingestor.sources.base import Source
from shared.contracts.events import DeadLetter, MalformedEventError, Tick

log = logging.getLogger(__name__)

__all__ = ["Connection", "TickSink", "describe_error"]

_PAYLOAD_LIMIT = 8_192  # characters of a set-aside message kept in its dead letter
_LOG_FIRST = 20  # set-aside messages logged one by one per connection, then only counted


class TickSink(Protocol):
    """Where a connection hands its output (the publish buffers)."""

    async def put(self, tick: Tick) -> bool: ...

    def deadletter(self, letter: DeadLetter) -> None: ...


def _retryable(exc: Exception) -> Exception | None:
    """``None`` for a connect failure worth retrying (network errors, 5xx / 429 handshakes), else the
    exception to raise (websockets' own ``process_exception`` decides the rest)."""
    if isinstance(exc, (OSError, TimeoutError, asyncio.TimeoutError)):
        return None
    if isinstance(exc, InvalidStatus) and exc.response.status_code in (429, 500, 502, 503, 504):
        return None
    from websockets.client import process_exception

    return process_exception(exc)


def describe_error(exc: BaseException) -> str:
    """A one-line reason for a failed connect, e.g. ``ConnectionRefusedError: [Errno 111] Connect call failed``.

    >>> describe_error(ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 9)"))
    "ConnectionRefusedError: [Errno 111] Connect call failed ('127.0.0.1', 9)"
    >>> describe_error(TimeoutError())
    'TimeoutError: timed out'
    """
    text = str(exc).strip()
    if not text:
        text = "timed out" if isinstance(exc, TimeoutError) else "no detail"
    return f"{type(exc).__name__}: {text}"[:300]


class _Stop(Exception):
    """Raised inside a session when the connection is asked to stop."""


class Connection:
    """One websocket connection of one source, kept alive until :meth:`stop`.

    Parameters
    ----------
    source : Source
        The exchange protocol and symbols.
    sink : TickSink
        Receives ticks (``await sink.put``) and dead letters.
    metrics : Metrics
        Shared counters; this connection's gauges are ``metrics.connections[source.label]``.
    heartbeat_seconds : float, default 30
        Silence after which the connection counts as stalled and is reopened
        (``INGESTOR_HEARTBEAT_SECONDS``).
    ping_interval, ping_timeout : float, default 20
        websockets keepalive (``INGESTOR_PING_INTERVAL_SECONDS`` / ``..._TIMEOUT_SECONDS``;
        20 s is both the websockets default and Binance spot's own ping interval).
    backoff : Backoff, optional
        Reconnect delays; default ``Backoff(0.5, 30)``.
    open_timeout : float, default 10
        Limit of the opening handshake, seconds.
    close_timeout : float, default 2
        How long a closing handshake may take before the TCP connection is dropped.
    now_ms : callable, optional
        Wall clock for ``ingest_time_ms`` (ms since epoch UTC).
    """

    def __init__(
        self,
        source: Source,
        sink: TickSink,
        metrics: Metrics,
        *,
        heartbeat_seconds: float = 30.0,
        ping_interval: float = 20.0,
        ping_timeout: float = 20.0,
        backoff: Backoff | None = None,
        open_timeout: float = 10.0,
        close_timeout: float = 2.0,
        now_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    ) -> None:
        self.source = source
        self.sink = sink
        self.metrics = metrics
        self.heartbeat_seconds = heartbeat_seconds
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.backoff = backoff or Backoff(0.5, 30.0)
        self.open_timeout = open_timeout
        self.close_timeout = close_timeout
        self.now_ms = now_ms
        self.stats = metrics.connection(source.label, source.name, source.symbols)
        self.sessions = 0
        self._stopping = asyncio.Event()
        self._ws: ClientConnection | None = None
        self._set_aside = 0

    # ------------------------------------------------------------------ lifecycle
    def stop(self) -> None:
        """Ask the connection to finish: the current message is handled, then it closes."""
        self._stopping.set()
        ws = self._ws
        if ws is not None:
            asyncio.get_running_loop().create_task(ws.close(1001, "ingestor shutting down"))

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    async def run(self) -> None:
        """Connect and keep reading until :meth:`stop`; never returns early for network trouble.

        Raises
        ------
        Exception
            Only what cannot succeed by retrying (e.g. an invalid URI, or a handshake
            refused with a 4xx status other than 429).
        """
        fields = {"connection": self.source.label, "url": self.source.url}
        while not self.stopping:
            ws = await self._open(fields)
            if ws is None:  # the attempt failed: wait, or stop when asked to
                if await self._wait(self.stats.retry_in_s or 0.0):
                    break
                continue
            self._ws = ws
            self.sessions += 1
            self.stats.connected = True
            self.stats.connects += 1
            self.stats.failures_in_a_row = 0
            self.stats.connected_monotonic = time.monotonic()
            self.stats.last_message_monotonic = None
            self.metrics.inc("connects")
            if self.sessions > 1:
                self.metrics.inc("reconnects")
            log.info("connected", extra={"fields": {**fields, "session": self.sessions}})
            reason = await self._run_session(ws, fields)
            if self.stopping:
                break
            self.metrics.inc("disconnects")
            delay = self.backoff.next_delay()
            log.info(
                "reconnecting", extra={"fields": {**fields, "delay_s": round(delay, 3), "after": reason}}
            )
            if await self._wait(delay):
                break
        self.stats.connected = False

    async def _open(self, fields: dict) -> ClientConnection | None:
        """One connection attempt: the connection, or ``None`` after a retryable failure (logged, counted).

        Raises
        ------
        Exception
            A failure that retrying cannot fix (see :func:`_retryable`).
        """
        try:
            return await connect(
                self.source.url,
                ping_interval=self.ping_interval,
                ping_timeout=self.ping_timeout,
                open_timeout=self.open_timeout,
                close_timeout=self.close_timeout,
                max_size=2**22,
                max_queue=64,
                user_agent_header="tickcast-ingestor",
            )
        except Exception as exc:
            fatal = _retryable(exc)
            if fatal is not None:
                self.stats.last_error = f"cannot connect: {describe_error(exc)}"
                log.error("connect failed for good", extra={"fields": {**fields, "error": describe_error(exc)}})
                raise fatal from (None if fatal is exc else exc)
            reason = describe_error(exc)
            delay = self.backoff.next_delay()
            stats = self.stats
            stats.connect_failures += 1
            stats.failures_in_a_row += 1
            stats.last_error = reason
            stats.retry_in_s = delay
            stats.retry_at_monotonic = time.monotonic() + delay
            self.metrics.inc("connect_failures")
            log.warning(
                "connect failed: %s; attempt %d, retrying in %.1f s",
                reason,
                stats.failures_in_a_row,
                delay,
                extra={"fields": {**fields, "error": reason, "attempt": stats.failures_in_a_row,
                                  "retry_in_s": round(delay, 3)}},
            )
            return None

    async def _run_session(self, ws: ClientConnection, fields: dict) -> str:
        """Read ``ws`` until it ends; returns why it ended (``stopping``, ``heartbeat``, ``closed``, ...)."""
        reason = "closed"
        try:
            await self._session(ws)
        except _Stop:
            reason = "stopping"
        except TimeoutError:
            reason = "heartbeat"
            self.metrics.inc("heartbeat_timeouts")
            self.stats.last_error = f"no message for {self.heartbeat_seconds:g} s (stalled)"
            log.warning(
                "no message for %.1f s: stalled, reconnecting",
                self.heartbeat_seconds,
                extra={"fields": {**fields, "session": self.sessions}},
            )
        except ConnectionClosed as exc:
            if self.stopping:
                return "stopping"
            if exc.sent is not None and exc.sent.code == 1011 and "ping" in exc.sent.reason:
                reason = "ping_timeout"
                self.metrics.inc("ping_timeouts")
            rcvd = exc.rcvd
            self.stats.last_error = f"connection lost ({reason}" + (
                f", close code {rcvd.code} {rcvd.reason!r})" if rcvd is not None else ")"
            )
            log.warning(
                "connection lost",
                extra={
                    "fields": {
                        **fields,
                        "session": self.sessions,
                        "reason": reason,
                        "close_code": rcvd.code if rcvd is not None else None,
                        "close_reason": rcvd.reason if rcvd is not None else None,
                    }
                },
            )
        finally:
            self._ws = None
            self.stats.connected = False
            await ws.close()  # no-op when already closed; bounded by close_timeout
        return reason

    async def _wait(self, seconds: float) -> bool:
        """Sleep ``seconds`` unless stopped first; True when stopped."""
        try:
            async with asyncio.timeout(seconds):
                await self._stopping.wait()
            return True
        except TimeoutError:
            return False

    # ------------------------------------------------------------------ one session
    async def _session(self, ws: ClientConnection) -> None:
        for message in self.source.subscribe_messages():
            await ws.send(message)
        got_trade = False
        while True:
            if self.stopping:
                raise _Stop
            async with asyncio.timeout(self.heartbeat_seconds):
                message = await ws.recv()
            ingest_ms = self.now_ms()
            self.stats.last_message_monotonic = time.monotonic()
            if await self._handle(message, ingest_ms) and not got_trade:
                got_trade = True
                self.backoff.reset()  # the subscription works: the next drop starts backing off afresh

    async def _handle(self, message: str | bytes, ingest_ms: int) -> bool:
        """Handle one message; returns True if it carried at least one trade."""
        metrics = self.metrics
        metrics.inc("messages")
        try:
            parsed = self.source.parse(message, ingest_ms)
        except MalformedEventError as exc:
            metrics.inc("malformed")
            self._set_aside_message(message, str(exc))
            return False
        except Exception as exc:  # a parser bug must not end the connection
            metrics.inc("malformed")
            log.exception("parser failed", extra={"fields": {"connection": self.source.label}})
            self._set_aside_message(message, f"parser error: {type(exc).__name__}: {exc}")
            return False
        kind = parsed.kind
        if kind != "trades":
            if kind == "control":
                metrics.inc("control")
            elif kind == "ignored":
                metrics.inc("ignored")
            elif kind == "error":
                metrics.inc("exchange_errors")
                log.error(
                    "exchange error: %s", parsed.detail, extra={"fields": {"connection": self.source.label}}
                )
                self._set_aside_message(message, f"exchange error: {parsed.detail}")
            else:
                metrics.inc("unknown")
                self._set_aside_message(message, f"unknown message: {parsed.detail}")
            return False
        if parsed.errors:
            metrics.inc("malformed")
            self._set_aside_message(message, "; ".join(parsed.errors)[:1000])
        stats = self.stats
        last_ids = stats.last_trade_ids
        for tick in parsed.ticks:
            metrics.inc("received")
            stats.observe_skew(ingest_ms - tick.event_time_ms)
            trade_id = tick.trade_id
            if trade_id is not None:
                last = last_ids.get(tick.symbol)
                if last is not None:
                    if trade_id <= last:
                        metrics.inc("duplicates")
                        continue
                    if trade_id > last + 1:
                        missed = trade_id - last - 1
                        metrics.inc("gaps")
                        metrics.inc("gap_trades", missed)
                        log.warning(
                            "trade id gap",
                            extra={
                                "fields": {
                                    "connection": self.source.label,
                                    "symbol": tick.symbol,
                                    "after": last,
                                    "next": trade_id,
                                    "missed": missed,
                                }
                            },
                        )
                last_ids[tick.symbol] = trade_id
            await self.sink.put(tick)
        return True

    def _set_aside_message(self, message: str | bytes, reason: str) -> None:
        self._set_aside += 1
        text = message.decode("utf-8", "replace") if isinstance(message, (bytes, bytearray)) else message
        position = f"session {self.sessions} message {self.metrics.counters['messages']}"
        if self._set_aside <= _LOG_FIRST:
            log.warning(
                "message set aside",
                extra={
                    "fields": {"connection": self.source.label, "position": position, "reason": reason[:300]}
                },
            )
        self.sink.deadletter(
            DeadLetter(
                source=f"ws:{self.source.label}",
                position=position,
                reason=reason,
                payload=text[:_PAYLOAD_LIMIT] or "(empty)",
            )
        )
