"""Event records exchanged on the hubs, and their JSON codecs.

Every event is one UTF-8 JSON object with a schema version ``v`` and a ``type``
(``tick``, ``bar``, ``prediction``, ``price``, ``model_change``, ``deadletter``). Unknown fields are ignored
on decode, so producers may add fields without breaking consumers; a missing or
invalid required field raises :class:`MalformedEventError`, which callers count
and set aside (dead-letter) without failing the rest of their batch. Decoding bounds
every field to what the consumers and the history store can hold (key strings to the
store's column lengths, integers to 64 bits, prices and quantities to finite, sane
ranges), and the decoders raise nothing but :class:`MalformedEventError`.

Units everywhere: prices in the quote currency of the symbol (USD or USDT for
BTC pairs), quantities in the base asset, times in integer milliseconds since
the Unix epoch, UTC. Contract: ``docs/api.md`` ("Events on the hubs").

Examples
--------
>>> t = Tick("binance", "BTCUSDT", 1, 61837.63, 0.02, "sell", 1723161255342, 1723161255400)
>>> decode_tick(encode(t)) == t
True
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Annotated, Any

from msgspec import Meta

from shared.contracts import wire

SCHEMA_VERSION = 1
"""Version written into every event's ``v`` field; decoders accept exactly this version."""

SIDES = ("buy", "sell")
"""Allowed values of :attr:`Tick.side` (the taker's side of the trade)."""


class MalformedEventError(ValueError):
    """An event that cannot be decoded or fails validation; ``str()`` says why."""


@dataclass(frozen=True, slots=True)
class Tick:
    """One trade as reported by an exchange (hub ``ticks``, partition key = ``symbol``).

    Attributes
    ----------
    exchange : lower-case venue id, e.g. ``binance``, ``binance-usdm``, ``kraken``.
    symbol : exchange-native symbol, upper case, e.g. ``BTCUSDT`` or ``BTC/USD``.
    trade_id : the exchange's trade id, or ``None`` when the source has none.
    price : trade price in quote currency, in [1e-12, 1e12] (:data:`PRICE_MIN`, :data:`PRICE_MAX`).
    quantity : traded amount in base currency, in [0, 1e12] (:data:`QUANTITY_MAX`).
    side : taker side, ``buy`` or ``sell``.
    event_time_ms : exchange trade time, ms since epoch UTC.
    ingest_time_ms : when the ingestor published the tick, ms since epoch UTC.
    """

    exchange: str
    symbol: str
    trade_id: int | None
    price: float
    quantity: float
    side: str
    event_time_ms: int
    ingest_time_ms: int

    type = "tick"


@dataclass(frozen=True, slots=True)
class Bar:
    """A closed one-minute OHLCV bar (hub ``predictions``, ``type`` = ``bar``).

    ``open_time_ms`` is the start of the minute (a multiple of 60,000 ms, UTC);
    prices in quote currency, ``volume`` in base currency, ``trade_count`` trades.
    """

    exchange: str
    symbol: str
    open_time_ms: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    trade_count: int

    type = "bar"


