"""Which tick events ``predict`` has applied, and what each produced: redelivery without double-apply.

The Functions host redelivers a batch after a failed invocation (retry policy) and after a worker
dies before its checkpoint, so every event is named by ``(partition, sequence number)``
(:data:`EventId`) and :class:`AppliedEvents` remembers, per partition, the highest sequence
number applied and the outputs (:class:`Applied`) of the newest events, which a redelivery
re-emits instead of applying the event again. The window of a partition travels with its state
(:mod:`shared.serving.partitions`), so a worker that takes the partition over re-emits them too.
"""

from __future__ import annotations

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

    A partition's applied events are the consecutive sequence numbers up to its highest; results
    are kept for the newest ``window`` of them. Only results that carry something (outputs, a dead
    letter, a price update) are stored: most ticks produce nothing, and an event in the window
    without a stored result gets an empty :class:`Applied` back.

    Parameters
    ----------
    window : int
        Sequence numbers per partition whose results are known (>= 1); older applied events are
        only known by the partition's highest applied sequence number (:data:`EVICTED`).

    Raises
    ------
    ValueError
        ``window`` < 1.

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
        self._results: dict[str, dict[int, Applied]] = {}
        self._highest: dict[str, int] = {}
        self._low: dict[str, int] = {}

    def lookup(self, event: EventId) -> Applied | object | None:
        """``None`` if ``event`` is new, its :class:`Applied` if in the window, else :data:`EVICTED`."""
        partition, seq = event
        highest = self._highest.get(partition)
        if highest is None or seq > highest:
            return None
        if seq < self._low[partition]:
            return EVICTED
        found = self._results[partition].get(seq)
        return found if found is not None else Applied()

    def remember(self, event: EventId, applied: Applied) -> None:
        """Record that ``event`` was applied with result ``applied`` (one event of :meth:`remember_batch`)."""
        self.remember_batch(event[0], event[1], event[1], [(event[1], applied)])

    def remember_batch(self, partition: str, first_seq: int, last_seq: int,
                       results: list[tuple[int, Applied]]) -> None:
        """Record that the events ``first_seq..last_seq`` of ``partition`` were applied, with ``results``.

        Parameters
        ----------
        partition : the partition.
        first_seq, last_seq : the first and last sequence number applied (consecutive in between).
        results : ``(seq, applied)`` in order; entries that carry nothing need not be given.
        """
        highest = self._highest.get(partition)
        if highest is None or first_seq > highest + 1:  # new, or a gap: what came before is unknown
            self._results[partition] = {}
            self._low[partition] = first_seq
        stored = self._results[partition]
        for seq, applied in results:
            if applied.outputs or applied.deadletter is not None or applied.price is not None:
                stored[seq] = applied
        top = last_seq if highest is None else max(highest, last_seq)
        self._highest[partition] = top
        low = max(self._low[partition], top - self.window + 1)
        self._low[partition] = low
        while stored:
            oldest = next(iter(stored))
            if oldest >= low:
                break
            del stored[oldest]

    def highest(self, partition: str) -> int | None:
        """The highest sequence number applied on ``partition``, or ``None``."""
        return self._highest.get(partition)

    def since(self, partition: str, first_seq: int) -> list[tuple[int, Applied]]:
        """``(seq, applied)`` of the stored results of ``partition`` with ``seq >= first_seq``, in order."""
        return [(seq, a) for seq, a in self._results.get(partition, {}).items() if seq >= first_seq]

    def forget(self, partition: str) -> None:
        """Drop everything known of ``partition`` (its state moved to another worker)."""
        self._results.pop(partition, None)
        self._highest.pop(partition, None)
        self._low.pop(partition, None)

    def restore(self, partition: str, highest: int, results: list[tuple[int, Applied]],
                first_seq: int | None = None) -> None:
        """Replace what is known of ``partition``: applied up to ``highest``, with the results of the
        events from ``first_seq`` (default: the first of ``results``; none: nothing known) on."""
        if first_seq is None:
            first_seq = results[0][0] if results else highest + 1
        self._results.pop(partition, None)
        self._highest.pop(partition, None)
        if first_seq <= highest:
            self.remember_batch(partition, first_seq, highest, results)
        else:
            self._results[partition], self._highest[partition], self._low[partition] = {}, highest, highest + 1


EVICTED = object()
""":meth:`AppliedEvents.lookup` of an event applied long ago, whose result is no longer kept."""
