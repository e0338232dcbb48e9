"""Parse Binance ``@trade`` websocket messages into :class:`shared.contracts.events.Tick`.

Handles the raw ``/ws`` form (``{"e":"trade",...}``) and the combined-stream
wrapper (``{"stream":"btcusdt@trade","data":{...}}``), for spot (exchange id
``binance``) and USD-M futures (``binance-usdm``; these carry ``"X":"MARKET"`` and
no ``"M"``). The caller names the exchange, because the messages do not.

Field mapping (Binance -> :class:`~shared.contracts.events.Tick`):

===========  ==============================================================
``s``        ``symbol`` (upper case, e.g. ``BTCUSDT``)
``t``        ``trade_id``
``p``        ``price`` in quote currency (decimal string; finite and > 0)
``q``        ``quantity`` in base currency (decimal string; finite and >= 0)
``m``        ``side``: ``"sell"`` if the buyer is the maker, else ``"buy"`` (taker side)
``T``        ``event_time_ms``: the trade time, ms since epoch UTC (``E``, the
             event time of the message, is not used)
===========  ==============================================================

Messages that are not trades -- ``bookTicker``, ``depthUpdate``, ``aggTrade``, REST
depth snapshots, subscription replies, other exchanges' messages -- give ``None``;
they are not errors. A message that *is* a trade (``"e":"trade"`` or a
``...@trade`` stream) but cannot be turned into a valid tick raises
:class:`~shared.contracts.events.MalformedEventError` whose message says why. USD-M trades
whose ``X`` is not ``MARKET`` (insurance-fund and ADL fills) are not market trades
and also give ``None``.

:func:`parse_message` wraps :func:`parse_trade` for the live ingestor: it also
classifies subscription replies, error replies and other streams' messages (see
:class:`~ingestor.parsers.common.ParsedMessage`). :func:`subscribe_request` builds the
``SUBSCRIBE`` request of a combined ``/stream`` connection.

Examples
--------
>>> msg = ('{"stream":"btcusdt@trade","data":{"e":"trade","E":1723161255343,"s":"BTCUSDT",'
...        '"t":3735683259,"p":"61837.63000000","q":"0.02000000","T":1723161255342,"m":true,"M":true}}')
>>> parse_trade(msg, ingest_time_ms=1723161255400)
Tick(exchange='binance', symbol='BTCUSDT', trade_id=3735683259, price=61837.63, quantity=0.02, \
side='sell', event_time_ms=1723161255342, ingest_time_ms=1723161255400)
>>> parse_trade('{"u":1,"s":"BTCUSDT","b":"1.0","B":"2","a":"1.1","A":"3"}', ingest_time_ms=0) is None
True
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from shared.contracts.events import MalformedEventError, Tick, validate_tick
from ingestor.parsers.common import ParsedMessage

BINANCE_EXCHANGES = ("binance", "binance-usdm")
"""Exchange ids for Binance spot and Binance USD-M futures."""

_CONTROL_KEYS = ("result", "id")

_DECIMAL = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


def _load(message: bytes | bytearray | str | Mapping[str, Any]) -> Any:
    if isinstance(message, Mapping):
        return message
    if not isinstance(message, (bytes, bytearray, str)):
        raise MalformedEventError(f"message must be bytes, str or a mapping, got {type(message).__name__}")
    try:
        return json.loads(message)
    except RecursionError:
        raise MalformedEventError("not JSON: nested too deeply") from None
    except ValueError as exc:  # includes JSONDecodeError and UnicodeDecodeError
        raise MalformedEventError(f"not JSON: {exc}") from None


def _decimal(obj: Mapping[str, Any], key: str, name: str) -> float:
    value = obj.get(key)
    if isinstance(value, str):
        if not _DECIMAL.fullmatch(value):
            raise MalformedEventError(f"{name} ({key!r}) is not a decimal number: {value[:40]!r}")
        return float(value)  # may be inf for huge exponents: validate_tick rejects it
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:
            raise MalformedEventError(f"{name} ({key!r}) is out of range") from None
    raise MalformedEventError(f"{name} ({key!r}) must be a decimal string, got {value!r:.40}")


def _integer(obj: Mapping[str, Any], key: str, name: str) -> int:
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise MalformedEventError(f"{name} ({key!r}) must be an integer, got {value!r:.40}")
    return value


def parse_trade(
    message: bytes | bytearray | str | Mapping[str, Any],
    *,
    ingest_time_ms: int,
    exchange: str = "binance",
) -> Tick | None:
    """Parse one Binance websocket message; return a tick for a trade, else ``None``.

    Parameters
    ----------
    message : bytes, str or mapping
        One websocket message (UTF-8 JSON text, or an already decoded JSON object),
        with or without the combined-stream wrapper ``{"stream": ..., "data": ...}``.
    ingest_time_ms : int
        When the ingestor received / publishes the message, ms since epoch UTC.
    exchange : str, default ``"binance"``
        ``"binance"`` for spot, ``"binance-usdm"`` for USD-M futures.

    Returns
    -------
    Tick or None
        The trade (price in quote currency, quantity in base currency, ``event_time_ms``
        = trade time ``T``), or ``None`` when the message is not a (market) trade.

    Raises
    ------
    MalformedEventError
        The message is not JSON, not a JSON object, or is a trade with a missing or
        invalid field (non-decimal, non-finite or non-positive price, negative
        quantity, non-boolean ``m``, non-integer ``t``/``T``, empty symbol, ...).
        Nothing else is raised for any input.
    """
    obj = _load(message)
    if not isinstance(obj, Mapping):
        raise MalformedEventError(f"not a JSON object: {type(obj).__name__}")
    stream_says_trade = False
    if "stream" in obj and "data" in obj:
        stream = obj["stream"]
        stream_says_trade = isinstance(stream, str) and stream.endswith("@trade")
        obj = obj["data"]
        if not isinstance(obj, Mapping):
            if stream_says_trade:
                raise MalformedEventError(f"trade stream data is not a JSON object: {type(obj).__name__}")
            return None
    event_type = obj.get("e")
    if event_type != "trade":
        if stream_says_trade:
            raise MalformedEventError(f"trade stream message has event type {event_type!r:.40}")
        return None
    trade_type = obj.get("X", "MARKET")
    if trade_type != "MARKET":
        if isinstance(trade_type, str):
            return None  # USD-M insurance-fund / ADL / NA fills are not market trades
        raise MalformedEventError(f"trade type ('X') must be a string, got {trade_type!r:.40}")

    symbol = obj.get("s")
    if not isinstance(symbol, str) or not symbol:
        raise MalformedEventError(f"symbol ('s') must be a non-empty string, got {symbol!r:.40}")
    buyer_is_maker = obj.get("m")
    if not isinstance(buyer_is_maker, bool):
        raise MalformedEventError(f"buyer-is-maker ('m') must be true or false, got {buyer_is_maker!r:.40}")
    tick = Tick(
        exchange=exchange,
        symbol=symbol.upper(),
        trade_id=_integer(obj, "t", "trade id"),
        price=_decimal(obj, "p", "price"),
        quantity=_decimal(obj, "q", "quantity"),
        side="sell" if buyer_is_maker else "buy",
        event_time_ms=_integer(obj, "T", "trade time"),
        ingest_time_ms=ingest_time_ms,
    )
    return validate_tick(tick)


def trade_stream(symbol: str) -> str:
    """Name of the ``@trade`` stream of ``symbol`` (Binance stream names are lower case).

    >>> trade_stream("BTCUSDT")
    'btcusdt@trade'
    """
    return f"{symbol.lower()}@trade"


def subscribe_request(symbols: list[str] | tuple[str, ...], request_id: int = 1) -> dict[str, Any]:
    """The ``SUBSCRIBE`` request for the ``@trade`` streams of ``symbols`` (one combined connection).

    Binance spot / USD-M "Live subscribing/unsubscribing to streams":
    ``{"method": "SUBSCRIBE", "params": [...], "id": <int>}``, answered by
    ``{"result": null, "id": <int>}``.

    >>> subscribe_request(["BTCUSDT", "ETHUSDT"], 7)
    {'method': 'SUBSCRIBE', 'params': ['btcusdt@trade', 'ethusdt@trade'], 'id': 7}
    """
    return {"method": "SUBSCRIBE", "params": [trade_stream(s) for s in symbols], "id": request_id}


def looks_like_binance(obj: Mapping[str, Any]) -> bool:
    """True for a JSON object shaped like a Binance stream message, reply or REST depth snapshot."""
    return (
        "stream" in obj
        or isinstance(obj.get("e"), str)
        or ("result" in obj and "id" in obj)
        or "lastUpdateId" in obj
        or ("u" in obj and "s" in obj and "b" in obj)
    )


def parse_message(
    message: bytes | bytearray | str | Mapping[str, Any],
    *,
    ingest_time_ms: int,
    exchange: str = "binance",
) -> ParsedMessage:
    """Parse one Binance websocket message into a :class:`~ingestor.parsers.common.ParsedMessage`.

    Parameters
    ----------
    message : bytes, str or mapping
        One message of a raw (``/ws``) or combined (``/stream``) connection.
    ingest_time_ms : int
        When the ingestor received it, ms since epoch UTC.
    exchange : str, default ``"binance"``
        ``"binance"`` (spot) or ``"binance-usdm"`` (USD-M futures).

    Returns
    -------
    ParsedMessage
        ``trades`` (one tick, via :func:`parse_trade`); ``control`` for a
        ``{"result": ..., "id": ...}`` reply to SUBSCRIBE; ``error`` for an error reply
        (``{"error": {...}}`` or ``{"code": ..., "msg": ...}``); ``ignored`` for
        non-market USD-M fills and for other known streams (book ticker, depth,
        aggregate trades); ``unknown`` for anything else.

    Raises
    ------
    MalformedEventError
        As :func:`parse_trade`: not a JSON object, or an invalid trade.
    """
    obj = _load(message)
    if not isinstance(obj, Mapping):
        raise MalformedEventError(f"not a JSON object: {type(obj).__name__}")
    tick = parse_trade(obj, ingest_time_ms=ingest_time_ms, exchange=exchange)
    if tick is not None:
        return ParsedMessage("trades", (tick,))
    if "error" in obj or ("code" in obj and "msg" in obj):
        error = obj.get("error", obj)
        return ParsedMessage("error", detail=f"{error!s:.300}")
    if all(k in obj for k in _CONTROL_KEYS) and "e" not in obj:
        return ParsedMessage("control", detail="reply")
    data = obj.get("data") if "stream" in obj else obj
    if isinstance(data, Mapping) and (
        data.get("e") in ("trade", "aggTrade", "depthUpdate", "bookTicker", "24hrTicker", "kline")
        or ("u" in data and "b" in data and "a" in data)
        or "lastUpdateId" in data
    ):
        return ParsedMessage("ignored", detail=str(obj.get("stream") or data.get("e") or "book"))
    return ParsedMessage("unknown", detail=f"keys={sorted(map(str, obj))[:8]}")
