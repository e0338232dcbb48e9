"""Coinbase Exchange ``matches`` channel (plus ``heartbeat``, one message per second per product).

Endpoint ``wss://ws-feed.exchange.coinbase.com`` (Coinbase Exchange WebSocket feed).
The subscribe request names the products and the channels; the heartbeat channel keeps
a quiet product's connection alive and lets the ingestor's stall detection work for
illiquid products. Coinbase closes connections that send no subscribe within 5 s.
"""

from __future__ import annotations

import json

from ingestor.sources.base import Source
from ingestor.parsers import coinbase
from ingestor.parsers.common import ParsedMessage

__all__ = ["CoinbaseSource"]


class CoinbaseSource(Source):
    """Coinbase Exchange trades (exchange id ``coinbase``, symbols like ``BTC-USD``)."""

    name = "coinbase"
    exchange = coinbase.EXCHANGE
    default_url = "wss://ws-feed.exchange.coinbase.com"

    def subscribe_messages(self) -> list[str]:
        return [
            json.dumps(
                {"type": "subscribe", "product_ids": list(self.symbols), "channels": ["matches", "heartbeat"]}
            )
        ]

    def parse(self, message: str | bytes, ingest_time_ms: int) -> ParsedMessage:
        return coinbase.parse_message(message, ingest_time_ms=ingest_time_ms, exchange=self.exchange)