@dataclass(frozen=True, slots=True)
class Prediction:
    """A forecast of one minute's close (hub ``predictions``, ``type`` = ``prediction``).

    Made when the bar of minute ``target_time_ms - 60,000`` closed; the target is
    the close of the minute starting at ``target_time_ms`` (ms since epoch UTC).
    ``lower``/``upper`` bound the prediction interval at ``interval_level``
    (e.g. 0.9 for 90 %), all prices in quote currency. ``latency_ms`` is the
    time from the ingest of the tick that closed the bar to ``made_at_ms``.
    ``drift_alarms`` counts the concept-drift alarms raised by the model's drift
    detector on this symbol since the model version started serving it.
    """

    exchange: str
    symbol: str
    target_time_ms: int
    made_at_ms: int
    last_close: float
    predicted_close: float
    lower: float
    upper: float
    interval_level: float
    model_version: str
    latency_ms: int
    drift_alarms: int

    type = "prediction"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An input that was set aside: where it came from, why, and its raw text.

    ``source`` names the hub or file, ``position`` the place in it (partition and
    offset, sequence number, or line), ``payload`` the raw bytes decoded as UTF-8
    with replacement characters.
    """

    source: str
    position: str
    reason: str
    payload: str

    type = "deadletter"


@dataclass(frozen=True, slots=True)
class ModelChange:
    """A champion change of one model key (hub ``predictions``, ``type`` = ``model_change``).

    Emitted when ``promote_model`` promotes ``version`` to champion of ``key``
    (``previous_version`` is ``"none"`` when there was no champion).
    ``changed_at_ms`` is when the pointer was written (ms since epoch UTC);
    ``reason`` states the decision with its holdout figures.
    """

    key: str
    version: str
    previous_version: str
    changed_at_ms: int
    reason: str

    type = "model_change"


@dataclass(frozen=True, slots=True)
class PriceUpdate:
    """The newest accepted trade price of one symbol (hub ``predictions``, ``type`` = ``price``).

    Emitted by ``predict`` at most once per symbol every ``PRICE_UPDATE_MS`` (on its
    wall clock), so that the ``broadcast`` function can send live prices to SignalR
    clients without reading the ticks hub. ``price`` is the price of the newest
    accepted trade of the batch (quote currency), ``event_time_ms`` its exchange
    time and ``sent_at_ms`` when ``predict`` made the update (ms since epoch UTC).
    Ticks set aside (malformed, late, out of sequence) never become a price update.
    """

    exchange: str
    symbol: str
    price: float
    event_time_ms: int
    sent_at_ms: int

    type = "price"


Event = Tick | Bar | Prediction | DeadLetter | ModelChange | PriceUpdate
_TYPES: dict[str, type] = {cls.type: cls for cls in (Tick, Bar, Prediction, DeadLetter, ModelChange, PriceUpdate)}
OUTPUT_TYPES: tuple[type, ...] = (Bar, Prediction, ModelChange, PriceUpdate)
"""The event classes carried by the ``predictions`` hub."""
_encode_fast = wire.event_encoder(_TYPES.values(), version=SCHEMA_VERSION)


def to_dict(event: Event) -> dict[str, Any]:
    """Return the wire form of ``event`` as a dict with ``v`` and ``type`` first."""
    # Every field is a scalar, so reading the slots is enough (``dataclasses.asdict``
    # deep-copies recursively and was two thirds of the ingestor's per-tick cost).
    return {"v": SCHEMA_VERSION, "type": event.type, **{f: getattr(event, f) for f in event.__slots__}}


def encode(event: Event) -> bytes:
    """Encode ``event`` as compact UTF-8 JSON bytes, ``v`` and ``type`` first.

    A msgspec encoder writes it when it can match ``json.dumps`` value for value (non-ASCII as
    UTF-8, floats in shortest form); otherwise ``json.dumps`` does (:func:`.wire.event_encoder`).

    Raises
    ------
    ValueError
        A float field is NaN or infinite (``json.dumps`` with ``allow_nan=False``).
    TypeError
        A field ``json.dumps`` cannot write.
    """
    fast = _encode_fast(event)
    if fast is not None:
        return fast
    return json.dumps(to_dict(event), separators=(",", ":"), allow_nan=False).encode()


EXCHANGE_MAX_CHARS = 32
"""Longest ``exchange``: the history store's ``exchange`` column (``VARCHAR(32)``)."""
SYMBOL_MAX_CHARS = 64
"""Longest ``symbol``: the history store's ``symbol`` column (``VARCHAR(64)``); with the exchange
it also keeps a symbol's registry key (``<exchange>.<SYMBOL>``) under the registry's 200 characters."""
MODEL_VERSION_MAX_CHARS = 128
"""Longest ``model_version``: the history store's ``model_version`` column (``VARCHAR(128)``)."""
TEXT_MAX_CHARS = 4096
"""Longest free-text or key field not stored in a bounded column (``ModelChange.key``/``reason``)."""
STRING_LIMITS = {"exchange": EXCHANGE_MAX_CHARS, "symbol": SYMBOL_MAX_CHARS, "model_version": MODEL_VERSION_MAX_CHARS}
"""Longest value of each key string, in characters; equal to the store's column lengths
(``shared.storage.history.schema.KEY_LENGTHS``; a test keeps them equal)."""

