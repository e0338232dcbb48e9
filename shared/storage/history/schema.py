"""The history schema: tables ``bars`` and ``predictions``, one SQLAlchemy Core definition for both databases.

Key strings are case- and accent-sensitive on MySQL/MariaDB (``utf8mb4_bin``), as they always
are on SQLite; prices are IEEE doubles returned as ``float``. Units: prices in the quote currency
of the symbol, volumes in the base asset, times in integer milliseconds since the Unix epoch, UTC.

Examples
--------
>>> sorted(metadata.tables)
['bars', 'predictions']
>>> check_key_lengths({"exchange": "binance", "symbol": "X" * 65})
Traceback (most recent call last):
...
ValueError: symbol longer than 64 characters: 'XXX...'...
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from shared.contracts.events import Prediction

MYSQL_DIALECTS = ("mysql", "mariadb")
"""SQLAlchemy backend names served as MySQL (through PyMySQL)."""

KEY_LENGTHS = {"exchange": 32, "symbol": 64, "model_version": 128}
"""Longest key strings the columns hold, in characters."""


def _text(length: int) -> sa.types.TypeEngine[str]:
    """A key string: case- and accent-sensitive on MySQL, as it always is on SQLite."""
    return sa.String(length).with_variant(
        mysql.VARCHAR(length, charset="utf8mb4", collation="utf8mb4_bin"), *MYSQL_DIALECTS
    )


def _price() -> sa.types.TypeEngine[float]:
    """An IEEE double: DOUBLE on MySQL, REAL affinity on SQLite; returned as ``float``."""
    return sa.Double().with_variant(mysql.DOUBLE(asdecimal=False), *MYSQL_DIALECTS)


metadata = sa.MetaData()
"""The history schema: tables ``bars`` and ``predictions``."""


def _minute_table(name: str, minute: str, *columns: sa.Column[Any], comment: str) -> sa.Table:
    """A table of ``metadata`` keyed by (exchange, symbol, ``minute``, ...), stamped ``updated_at_ms``.

    ``minute`` is a minute open time in ms since epoch UTC; ``columns`` come between it and
    ``updated_at_ms`` (primary-key ones extend the key). InnoDB and utf8mb4 on MySQL.
    """
    return sa.Table(
        name,
        metadata,
        sa.Column("exchange", _text(KEY_LENGTHS["exchange"]), primary_key=True),
        sa.Column("symbol", _text(KEY_LENGTHS["symbol"]), primary_key=True),
        sa.Column(minute, sa.BigInteger, primary_key=True, autoincrement=False),
        *columns,
        sa.Column("updated_at_ms", sa.BigInteger, nullable=False),
        comment=comment,
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
    )


def _prices(*names: str) -> list[sa.Column[float]]:
    """Non-null price columns (quote currency), in the order given."""
    return [sa.Column(name, _price(), nullable=False) for name in names]


bars_table = _minute_table(
    "bars",
    "open_time_ms",
    *_prices("open", "high", "low", "close", "volume"),
    sa.Column("trade_count", sa.Integer, nullable=False),
    comment="closed one-minute OHLCV bars; prices in quote currency, times ms since epoch UTC",
)
"""Closed one-minute bars, one row per (exchange, symbol, open_time_ms).

``volume`` is in the base asset; ``updated_at_ms`` is the wall-clock time of the last write of the row.
"""

predictions_table = _minute_table(
    "predictions",
    "target_time_ms",
    sa.Column("model_version", _text(KEY_LENGTHS["model_version"]), primary_key=True),
    sa.Column("made_at_ms", sa.BigInteger, nullable=False),
    *_prices("last_close", "predicted_close", "lower", "upper", "interval_level"),
    sa.Column("latency_ms", sa.BigInteger, nullable=False),
    sa.Column("drift_alarms", sa.Integer, nullable=False, server_default="0"),
    sa.Column("realised_close", _price(), nullable=True),
    comment="forecasts of the close of the minute starting at target_time_ms, with the realised close",
)
"""Predictions, one row per (exchange, symbol, target_time_ms, model_version).

``realised_close`` is the close of the bar with ``open_time_ms == target_time_ms``,
or NULL while that bar has not been stored.
"""

BAR_KEY = ("exchange", "symbol", "open_time_ms")
BAR_VALUES = ("open", "high", "low", "close", "volume", "trade_count", "updated_at_ms")
PREDICTION_KEY = ("exchange", "symbol", "target_time_ms", "model_version")
PREDICTION_VALUES = (
    "made_at_ms",
    "last_close",
    "predicted_close",
    "lower",
    "upper",
    "interval_level",
    "latency_ms",
    "drift_alarms",
    "updated_at_ms",
)


@dataclass(frozen=True, slots=True)
class PredictionRecord(Prediction):
    """A stored :class:`~shared.contracts.events.Prediction` with its outcome.

    Attributes
    ----------
    realised_close : float or None
        Close of the bar of minute ``target_time_ms`` in quote currency, or
        ``None`` while that bar has not been stored.
    """

    realised_close: float | None


def check_key_lengths(row: Mapping[str, Any]) -> None:
    """Raise ValueError for a key string longer than its column (MySQL would refuse it, SQLite not)."""
    for name, limit in KEY_LENGTHS.items():
        value = row.get(name)
        if value is not None and len(value) > limit:
            raise ValueError(f"{name} longer than {limit} characters: {value[:limit]!r}...")


def of_symbol(query: sa.Select[Any], table: sa.Table, exchange: str, symbol: str) -> sa.Select[Any]:
    """``query`` restricted to the rows of one (exchange, symbol) of ``table`` (matched exactly)."""
    return query.where(table.c.exchange == exchange, table.c.symbol == symbol)


def in_range(
    query: sa.Select[Any], column: sa.ColumnElement[int], start_ms: int | None, end_ms: int | None
) -> sa.Select[Any]:
    """``query`` restricted to ``start_ms <= column < end_ms`` (ms since epoch UTC; ``None`` = unbounded)."""
    if start_ms is not None:
        query = query.where(column >= start_ms)
    if end_ms is not None:
        query = query.where(column < end_ms)
    return query
