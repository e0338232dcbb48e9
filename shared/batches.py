"""What a function invocation hands to ``shared`` and gets back: raw events in, encoded events out.

A trigger delivers a batch of :class:`RawEvent` (body bytes and a position that
says where the event came from, for logs and dead letters). A handler returns a
:class:`BatchResult`: the encoded events to send on, the dead letters it set
aside, and counters. Nothing here knows about Azure Functions or Kafka.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field

from shared.events import DeadLetter, encode

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RawEvent:
    """One event as received: ``body`` (UTF-8 JSON bytes) and ``position`` (e.g. ``ticks/3@1042``)."""

    body: bytes
    position: str


@dataclass
class BatchResult:
    """Outputs of one batch: ``outputs`` and ``deadletters`` are encoded JSON events (bytes).

    ``counts`` holds named counters, e.g. ``malformed``, ``bars``, ``predictions``.
    """

    outputs: list[bytes] = field(default_factory=list)
    deadletters: list[bytes] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)

    def set_aside(self, source: str, raw: RawEvent, reason: str, counter: str = "malformed") -> None:
        """Count ``raw`` under ``counter``, log it with its position, and add a dead letter for it."""
        self.counts[counter] += 1
        log.warning("set aside %s event at %s: %s", source, raw.position, reason)
        self.deadletters.append(
            encode(DeadLetter(source, raw.position, reason, raw.body.decode("utf-8", "replace")))
        )
