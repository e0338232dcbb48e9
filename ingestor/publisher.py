"""Publish tick events to a Kafka topic (Tansu locally, the Event Hubs Kafka endpoint in Azure).

:class:`KafkaPublisher` wraps a ``confluent_kafka.Producer``: each tick is encoded with
:func:`shared.contracts.events.encode` and keyed by its symbol (UTF-8), so one symbol's ticks stay
on one partition in order. Messages are batched by librdkafka (``linger.ms`` /
``batch.num.messages``); delivery reports are counted in :attr:`KafkaPublisher.delivered`
and :attr:`KafkaPublisher.failed`, and are served by a non-blocking ``poll`` after every
produce (call :meth:`KafkaPublisher.poll` while idle). :meth:`KafkaPublisher.close`
flushes and returns how many messages were not confirmed delivered.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Protocol

from shared.contracts.events import DeadLetter, Tick, encode

log = logging.getLogger(__name__)

__all__ = ["KafkaPublisher", "Publisher", "default_producer_config"]


class Publisher(Protocol):
    """What a tick source needs from a publisher (Kafka, Event Hubs, an in-memory list)."""

    published: int
    delivered: int
    failed: int

    def publish(self, tick: Tick) -> None: ...

    def publish_deadletter(self, letter: DeadLetter) -> None: ...

    def poll(self, timeout: float = 0.0) -> int: ...

    def flush(self, timeout: float = 30.0) -> int: ...

    def close(self, timeout: float = 30.0) -> int: ...


def default_producer_config(bootstrap_servers: str) -> dict[str, Any]:
    """Producer settings used when none are given: murmur2_random keys, small linger, big batches.

    Same values as ``local_stack.tansu.producer_config`` (kept here so the ingestor
    does not depend on the local stack), plus ``logger``: librdkafka's log lines go to the
    Python logger :data:`ingestor.logs.LIBRDKAFKA_LOGGER` instead of raw to stderr.
    """
    from ingestor.logs import librdkafka_logger

    return {
        "logger": librdkafka_logger(),
        "bootstrap.servers": bootstrap_servers,
        "partitioner": "murmur2_random",
        "linger.ms": 5,
        "batch.num.messages": 10_000,
        "batch.size": 1_048_576,
        "enable.idempotence": True,
        "acks": "all",
        "message.timeout.ms": 30_000,
        "log.connection.close": False,
    }


class KafkaPublisher:
    """Publish :class:`~shared.contracts.events.Tick` events (and dead letters) to Kafka topics.

    Parameters
    ----------
    bootstrap_servers : str
        ``host:port[,host:port...]`` of the Kafka endpoint.
    topic : str
        Topic (Event Hub) receiving tick events, keyed by symbol.
    deadletter_topic : str, optional
        Topic receiving :class:`~shared.contracts.events.DeadLetter` events; without it
        :meth:`publish_deadletter` only counts and logs.
    config : dict, optional
        Extra / overriding librdkafka settings, merged over :func:`default_producer_config`.
    block_timeout : float, default 30
        How long :meth:`publish` waits for room when the local queue is full before it
        gives up with ``BufferError``.

    Attributes
    ----------
    published : int
        Messages handed to the producer (ticks and dead letters).
    delivered, failed : int
        Delivery reports received: acknowledged by the broker / failed for good.
    deadlettered : int
        Dead letters passed to :meth:`publish_deadletter` (published or not).
    """

    def __init__(
        self,
        bootstrap_servers: str,
        topic: str,
        *,
        deadletter_topic: str | None = None,
        config: dict[str, Any] | None = None,
        block_timeout: float = 30.0,
    ) -> None:
        from confluent_kafka import Producer

        self.topic = topic
        self.deadletter_topic = deadletter_topic
        self.block_timeout = block_timeout
        self.published = 0
        self.delivered = 0
        self.failed = 0
        self.deadlettered = 0
        self.last_error: str | None = None
        self._closed = False
        self._producer = Producer({**default_producer_config(bootstrap_servers), **(config or {})})

    # --------------------------------------------------------------- delivery
    def _on_delivery(self, err: Any, msg: Any) -> None:
        if err is None:
            self.delivered += 1
            return
        self.failed += 1
        self.last_error = str(err)
        if self.failed <= 10 or self.failed % 1000 == 0:
            topic = msg.topic() if msg is not None else "?"
            log.error("delivery to %s failed (%d failures so far): %s", topic, self.failed, err)

    def _produce(self, topic: str, key: bytes, value: bytes) -> None:
        if self._closed:
            raise RuntimeError("publisher is closed")
        try:
            self._producer.produce(topic, value, key, on_delivery=self._on_delivery)
        except BufferError:
            # local queue full: serve delivery reports until there is room (bounded)
            deadline = time.monotonic() + self.block_timeout
            while True:
                self._producer.poll(0.05)
                try:
                    self._producer.produce(topic, value, key, on_delivery=self._on_delivery)
                    break
                except BufferError:
                    if time.monotonic() > deadline:
                        raise
        self.published += 1
        self._producer.poll(0)

    # --------------------------------------------------------------- public API
    def publish(self, tick: Tick) -> None:
        """Queue one tick for ``topic``, keyed by ``tick.symbol`` (UTF-8).

        Raises
        ------
        BufferError
            The local queue stayed full for ``block_timeout`` seconds (broker unreachable).
        """
        self._produce(self.topic, tick.symbol.encode(), encode(tick))

    def publish_deadletter(self, letter: DeadLetter) -> None:
        """Count a set-aside input and queue it for ``deadletter_topic`` (keyed by its source), if set."""
        self.deadlettered += 1
        if self.deadletter_topic is not None:
            self._produce(self.deadletter_topic, letter.source.encode(), encode(letter))

    def poll(self, timeout: float = 0.0) -> int:
        """Serve delivery reports, waiting up to ``timeout`` seconds; returns how many were served."""
        return self._producer.poll(timeout)

    @property
    def pending(self) -> int:
        """Messages queued or in flight (not yet reported delivered or failed)."""
        return len(self._producer)

    def flush(self, timeout: float = 30.0) -> int:
        """Wait up to ``timeout`` seconds for every queued message; returns how many are still pending."""
        return self._producer.flush(timeout)

    def close(self, timeout: float = 30.0) -> int:
        """Flush, then stop accepting messages.

        Returns
        -------
        int
            Messages not confirmed delivered: failed ones plus those still pending after
            ``timeout`` seconds (``published - delivered``). 0 means everything arrived.
        """
        if not self._closed:
            remaining = self._producer.flush(timeout)
            if remaining:
                log.error("%d messages still undelivered after %.1f s; dropping them", remaining, timeout)
                self._producer.purge()
                self._producer.flush(1.0)  # serve the failure reports of the purged messages
            self._closed = True
            try:
                self._producer.close()
            except (AttributeError, RuntimeError):
                pass
        return self.published - self.delivered

    def __enter__(self) -> KafkaPublisher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def stats(self) -> dict[str, int]:
        """Counters as a dict: published, delivered, failed, deadlettered, pending."""
        return {
            "published": self.published,
            "delivered": self.delivered,
            "failed": self.failed,
            "deadlettered": self.deadlettered,
            "pending": 0 if self._closed else self.pending,
        }
