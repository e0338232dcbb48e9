"""Start, readiness and stop of the local stack's stand-in servers (Tansu, Azurite), with mirakuru.

mirakuru (https://github.com/dbfixtures/mirakuru, the process runner of pytest-mysql)
starts the child in a session of its own, polls a readiness check until a timeout,
reports a child that exits during start-up, and stops it with a chosen signal, then
SIGKILLs the process group and every process carrying its environment marker. This
module adds what the two servers need beyond that: output to a log file whose tail
goes into every error, a bounded stop that never raises and never leaves a process,
and (optionally) a parent-death signal so a crashed Python leaves no server behind.

:class:`ServerExecutor` is mixed into the mirakuru executor that fits each server
(``TCPExecutor`` for Tansu, ``Executor`` for Azurite, whose port is only known from its log).
"""

from __future__ import annotations

import collections
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mirakuru.exceptions import AlreadyRunning, ProcessExitedWithError, ProcessFinishedWithError, TimeoutExpired

__all__ = ["RunsServer", "ServerExecutor", "ServerStartError", "log_tail"]


class ServerStartError(RuntimeError):
    """A stand-in server did not start; the message says why and carries the tail of its log."""


def _death_signal_preexec(sig: int) -> Callable[[], None]:
    def preexec() -> None:  # runs in the child between fork and exec
        os.setsid()  # what mirakuru does: a session (and process group) of its own
        try:
            import ctypes

            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(1, sig)  # PR_SET_PDEATHSIG: the kernel signals the child when the parent thread exits
        except Exception:
            pass

    return preexec


class ServerExecutor:
    """Mix-in for a mirakuru executor of a stand-in server (put it first in the bases).

    Parameters (keywords, besides the executor's own)
    ----------
    name : str
        Server name used in error messages, e.g. ``"Tansu"``.
    log_path : Path
        File that receives the server's stdout and stderr (opened by the caller, passed as
        ``stdout``); its tail goes into every start error.
    death_signal : int, optional
        On Linux, the signal the kernel sends the server when the thread that started it
        exits (``PR_SET_PDEATHSIG``); ``None`` = none.
    """

    def __init__(self, *args: Any, name: str, log_path: Path, death_signal: int | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[call-arg]
        self.name = name
        self.log_path = log_path
        self.death_signal = death_signal if sys.platform == "linux" else None
        self.started_at: float | None = None

    @property
    def _popen_kwargs(self) -> dict[str, Any]:
        kwargs = super()._popen_kwargs  # type: ignore[misc]
        if self.death_signal is not None:
            kwargs["preexec_fn"] = _death_signal_preexec(self.death_signal)
        return kwargs

    @property
    def pid(self) -> int | None:
        """Process id of the server, or ``None`` when it is not started."""
        process = self.process  # type: ignore[attr-defined]
        return process.pid if process is not None else None

    def after_start_check(self) -> bool:
        """mirakuru's readiness hook: fail at once if the server exited (even with code 0), else :meth:`ready`."""
        process = self.process  # type: ignore[attr-defined]
        if process is not None and process.poll() is not None:
            raise ProcessExitedWithError(self, process.returncode)  # type: ignore[arg-type]
        return self.ready()

    def ready(self) -> bool:
        """True when the server serves; called every ``sleep`` seconds until the timeout."""
        raise NotImplementedError

    def start_or_raise(self, what: str) -> float:
        """Start the server and wait until it is ready; return the seconds that took.

        Raises
        ------
        ServerStartError
            Something else accepts connections on the port, the server exited, it was
            not ready within the executor's timeout, or it could not be run; ``what``
            (e.g. the command line) and the log tail are in the message. No process is
            left running.
        """
        t0 = time.monotonic()
        try:
            self.start()  # type: ignore[attr-defined]
        except AlreadyRunning:
            where = f"{getattr(self, 'host', '?')}:{getattr(self, 'port', '?')}"
            self.stop_within(0)
            raise ServerStartError(
                f"cannot start {self.name}: {where} is not available "
                f"(AddrInUse: another process accepts connections there)"
            ) from None
        except ProcessExitedWithError as exc:
            self.stop_within(0)
            raise ServerStartError(
                f"{self.name} exited with code {exc.exit_code} during start-up ({what}).\n{log_tail(self.log_path)}"
            ) from None
        except TimeoutExpired as exc:
            self.stop_within(0)
            raise ServerStartError(
                f"{self.name} was not ready within {exc.timeout:g} s ({what}; {self.not_ready_because()}).\n"
                f"{log_tail(self.log_path)}"
            ) from None
        except OSError as exc:
            self.stop_within(0)
            raise ServerStartError(f"cannot run {self.name} ({what}): {exc}") from exc
        except BaseException:
            self.stop_within(0)
            raise
        self.started_at = time.monotonic()
        return self.started_at - t0

    def not_ready_because(self) -> str:
        """Why the last readiness check failed (override to say more)."""
        return "no answer"

    def stop_within(self, timeout: float) -> None:
        """Send the stop signal, wait up to ``timeout`` seconds, then SIGKILL; idempotent, never raises
        for the server's exit code, and returns only when the server and its children are gone."""
        if self.process is None:  # type: ignore[attr-defined]
            return
        self._timeout = max(timeout, 0.01)  # mirakuru's wait bound, for stop as for start
        try:
            self.stop()  # type: ignore[attr-defined]
        except ProcessFinishedWithError:
            pass  # a server's exit code after a stop signal is no concern of ours
        finally:
            if self.process is not None:  # type: ignore[attr-defined]
                self.kill()  # type: ignore[attr-defined]
            self.started_at = None


class RunsServer:
    """Base of a server class whose process is a :class:`ServerExecutor` in ``_executor`` (``None`` when stopped)."""

    _executor: ServerExecutor | None = None

    @property
    def running(self) -> bool:
        """True while the server process has been started and has not exited."""
        return self._executor is not None and self._executor.running()  # type: ignore[attr-defined]

    @property
    def pid(self) -> int | None:
        """Process id of the server, or ``None`` before ``start()`` / after ``stop()``."""
        return self._executor.pid if self._executor is not None else None


def log_tail(path: Path | None, lines: int = 40, max_bytes: int = 16_000) -> str:
    """The last ``lines`` lines (at most ``max_bytes``) of a server's log, headed by its name."""
    if path is None:
        return ""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.fstat(f.fileno()).st_size - max_bytes))
            tail = collections.deque(f, maxlen=lines)
    except OSError:
        return ""
    text = b"".join(tail).decode("utf-8", "replace")
    return f"--- log tail of {path.name} ---\n{text}" if text else f"({path.name} is empty)"

