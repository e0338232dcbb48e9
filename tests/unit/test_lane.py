"""``predict``'s lane for the common tick (:mod:`shared.serving.lane`) changes no result.

The same streams go through two services, one with the lane and one whose ``_lane`` is switched off
(every event through ``_apply``, the event-by-event path). The streams mix common ticks with
everything the lane must leave alone: new symbols, bar closes, late and duplicated ticks, ticks
without a trade id, future ticks (far ahead, or just past the bound on a skewed clock), time and id
jumps (some confirmed), malformed bodies, ``str`` bodies, unknown fields, redelivered batches, and a
symbol whose ticks never carry a trade id (as Kraken's recorded trades). Every batch's result
(outputs byte for byte, dead letters, counters, latest prices) and, at the end, every piece of state
(engine counters, bar builders, pickled model-side state, the gate's marks, pending jumps, feed and
tokens, the applied events) must be the same; and the lane must have taken ticks, or the test proves
nothing.
"""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.contracts.batches import RawEvent
from shared.contracts.events import Tick, encode
from shared.serving import lane as lane_module
from shared.serving.engine import pickle_core
from shared.serving.predicting import PredictService, build_predict_service

T0 = 1_700_000_040_000
KINDS = ("common", "common", "common", "common", "common", "common", "minute", "dup", "late", "no_id",
         "future", "far_future", "skew", "time_jump", "id_jump", "malformed", "unknown_field", "str_body", "new_symbol")


def _service(with_lane: bool) -> PredictService:
    service = build_predict_service(None, "default", 0.9, 60.0, clock=lambda: T0 + 3_600_000, price_update_ms=0)
    if not with_lane:
        service._lane = lambda *args: None  # type: ignore[method-assign]
    return service


@st.composite
def streams(draw: st.DrawFn) -> list[tuple[list[RawEvent], list[tuple[str, int]]]]:
    """Batches of raw events on one partition: ``(events, ids)``, some batches delivered twice."""
    symbols = {s: [T0, T0 + 150, 1] for s in ("A", "B", "C", "K")}  # event ms, ingest ms, trade id; K has none
    bodies: list[bytes | str] = []
    for step in range(draw(st.integers(20, 260))):
        kind = draw(st.sampled_from(KINDS))
        if kind == "new_symbol":
            symbols[f"N{step}"] = [T0 + step * 500, T0 + step * 500 + 150, 1]
        name = draw(st.sampled_from(sorted(symbols)))
        clock = symbols[name]
        event, ingest, trade_id = clock
        advance = draw(st.integers(0, 9_000)) if kind != "minute" else 60_000
        if kind == "late":
            event -= 70_000
        elif kind == "dup":
            pass
        elif kind == "time_jump":
            event += 600_000
        elif kind == "id_jump":
            trade_id += 5_000_000
        else:
            event, ingest, trade_id = event + advance, ingest + advance, trade_id + draw(st.integers(1, 3))
        if kind == "far_future":
            event = ingest + 120_000
        elif kind == "future":  # 1 s after the symbol's clock, at its ingest time: future only when skewed
            event, ingest = clock[0] + 1_000, clock[1]
        elif kind == "skew":  # an exchange clock 59.5 s ahead of ingest: accepted, and the next ticks keep it
            ingest = event - 59_500
        price = draw(st.floats(50.0, 150.0, allow_nan=False)).__round__(4)
        tick = Tick("x", name, None if kind == "no_id" or name == "K" else trade_id, price, draw(st.sampled_from([0.0, 0.5, 2.0])),
                    "buy", event, ingest)
        if kind in ("common", "minute", "no_id", "new_symbol", "skew"):
            clock[:] = [event, ingest, trade_id]
        body = encode(tick)
        if kind == "malformed":
            body = body[:-3]
        elif kind == "unknown_field":
            body = body[:-1] + b',"venue":"y"}'
        elif kind == "str_body":
            body = json.dumps(json.loads(body))
        bodies.append(body)
    batches, seq = [], 0
    while seq < len(bodies):
        size = draw(st.integers(1, 60))
        chunk = bodies[seq:seq + size]
        batch = ([RawEvent(b, f"ticks[{seq + i}]") for i, b in enumerate(chunk)],
                 [("partition 0", seq + i) for i in range(len(chunk))])
        batches.append(batch)
        if draw(st.integers(0, 9)) == 0:  # a redelivery: the same batch again
            batches.append(batch)
        seq += len(chunk)
    return batches


def _state(service: PredictService) -> dict:
    engine, gate, applied = service.engine, service.gate, service.applied
    return {
        "stats": vars(engine.stats),
        "builders": {k: s.builder for k, s in engine.symbols.items()},
        "cores": {k: pickle_core(s) for k, s in engine.symbols.items()},
        "partial": {k: s.partial for k, s in engine.symbols.items()},
        "marks": dict(gate._marks), "pending": dict(gate._pending), "feed": gate.feed, "tokens": gate._tokens,
        "applied": (applied._results, applied._highest, applied._low),
        "owner": dict(service.partitions.owner),
    }


TAKEN: list[int] = []


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(streams())
def test_the_lane_gives_the_results_and_state_of_the_event_by_event_path(batches) -> None:
    fast, slow = _service(True), _service(False)
    original = lane_module.TickLane.run
    taken = 0

    def counting(self, events, start):
        nonlocal taken
        stop = original(self, events, start)
        taken += stop - start
        return stop

    lane_module.TickLane.run = counting
    try:
        for events, ids in batches:
            a, b = fast.handle(events, ids), slow.handle(events, ids)
            assert (a.outputs, a.deadletters, a.counts, a.latest_prices) == \
                   (b.outputs, b.deadletters, b.counts, b.latest_prices)
    finally:
        lane_module.TickLane.run = original
    assert _state(fast) == _state(slow)
    TAKEN.append(taken)


def test_the_lane_took_most_common_ticks() -> None:
    """The comparison above is not vacuous: across its examples the lane took ticks."""
    if not TAKEN:  # run alone: run the comparison first
        test_the_lane_gives_the_results_and_state_of_the_event_by_event_path()
    assert TAKEN and sum(TAKEN) > 0.2 * len(TAKEN) * 50


def test_a_batch_of_common_ticks_goes_through_the_lane() -> None:
    ticks = [Tick("x", "A", i + 1, 100.0 + i, 1.0, "buy", T0 + i * 100, T0 + i * 100 + 150) for i in range(50)]
    service = _service(True)
    events = [RawEvent(encode(t), f"ticks[{i}]") for i, t in enumerate(ticks)]
    ids = [("partition 0", i) for i in range(50)]
    original, calls = PredictService._apply, []
    service._apply = lambda raw, *rest: calls.append(raw) or original(service, raw, *rest)  # type: ignore[method-assign]
    result = service.handle(events, ids)
    assert calls == [events[0]]  # the symbol's first tick only: the other 49 took the lane
    assert result.counts["ticks"] == 50 and service.engine.stats.ticks == 50
    assert result.latest_prices[("x", "A")] == (149.0, T0 + 4_900)
    builder = service.engine.symbols[("x", "A")].builder
    assert (builder.open_minute_ms, builder.last_trade_id) == (T0 - T0 % 60_000, 50)
