"""The msgspec fast paths of the event codecs give exactly the checked codecs' outcome, or refuse.

:func:`decode_tick` tries a msgspec decoder (``shared.contracts.wire``) and falls back to
:func:`decode_tick_checked` (stdlib ``json`` + hand validation) when it refuses. These tests hold the
fast path to three rules: (1) ``decode_tick`` and ``decode_tick_checked`` have the same outcome (an
identical Tick, same value types and float signs, or the same error text) on every input; (2) when the
fast decoder accepts, its Tick is that outcome; (3) it refuses each input on which msgspec and
``json.loads`` differ (listed in ``EDGES``). ``encode`` and ``validate_tick`` are held to the same rule
against ``json.dumps`` and the checked decoder.
"""

from __future__ import annotations

import decimal
import json
import math
import re
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from shared.contracts import events
from shared.contracts.events import (
    Bar,
    DeadLetter,
    MalformedEventError,
    ModelChange,
    Prediction,
    PriceUpdate,
    Tick,
    decode_output,
    decode_output_checked,
    decode_tick,
    decode_tick_checked,
    encode,
    to_dict,
    validate_tick,
)

fast = events._decode_tick_fast

VALID = {
    "v": 1, "type": "tick", "exchange": "binance", "symbol": "BTCUSDT", "trade_id": 3735683259,
    "price": 61837.63, "quantity": 0.02, "side": "sell", "event_time_ms": 1723161255342,
    "ingest_time_ms": 1723161255400,
}
BASE = json.dumps(VALID, separators=(",", ":"))


def _typed(event: Any) -> tuple:
    """An event's class and fields with their exact types and reprs (so -0.0 != 0.0 and 5 != 5.0)."""
    return (type(event), tuple((name, type(getattr(event, name)), repr(getattr(event, name)))
                               for name in event.__slots__))


def outcome(decode: Any, raw: Any) -> tuple:
    """``("event", typed fields)`` or ``("error", reason text)``; any other exception propagates."""
    try:
        event = decode(raw)
    except MalformedEventError as exc:
        return ("error", str(exc))
    return ("event", _typed(event))


CODECS = {
    "tick": (decode_tick, decode_tick_checked, events._decode_tick_fast),
    "output": (decode_output, decode_output_checked, events._decode_output_fast),
}


def check(raw: Any, codec: str = "tick") -> bool:
    """Assert the two rules on ``raw``; return whether the fast decoder accepted it."""
    decode, checked, quick = CODECS[codec]
    reference = outcome(checked, raw)
    assert outcome(decode, raw) == reference
    event = quick(raw)
    if event is not None:
        assert ("event", _typed(event)) == reference
    if codec == "tick" and type(raw) in (bytes, str):  # predict's lane: the same parse, no Tick built
        try:
            wire_tick = events.decode_tick_wire(raw)
        except Exception:
            wire_tick = None
        assert (wire_tick is not None) == (event is not None)
        if wire_tick is not None:
            assert tuple((name, type(getattr(wire_tick, name)), repr(getattr(wire_tick, name)))
                         for name in Tick.__slots__) == reference[1][1]
    return event is not None


def sub(old: str, new: str, text: str = BASE) -> str:
    assert old in text
    return text.replace(old, new, 1)


def with_extra(extra: str) -> str:
    return BASE[:-1] + extra + "}"


