"""What a live exchange source is: an endpoint, subscribe messages, and a message parser.

A :class:`Source` knows one exchange's protocol and nothing about connections;
:class:`ingestor.sources.connection.Connection` runs it (connect, subscribe, read,
heartbeat, reconnect). Subclasses live in ``ingestor/sources/<exchange>.py``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar

from ingestor.parsers.common import ParsedMessage

__all__ = ["Source"]


class Source(ABC):
    """One exchange's websocket protocol for a set of symbols (one connection).

    Parameters
    ----------
    symbols : sequence of str
        Exchange-native symbols, upper case (``BTCUSDT``, ``BTC-USD``, ``BTC/USD``).
    url : str, optional
        Endpoint override (tests, other regions); default :attr:`default_url`.

    Raises
    ------
    ValueError
        No symbol, or more than :attr:`max_symbols`.
    """

    name: ClassVar[str]
    """Source name used in subscriptions (``INGESTOR_SUBSCRIPTIONS``)."""
    exchange: ClassVar[str]
    """Exchange id written into the ticks (same as the replay path produces)."""
    default_url: ClassVar[str]
    """The exchange's documented public endpoint."""
    max_symbols: ClassVar[int] = 200

    def __init__(self, symbols: Sequence[str], *, url: str | None = None) -> None:
        symbols = tuple(s.upper() for s in symbols)
        if not symbols or len(symbols) > self.max_symbols:
            raise ValueError(
                f"{self.name}: need 1..{self.max_symbols} symbols per connection, got {len(symbols)}"
            )
        self.symbols = symbols
        self.url = url or self.default_url

    @property
    def label(self) -> str:
        """``source:SYM,SYM`` -- names the connection in logs, metrics and dead letters."""
        return f"{self.name}:{','.join(self.symbols)}"

    @abstractmethod
    def subscribe_messages(self) -> list[str]:
        """Text frames to send after every (re)connect to subscribe to the trade streams."""

    @abstractmethod
    def parse(self, message: str | bytes, ingest_time_ms: int) -> ParsedMessage:
        """Parse one received message.

        Raises
        ------
        shared.contracts.events.MalformedEventError
            Not a JSON object, or an invalid trade.
        """

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.label} {self.url}>"
