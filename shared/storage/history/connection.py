"""Which database the history store opens, and how: URL normalisation and engine options.

MySQL or MariaDB are always served by PyMySQL (``charset=utf8mb4`` unless the URL sets one);
an empty URL selects the embedded SQLite file, opened in write-ahead-log mode so that readers
(retrain, dashboard) run while the archive writes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine
from sqlalchemy.exc import ArgumentError

from shared.settings import SETTINGS
from shared.storage.history.schema import MYSQL_DIALECTS

_DEFAULT_SQLITE_PATH = SETTINGS["HISTORY_SQLITE_PATH"][0]

MYSQL_CONNECT_TIMEOUT_S = 5
"""PyMySQL ``connect_timeout``, s (its default is 10): a refused port fails at once, an
unreachable host after this; a TLS connect to Azure Database for MySQL in-region takes well
under a second, so 5 s only cuts off hosts that will not answer."""


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
    if backend in MYSQL_DIALECTS:
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


def _on_sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # Write-ahead logging lets readers (retrain, dashboard) run while the archive writes.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def create_engine(url: URL) -> Engine:
    """An engine for a URL from :func:`normalise_url`.

    SQLite: the file's folder is created, connections wait up to 30 s for a lock and use WAL.
    MySQL: connections are checked before use and renewed hourly (Azure Database for MySQL
    drops idle ones); a connect gives up after :data:`MYSQL_CONNECT_TIMEOUT_S` unless the URL
    sets ``connect_timeout``. No connection is opened here.
    """
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:" and not url.database.startswith("file:"):
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": 30})
        sa.event.listen(engine, "connect", _on_sqlite_connect)
        return engine
    timeout = {} if "connect_timeout" in url.query else {"connect_timeout": MYSQL_CONNECT_TIMEOUT_S}
    return sa.create_engine(url, pool_pre_ping=True, pool_recycle=3600, connect_args=timeout)
