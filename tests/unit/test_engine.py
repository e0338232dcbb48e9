"""The predict use case end to end without servers: real trade files through a cold-start PredictService."""

from __future__ import annotations

import dataclasses
import heapq
import json
from collections import defaultdict
from functools import cache

import pytest

from shared.stream.bars import MINUTE_MS, minute_of
from shared.contracts.batches import BatchResult, RawEvent
from shared.serving.engine import COLD_START_VERSION
from shared.contracts.events import SCHEMA_VERSION, Bar, Prediction, Tick, decode_output, encode, to_dict
from ingestor.parsers.recorded import read_recorded
from shared.serving.predicting import PredictService, build_predict_service
from tests.data_files import BTC_SPOT_CSV, ETH_SPOT_CSV, KRAKEN_CSV, data_file

CLOCK_MS = 1_900_000_000_000  # a fixed wall clock, later than every tick's ingest time


@cache
def _ticks(name: str) -> tuple[Tick, ...]:
    return tuple(r.tick for r in read_recorded(data_file(name)) if r.tick is not None)


def _btc_eth() -> list[Tick]:
    """BTC and ETH spot trades of the same ten minutes, merged in exchange-time order."""
    return list(heapq.merge(_ticks(BTC_SPOT_CSV), _ticks(ETH_SPOT_CSV), key=lambda t: t.event_time_ms))


def _service(clock=lambda: CLOCK_MS) -> PredictService:
    return build_predict_service(None, "default", 0.9, 10.0, clock=clock)


def _raw(ticks) -> list[RawEvent]:
    return [RawEvent(encode(t), f"ticks/0@{i}") for i, t in enumerate(ticks)]


def _feed(service: PredictService, raws: list[RawEvent], size: int) -> BatchResult:
    """Hand ``raws`` over in batches of ``size``; return the results merged in order."""
    total = BatchResult()
    for start in range(0, len(raws), size):
        result = service.handle(raws[start:start + size])
        total.outputs += result.outputs
        total.deadletters += result.deadletters
        total.counts.update(result.counts)
    return total


def _expected(ticks):
    """Per symbol: closed bars' open times and the ingest time of the tick that closed each."""
    closed: dict[str, list[tuple[int, int]]] = defaultdict(list)
    current: dict[str, int] = {}
    for t in ticks:
        m = minute_of(t.event_time_ms)
        if t.symbol in current and m != current[t.symbol]:
            closed[t.symbol].append((current[t.symbol], t.ingest_time_ms))
        current[t.symbol] = m
    return closed


def _check_run(ticks, result: BatchResult, service: PredictService, exchange: str):
    expected = _expected(ticks)
    events = [decode_output(raw) for raw in result.outputs]
    per_symbol: dict[str, list[Bar | Prediction]] = defaultdict(list)
    for e in events:
        assert e.exchange == exchange
        per_symbol[e.symbol].append(e)
    assert set(per_symbol) == set(expected)

    total_predictions = total_gaps = 0
    for symbol, closed in expected.items():
        distinct_minutes = len({minute_of(t.event_time_ms) for t in ticks if t.symbol == symbol})
        assert len(closed) == distinct_minutes - 1  # the last minute is still open
        seq = per_symbol[symbol]
        bars = [e for e in seq if isinstance(e, Bar)]
        preds = [e for e in seq if isinstance(e, Prediction)]
        assert [b.open_time_ms for b in bars] == [m for m, _ in closed]
        assert len(preds) == len(closed) - 1  # every closed bar that had a previous bar
        # each prediction directly follows the bar whose close triggered it
        assert isinstance(seq[0], Bar) and isinstance(seq[1], Bar)
        for bar, pred, (_, closing_ingest) in zip(bars[1:], preds, closed[1:]):
            assert seq[seq.index(bar) + 1] is pred
            assert pred.target_time_ms == bar.open_time_ms + MINUTE_MS
            assert pred.last_close == bar.close
            assert pred.model_version == COLD_START_VERSION == "cold-start"
            assert pred.interval_level == 0.9
            assert pred.made_at_ms == CLOCK_MS
            assert pred.latency_ms == CLOCK_MS - closing_ingest
            assert pred.lower <= pred.predicted_close <= pred.upper
            assert abs(pred.predicted_close / bar.close - 1) < 0.01
        total_predictions += len(preds)
        total_gaps += sum(
            b.open_time_ms != a.open_time_ms + MINUTE_MS for a, b in zip(bars[1:], bars[2:])
        )

    stats = service.engine.stats
    assert stats.ticks == len(ticks)
    assert stats.bars == sum(len(c) for c in expected.values())
    assert stats.predictions == total_predictions
    assert stats.unlearned_gaps == total_gaps
    assert stats.learned == total_predictions - len(expected) - total_gaps  # one pending per symbol
    assert (stats.late, stats.out_of_sequence) == (0, 0)
    assert result.counts["ticks"] == len(ticks)
    assert result.counts["bars"] == stats.bars and result.counts["predictions"] == total_predictions
    assert not result.deadletters and result.counts["malformed"] == 0
    return total_predictions, total_gaps


