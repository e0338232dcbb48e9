"""Parse Coinbase Exchange websocket messages (``matches`` channel) into
:class:`shared.contracts.events.Tick`.

Feed: ``wss://ws-feed.exchange.coinbase.com`` (Coinbase Exchange WebSocket feed, the
``matches`` and ``heartbeat`` channels; docs.cdp.coinbase.com/exchange, "WebSocket
channels"). Exchange id ``coinbase``; symbol = ``product_id`` (e.g. ``BTC-USD``).

Field mapping of a ``match`` / ``last_match`` message (``last_match`` is the most
recent trade, sent once after subscribing):

==============  ==============================================================
``product_id``  ``symbol`` (upper case)
``trade_id``    ``trade_id`` (sequential per product)
``price``       ``price`` in quote currency (decimal string)
``size``        ``quantity`` in base currency (decimal string)
``side``        the **maker** order's side; the taker side is the opposite
                (Coinbase: "a sell side match is an up-tick"), so ``side="sell"``
                gives ``Tick.side == "buy"``
``time``        ``event_time_ms`` (RFC 3339, microseconds, UTC)
==============  ==============================================================

``subscriptions`` and ``heartbeat`` messages are control messages; ``error`` is an
error reply; ``ticker``, ``snapshot``, ``l2update``, ``status`` are known but ignored;
anything else is unknown.

Examples
--------
>>> m = ('{"type":"match","trade_id":280232,"side":"sell","size":"985","price":"0.00001305",'
...      '"product_id":"SKL-BTC","sequence":177100030,"time":"2021-04-17T16:43:37.089723Z"}')
>>> parse_message(m, ingest_time_ms=1618677817129).ticks[0]
Tick(exchange='coinbase', symbol='SKL-BTC', trade_id=280232, price=1.305e-05, quantity=985.0, \
side='buy', event_time_ms=1618677817089, ingest_time_ms=1618677817129)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shared.contracts.events import MalformedEventError, Tick
from ingestor.parsers.common import ParsedMessage, load_object, rfc3339_trade

__all__ = ["EXCHANGE", "TRADE_TYPES", "looks_like_coinbase", "parse_message"]

EXCHANGE = "coinbase"
"""Exchange id of Coinbase Exchange ticks (matches the ``SYMBOLS`` setting's ``coinbase:BTC-USD``)."""

TRADE_TYPES = ("match", "last_match")
_CONTROL = ("subscriptions", "heartbeat")
_IGNORED = ("ticker", "snapshot", "l2update", "status", "received", "open", "done", "change", "activate")
_TAKER_SIDE = {"buy": "sell", "sell": "buy"}  # maker side -> taker side


def looks_like_coinbase(obj: Mapping[str, Any]) -> bool:
    """True for a JSON object shaped like a Coinbase Exchange feed message (has a string ``type``)."""
    return isinstance(obj.get("type"), str) and "channel" not in obj and "stream" not in obj


def _trade(obj: Mapping[str, Any], ingest_time_ms: int, exchange: str) -> Tick:
    product = obj.get("product_id")
    if not isinstance(product, str) or not product:
        raise MalformedEventError(
            f"product id ('product_id') must be a non-empty string, got {product!r:.40}"
        )
    maker_side = obj.get("side")
    if not isinstance(maker_side, str) or maker_side not in _TAKER_SIDE:
        raise MalformedEventError(f"maker side ('side') must be 'buy' or 'sell', got {maker_side!r:.40}")
    return rfc3339_trade(obj, exchange=exchange, symbol=product, side=_TAKER_SIDE[maker_side],
                         quantity=("size", "size"), time_key="time", ingest_time_ms=ingest_time_ms)


def parse_message(
    message: bytes | bytearray | str | Mapping[str, Any],
    *,
    ingest_time_ms: int,
    exchange: str = EXCHANGE,
) -> ParsedMessage:
    """Parse one Coinbase Exchange feed message.

    Parameters
    ----------
    message : bytes, str or mapping
        One websocket message (UTF-8 JSON text or a decoded object).
    ingest_time_ms : int
        When the ingestor received it, ms since epoch UTC.
    exchange : str, default ``"coinbase"``
        Exchange id written into the ticks.

    Returns
    -------
    ParsedMessage
        ``kind="trades"`` with one tick for ``match`` / ``last_match``; ``control``,
        ``error``, ``ignored`` or ``unknown`` otherwise.

    Raises
    ------
    MalformedEventError
        Not a JSON object, or a match with a missing / invalid field. Nothing else is
        raised for any input.
    """
    obj = load_object(message)
    kind = obj.get("type")
    if kind in TRADE_TYPES:
        return ParsedMessage("trades", (_trade(obj, ingest_time_ms, exchange),))
    if kind in _CONTROL:
        return ParsedMessage("control", detail=kind)
    if kind == "error":
        return ParsedMessage("error", detail=f"{obj.get('message')!s:.200} {obj.get('reason')!s:.200}")
    if kind in _IGNORED:
        return ParsedMessage("ignored", detail=kind)
    return ParsedMessage("unknown", detail=f"type={kind!r:.40}")