INT_MIN, INT_MAX = -(2**63), 2**63 - 1
"""Integers must fit a signed 64-bit column (MySQL ``BIGINT``, SQLite ``INTEGER``)."""
PRICE_MIN, PRICE_MAX = 1e-12, 1e12
"""Accepted prices, quote currency, both ends included: the cheapest listed tokens trade near 1e-8
and BTC near 1e5, so [1e-12, 1e12] leaves four orders of magnitude either side, while any ratio of
two prices stays within 1e24 (a log return within +-56) and a squared price within 1e24, far from
float overflow (a price of 1.7e308 made the features' variance infinite: a math domain error)."""
QUANTITY_MAX = 1e12
"""Largest quantity of one trade, base asset, included: far above any exchange's lot limit."""
VOLUME_MAX = 1e15
"""Largest volume of one bar, base asset, included: a thousand maximal trades."""


def _load(raw: bytes | str | Mapping[str, Any]) -> Mapping[str, Any]:
    if isinstance(raw, Mapping):
        obj = raw
    else:
        try:
            obj = json.loads(raw)
        except (UnicodeDecodeError, ValueError, RecursionError, TypeError) as exc:
            raise MalformedEventError(f"not JSON: {type(exc).__name__}: {str(exc)[:200]}") from None
    if not isinstance(obj, Mapping):
        raise MalformedEventError(f"not a JSON object: {type(obj).__name__}")
    version = obj.get("v")
    if type(version) is not int or version != SCHEMA_VERSION:  # JSON true is not version 1
        raise MalformedEventError(f"unsupported schema version v={_show(version)}")
    return obj


def _show(value: Any) -> str:
    """``repr`` of a bad value for an error message, at most 80 characters."""
    text = repr(value) if not isinstance(value, int) or abs(value) < 10**60 else f"<{value.bit_length()}-bit integer>"
    return text if len(text) <= 80 else text[:77] + "..."


def _num(obj: Mapping[str, Any], name: str, *, low: float = 0.0, high: float = math.inf,
         open_low: bool = False) -> float:
    """A finite number in ``[low, high]`` (``(low, high]`` when ``open_low``), as float."""
    value = obj.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise MalformedEventError(f"{name} must be a number, got {_show(value)}")
    if isinstance(value, int) and not INT_MIN <= value <= INT_MAX:  # float() of a huge int overflows
        raise MalformedEventError(f"{name} out of range, got {_show(value)}")
    value = float(value)
    if not math.isfinite(value):
        raise MalformedEventError(f"{name} must be finite, got {value!r}")
    if value <= 0 and (open_low or low > 0):
        raise MalformedEventError(f"{name} must be > 0, got {value!r}")
    if value < 0:
        raise MalformedEventError(f"{name} must be >= 0, got {value!r}")
    if value < low or value > high:
        interval = f"{'(' if open_low else '['}{low:g}, {high:g}]"
        raise MalformedEventError(f"{name} must be in {interval}, got {value!r}")
    return value


def _price(obj: Mapping[str, Any], name: str) -> float:
    return _num(obj, name, low=PRICE_MIN, high=PRICE_MAX)


def _int(
    obj: Mapping[str, Any], name: str, *, optional: bool = False, signed: bool = False
) -> int | None:
    value = obj.get(name)
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise MalformedEventError(f"{name} must be an integer, got {_show(value)}")
    if value < 0 and not signed:
        raise MalformedEventError(f"{name} must be >= 0, got {_show(value)}")
    if not INT_MIN <= value <= INT_MAX:
        raise MalformedEventError(f"{name} must fit in 64 bits, got {_show(value)}")
    return value


def _str(obj: Mapping[str, Any], name: str) -> str:
    value = obj.get(name)
    if not isinstance(value, str) or not value:
        raise MalformedEventError(f"{name} must be a non-empty string, got {_show(value)}")
    limit = STRING_LIMITS.get(name, TEXT_MAX_CHARS)
    if len(value) > limit:
        raise MalformedEventError(f"{name} longer than {limit} characters: {value[:40]!r}...")
    return value


def _type(obj: Mapping[str, Any]) -> str | None:
    """The event's ``type`` if it is a string, else ``None`` (a list or number is not a type)."""
    kind = obj.get("type")
    return kind if isinstance(kind, str) else None


