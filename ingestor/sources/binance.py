"""Binance spot and USD-M futures ``<symbol>@trade`` streams over one combined-stream connection.

Endpoints (Binance "WebSocket Streams" docs, spot and USD-M futures):
``wss://stream.binance.com:9443/stream`` and ``wss://fstream.binance.com/stream``.
On a ``/stream`` connection every message is wrapped as ``{"stream": ..., "data": ...}``;
the streams are requested with ``{"method": "SUBSCRIBE", "params": [...], "id": n}``
after each connect, so a reconnect resubscribes. Binance allows up to 1024 streams per
spot connection (200 for USD-M) and 5 incoming messages per second; it sends a ping
frame every 20 s (spot; every 3 min on USD-M), which the websockets library answers,
and closes every connection after 24 h (the ingestor reconnects).
"""

from __future__ import annotations

import json
from itertools import count

from ingestor.sources.base import Source
from ingestor.parsers import binance
from ingestor.parsers.common import ParsedMessage

__all__ = ["BinanceSource", "BinanceUsdmSource"]

_request_ids = count(1)


class BinanceSource(Source):
    """Binance spot trades (exchange id ``binance``)."""

    name = "binance"
    exchange = "binance"
    default_url = "wss://stream.binance.com:9443/stream"
    max_symbols = 1024

    def subscribe_messages(self) -> list[str]:
        return [json.dumps(binance.subscribe_request(self.symbols, next(_request_ids)))]

    def parse(self, message: str | bytes, ingest_time_ms: int) -> ParsedMessage:
        return binance.parse_message(message, ingest_time_ms=ingest_time_ms, exchange=self.exchange)


class BinanceUsdmSource(BinanceSource):
    """Binance USD-M futures trades (exchange id ``binance-usdm``; market fills only)."""

    name = "binance-usdm"
    exchange = "binance-usdm"
    default_url = "wss://fstream.binance.com/stream"
    max_symbols = 200
