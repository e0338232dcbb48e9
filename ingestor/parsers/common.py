"""Pieces shared by the exchange message parsers: JSON loading, field checks, RFC 3339 times.

Every live-stream parser (:mod:`~ingestor.parsers.binance`, :mod:`~ingestor.parsers.coinbase`,
:mod:`~ingestor.parsers.kraken`) has a ``parse_message(message, *, ingest_time_ms, ...)``
function returning a :class:`ParsedMessage`: the ticks a websocket message carried, and
what kind of message it was, so that a source can tell a subscription reply or a
heartbeat (expected, counted as control) from a message it does not know (counted and
set aside). Parsers raise only :class:`~shared.contracts.events.MalformedEventError`, for messages
that are not JSON objects or that are trades with an invalid field.

Units: prices in quote currency, quantities in base currency, times in integer ms
since the epoch, UTC.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from shared.contracts.events import MalformedEventError, Tick, validate_tick

__all__ = [
    "KINDS",
    "ParsedMessage",
    "decimal_field",
    "integer_field",
    "load_object",
    "rfc3339_ms",
    "rfc3339_trade",
]

KINDS = ("trades", "control", "error", "ignored", "unknown")
"""Kinds of :class:`ParsedMessage`:

``trades``
    carried at least one trade (``ticks``; ``errors`` lists items that were invalid);
``control``
    a protocol message the source expects: subscription reply, heartbeat, status, pong;
``error``
    an error reply of the exchange (``detail`` has its text);
``ignored``
    a known message that is deliberately not turned into ticks (e.g. a Binance USD-M
    insurance-fund fill, a Coinbase ``ticker``);
``unknown``
    a JSON object the parser does not recognise.
