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
(:class:`shared.serving.statestore.PartitionStateStore`) *before the invocation returns*, and
what the saved state is behind the host's checkpoint is replayed from the hub (below). A worker
that gets a partition loads it and
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

Snapshots and replay
--------------------
A save in every batch puts one Blob Storage round trip (~9 ms here, more in Azure) in every
invocation, i.e. in the latency of every prediction and the cost of every batch. So a partition's
state is saved every ``STATE_SNAPSHOT_SECONDS`` (default 5; 0 = every batch) instead, and a worker
that restores a state saved at sequence number ``S`` while its trigger resumes at ``F > S + 1``
re-reads ``S + 1 .. F - 1`` from the hub (:class:`shared.serving.hubreplay.KafkaHubReplay`) and
applies them again with their outputs discarded — they were sent before the host checkpointed
past them — before the batch: Flink's checkpoint-and-source-replay recovery ("Checkpointing",
Apache Flink documentation: a restore resets the sources to the snapshot's positions). The state
is then the uninterrupted run's, because applying a tick depends only on the tick and the state:
the tick gate judges on the ticks' own event and ingest times (:mod:`shared.stream.sanity`), and
what does not replay is never inside a replayed span, since it forces a save at the end of its
batch: a new symbol (its warm-up bars and initial model come from stores that change), a model
swap (the engine swaps no model while replaying, :attr:`ForecastEngine.replaying`), and lost ticks.
A span that cannot be read whole (retention passed, broker down) is lost as above: partial bars.
Price updates are not part of the state (a restarted worker sends the next one at once).

A symbol belongs to the partition it was first seen on (the ingestor keys ticks by symbol): a
tick of it on another partition is dead-lettered (``wrong_partition``), as two partitions
building one symbol's bars would publish conflicting bars.
"""

from __future__ import annotations

import logging
import pickle
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

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


class HubReplay(Protocol):
    """Reads a span of a partition of the trigger's hub again (:class:`shared.serving.hubreplay.KafkaHubReplay`)."""

    def read(self, partition: str, first_seq: int, last_seq: int) -> tuple[list, list]:
        """``(raw events, event ids)`` of sequence numbers ``first_seq``..``last_seq`` of ``partition``;
        raises :class:`shared.serving.hubreplay.ReplayUnavailableError` if the span cannot be read whole."""
        ...


