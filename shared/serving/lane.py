"""``predict``'s lane for the common tick: one parse, three checks, a few attributes moved.

Most ticks of a batch change nothing but the bar in progress of a symbol that is already known:
their trade id (if any) is above the last, their minute is the one being built, and the time and sequence
gate (:class:`shared.stream.sanity.TickGate`) has nothing to say. :meth:`PredictService._apply
<shared.serving.predicting.PredictService>` handles such a tick in about twenty calls (decode into
a :class:`~shared.contracts.events.Tick`, ownership, gate check, engine step, bar builder, gate
accept, latest price). :meth:`TickLane.run` handles a run of them with the wire struct of
:data:`~shared.contracts.events.decode_tick_wire` and, written out in its own loop, the gate's
check of a known symbol, :meth:`BarBuilder.extend <shared.stream.bars.BarBuilder.extend>` and
:meth:`TickGate.accept_known <shared.stream.sanity.TickGate.accept_known>`, and leaves the rest
(counters, the symbol's newest price) to be written back once, when a lane closes.

The rule: the lane takes a tick only where ``_apply`` would do exactly what the lane does, and
otherwise changes nothing and says no, and ``_apply`` handles the tick. Everything the lane relies on
for a symbol (its state and builder, its gate mark, no pending refused jump, no partial minute,
owned by the batch's partition, no tick features) is read when its :class:`_SymbolLane` opens;
only ``_apply`` of a tick of that symbol can change those facts, so :meth:`TickLane.before_apply`
is called before ``_apply`` runs: it writes back the counters and closes the lane of the event's
symbol (every lane, if the event did not parse in the lane). Results are therefore those
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
from shared.stream.bars import MINUTE_MS
from shared.stream.sanity import MAX_AHEAD_OF_INGEST_MS, MAX_ID_JUMP, MAX_IDS_PER_S, MAX_JUMP_MS, TickGate

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

    __slots__ = ("engine", "gate", "owner", "partition", "ids", "result", "fresh", "next", "_stopped", "_lanes",
                 "_taken")

    def __init__(self, engine: ForecastEngine, gate: TickGate, owner: dict[tuple[str, str], str], partition: str,
                 ids: Sequence[EventId | None], result: BatchResult, fresh: Fresh) -> None:
        self.engine, self.gate, self.owner, self.partition = engine, gate, owner, partition
        self.ids, self.result, self.fresh = ids, result, fresh
        self._lanes: dict[tuple[str, str], _SymbolLane | object] = {}
        self._taken = 0
        self.next = 0
        """The index of the first event :meth:`run` has not taken (after its last call)."""
        self._stopped: tuple[str, str] | None = None  # the symbol of that event, if it parsed here

    def run(self, events: Sequence[RawEvent], start: int) -> int:
        """Apply ``events[start:]`` while each is a common tick; return the index of the first one
        not taken (``len(events)``: all were). That event is left as it was: call
        :meth:`before_apply`, then ``_apply`` it. Never raises for a bad event: whatever the lane cannot parse or judge it
        leaves to ``_apply``.

        The loop is written out in one frame: per tick it is the decode, then exactly what
        :meth:`TickGate.check <shared.stream.sanity.TickGate.check>` (no ``future``, ``time_jump``
        or ``id_jump`` from the symbol's mark), :meth:`BarBuilder.extend
        <shared.stream.bars.BarBuilder.extend>` and :meth:`TickGate.accept_known
        <shared.stream.sanity.TickGate.accept_known>` do for a tick that passes them, tested
        against those on the same streams (``tests/unit/test_lane.py``). Three calls fewer a tick
        cost 12 % fewer instructions of a common tick (callgrind, docs/sizing.md "Fourth pass").
        """
        lanes, decode, open_, gate = self._lanes, decode_tick_wire, self._open, self.gate
        index, end = start, len(events)
        self._stopped = None
        feed = gate.feed  # moved in place below; replaced only by the gate's own accept (None before)
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
                if lane is _CLOSED:
                    self._stopped = key
                    break
                mark, builder = lane.mark, lane.builder
                time_ms, ingest_ms, trade_id = tick.event_time_ms, tick.ingest_time_ms, tick.trade_id
                # the gate: not ahead of ingest, no time jump, no trade id jump from the mark
                mark_ms, mark_id = mark.event_ms, mark.trade_id
                elapsed = time_ms - mark_ms
                since_ingest = ingest_ms - mark.ingest_ms
                if ((elapsed > 0 and time_ms > ingest_ms + MAX_AHEAD_OF_INGEST_MS)
                        or elapsed - (since_ingest if since_ingest > 0 else 0) > MAX_JUMP_MS
                        or (trade_id is not None and mark_id is not None and trade_id - mark_id
                            > MAX_ID_JUMP + MAX_IDS_PER_S * (elapsed if elapsed > 0 else 0) // 1000)):
                    self._stopped = key
                    break
                # the builder: the minute being built, the trade id above the last
                if (time_ms - time_ms % MINUTE_MS != builder._minute or trade_id is not None
                        and builder._last_trade_id is not None and trade_id <= builder._last_trade_id):
                    self._stopped = key
                    break
                price = tick.price
                if trade_id is not None:
                    builder._last_trade_id = trade_id
                if price > builder._high:
                    builder._high = price
                elif price < builder._low:
                    builder._low = price
                builder._close = price
                builder._volume += tick.quantity
                builder._count += 1
                # the gate accepts: the symbol's mark and the feed's move forward, in place
                if feed is None:  # no feed mark yet (a restored partition): the gate's own path
                    gate.accept_known(tick, mark)
                    feed = gate.feed
                else:
                    if elapsed >= 0:
                        mark.event_ms, mark.ingest_ms = time_ms, ingest_ms
                    if trade_id is not None and (mark_id is None or trade_id > mark_id):
                        mark.trade_id = trade_id
                    if time_ms >= feed.event_ms:
                        feed.event_ms, feed.ingest_ms = time_ms, ingest_ms
                # the newest price, as _apply keeps it (result.latest_prices, fresh)
                known_ms = lane.time_ms
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

    def before_apply(self) -> None:
        """Make way for ``_apply`` of the event :meth:`run` stopped at: write back the tick counters,
        and close the lane of that event's symbol (writing back its newest price), or every lane when
        the event did not parse here (``_apply`` may then find any symbol in it).

        Other symbols' lanes stay open: ``_apply`` of a tick changes only its own symbol's state,
        builder, gate mark and pending jump, ownership and newest price (plus counters, the feed's
        mark, which lanes move in place too, and the new-symbol tokens, which lanes never read).
        """
        self._write_counts()
        key = self._stopped
        if key is None:
            self.settle()
            return
        lane = self._lanes.pop(key, None)
        if lane is not None and lane is not _CLOSED:
            self._write_price(key, lane)

    def settle(self) -> None:
        """Write back what the lane holds (tick counters, each symbol's newest price) and close
        every symbol's lane: at the end of the batch (and for an event that did not parse here)."""
        self._write_counts()
        for key, lane in self._lanes.items():
            if lane is not _CLOSED:
                self._write_price(key, lane)
        self._lanes.clear()

    def _write_counts(self) -> None:
        if self._taken:
            self.engine.stats.ticks += self._taken
            self.result.counts["ticks"] += self._taken
            self._taken = 0

    def _write_price(self, key: tuple[str, str], lane: _SymbolLane) -> None:
        if lane.index >= 0:
            self.result.latest_prices[key] = (lane.price, lane.time_ms)
            self.fresh[key] = (lane.index, self.ids[lane.index], None)
            lane.index = -1
