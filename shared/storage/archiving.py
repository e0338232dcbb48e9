"""The ``archive`` use case: bar and prediction events in, idempotent upserts into the history store.

Upserts make redelivery harmless (at-least-once delivery from Event Hubs or Kafka):
the same bar twice is one row. The store fills each prediction's realised close
from the bar of its target minute, whichever of the two arrives first.
A malformed event is counted, logged with its position and set aside as a dead
letter; the rest of its batch is still stored.
"""

from __future__ import annotations

from collections.abc import Iterable

from shared.contracts.batches import BatchResult, RawEvent
from shared.contracts.events import Bar, MalformedEventError, Prediction, decode_output
from shared.storage.history import HistoryStore


class ArchiveService:
    """Store batches of events from the ``predictions`` hub in a :class:`HistoryStore`."""

    def __init__(self, store: HistoryStore, source: str = "predictions") -> None:
        self.store = store
        self.source = source

    def handle(self, batch: Iterable[RawEvent]) -> BatchResult:
        """Decode, validate and upsert one batch; return counts (``bars``, ``predictions``,
        ``model_changes``, ``prices``, ``malformed``).

        Raises whatever the store raises when the database is unreachable; ``archive``'s retry
        policy then reruns the batch (upserts are idempotent) a bounded number of times, after
        which the host checkpoints past it (see ``docs/failures.md``).
        """
        result = BatchResult()
        bars: list[Bar] = []
        predictions: list[Prediction] = []
        for raw in batch:
            try:
                event = decode_output(raw.body)
            except MalformedEventError as exc:
                result.set_aside(self.source, raw, str(exc))
                continue
            if isinstance(event, Bar):
                bars.append(event)
            elif isinstance(event, Prediction):
                predictions.append(event)
            else:  # a model change (the registry's decision log records it) or a latest-price event
                result.counts[f"{event.type}s"] += 1
        # Bars first, so predictions in this batch can find their realised close.
        if bars:
            self.store.upsert_bars(bars)
        if predictions:
            self.store.upsert_predictions(predictions)
        result.counts["bars"] += len(bars)
        result.counts["predictions"] += len(predictions)
        return result
