"""Parse Kraken spot WebSocket v2 messages (``trade`` channel) into :class:`shared.contracts.events.Tick`.

Feed: ``wss://ws.kraken.com/v2`` (Kraken Spot WebSocket API v2, docs.kraken.com,
"Trade" channel). Exchange id ``kraken``; symbol as Kraken v2 writes it (``BTC/USD``,
the same as the recorded Kraken trade CSV gives).

A trade message carries several trades::

    {"channel": "trade", "type": "update",   # or "snapshot": the last 50 trades on subscribe
     "data": [{"symbol": "BTC/USD", "side": "buy", "price": 64000.1, "qty": 0.01,
               "ord_type": "market", "trade_id": 74263, "timestamp": "2024-08-09T00:00:00.123456Z"}]}

``side`` is the taker side; ``price`` / ``qty`` are JSON numbers (decimal strings are
accepted too); ``trade_id`` is sequential per pair; ``timestamp`` is RFC 3339. An
invalid item is reported in :attr:`ParsedMessage.errors` and left out; the others are kept.

``heartbeat`` (once a second while subscribed), ``status``, successful ``subscribe``
replies and ``pong`` are control messages; a ``subscribe`` reply with
``"success": false`` is an error; other channels (book, ticker, ...) are ignored.

Examples
--------
>>> m = {"channel": "trade", "type": "update", "data": [{"symbol": "BTC/USD", "side": "sell",
...      "price": 10749.4, "qty": 0.004, "ord_type": "market", "trade_id": 1,
...      "timestamp": "2019-07-01T00:00:03.172Z"}]}
>>> parse_message(m, ingest_time_ms=1561939203200).ticks
(Tick(exchange='kraken', symbol='BTC/USD', trade_id=1, price=10749.4, quantity=0.004, side='sell', \
event_time_ms=1561939203172, ingest_time_ms=1561939203200),)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shared.contracts.events import SIDES, MalformedEventError, Tick
from ingestor.parsers.common import ParsedMessage, load_object, rfc3339_trade

__all__ = ["EXCHANGE", "looks_like_kraken", "parse_message"]

EXCHANGE = "kraken"
"""Exchange id of Kraken ticks (matches the recorded Kraken CSV's ``exchange`` column)."""

_CONTROL_CHANNELS = ("heartbeat", "status")
_CONTROL_METHODS = ("subscribe", "unsubscribe", "pong")


def looks_like_kraken(obj: Mapping[str, Any]) -> bool:
    """True for a JSON object shaped like a Kraken v2 message (has ``channel`` or ``method``)."""
    return isinstance(obj.get("channel"), str) or isinstance(obj.get("method"), str)


def _trade(item: Any, ingest_time_ms: int, exchange: str) -> Tick:
    if not isinstance(item, Mapping):
        raise MalformedEventError(f"trade item is not a JSON object: {type(item).__name__}")
    symbol = item.get("symbol")
    if not isinstance(symbol, str) or not symbol:
        raise MalformedEventError(f"symbol must be a non-empty string, got {symbol!r:.40}")
    side = item.get("side")
    if side not in SIDES:
        raise MalformedEventError(f"side must be 'buy' or 'sell', got {side!r:.40}")
    return rfc3339_trade(item, exchange=exchange, symbol=symbol, side=side,
                         quantity=("qty", "quantity"), time_key="timestamp", ingest_time_ms=ingest_time_ms)


def parse_message(
    message: bytes | bytearray | str | Mapping[str, Any],
    *,
    ingest_time_ms: int,
    exchange: str = EXCHANGE,
) -> ParsedMessage:
    """Parse one Kraken v2 websocket message.

    Parameters
    ----------
    message : bytes, str or mapping
        One websocket message (UTF-8 JSON text or a decoded object).
    ingest_time_ms : int
        When the ingestor received it, ms since epoch UTC.
    exchange : str, default ``"kraken"``
        Exchange id written into the ticks.

    Returns
    -------
    ParsedMessage
        ``trades`` (its valid items as ticks, the invalid ones in ``errors``),
        ``control``, ``error``, ``ignored`` or ``unknown``.

    Raises
    ------
    MalformedEventError
        Not a JSON object; a trade message whose ``data`` is not a list; or a trade
        message none of whose items is a valid trade. Nothing else is raised.
    """
    obj = load_object(message)
    channel = obj.get("channel")
    method = obj.get("method")
    if channel == "trade":
        data = obj.get("data")
        if not isinstance(data, list):
            raise MalformedEventError(f"trade message 'data' must be a list, got {type(data).__name__}")
        ticks: list[Tick] = []
        errors: list[str] = []
        for i, item in enumerate(data):
            try:
                ticks.append(_trade(item, ingest_time_ms, exchange))
            except MalformedEventError as exc:
                errors.append(f"item {i}: {exc}")
        if errors and not ticks:
            raise MalformedEventError("; ".join(errors)[:500])
        if not ticks:
            return ParsedMessage("ignored", detail="trade message without trades")
        return ParsedMessage("trades", tuple(ticks), tuple(errors))
    if channel in _CONTROL_CHANNELS:
        return ParsedMessage("control", detail=channel)
    if method in _CONTROL_METHODS:
        if obj.get("success") is False:
            return ParsedMessage("error", detail=f"{method}: {obj.get('error')!s:.200}")
        return ParsedMessage("control", detail=method)
    if isinstance(channel, str):
        return ParsedMessage("ignored", detail=channel)
    return ParsedMessage("unknown", detail=f"channel={channel!r:.40} method={method!r:.40}")
