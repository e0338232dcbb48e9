"""A private MariaDB server (``mariadbd``) with its own data directory, for the local stack and the tests.

The process is pytest-mysql's :class:`pytest_mysql.executor.MySQLExecutor` (a mirakuru
``TCPExecutor``: ``mariadb-install-db`` once, then ``mariadbd-safe``; ready when the TCP port and the
unix socket accept connections; stopped with ``mariadb-admin shutdown``), the executor the test
fixtures (``tests/servers/mariadb.py``) use through pytest-mysql's ``mysql_proc`` factory. This
module holds what both need: where the binaries are, the server options, and the test account.
:class:`MariaDBProcess` uses the executor directly, on a fixed port, so a server stopped for an
outage comes back on the same port with the same data (the fault-injection suite,
:mod:`local_stack.faults`).
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import time
from pathlib import Path

__all__ = ["BINARIES", "INSTALL_ADVICE", "MariaDBProcess", "SERVER_PARAMS", "create_account"]

INSTALL_ADVICE = (
    "MariaDB is not installed: run `make test` (it installs mariadb-server) "
    "or `sudo apt-get install mariadb-server`"
)
"""Message of the failure when the MariaDB binaries are missing."""

_SBIN = os.pathsep.join(["/usr/local/sbin", "/usr/sbin", "/sbin"])


def _which(*names: str) -> str | None:
    """The first of ``names`` found on PATH or in the sbin directories."""
    for name in names:
        found = shutil.which(name) or shutil.which(name, path=_SBIN)
        if found:
            return found
    return None


BINARIES: dict[str, str | None] = {
    "mariadbd": _which("mariadbd", "mysqld"),
    "mariadb-install-db": _which("mariadb-install-db", "mysql_install_db"),
    # pytest-mysql's server command line includes --skip-syslog, an option of the safe wrapper only
    "mariadbd-safe": _which("mariadbd-safe", "mysqld_safe"),
    "mariadb-admin": _which("mariadb-admin", "mysqladmin"),
}
"""Where the MariaDB programs are (``None`` if not found)."""

SERVER_PARAMS = (
    "--skip-name-resolve --innodb-buffer-pool-size=32M --innodb-log-file-size=16M "
    "--innodb-flush-log-at-trx-commit=2 --innodb-doublewrite=0 --skip-log-bin"
)
"""Options of a throwaway server: small buffers, no binary log, no fsync per commit."""


def create_account(cursor, user: str, password: str) -> None:
    """Create ``user`` (password ``password``) for TCP and socket clients, allowed everything.

    ``--skip-name-resolve``: TCP clients match by address; ``localhost`` is the socket.
    ``cursor`` is a DB-API cursor of an administrator connection.
    """
    for host in ("127.0.0.1", "::1", "localhost"):
        cursor.execute("CREATE USER IF NOT EXISTS %s@%s IDENTIFIED BY %s", (user, host, password))
        cursor.execute("GRANT ALL PRIVILEGES ON *.* TO %s@%s", (user, host))


class MariaDBProcess:
    """A private ``mariadbd`` on a loopback port, with its data directory under ``base_dir``.

    Parameters
    ----------
    base_dir : Path
        Directory of the data directory, socket, pid file and log (created; must be new or empty
        of a previous ``mysqldata_<port>``). Keep the path short: the unix socket path must stay
        under 108 bytes.
    port : int, optional
        TCP port; a free one is picked when omitted. It stays fixed across :meth:`stop` and
        :meth:`start`, as do the data.
    user, password : str
        The account created at the first start (all privileges), for :meth:`url`.
    timeout : int
        Seconds to wait for a start or a stop.

    Raises
    ------
    RuntimeError
        From :meth:`start`: MariaDB is not installed (:data:`INSTALL_ADVICE`) or did not start.
    """

    def __init__(self, base_dir: Path, port: int | None = None, *, user: str = "tickcast",
                 password: str = "tickcast-local", timeout: int = 60) -> None:
        self.base_dir = Path(base_dir)
        self.host = "127.0.0.1"
        self.port = port or _free_port()
        self.user, self.password = user, password
        self.admin_user = getpass.getuser()  # owns the data directory; the server's admin by unix_socket auth
        self.timeout = timeout
        self._executor = None
        self._account = False
        self.startup_seconds: float | None = None

    @property
    def unix_socket(self) -> str:
        """Path of the server's unix socket (administrator connections)."""
        return str(self.base_dir / f"mysql.{self.port}.sock")

    @property
    def running(self) -> bool:
        """True while the server process runs."""
        return self._executor is not None and self._executor.running()

    def start(self) -> MariaDBProcess:
        """Start the server (initialising the data directory the first time); returns ``self``.

        Raises
        ------
        RuntimeError
            MariaDB is not installed, or the server did not become ready within ``timeout``.
        """
        missing = [name for name, path in BINARIES.items() if path is None]
        if missing:
            raise RuntimeError(f"{INSTALL_ADVICE} (not found: {', '.join(missing)})")
        if self.running:
            return self
        t0 = time.monotonic()
        if self._executor is None:
            from pytest_mysql.executor import MySQLExecutor

            self.base_dir.mkdir(parents=True, exist_ok=True)
            self._executor = MySQLExecutor(
                mysqld_safe=Path(BINARIES["mariadbd-safe"]), mysqld=Path(BINARIES["mariadbd"]),
                admin_exec=BINARIES["mariadb-admin"], logfile_path=str(self.base_dir / "mariadb.log"),
                params=SERVER_PARAMS, base_directory=self.base_dir, user=self.admin_user, host=self.host,
                port=self.port, timeout=self.timeout, install_db=BINARIES["mariadb-install-db"],
            )
        try:
            self._executor.start()
        except Exception as exc:
            raise RuntimeError(f"MariaDB did not start on {self.host}:{self.port}: {exc!r}; "
                               f"log: {self.base_dir / 'mariadb.log'}") from exc
        if not self._account:
            with self.admin_connection() as conn, conn.cursor() as cur:
                create_account(cur, self.user, self.password)
            self._account = True
        self.startup_seconds = time.monotonic() - t0
        return self

    def stop(self) -> None:
        """Shut the server down (``mariadb-admin shutdown``, then mirakuru's stop); data are kept. Idempotent."""
        if self._executor is not None and self._executor.running():
            try:
                self._executor.stop()
            except Exception:  # shutdown refused or the process already gone: make sure it is
                self._executor.kill()

    def admin_connection(self):
        """An autocommit ``pymysql`` connection as the OS user over the unix socket."""
        import pymysql

        return pymysql.connect(unix_socket=self.unix_socket, user=self.admin_user, autocommit=True)

    def create_database(self, name: str) -> str:
        """Create database ``name`` (utf8mb4) if missing; return its URL (:meth:`url`)."""
        with self.admin_connection() as conn, conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE IF NOT EXISTS `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci")
        return self.url(name)

    def url(self, database: str) -> str:
        """The ``mysql+pymysql://`` URL of ``database`` for the account (``MYSQL_URL``)."""
        return f"mysql+pymysql://{self.user}:{self.password}@{self.host}:{self.port}/{database}?charset=utf8mb4"

    def __enter__(self) -> MariaDBProcess:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<MariaDBProcess {self.host}:{self.port} {'running' if self.running else 'stopped'}>"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