# (id, raw input, does the fast decoder accept it?)
EDGES: list[tuple[str, Any, bool]] = [
    ("bytes", BASE.encode(), True),
    ("str", BASE, True),
    ("mapping", dict(VALID), False),
    ("bytearray", bytearray(BASE.encode()), False),
    ("memoryview", memoryview(BASE.encode()), False),
    ("bool for int", sub('"trade_id":3735683259', '"trade_id":true'), False),
    ("1.0 for int", sub('"event_time_ms":1723161255342', '"event_time_ms":1.0'), False),
    ("1e3 for int", sub('"trade_id":3735683259', '"trade_id":1e3'), False),
    ("int 2**63-1", sub('"trade_id":3735683259', f'"trade_id":{2**63 - 1}'), True),
    ("int 2**63", sub('"trade_id":3735683259', f'"trade_id":{2**63}'), False),
    ("int 2**64", sub('"trade_id":3735683259', f'"trade_id":{2**64}'), False),
    ("int 10**40", sub('"trade_id":3735683259', f'"trade_id":{10**40}'), False),
    ("negative int", sub('"trade_id":3735683259', '"trade_id":-1'), False),
    ("-0 int", sub('"trade_id":3735683259', '"trade_id":-0'), True),
    ("int 10**40 price", sub("61837.63", str(10**40)), False),
    ("int price", sub("61837.63", "5"), True),
    ("-0 quantity", sub('"quantity":0.02', '"quantity":-0'), True),
    ("-0.0 quantity", sub('"quantity":0.02', '"quantity":-0.0'), True),
    ("-0.0 price", sub("61837.63", "-0.0"), False),
    ("underflow quantity", sub('"quantity":0.02', '"quantity":1e-400'), True),
    ("huge exponent", sub('"quantity":0.02', '"quantity":1e400'), False),
    ("huge exponent int field", sub('"trade_id":3735683259', '"trade_id":1e400'), False),
    ("NaN", sub('"quantity":0.02', '"quantity":NaN'), False),
    ("Infinity", sub("61837.63", "Infinity"), False),
    ("-Infinity", sub('"quantity":0.02', '"quantity":-Infinity'), False),
    ("price 1e-12", sub("61837.63", "1e-12"), True),
    ("price 1e12", sub("61837.63", "1E+12"), True),
    ("price below 1e-12", sub("61837.63", repr(math.nextafter(1e-12, 0))), False),
    ("price above 1e12", sub("61837.63", repr(math.nextafter(1e12, math.inf))), False),
    ("quantity above 1e12", sub('"quantity":0.02', '"quantity":1000000000000.0001'), False),
    ("price as string", sub("61837.63", '"61837.63"'), False),
    ("duplicate key, last valid", with_extra(',"price":7.5'), True),
    ("duplicate key, last invalid", with_extra(',"price":-1'), False),
    ("duplicate key, first invalid", sub("61837.63", '"x"', with_extra(',"price":7.5')), False),
    ("duplicate side", with_extra(',"side":"buy"'), True),
    ("escaped lone surrogate", sub("BTCUSDT", "\\ud800"), False),
    ("escaped low surrogate", sub("BTCUSDT", "\\udc00x"), False),
    ("escaped surrogate pair", sub("BTCUSDT", "\\ud83d\\ude00"), True),
    ("raw lone surrogate in str", sub("BTCUSDT", "\ud800"), False),
    ("CESU-8 surrogate in bytes", sub("BTCUSDT", "X").encode().replace(b"X", b"\xed\xa0\x80"), False),
    ("invalid UTF-8", sub("BTCUSDT", "X").encode().replace(b"X", b"\xff"), False),
    ("overlong UTF-8", sub("BTCUSDT", "X").encode().replace(b"X", b"\xc0\xaf"), False),
    ("beyond U+10FFFF", sub("BTCUSDT", "X").encode().replace(b"X", b"\xf4\x90\x80\x80"), False),
    ("UTF-16 bytes", BASE.encode("utf-16"), False),
    ("BOM in bytes", b"\xef\xbb\xbf" + BASE.encode(), False),
    ("BOM in str", "\ufeff" + BASE, False),
    ("JSON whitespace", " \t\r\n" + BASE.replace(",", " ,\n").replace(":", "\t: ") + "\r\n ", True),
    ("form feed", "\f" + BASE, False),
    ("vertical tab", BASE + "\v", False),
    ("no-break space", "\xa0" + BASE, False),
    ("trailing data", BASE + "x", False),
    ("two objects", BASE + BASE, False),
    ("control character in string", sub("BTCUSDT", "BTC\nUSD"), False),
    ("NUL in string", sub("BTCUSDT", "BTC\x00USD"), False),
    ("escaped control character", sub("BTCUSDT", "BTC\\u0000USD"), True),
    ("top-level array", f"[{BASE}]", False),
    ("top-level string", json.dumps(BASE), False),
    ("empty", b"", False),
    ("v true", sub('"v":1', '"v":true'), False),
    ("v 1.0", sub('"v":1', '"v":1.0'), False),
    ("v 2", sub('"v":1', '"v":2'), False),
    ("v null", sub('"v":1', '"v":null'), False),
    ("no v", sub('"v":1,', ""), False),
    ("type list", sub('"type":"tick"', '"type":["tick"]'), False),
    ("type bar", sub('"type":"tick"', '"type":"bar"'), False),
    ("escaped key and value", sub('"price"', '"pr\\u0069ce"', sub('"sell"', '"s\\u0065ll"')), True),
    ("side BUY", sub('"sell"', '"BUY"'), False),
    ("exchange 32 astral", sub("binance", "\U0001F600" * 32), True),
    ("exchange 33 astral", sub("binance", "\U0001F600" * 33), False),
    ("symbol 64", sub("BTCUSDT", "S" * 64), True),
    ("symbol 65", sub("BTCUSDT", "S" * 65), False),
    ("empty exchange", sub("binance", ""), False),
    ("trade_id null", sub('"trade_id":3735683259', '"trade_id":null'), True),
    ("trade_id missing", sub('"trade_id":3735683259,', ""), True),
    ("side missing", sub('"side":"sell",', ""), False),
    ("unknown scalar", with_extra(',"venue_seq":7'), False),
    ("unknown nested", with_extra(',"x":{"a":[1,2,{"b":null}],"c":"\\ud800"}'), False),
    ("unknown NaN", with_extra(',"x":NaN'), False),
    ("unknown 5000-digit int", with_extra(',"x":' + "9" * 5000), False),
    ("unknown deep nesting", with_extra(',"x":' + "[" * 100_000 + "]" * 100_000), False),
    ("unknown invalid UTF-8", with_extra(',"x":"X"').encode().replace(b"X", b"\xff"), False),
    ("unknown invalid UTF-8 key", with_extra(',"X":1').encode().replace(b"X", b"\xff"), False),
]


