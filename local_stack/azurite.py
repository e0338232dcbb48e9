"""Run a real Azurite blob server (the local stand-in for Azure Blob Storage) as a child process.

Used by ``make run`` (the local stack) and by the test fixtures in ``tests/servers/azurite.py``.
Azurite comes from the repository's ``node_modules`` (npm package ``azurite@3.35.0``, see
``package.json``; install with ``npm ci`` in the repository root) and runs under the ``node``
found on ``PATH``.

Lifetime guarantees
-------------------
* Start, readiness and stop are mirakuru's (:mod:`local_stack.processes`): ready when the port
  Azurite logs answers a real SDK request.
* :meth:`AzuriteServer.stop` sends SIGTERM (Azurite closes gracefully), waits a grace period,
  then SIGKILLs the process group; it is registered with :mod:`atexit` while the server runs.
* Azurite is started through a tiny Node shim that watches its stdin, a pipe held only by this
  Python process: if Python dies without calling :meth:`stop` (even by SIGKILL) the pipe closes
  and Azurite shuts itself down and removes its temporary work directory, so no orphan server
  is left behind.

API versions
------------
``azure-storage-blob`` 12.31 sends ``x-ms-version: 2026-10-06`` while Azurite 3.35.0 knows
versions up to ``2025-11-05``; the server is therefore always started with
``--skipApiVersionCheck``. A client talking to some other Azurite may instead pin
``api_version="2025-11-05"``.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from mirakuru import Executor

from local_stack.processes import RunsServer, ServerExecutor, ServerStartError, log_tail

ACCOUNT_NAME = "devstoreaccount1"
"""The emulator's well-known account name."""

ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
"""The emulator's well-known (public, not secret) account key."""

REPO_ROOT = Path(__file__).resolve().parent.parent
"""Repository root: the parent of the ``local_stack`` package."""

AZURITE_BLOB_MAIN = REPO_ROOT / "node_modules" / "azurite" / "dist" / "src" / "blob" / "main.js"
"""Entry point of Azurite's blob-only server inside the repository's ``node_modules``."""

_LISTENING = re.compile(rb"successfully listens on https?://[^\s:/]+:(\d+)")

# Node shim: make process.argv look as if main.js had been run directly; when our stdin pipe
# closes, i.e. the Python parent is gone, shut Azurite down gracefully (its own SIGTERM handler)
# and remove the work directory the parent can no longer remove; unref stdin so that it never
# keeps Node alive after the server has closed.
_SHIM = """\
const main = %s, workdir = %s;
process.argv.splice(1, 0, main);
let ended = false;
const onEnd = () => {
  if (ended) return;
  ended = true;
  process.on('exit', () => {
    try { require('fs').rmSync(workdir, { recursive: true, force: true }); } catch (e) {}
  });
  process.kill(process.pid, 'SIGTERM');
};
process.stdin.on('end', onEnd);
process.stdin.on('error', onEnd);
process.stdin.resume();
if (typeof process.stdin.unref === 'function') process.stdin.unref();
require(main);
"""


class _AzuriteExecutor(ServerExecutor, Executor):
    """Ready when Azurite logged the port it bound and a real SDK request on it succeeds."""

    def __init__(self, command: list[str], server: AzuriteServer, **kwargs: Any) -> None:
        super().__init__(command, **kwargs)
        self.server = server
        self._last_error: Exception | None = None

    def pre_start_check(self) -> bool:
        return False  # a taken port is reported by Azurite itself (EADDRINUSE in its log)

    def ready(self) -> bool:
        from azure.storage.blob import BlobServiceClient

        server = self.server
        if server._port is None:
            match = _LISTENING.search(self.log_path.read_bytes())
            if match is None:
                return False
            server._port = int(match.group(1))
        try:
            client = BlobServiceClient.from_connection_string(
                server.connection_string, retry_total=0, connection_timeout=2, read_timeout=5
            )
            with client:
                client.get_service_properties()
            return True
        except Exception as exc:  # not ready yet: connection refused, 5xx, ...
            self._last_error = exc
            return False

    def not_ready_because(self) -> str:
        return f"last error: {self._last_error!r}"