def test_kraken_hour():
    ticks = list(_ticks(KRAKEN_CSV))
    service = _service()
    result = _feed(service, _raw(ticks), 200)
    predictions, gaps = _check_run(ticks, result, service, "kraken")
    assert (predictions, gaps) == (58, 0)  # 60 minutes: 59 closed, the first has no previous bar
    assert service.engine.stats.learned == 57
    state = service.engine.symbols[("kraken", "BTC/USD")]
    assert state.forecaster.steps == 57 and state.model_version == "cold-start"


def test_kraken_hour_with_a_missing_minute():
    gap_minute = 1561939200000 + 30 * MINUTE_MS
    ticks = [t for t in _ticks(KRAKEN_CSV) if minute_of(t.event_time_ms) != gap_minute]
    service = _service()
    result = _feed(service, _raw(ticks), 200)
    predictions, gaps = _check_run(ticks, result, service, "kraken")
    assert (predictions, gaps) == (57, 1)
    assert service.engine.stats.unlearned_gaps == 1
    assert service.engine.stats.learned == 55  # the forecast for the empty minute is not learned


def test_binance_btc_and_eth():
    ticks = _btc_eth()
    assert len(ticks) == 19_904 + 14_515
    service = _service()
    result = _feed(service, _raw(ticks), 200)
    predictions, gaps = _check_run(ticks, result, service, "binance")
    assert (predictions, gaps) == (2 * 10, 0)  # 12 minutes each: 11 closed, 10 with a previous bar
    assert service.engine.stats.learned == 18
    # symbols do not teach each other: each forecaster learned its own 9 labels
    symbols = service.engine.symbols
    assert set(symbols) == {("binance", "BTCUSDT"), ("binance", "ETHUSDT")}
    assert [s.forecaster.steps for s in symbols.values()] == [9, 9]
    assert symbols[("binance", "BTCUSDT")].forecaster is not symbols[("binance", "ETHUSDT")].forecaster


