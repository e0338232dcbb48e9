"""What a function invocation hands to ``shared`` and gets back: raw events in, encoded events out.

A trigger delivers a batch of :class:`RawEvent` (body bytes and a position that
says where the event came from, for logs and dead letters). A handler returns a
:class:`BatchResult`: the encoded events to send on, the dead letters it set
aside, and counters. Nothing here knows about Azure Functions or Kafka.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from shared.contracts.events import DeadLetter, encode

log = logging.getLogger(__name__)


class RawEvent:
    """One event as received: ``body`` (UTF-8 JSON bytes) and ``position`` (e.g. ``ticks/3@1042``).

    ``position`` may be given as a callable of no arguments: it is then formatted the first time it
    is read (a dead letter or a log line), so that a batch of valid events formats none.

    Examples
    --------
    >>> RawEvent(b"{}", lambda: "ticks[0]").position
    'ticks[0]'
    """

    __slots__ = ("body", "_position")

    def __init__(self, body: bytes, position: str | Callable[[], str]) -> None:
        self.body = body
        self._position = position

    @property
    def position(self) -> str:
        """Where the event came from (hub, partition, sequence number, offset, or a line)."""
        position = self._position
        if not isinstance(position, str):
            position = self._position = position()
        return position

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RawEvent):
            return NotImplemented
        return (self.body, self.position) == (other.body, other.position)

    def __hash__(self) -> int:
        return hash((self.body, self.position))

    def __repr__(self) -> str:
        return f"RawEvent(body={self.body!r}, position={self.position!r})"


@dataclass
class BatchResult:
    """Outputs of one batch: ``outputs`` and ``deadletters`` are encoded JSON events (bytes).

    ``counts`` holds named counters, e.g. ``malformed``, ``bars``, ``predictions``.
    ``latest_prices`` maps ``(exchange, symbol)`` to the newest accepted trade of the
    batch: ``(price in quote currency, exchange event time in ms since epoch UTC)``.
    """

    outputs: list[bytes] = field(default_factory=list)
    deadletters: list[bytes] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)
    latest_prices: dict[tuple[str, str], tuple[float, int]] = field(default_factory=dict)

    def note_price(self, exchange: str, symbol: str, price: float, event_time_ms: int) -> None:
        """Keep ``price`` as the symbol's latest unless a trade with a later event time was noted."""
        known = self.latest_prices.get((exchange, symbol))
        if known is None or event_time_ms >= known[1]:
            self.latest_prices[(exchange, symbol)] = (price, event_time_ms)

    def set_aside(self, source: str, raw: RawEvent, reason: str, counter: str = "malformed") -> None:
        """Count ``raw`` under ``counter``, log it with its position, and add a dead letter for it."""
        self.counts[counter] += 1
        log.warning("set aside %s event at %s: %s", source, raw.position, reason)
        body = raw.body
        payload = body if isinstance(body, str) else bytes(body).decode("utf-8", "replace")  # str: a text trigger
        self.deadletters.append(encode(DeadLetter(source, raw.position, reason, payload)))
