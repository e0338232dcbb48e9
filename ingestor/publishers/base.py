"""The interface the live ingestor publishes through (Event Hubs or Kafka, chosen by settings).

A publisher sends a batch and reports, per batch, how many events were confirmed and
which were not (those are put back into the buffer and retried), so the pump never
counts an event as published before the broker / Event Hubs acknowledged it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from shared.contracts.events import DeadLetter, Tick

__all__ = ["PublishResult", "TickPublisher"]

E = TypeVar("E")


@dataclass
class PublishResult(Generic[E]):
    """Outcome of one publish call.

    Attributes
    ----------
    delivered : int
        Events acknowledged.
    failed : list
        Events not acknowledged (in their original order); the caller may retry them.
    rejected : list of (event, reason)
        Events that can never be sent (e.g. larger than the hub's message limit):
        not retried, set aside by the caller.
    error : str or None
        The last error, for logs.
    """

    delivered: int = 0
    failed: list[E] = field(default_factory=list)
    rejected: list[tuple[E, str]] = field(default_factory=list)
    error: str | None = None


class TickPublisher(Protocol):
    """An async publisher of ticks (keyed by symbol) and dead letters (keyed by source)."""

    name: str

    async def start(self) -> None:
        """Open clients / connections. Raises on a configuration that cannot work."""

    async def publish(self, ticks: Sequence[Tick]) -> PublishResult[Tick]:
        """Send ``ticks``; never raises for delivery failures (they are in the result)."""

    async def publish_deadletters(self, letters: Sequence[DeadLetter]) -> PublishResult[DeadLetter]:
        """Send dead letters to the dead-letter hub / topic."""

    async def close(self, timeout: float = 10.0) -> None:
        """Flush (at most ``timeout`` seconds) and release the clients."""
