"""The ``predict`` use case: a batch of raw tick events in, bar, prediction and price events out.

Decoding and validation happen here, event by event: a malformed tick, one refused by the
time and sequence gate (:class:`shared.stream.sanity.TickGate`: implausible event time or trade
id, too many new symbols), or one on which the engine raises is counted, logged with its
position and set aside as a dead letter, and the rest of the batch is processed. Valid ticks go
through :class:`shared.serving.engine.ForecastEngine`, whose step for one tick is all or nothing.
The Azure Function and the local stack are two thin drivers of :class:`PredictService`.

Redelivery never applies a tick twice
-------------------------------------
``predict`` declares a retry policy, and the host then invokes it again with the same
batch after a failure — for instance when an output binding failed, which code cannot
catch ("Azure Functions error handling and retries", learn.microsoft.com/azure/azure-functions/
functions-bindings-error-pages: "When using output bindings, you can't handle errors that occur
when accessing the remote service"; retry policies are supported for the Event Hubs trigger).
The engine's state is in memory and a tick changes it (bar builder, features, the model learns),
so a retried batch must not be fed to it again. Each event is named by its partition and
sequence number (:class:`AppliedEvents`); an event the engine already applied is not applied
again: its outputs and dead letter are re-emitted from a bounded cache, so a retried invocation
sends exactly what the failed one should have. Events older than the cache are skipped and
counted (``redelivered_uncached``): their state is applied, their outputs were the failed
invocation's. Every event is applied all or nothing (a refused or failing tick leaves no trace),
so a failed invocation's redelivery produces exactly the outputs of an uninterrupted run: events
applied before the failure are re-emitted from the cache, the others are applied.

A worker that dies loses nothing either: each partition's state is saved with the outputs of its
newest batch before the invocation returns, and restored by the worker that gets the partition
next (:mod:`shared.serving.partitions`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence

from shared.contracts.batches import BatchResult, RawEvent
from shared.contracts.events import MalformedEventError, PriceUpdate, Tick, decode_tick, encode
from shared.lifecycle.champions import ChampionSource
from shared.lifecycle.registry import ModelRegistry
from shared.serving.engine import ForecastEngine, Warmup, now_ms
from shared.serving.partitions import PartitionTracker
from shared.serving.redelivery import EVICTED, REPLAY_WINDOW, Applied, AppliedEvents, EventId
from shared.serving.statestore import PartitionStateStore
from shared.stream.sanity import TickGate

__all__ = ["EVICTED", "REPLAY_WINDOW", "Applied", "AppliedEvents", "EventId", "PredictService", "PriceThrottle",
           "build_predict_service"]

log = logging.getLogger(__name__)

class PriceThrottle:
    """Lets at most one price update per symbol through every ``min_interval_ms``.

    Parameters
    ----------
    min_interval_ms : int
        Least time between two admitted updates of one (exchange, symbol), ms (>= 0).

    Raises
    ------
    ValueError
        A negative ``min_interval_ms``.

    Examples
    --------
    >>> t = PriceThrottle(1000)
    >>> [t.admit("kraken", "BTC/USD", now) for now in (0, 999, 1000, 1500, 2000)]
    [True, False, True, False, True]
    """

    def __init__(self, min_interval_ms: int) -> None:
        if min_interval_ms < 0:
            raise ValueError(f"min_interval_ms must be >= 0, got {min_interval_ms}")
        self.min_interval_ms = min_interval_ms
        self._last: dict[tuple[str, str], int] = {}

    def admit(self, exchange: str, symbol: str, now_ms: int) -> bool:
        """True (and remember ``now_ms``) if the symbol's last admitted update is old enough."""
        key = (exchange, symbol)
        last = self._last.get(key)
        if last is not None and now_ms - last < self.min_interval_ms:
            return False
        self._last[key] = now_ms
        return True


