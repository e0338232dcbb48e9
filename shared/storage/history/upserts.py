"""The SQL of the history store's idempotent writes: the upsert, and the realised-close refresh.

Event Hubs delivers at least once, so every write is an INSERT that updates the row with the
same key (MySQL ``ON DUPLICATE KEY UPDATE``, SQLite ``ON CONFLICT DO UPDATE``), and every write
re-derives ``predictions.realised_close`` from ``bars.close`` over the minutes it touched, so the
outcome is the same whichever of a bar and its predictions is stored first.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, sqlite
from sqlalchemy.engine import Connection

from shared.storage.history.schema import MYSQL_DIALECTS, bars_table, predictions_table


def upsert_statement(
    dialect: str, table: sa.Table, key: Sequence[str], values: Sequence[str]
) -> sa.Executable:
    """An INSERT into ``table`` that updates ``values`` when a row with the same ``key`` exists.

    Parameters
    ----------
    dialect : str
        ``mysql``, ``mariadb`` or ``sqlite``.
    table : sqlalchemy.Table
    key, values : sequence of str
        Primary-key columns, and the columns a repeated key overwrites.
    """
    if dialect in MYSQL_DIALECTS:
        stmt = mysql.insert(table)
        return stmt.on_duplicate_key_update({c: stmt.inserted[c] for c in values})
    stmt = sqlite.insert(table)
    return stmt.on_conflict_do_update(index_elements=list(key), set_={c: stmt.excluded[c] for c in values})


def refresh_realised(conn: Connection, rows: Iterable[Mapping[str, Any]], time_field: str, now: int) -> None:
    """Set ``realised_close`` of the predictions in the time span of ``rows``, per symbol.

    One correlated UPDATE per (exchange, symbol): each prediction whose ``target_time_ms`` lies
    between the least and greatest ``row[time_field]`` of that symbol gets the close of its
    target bar, or NULL if that bar is not stored; rows it changes get ``updated_at_ms = now``
    (ms since epoch UTC).

    Raises
    ------
    sqlalchemy.exc.SQLAlchemyError
        The database refused an update (the caller's transaction is then rolled back).
    """
    spans: dict[tuple[str, str], tuple[int, int]] = {}
    for row in rows:
        key, t = (row["exchange"], row["symbol"]), row[time_field]
        lo, hi = spans.get(key, (t, t))
        spans[key] = (min(lo, t), max(hi, t))
    p, b = predictions_table.c, bars_table.c
    target_close = (
        sa.select(b.close)
        .where(b.exchange == p.exchange, b.symbol == p.symbol, b.open_time_ms == p.target_time_ms)
        .scalar_subquery()
    )
    changed = p.realised_close.is_distinct_from(target_close)
    for (exchange, symbol), (lo, hi) in spans.items():
        conn.execute(
            sa.update(predictions_table)
            .where(p.exchange == exchange, p.symbol == symbol, p.target_time_ms.between(lo, hi))
            .where(changed)
            .values(realised_close=target_close, updated_at_ms=now)
        )
