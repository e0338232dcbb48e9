"""Live exchange sources: one module per exchange, run by :mod:`ingestor.sources.connection`.

:func:`make_source` turns a :class:`~ingestor.config.Subscription` into a
:class:`~ingestor.sources.base.Source`.
"""

from __future__ import annotations

from ingestor.config import Subscription
from ingestor.sources.base import Source
from ingestor.sources.binance import BinanceSource, BinanceUsdmSource
from ingestor.sources.coinbase import CoinbaseSource
from ingestor.sources.kraken import KrakenSource

__all__ = ["SOURCE_CLASSES", "Source", "make_source"]

SOURCE_CLASSES: dict[str, type[Source]] = {
    cls.name: cls for cls in (BinanceSource, BinanceUsdmSource, CoinbaseSource, KrakenSource)
}


def make_source(subscription: Subscription, url: str | None = None) -> Source:
    """The source for ``subscription`` (``url`` overrides the exchange's endpoint).

    Raises
    ------
    KeyError
        Unknown source name (the config already rejects those).
    """
    return SOURCE_CLASSES[subscription.source](subscription.symbols, url=url)
