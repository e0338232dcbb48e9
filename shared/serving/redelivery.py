"""Which tick events ``predict`` has applied, and what each produced: redelivery without double-apply.

The Functions host redelivers a batch after a failed invocation (retry policy) and after a worker
dies before its checkpoint, so every event is named by ``(partition, sequence number)``
(:data:`EventId`) and :class:`AppliedEvents` remembers, per partition, the highest sequence
number applied and the outputs (:class:`Applied`) of the newest events, which a redelivery
re-emits instead of applying the event again. The window of a partition travels with its state
(:mod:`shared.serving.partitions`), so a worker that takes the partition over re-emits them too.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

EventId = tuple[str, int]
"""Where an event sits in its hub: ``(partition, sequence number)``; sequence numbers grow within a partition."""

REPLAY_WINDOW = 4096
"""Default number of applied events remembered per partition; at least ``maxEventBatchSize`` of
``host.json`` (500), since a retry redelivers the whole batch."""


@dataclass(slots=True)
class Applied:
    """What applying one event produced: encoded outputs (bars, predictions), its dead letter,
    and the price update it carried (made at the end of its batch), all as sent."""

    outputs: list[bytes] = field(default_factory=list)
    deadletter: bytes | None = None
    price: bytes | None = None


class AppliedEvents:
    """Which events the engine has applied, per partition, with the results of the newest ``window``.

    Parameters
    ----------
    window : int
        Results kept per partition (>= 1); older applied events are only known by the
        partition's highest applied sequence number.

    Examples
    --------
    >>> seen = AppliedEvents(window=2)
    >>> for seq in (1, 2, 3):
    ...     seen.remember(("p0", seq), Applied())
    >>> seen.lookup(("p0", 4)) is None, seen.lookup(("p0", 3)) is not None, seen.lookup(("p0", 1)) is EVICTED
    (True, True, True)
    """

    def __init__(self, window: int = REPLAY_WINDOW) -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.window = window
        self._results: dict[str, OrderedDict[int, Applied]] = {}
        self._highest: dict[str, int] = {}

    def lookup(self, event: EventId) -> Applied | object | None:
        """``None`` if ``event`` is new, its :class:`Applied` if remembered, else :data:`EVICTED`."""
        partition, seq = event
        highest = self._highest.get(partition)
        if highest is None or seq > highest:
            return None
        return self._results[partition].get(seq, EVICTED)

    def remember(self, event: EventId, applied: Applied) -> None:
        """Record that ``event`` was applied with result ``applied``."""
        partition, seq = event
        results = self._results.setdefault(partition, OrderedDict())
        results[seq] = applied
        if len(results) > self.window:
            results.popitem(last=False)
        self._highest[partition] = max(seq, self._highest.get(partition, seq))

    def highest(self, partition: str) -> int | None:
        """The highest sequence number applied on ``partition``, or ``None``."""
        return self._highest.get(partition)

    def since(self, partition: str, first_seq: int) -> list[tuple[int, Applied]]:
        """``(seq, applied)`` of the remembered events of ``partition`` with ``seq >= first_seq``, in order."""
        return [(seq, a) for seq, a in self._results.get(partition, {}).items() if seq >= first_seq]

    def forget(self, partition: str) -> None:
        """Drop everything known of ``partition`` (its state moved to another worker)."""
        self._results.pop(partition, None)
        self._highest.pop(partition, None)

    def restore(self, partition: str, highest: int, results: list[tuple[int, Applied]]) -> None:
        """Replace what is known of ``partition``: applied up to ``highest``, with the outputs ``results``."""
        self._results[partition] = OrderedDict(results[-self.window:])
        self._highest[partition] = highest


EVICTED = object()
""":meth:`AppliedEvents.lookup` of an event applied long ago, whose result is no longer kept."""
