"""Live-stream parsers (Binance parse_message, Coinbase matches, Kraken v2 trade): examples, the real
samples, and hypothesis fuzzing -- for any input they return a ParsedMessage or raise
MalformedEventError, nothing else, and every tick they return is valid."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.contracts.events import MalformedEventError, Tick, decode_tick, encode
from ingestor.parsers import binance, coinbase, kraken
from ingestor.parsers.common import KINDS, ParsedMessage, rfc3339_ms
from ingestor.parsers.recorded import read_recorded, split_ws_line
from tests.data_files import WS_SAMPLES, data_file
from tests.unit.test_parsers import SPOT_TRADE, ws_sample_lines

MATCH = {
    "type": "match",
    "trade_id": 280232,
    "maker_order_id": "a",
    "taker_order_id": "b",
    "side": "sell",
    "size": "985",
    "price": "0.00001305",
    "product_id": "SKL-BTC",
    "sequence": 177100030,
    "time": "2021-04-17T16:43:37.089723Z",
}
KRAKEN_TRADE = {
    "channel": "trade",
    "type": "update",
    "data": [
        {
            "symbol": "BTC/USD",
            "side": "sell",
            "price": 64000.1,
            "qty": 0.01,
            "ord_type": "market",
            "trade_id": 74263,
            "timestamp": "2024-08-09T00:00:00.123456Z",
        },
        {
            "symbol": "BTC/USD",
            "side": "buy",
            "price": 64000.2,
            "qty": 0.5,
            "ord_type": "limit",
            "trade_id": 74264,
            "timestamp": "2024-08-09T00:00:00.200000Z",
        },
    ],
}
SPOT = SPOT_TRADE


# ----------------------------------------------------------------------------- examples
def test_coinbase_match_taker_side_is_opposite_of_maker_side():
    p = coinbase.parse_message(json.dumps(MATCH), ingest_time_ms=5)
    assert p.kind == "trades"
    assert p.ticks == (Tick("coinbase", "SKL-BTC", 280232, 1.305e-05, 985.0, "buy", 1618677817089, 5),)
    p = coinbase.parse_message({**MATCH, "side": "buy", "type": "last_match"}, ingest_time_ms=5)
    assert p.ticks[0].side == "sell"


@pytest.mark.parametrize(
    "message, kind",
    [
        ({"type": "subscriptions", "channels": [{"name": "matches", "product_ids": ["BTC-USD"]}]}, "control"),
        (
            {
                "type": "heartbeat",
                "sequence": 90,
                "last_trade_id": 20,
                "product_id": "BTC-USD",
                "time": "2014-11-07T08:19:28.464459Z",
            },
            "control",
        ),
        (
            {"type": "error", "message": "Failed to subscribe", "reason": "BTC-XYZ is not a valid product"},
            "error",
        ),
        ({"type": "ticker", "product_id": "BTC-USD", "price": "1"}, "ignored"),
        ({"type": "brand_new"}, "unknown"),
        ({}, "unknown"),
    ],
)
def test_coinbase_other_messages(message, kind):
    assert coinbase.parse_message(message, ingest_time_ms=0).kind == kind


@pytest.mark.parametrize(
    "change, reason",
    [
        ({"price": "-1"}, "price"),
        ({"price": "abc"}, "price"),
        ({"size": None}, "size"),
        ({"side": "up"}, "side"),
        ({"trade_id": "1"}, "trade id"),
        ({"time": "yesterday"}, "time"),
        ({"time": "2021-13-17T16:43:37Z"}, "time"),
        ({"product_id": ""}, "product"),
    ],
)
def test_coinbase_bad_match_raises_with_reason(change, reason):
    with pytest.raises(MalformedEventError, match=reason):
        coinbase.parse_message({**MATCH, **change}, ingest_time_ms=0)


def test_kraken_trade_message_with_several_trades():
    p = kraken.parse_message(json.dumps(KRAKEN_TRADE), ingest_time_ms=1723161600300)
    assert p.kind == "trades" and not p.errors
    assert p.ticks == (
        Tick("kraken", "BTC/USD", 74263, 64000.1, 0.01, "sell", 1723161600123, 1723161600300),
        Tick("kraken", "BTC/USD", 74264, 64000.2, 0.5, "buy", 1723161600200, 1723161600300),
    )


def test_kraken_bad_item_is_reported_and_the_others_kept():
    bad = {**KRAKEN_TRADE["data"][0], "price": -3}
    p = kraken.parse_message({**KRAKEN_TRADE, "data": [bad, KRAKEN_TRADE["data"][1]]}, ingest_time_ms=0)
    assert [t.trade_id for t in p.ticks] == [74264] and len(p.errors) == 1 and "price" in p.errors[0]
    with pytest.raises(MalformedEventError, match="price"):
        kraken.parse_message({**KRAKEN_TRADE, "data": [bad]}, ingest_time_ms=0)
    with pytest.raises(MalformedEventError, match="list"):
        kraken.parse_message({"channel": "trade", "data": {}}, ingest_time_ms=0)


@pytest.mark.parametrize(
    "message, kind",
    [
        ({"channel": "heartbeat"}, "control"),
        (
            {"channel": "status", "type": "update", "data": [{"system": "online", "api_version": "v2"}]},
            "control",
        ),
        (
            {
                "method": "subscribe",
                "result": {"channel": "trade", "symbol": "BTC/USD"},
                "success": True,
                "req_id": 1,
            },
            "control",
        ),
        ({"method": "subscribe", "error": "Currency pair not supported", "success": False}, "error"),
        ({"method": "pong", "req_id": 2}, "control"),
        ({"channel": "book", "type": "update", "data": []}, "ignored"),
        ({"channel": "trade", "type": "update", "data": []}, "ignored"),
        ({"foo": 1}, "unknown"),
    ],
)
def test_kraken_other_messages(message, kind):
    assert kraken.parse_message(message, ingest_time_ms=0).kind == kind


@pytest.mark.parametrize(
    "message, kind",
    [
        ({"result": None, "id": 1}, "control"),
        ({"error": {"code": 2, "msg": "Invalid request"}, "id": 1}, "error"),
        ({"code": 1, "msg": "Invalid JSON"}, "error"),
        (
            {
                "stream": "btcusdt@bookTicker",
                "data": {"u": 1, "s": "BTCUSDT", "b": "1", "B": "1", "a": "2", "A": "1"},
            },
            "ignored",
        ),
        ({"stream": "btcusdt@depth@100ms", "data": {"e": "depthUpdate", "b": [], "a": []}}, "ignored"),
        (
            {
                "e": "trade",
                "s": "BTCUSDT",
                "X": "INSURANCE_FUND",
                "t": 1,
                "p": "1",
                "q": "1",
                "T": 1,
                "m": True,
            },
            "ignored",
        ),
        ({"hello": "world"}, "unknown"),
        ({"stream": "btcusdt@trade", "data": SPOT}, "trades"),
    ],
)
def test_binance_parse_message_kinds(message, kind):
    assert binance.parse_message(message, ingest_time_ms=0).kind == kind


def test_binance_subscribe_request_and_usdm_exchange():
    assert binance.subscribe_request(("BTCUSDT",), 3) == {
        "method": "SUBSCRIBE",
        "params": ["btcusdt@trade"],
        "id": 3,
    }
    p = binance.parse_message(
        {"stream": "btcusdt@trade", "data": {**SPOT, "X": "MARKET"}},
        ingest_time_ms=0,
        exchange="binance-usdm",
    )
    assert p.ticks[0].exchange == "binance-usdm"


def test_rfc3339():
    assert rfc3339_ms("2024-08-09T00:00:00Z") == 1723161600000
    assert rfc3339_ms("2024-08-09T00:00:00.123456789Z") == 1723161600123
    assert rfc3339_ms("2024-08-09T02:00:00.5+02:00") == 1723161600500
    for bad in ("2024-08-09", "2024-02-30T00:00:00Z", "x", 5, None, "2024-08-09T00:00:00"):
        with pytest.raises(MalformedEventError):
            rfc3339_ms(bad)


def test_samples_go_through_the_live_parsers():
    """Each sample line through the parser of its group gives the same ticks as the recorded reader."""
    live: list[Tick] = []
    for group, line in ws_sample_lines():
        recv_ns, text = split_ws_line(line)
        ingest = recv_ns // 1_000_000 if recv_ns is not None else 0
        if group == "D":
            p = coinbase.parse_message(text, ingest_time_ms=ingest)
        else:
            p = binance.parse_message(text, ingest_time_ms=ingest, exchange="binance")
        assert p.kind in ("trades", "ignored"), line
        live.extend(p.ticks)
    recorded = [r.tick for r in read_recorded(data_file(WS_SAMPLES)) if r.tick is not None]
    # the recorder's "<t1> | ..." lines have no receive time: the reader stamps exchange time instead
    assert [(t.exchange, t.symbol, t.trade_id, t.price) for t in live] == [
        (t.exchange, t.symbol, t.trade_id, t.price) for t in recorded
    ]


# ----------------------------------------------------------------------------- hypothesis
json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=5)
    ),
    max_leaves=20,
)
times = (
    st.sampled_from(
        [
            "2021-04-17T16:43:37.089723Z",
            "2021-02-30T00:00:00Z",
            "0000-01-01T00:00:00Z",
            "9999-12-31T23:59:59.999999999+14:00",
            "nope",
            "",
        ]
    )
    | st.from_regex(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})", fullmatch=True)
    | json_values
)
decimals = (
    st.sampled_from(["1", "0", "-1", "NaN", "inf", "1e999", ".5"]) | st.floats() | st.integers() | json_values
)
coinbase_fields = {
    "type": st.sampled_from(["match", "last_match", "heartbeat", "error", "ticker", "subscriptions"])
    | json_values,
    "trade_id": st.integers(min_value=-(2**70), max_value=2**70) | json_values,
    "side": st.sampled_from(["buy", "sell"]) | json_values,
    "size": decimals,
    "price": decimals,
    "product_id": st.sampled_from(["BTC-USD", "", "eth-usd"]) | json_values,
    "time": times,
}
kraken_item_fields = {
    "symbol": st.sampled_from(["BTC/USD", ""]) | json_values,
    "side": st.sampled_from(["buy", "sell"]) | json_values,
    "price": decimals,
    "qty": decimals,
    "trade_id": st.integers(min_value=-(2**70), max_value=2**70) | json_values,
    "timestamp": times,
}
near_match = st.builds(
    lambda c, d: {k: v for k, v in {**MATCH, **c}.items() if k not in d},
    st.fixed_dictionaries({}, optional=coinbase_fields),
    st.sets(st.sampled_from(sorted(MATCH))),
)
kraken_items = st.builds(
    lambda c: {**KRAKEN_TRADE["data"][0], **c}, st.fixed_dictionaries({}, optional=kraken_item_fields)
)
kraken_messages = st.fixed_dictionaries(
    {},
    optional={
        "channel": st.sampled_from(["trade", "heartbeat", "status", "book"]) | json_values,
        "method": st.sampled_from(["subscribe", "pong"]) | json_values,
        "success": json_values,
        "type": st.sampled_from(["snapshot", "update"]) | json_values,
        "data": st.lists(kraken_items | json_values, max_size=4) | json_values,
    },
)
anything = st.one_of(
    json_values,
    st.text(max_size=200),
    st.binary(max_size=200),
    near_match,
    kraken_messages,
    st.fixed_dictionaries({}, optional=coinbase_fields),
)


def _check(parse, message, as_text: bool) -> None:
    if as_text and not isinstance(message, (str, bytes)):
        message = json.dumps(message)
    try:
        result = parse(message, ingest_time_ms=1_700_000_000_000)
    except MalformedEventError as exc:
        assert str(exc)
        return
    assert isinstance(result, ParsedMessage) and result.kind in KINDS
    assert bool(result.ticks) == (result.kind == "trades")
    for tick in result.ticks:
        assert math.isfinite(tick.price) and tick.price > 0
        assert math.isfinite(tick.quantity) and tick.quantity >= 0
        assert tick.side in ("buy", "sell") and tick.trade_id is not None
        assert decode_tick(encode(tick)) == tick


FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(message=anything, as_text=st.booleans())
def test_coinbase_parser_never_raises_anything_else(message, as_text):
    _check(coinbase.parse_message, message, as_text)


@FUZZ
@given(message=anything, as_text=st.booleans())
def test_kraken_parser_never_raises_anything_else(message, as_text):
    _check(kraken.parse_message, message, as_text)


@FUZZ
@given(
    message=anything | st.builds(lambda d: {"stream": "btcusdt@trade", "data": d}, json_values),
    as_text=st.booleans(),
)
def test_binance_parse_message_never_raises_anything_else(message, as_text):
    _check(binance.parse_message, message, as_text)


@FUZZ
@given(text=times)
def test_rfc3339_never_raises_anything_else(text):
    try:
        value = rfc3339_ms(text)
    except MalformedEventError:
        return
    assert isinstance(value, int)
