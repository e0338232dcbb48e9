"""The ``archive`` use case: bar and prediction events in, idempotent upserts into the history store.

Upserts make redelivery harmless (at-least-once delivery from Event Hubs or Kafka):
the same bar twice is one row. The store fills each prediction's realised close
from the bar of its target minute, whichever of the two arrives first.

Poison events never block a partition. A malformed event (decoding bounds every field to what
the store's columns hold, :mod:`shared.contracts.events`) is counted, logged with its position
and set aside as a dead letter; the rest of its batch is still stored. If the store refuses a
batch for a reason that is not the database being unreachable (an error about the data, e.g. a
value a column cannot hold), the batch is written again one event at a time, and only the events
the store refuses are dead-lettered (counter ``store_refused``). An unreachable database
(:data:`UNAVAILABLE`) fails the whole batch, for ``archive``'s bounded retry policy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

import sqlalchemy.exc as sa_exc

from shared.contracts.batches import BatchResult, RawEvent
from shared.contracts.events import Bar, MalformedEventError, Prediction, decode_output
from shared.storage.history import HistoryStore

UNAVAILABLE: tuple[type[BaseException], ...] = (
    sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError, sa_exc.DisconnectionError,
    ConnectionError, TimeoutError,
)
"""Errors that mean the database could not be reached or used (connection lost, refused, timed
out, server gone): not the data's fault, so the batch is retried whole."""

E = TypeVar("E", Bar, Prediction)


class ArchiveService:
    """Store batches of events from the ``predictions`` hub in a :class:`HistoryStore`."""

    def __init__(self, store: HistoryStore, source: str = "predictions") -> None:
        self.store = store
        self.source = source

    def handle(self, batch: Iterable[RawEvent]) -> BatchResult:
        """Decode, validate and upsert one batch; return counts (``bars``, ``predictions``,
        ``model_changes``, ``prices``, ``malformed``, ``store_refused``).

        Raises
        ------
        Exception
            One of :data:`UNAVAILABLE` (or whatever the store raises on the per-event retry when
            the database becomes unreachable meanwhile): ``archive``'s retry policy then reruns the
            batch (upserts are idempotent) a bounded number of times, after which the host
            checkpoints past it (see ``docs/failures.md``). Never for a bad event.
        """
        result = BatchResult()
        bars: list[tuple[RawEvent, Bar]] = []
        predictions: list[tuple[RawEvent, Prediction]] = []
        for raw in batch:
            try:
                event = decode_output(raw.body)
            except MalformedEventError as exc:
                result.set_aside(self.source, raw, str(exc))
                continue
            if isinstance(event, Bar):
                bars.append((raw, event))
            elif isinstance(event, Prediction):
                predictions.append((raw, event))
            else:  # a model change (the registry's decision log records it) or a latest-price event
                result.counts[f"{event.type}s"] += 1
        # Bars first, so predictions in this batch can find their realised close.
        result.counts["bars"] += self._write(self.store.upsert_bars, bars, result)
        result.counts["predictions"] += self._write(self.store.upsert_predictions, predictions, result)
        return result

    def _write(self, upsert: Callable[[list[E]], int], items: Sequence[tuple[RawEvent, E]],
               result: BatchResult) -> int:
        """Upsert ``items`` in one call; if the store refuses the data, one by one. Returns how
        many events were stored; refused ones are dead-lettered."""
        if not items:
            return 0
        try:
            upsert([event for _, event in items])
            return len(items)
        except UNAVAILABLE:
            raise
        except Exception:  # about the data: find the event(s) at fault
            pass
        stored = 0
        for raw, event in items:
            try:
                upsert([event])
                stored += 1
            except UNAVAILABLE:
                raise
            except Exception as exc:
                result.set_aside(self.source, raw, f"store refused: {type(exc).__name__}: {str(exc)[:300]}",
                                 "store_refused")
        return stored