# ----------------------------------------------------------------------------- bad input
def _bad_stream():
    """The BTC file with bad events slipped in; returns (events, clean ticks, expected dead letters)."""
    ticks = list(_ticks(BTC_SPOT_CSV))
    raws = _raw(ticks)
    good = encode(ticks[100]).decode()
    price = f'"price":{ticks[100].price!r}'
    assert price in good
    no_price = to_dict(ticks[100])
    del no_price["price"]
    boundary = next(i for i in range(1, len(ticks))
                    if minute_of(ticks[i].event_time_ms) != minute_of(ticks[i - 1].event_time_ms))
    closed_minute = minute_of(ticks[boundary - 1].event_time_ms)
    late = dataclasses.replace(ticks[boundary + 10], trade_id=None, event_time_ms=closed_minute + 30_000,
                               price=1.0, quantity=100.0)
    lower = dataclasses.replace(ticks[2_990], price=1e6)
    bad = {
        # insert before index: (position, body, counter, words in the reason)
        150: ("bad/json", b'{"v":1,"type":"tick","exchange":"binance","sym', "malformed", "not JSON"),
        151: ("bad/missing", json.dumps(no_price).encode(), "malformed", "price"),
        300: ("bad/zero", good.replace(price, '"price":0').encode(), "malformed", "price must be > 0"),
        301: ("bad/negative", good.replace(price, '"price":-5.5').encode(), "malformed", "price must be > 0"),
        450: ("bad/nan", good.replace(price, '"price":NaN').encode(), "malformed", "price must be finite"),
        2_000: ("bad/duplicate", raws[1_999].body, "out_of_sequence", f"trade id {ticks[1_999].trade_id}"),
        3_000: ("bad/lower", encode(lower), "out_of_sequence", f"trade id {lower.trade_id}"),
        boundary + 20: ("bad/late", encode(late), "late", "late tick"),
        len(ticks): ("bad/late-end", encode(late), "late", "late tick"),
    }
    events = []
    for i in range(len(raws) + 1):
        if i in bad:
            position, body, _, _ = bad[i]
            events.append(RawEvent(body, position))
        if i < len(raws):
            events.append(raws[i])
    return events, ticks, {pos: (body, counter, words) for pos, body, counter, words in bad.values()}


@pytest.mark.parametrize("size", [200, 7])
def test_bad_events_are_set_aside_and_the_rest_processed(size):
    events, ticks, bad = _bad_stream()
    assert len(events) == len(ticks) + len(bad)

    clean_service = _service()
    clean = _feed(clean_service, _raw(ticks), size)
    service = _service()
    result = _feed(service, events, size)

    assert result.counts["malformed"] == 5
    assert result.counts["out_of_sequence"] == 2
    assert result.counts["late"] == 2
    assert result.counts["ticks"] == len(ticks) + 4  # duplicate, lower id and late ticks decode fine
    assert (service.engine.stats.late, service.engine.stats.out_of_sequence) == (2, 2)

    letters = [json.loads(raw) for raw in result.deadletters]
    assert len(letters) == len(bad)
    by_position = {d["position"]: d for d in letters}
    assert set(by_position) == set(bad)
    for position, (body, counter, words) in bad.items():
        d = by_position[position]
        assert (d["v"], d["type"], d["source"]) == (SCHEMA_VERSION, "deadletter", "ticks")
        assert words in d["reason"], (position, d["reason"])
        assert d["payload"] == body.decode("utf-8", "replace")

    # every valid tick was still processed: same bars, same forecasts, byte for byte
    assert result.outputs == clean.outputs
    assert result.counts["bars"] == clean.counts["bars"] == 11
    assert result.counts["predictions"] == clean.counts["predictions"] == 10
    assert service.engine.stats.learned == clean_service.engine.stats.learned == 9


def test_batch_of_only_bad_events():
    service = _service()
    result = service.handle([RawEvent(b"", "p/0"), RawEvent(b"\xff\xfe", "p/1"), RawEvent(b"[]", "p/2")])
    assert result.outputs == [] and result.counts["malformed"] == 3 and result.counts["ticks"] == 0
    letters = [json.loads(raw) for raw in result.deadletters]
    assert [d["position"] for d in letters] == ["p/0", "p/1", "p/2"]
    assert letters[1]["payload"] == "\ufffd\ufffd"  # undecodable bytes kept with replacement characters
    assert service.engine.stats.ticks == 0


# ----------------------------------------------------------------------------- state across batches
def _without_times(raw: bytes) -> dict:
    d = json.loads(raw)
    d.pop("made_at_ms", None)
    d.pop("latency_ms", None)
    return d


def test_batch_size_does_not_change_outputs():
    ticks = _btc_eth()
    raws = _raw(ticks)
    one_service, big_service = _service(clock=None), _service(clock=None)  # the real wall clock
    one = _feed(one_service, raws, 1)
    big = _feed(big_service, raws, 500)
    assert len(one.outputs) == len(big.outputs) == 2 * (11 + 10)
    assert [_without_times(r) for r in one.outputs] == [_without_times(r) for r in big.outputs]
    assert one.counts == big.counts
    assert one_service.engine.stats == big_service.engine.stats