@pytest.mark.parametrize(("raw", "accepted"), [(raw, ok) for _, raw, ok in EDGES],
                         ids=[i for i, _, _ in EDGES])
def test_edge_cases(raw: Any, accepted: bool) -> None:
    assert check(raw) == accepted


def test_fast_path_values_and_types() -> None:
    """A JSON integer price becomes a float, -0.0 keeps its sign, the last duplicate wins."""
    assert fast(sub("61837.63", "5")).price == 5.0 and type(fast(sub("61837.63", "5")).price) is float
    assert math.copysign(1.0, fast(sub('"quantity":0.02', '"quantity":-0.0')).quantity) == -1.0
    assert math.copysign(1.0, fast(sub('"quantity":0.02', '"quantity":-0')).quantity) == 1.0
    assert fast(with_extra(',"price":7.5')).price == 7.5
    assert fast(sub('"trade_id":3735683259,', "")).trade_id is None
    assert fast(BASE.encode()) == Tick("binance", "BTCUSDT", 3735683259, 61837.63, 0.02, "sell",
                                       1723161255342, 1723161255400)


def test_every_encoded_tick_takes_the_fast_path() -> None:
    """What the ingestor writes is what the fast decoder takes (else issue 15's gain is lost)."""
    tick = Tick("kraken", "BTC/USD", None, 1e-12, 0.0, "buy", 0, 2**63 - 1)
    assert fast(encode(tick)) == tick
    assert fast(encode(Tick("x", "ÄÖ\u2028😀", 1, 1e12, 1e12, "sell", 1, 2))) is not None


# ----------------------------------------------------------------------------- generated documents
WHITESPACE = st.sampled_from(["", "", "", " ", "\t", "\n", "\r", "\f", "\xa0", "\v"])
NUMBER = st.from_regex(r"-?(0|[1-9][0-9]{0,22})(\.[0-9]{1,20})?([eE][+-]?[0-9]{1,3})?", fullmatch=True)
BAD_NUMBER = st.sampled_from(
    ["01", "1.", ".5", "-", "+1", "1e", "0x10", "1_000", "NaN", "-Infinity", "Infinity"])
SCALAR = (
    st.none() | st.booleans() | st.integers() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats() | st.text(max_size=70)
)
JSONISH = st.recursive(SCALAR, lambda inner: st.lists(inner, max_size=3)
                       | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=6)
OUTPUTS = [
    to_dict(Bar("binance", "BTCUSDT", 1723161240000, 61837.63, 61861.99, 61556.0, 61700.5, 12.345, 1834)),
    to_dict(Prediction("binance", "BTCUSDT", 1723161360000, 1723161300123, 61700.5, 61702.1, 61650.0, 61760.0,
                       0.9, "cold-start", -35, 0)),
    to_dict(ModelChange("binance.BTCUSDT", "v2", "none", 1723161300123, "holdout MAE 1.2 < 1.5")),
    to_dict(PriceUpdate("binance", "BTCUSDT", 61837.63, 1723161255342, 1723161255400)),
]
ALL_VALID = {key: value for valid in [*OUTPUTS, VALID] for key, value in valid.items()}
KEYS = st.sampled_from(sorted(ALL_VALID)) | st.text(max_size=8)


