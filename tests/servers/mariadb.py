"""Pytest plugin: a throwaway MariaDB server per test session, and a fresh database per test.

Fixtures
--------
``mariadb_server`` (session)
    A private ``mariadbd`` started with pytest-mysql's ``mysql_proc`` factory on a
    free TCP port (127.0.0.1) in the session's temporary directory, with a test
    account ``tickcast`` that may create and use databases. Fails (never skips)
    with installation advice when MariaDB is not installed.
``mysql_url`` (function)
    A ``mysql+pymysql://`` URL of a new, uniquely named, empty database,
    dropped after the test.
``history_store`` (function, parametrised ``sqlite``/``mysql``)
    A fresh :class:`shared.storage.history.HistoryStore` on an SQLite file in
    ``tmp_path`` or on ``mysql_url``, so a test using it runs on both databases.

The server starts only when a test asks for one of these fixtures, and stops at
the end of the session; its data directory lives under pytest's base temp.
"""

from __future__ import annotations

import getpass
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pymysql
import pytest
from pytest_mysql import factories

from local_stack.mariadb import BINARIES, INSTALL_ADVICE, SERVER_PARAMS, create_account

if TYPE_CHECKING:
    from shared.storage.history import HistoryStore

TEST_USER = "tickcast"
TEST_PASSWORD = "tickcast-test"
_SOCKET_PATH_MAX = 107  # sockaddr_un.sun_path is 108 bytes on Linux, including the NUL

# The OS user owns the data directory and, through unix_socket authentication,
# is the server's administrator: root in CI, the developer's own account elsewhere.
_OS_USER = getpass.getuser()

mariadb_proc = factories.mysql_proc(
    mysqld_exec=Path(BINARIES["mariadbd"] or "mariadbd"),
    mysqld_safe=Path(BINARIES["mariadbd-safe"] or "mariadbd-safe"),
    admin_executable=BINARIES["mariadb-admin"] or "mariadb-admin",
    install_db=BINARIES["mariadb-install-db"] or "mariadb-install-db",
    host="127.0.0.1",
    user=_OS_USER,
    port=None,  # any free port
    params=SERVER_PARAMS,
)
"""pytest-mysql's session-scoped process fixture; use :func:`mariadb_server` instead."""


@dataclass(frozen=True)
class MariaDBServer:
    """A running test server: TCP address, the test account, and the admin socket."""

    host: str
    port: int
    user: str
    password: str
    admin_user: str
    unix_socket: str
    start_seconds: float

    def admin_connection(self) -> pymysql.Connection:
        """An autocommit connection as the OS user over the unix socket (unix_socket auth)."""
        return pymysql.connect(unix_socket=self.unix_socket, user=self.admin_user, autocommit=True)

    def url(self, database: str) -> str:
        """The ``mysql+pymysql://`` URL of ``database`` for the test account."""
        return (
            f"mysql+pymysql://{self.user}:{self.password}@{self.host}:{self.port}/{database}"
            "?charset=utf8mb4"
        )


@pytest.fixture(scope="session")
def mariadb_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> MariaDBServer:
    """Start (once per session) a private MariaDB server with a test account.

    Fails with :data:`INSTALL_ADVICE` if MariaDB is not installed, and with advice
    on ``--basetemp`` if the unix socket path would be too long.
    """
    missing = [name for name, path in BINARIES.items() if path is None]
    if missing:
        pytest.fail(f"{INSTALL_ADVICE} (not found: {', '.join(missing)})", pytrace=False)
    # pytest-mysql puts the socket at <basetemp>/pytest-mysql-mariadb_proc0/mysql.<port>.sock
    socket = tmp_path_factory.getbasetemp() / "pytest-mysql-mariadb_proc0" / "mysql.65535.sock"
    if len(str(socket)) > _SOCKET_PATH_MAX:
        pytest.fail(
            "the MariaDB unix socket path would be too long; run pytest with a short base temp "
            "directory, e.g. --basetemp=/tmp/tickcast-tests",
            pytrace=False,
        )
    started = time.perf_counter()
    proc = request.getfixturevalue("mariadb_proc")
    server = MariaDBServer(
        host=proc.host,
        port=proc.port,
        user=TEST_USER,
        password=TEST_PASSWORD,
        admin_user=proc.user,
        unix_socket=proc.unixsocket,
        start_seconds=time.perf_counter() - started,
    )
    with server.admin_connection() as conn, conn.cursor() as cur:
        create_account(cur, TEST_USER, TEST_PASSWORD)
    return server


@pytest.fixture
def mysql_url(mariadb_server: MariaDBServer) -> Iterator[str]:
    """URL (``mysql+pymysql://``) of a new empty database, dropped after the test."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    with mariadb_server.admin_connection() as conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci")
    try:
        yield mariadb_server.url(name)
    finally:
        with mariadb_server.admin_connection() as conn, conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")


@pytest.fixture(params=["sqlite", "mysql"])
def history_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[HistoryStore]:
    """A fresh, empty :class:`~shared.storage.history.HistoryStore` on SQLite (``tmp_path``) or MariaDB."""
    from shared.storage.history import HistoryStore

    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'history.sqlite3'}"
    else:
        url = request.getfixturevalue("mysql_url")
    store = HistoryStore.from_url(url)
    try:
        yield store
    finally:
        store.close()