class PredictService:
    """Decode, validate and forecast one batch of tick events at a time; redelivery-safe.

    Parameters
    ----------
    engine : the stateful per-symbol engine (kept across batches).
    source : name of the input hub, used in dead letters (default ``ticks``).
    price_update_ms : least time between two :class:`~shared.contracts.events.PriceUpdate`
        events of one symbol, ms (``PRICE_UPDATE_MS``); ``None``: no price events.
    clock : wall clock in ms since epoch UTC, for the price throttle and ``sent_at_ms``.
    replay_window : applied events remembered per partition (see :class:`AppliedEvents`).
    state_store : where each partition's state is saved after every batch and restored from when
        a worker gets the partition (:mod:`shared.serving.partitions`); ``None``: memory only.
    """

    def __init__(self, engine: ForecastEngine, source: str = "ticks", price_update_ms: int | None = None,
                 clock: Callable[[], int] = now_ms, replay_window: int = REPLAY_WINDOW,
                 state_store: PartitionStateStore | None = None) -> None:
        self.engine = engine
        self.source = source
        self.prices = PriceThrottle(price_update_ms) if price_update_ms is not None else None
        self.clock = clock
        self.gate = TickGate(clock)
        self.partitions = PartitionTracker(engine, self.gate, AppliedEvents(replay_window), state_store)
        self.closers: list[Callable[[], None]] = []
        """Called by :meth:`close` (e.g. the history store used for warm-up)."""

    @property
    def applied(self) -> AppliedEvents:
        """The events applied so far, per partition (shared with the partition tracker)."""
        return self.partitions.applied

    @applied.setter
    def applied(self, applied: AppliedEvents) -> None:
        self.partitions.applied = applied

    def close(self) -> None:
        """Release what the service holds (database connections); the engine state is dropped."""
        for close in self.closers:
            close()
        self.closers.clear()

    def handle(self, batch: Iterable[RawEvent], ids: Sequence[EventId | None] | None = None) -> BatchResult:
        """Process one batch; returns encoded bar/prediction/price events and dead letters.

        Parameters
        ----------
        batch : the raw tick events, in hub order.
        ids : ``(partition, sequence number)`` of each event of ``batch`` (``None`` for an
            event without one, which is always applied); ``None``: no event has one.

        Returns
        -------
        BatchResult
            ``outputs``: bars and predictions in event order, then price updates;
            ``deadletters``; ``counts`` (``ticks``, ``bars``, ``predictions``, ``prices``,
            ``malformed``, ``late``, ``out_of_sequence``, ``future``, ``time_jump``, ``stale``,
            ``id_jump``, ``new_symbol_rate``, ``wrong_partition``, ``engine_error``, ``replayed``,
            ``redelivered_uncached``);
            ``latest_prices`` of the ticks applied in this call.

        Every event is handled on its own: one that cannot be decoded, that the gate refuses
        (:mod:`shared.stream.sanity`) or on which the engine raises is counted and dead-lettered
        with its position and reason, and the batch goes on; the engine step of a tick is all or
        nothing, so a refused or failed tick leaves no trace. Raises only what cannot be
        attributed to one event (none known).
        """
        result = BatchResult()
        events = list(batch)
        ids = list(ids) if ids is not None else [None] * len(events)
        firsts: dict[str, int] = {}
        for event_id in ids:
            if event_id is not None and event_id[0] not in firsts:
                firsts[event_id[0]] = event_id[1]
        for partition, first_seq in firsts.items():  # state current before any lookup (may restore it)
            self.partitions.begin(partition, first_seq)
        done: list[Applied] = []
        batches: dict[str, list[tuple[int, Applied]]] = {p: [] for p in firsts}
        advanced: set[str] = set()  # partitions with an event applied in this call
        fresh: dict[tuple[str, str], Applied] = {}  # newest applied tick of each symbol -> its record
        for raw, event_id in zip(events, ids):
            known = self.applied.lookup(event_id) if event_id is not None else None
            if known is EVICTED:
                result.counts["redelivered_uncached"] += 1
                log.warning("skipped %s event at %s: applied before, its outputs are no longer kept",
                            self.source, raw.position)
                continue
            if isinstance(known, Applied):
                result.counts["replayed"] += 1
                done.append(known)
                batches[event_id[0]].append((event_id[1], known))
                continue
            applied = self._apply(raw, result, fresh, event_id[0] if event_id is not None else None)
            done.append(applied)
            if event_id is not None:
                self.applied.remember(event_id, applied)
                self.partitions.applied_through(*event_id)
                advanced.add(event_id[0])
                batches[event_id[0]].append((event_id[1], applied))
        if self.prices is not None:
            now = self.clock()
            for (exchange, symbol), applied in fresh.items():
                if self.prices.admit(exchange, symbol, now):
                    price, event_time_ms = result.latest_prices[(exchange, symbol)]
                    applied.price = encode(PriceUpdate(exchange, symbol, price, event_time_ms, now))
        for partition in advanced:  # state saved with the batch's outputs before the invocation returns
            self.partitions.commit(partition, batches[partition])
        for applied in done:
            result.outputs.extend(applied.outputs)
            if applied.deadletter is not None:
                result.deadletters.append(applied.deadletter)
        result.outputs.extend(a.price for a in done if a.price is not None)
        result.counts["prices"] += sum(a.price is not None for a in done)
        return result

    def _apply(self, raw: RawEvent, result: BatchResult, fresh: dict[tuple[str, str], Applied],
               partition: str | None = None) -> Applied:
        """Decode ``raw`` (from ``partition``) and feed it to the engine; count it in ``result`` and
        return what it produced."""
        applied = Applied()
        try:
            tick: Tick = decode_tick(raw.body)
        except MalformedEventError as exc:
            result.set_aside(self.source, raw, str(exc))
            applied.deadletter = result.deadletters.pop()
            return applied
        key = (tick.exchange, tick.symbol)
        if not self.partitions.owns(key, partition):
            result.set_aside(self.source, raw, f"{tick.exchange} {tick.symbol} belongs to "
                             f"{self.partitions.owner[key]}, not {partition}", "wrong_partition")
            applied.deadletter = result.deadletters.pop()
            return applied
        verdict = self.gate.check(tick)
        if verdict is not None:
            counter, reason = verdict
            result.set_aside(self.source, raw, reason, counter)
            applied.deadletter = result.deadletters.pop()
            return applied
        rejected: list[tuple[int, str, str]] = []
        created = key not in self.engine.symbols
        try:
            events = self.engine.process([tick], rejected)
            outputs = [encode(event) for event in events]
        except Exception as exc:  # one event's failure (model lookup, features, model) never blocks the batch
            log.exception("engine failed on %s event at %s", self.source, raw.position)
            result.set_aside(self.source, raw, f"engine error: {type(exc).__name__}: {str(exc)[:300]}", "engine_error")
            applied.deadletter = result.deadletters.pop()
            return applied
        self.partitions.claim(key, partition, created)
        result.counts["ticks"] += 1
        for event, encoded in zip(events, outputs):
            applied.outputs.append(encoded)
            result.counts[event.type + "s"] += 1
        if rejected:
            _, counter, reason = rejected[0]
            result.set_aside(self.source, raw, reason, counter)
            applied.deadletter = result.deadletters.pop()
        else:
            known = result.latest_prices.get(key)
            self.gate.accept(tick)
            result.note_price(tick.exchange, tick.symbol, tick.price, tick.event_time_ms)
            if result.latest_prices[key] != known:
                fresh[key] = applied
        return applied


