"""``predict``'s lane for the common tick: one parse, three checks, a few attributes moved.

Most ticks of a batch change nothing but the bar in progress of a symbol that is already known:
their trade id is above the last, their minute is the one being built, and the time and sequence
gate (:class:`shared.stream.sanity.TickGate`) has nothing to say. :meth:`PredictService._apply
<shared.serving.predicting.PredictService>` handles such a tick in about twenty calls (decode into
a :class:`~shared.contracts.events.Tick`, ownership, gate check, engine step, bar builder, gate
accept, latest price). :meth:`TickLane.run` handles a run of them with the wire struct of
:data:`~shared.contracts.events.decode_tick_wire`, :meth:`TickGate.admits_known
<shared.stream.sanity.TickGate.admits_known>`, :meth:`BarBuilder.extend
<shared.stream.bars.BarBuilder.extend>` and :meth:`TickGate.accept_known
<shared.stream.sanity.TickGate.accept_known>`, and leaves the rest (counters, the symbol's newest
price) to be written once, by :meth:`TickLane.settle`.

The rule: the lane takes a tick only where ``_apply`` would do exactly what the lane does, and
otherwise changes nothing and says no, and ``_apply`` handles the tick. Everything the lane relies on
for a symbol (its state and builder, its gate mark, no pending refused jump, no partial minute,
owned by the batch's partition, no tick features) is read when its :class:`_SymbolLane` opens;
only ``_apply`` can change those facts, so :meth:`TickLane.settle` is called before ``_apply`` runs,
which writes back what the lane holds and closes every symbol's lane. Results are therefore those
of the event-by-event path, byte for byte (``tests/unit/test_lane.py`` runs both on the same
streams, with gaps, jumps, duplicates, late and malformed ticks, and compares outputs, counters
and state).
"""

from __future__ import annotations

from collections.abc import Sequence

from shared.contracts.batches import BatchResult, RawEvent
from shared.contracts.events import decode_tick_wire
from shared.serving.engine import ForecastEngine
from shared.serving.redelivery import Applied, EventId
from shared.stream.sanity import TickGate

Fresh = dict[tuple[str, str], tuple[int, "EventId | None", "Applied | None"]]
"""``(exchange, symbol)`` -> ``(index in the batch, event id, result)`` of the tick that became the
symbol's newest price in the batch (``PredictService.handle``'s ``fresh``)."""


class _SymbolLane:
    """What the lane holds for one symbol while open: its builder and gate mark, and its newest
    price in the batch (``price``, ``time_ms``, and ``index``: the tick's index when the lane set it
    and has not written it back yet, else ``-1``)."""

    __slots__ = ("builder", "mark", "price", "time_ms", "index")

    def __init__(self, builder, mark, latest: tuple[float, int] | None) -> None:
        self.builder, self.mark = builder, mark
        self.price, self.time_ms = latest if latest is not None else (None, None)
        self.index = -1


_CLOSED = object()
"""A symbol whose ticks go to ``_apply`` until the lane settles (new, partial, pending, ...)."""


class TickLane:
    """Takes the common ticks of one batch of one partition (see the module).

    Parameters
    ----------
    engine, gate, owner : the service's :class:`ForecastEngine`, :class:`TickGate`, and
        ``(exchange, symbol)`` -> owning partition map (``PartitionTracker.owner``).
    partition : the batch's partition (every event of the batch has an id on it).
    ids : the batch's event ids.
    result, fresh : the batch's :class:`BatchResult` and newest-price map, shared with ``handle``.
    """

    __slots__ = ("engine", "gate", "owner", "partition", "ids", "result", "fresh", "next", "_lanes", "_taken")

    def __init__(self, engine: ForecastEngine, gate: TickGate, owner: dict[tuple[str, str], str], partition: str,
                 ids: Sequence[EventId | None], result: BatchResult, fresh: Fresh) -> None:
        self.engine, self.gate, self.owner, self.partition = engine, gate, owner, partition
        self.ids, self.result, self.fresh = ids, result, fresh
        self._lanes: dict[tuple[str, str], _SymbolLane | object] = {}
        self._taken = 0
        self.next = 0
        """The index of the first event :meth:`run` has not taken (after its last call)."""

    def run(self, events: Sequence[RawEvent], start: int) -> int:
        """Apply ``events[start:]`` while each is a common tick; return the index of the first one
        not taken (``len(events)``: all were). That event is left as it was: call :meth:`settle`,
        then ``_apply`` it. Never raises for a bad event: whatever the lane cannot parse or judge it
        leaves to ``_apply``."""
        lanes, decode, open_ = self._lanes, decode_tick_wire, self._open
        admits, accept = self.gate.admits_known, self.gate.accept_known
        index, end = start, len(events)
        try:
            while index < end:
                body = events[index].body
                if type(body) is not bytes:
                    break
                try:
                    tick = decode(body)
                except Exception:  # msgspec refused it: the checked decoder says why, on the slow path
                    break
                key = (tick.exchange, tick.symbol)
                lane = lanes.get(key)
                if lane is None:
                    lane = lanes[key] = open_(key)
                if lane is _CLOSED or not admits(tick, lane.mark) or not lane.builder.extend(tick):
                    break
                accept(tick, lane.mark)
                # the newest price, as _apply keeps it (result.latest_prices, fresh)
                time_ms, price, known_ms = tick.event_time_ms, tick.price, lane.time_ms
                if known_ms is None or (time_ms >= known_ms and (price != lane.price or time_ms != known_ms)):
                    lane.price, lane.time_ms, lane.index = price, time_ms, index
                index += 1
        finally:
            self._taken += index - start
            self.next = index
        return index

    def _open(self, key: tuple[str, str]) -> _SymbolLane | object:
        engine = self.engine
        state = engine.symbols.get(key)
        mark, pending = self.gate.export(key)
        if (state is None or mark is None or pending is not None or state.partial is not None
                or engine.tick_features or self.owner.get(key) != self.partition):
            return _CLOSED
        return _SymbolLane(state.builder, mark, self.result.latest_prices.get(key))

    def settle(self) -> None:
        """Write back what the lane holds (tick counters, each symbol's newest price) and close
        every symbol's lane; before ``_apply`` runs and at the end of the batch."""
        if self._taken:
            self.engine.stats.ticks += self._taken
            self.result.counts["ticks"] += self._taken
            self._taken = 0
        latest, fresh, ids = self.result.latest_prices, self.fresh, self.ids
        for key, lane in self._lanes.items():
            if lane is not _CLOSED and lane.index >= 0:
                latest[key] = (lane.price, lane.time_ms)
                fresh[key] = (lane.index, ids[lane.index], None)
        self._lanes.clear()
