"""Accuracy queries over the realised predictions: error sums per model version, and how far realised.

Each function takes an open SQLAlchemy connection and runs one parameterised aggregate query;
:class:`~shared.storage.history.store.HistoryStore` calls them (its ``accuracy_by_version`` and
``last_realised_target_ms``), and the HTTP accuracy API turns the sums into MAE, coverage and
hit rates.

Examples
--------
>>> from shared.storage.history import HistoryStore
>>> with HistoryStore.from_url("sqlite://") as store, store.engine.connect() as conn:
...     accuracy_by_version(conn, "binance", "BTCUSDT"), last_realised_target_ms(conn, "binance", "BTCUSDT")
([], None)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from shared.storage.history.schema import in_range, of_symbol, predictions_table


@dataclass(frozen=True, slots=True)
class VersionAccuracy:
    """Sums over the realised predictions of one model version (read by the accuracy API).

    Attributes
    ----------
    model_version : str
    realised : int
        Predictions whose target bar is stored (``realised_close`` not NULL).
    abs_error_model, abs_error_persistence : float
        Sums of ``|predicted_close - realised_close|`` and ``|last_close - realised_close|``,
        quote currency.
    covered : int
        Realised closes inside ``[lower, upper]``.
    moves : int
        Realised minutes whose close differs from the last close.
    direction_hits : int
        Of those, forecasts that called the direction of the move (a forecast
        equal to the last close calls none).
    interval_level : float
        Mean stated interval coverage, in (0, 1).
    first_target_time_ms, last_target_time_ms : int
        Span of the target minutes, ms since epoch UTC.
    """

    model_version: str
    realised: int
    abs_error_model: float
    abs_error_persistence: float
    covered: int
    moves: int
    direction_hits: int
    interval_level: float
    first_target_time_ms: int
    last_target_time_ms: int


def _count_if(condition: Any) -> Any:
    return sa.func.sum(sa.case((condition, 1), else_=0))


def accuracy_by_version(
    conn: Connection, exchange: str, symbol: str, start_ms: int | None = None, end_ms: int | None = None
) -> list[VersionAccuracy]:
    """Error sums of the realised predictions with ``start_ms <= target_time_ms < end_ms``, per model version.

    One aggregate query (parameterised, grouped by ``model_version``), ordered
    by the first target minute of each version.

    Parameters
    ----------
    conn : sqlalchemy.engine.Connection
        Open connection to the history database.
    exchange, symbol : str
        As in the events; matched exactly (case-sensitive).
    start_ms, end_ms : int, optional
        Half-open range of target minute open times, ms since epoch UTC; ``None`` = unbounded.

    Returns
    -------
    list of VersionAccuracy
        Empty when no prediction in the range is realised.

    Raises
    ------
    sqlalchemy.exc.SQLAlchemyError
        The database cannot be read.
    """
    c = predictions_table.c
    realised, last, predicted = c.realised_close, c.last_close, c.predicted_close
    query = sa.select(
        c.model_version,
        sa.func.count().label("realised"),
        sa.func.sum(sa.func.abs(predicted - realised)).label("abs_error_model"),
        sa.func.sum(sa.func.abs(last - realised)).label("abs_error_persistence"),
        _count_if(sa.and_(realised >= c.lower, realised <= c.upper)).label("covered"),
        _count_if(realised != last).label("moves"),
        _count_if((predicted - last) * (realised - last) > 0).label("direction_hits"),
        sa.func.avg(c.interval_level).label("interval_level"),
        sa.func.min(c.target_time_ms).label("first_target_time_ms"),
        sa.func.max(c.target_time_ms).label("last_target_time_ms"),
    )
    query = (
        in_range(of_symbol(query, predictions_table, exchange, symbol), c.target_time_ms, start_ms, end_ms)
        .where(realised.is_not(None))
        .group_by(c.model_version)
        .order_by(sa.func.min(c.target_time_ms), c.model_version)
    )
    return [
        VersionAccuracy(
            model_version=row.model_version,
            realised=int(row.realised),
            abs_error_model=float(row.abs_error_model),
            abs_error_persistence=float(row.abs_error_persistence),
            covered=int(row.covered),
            moves=int(row.moves),
            direction_hits=int(row.direction_hits),
            interval_level=float(row.interval_level),
            first_target_time_ms=int(row.first_target_time_ms),
            last_target_time_ms=int(row.last_target_time_ms),
        )
        for row in conn.execute(query)
    ]


def last_realised_target_ms(conn: Connection, exchange: str, symbol: str) -> int | None:
    """The latest ``target_time_ms`` (ms since epoch UTC) of a realised prediction of one symbol.

    Returns ``None`` when no prediction of the symbol is realised yet.

    Raises
    ------
    sqlalchemy.exc.SQLAlchemyError
        The database cannot be read.
    """
    c = predictions_table.c
    query = of_symbol(sa.select(sa.func.max(c.target_time_ms)), predictions_table, exchange, symbol)
    value = conn.execute(query.where(c.realised_close.is_not(None))).scalar_one()
    return None if value is None else int(value)
