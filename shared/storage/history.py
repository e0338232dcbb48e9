"""History store of closed bars and predictions, on MySQL/MariaDB or an embedded SQLite file.

One SQLAlchemy Core schema (:data:`metadata`) serves both databases: MySQL or
MariaDB through the PyMySQL driver in Azure and in the integration tests, and
an SQLite file as the embedded default when ``MYSQL_URL`` is empty (see
:mod:`shared.settings`). Writers are the archive function and the local stack;
readers are the retrain function, reports and the dashboard.

Writes are idempotent upserts, because Event Hubs delivers at least once: the
same bar twice is one row, and a later bar for the same minute replaces the
earlier values. Each prediction row carries ``realised_close``, the close of
the bar whose ``open_time_ms`` equals the prediction's ``target_time_ms``. It
is filled whichever of the two events is stored first, and follows revisions
of that bar.

Units: prices in the quote currency of the symbol, volumes in the base asset,
times in integer milliseconds since the Unix epoch, UTC.

Examples
--------
>>> from shared.contracts.events import Bar
>>> with HistoryStore.from_url("sqlite://") as store:
...     store.upsert_bars([Bar("binance", "BTCUSDT", 1723161240000,
...                            61830.0, 61850.5, 61801.2, 61837.63, 12.5, 420)])
...     store.latest_bars("binance", "BTCUSDT", 1)[0].close
1
61837.63
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, sqlite
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.exc import ArgumentError

from shared.contracts.events import Bar, Prediction
from shared.settings import SETTINGS, Settings

__all__ = [
    "HistoryStore",
    "PredictionRecord",
    "VersionAccuracy",
    "bars_table",
    "metadata",
    "normalise_url",
    "predictions_table",
]

_MYSQL_DIALECTS = ("mysql", "mariadb")
_KEY_LENGTHS = {"exchange": 32, "symbol": 64, "model_version": 128}
_DEFAULT_SQLITE_PATH = SETTINGS["HISTORY_SQLITE_PATH"][0]


def _text(length: int) -> sa.types.TypeEngine[str]:
    """A key string: case- and accent-sensitive on MySQL, as it always is on SQLite."""
    return sa.String(length).with_variant(
        mysql.VARCHAR(length, charset="utf8mb4", collation="utf8mb4_bin"), *_MYSQL_DIALECTS
    )


def _price() -> sa.types.TypeEngine[float]:
    """An IEEE double: DOUBLE on MySQL, REAL affinity on SQLite; returned as ``float``."""
    return sa.Double().with_variant(mysql.DOUBLE(asdecimal=False), *_MYSQL_DIALECTS)


_TABLE_OPTIONS = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"}

metadata = sa.MetaData()
"""The history schema: tables ``bars`` and ``predictions``."""

bars_table = sa.Table(
    "bars",
    metadata,
    sa.Column("exchange", _text(_KEY_LENGTHS["exchange"]), primary_key=True),
    sa.Column("symbol", _text(_KEY_LENGTHS["symbol"]), primary_key=True),
    sa.Column("open_time_ms", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("open", _price(), nullable=False),
    sa.Column("high", _price(), nullable=False),
    sa.Column("low", _price(), nullable=False),
    sa.Column("close", _price(), nullable=False),
    sa.Column("volume", _price(), nullable=False),
    sa.Column("trade_count", sa.Integer, nullable=False),
    sa.Column("updated_at_ms", sa.BigInteger, nullable=False),
    comment="closed one-minute OHLCV bars; prices in quote currency, times ms since epoch UTC",
    **_TABLE_OPTIONS,
)
"""Closed one-minute bars, one row per (exchange, symbol, open_time_ms).

``updated_at_ms`` is the wall-clock time of the last write of the row.
"""

predictions_table = sa.Table(
    "predictions",
    metadata,
    sa.Column("exchange", _text(_KEY_LENGTHS["exchange"]), primary_key=True),
    sa.Column("symbol", _text(_KEY_LENGTHS["symbol"]), primary_key=True),
    sa.Column("target_time_ms", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("model_version", _text(_KEY_LENGTHS["model_version"]), primary_key=True),
    sa.Column("made_at_ms", sa.BigInteger, nullable=False),
    sa.Column("last_close", _price(), nullable=False),
    sa.Column("predicted_close", _price(), nullable=False),
    sa.Column("lower", _price(), nullable=False),
    sa.Column("upper", _price(), nullable=False),
    sa.Column("interval_level", _price(), nullable=False),
    sa.Column("latency_ms", sa.BigInteger, nullable=False),
    sa.Column("drift_alarms", sa.Integer, nullable=False, server_default="0"),
    sa.Column("realised_close", _price(), nullable=True),
    sa.Column("updated_at_ms", sa.BigInteger, nullable=False),
    comment="forecasts of the close of the minute starting at target_time_ms, with the realised close",
    **_TABLE_OPTIONS,
)
"""Predictions, one row per (exchange, symbol, target_time_ms, model_version).