class AzuriteServer(RunsServer):
    """A private Azurite blob server on the loopback interface, owned by this process.

    Parameters
    ----------
    port : int or None
        TCP port to listen on; ``None`` (default) lets the OS pick a free one (Azurite is started
        with ``--blobPort 0`` and the bound port is read from its log, so there is no race).
    host : str
        Listening address, default ``127.0.0.1``.
    location : str or Path or None
        Directory where Azurite persists its data. ``None`` (default) keeps everything in memory
        (``--inMemoryPersistence``) unless ``in_memory=False``, in which case a temporary
        directory is used and removed by :meth:`stop`.
    in_memory : bool or None
        Force in-memory persistence on or off; ``None`` means "in memory unless ``location``".
        Azurite refuses ``in_memory=True`` together with a ``location``.
    startup_timeout : float
        Seconds :meth:`start` waits for the server to answer a real SDK request.
    stop_grace : float
        Seconds :meth:`stop` waits after SIGTERM before it SIGKILLs.
    node : str or None
        Node executable; default ``shutil.which("node")``.
    azurite_main : str or Path or None
        Azurite's ``blob/main.js``; default :data:`AZURITE_BLOB_MAIN`.
    extra_args : sequence of str
        Further Azurite command-line options, e.g. ``("--extentMemoryLimit", "256")``.

    Attributes
    ----------
    startup_seconds : float or None
        Wall time of the last successful :meth:`start`, from spawn to first successful SDK call.
    log_path : Path or None
        File receiving Azurite's stdout and stderr while it runs (deleted by :meth:`stop`).

    Examples
    --------
    >>> with AzuriteServer() as azurite:  # doctest: +SKIP
    ...     BlobServiceClient.from_connection_string(azurite.connection_string)
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        host: str = "127.0.0.1",
        location: str | os.PathLike[str] | None = None,
        in_memory: bool | None = None,
        startup_timeout: float = 30.0,
        stop_grace: float = 5.0,
        node: str | None = None,
        azurite_main: str | os.PathLike[str] | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        if in_memory and location is not None:
            raise ValueError("Azurite cannot use in-memory persistence together with a location")
        if port is not None and not 0 <= port <= 65535:
            raise ValueError(f"port {port} out of range")
        self._requested_port = port
        self.host = host
        self._location = Path(location) if location is not None else None
        self._in_memory = (location is None) if in_memory is None else in_memory
        self.startup_timeout = startup_timeout
        self.stop_grace = stop_grace
        self._node = node
        self._main = Path(azurite_main) if azurite_main is not None else AZURITE_BLOB_MAIN
        self._extra_args = tuple(extra_args)
        self._executor: _AzuriteExecutor | None = None
        self._workdir: Path | None = None
        self._log: IO[bytes] | None = None
        self._port: int | None = None
        self.log_path: Path | None = None
        self.startup_seconds: float | None = None

    # ------------------------------------------------------------------ properties

    @property
    def port(self) -> int:
        """The TCP port Azurite listens on (known once :meth:`start` returned)."""
        if self._port is None:
            raise RuntimeError("Azurite is not started")
        return self._port

    @property
    def blob_endpoint(self) -> str:
        """Blob service URL including the account, ``http://127.0.0.1:PORT/devstoreaccount1``."""
        return f"http://{self.host}:{self.port}/{ACCOUNT_NAME}"

    @property
    def connection_string(self) -> str:
        """Connection string for the well-known emulator account (``MODEL_STORAGE`` locally)."""
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT_NAME};AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint={self.blob_endpoint};"
        )

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> AzuriteServer:
        """Spawn Azurite and wait until it serves a real SDK request.

        Returns
        -------
        AzuriteServer
            ``self``, so ``server = AzuriteServer().start()`` works.

        Raises
        ------
        RuntimeError
            Node or Azurite is missing, the server is already running, or it exited or did not
            answer within ``startup_timeout`` seconds (the message carries the tail of its log;
            the child is stopped before raising).
        """
        if self._executor is not None:
            raise RuntimeError("Azurite is already started")
        node = self._node or shutil.which("node")
        if node is None:
            raise RuntimeError("Node.js is required for Azurite but no 'node' executable is on PATH")
        if not self._main.is_file():
            raise RuntimeError(f"Azurite not found at {self._main}; run `npm ci` in {REPO_ROOT}")

        self._workdir = Path(tempfile.mkdtemp(prefix="tickcast-azurite-"))
        args = [
            "--blobHost", self.host,
            "--blobPort", str(self._requested_port or 0),
            "--skipApiVersionCheck",
            "--disableTelemetry",
            "--silent",
        ]  # fmt: skip
        if self._in_memory:
            args.append("--inMemoryPersistence")
        else:
            location = self._location or self._workdir / "data"
            location.mkdir(parents=True, exist_ok=True)
            args += ["--location", str(location)]
        args += self._extra_args
        self.log_path = self._workdir / "azurite.log"
        self._log = open(self.log_path, "wb")
        shim = _SHIM % (json.dumps(str(self._main)), json.dumps(str(self._workdir)))
        # stdin is a pipe held only by this process: the shim's parent-death signal
        self._executor = _AzuriteExecutor(
            [node, "-e", shim, "--", *args], self, name="Azurite", log_path=self.log_path,
            cwd=str(self._workdir), timeout=self.startup_timeout, sleep=0.05,
            stdin=subprocess.PIPE, stdout=self._log, stderr=subprocess.STDOUT,
        )
        atexit.register(self.stop)
        try:
            self.startup_seconds = self._executor.start_or_raise(f"command: node {self._main} {' '.join(args)}")
        except ServerStartError as exc:
            self.stop()
            raise RuntimeError(f"Azurite failed to start: {exc}") from None
        except BaseException:  # KeyboardInterrupt etc.: stopped, re-raised as is
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop Azurite: SIGTERM, wait ``stop_grace`` seconds, then SIGKILL; idempotent.

        Returns only after the child has exited and been reaped; removes the temporary work
        directory (log, and data unless a ``location`` was given).
        """
        executor, self._executor = self._executor, None
        atexit.unregister(self.stop)
        if executor is not None:
            executor.stop_within(self.stop_grace)
        self._port = None
        self._cleanup_files()

    def _cleanup_files(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None
        self.log_path = None

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of Azurite's log (empty when there is none)."""
        return log_tail(self.log_path, lines)

    def __enter__(self) -> AzuriteServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = f"{self.host}:{self._port}" if self._port is not None else "stopped"
        return f"<AzuriteServer {where} pid={self.pid}>"