"""

_DECIMAL = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|z|[+-]\d{2}:\d{2})"
)


@dataclass(frozen=True, slots=True)
class ParsedMessage:
    """What one websocket message contained.

    Attributes
    ----------
    kind : str
        One of :data:`KINDS`.
    ticks : tuple of Tick
        Trades of the message, in message order (empty unless ``kind == "trades"``).
    errors : tuple of str
        Reasons for trade items of the message that were invalid and left out (a Kraken
        message carries several trades; one bad item does not lose the others).
    detail : str or None
        The exchange's error text, or the control message's type, for logs.
    """

    kind: str
    ticks: tuple[Tick, ...] = ()
    errors: tuple[str, ...] = ()
    detail: str | None = None


def load_object(message: bytes | bytearray | str | Mapping[str, Any]) -> Mapping[str, Any]:
    """Decode one message into a JSON object (a mapping is returned as it is).

    Raises
    ------
    MalformedEventError
        Not bytes / str / mapping, not UTF-8 JSON, nested too deeply, or not an object.
    """
    if isinstance(message, Mapping):
        return message
    if not isinstance(message, (bytes, bytearray, str)):
        raise MalformedEventError(f"message must be bytes, str or a mapping, got {type(message).__name__}")
    try:
        obj = json.loads(message)
    except RecursionError:
        raise MalformedEventError("not JSON: nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise MalformedEventError(f"not JSON: {exc}") from None
    if not isinstance(obj, Mapping):
        raise MalformedEventError(f"not a JSON object: {type(obj).__name__}")
    return obj


def decimal_field(obj: Mapping[str, Any], key: str, name: str) -> float:
    """``obj[key]`` as a float: a decimal string (``"61837.63"``) or a JSON number.

    Range checks (finite, > 0 ...) are left to :func:`shared.contracts.events.validate_tick`.

    Raises
    ------
    MalformedEventError
        Missing, boolean, not a number, or a string that is not a plain decimal.
    """
    value = obj.get(key)
    if isinstance(value, str):
        if not _DECIMAL.fullmatch(value):
            raise MalformedEventError(f"{name} ({key!r}) is not a decimal number: {value[:40]!r}")
        return float(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            result = float(value)
        except OverflowError:
            raise MalformedEventError(f"{name} ({key!r}) is out of range") from None
        if not math.isfinite(result):
            raise MalformedEventError(f"{name} ({key!r}) must be finite, got {value!r}")
        return result
    raise MalformedEventError(f"{name} ({key!r}) must be a decimal number, got {value!r:.40}")


def integer_field(obj: Mapping[str, Any], key: str, name: str) -> int:
    """``obj[key]`` as an int (a JSON integer; booleans and floats are rejected).

    Raises
    ------
    MalformedEventError
        Missing or not an integer.
    """
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise MalformedEventError(f"{name} ({key!r}) must be an integer, got {value!r:.40}")
    return value


def rfc3339_ms(value: object, name: str = "time") -> int:
    """Parse an RFC 3339 timestamp into ms since the epoch, UTC (fraction truncated to ms).

    Accepts up to nine fraction digits (Coinbase sends six, Kraken v2 six, some feeds
    nine) and ``Z`` or a ``+hh:mm`` offset.

    Raises
    ------
    MalformedEventError
        Not a string, not RFC 3339, or an impossible date.

    Examples
    --------
    >>> rfc3339_ms("2021-04-17T16:43:37.089723Z")
    1618677817089
    >>> rfc3339_ms("1970-01-01T01:00:00.5+01:00")
    500
    """
    if not isinstance(value, str):
        raise MalformedEventError(f"{name} must be an RFC 3339 string, got {value!r:.40}")
    m = _RFC3339.fullmatch(value.strip())
    if m is None:
        raise MalformedEventError(f"{name} is not an RFC 3339 timestamp: {value[:40]!r}")
    year, month, day, hour, minute, second, frac, zone = m.groups()
    try:
        if zone in ("Z", "z"):
            tz = UTC
        else:
            sign = 1 if zone[0] == "+" else -1
            tz = timezone(sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6])))
        dt = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), tzinfo=tz)
        seconds = int(dt.timestamp())
    except (ValueError, OverflowError) as exc:
        raise MalformedEventError(f"{name} is not a valid time: {value[:40]!r} ({exc})") from None
    millis = int((frac or "0").ljust(3, "0")[:3])
    return seconds * 1000 + millis


def rfc3339_trade(
    obj: Mapping[str, Any],
    *,
    exchange: str,
    symbol: str,
    side: str,
    quantity: tuple[str, str],
    time_key: str,
    ingest_time_ms: int,
) -> Tick:
    """A validated tick from a JSON trade with ``trade_id``, ``price`` and an RFC 3339 time.

    The shape of a Coinbase ``match`` and of a Kraken v2 ``trade`` item; the caller has
    checked the symbol and the taker side, which are written differently by each exchange.

    Parameters
    ----------
    obj : mapping
        The trade object: ``trade_id`` (JSON integer), ``price`` (decimal string or
        JSON number, quote currency), the quantity field, the time field.
    exchange, symbol : str
        Exchange id and symbol of the tick (the symbol is upper-cased).
    side : str
        Taker side, ``"buy"`` or ``"sell"``.
    quantity : (str, str)
        Key and human name of the quantity field (base currency), e.g. ``("size", "size")``.
    time_key : str
        Key of the RFC 3339 trade time (UTC), e.g. ``"time"``.
    ingest_time_ms : int
        When the ingestor received the message, ms since epoch UTC.

    Returns
    -------
    Tick
        Checked by :func:`shared.contracts.events.validate_tick`.

    Raises
    ------
    MalformedEventError
        The first invalid field, checked in the order trade id, price, quantity, time,
        then the tick's ranges.

    Examples
    --------
    >>> item = {"trade_id": 7, "price": "64000.1", "qty": 0.5, "timestamp": "2024-08-09T00:00:00.1234Z"}
    >>> rfc3339_trade(item, exchange="kraken", symbol="btc/usd", side="buy", quantity=("qty", "quantity"),
    ...               time_key="timestamp", ingest_time_ms=1723161600200)
    Tick(exchange='kraken', symbol='BTC/USD', trade_id=7, price=64000.1, quantity=0.5, side='buy', \
event_time_ms=1723161600123, ingest_time_ms=1723161600200)
    """
    quantity_key, quantity_name = quantity
    tick = Tick(
        exchange=exchange,
        symbol=symbol.upper(),
        trade_id=integer_field(obj, "trade_id", "trade id"),
        price=decimal_field(obj, "price", "price"),
        quantity=decimal_field(obj, quantity_key, quantity_name),
        side=side,
        event_time_ms=rfc3339_ms(obj.get(time_key), f"trade time ({time_key!r})"),
        ingest_time_ms=ingest_time_ms,
    )
    return validate_tick(tick)