def _guarded(decode: Any) -> Any:
    """Wrap a decoder so that every error it meets is a :class:`MalformedEventError`."""

    def wrapper(raw: bytes | str | Mapping[str, Any]) -> Any:
        try:
            return decode(raw)
        except MalformedEventError:
            raise
        except Exception as exc:  # defence in depth: a decoder must never raise anything else
            raise MalformedEventError(f"undecodable: {type(exc).__name__}: {str(exc)[:200]}") from None

    wrapper.__name__, wrapper.__doc__, wrapper.__wrapped__ = decode.__name__, decode.__doc__, decode
    return wrapper


def validate_tick(tick: Tick) -> Tick:
    """Return ``tick`` if its fields are valid, else raise :class:`MalformedEventError`.

    Returns a new :class:`Tick` whose ``price`` and ``quantity`` are ``float`` (as
    :func:`decode_tick` of :func:`to_dict` gives; a msgspec round trip gives the same when it
    accepts, see :mod:`.wire`).
    """
    encoded = _encode_fast(tick)
    fast = _decode_tick_fast(encoded) if encoded is not None else None
    return fast if fast is not None else decode_tick_checked(to_dict(tick))


_decode_tick_fast = wire.tick_decoder(
    Tick, version=SCHEMA_VERSION, exchange_chars=EXCHANGE_MAX_CHARS, symbol_chars=SYMBOL_MAX_CHARS,
    price_min=PRICE_MIN, price_max=PRICE_MAX, quantity_max=QUANTITY_MAX, int_max=INT_MAX,
)

decode_tick_wire = wire.tick_wire_decoder(
    version=SCHEMA_VERSION, exchange_chars=EXCHANGE_MAX_CHARS, symbol_chars=SYMBOL_MAX_CHARS,
    price_min=PRICE_MIN, price_max=PRICE_MAX, quantity_max=QUANTITY_MAX, int_max=INT_MAX,
)
"""The fast path of :func:`decode_tick` without building a :class:`Tick`: ``bytes`` or ``str`` JSON to
a struct with the tick's fields as attributes, of the values :func:`decode_tick` gives; raises (any
exception) where that fast path refuses, and then :func:`decode_tick` alone decides
(:func:`.wire.tick_wire_decoder`; the caller passes ``bytes`` or ``str`` only)."""


def decode_tick(raw: bytes | str | Mapping[str, Any]) -> Tick:
    """Decode and validate a tick event.

    A msgspec decoder (:func:`.wire.tick_decoder`) takes a ``bytes`` or ``str`` tick with no unknown
    field in well under a microsecond; whatever it refuses goes to :func:`decode_tick_checked`,
    which alone raises, so the outcome and every error text are those of the checked decoder.

    Bounds: ``exchange`` 1-32 and ``symbol`` 1-64 characters (the store's columns), ``price`` in
    [1e-12, 1e12] quote units (:data:`PRICE_MIN`, :data:`PRICE_MAX`), ``quantity`` in [0, 1e12]
    base units, integers non-negative and within 63 bits.

    Raises
    ------
    MalformedEventError
        Not JSON, wrong ``v`` or ``type``, a missing field or one of a wrong type, a value out
        of bounds, or an unknown side. Never any other exception.
    """
    tick = _decode_tick_fast(raw)
    return tick if tick is not None else decode_tick_checked(raw)


@_guarded
def decode_tick_checked(raw: bytes | str | Mapping[str, Any]) -> Tick:
    """:func:`decode_tick` by the stdlib ``json`` module and hand validation alone (the reference).

    Raises
    ------
    MalformedEventError
        As :func:`decode_tick`, whose error texts are this function's.
    """
    obj = _load(raw)
    if _type(obj) != Tick.type:
        raise MalformedEventError(f"expected type 'tick', got {_show(obj.get('type'))}")
    exchange, symbol = _str(obj, "exchange"), _str(obj, "symbol")
    side = obj.get("side")
    if not isinstance(side, str) or side not in SIDES:
        raise MalformedEventError(f"side must be one of {SIDES}, got {_show(side)}")
    return Tick(
        exchange=exchange,
        symbol=symbol,
        trade_id=_int(obj, "trade_id", optional=True),
        price=_price(obj, "price"),
        quantity=_num(obj, "quantity", high=QUANTITY_MAX),
        side=side,
        event_time_ms=_int(obj, "event_time_ms"),
        ingest_time_ms=_int(obj, "ingest_time_ms"),
    )


