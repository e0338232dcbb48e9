"""Exchange message parsers and recorded-file readers that produce :class:`shared.contracts.events.Tick`.

* :mod:`ingestor.parsers.binance` -- Binance spot / USD-M ``@trade`` websocket messages.
* :mod:`ingestor.parsers.recorded` -- the recorded trade files (Binance trade CSV, Kraken trade
  CSV, raw websocket recordings), read lazily as :class:`~ingestor.parsers.recorded.RecordedTrade`
  items so that bad lines are reported and set aside instead of raised.
"""

from ingestor.parsers.binance import BINANCE_EXCHANGES, parse_trade
from ingestor.parsers.recorded import RecordedTrade, detect_format, read_recorded, split_ws_line

__all__ = [
    "BINANCE_EXCHANGES",
    "RecordedTrade",
    "detect_format",
    "parse_trade",
    "read_recorded",
    "split_ws_line",
]