@st.composite
def value_text(draw: st.DrawFn, key: str) -> str:
    """JSON text for one value: a valid one, a near miss, a number literal, or anything."""
    choice = draw(st.integers(0, 5))
    if choice == 0 and key in ALL_VALID:
        return json.dumps(ALL_VALID[key])
    if choice == 1:
        return draw(NUMBER)
    if choice == 2:
        return draw(BAD_NUMBER)
    if choice == 3:
        words = st.sampled_from(["buy", "sell", "tick", "bar", "price", "prediction", "", "S" * 65])
        return json.dumps(draw(words | st.text(max_size=40)), ensure_ascii=draw(st.booleans()))
    return json.dumps(draw(JSONISH), ensure_ascii=draw(st.booleans()))


def _escape_key(key: str, escape: bool) -> str:
    return '"' + "".join(f"\\u{ord(c):04x}" for c in key) + '"' if escape else json.dumps(key)


@st.composite
def documents(draw: st.DrawFn, valid: dict[str, Any] = VALID) -> str | bytes:
    """An event-like object as text: ``valid``'s pairs, some changed, dropped, repeated or added."""
    pairs = [(key, json.dumps(value)) for key, value in valid.items()]
    for _ in range(draw(st.integers(0, 3))):
        index = draw(st.integers(0, len(pairs) - 1))
        action = draw(st.integers(0, 3))
        key = pairs[index][0]
        if action == 0:
            pairs[index] = (key, draw(value_text(key)))
        elif action == 1 and len(pairs) > 1:
            del pairs[index]
        elif action == 2:
            pairs.insert(draw(st.integers(0, len(pairs))), (key, draw(value_text(key))))
        else:
            new_key = draw(KEYS)
            pairs.insert(draw(st.integers(0, len(pairs))), (new_key, draw(value_text(new_key))))
    pad = draw(WHITESPACE)
    body = ",".join(f"{pad}{_escape_key(k, draw(st.integers(0, 9)) == 0)}{pad}:{v}" for k, v in pairs)
    text = draw(WHITESPACE) + "{" + body + "}" + draw(WHITESPACE)
    form = draw(st.integers(0, 2))
    if form == 0:
        return text
    return text.encode("utf-8", "surrogatepass") if form == 1 else text.encode("utf-8", "replace")


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents())
@example(with_extra(',"price":1e400'))
@example(sub('"quantity":0.02', '"quantity":0.' + "0" * 400 + "1"))
def test_generated_documents(raw: str | bytes) -> None:
    check(raw)


@st.composite
def mutations(draw: st.DrawFn, base: bytes = BASE.encode()) -> bytes:
    """A valid encoded event with a few bytes inserted, deleted or replaced."""
    data = bytearray(base)
    interesting = st.sampled_from(list(b'{}[]":,-+.eE0123456789 \t\n\\u') + [0, 0x7F, 0xC0, 0xED, 0xEF, 0xFF])
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data) - 1))
        byte = draw(interesting | st.integers(0, 255))
        action = draw(st.integers(0, 2))
        if action == 0:
            data.insert(at, byte)
        elif action == 1:
            del data[at]
        else:
            data[at] = byte
    return bytes(data)


@settings(max_examples=1000, deadline=None)
@given(mutations(), st.booleans())
def test_mutated_ticks(raw: bytes, as_str: bool) -> None:
    if as_str:
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError:
            pass
    check(raw)


# ----------------------------------------------------------------------------- decode_output
def out(index: int, old: str = "", new: str = "", extra: str = "") -> str:
    text = json.dumps(OUTPUTS[index], separators=(",", ":"))
    return sub(old, new, text)[:-1] + extra + "}" if old else text[:-1] + extra + "}"