class PartitionTracker:
    """Owns which symbols belong to which partition, and saves and restores partition state.

    Parameters
    ----------
    engine, gate, applied : the :class:`PredictService`'s engine, tick gate and applied events.
    store : where states are saved; ``None``: in memory only (no restore, the pre-#13 behaviour).
    snapshot_seconds : least time between two saves of a partition's state, seconds of
        ``monotonic`` (``STATE_SNAPSHOT_SECONDS``); 0: after every batch. A save is never deferred
        for a partition's first batch on this worker, after a new symbol (its warm-up and initial
        model come from stores that change), a model swap or lost ticks: those cannot be replayed.
    replay : reads the ticks between a restored state and the trigger's position again
        (:meth:`begin` returns the span); ``None``: such a state is restored with its symbols'
        bars marked partial (the pre-snapshot behaviour).
    monotonic : seconds of a monotonic clock (for tests).

    Attributes
    ----------
    counts : ``restored``, ``fresh``, ``moved``, ``state_gap``, ``state_unavailable``,
        ``state_refused``, ``saved``, ``save_failed``, ``save_deferred``, ``replays``,
        ``replayed_events``, ``replay_failed``, ``superseded`` (another worker saved the partition's
        state since this one read it: reloaded) (plain counts since the service started).
    """

    def __init__(self, engine: ForecastEngine, gate: TickGate, applied: AppliedEvents,
                 store: PartitionStateStore | None, snapshot_seconds: float = 0.0,
                 replay: HubReplay | None = None, monotonic: Callable[[], float] = time.monotonic) -> None:
        if not snapshot_seconds >= 0:
            raise ValueError(f"snapshot_seconds must be >= 0, got {snapshot_seconds}")
        self.engine = engine
        self.gate = gate
        self.applied = applied
        self.store = store
        self.snapshot_seconds = snapshot_seconds
        self.replay = replay
        self.monotonic = monotonic
        self.owner: dict[Key, str] = {}
        self.partial: set[str] = set()
        self._expected: dict[str, int] = {}  # partition -> next sequence number this worker expects
        self._saved_at: dict[str, float] = {}  # partition -> monotonic time of its last save by this worker
        self._force: set[str] = set()  # partitions whose next save may not be deferred
        self.counts: dict[str, int] = dict.fromkeys(
            ("restored", "fresh", "moved", "state_gap", "state_unavailable", "state_refused", "saved",
             "save_failed", "save_deferred", "replays", "replayed_events", "replay_failed", "superseded"), 0)

    def begin(self, partition: str, first_seq: int) -> tuple[int, int] | None:
        """Make sure this worker's state of ``partition`` is current before its batch from ``first_seq``.

        A partition first seen here, or one whose batch starts past the next expected sequence
        number (another worker had it), is loaded from the store; a redelivery (``first_seq`` at
        or below the expected one) keeps the state in memory.

        Returns
        -------
        ``(first, last)`` sequence numbers to replay before the batch — the state restored was
        saved at ``first - 1`` and the trigger resumes at ``last + 1`` — or ``None``. The caller
        applies them (outputs discarded: they were sent before the host checkpointed past them)
        and then calls :meth:`replayed`, or :meth:`replay_failed` if they could not be read.
        """
        if self.store is None:
            return None
        expected = self._expected.get(partition)
        if expected is not None and self.store.take_superseded(partition):
            self.counts["superseded"] += 1
            log.warning("%s: another worker saved its state since this one read it; reloading it", partition)
            self._drop(partition)
            expected = None
        if expected is not None and first_seq <= expected:
            return None
        self._saved_at.pop(partition, None)  # its first batch here is saved whatever the interval
        if expected is not None:
            self.counts["moved"] += 1
            log.warning("%s: batch starts at %d, expected %d: another worker had it; reloading its state",
                        partition, first_seq, expected)
            self._drop(partition)
        try:
            found = self.store.load(partition)
        except StorageUnavailableError as exc:
            self._lost(partition, "state_unavailable", f"state unreadable ({exc})")
            return None
        except (StateRefusedError, pickle.UnpicklingError, EOFError, AttributeError, ModuleNotFoundError,
                ImportError, TypeError, ValueError) as exc:
            self._lost(partition, "state_refused", f"state refused ({type(exc).__name__}: {exc})")
            return None
        if found is None:
            self.counts["fresh"] += 1
            self._expected[partition] = first_seq
            return None
        seq, snapshot = found
        if not isinstance(snapshot, PartitionSnapshot) or snapshot.partition != partition:
            self._lost(partition, "state_refused", "state blob holds no snapshot of this partition")
            return None
        self._install(snapshot)
        self.counts["restored"] += 1
        log.info("%s: restored %d symbol(s) at sequence number %d", partition, len(snapshot.symbols), seq)
        if seq < first_seq - 1:
            if self.replay is not None:
                return seq + 1, first_seq - 1
            self._lost(partition, "state_gap", f"state saved at {seq} but the stream resumes at {first_seq}")
        return None

    def replayed(self, partition: str, first: int, last: int, events: int) -> None:
        """The span ``first``..``last`` of ``partition`` (``events`` events) was applied again."""
        self.counts["replays"] += 1
        self.counts["replayed_events"] += events
        self.applied_through(partition, last)
        log.warning("%s: replayed %d event(s) from the hub, sequence numbers %d-%d (the restored state was "
                    "saved at %d)", partition, events, first, last, first - 1)

    def replay_failed(self, partition: str, first: int, last: int, why: str) -> None:
        """The span ``first``..``last`` of ``partition`` could not be read: its ticks are lost."""
        self.counts["replay_failed"] += 1
        self._lost(partition, "state_gap", f"state saved at {first - 1}, the stream resumes at {last + 1} "
                   f"and the ticks between cannot be replayed ({why})")

    def _lost(self, partition: str, counter: str, why: str) -> None:
        """Ticks of ``partition`` may be lost: its bars in progress are partial."""
        self.counts[counter] += 1
        self.partial.add(partition)
        self._force.add(partition)
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
        self._force.discard(partition)

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
        if created:  # its warm-up and initial model cannot be replayed: the next save is not deferred
            self._force.add(partition)
        if created and partition in self.partial:  # its first minute may lack ticks
            state = self.engine.symbols[key]
            state.partial = state.builder.open_minute_ms

    def applied_through(self, partition: str, seq: int) -> None:
        """Events of ``partition`` up to ``seq`` are applied (or set aside)."""
        self._expected[partition] = max(self._expected.get(partition, 0), seq + 1)

    def force_save(self, partition: str) -> None:
        """The next :meth:`commit` of ``partition`` saves, whatever the interval (a model swap)."""
        self._force.add(partition)

    def commit(self, partition: str, batch: list[tuple[int, Applied]], first_seq: int | None = None) -> bool:
        """Save ``partition``'s state with the outputs of its newest ``batch`` (the events from ``first_seq``,
        default the first of ``batch``, that produced something) if a save is due; return whether saved.

        Called at the end of a batch, before the invocation returns. A save is due
        ``snapshot_seconds`` after the last one, or at once after what cannot be replayed (see the
        class); otherwise it is deferred (``save_deferred``): a worker that restores the older
        state replays the ticks since (:meth:`begin`). A save due by the interval alone is encoded
        here and uploaded on the store's background thread (``saved`` counts it when queued); a
        forced one, or every save with ``snapshot_seconds`` 0, is uploaded before this returns.
        A failed save is counted and logged (the breaker of the store skips the next ones), never
        raised; the next batch tries again.
        """
        if self.store is None or partition not in self._expected:
            return False
        now = self.monotonic()
        saved_at = self._saved_at.get(partition)
        forced = saved_at is None or partition in self._force
        if not forced and now - saved_at < self.snapshot_seconds:
            self.counts["save_deferred"] += 1
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
        # A save due by the interval alone is uploaded in the background (a replay covers it until it
        # lands); one that cannot be replayed past, or every batch's (0 s), is uploaded before returning.
        wait = forced or not self.snapshot_seconds
        try:
            saved = self.store.save(partition, snapshot.seq, snapshot, wait=wait)
        except Exception as exc:  # unpicklable model or no key: keep serving, say it loudly
            log.exception("%s: state not saved: %s", partition, exc)
            saved = False
        self.counts["saved" if saved else "save_failed"] += 1
        if saved:
            self._saved_at[partition] = now
            self._force.discard(partition)
        return saved
