"""Exact restarts: ``predict``'s state is committed per partition with the position it reached.

Why state with the position, and not partial bars
-------------------------------------------------
The Functions host owns the checkpoint: it writes each partition's position after every
``batchCheckpointFrequency`` (1) batches, once the invocation returned ("Azure Event Hubs trigger
for Azure Functions", host.json ``batchCheckpointFrequency``), and a worker that dies is replaced
by one that starts from that checkpoint — on this instance or another, since partitions move
between instances as the app scales ("Event-driven scaling in Azure Functions": the Event Hubs
extension balances partition ownership across instances). In-memory state alone therefore
restarts from a position it does not match: the minute in progress would be rebuilt from the
ticks after the checkpoint only (wrong OHLCV, stored as if complete) and the online model would
forget what it learned. Marking such bars partial would still lose every restarted minute and the
learning; instead, like a Kafka Streams / quix-streams task that commits its state with its
offsets, ``predict`` saves each partition's whole state — bars in progress, features, online
models, pending forecasts, the tick gate's marks and the outputs of the batch — in one signed blob
(:class:`shared.serving.statestore.PartitionStateStore`) *before the invocation returns*, so the
saved state is never behind the host's checkpoint. A worker that gets a partition loads it and
skips every redelivered event at or below its sequence number, re-emitting the outputs of the
newest batch (which a kill may have kept from being sent). Bars and predictions then equal those
of an uninterrupted run.

When the saved state is behind the stream (its save was skipped during a Blob Storage outage and
the worker died), unreadable or refused, the partition's bars in progress may lack ticks: every
symbol of the partition then has its first bar dropped (:attr:`SymbolState.partial
<shared.serving.engine.SymbolState>`), never published nor learned from, and the pending
forecast whose target is not the next bar is not learned (the gap rule). Events are named by
``(partition, sequence number)`` (:data:`~shared.serving.redelivery.EventId`): a partition's
sequence numbers are consecutive, so a batch that starts past the next expected number means
another worker had the partition meanwhile, and its saved state replaces what this one holds.

A symbol belongs to the partition it was first seen on (the ingestor keys ticks by symbol): a
tick of it on another partition is dead-lettered (``wrong_partition``), as two partitions
building one symbol's bars would publish conflicting bars.
"""

from __future__ import annotations

import logging
import pickle
from dataclasses import dataclass, field
from typing import Any

from shared.serving.engine import PARTIAL_FROM_NEXT_TICK, ForecastEngine, SymbolState
from shared.serving.redelivery import Applied, AppliedEvents
from shared.serving.statestore import PartitionStateStore, StateRefusedError, StorageUnavailableError
from shared.stream.bars import BarBuilder
from shared.stream.sanity import TickGate

log = logging.getLogger(__name__)

Key = tuple[str, str]


@dataclass
class SymbolSnapshot:
    """One symbol's state: its bar builder, its model-side state (``core``: features, forecaster,
    pending forecast, resolved and gap counts, model version) pickled at some bar, with the bars
    closed since (``log``, replayed on restore: :meth:`~shared.serving.engine.ForecastEngine.core_snapshot`;
    empty in states saved before it existed, whose ``core`` was pickled at the save),
    its tick-gate marks, its :attr:`~shared.serving.engine.SymbolState.partial` mark, and its
    tick-level order flow (changes with every tick, like the builder; ``None`` without tick features)."""

    builder: BarBuilder
    core: bytes
    gate: tuple[Any, Any]
    partial: int | None = None
    flow: Any = None
    log: tuple = ()


@dataclass
class PartitionSnapshot:
    """A partition's whole state after the event at sequence number ``seq``.

    Attributes
    ----------
    partition : the partition id (``"partition 3"``).
    seq : highest sequence number applied.
    symbols : ``(exchange, symbol)`` -> :class:`SymbolSnapshot`, for every symbol of the partition.
    feed : the tick gate's feed reference at save time.
    applied : ``(seq, outputs)`` of the events of the newest batch that produced something (outputs,
        a dead letter or a price update), re-emitted on redelivery.
    applied_from : the first sequence number of the newest batch; its events without an entry in
        ``applied`` produced nothing (``None`` in states saved before this field: ``applied`` then
        lists every event of the batch).
    partial : the partition's state had lost ticks (symbols first seen later start partial).
    """

    partition: str
    seq: int
    symbols: dict[Key, SymbolSnapshot] = field(default_factory=dict)
    feed: Any = None
    applied: list[tuple[int, Applied]] = field(default_factory=list)
    partial: bool = False
    applied_from: int | None = None