OUTPUT_EDGES: list[tuple[str, Any, bool]] = [
    ("bar", out(0).encode(), True),
    ("prediction", out(1), True),
    ("model change", out(2).encode(), True),
    ("price", out(3).encode(), True),
    ("mapping", dict(OUTPUTS[0]), False),
    ("type twice, same", out(0, extra=',"type":"bar"'), True),
    ("type twice, other", out(0, extra=',"type":"price"'), False),
    ("price type with bar fields", out(0, '"type":"bar"', '"type":"price"'), False),
    ("type escaped", out(3, '"type":"price"', '"type":"pr\u0069ce"'), True),
    ("type missing", out(3, '"type":"price",', ""), False),
    ("type tick", out(3, '"type":"price"', '"type":"tick"'), False),
    ("type deadletter", json.dumps(to_dict(DeadLetter("a", "b", "c", "d"))), False),
    ("v missing", out(0, '"v":1,', ""), False),
    ("v true", out(0, '"v":1', '"v":true'), False),
    ("unknown field", out(0, extra=',"x":1'), False),
    ("interval level 1", out(1, '"interval_level":0.9', '"interval_level":1'), False),
    ("interval level 0", out(1, '"interval_level":0.9', '"interval_level":0'), False),
    ("interval level 1e-300", out(1, '"interval_level":0.9', '"interval_level":1e-300'), True),
    ("latency INT_MIN", out(1, '"latency_ms":-35', f'"latency_ms":{-(2**63)}'), True),
    ("latency below INT_MIN", out(1, '"latency_ms":-35', f'"latency_ms":{-(2**63) - 1}'), False),
    ("drift alarms negative", out(1, '"drift_alarms":0', '"drift_alarms":-1'), False),
    ("forecast huge", out(1, '"upper":61760.0', '"upper":1e300'), True),
    ("forecast overflow", out(1, '"upper":61760.0', '"upper":1e400'), False),
    ("forecast -0.0", out(1, '"lower":61650.0', '"lower":-0.0'), False),
    ("forecast NaN", out(1, '"lower":61650.0', '"lower":NaN'), False),
    ("volume -0.0", out(0, '"volume":12.345', '"volume":-0.0'), True),
    ("volume 1e15", out(0, '"volume":12.345', '"volume":1e15'), True),
    ("volume above 1e15", out(0, '"volume":12.345', '"volume":1.0000000000000002e15'), False),
    ("bar price int", out(0, '"open":61837.63', '"open":61837'), True),
    ("bar price 0", out(0, '"open":61837.63', '"open":0'), False),
    ("model version 128", out(1, '"cold-start"', '"' + "m" * 128 + '"'), True),
    ("model version 129", out(1, '"cold-start"', '"' + "m" * 129 + '"'), False),
    ("reason 4096", out(2, '"holdout MAE 1.2 < 1.5"', '"' + "r" * 4096 + '"'), True),
    ("reason 4097", out(2, '"holdout MAE 1.2 < 1.5"', '"' + "r" * 4097 + '"'), False),
    ("reason empty", out(2, '"holdout MAE 1.2 < 1.5"', '""'), False),
    ("lone surrogate", out(2, '"v2"', '"\\udc00"'), False),
    ("invalid UTF-8", out(2, '"v2"', '"X"').encode().replace(b"X", b"\xff"), False),
    ("BOM", b"\xef\xbb\xbf" + out(3).encode(), False),
]


@pytest.mark.parametrize(("raw", "accepted"), [(raw, ok) for _, raw, ok in OUTPUT_EDGES],
                         ids=[i for i, _, _ in OUTPUT_EDGES])
def test_output_edge_cases(raw: Any, accepted: bool) -> None:
    assert check(raw, "output") == accepted


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(OUTPUTS).flatmap(documents))
def test_generated_outputs(raw: str | bytes) -> None:
    check(raw, "output")


@settings(max_examples=600, deadline=None)
@given(st.sampled_from([json.dumps(o, separators=(",", ":")).encode() for o in OUTPUTS]).flatmap(mutations))
def test_mutated_outputs(raw: bytes) -> None:
    check(raw, "output")


# ----------------------------------------------------------------------------- validate_tick
ANY_FIELD = (
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=70)
    | st.sampled_from([np.float64(2.5), np.int64(3), decimal.Decimal("1.5"), -0.0, 1e-12, 1e12, 2**63])
)


