"""``python -m local_stack servers``: start Tansu, Azurite (and MariaDB) and keep them up.

It creates the hubs (topics) and the models container, writes a ``local.settings.json`` with every
app setting the functions need (:mod:`local_stack.appsettings`), prints where everything is, and
runs until SIGTERM or Ctrl-C. Then ``python -m local_stack functions --settings <that file>`` runs
the functions against them, and ``python -m ingestor replay ... --bootstrap-servers <broker>``
feeds them::

    python -m local_stack servers --dir /tmp/tc --mariadb
    python -m local_stack functions --settings /tmp/tc/local.settings.json
    python -m ingestor replay samples/kraken_XBTUSD_trades_20190701T00Z-01Z.csv.gz \\
        --bootstrap-servers <printed broker> --topic ticks --speed 60

:class:`StackServers` is the same thing in-process, for the fault-injection suite
(:mod:`local_stack.faults`): one server can be stopped and started again on the same port with
the same data (Azurite on disk, MariaDB's data directory), and the broker frozen with SIGSTOP
and thawed with SIGCONT. Tansu keeps its data in memory only: stopping it loses every topic.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from local_stack.appsettings import local_app_settings, write_local_settings
from local_stack.azurite import AzuriteServer
from local_stack.mariadb import MariaDBProcess
from local_stack.tansu import TansuBroker

__all__ = ["SERVERS", "StackServers", "main"]

SERVERS = ("tansu", "azurite", "mariadb")
"""Names of the servers :class:`StackServers` runs, as :meth:`StackServers.stop_server` takes them."""


class StackServers:
    """Tansu, Azurite (on disk) and optionally MariaDB under one directory, on fixed loopback ports.

    Parameters
    ----------
    directory : Path
        Where Azurite's data (``azurite/``) and MariaDB's data directory (``mariadb/``) live.
        Keep it short (the MariaDB unix socket path must stay under 108 bytes).
    mariadb : bool
        Also run a private MariaDB server (the history store); otherwise the functions use SQLite.

    Attributes
    ----------
    tansu : TansuBroker
    azurite : AzuriteServer
    mariadb : MariaDBProcess or None
    outages : list of (str, float, float)
        ``(server, stopped at, started at)`` of each stop/start or freeze/thaw, ``time.monotonic()`` s.

    Raises
    ------
    RuntimeError
        From :meth:`start`: a server did not start (its log tail is in the message).
    """

    def __init__(self, directory: str | os.PathLike[str], *, mariadb: bool = False) -> None:
        self.directory = Path(directory)
        self.tansu = TansuBroker(startup_timeout=30.0)
        self.azurite: AzuriteServer | None = None
        self._azurite_port: int | None = None
        self.mariadb = MariaDBProcess(self.directory / "mariadb") if mariadb else None
        self.outages: list[tuple[str, float, float]] = []
        self._down: dict[str, float] = {}

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> StackServers:
        """Start every server; returns ``self``. On failure, what started is stopped again."""
        try:
            self.tansu.start()
            self.start_server("azurite")
            if self.mariadb is not None:
                self.mariadb.start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop every server (thawing a frozen broker first); idempotent."""
        if "tansu" in self._down and self.tansu.pid is not None:
            os.kill(self.tansu.pid, signal.SIGCONT)
            self._down.pop("tansu")
        if self.mariadb is not None:
            self.mariadb.stop()
        if self.azurite is not None:
            self.azurite.stop()
        self.tansu.stop()

    def __enter__(self) -> StackServers:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ faults
    def stop_server(self, name: str) -> None:
        """Stop ``azurite`` or ``mariadb`` (data kept, port kept), for an outage.

        Raises
        ------
        ValueError
            Another name (stopping Tansu would lose every topic: freeze it instead).
        """
        if name == "azurite" and self.azurite is not None:
            self.azurite.stop()
        elif name == "mariadb" and self.mariadb is not None:
            self.mariadb.stop()
        else:
            raise ValueError(f"cannot stop {name!r}: only azurite and mariadb (freeze_broker() for Tansu)")
        self._down[name] = time.monotonic()

    def start_server(self, name: str) -> None:
        """Start ``azurite`` or ``mariadb`` again, on its port, with its data.

        Raises
        ------
        ValueError
            Another name.
        RuntimeError
            The server did not start.
        """
        if name == "azurite":
            self.azurite = AzuriteServer(port=self._azurite_port, location=self.directory / "azurite",
                                         in_memory=False)
            self.azurite.start()
            self._azurite_port = self.azurite.port
        elif name == "mariadb" and self.mariadb is not None:
            self.mariadb.start()
        else:
            raise ValueError(f"cannot start {name!r}")
        self._mark_up(name)

    def freeze_broker(self) -> None:
        """SIGSTOP the broker: clients' connections stay open and every request hangs."""
        os.kill(self._tansu_pid(), signal.SIGSTOP)
        self._down["tansu"] = time.monotonic()

    def thaw_broker(self) -> None:
        """SIGCONT the broker."""
        os.kill(self._tansu_pid(), signal.SIGCONT)
        self._mark_up("tansu")

    def _tansu_pid(self) -> int:
        pid = self.tansu.pid
        if pid is None:
            raise RuntimeError("Tansu is not running")
        return pid

    def _mark_up(self, name: str) -> None:
        down = self._down.pop(name, None)
        if down is not None:
            self.outages.append((name, down, time.monotonic()))

    # ------------------------------------------------------------------ resources
    def create_hubs(self, names: Iterable[str], partitions: int = 2) -> None:
        """Create the hubs as topics of ``partitions`` partitions (existing ones are kept)."""
        self.tansu.create_topics(list(names), partitions=partitions)

    def create_container(self, name: str):
        """Create blob container ``name`` if missing; return its ``ContainerClient``."""
        from azure.core.exceptions import ResourceExistsError
        from azure.storage.blob import BlobServiceClient

        service = BlobServiceClient.from_connection_string(self.azurite.connection_string)
        container = service.get_container_client(name)
        try:
            container.create_container()
        except ResourceExistsError:
            pass
        return container

    def app_settings(self, *, prefix: str = "", signing_key: str | None = None,
                     overrides: dict[str, str] | None = None) -> dict[str, str]:
        """App settings of a function app on these servers (:func:`local_app_settings`).

        ``prefix`` names a private set of resources: hubs ``<prefix>ticks``, ..., consumer groups,
        container ``<prefix>models`` and, with MariaDB, database ``<prefix>history`` (created
        here, like the hubs and the container). An empty prefix gives the default names.
        """
        names = {"TICKS_HUB_NAME": f"{prefix}ticks", "PREDICTIONS_HUB_NAME": f"{prefix}predictions",
                 "DEADLETTER_HUB_NAME": f"{prefix}deadletter", "PREDICT_CONSUMER_GROUP": f"{prefix}predict",
                 "ARCHIVE_CONSUMER_GROUP": f"{prefix}archive", "BROADCAST_CONSUMER_GROUP": f"{prefix}broadcast",
                 "MODELS_CONTAINER": f"{prefix}models"}
        self.create_hubs([names["TICKS_HUB_NAME"], names["PREDICTIONS_HUB_NAME"], names["DEADLETTER_HUB_NAME"]])
        self.create_container(names["MODELS_CONTAINER"])
        mysql_url = ""
        if self.mariadb is not None:
            mysql_url = self.mariadb.create_database(f"{prefix}history".replace("-", "_"))
        return local_app_settings(
            self.azurite.connection_string, bootstrap_servers=self.tansu.bootstrap_servers,
            history_sqlite_path=self.directory / f"{prefix}history.sqlite3", mysql_url=mysql_url,
            signing_key=signing_key, overrides={**names, **(overrides or {})},
        )

    def describe(self) -> dict[str, str]:
        """Where each server is (broker, blob endpoint, MariaDB address), for printing."""
        where = {"broker": self.tansu.bootstrap_servers, "blob": self.azurite.blob_endpoint,
                 "directory": str(self.directory)}
        if self.mariadb is not None:
            where["mariadb"] = f"{self.mariadb.host}:{self.mariadb.port} (socket {self.mariadb.unix_socket})"
        return where


def main(argv: Sequence[str] | None = None) -> int:
    """Command line of ``python -m local_stack servers``; returns the exit status."""
    p = argparse.ArgumentParser(prog="python -m local_stack servers", description=__doc__.splitlines()[0])
    p.add_argument("--dir", type=Path, default=None, help="data directory (default: a new temporary one)")
    p.add_argument("--mariadb", action="store_true", help="also run MariaDB as the history store (else SQLite)")
    p.add_argument("--prefix", default="", help="prefix of the hub, group, container and database names")
    p.add_argument("--settings", type=Path, default=None,
                   help="where to write local.settings.json (default DIR/local.settings.json)")
    args = p.parse_args(argv)
    directory = args.dir or Path(tempfile.mkdtemp(prefix="tc-"))
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    with StackServers(directory, mariadb=args.mariadb) as servers:
        values = servers.app_settings(prefix=args.prefix)
        path = write_local_settings(args.settings or directory / "local.settings.json", values)
        print(json.dumps({**servers.describe(), "settings": str(path)}), flush=True)
        print(f"servers up; run: {sys.executable} -m local_stack functions --settings {path}", file=sys.stderr,
              flush=True)
        stop.wait()
    return 0
