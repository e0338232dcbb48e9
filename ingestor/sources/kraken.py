"""Kraken spot WebSocket v2 ``trade`` channel.

Endpoint ``wss://ws.kraken.com/v2`` (Kraken Spot WebSocket API v2). Subscribe with
``{"method": "subscribe", "params": {"channel": "trade", "symbol": [...], "snapshot": true}}``;
the snapshot (the last 50 trades) after each (re)connect fills part of a reconnect gap
(already seen trade ids are dropped as duplicates). Kraken sends a ``heartbeat``
message about once a second while subscribed, so a silent connection is a stalled one.
"""

from __future__ import annotations

import json
from itertools import count

from ingestor.sources.base import Source
from ingestor.parsers import kraken
from ingestor.parsers.common import ParsedMessage

__all__ = ["KrakenSource"]

_request_ids = count(1)


class KrakenSource(Source):
    """Kraken spot trades (exchange id ``kraken``, symbols like ``BTC/USD``)."""

    name = "kraken"
    exchange = kraken.EXCHANGE
    default_url = "wss://ws.kraken.com/v2"

    def subscribe_messages(self) -> list[str]:
        request = {
            "method": "subscribe",
            "params": {"channel": "trade", "symbol": list(self.symbols), "snapshot": True},
            "req_id": next(_request_ids),
        }
        return [json.dumps(request)]

    def parse(self, message: str | bytes, ingest_time_ms: int) -> ParsedMessage:
        return kraken.parse_message(message, ingest_time_ms=ingest_time_ms, exchange=self.exchange)
