"""Event codecs: round trips, tolerance of unknown fields, and rejection of bad fields."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.contracts.events import (
    SCHEMA_VERSION,
    Bar,
    DeadLetter,
    MalformedEventError,
    ModelChange,
    Prediction,
    Tick,
    decode_output,
    decode_tick,
    encode,
    to_dict,
    validate_tick,
)

TICK = Tick("binance", "BTCUSDT", 3735683259, 61837.63, 0.02, "sell", 1723161255342, 1723161254087)
BAR = Bar("binance", "BTCUSDT", 1723161240000, 61837.63, 61861.99, 61556.0, 61700.5, 12.345, 1834)
PREDICTION = Prediction(
    "binance", "BTCUSDT", 1723161360000, 1723161300123, 61700.5, 61702.1, 61650.0, 61760.0, 0.9,
    "cold-start", 35, 0,
)

# ----------------------------------------------------------------------------- strategies
names = st.text(min_size=1, max_size=12)
millis = st.integers(min_value=0, max_value=2**53)
positive = st.floats(min_value=1e-12, max_value=1e12, allow_nan=False, allow_infinity=False)
non_negative = st.floats(min_value=0.0, max_value=1e12, allow_nan=False, allow_infinity=False)

ticks = st.builds(
    Tick,
    exchange=names,
    symbol=names,
    trade_id=st.none() | st.integers(min_value=0, max_value=2**63 - 1),
    price=positive,
    quantity=non_negative,
    side=st.sampled_from(["buy", "sell"]),
    event_time_ms=millis,
    ingest_time_ms=millis,
)
bars = st.builds(
    Bar,
    exchange=names,
    symbol=names,
    open_time_ms=millis.map(lambda t: t - t % 60_000),
    open=positive,
    high=positive,
    low=positive,
    close=positive,
    volume=non_negative,
    trade_count=st.integers(min_value=0, max_value=10**7),
)
predictions = st.builds(
    Prediction,
    exchange=names,
    symbol=names,
    target_time_ms=millis,
    made_at_ms=millis,
    last_close=positive,
    predicted_close=positive,
    lower=positive,
    upper=positive,
    interval_level=st.floats(min_value=1e-6, max_value=1 - 1e-6),
    model_version=names,
    latency_ms=st.integers(min_value=-(2**40), max_value=2**40),
    drift_alarms=st.integers(min_value=0, max_value=10**6),
)


# ----------------------------------------------------------------------------- round trips
@settings(max_examples=200)
@given(ticks)
def test_tick_round_trip(tick):
    raw = encode(tick)
    assert isinstance(raw, bytes)
    assert decode_tick(raw) == tick
    assert decode_tick(raw.decode()) == tick  # text
    assert decode_tick(json.loads(raw)) == tick  # already-parsed mapping
    assert validate_tick(tick) == tick


@settings(max_examples=200)
@given(st.one_of(bars, predictions))
def test_output_round_trip(event):
    raw = encode(event)
    back = decode_output(raw)
    assert type(back) is type(event)
    assert back == event


def test_wire_form_is_compact_json_with_version_and_type_first():
    raw = encode(TICK)
    assert raw.startswith(b'{"v":1,"type":"tick",')
    assert b" " not in raw
    assert list(json.loads(raw))[:2] == ["v", "type"]
    assert json.loads(raw)["v"] == SCHEMA_VERSION == 1
    assert json.loads(encode(BAR))["type"] == "bar"
    assert json.loads(encode(PREDICTION))["type"] == "prediction"
    assert json.loads(encode(DeadLetter("ticks", "ticks/0@1", "why", "{}")))["type"] == "deadletter"


def test_encode_refuses_non_finite_values():
    with pytest.raises(ValueError):
        encode(Tick("x", "S", 1, float("nan"), 1.0, "buy", 0, 0))


# ----------------------------------------------------------------------------- tolerance
@pytest.mark.parametrize("event", [TICK, BAR, PREDICTION], ids=["tick", "bar", "prediction"])
def test_unknown_fields_are_ignored(event):
    obj = to_dict(event) | {"extra": {"nested": [1, 2]}, "zzz": None, "price_usd": "n/a"}
    decode = decode_tick if isinstance(event, Tick) else decode_output
    assert decode(json.dumps(obj)) == event


def test_missing_trade_id_means_none():
    obj = to_dict(TICK)
    del obj["trade_id"]
    assert decode_tick(obj).trade_id is None
    assert decode_tick(to_dict(TICK) | {"trade_id": None}).trade_id is None


def test_negative_latency_is_allowed_in_prediction():
    obj = to_dict(PREDICTION) | {"latency_ms": -1500}
    assert decode_output(obj).latency_ms == -1500


def test_zero_quantity_and_volume_are_allowed():
    assert decode_tick(to_dict(TICK) | {"quantity": 0}).quantity == 0.0
    assert decode_output(to_dict(BAR) | {"volume": 0, "trade_count": 0}).volume == 0.0


# ----------------------------------------------------------------------------- rejection
def _rejects(decode, raw, *words: str) -> str:
    with pytest.raises(MalformedEventError) as info:
        decode(raw)
    message = str(info.value)
    for word in words:
        assert word in message, f"{word!r} not named in {message!r}"
    return message


@pytest.mark.parametrize(
    "raw, words",
    [
        (b'{"v":1,"type":"tick",', ["not JSON"]),
        (b"\xff\xfe\x00garbage", ["not JSON"]),
        ("", ["not JSON"]),
        ("[1, 2]", ["not a JSON object", "list"]),
        ("42", ["not a JSON object", "int"]),
        ('"tick"', ["not a JSON object", "str"]),
    ],
)
def test_not_an_object(raw, words):
    _rejects(decode_tick, raw, *words)
    _rejects(decode_output, raw, *words)


@pytest.mark.parametrize("version", [0, 2, "1", None, [1]])
def test_wrong_schema_version(version):
    _rejects(decode_tick, to_dict(TICK) | {"v": version}, "version", f"v={version!r}")
    _rejects(decode_output, to_dict(BAR) | {"v": version}, "version")
    _rejects(decode_output, to_dict(PREDICTION) | {"v": version}, "version")


def test_missing_schema_version():
    obj = to_dict(TICK)
    del obj["v"]
    _rejects(decode_tick, obj, "version")


@pytest.mark.parametrize("token", [b"true", b"1.0"])
def test_boolean_or_float_schema_version_is_rejected(token):
    # JSON true used to pass as v=1 (True == 1 in Python), though booleans are refused as numbers elsewhere
    raw = encode(TICK).replace(b'"v":1', b'"v":' + token)
    assert raw.startswith(b'{"v":' + token + b',')
    _rejects(decode_tick, raw, "version")
    _rejects(decode_output, encode(BAR).replace(b'"v":1', b'"v":' + token), "version")


@pytest.mark.parametrize(
    "decode, obj, typ",
    [
        (decode_tick, to_dict(TICK) | {"type": "bar"}, "'bar'"),
        (decode_tick, to_dict(TICK) | {"type": "TICK"}, "'TICK'"),
        (decode_tick, to_dict(TICK) | {"type": None}, "None"),
        (decode_output, to_dict(BAR) | {"type": "tick"}, "'tick'"),
        (decode_output, to_dict(BAR) | {"type": "deadletter"}, "'deadletter'"),
        (decode_output, to_dict(PREDICTION) | {"type": "forecast"}, "'forecast'"),
    ],
)
def test_wrong_type(decode, obj, typ):
    _rejects(decode, obj, "type", typ)


TICK_FIELDS = ["exchange", "symbol", "price", "quantity", "side", "event_time_ms", "ingest_time_ms"]
BAR_FIELDS = [f for f in to_dict(BAR) if f not in ("v", "type")]
PREDICTION_FIELDS = [f for f in to_dict(PREDICTION) if f not in ("v", "type")]


@pytest.mark.parametrize("field", TICK_FIELDS)
def test_tick_missing_field(field):
    obj = to_dict(TICK)
    del obj[field]
    _rejects(decode_tick, obj, field)
    _rejects(decode_tick, to_dict(TICK) | {field: None}, field)


@pytest.mark.parametrize(
    "event, field",
    [(BAR, f) for f in BAR_FIELDS] + [(PREDICTION, f) for f in PREDICTION_FIELDS],
)
def test_output_missing_field(event, field):
    obj = to_dict(event)
    del obj[field]
    _rejects(decode_output, obj, field)


@pytest.mark.parametrize(
    "field", ["trade_id", "price", "quantity", "event_time_ms", "ingest_time_ms"]
)
@pytest.mark.parametrize("flag", ["true", "false"])
def test_tick_bool_is_not_a_number(field, flag):
    text = json.dumps(to_dict(TICK) | {field: "__flag__"}).replace('"__flag__"', flag)
    _rejects(decode_tick, text, field)


@pytest.mark.parametrize(
    "event, field",
    [(BAR, f) for f in ("open_time_ms", "open", "high", "low", "close", "volume", "trade_count")]
    + [(PREDICTION, f) for f in ("target_time_ms", "made_at_ms", "last_close", "predicted_close",
                                  "lower", "upper", "interval_level", "latency_ms",
                                  "drift_alarms")],
)
def test_output_bool_is_not_a_number(event, field):
    _rejects(decode_output, to_dict(event) | {field: True}, field)


@pytest.mark.parametrize(
    "value, why",
    [
        ("NaN", "finite"),
        ("Infinity", "finite"),
        ("-Infinity", "finite"),
        ("1e999", "finite"),
        ("0", "> 0"),
        ("0.0", "> 0"),
        ("-0.0", "> 0"),
        ("-61837.63", "> 0"),
        ('"61837.63"', "number"),
        ("null", "number"),
    ],
)
def test_bad_price(value, why):
    # raw JSON text, as a non-conforming producer (or Python's json with NaN) would send it
    text = encode(TICK).decode().replace('"price":61837.63', f'"price":{value}')
    assert f'"price":{value}' in text
    _rejects(decode_tick, text, "price", why)


@pytest.mark.parametrize(
    "value, why",
    [("-0.02", ">= 0"), ("-1e-12", ">= 0"), ("NaN", "finite"), ("Infinity", "finite"), ('"0.02"', "number")],
)
def test_bad_quantity(value, why):
    text = encode(TICK).decode().replace('"quantity":0.02', f'"quantity":{value}')
    _rejects(decode_tick, text, "quantity", why)


@pytest.mark.parametrize("side", ["BUY", "Sell", "bid", "", None, 1, True])
def test_bad_side(side):
    _rejects(decode_tick, to_dict(TICK) | {"side": side}, "side", repr(side))


@pytest.mark.parametrize(
    "field, value",
    [
        ("trade_id", -1),
        ("trade_id", 1.5),
        ("trade_id", "3735683259"),
        ("event_time_ms", -1),
        ("event_time_ms", 1723161255342.5),
        ("ingest_time_ms", -5),
        ("ingest_time_ms", "1723161254087"),
        ("exchange", ""),
        ("exchange", 7),
        ("symbol", ""),
        ("symbol", ["BTCUSDT"]),
    ],
)
def test_tick_bad_field_values(field, value):
    _rejects(decode_tick, to_dict(TICK) | {field: value}, field, repr(value))


@pytest.mark.parametrize(
    "event, field, value, why",
    [
        (BAR, "open", 0, "> 0"),
        (BAR, "high", -1.0, "> 0"),
        (BAR, "low", float("nan"), "finite"),
        (BAR, "close", float("inf"), "finite"),
        (BAR, "volume", -0.5, ">= 0"),
        (BAR, "trade_count", -1, ">= 0"),
        (BAR, "trade_count", 3.0, "integer"),
        (BAR, "open_time_ms", -60_000, ">= 0"),
        (BAR, "symbol", "", "non-empty"),
        (PREDICTION, "predicted_close", 0.0, "> 0"),
        (PREDICTION, "lower", -1.0, "> 0"),
        (PREDICTION, "upper", float("nan"), "finite"),
        (PREDICTION, "last_close", float("-inf"), "finite"),
        (PREDICTION, "interval_level", 0.0, "(0, 1)"),
        (PREDICTION, "interval_level", 1.0, "(0, 1)"),
        (PREDICTION, "interval_level", 90, "(0, 1)"),
        (PREDICTION, "interval_level", -0.9, ">= 0"),
        (PREDICTION, "made_at_ms", -1, ">= 0"),
        (PREDICTION, "latency_ms", 1.5, "integer"),
        (PREDICTION, "model_version", "", "non-empty"),
    ],
)
def test_output_bad_field_values(event, field, value, why):
    _rejects(decode_output, to_dict(event) | {field: value}, field, why)


@settings(max_examples=100)
@given(
    ticks,
    st.sampled_from(["price", "quantity"]),
    st.floats(max_value=-1e-300) | st.just(float("nan")) | st.just(float("inf")),
)
def test_any_invalid_number_is_malformed(tick, field, value):
    with pytest.raises(MalformedEventError, match=field):
        decode_tick(to_dict(tick) | {field: value})


def test_model_change_round_trip_and_archive_type_accepted():
    change = ModelChange("binance-btcusdt", "20261122T2200Z-1a2b", "none", 1795384800123, "no champion")
    assert decode_output(encode(change)) == change
    with pytest.raises(MalformedEventError, match="model_change"):
        decode_output(to_dict(change) | {"type": "tick"})