class PartitionTracker:
    """Owns which symbols belong to which partition, and saves and restores partition state.

    Parameters
    ----------
    engine, gate, applied : the :class:`PredictService`'s engine, tick gate and applied events.
    store : where states are saved; ``None``: in memory only (no restore, the pre-#13 behaviour).

    Attributes
    ----------
    counts : ``restored``, ``fresh``, ``moved``, ``state_gap``, ``state_unavailable``,
        ``state_refused``, ``saved``, ``save_failed`` (plain counts since the service started).
    """

    def __init__(self, engine: ForecastEngine, gate: TickGate, applied: AppliedEvents,
                 store: PartitionStateStore | None) -> None:
        self.engine = engine
        self.gate = gate
        self.applied = applied
        self.store = store
        self.owner: dict[Key, str] = {}
        self.partial: set[str] = set()
        self._expected: dict[str, int] = {}  # partition -> next sequence number this worker expects
        self.counts: dict[str, int] = dict.fromkeys(
            ("restored", "fresh", "moved", "state_gap", "state_unavailable", "state_refused", "saved",
             "save_failed"), 0)

    def begin(self, partition: str, first_seq: int) -> None:
        """Make sure this worker's state of ``partition`` is current before its batch from ``first_seq``.

        A partition first seen here, or one whose batch starts past the next expected sequence
        number (another worker had it), is loaded from the store; a redelivery (``first_seq`` at
        or below the expected one) keeps the state in memory.
        """
        expected = self._expected.get(partition)
        if expected is not None and first_seq <= expected:
            return
        if self.store is None:
            return
        if expected is not None:
            self.counts["moved"] += 1
            log.warning("%s: batch starts at %d, expected %d: another worker had it; reloading its state",
                        partition, first_seq, expected)
            self._drop(partition)
        try:
            found = self.store.load(partition)
        except StorageUnavailableError as exc:
            self._lost(partition, "state_unavailable", f"state unreadable ({exc})")
            return
        except (StateRefusedError, pickle.UnpicklingError, EOFError, AttributeError, ModuleNotFoundError,
                ImportError, TypeError, ValueError) as exc:
            self._lost(partition, "state_refused", f"state refused ({type(exc).__name__}: {exc})")
            return
        if found is None:
            self.counts["fresh"] += 1
            self._expected[partition] = first_seq
            return
        seq, snapshot = found
        if not isinstance(snapshot, PartitionSnapshot) or snapshot.partition != partition:
            self._lost(partition, "state_refused", "state blob holds no snapshot of this partition")
            return
        self._install(snapshot)
        self.counts["restored"] += 1
        if seq < first_seq - 1:
            self._lost(partition, "state_gap", f"state saved at {seq} but the stream resumes at {first_seq}")
        log.info("%s: restored %d symbol(s) at sequence number %d", partition, len(snapshot.symbols), seq)

    def _lost(self, partition: str, counter: str, why: str) -> None:
        """Ticks of ``partition`` may be lost: its bars in progress are partial."""
        self.counts[counter] += 1
        self.partial.add(partition)
        for key, owner in self.owner.items():
            if owner == partition and key in self.engine.symbols:
                self.engine.symbols[key].partial = PARTIAL_FROM_NEXT_TICK
        log.error("%s: %s; the first bar of each of its symbols will be dropped as partial", partition, why)

    def _drop(self, partition: str) -> None:
        for key in [k for k, p in self.owner.items() if p == partition]:
            del self.owner[key]
            self.engine.symbols.pop(key, None)
            self.gate.forget(key)
            self.engine.cores.pop(key, None)
        self.applied.forget(partition)
        self.partial.discard(partition)
        self._expected.pop(partition, None)

    def _install(self, snapshot: PartitionSnapshot) -> None:
        partition = snapshot.partition
        for key, saved in snapshot.symbols.items():
            if self.owner.get(key, partition) != partition:
                log.error("%s: not restoring %s %s, owned here by %s", partition, *key, self.owner[key])
                continue
            state = SymbolState(saved.builder, None, None, "", None, saved.partial)
            self.engine.restore_core(key, state, saved.core, saved.log)
            state.flow = saved.flow
            self.engine.symbols[key] = state
            self.gate.restore(key, saved.gate)
            self.owner[key] = partition
        self.gate.restore_feed(snapshot.feed)
        if snapshot.partial:
            self.partial.add(partition)
        self.applied.restore(partition, snapshot.seq, snapshot.applied, snapshot.applied_from)
        self._expected[partition] = snapshot.seq + 1

    def owns(self, key: Key, partition: str | None) -> bool:
        """Whether a tick of ``key`` on ``partition`` may be applied: the symbol is new or belongs to it."""
        return partition is None or self.owner.get(key, partition) == partition

    def claim(self, key: Key, partition: str | None, created: bool) -> None:
        """The engine applied a tick of ``key`` from ``partition``; ``created``: its state is new, and
        starts partial if the partition lost ticks."""
        if partition is None or key not in self.engine.symbols:
            return
        self.owner.setdefault(key, partition)
        if created and partition in self.partial:  # its first minute may lack ticks
            state = self.engine.symbols[key]
            state.partial = state.builder.open_minute_ms

    def applied_through(self, partition: str, seq: int) -> None:
        """Events of ``partition`` up to ``seq`` are applied (or set aside)."""
        self._expected[partition] = max(self._expected.get(partition, 0), seq + 1)

    def commit(self, partition: str, batch: list[tuple[int, Applied]], first_seq: int | None = None) -> bool:
        """Save ``partition``'s state with the outputs of its newest ``batch`` (the events from ``first_seq``,
        default the first of ``batch``, that produced something); return whether saved.

        Called at the end of a batch, before the invocation returns. A failed save is counted and
        logged (the breaker of the store skips the next ones), never raised.
        """
        if self.store is None or partition not in self._expected:
            return False
        snapshot = PartitionSnapshot(partition, self._expected[partition] - 1, feed=self.gate.feed,
                                     applied=batch, partial=partition in self.partial,
                                     applied_from=first_seq if first_seq is not None or not batch else batch[0][0])
        for key, owner in self.owner.items():
            state = self.engine.symbols.get(key)
            if owner != partition or state is None:
                continue
            core, log_ = self.engine.core_snapshot(key, state)
            snapshot.symbols[key] = SymbolSnapshot(state.builder, core, self.gate.export(key), state.partial,
                                                   state.flow, log_)
        try:
            saved = self.store.save(partition, snapshot.seq, snapshot)
        except Exception as exc:  # unpicklable model or no key: keep serving, say it loudly
            log.exception("%s: state not saved: %s", partition, exc)
            saved = False
        self.counts["saved" if saved else "save_failed"] += 1
        return saved