def build_predict_service(
    registry: ModelRegistry | None,
    default_key: str,
    interval_level: float,
    poll_seconds: float,
    clock: Callable[[], int] | None = None,
    *,
    checkpoint_seconds: float = 0.0,
    warmup: Warmup | None = None,
    forecast_model: str = "",
    price_update_ms: int | None = None,
    state_store: PartitionStateStore | None = None,
) -> PredictService:
    """Wire a :class:`PredictService` to a registry (``None``: every symbol starts cold).

    Parameters
    ----------
    registry : model registry, or ``None``.
    default_key : fallback model key (``MODEL_KEY``).
    interval_level : interval coverage of cold-start forecasters.
    poll_seconds : least time between two reads of a champion pointer (``MODEL_POLL_SECONDS``).
    clock : wall clock in ms since epoch UTC, for tests (predictions' ``made_at_ms``, price updates).
    checkpoint_seconds : least time between two checkpoints of a symbol's model; 0 = never.
    warmup : newest stored bars of a symbol (e.g. from the history store), for restarts.
    forecast_model : model family of cold-start forecasters.
    price_update_ms : ``PRICE_UPDATE_MS`` (least time between two price events of a symbol, ms);
        ``None``: no price events.
    state_store : where partition state is saved and restored (``None``: in memory only).
    """
    source = (
        ChampionSource(registry, default_key, poll_seconds, checkpoint_seconds)
        if registry is not None
        else (lambda e, s: None)
    )
    engine = ForecastEngine(source, interval_level=interval_level, forecast_model=forecast_model, warmup=warmup)
    if clock is not None:
        engine.clock = clock
    return PredictService(engine, price_update_ms=price_update_ms, clock=clock or now_ms, state_store=state_store)