``realised_close`` is the close of the bar with ``open_time_ms == target_time_ms``,
or NULL while that bar has not been stored.
"""

_BAR_KEY = ("exchange", "symbol", "open_time_ms")
_BAR_VALUES = ("open", "high", "low", "close", "volume", "trade_count", "updated_at_ms")
_PREDICTION_KEY = ("exchange", "symbol", "target_time_ms", "model_version")
_PREDICTION_VALUES = (
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


def normalise_url(url: str | URL | None, *, sqlite_path: str | os.PathLike[str] | None = None) -> URL:
    """Return the SQLAlchemy URL the history store connects to.

    Parameters
    ----------
    url : str, sqlalchemy.engine.URL or None
        ``mysql://``, ``mysql+pymysql://``, ``mariadb://`` or ``mariadb+pymysql://``
        (always served by PyMySQL, with ``charset=utf8mb4`` unless the URL sets a
        charset), ``sqlite:///path`` or ``sqlite://`` (in memory). Empty or
        ``None`` selects the SQLite file ``sqlite_path``.
    sqlite_path : str or os.PathLike, optional
        SQLite file used when ``url`` is empty; default the ``HISTORY_SQLITE_PATH``
        default (``tickcast-history.sqlite3`` in the working directory).

    Returns
    -------
    sqlalchemy.engine.URL

    Raises
    ------
    ValueError
        ``url`` does not parse, names another database, or a MySQL driver other
        than PyMySQL.

    Examples
    --------
    >>> normalise_url("mysql://tick:secret@db.example:3306/tickcast").drivername
    'mysql+pymysql'
    >>> normalise_url("", sqlite_path="/tmp/h.sqlite3").database
    '/tmp/h.sqlite3'
    """
    if url is None or (isinstance(url, str) and not url.strip()):
        path = os.fspath(sqlite_path if sqlite_path is not None else _DEFAULT_SQLITE_PATH)
        return URL.create("sqlite+pysqlite", database=path)
    try:
        parsed = sa.make_url(url.strip() if isinstance(url, str) else url)
    except ArgumentError as exc:
        raise ValueError(f"not a database URL: {exc}") from None
    backend, driver = parsed.get_backend_name(), parsed.get_driver_name()
    if backend in _MYSQL_DIALECTS:
        if "+" in parsed.drivername and driver != "pymysql":
            raise ValueError(f"unsupported MySQL driver {driver!r}: use mysql+pymysql://")
        parsed = parsed.set(drivername=f"{backend}+pymysql")
        if "charset" not in parsed.query:
            parsed = parsed.update_query_dict({"charset": "utf8mb4"})
        return parsed
    if backend == "sqlite":
        if "+" in parsed.drivername and driver != "pysqlite":
            raise ValueError(f"unsupported SQLite driver {driver!r}: use sqlite:///path")
        return parsed.set(drivername="sqlite+pysqlite")
    raise ValueError(f"unsupported database {backend!r}: use mysql+pymysql:// or sqlite:///path")


def _check_key_lengths(row: Mapping[str, Any]) -> None:
    """Raise ValueError for a key string longer than its column (MySQL would refuse it, SQLite not)."""
    for name, limit in _KEY_LENGTHS.items():
        value = row.get(name)
        if value is not None and len(value) > limit:
            raise ValueError(f"{name} longer than {limit} characters: {value[:limit]!r}...")


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _on_sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # Write-ahead logging lets readers (retrain, dashboard) run while the archive writes.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _create_engine(url: URL) -> Engine:
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:" and not url.database.startswith("file:"):
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": 30})
        sa.event.listen(engine, "connect", _on_sqlite_connect)
        return engine
    # Azure Database for MySQL drops idle connections: check before use, renew hourly.
    return sa.create_engine(url, pool_pre_ping=True, pool_recycle=3600)


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
        Create the tables if they are missing.

    Raises
    ------
    ValueError
        The engine's dialect is neither MySQL/MariaDB nor SQLite.
    sqlalchemy.exc.SQLAlchemyError
        The database cannot be reached or the tables cannot be created.
    """

    def __init__(self, engine: Engine, *, create: bool = True) -> None:
        if engine.dialect.name not in (*_MYSQL_DIALECTS, "sqlite"):
            raise ValueError(f"unsupported database dialect {engine.dialect.name!r}")
        self._engine = engine
        self._closed = False
        if create:
            self.create_schema()

    @classmethod
    def from_url(
        cls, url: str | URL | None, *, sqlite_path: str | os.PathLike[str] | None = None
    ) -> HistoryStore:
        """Open the store at ``url`` (see :func:`normalise_url`) and create missing tables.

        Raises
        ------
        ValueError
            An unsupported or malformed URL.
        sqlalchemy.exc.SQLAlchemyError
            The database cannot be reached or the tables cannot be created.
        """
        engine = _create_engine(normalise_url(url, sqlite_path=sqlite_path))
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
        """Create the tables that are missing; existing tables and rows are left as they are.

        Raises
        ------
        sqlalchemy.exc.SQLAlchemyError
            The database cannot be reached or refuses the DDL.
        """
        metadata.create_all(self.engine, checkfirst=True)

    def close(self) -> None:
        """Close every pooled connection; later calls raise :class:`RuntimeError`. Idempotent."""
        if not self._closed:
            self._closed = True
            self._engine.dispose()

    def __enter__(self) -> HistoryStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
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
        RuntimeError
            The store is closed.
        sqlalchemy.exc.SQLAlchemyError
            The database refused the write; nothing of this call is kept.
        """
        return self._write(bars_table, _BAR_KEY, _BAR_VALUES, bars, "open_time_ms")

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
        RuntimeError
            The store is closed.
        sqlalchemy.exc.SQLAlchemyError
            The database refused the write; nothing of this call is kept.
        """
        return self._write(predictions_table, _PREDICTION_KEY, _PREDICTION_VALUES, predictions, "target_time_ms")

    def _write(
        self, table: sa.Table, key: Sequence[str], values: Sequence[str], records: Iterable[Any], minute: str
    ) -> int:
        """Upsert ``records`` (attributes named as the columns) and refresh realised closes by ``minute``."""
        now = _now_ms()
        rows: dict[tuple[Any, ...], dict[str, Any]] = {}
        for record in records:
            row = {c: getattr(record, c) for c in key + values if c != "updated_at_ms"}
            row["updated_at_ms"] = now
            _check_key_lengths(row)
            rows[tuple(row[k] for k in key)] = row  # the last occurrence of a key wins
        if not rows:
            return 0
        with self.engine.begin() as conn:
            conn.execute(self._upsert(table, key, values), list(rows.values()))
            self._refresh_realised(conn, rows.values(), minute, now)
        return len(rows)

    def _upsert(self, table: sa.Table, key: Sequence[str], values: Sequence[str]) -> sa.Executable:
        """An INSERT that updates ``values`` when a row with the same ``key`` exists."""
        if self.dialect in _MYSQL_DIALECTS:
            stmt = mysql.insert(table)
            return stmt.on_duplicate_key_update({c: stmt.inserted[c] for c in values})
        stmt = sqlite.insert(table)
        return stmt.on_conflict_do_update(
            index_elements=list(key), set_={c: stmt.excluded[c] for c in values}
        )

    @staticmethod
    def _refresh_realised(
        conn: Connection, rows: Iterable[Mapping[str, Any]], time_field: str, now: int
    ) -> None:
        """Set ``realised_close`` of the predictions in the time span of ``rows``, per symbol.

        One correlated UPDATE per (exchange, symbol): each prediction in the span
        gets the close of its target bar, or NULL if that bar is not stored.
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
        RuntimeError
            The store is closed.
        sqlalchemy.exc.SQLAlchemyError
            The database cannot be read.
        """
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        c = bars_table.c
        query = self._bar_query(exchange, symbol).order_by(c.open_time_ms)
        if start_ms is not None:
            query = query.where(c.open_time_ms >= start_ms)
        if end_ms is not None:
            query = query.where(c.open_time_ms < end_ms)
        if limit is not None:
            query = query.limit(limit)
        return self._read_bars(query)

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
        RuntimeError
            The store is closed.
        sqlalchemy.exc.SQLAlchemyError
            The database cannot be read.
        """
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        c = bars_table.c
        query = self._bar_query(exchange, symbol).order_by(c.open_time_ms.desc()).limit(n)
        if end_ms is not None:
            query = query.where(c.open_time_ms < end_ms)
        return self._read_bars(query)[::-1]

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
        RuntimeError
            The store is closed.
        sqlalchemy.exc.SQLAlchemyError
            The database cannot be read.
        """
        c = predictions_table.c
        names = [f.name for f in PredictionRecord.__dataclass_fields__.values()]
        query = (
            sa.select(*(c[name] for name in names))
            .where(c.exchange == exchange, c.symbol == symbol)
            .order_by(c.target_time_ms, c.model_version)
        )
        if start_ms is not None:
            query = query.where(c.target_time_ms >= start_ms)
        if end_ms is not None:
            query = query.where(c.target_time_ms < end_ms)
        with self.engine.connect() as conn:
            return [PredictionRecord(**row._mapping) for row in conn.execute(query)]

    def symbols(self) -> list[tuple[str, str]]:
        """The (exchange, symbol) pairs that have at least one bar, sorted.

        Raises
        ------
        RuntimeError
            The store is closed.
        sqlalchemy.exc.SQLAlchemyError
            The database cannot be read.
        """
        c = bars_table.c
        query = sa.select(c.exchange, c.symbol).distinct().order_by(c.exchange, c.symbol)
        with self.engine.connect() as conn:
            return [(row.exchange, row.symbol) for row in conn.execute(query)]

    def recent_predictions(self, exchange: str, symbol: str, n: int) -> list[PredictionRecord]:
        """The ``n`` predictions of one symbol with the latest target minutes, oldest first.

        Ordered by ``target_time_ms``, then ``model_version`` (all model versions count).

        Raises
        ------
        ValueError
            A negative ``n``.
        RuntimeError
            The store is closed.
        sqlalchemy.exc.SQLAlchemyError
            The database cannot be read.
        """
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        c = predictions_table.c
        names = [f.name for f in PredictionRecord.__dataclass_fields__.values()]
        query = (
            sa.select(*(c[name] for name in names))
            .where(c.exchange == exchange, c.symbol == symbol)
            .order_by(c.target_time_ms.desc(), c.model_version.desc())
            .limit(n)
        )
        with self.engine.connect() as conn:
            return [PredictionRecord(**row._mapping) for row in conn.execute(query)][::-1]

    def last_realised_target_ms(self, exchange: str, symbol: str) -> int | None:
        """The latest ``target_time_ms`` of a realised prediction of one symbol (``None``: none yet).

        Raises
        ------
        RuntimeError
            The store is closed.
        sqlalchemy.exc.SQLAlchemyError
            The database cannot be read.
        """
        c = predictions_table.c
        query = sa.select(sa.func.max(c.target_time_ms)).where(
            c.exchange == exchange, c.symbol == symbol, c.realised_close.is_not(None)
        )
        with self.engine.connect() as conn:
            value = conn.execute(query).scalar_one()
        return None if value is None else int(value)

    def accuracy_by_version(
        self, exchange: str, symbol: str, start_ms: int | None = None, end_ms: int | None = None
    ) -> list[VersionAccuracy]:
        """Error sums of the realised predictions with ``start_ms <= target_time_ms < end_ms``, per model version.

        One aggregate query (parameterised, grouped by ``model_version``), ordered
        by the first target minute of each version.

        Parameters
        ----------
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
        RuntimeError
            The store is closed.
        sqlalchemy.exc.SQLAlchemyError
            The database cannot be read.
        """
        c = predictions_table.c
        realised, last, predicted = c.realised_close, c.last_close, c.predicted_close

        def count_if(condition: Any) -> Any:
            return sa.func.sum(sa.case((condition, 1), else_=0))

        query = (
            sa.select(
                c.model_version,
                sa.func.count().label("realised"),
                sa.func.sum(sa.func.abs(predicted - realised)).label("abs_error_model"),
                sa.func.sum(sa.func.abs(last - realised)).label("abs_error_persistence"),
                count_if(sa.and_(realised >= c.lower, realised <= c.upper)).label("covered"),
                count_if(realised != last).label("moves"),
                count_if((predicted - last) * (realised - last) > 0).label("direction_hits"),
                sa.func.avg(c.interval_level).label("interval_level"),
                sa.func.min(c.target_time_ms).label("first_target_time_ms"),
                sa.func.max(c.target_time_ms).label("last_target_time_ms"),
            )
            .where(c.exchange == exchange, c.symbol == symbol, realised.is_not(None))
            .group_by(c.model_version)
            .order_by(sa.func.min(c.target_time_ms), c.model_version)
        )
        if start_ms is not None:
            query = query.where(c.target_time_ms >= start_ms)
        if end_ms is not None:
            query = query.where(c.target_time_ms < end_ms)
        with self.engine.connect() as conn:
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

    def ping(self) -> None:
        """Run ``SELECT 1`` (a health check).

        Raises
        ------
        RuntimeError
            The store is closed.
        sqlalchemy.exc.SQLAlchemyError
            The database cannot be reached.
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
        return sa.select(
            c.exchange, c.symbol, c.open_time_ms, c.open, c.high, c.low, c.close, c.volume, c.trade_count
        ).where(c.exchange == exchange, c.symbol == symbol)

    def _read_bars(self, query: sa.Select[Any]) -> list[Bar]:
        with self.engine.connect() as conn:
            return [Bar(**row._mapping) for row in conn.execute(query)]
