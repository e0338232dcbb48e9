"""Fuzzed messages through ``predict`` and ``archive`` never raise, and every invalid one is dead-lettered.

Messages are random JSON, and valid events with fields replaced by random types and values (huge
numbers, long strings, lists and objects where scalars belong), mixed with valid events.
"""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.contracts.batches import RawEvent
from shared.contracts.events import Bar, MalformedEventError, Prediction, Tick, decode_output, decode_tick, encode, to_dict
from shared.serving.predicting import build_predict_service
from shared.storage.archiving import ArchiveService
from shared.storage.history import HistoryStore

NOW = 1_795_000_000_000
TICK = Tick("kraken", "BTC/USD", 5, 10749.4, 0.004, "sell", NOW - 5_000, NOW)
BAR = Bar("kraken", "BTC/USD", 1561939200000, 10749.4, 10760.0, 10740.0, 10750.0, 3.5, 42)
PRED = Prediction("kraken", "BTC/USD", 1561939320000, NOW, 10750.0, 10751.0, 10700.0, 10800.0, 0.9,
                  "cold-start", 12, 0)

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=2**62, max_value=2**70),
    st.floats(), st.floats(min_value=1e300), st.text(max_size=300), st.text(min_size=30, max_size=40),
)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                      max_leaves=8)


def mutated(event) -> st.SearchStrategy[bytes]:
    """``event``'s wire form with 1-3 fields replaced (or dropped) by random values."""
    wire = to_dict(event)
    changes = st.dictionaries(st.sampled_from(sorted(wire)), values | st.just(None), min_size=1, max_size=3)
    return changes.map(lambda c: json.dumps(wire | c, allow_nan=True).encode())


def junk() -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.binary(max_size=200),
        values.map(lambda v: json.dumps(v, allow_nan=True).encode()),
        st.text(max_size=200).map(str.encode),
    )


def _valid(body: bytes, decode) -> bool:
    try:
        decode(body)
    except MalformedEventError:
        return False
    return True


def _positions(result) -> list[str]:
    return [json.loads(d)["position"] for d in result.deadletters]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(mutated(TICK), junk(), st.just(encode(TICK))), min_size=1, max_size=30))
def test_predict_never_raises_and_dead_letters_every_invalid_tick(bodies):
    service = build_predict_service(None, "default", 0.9, 10.0, clock=lambda: NOW)
    raws = [RawEvent(b, f"ticks[{i}]") for i, b in enumerate(bodies)]
    result = service.handle(raws)
    dead = set(_positions(result))
    for raw in raws:
        if not _valid(raw.body, decode_tick):
            assert raw.position in dead
    # every event is accounted for: applied, or dead-lettered with a reason (late and out-of-sequence
    # ticks reach the bar builder, so they are counted as ticks too)
    judged = result.counts["late"] + result.counts["out_of_sequence"]
    assert result.counts["ticks"] + len(result.deadletters) - judged == len(raws)
    assert all(json.loads(d)["reason"] for d in result.deadletters)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(mutated(BAR), mutated(PRED), junk(), st.just(encode(BAR)), st.just(encode(PRED))),
                min_size=1, max_size=20))
def test_archive_never_raises_and_dead_letters_every_invalid_event(tmp_path_factory, bodies):
    store = HistoryStore.from_url(None, sqlite_path=tmp_path_factory.mktemp("h") / "h.sqlite3")
    try:
        raws = [RawEvent(b, f"predictions[{i}]") for i, b in enumerate(bodies)]
        result = ArchiveService(store).handle(raws)
        dead = set(_positions(result))
        stored = 0
        for raw in raws:
            if _valid(raw.body, decode_output):
                assert raw.position not in dead
                stored += isinstance(decode_output(raw.body), (Bar, Prediction))
            else:
                assert raw.position in dead
        assert result.counts["bars"] + result.counts["predictions"] == stored
    finally:
        store.close()
