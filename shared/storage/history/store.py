"""``HistoryStore``: idempotent upserts and reads of bars and predictions.

Writes are idempotent upserts, because Event Hubs delivers at least once: the same bar twice is
one row, and a later bar for the same minute replaces the earlier values. Each prediction row
carries ``realised_close``, the close of the bar whose ``open_time_ms`` equals the prediction's
``target_time_ms``. It is filled whichever of the two events is stored first, and follows
revisions of that bar.

Every method that touches the database raises :class:`RuntimeError` once the store is closed,
and lets ``sqlalchemy.exc.SQLAlchemyError`` through when the database cannot be reached, read
or written (a failed write keeps nothing of that call).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine

from shared.contracts.events import Bar, Prediction
from shared.settings import Settings
from shared.storage.history import accuracy, migrations
from shared.storage.history.accuracy import VersionAccuracy
from shared.storage.history.connection import create_engine, normalise_url
from shared.storage.history.schema import (
    BAR_KEY,
    BAR_VALUES,
    MYSQL_DIALECTS,
    PREDICTION_KEY,
    PREDICTION_VALUES,
    PredictionRecord,
    bars_table,
    check_key_lengths,
    in_range,
    of_symbol,
    predictions_table,
)
from shared.storage.history.upserts import refresh_realised, upsert_statement

_PREDICTION_FIELDS = tuple(PredictionRecord.__dataclass_fields__)
_BAR_ORDER = (bars_table.c.open_time_ms,)
_PREDICTION_ORDER = (predictions_table.c.target_time_ms, predictions_table.c.model_version)
_Record = TypeVar("_Record")


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _at_least_zero(value: int | None, name: str) -> None:
    if value is not None and value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")


class HistoryStore:
    """Bars and predictions in a MySQL/MariaDB or SQLite database.

    Build it with :meth:`from_settings` or :meth:`from_url`; close it with
    :meth:`close` or use it as a context manager. Thread-safe as far as the
    SQLAlchemy engine is (each call checks a connection out of its pool).

    Parameters
    ----------
    engine : sqlalchemy.engine.Engine
        Engine of a ``mysql``/``mariadb`` (PyMySQL) or ``sqlite`` database.
    create : bool, default True
        Create the tables if they are missing and upgrade an older schema
        (see :meth:`create_schema`).

    Raises
    ------
    ValueError
        The engine's dialect is neither MySQL/MariaDB nor SQLite.
    sqlalchemy.exc.SQLAlchemyError
        The database cannot be reached or the tables cannot be created or upgraded.
    TimeoutError
        MySQL/MariaDB: another process's upgrade held the schema lock too long
        (:data:`.migrations.LOCK_TIMEOUT_S`).

    Notes
    -----
    Every method below that reads or writes raises ``RuntimeError`` once the store is
    closed, and ``sqlalchemy.exc.SQLAlchemyError`` when the database cannot be reached,
    read or written; their ``Raises`` sections name only what else they raise.
    """

    def __init__(self, engine: Engine, *, create: bool = True) -> None:
        if engine.dialect.name not in (*MYSQL_DIALECTS, "sqlite"):
            raise ValueError(f"unsupported database dialect {engine.dialect.name!r}")
        self._engine = engine
        self._closed = False
        if create:
            self.create_schema()

    @classmethod
    def from_url(
        cls, url: str | URL | None, *, sqlite_path: str | os.PathLike[str] | None = None
    ) -> HistoryStore:
        """Open the store at ``url`` (see :func:`~.connection.normalise_url`) and create missing tables.

        Raises
        ------
        ValueError
            An unsupported or malformed URL.
        sqlalchemy.exc.SQLAlchemyError
            The database cannot be reached or the tables cannot be created.
        """
        engine = create_engine(normalise_url(url, sqlite_path=sqlite_path))
        try:
            return cls(engine)
        except BaseException:
            engine.dispose()
            raise

    @classmethod
    def from_settings(cls, settings: Settings) -> HistoryStore:
        """Open the store named by ``MYSQL_URL``, or the SQLite file ``HISTORY_SQLITE_PATH`` if it is empty.

        Raises
        ------
        ValueError
            An unsupported or malformed ``MYSQL_URL``.
        sqlalchemy.exc.SQLAlchemyError
            The database cannot be reached or the tables cannot be created.
        """
        return cls.from_url(settings.mysql_url, sqlite_path=settings.history_sqlite_path)

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine (for inspection and tests; write through this class).

        Raises
        ------
        RuntimeError
            The store is closed.
        """
        if self._closed:
            raise RuntimeError("history store is closed")
        return self._engine

    @property
    def dialect(self) -> str:
        """Dialect name: ``mysql``, ``mariadb`` or ``sqlite``."""
        return self._engine.dialect.name

    def create_schema(self) -> None:
        """Create missing tables and upgrade an older schema to the head revision, keeping every row.

        Runs the Alembic revisions of :mod:`.migrations`; a store already at the head
        revision is only read (one row of ``alembic_version``).

        Raises
        ------
        TimeoutError
            MySQL/MariaDB: another process held the upgrade lock too long.
        sqlalchemy.exc.SQLAlchemyError
            The database cannot be reached or refuses the DDL.
        """
        migrations.upgrade(self.engine)

    def close(self) -> None:
        """Close every pooled connection; later calls raise :class:`RuntimeError`. Idempotent."""
        if not self._closed:
            self._closed = True
            self._engine.dispose()

    def __enter__(self) -> HistoryStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<HistoryStore {self._engine.url.render_as_string(hide_password=True)} {state}>"

    # -- writes -------------------------------------------------------------------------

    def upsert_bars(self, bars: Iterable[Bar]) -> int:
        """Insert or replace bars, and set ``realised_close`` of the predictions targeting them.

        All rows are written in one transaction. A bar whose (exchange, symbol,
        open_time_ms) is already stored replaces the stored values; when the same
        minute occurs more than once in ``bars`` the last occurrence wins.

        Parameters
        ----------
        bars : iterable of shared.contracts.events.Bar
            Closed bars; prices in quote currency, ``open_time_ms`` in ms since epoch UTC.

        Returns
        -------
        int
            Number of distinct bars written (0 for an empty input, which touches nothing).

        Raises
        ------
        ValueError
            ``exchange`` longer than 32 or ``symbol`` longer than 64 characters;
            nothing is written.
        RuntimeError, sqlalchemy.exc.SQLAlchemyError
            See :class:`HistoryStore`; nothing of this call is kept.
        """
        return self._write(bars_table, BAR_KEY, BAR_VALUES, bars, "open_time_ms")

    def upsert_predictions(self, predictions: Iterable[Prediction]) -> int:
        """Insert or replace predictions, filling ``realised_close`` if the target bar is stored.

        All rows are written in one transaction. A prediction whose (exchange,
        symbol, target_time_ms, model_version) is already stored replaces the
        stored values; when a key occurs more than once in ``predictions`` the
        last occurrence wins. ``realised_close`` is never taken from the input.

        Parameters
        ----------
        predictions : iterable of shared.contracts.events.Prediction
            Forecasts; prices in quote currency, times in ms since epoch UTC.

        Returns
        -------
        int
            Number of distinct predictions written (0 for an empty input).

        Raises
        ------
        ValueError
            ``exchange``, ``symbol`` or ``model_version`` longer than 32, 64 or
            128 characters; nothing is written.
        RuntimeError, sqlalchemy.exc.SQLAlchemyError
            See :class:`HistoryStore`; nothing of this call is kept.
        """
        return self._write(
            predictions_table, PREDICTION_KEY, PREDICTION_VALUES, predictions, "target_time_ms"
        )

    def _write(
        self, table: sa.Table, key: Sequence[str], values: Sequence[str], records: Iterable[Any], minute: str
    ) -> int:
        """Upsert ``records`` (attributes named as the columns) and refresh realised closes by ``minute``."""
        now = _now_ms()
        rows: dict[tuple[Any, ...], dict[str, Any]] = {}
        for record in records:
            row = {c: getattr(record, c) for c in key + values if c != "updated_at_ms"}
            row["updated_at_ms"] = now
            check_key_lengths(row)
            rows[tuple(row[k] for k in key)] = row  # the last occurrence of a key wins
        if not rows:
            return 0
        with self.engine.begin() as conn:
            conn.execute(upsert_statement(self.dialect, table, key, values), list(rows.values()))
            refresh_realised(conn, rows.values(), minute, now)
        return len(rows)

    # -- reads --------------------------------------------------------------------------

    def bars(
        self,
        exchange: str,
        symbol: str,
        start_ms: int | None = None,
        end_ms: int | None = None,
        limit: int | None = None,
    ) -> list[Bar]:
        """Bars of one symbol with ``start_ms <= open_time_ms < end_ms``, oldest first.

        Parameters
        ----------
        exchange, symbol : str
            As in the events, e.g. ``"binance"``, ``"BTCUSDT"``; matched exactly (case-sensitive).
        start_ms, end_ms : int, optional
            Half-open range of minute open times, ms since epoch UTC; ``None`` = unbounded.
        limit : int, optional
            At most this many bars (the oldest in the range).

        Raises
        ------
        ValueError
            A negative ``limit``.
        RuntimeError, sqlalchemy.exc.SQLAlchemyError
            See :class:`HistoryStore`.
        """
        _at_least_zero(limit, "limit")
        return self._select(self._bar_query(exchange, symbol), Bar, _BAR_ORDER, start_ms, end_ms, limit)

    def latest_bars(self, exchange: str, symbol: str, n: int, end_ms: int | None = None) -> list[Bar]:
        """The last ``n`` bars of one symbol (fewer if fewer are stored), oldest first.

        Parameters
        ----------
        exchange, symbol : str
            As in the events; matched exactly (case-sensitive).
        n : int
            At most this many bars (>= 0).
        end_ms : int, optional
            Exclusive upper bound of minute open times, ms since epoch UTC; ``None`` = unbounded.

        Raises
        ------
        ValueError
            A negative ``n``.
        RuntimeError, sqlalchemy.exc.SQLAlchemyError
            See :class:`HistoryStore`.
        """
        _at_least_zero(n, "n")
        return self._select(self._bar_query(exchange, symbol), Bar, _BAR_ORDER, None, end_ms, n, newest=True)

    def predictions(
        self,
        exchange: str,
        symbol: str,
        start_ms: int | None = None,
        end_ms: int | None = None,
    ) -> list[PredictionRecord]:
        """Predictions of one symbol with ``start_ms <= target_time_ms < end_ms``.

        Ordered by ``target_time_ms``, then ``model_version``.

        Parameters
        ----------
        exchange, symbol : str
            As in the events; matched exactly (case-sensitive).
        start_ms, end_ms : int, optional
            Half-open range of target minute open times, ms since epoch UTC;
            ``None`` = unbounded.

        Raises
        ------
        RuntimeError, sqlalchemy.exc.SQLAlchemyError
            See :class:`HistoryStore`.
        """
        query = self._prediction_query(exchange, symbol)
        return self._select(query, PredictionRecord, _PREDICTION_ORDER, start_ms, end_ms, None)

    def recent_predictions(self, exchange: str, symbol: str, n: int) -> list[PredictionRecord]:
        """The ``n`` predictions of one symbol with the latest target minutes, oldest first.

        Ordered by ``target_time_ms``, then ``model_version`` (all model versions count).

        Raises
        ------
        ValueError
            A negative ``n``.
        RuntimeError, sqlalchemy.exc.SQLAlchemyError
            See :class:`HistoryStore`.
        """
        _at_least_zero(n, "n")
        query = self._prediction_query(exchange, symbol)
        return self._select(query, PredictionRecord, _PREDICTION_ORDER, None, None, n, newest=True)

    def symbols(self) -> list[tuple[str, str]]:
        """The (exchange, symbol) pairs that have at least one bar, sorted.

        Raises
        ------
        RuntimeError, sqlalchemy.exc.SQLAlchemyError
            See :class:`HistoryStore`.
        """
        c = bars_table.c
        query = sa.select(c.exchange, c.symbol).distinct().order_by(c.exchange, c.symbol)
        with self.engine.connect() as conn:
            return [(row.exchange, row.symbol) for row in conn.execute(query)]

    def last_realised_target_ms(self, exchange: str, symbol: str) -> int | None:
        """Latest realised target minute, or ``None``: see :func:`.accuracy.last_realised_target_ms`."""
        with self.engine.connect() as conn:
            return accuracy.last_realised_target_ms(conn, exchange, symbol)

    def accuracy_by_version(
        self, exchange: str, symbol: str, start_ms: int | None = None, end_ms: int | None = None
    ) -> list[VersionAccuracy]:
        """Error sums of realised predictions per model version: see :func:`.accuracy.accuracy_by_version`."""
        with self.engine.connect() as conn:
            return accuracy.accuracy_by_version(conn, exchange, symbol, start_ms, end_ms)

    def ping(self) -> None:
        """Run ``SELECT 1`` (a health check).

        Raises
        ------
        RuntimeError, sqlalchemy.exc.SQLAlchemyError
            See :class:`HistoryStore`.
        """
        with self.engine.connect() as conn:
            conn.execute(sa.select(sa.literal(1))).scalar_one()

    def count_bars(self) -> int:
        """Number of stored bars, all symbols."""
        return self._count(bars_table)

    def count_predictions(self) -> int:
        """Number of stored predictions, all symbols and model versions."""
        return self._count(predictions_table)

    def _count(self, table: sa.Table) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())

    @staticmethod
    def _bar_query(exchange: str, symbol: str) -> sa.Select[Any]:
        c = bars_table.c
        query = sa.select(
            c.exchange, c.symbol, c.open_time_ms, c.open, c.high, c.low, c.close, c.volume, c.trade_count
        )
        return of_symbol(query, bars_table, exchange, symbol)

    @staticmethod
    def _prediction_query(exchange: str, symbol: str) -> sa.Select[Any]:
        query = sa.select(*(predictions_table.c[name] for name in _PREDICTION_FIELDS))
        return of_symbol(query, predictions_table, exchange, symbol)

    def _select(
        self,
        query: sa.Select[Any],
        record: Callable[..., _Record],
        order: Sequence[sa.ColumnElement[Any]],
        start_ms: int | None,
        end_ms: int | None,
        limit: int | None,
        *,
        newest: bool = False,
    ) -> list[_Record]:
        """Rows of ``query`` with ``start_ms <= order[0] < end_ms`` as ``record``s, sorted by ``order``.

        At most ``limit`` rows (``None``: all): the first ones, or with ``newest`` the last ones
        (still returned in ascending order).
        """
        query = in_range(query, order[0], start_ms, end_ms)
        query = query.order_by(*(c.desc() for c in order) if newest else order).limit(limit)
        with self.engine.connect() as conn:
            rows = [record(**row._mapping) for row in conn.execute(query)]
        return rows[::-1] if newest else rows