def _decode_fields(cls: type, obj: Mapping[str, Any]) -> Event:
    values: dict[str, Any] = {}
    for f in fields(cls):
        if f.type == "str":
            values[f.name] = _str(obj, f.name)
        elif f.type == "int":
            # latency may be negative when producer and consumer clocks differ
            values[f.name] = _int(obj, f.name, signed=f.name == "latency_ms")
        elif f.name in ("volume", "interval_level"):  # interval level: checked in (0, 1) below
            values[f.name] = _num(obj, f.name, high=VOLUME_MAX)
        elif f.name in _PRICE_FIELDS:
            values[f.name] = _price(obj, f.name)
        else:  # forecasts and their bounds: finite and > 0
            values[f.name] = _num(obj, f.name, open_low=True)
    return cls(**values)


_PRICE_FIELDS = frozenset({"open", "high", "low", "close", "last_close", "price"})
"""Fields bounded like a trade price; a forecast (``predicted_close``, ``lower``, ``upper``) only
has to be finite and > 0, so that a wide interval is never set aside."""


def _wire_type(name: str, kind: str) -> Any:
    """The msgspec type of one output field with the bounds :func:`_decode_fields` checks."""
    if kind == "str":
        return Annotated[str, Meta(min_length=1, max_length=STRING_LIMITS.get(name, TEXT_MAX_CHARS))]
    if kind == "int":
        return Annotated[int, Meta(ge=INT_MIN if name == "latency_ms" else 0, le=INT_MAX)]
    if name == "interval_level":
        return Annotated[float, Meta(gt=0.0, lt=1.0)]
    if name == "volume":
        return Annotated[float, Meta(ge=0.0, le=VOLUME_MAX)]
    if name in _PRICE_FIELDS:
        return Annotated[float, Meta(ge=PRICE_MIN, le=PRICE_MAX)]
    return Annotated[float, Meta(gt=0.0)]  # msgspec reads no NaN or infinity: finite


_decode_output_fast = wire.tagged_decoder(
    {cls: {f.name: _wire_type(f.name, f.type) for f in fields(cls)} for cls in OUTPUT_TYPES},
    version=SCHEMA_VERSION,
)


def decode_output(raw: bytes | str | Mapping[str, Any]) -> Bar | Prediction | ModelChange | PriceUpdate:
    """Decode and validate an event from the ``predictions`` hub (bar, prediction, model change or price).

    A msgspec decoder (:func:`.wire.tagged_decoder`) takes ``bytes``/``str`` events without unknown
    fields; what it refuses goes to :func:`decode_output_checked`, which alone raises.

    Raises
    ------
    MalformedEventError
        Not JSON, wrong ``v``, a ``type`` other than ``bar``/``prediction``/``model_change``/``price``
        (or not a string), or an invalid field: key strings longer than the store's columns
        (:data:`STRING_LIMITS`), other strings over 4096 characters, integers beyond 64 bits,
        prices outside [1e-12, 1e12], volumes outside [0, 1e15], forecasts not finite and > 0.
        Never any other exception.
    """
    event = _decode_output_fast(raw)
    return event if event is not None else decode_output_checked(raw)


@_guarded
def decode_output_checked(raw: bytes | str | Mapping[str, Any]) -> Bar | Prediction | ModelChange | PriceUpdate:
    """:func:`decode_output` by the stdlib ``json`` module and hand validation alone (the reference).

    Raises
    ------
    MalformedEventError
        As :func:`decode_output`, whose error texts are this function's.
    """
    obj = _load(raw)
    cls = _TYPES.get(_type(obj))  # type: ignore[arg-type]
    if cls not in OUTPUT_TYPES:
        raise MalformedEventError(
            f"expected type 'bar', 'prediction', 'model_change' or 'price', got {_show(obj.get('type'))}"
        )
    event = _decode_fields(cls, obj)
    if isinstance(event, Prediction) and not 0 < event.interval_level < 1:
        raise MalformedEventError(f"interval_level must be in (0, 1), got {event.interval_level!r}")
    return event
