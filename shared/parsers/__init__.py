"""Exchange message parsers and recorded-file readers that produce :class:`shared.events.Tick`.

* :mod:`shared.parsers.binance` -- Binance spot / USD-M ``@trade`` websocket messages.
* :mod:`shared.parsers.recorded` -- the recorded trade files (Binance trade CSV, Kraken trade
  CSV, raw websocket recordings), read lazily as :class:`~shared.parsers.recorded.RecordedTrade`
  items so that bad lines are reported and set aside instead of raised.
"""

from shared.parsers.binance import BINANCE_EXCHANGES, parse_trade
from shared.parsers.recorded import RecordedTrade, detect_format, read_recorded, split_ws_line

__all__ = [
    "BINANCE_EXCHANGES",
    "RecordedTrade",
    "detect_format",
    "parse_trade",
    "read_recorded",
    "split_ws_line",
]
