"""Publish to Kafka (Tansu locally, any Kafka broker) with confluent-kafka.

The producer is idempotent (``enable.idempotence=true``, hence ``acks=all`` and ordered
retries without duplicates). Where the broker does not support idempotent producers
librdkafka raises a *fatal* error; the publisher then recreates the producer without
idempotence, logs it, and retries the batch. Keys are the tick's symbol (UTF-8) with
the ``murmur2_random`` partitioner, so every client maps a symbol to the same
partition (see ``docs/local-stack.md``, measured quirks).

:meth:`KafkaTickPublisher.publish` produces a batch, then waits for every delivery
report in a worker thread (``Producer.flush``), so the event loop keeps reading the
websockets meanwhile.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Sequence
from typing import Any, TypeVar

from confluent_kafka import KafkaError, Producer

from ingestor.publisher import default_producer_config
from ingestor.publishers.base import PublishResult
from shared.contracts.events import DeadLetter, Tick, encode

log = logging.getLogger(__name__)

__all__ = ["KafkaTickPublisher"]

E = TypeVar("E")


class KafkaTickPublisher:
    """Ticks to ``topic`` keyed by symbol, dead letters to ``deadletter_topic`` keyed by source.

    Parameters
    ----------
    bootstrap_servers : str
        ``host:port[,...]`` (``KAFKA_BOOTSTRAP_SERVERS``).
    topic, deadletter_topic : str
        ``TICKS_HUB_NAME`` and ``DEADLETTER_HUB_NAME``.
    config : dict, optional
        librdkafka settings merged over :func:`ingestor.publisher.default_producer_config`
        (idempotent, ``acks=all``, ``linger.ms=5``, ``message.timeout.ms=30000``).
    """

    name = "kafka"

    def __init__(
        self,
        bootstrap_servers: str,
        topic: str,
        deadletter_topic: str,
        *,
        config: dict[str, Any] | None = None,
    ) -> None:
        self.topic = topic
        self.deadletter_topic = deadletter_topic
        self.config = {**default_producer_config(bootstrap_servers), **(config or {})}
        self.config["error_cb"] = self._on_error
        self.idempotent = bool(self.config.get("enable.idempotence"))
        self._fatal: KafkaError | None = None
        self._producer: Producer | None = None
        self._idle_poller: asyncio.Task[None] | None = None
        timeout_ms = float(self.config.get("message.timeout.ms", 300_000))
        self._flush_timeout = timeout_ms / 1000 + 5  # every message gets a report within message.timeout.ms

    def _on_error(self, err: KafkaError) -> None:
        if err.fatal():
            self._fatal = err
            log.error("fatal Kafka producer error: %s", err)
        elif err.code() != KafkaError._ALL_BROKERS_DOWN:
            log.warning("Kafka producer error: %s", err)

    async def start(self) -> None:
        """Create the producer (the connection is made lazily by librdkafka), and serve its
        callbacks and log lines once a second while it is idle."""
        self._producer = Producer(self.config)
        self._idle_poller = asyncio.create_task(self._poll_while_idle(), name="kafka-poll")

    async def _poll_while_idle(self, every_s: float = 1.0) -> None:
        # confluent-kafka forwards librdkafka's log lines (and error_cb) only inside poll()/flush():
        # without this, a broker that is down while no tick arrives would go unreported.
        while self._producer is not None:
            self._producer.poll(0)
            await asyncio.sleep(every_s)

    def _restart_without_idempotence(self) -> None:
        log.warning(
            "the broker does not support idempotent producers (%s); continuing with enable.idempotence=false",
            self._fatal,
        )
        old = self._producer
        self.config["enable.idempotence"] = False
        self.idempotent = False
        self._fatal = None
        self._producer = Producer(self.config)
        if old is not None:
            old.purge()

    async def _send(self, topic: str, items: Sequence[tuple[bytes, bytes, E]]) -> PublishResult[E]:
        producer = self._producer
        if producer is None:
            raise RuntimeError("publisher not started")
        reports: list[KafkaError | None | bool] = [False] * len(items)  # False = no report yet

        def on_delivery(i: int, err: KafkaError | None, msg: Any) -> None:
            reports[i] = err

        for i, (key, value, _) in enumerate(items):
            while True:
                try:
                    producer.produce(topic, value, key, on_delivery=functools.partial(on_delivery, i))
                    break
                except BufferError:  # local queue full: let deliveries drain
                    await asyncio.to_thread(producer.poll, 0.1)
        await asyncio.to_thread(producer.flush, self._flush_timeout)
        result: PublishResult[E] = PublishResult()
        for (_, _, event), report in zip(items, reports):
            if report is None:
                result.delivered += 1
            else:
                result.failed.append(event)
                result.error = str(report) if report is not False else "no delivery report"
        if self._fatal is not None and self.idempotent:
            self._restart_without_idempotence()
        return result

    async def publish(self, ticks: Sequence[Tick]) -> PublishResult[Tick]:
        """Produce ``ticks`` keyed by symbol and wait for their delivery reports."""
        return await self._send(self.topic, [(t.symbol.encode(), encode(t), t) for t in ticks])

    async def publish_deadletters(self, letters: Sequence[DeadLetter]) -> PublishResult[DeadLetter]:
        """Produce dead letters keyed by their source."""
        return await self._send(self.deadletter_topic, [(d.source.encode(), encode(d), d) for d in letters])

    async def close(self, timeout: float = 10.0) -> None:
        """Flush for up to ``timeout`` seconds, drop what is left."""
        producer, self._producer = self._producer, None
        if self._idle_poller is not None:
            self._idle_poller.cancel()
            self._idle_poller = None
        if producer is None:
            return
        remaining = await asyncio.to_thread(producer.flush, timeout)
        if remaining:
            log.error("%d Kafka messages undelivered at close", remaining)
            producer.purge()
            producer.flush(1.0)