@st.composite
def odd_ticks(draw: st.DrawFn) -> Tick:
    """A Tick with valid fields, some replaced by values of any type."""
    good = dict(exchange="binance", symbol="BTCUSDT", trade_id=draw(st.none() | st.integers(0, 2**63 - 1)),
                price=draw(st.floats(1e-12, 1e12) | st.integers(1, 10**12)),
                quantity=draw(st.floats(0, 1e12)),
                side=draw(st.sampled_from(["buy", "sell"])), event_time_ms=draw(st.integers(0, 2**63 - 1)),
                ingest_time_ms=1723161255400)
    for name in draw(st.lists(st.sampled_from(list(good)), max_size=2)):
        good[name] = draw(ANY_FIELD)
    return Tick(**good)


@settings(max_examples=500, deadline=None)
@given(odd_ticks())
def test_validate_tick_matches_checked(tick: Tick) -> None:
    assert outcome(validate_tick, tick) == outcome(decode_tick_checked, to_dict(tick))


# ----------------------------------------------------------------------------- encode
def old_encode(event: Any) -> bytes:
    """``encode`` before msgspec: the reference."""
    return json.dumps(to_dict(event), separators=(",", ":"), allow_nan=False).encode()


def typed_tree(value: Any) -> Any:
    """Decoded JSON with every scalar's type and repr, dict keys in order."""
    if isinstance(value, dict):
        return [(key, typed_tree(item)) for key, item in value.items()]
    return (type(value), repr(value))


STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"')


def check_encode(event: Any) -> None:
    try:
        reference = old_encode(event)
    except Exception as exc:  # the new encode must fail the same way
        with pytest.raises(type(exc), match=re.escape(str(exc))):
            encode(event)
        return
    new = encode(event)
    assert typed_tree(json.loads(new)) == typed_tree(json.loads(reference))
    assert list(json.loads(new))[:2] == ["v", "type"]
    assert not re.search(rb"\s", STRINGS.sub(b'""', new)), new  # compact


EVENTS = [
    st.builds(Tick, exchange=st.text(max_size=8), symbol=st.text(max_size=8)),
    st.builds(Bar), st.builds(Prediction), st.builds(ModelChange), st.builds(DeadLetter),
    st.builds(PriceUpdate),
]


@st.composite
def odd_events(draw: st.DrawFn) -> Any:
    """Any event class with fields of their annotated types, some replaced by values of any type."""
    event = draw(st.one_of(EVENTS))
    values = {name: getattr(event, name) for name in event.__slots__}
    for name in draw(st.lists(st.sampled_from(list(values)), max_size=2)):
        values[name] = draw(ANY_FIELD | st.floats(allow_nan=True) | st.integers(2**62, 2**66))
    return type(event)(**values)


@settings(max_examples=800, deadline=None)
@given(odd_events())
def test_encode_matches_json_dumps(event: Any) -> None:
    check_encode(event)


@pytest.mark.parametrize("event", [
    Tick("binance", "BTCUSDT", None, 61837.63, 0.02, "sell", 1, 2),
    Tick("binance", "BTC\ud800", 1, 61837.63, 0.02, "sell", 1, 2),
    Tick("binance", "null", 1, 1e-05, 1e16, "sell", 1, 2),
    Tick("bïnance", "ÄÖ\u2028\x00\x7f😀", 1, -0.0, 1e22, "buy", 2**64, -(2**63)),
    Tick("binance", "BTCUSDT", True, np.float64(2.5), 0.02, "sell", np.int64(1), 2),
    Tick("binance", "BTCUSDT", 1, float("nan"), 0.02, "sell", 1, 2),
    Tick("binance", "BTCUSDT", None, 1.0, float("-inf"), "sell", 1, 2),
    Prediction("b", "S", 1, 2, 3.0, float("inf"), 1.0, 2.0, 0.9, "m", -5, 0),
    DeadLetter("ticks", "0@1", "why", '{"x":"\ufffd"}'),
    PriceUpdate("b", "S", decimal.Decimal("1.5"), 1, 2),
], ids=["null trade id", "lone surrogate", "null in text", "non-ascii, -0.0, big ints", "bool and numpy",
        "nan", "-inf with null", "inf prediction", "deadletter", "decimal"])
def test_encode_edge_cases(event: Any) -> None:
    check_encode(event)


def test_encode_uses_the_fast_path_for_plain_events() -> None:
    tick = Tick("binance", "BTCUSDT", None, 61837.63, 0.02, "sell", 1, 2)
    assert events._encode_fast(tick) == encode(tick) == old_encode(tick)
    assert events._encode_fast(Tick("b", "S", 1, float("nan"), 1.0, "buy", 1, 2)) is None
