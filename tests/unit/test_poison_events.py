"""Poison events never block a partition, and no outlier tick moves a symbol's clock or trade id.

Regression tests for each crash measured in issue 13 (item 1 and 2), an all-or-nothing engine
step, and a real replay interleaved with 1,000 outlier ticks that must give exactly the bars and
predictions of the clean replay.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from ingestor.parsers.recorded import read_recorded
from shared.contracts.batches import RawEvent
from shared.contracts.events import (
    STRING_LIMITS,
    Bar,
    MalformedEventError,
    Prediction,
    Tick,
    decode_output,
    decode_tick,
    encode,
    to_dict,
)
from shared.serving.predicting import PredictService, build_predict_service
from shared.storage.archiving import ArchiveService
from shared.storage.history import HistoryStore
from shared.storage.history.schema import KEY_LENGTHS

REPO = Path(__file__).resolve().parents[2]
KRAKEN = REPO / "samples" / "kraken_XBTUSD_trades_20190701T00Z-01Z.csv.gz"
ETH = REPO.parent / "shared" / "data" / "binance_spot_ETHUSDT_trades_20240808T2354Z-20240809T0005Z.csv.gz"
NOW = 1_795_000_000_000  # the wall clock of the service, ms since epoch UTC (2026-11)
TICK = Tick("kraken", "BTC/USD", None, 10749.4, 0.004, "sell", 1561939203172, NOW)


def _service() -> PredictService:
    return build_predict_service(None, "default", 0.9, 10.0, clock=lambda: NOW)


def _raws(bodies: list[bytes]) -> list[RawEvent]:
    return [RawEvent(b, f"ticks[{i}]") for i, b in enumerate(bodies)]


def _body(**changes) -> bytes:
    return json.dumps(to_dict(TICK) | changes).encode()


def _reasons(result) -> list[str]:
    return [json.loads(d)["reason"] for d in result.deadletters]


def test_key_bounds_equal_the_store_columns():
    assert STRING_LIMITS == KEY_LENGTHS


# ---------------------------------------------------------------- measured crashes of predict
@pytest.mark.parametrize("body", [
    _body(price=10**400),                                   # OverflowError in float() before
    _body().replace(b'"price": 10749.4', b'"price": 1e400'),  # inf
    _body(price=1.7e308),                                   # math domain error in the features before
    _body(symbol="X" * 250),                                # model key over 200 characters before
    _body(trade_id=2**63),                                  # beyond 63 bits
    _body(type=["tick"]),
    _body(side=["buy"]),
    _body(v=[1]),
    b"[" * 100_000,                                         # RecursionError in json
])
def test_each_measured_poison_tick_is_dead_lettered_and_the_batch_goes_on(body):
    assert body != _body()
    with pytest.raises(MalformedEventError):
        decode_tick(body)
    good = [TICK, Tick("kraken", "BTC/USD", None, 10750.0, 0.1, "buy", TICK.event_time_ms + 60_000, NOW)]
    result = _service().handle(_raws([encode(good[0]), body, encode(good[1])]))
    assert result.counts["malformed"] == 1 and len(result.deadletters) == 1
    assert json.loads(result.deadletters[0])["position"] == "ticks[1]"
    assert [json.loads(o)["type"] for o in result.outputs] == ["bar"]  # both valid ticks applied


def test_an_engine_error_on_one_tick_is_dead_lettered_and_leaves_no_trace():
    """A model source that raises for one symbol (the registry's ValueError for a bad key)."""
    def source(exchange, symbol):
        if symbol == "BAD":
            raise ValueError("invalid model key")
        return None
    from shared.serving.engine import ForecastEngine
    service = PredictService(ForecastEngine(source, clock=lambda: NOW), clock=lambda: NOW)
    bad = Tick("kraken", "BAD", None, 1.0, 1.0, "buy", TICK.event_time_ms, NOW)
    result = service.handle(_raws([encode(bad), encode(TICK)]))
    assert result.counts["engine_error"] == 1 and result.counts["ticks"] == 1
    assert "ValueError" in _reasons(result)[0]
    assert ("kraken", "BAD") not in service.engine.symbols


def _kraken(n: int | None = None) -> list[Tick]:
    ticks = [r.tick for r in read_recorded(KRAKEN) if r.tick is not None]
    # a speed-0 replay: ingest time is the wall clock now, a millisecond per tick
    return [Tick(t.exchange, t.symbol, t.trade_id, t.price, t.quantity, t.side, t.event_time_ms, NOW + i)
            for i, t in enumerate(ticks[:n])]


def _minute_events(outputs: list[bytes]) -> list[dict]:
    return [json.loads(o) for o in outputs if json.loads(o)["type"] in ("bar", "prediction")]


def test_a_failing_bar_close_is_all_or_nothing():
    """The engine raises once at a bar close after the features learned: the closing tick is
    dead-lettered and the run equals a clean run without that tick."""
    ticks = _kraken(600)
    service = _service()
    provider, calls = service.engine.provider, {"n": 0}
    real_refresh = provider.refresh

    def refresh(exchange, symbol, version):  # after resolve() taught the model: must be undone
        calls["n"] += 1
        if calls["n"] == 5:
            raise RuntimeError("injected")
        return real_refresh(exchange, symbol, version)

    provider.refresh = refresh
    failing = service.handle(_raws([encode(t) for t in ticks]))
    assert failing.counts["engine_error"] == 1
    index = int(json.loads(failing.deadletters[0])["position"][6:-1])
    clean = _service().handle(_raws([encode(t) for i, t in enumerate(ticks) if i != index]))
    assert _minute_events(failing.outputs) == _minute_events(clean.outputs)
    assert len(_minute_events(clean.outputs)) > 10


# ---------------------------------------------------------------- time and sequence sanity
def test_a_tick_dated_2100_is_refused_and_later_ticks_are_not_late():
    ticks = _kraken(300)
    poison = Tick("kraken", "BTC/USD", None, 10_000.0, 1.0, "buy", 4_102_444_800_000, NOW)
    result = _service().handle(_raws([encode(t) for t in ticks[:10]] + [encode(poison)] +
                                     [encode(t) for t in ticks[10:]]))
    assert result.counts["future"] == 1 and result.counts["late"] == 0 and result.counts["ticks"] == 300


def test_a_tick_three_minutes_ahead_in_a_replay_is_refused():
    ticks = _kraken(300)
    ahead = Tick("kraken", "BTC/USD", None, 10_000.0, 1.0, "buy", ticks[9].event_time_ms + 180_000, NOW + 9)
    result = _service().handle(_raws([encode(t) for t in ticks[:10]] + [encode(ahead)] +
                                     [encode(t) for t in ticks[10:]]))
    assert result.counts["time_jump"] == 1 and result.counts["late"] == 0 and result.counts["ticks"] == 300


def test_a_huge_trade_id_is_refused_and_later_ticks_are_in_sequence():
    ticks = [r.tick for r in read_recorded(ETH) if r.tick is not None][:300]
    poison = Tick("binance", "ETHUSDT", 2**63 - 1, 2683.0, 1.0, "buy", ticks[9].event_time_ms, ticks[9].ingest_time_ms)
    result = _service().handle(_raws([encode(t) for t in ticks[:10]] + [encode(poison)] +
                                     [encode(t) for t in ticks[10:]]))
    assert result.counts["id_jump"] == 1 and result.counts["out_of_sequence"] == 0
    assert result.counts["ticks"] == 300


def test_a_long_gap_in_a_fast_replay_is_accepted_after_confirmation():
    """Three consistent ticks after a recorded 10-minute gap re-anchor the symbol's clock."""
    ticks = _kraken(100)
    later = [Tick(t.exchange, t.symbol, None, t.price, t.quantity, t.side, t.event_time_ms + 600_000, t.ingest_time_ms)
             for t in ticks[50:]]
    result = _service().handle(_raws([encode(t) for t in ticks[:50] + later]))
    assert result.counts["time_jump"] == 2 and result.counts["ticks"] == 98


def test_a_new_symbol_far_behind_the_feed_is_stale_until_confirmed():
    live = Tick("binance", "ETHUSDT", 1, 2683.0, 1.0, "buy", NOW - 1_000, NOW)
    old = [Tick("kraken", "BTC/USD", None, 10_000.0, 1.0, "buy", TICK.event_time_ms + i, NOW + i) for i in range(4)]
    result = _service().handle(_raws([encode(t) for t in [live, *old]]))
    assert result.counts["stale"] == 2 and result.counts["ticks"] == 3


def test_new_symbols_are_bounded_per_interval():
    bodies = [encode(Tick("x", f"S{i}", None, 1.0, 1.0, "buy", NOW, NOW)) for i in range(70)]
    result = _service().handle(_raws(bodies))
    assert result.counts["ticks"] == 64 and result.counts["new_symbol_rate"] == 6


def _poisoned(ticks: list[Tick], n: int, seed: int) -> list[bytes]:
    """``ticks`` with ``n`` outliers inserted at random places: far future, minutes ahead, far past,
    huge or implausible trade ids, each judged against the valid tick before it."""
    rng = random.Random(seed)
    bodies = [encode(t) for t in ticks]
    for _ in range(n):
        at = rng.randrange(1, len(bodies))
        prev = Tick(**{k: v for k, v in json.loads(bodies[at - 1]).items() if k not in ("v", "type")})
        if json.loads(bodies[at - 1])["type"] != "tick" or prev.price <= 0:
            continue
        kind = rng.randrange(5)
        event, trade_id, ingest = prev.event_time_ms, prev.trade_id, prev.ingest_time_ms
        if kind == 0:
            event = ingest + rng.randint(61_000, 80 * 365 * 86_400_000)      # future
        elif kind == 1:
            event = event + rng.randint(180_000, 3_600_000)                 # minutes ahead of the stream
        elif kind == 2:
            event = event - rng.randint(3_600_000, 10 * 365 * 86_400_000)   # far past
        elif kind == 3:
            trade_id = 2**63 - 1 if trade_id is None else trade_id + rng.randint(10**8, 10**12)
            event = event + (rng.randint(180_000, 10**9) if prev.trade_id is None else 0)
        else:
            trade_id = 2**63 + rng.randint(0, 10**6)                       # malformed
        poison = to_dict(prev) | {"event_time_ms": event, "trade_id": trade_id, "price": prev.price * 1.5}
        bodies.insert(at, json.dumps(poison).encode())
    return bodies


@pytest.mark.parametrize("source", ["kraken", "binance"])
def test_a_replay_with_1000_outliers_gives_exactly_the_clean_bars_and_predictions(source):
    if source == "kraken":
        ticks = _kraken()
    else:
        ticks = [r.tick for r in read_recorded(ETH) if r.tick is not None]
    clean = _service().handle(_raws([encode(t) for t in ticks]))
    bodies = _poisoned(ticks, 1000, seed=13)
    dirty = _service().handle(_raws(bodies))
    assert len(bodies) - len(ticks) > 950
    assert _minute_events(dirty.outputs) == _minute_events(clean.outputs)
    assert len(_minute_events(clean.outputs)) >= 20
    assert len(dirty.deadletters) == len(bodies) - len(ticks) + len(clean.deadletters)


# ---------------------------------------------------------------- measured crashes of archive
BAR = Bar("kraken", "BTC/USD", 1561939200000, 10749.4, 10760.0, 10740.0, 10750.0, 3.5, 42)
PRED = Prediction("kraken", "BTC/USD", 1561939320000, NOW, 10750.0, 10751.0, 10700.0, 10800.0, 0.9,
                  "cold-start", 12, 0)


@pytest.mark.parametrize("body", [
    json.dumps(to_dict(BAR) | {"type": ["bar"]}).encode(),
    json.dumps(to_dict(BAR) | {"exchange": "x" * 33}).encode(),
    json.dumps(to_dict(BAR) | {"trade_count": 2**63}).encode(),
    json.dumps(to_dict(PRED) | {"model_version": "v" * 129}).encode(),
    json.dumps(to_dict(PRED) | {"latency_ms": -(2**63) - 1}).encode(),
    json.dumps(to_dict(BAR) | {"close": 10**400}).encode(),
])
def test_each_measured_poison_output_is_dead_lettered_and_the_rest_stored(tmp_path, body):
    with pytest.raises(MalformedEventError):
        decode_output(body)
    store = HistoryStore.from_url(None, sqlite_path=tmp_path / "h.sqlite3")
    try:
        result = ArchiveService(store).handle([RawEvent(encode(BAR), "p[0]"), RawEvent(body, "p[1]"),
                                               RawEvent(encode(PRED), "p[2]")])
        assert result.counts["malformed"] == 1 and json.loads(result.deadletters[0])["position"] == "p[1]"
        assert result.counts["bars"] == 1 and result.counts["predictions"] == 1
        assert len(store.bars("kraken", "BTC/USD")) == 1
    finally:
        store.close()


def test_an_event_the_store_refuses_is_dead_lettered_alone(tmp_path):
    store = HistoryStore.from_url(None, sqlite_path=tmp_path / "h.sqlite3")
    real = store.upsert_bars

    def upsert(bars):
        if any(b.symbol == "REFUSED" for b in bars):
            raise ValueError("value out of range for column")
        return real(bars)

    store.upsert_bars = upsert
    try:
        refused = Bar("kraken", "REFUSED", 0, 1.0, 1.0, 1.0, 1.0, 1.0, 1)
        result = ArchiveService(store).handle([RawEvent(encode(BAR), "p[0]"), RawEvent(encode(refused), "p[1]")])
        assert result.counts["store_refused"] == 1 and result.counts["bars"] == 1
        assert json.loads(result.deadletters[0])["position"] == "p[1]"
        assert len(store.bars("kraken", "BTC/USD")) == 1
    finally:
        store.close()
