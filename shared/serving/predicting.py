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
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from operator import itemgetter

from shared.contracts.batches import BatchResult, RawEvent
from shared.contracts.events import MalformedEventError, PriceUpdate, Tick, decode_tick, encode
from shared.lifecycle.champions import ChampionSource
from shared.lifecycle.registry import ModelRegistry
from shared.serving.engine import ForecastEngine, Warmup, now_ms
from shared.serving.lane import TickLane
from shared.serving.partitions import HubReplay, PartitionTracker
from shared.serving.redelivery import EVICTED, REPLAY_WINDOW, Applied, AppliedEvents, EventId
from shared.serving.statestore import PartitionStateStore
from shared.stream.sanity import TickGate

__all__ = ["EVICTED", "REPLAY_WINDOW", "Applied", "AppliedEvents", "EventId", "PredictService", "PriceThrottle",
           "build_predict_service"]

log = logging.getLogger(__name__)

REPLAY_CHUNK = 50_000
"""Events a replay reads and applies at a time (~10 MB of tick bodies): a restore after a long
storage outage replays in bounded memory."""

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
    state_store : where each partition's state is saved and restored from when a worker gets the
        partition (:mod:`shared.serving.partitions`); ``None``: memory only.
    snapshot_seconds : least time between two saves of a partition's state (0: after every batch).
    replay : reads the ticks hub again from a restored state's position to the trigger's
        (:class:`shared.serving.hubreplay.KafkaHubReplay`); ``None``: a state behind the stream is
        restored with its bars in progress marked partial.
    """

    def __init__(self, engine: ForecastEngine, source: str = "ticks", price_update_ms: int | None = None,
                 clock: Callable[[], int] = now_ms, replay_window: int = REPLAY_WINDOW,
                 state_store: PartitionStateStore | None = None, snapshot_seconds: float = 0.0,
                 replay: HubReplay | None = None) -> None:
        self.engine = engine
        self.source = source
        self.prices = PriceThrottle(price_update_ms) if price_update_ms is not None else None
        self.clock = clock
        self.gate = TickGate(clock)
        self.partitions = PartitionTracker(engine, self.gate, AppliedEvents(replay_window), state_store,
                                           snapshot_seconds, replay)
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
        events = batch if isinstance(batch, list) else list(batch)
        ids = list(ids) if ids is not None else [None] * len(events)
        firsts: dict[str, int] = {}
        for event_id in ids:
            if event_id is not None and event_id[0] not in firsts:
                firsts[event_id[0]] = event_id[1]
        for partition, first_seq in firsts.items():  # state current before any lookup (may restore it)
            span = self.partitions.begin(partition, first_seq)
            if span is not None:
                self._replay(partition, *span)
        replaying = self.engine.replaying
        swaps = self.engine.stats.model_swaps
        known_events = self.applied
        done: list[tuple[int, Applied]] = []  # (index in the batch, result) of events that produced something
        batches: dict[str, list[tuple[int, Applied]]] = {p: [] for p in firsts}  # the same by (seq, result)
        spans: dict[str, list[int]] = {}  # partition -> [first, last] sequence number applied in this call
        fresh: dict[tuple[str, str], tuple[int, EventId | None, Applied | None]] = {}  # newest price's tick
        lane = self._lane(ids, firsts, result, fresh)
        completed, stop = False, -1  # stop: where the lane's last run stopped
        try:
            for index, event_id in enumerate(ids):
                if index < stop:  # taken by the lane
                    continue
                if lane is not None:  # common ticks in a few steps; any other event by _apply
                    if index > stop:
                        stop = lane.run(events, index)
                        if stop > index:
                            continue
                    lane.before_apply()
                if event_id is not None:
                    known = known_events.lookup(event_id)
                    if known is EVICTED:
                        result.counts["redelivered_uncached"] += 1
                        log.warning("skipped %s event at %s: applied before, its outputs are no longer kept",
                                    self.source, events[index].position)
                        continue
                    if known is not None:
                        result.counts["replayed"] += 1
                        if known.outputs or known.deadletter is not None or known.price is not None:
                            done.append((index, known))
                            batches[event_id[0]].append((event_id[1], known))
                        continue
                applied = self._apply(events[index], result, fresh, index, event_id)
                if event_id is not None:  # applied (or set aside): only now is it remembered
                    span = spans.get(event_id[0])
                    if span is None:
                        spans[event_id[0]] = [event_id[1], event_id[1]]
                    else:
                        span[1] = event_id[1]
                if applied is not None:
                    done.append((index, applied))
                    if event_id is not None:
                        batches[event_id[0]].append((event_id[1], applied))
            completed = True
            if lane is not None:
                lane.settle()
            if self.prices is not None and fresh and not replaying:
                now = self.clock()
                for (exchange, symbol), (index, event_id, applied) in fresh.items():
                    if self.prices.admit(exchange, symbol, now):
                        price, event_time_ms = result.latest_prices[(exchange, symbol)]
                        if applied is None:  # the tick produced nothing else
                            applied = Applied()
                            done.append((index, applied))
                            if event_id is not None:
                                batches[event_id[0]].append((event_id[1], applied))
                        applied.price = encode(PriceUpdate(exchange, symbol, price, event_time_ms, now))
                done.sort(key=itemgetter(0))
                for entries in batches.values():
                    entries.sort(key=itemgetter(0))
        finally:  # what was applied is remembered even if something unforeseen raised mid-batch
            if lane is not None:  # every event up to the last one handled, whichever path took it
                lane.settle()
                upto = len(ids) - 1 if completed else max(index, lane.next) - 1
                spans = {lane.partition: [ids[0][1], ids[upto][1]]} if upto >= 0 else {}
            for partition, (first, last) in spans.items():
                known_events.remember_batch(partition, first, last, [e for e in batches[partition] if e[0] >= first])
                self.partitions.applied_through(partition, last)
        if replaying:  # re-applied after a restore: what it produced was sent the first time
            return result
        if self.engine.stats.model_swaps != swaps:  # a swap cannot be replayed: save it now
            for partition in spans:
                self.partitions.force_save(partition)
        for partition in spans:  # state saved with the batch's outputs before the invocation returns (when due)
            self.partitions.commit(partition, batches[partition], firsts[partition])
        outputs, deadletters = result.outputs, result.deadletters
        prices = 0
        for _, applied in done:
            outputs.extend(applied.outputs)
            if applied.deadletter is not None:
                deadletters.append(applied.deadletter)
        for _, applied in done:
            if applied.price is not None:
                outputs.append(applied.price)
                prices += 1
        result.counts["prices"] += prices
        return result

    def _replay(self, partition: str, first: int, last: int) -> None:
        """Apply events ``first``..``last`` of ``partition`` again after a restore, outputs discarded.

        They are read from the trigger's hub (:attr:`PartitionTracker.replay`), :data:`REPLAY_CHUNK`
        at a time (memory stays bounded after a long storage outage), and go through :meth:`handle`
        with the engine :attr:`~shared.serving.engine.ForecastEngine.replaying`: the same checks and
        steps as the first time, without model swaps, checkpoints, price updates or a state save.
        Ticks that cannot be read are lost (:meth:`PartitionTracker.replay_failed`), those before
        them stay applied.
        """
        from shared.serving.hubreplay import ReplayUnavailableError

        tracker = self.partitions
        counts: Counter[str] = Counter()
        replayed, start = 0, first
        while start <= last:
            end = min(last, start + REPLAY_CHUNK - 1)
            try:
                events, ids = tracker.replay.read(partition, start, end)
            except ReplayUnavailableError as exc:
                log.error("%s: cannot replay sequence numbers %d-%d: %s", partition, start, end, exc)
                tracker.replay_failed(partition, first, last, str(exc))
                return
            if events:
                self.engine.replaying = True
                try:
                    counts.update(self.handle(events, ids).counts)
                finally:
                    self.engine.replaying = False
            replayed += len(events)
            start = end + 1
        tracker.replayed(partition, first, last, replayed)
        log.info("%s: replay counts %s", partition, dict(counts))

    def _lane(self, ids: list[EventId | None], firsts: dict[str, int], result: BatchResult,
              fresh: dict[tuple[str, str], tuple[int, EventId | None, Applied | None]]) -> TickLane | None:
        """A :class:`~shared.serving.lane.TickLane` for this batch, or ``None`` (every event through
        :meth:`_apply`): the lane needs one partition with strictly increasing sequence numbers, all
        above the highest applied (a redelivery takes the event-by-event path, which re-emits)."""
        if len(firsts) != 1:
            return None
        (partition, first), = firsts.items()
        highest = self.applied.highest(partition)
        if highest is not None and first <= highest:
            return None
        last = first - 1
        for event_id in ids:
            if event_id is None or event_id[0] != partition or event_id[1] <= last:
                return None
            last = event_id[1]
        return TickLane(self.engine, self.gate, self.partitions.owner, partition, ids, result, fresh)

    def _apply(self, raw: RawEvent, result: BatchResult,
               fresh: dict[tuple[str, str], tuple[int, EventId | None, Applied | None]], index: int,
               event_id: EventId | None) -> Applied | None:
        """Decode ``raw`` (event ``index`` of the batch, at ``event_id``) and feed it to the engine;
        count it in ``result``; return what it produced (``None``: nothing), noting in ``fresh`` a
        tick that became its symbol's newest price."""
        try:
            tick: Tick = decode_tick(raw.body)
        except MalformedEventError as exc:
            return self._set_aside(result, raw, str(exc), "malformed")
        key = (tick.exchange, tick.symbol)
        partition = event_id[0] if event_id is not None else None
        owner = self.partitions.owner.get(key)
        if partition is not None and owner is not None and owner != partition:
            return self._set_aside(result, raw, f"{tick.exchange} {tick.symbol} belongs to {owner}, not {partition}",
                                   "wrong_partition")
        verdict = self.gate.check(tick)
        if verdict is not None:
            return self._set_aside(result, raw, verdict[1], verdict[0])
        rejected: list[tuple[int, str, str]] = []
        engine = self.engine
        created = key not in engine.symbols
        try:
            events = engine.step(tick, rejected)
            outputs = [encode(event) for event in events] if events else None
        except Exception as exc:  # one event's failure (model lookup, features, model) never blocks the batch
            log.exception("engine failed on %s event at %s", self.source, raw.position)
            return self._set_aside(result, raw, f"engine error: {type(exc).__name__}: {str(exc)[:300]}",
                                   "engine_error")
        if partition is not None and (owner is None or created):
            self.partitions.claim(key, partition, created)
        counts = result.counts
        counts["ticks"] += 1
        applied = None
        if outputs:
            applied = Applied(outputs)
            for event in events:
                counts[event.type + "s"] += 1
        if rejected:
            _, counter, reason = rejected[0]
            dead = self._set_aside(result, raw, reason, counter)
            if applied is None:
                return dead
            applied.deadletter = dead.deadletter
            return applied
        self.gate.accept(tick)
        latest = result.latest_prices
        known = latest.get(key)
        time_ms = tick.event_time_ms
        if known is None or (time_ms >= known[1] and (tick.price, time_ms) != known):
            latest[key] = (tick.price, time_ms)
            fresh[key] = (index, event_id, applied)
        return applied

    def _set_aside(self, result: BatchResult, raw: RawEvent, reason: str, counter: str) -> Applied:
        """Count and dead-letter ``raw``; its result is the dead letter alone."""
        result.set_aside(self.source, raw, reason, counter)
        return Applied(deadletter=result.deadletters.pop())


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
    poll_in_background: bool = False,
    snapshot_seconds: float = 0.0,
    replay: HubReplay | None = None,
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
    poll_in_background : re-read champion pointers on a thread (:meth:`ChampionSource.start_polling`),
        so that no bar close waits on a pointer read; the service's :meth:`~PredictService.close` stops it.
    snapshot_seconds, replay : see :class:`PredictService` (``STATE_SNAPSHOT_SECONDS``, the hub replay).
    """
    source = (
        ChampionSource(registry, default_key, poll_seconds, checkpoint_seconds)
        if registry is not None
        else (lambda e, s: None)
    )
    engine = ForecastEngine(source, interval_level=interval_level, forecast_model=forecast_model, warmup=warmup)
    if clock is not None:
        engine.clock = clock
    service = PredictService(engine, price_update_ms=price_update_ms, clock=clock or now_ms, state_store=state_store,
                             snapshot_seconds=snapshot_seconds, replay=replay)
    if poll_in_background and isinstance(source, ChampionSource):
        source.start_polling()
        service.closers.append(source.close)
    return service
