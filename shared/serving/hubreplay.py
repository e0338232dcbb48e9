"""Re-reading a range of one ticks partition: the source replay that makes a periodic state save exact.

Why
---
``predict`` saves a partition's state only every few seconds, not after every batch. A worker that
takes the partition over restores the state saved after sequence number ``S`` while its trigger
batch may start at ``F > S + 1``: events ``S+1 .. F-1`` were applied by the previous worker but are
not in the state. Like Flink (restore a snapshot, rewind the source to the snapshot's offsets),
the worker re-reads those events from the hub and applies them, discarding their outputs, which
were sent the first time. :class:`KafkaHubReplay` is that reader; :func:`replay_config` builds its
client configuration.

Why Kafka, and why offsets are sequence numbers
-----------------------------------------------
The Functions trigger cannot seek, so the range is read with a Kafka client, in Azure from the
Event Hubs Kafka endpoint of the Standard namespace (``<namespace>.servicebus.windows.net:9093``,
"What is Azure Event Hubs for Apache Kafka", learn.microsoft.com/azure/event-hubs/
azure-event-hubs-kafka-overview; Kafka topic = event hub, partition = partition). A Kafka offset
there is the event's sequence number: "Kafka offset is analogous to Event Hub sequence number"
(a Microsoft engineer, github.com/Azure/azure-event-hubs-for-kafka issue #130). Locally a Tansu
broker stands in for Event Hubs and the local Functions driver hands out each record's offset as
its sequence number and ``"partition <n>"`` as its partition, so the same reader serves both.

Authentication ("What is Azure Event Hubs for Apache Kafka"; "Authorize access to Azure Event
Hubs", which "applies to both Event Hubs and Apache Kafka scenarios"; the Python samples of
github.com/Azure/azure-event-hubs-for-kafka, ``quickstart/python`` and ``tutorials/oauth/python``,
whose settings these are): TLS always (``SASL_SSL``), then either a shared access signature as
SASL PLAIN with the user name ``$ConnectionString`` and the connection string as password, or an
OAuth 2.0 token of Microsoft Entra ID as SASL OAUTHBEARER, requested for the namespace itself
("Authenticate an application with Microsoft Entra ID to access Event Hubs resources": "For Kafka
clients, the resource to request a token is https://<namespace>.servicebus.windows.net"), here
through ``azure.identity.DefaultAzureCredential`` (the managed identity in Azure) and
confluent-kafka's ``oauth_cb``, which returns ``(token, expiry in s since the epoch)``.

The reader assigns the one partition at the first offset (no consumer group is joined and nothing
is committed; confluent-kafka's ``Consumer`` still refuses to start without a ``group.id``), reads until the last offset, and
unassigns. The end of the partition is seen through ``enable.partition.eof``; an offset out of
range (retention passed) is an error (``auto.offset.reset`` ``error``). Measured on Tansu 0.6
with confluent-kafka 2.16: ListOffsets answers a high watermark below the real one (1 for a
partition of 20 events sent in one batch; ``get_watermark_offsets``), so the end is taken from the
fetch, whose end-of-partition event is right and comes within one ``consume`` call; a fetch past
the high watermark, or of a partition that does not exist, gets neither data nor an error, so such
a read ends at ``timeout_s``.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from functools import partial
from typing import Any
from urllib.parse import urlsplit

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from shared.contracts.batches import RawEvent
from shared.serving.redelivery import EventId

__all__ = ["KafkaHubReplay", "ReplayUnavailableError", "replay_config"]

log = logging.getLogger(__name__)

EVENTHUBS_KAFKA_PORT = 9093
"""Port of the Event Hubs Kafka endpoint (TLS)."""
EMULATOR_KAFKA_PORT = 9092
"""Port of the Event Hubs emulator's Kafka endpoint (no TLS; the port its docker command publishes)."""

_PARTITION = re.compile(r"partition (\d+)")
_CHUNK = 10_000
"""Most messages taken from the client per ``consume`` call."""
_WAIT_S = 0.1
"""Longest wait of one ``consume`` call, s: the deadline is checked at least this often."""


class ReplayUnavailableError(Exception):
    """The requested range of a partition cannot be read completely.

    Raised when the partition name is not ``"partition <n>"``, the range is longer than the
    reader's ``max_events``, the broker is unreachable or the read timed out, the first offset
    still available is above the first one requested (retention passed), the partition ends
    before the last one requested, or the broker or client reported another error.
    """


class KafkaHubReplay:
    """Reads ranges of sequence numbers (Kafka offsets) of one hub's partitions.

    One reader per worker process: its ``confluent_kafka.Consumer`` is created on the first
    :meth:`read` and reused (a connection, and in Azure a TLS and SASL handshake, per worker, not
    per read). Reads are serialized by a lock, since a read assigns the client's one partition.

    Parameters
    ----------
    config : dict
        Client configuration: where the broker is and how to authenticate
        (:func:`replay_config`), plus any librdkafka consumer property to override. The reader
        sets ``enable.auto.commit``, ``enable.auto.offset.store`` (both False) and
        ``enable.partition.eof`` (True) itself; it defaults ``group.id``, ``fetch.wait.max.ms``
        (10: Tansu holds every fetch for the full wait), ``auto.offset.reset`` (``error``) and
        ``log.connection.close`` (False), which ``config`` may override.
    topic : str
        Kafka topic = event hub name of the ticks.
    hub : str, default ``"ticks"``
        Hub name written in the events' positions.
    timeout_s : float, default 30
        Longest time one :meth:`read` may take, seconds.
    max_events : int, default 2,000,000
        Longest range one :meth:`read` accepts, events.

    Examples
    --------
    >>> reader = KafkaHubReplay({"bootstrap.servers": "127.0.0.1:9"}, "ticks")
    >>> reader.read("partition 0", 5, 4)  # an empty range touches no broker
    ([], [])
    >>> reader.close()
    """

    def __init__(
        self,
        config: dict[str, Any],
        topic: str,
        *,
        hub: str = "ticks",
        timeout_s: float = 30.0,
        max_events: int = 2_000_000,
    ) -> None:
        self.config = {
            "group.id": "tickcast-hub-replay",
            "fetch.wait.max.ms": 10,
            "auto.offset.reset": "error",
            "log.connection.close": False,
            **config,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "enable.partition.eof": True,
        }
        self.topic = topic
        self.hub = hub
        self.timeout_s = timeout_s
        self.max_events = max_events
        self._consumer: Consumer | None = None
        self._lock = threading.Lock()

    def read(self, partition: str, first_seq: int, last_seq: int) -> tuple[list[RawEvent], list[EventId]]:
        """The events of ``partition`` with sequence numbers ``first_seq .. last_seq``, in order.

        Parameters
        ----------
        partition : str
            ``"partition <n>"``, as the trigger names a partition (the Kafka partition ``n``).
        first_seq, last_seq : int
            First and last sequence number (Kafka offset) wanted, both included; a range with
            ``first_seq > last_seq`` is empty and returns at once.

        Returns
        -------
        events : list of RawEvent
            One per offset read: the body as sent and a position such as
            ``"ticks partition 3 seq=1042 (replay)"`` (formatted when first read).
        ids : list of EventId
            ``(partition, offset)`` of each event, same length and order. Offsets the log skips
            (control records of transactions) are absent from both lists.

        Raises
        ------
        ReplayUnavailableError
            See :class:`ReplayUnavailableError`; nothing is returned then.
        ValueError
            ``first_seq`` < 0 in a non-empty range.
        """
        if first_seq > last_seq:
            return [], []
        match = _PARTITION.fullmatch(partition)
        if match is None:
            raise ReplayUnavailableError(f"cannot replay {partition!r}: not of the form 'partition <n>'")
        if first_seq < 0:
            raise ValueError(f"first_seq must be >= 0, got {first_seq}")
        if last_seq - first_seq + 1 > self.max_events:
            raise ReplayUnavailableError(
                f"cannot replay {partition} seq {first_seq}..{last_seq}: "
                f"{last_seq - first_seq + 1} events, more than max_events={self.max_events}")
        number = int(match.group(1))
        with self._lock:
            started = time.monotonic()
            bodies, offsets = self._read(number, first_seq, last_seq, started + self.timeout_s)
        log.info("replayed %d events of %s %s seq %d..%d in %.0f ms", len(offsets), self.hub, partition,
                 first_seq, last_seq, (time.monotonic() - started) * 1e3)
        events = [RawEvent(body, partial(_position, self.hub, number, offset))
                  for body, offset in zip(bodies, offsets)]
        return events, [(partition, offset) for offset in offsets]

    def _read(self, number: int, first_seq: int, last_seq: int, deadline: float) -> tuple[list[bytes], list[int]]:
        """Bodies and offsets of ``first_seq .. last_seq`` of partition ``number`` (lock held)."""
        where = f"{self.topic} partition {number} seq {first_seq}..{last_seq}"
        if self._consumer is None:
            self._consumer = Consumer(self.config, logger=log)  # librdkafka's log lines go to logging
        consumer = self._consumer
        bodies: list[bytes] = []
        offsets: list[int] = []
        following = first_seq  # the lowest offset not read yet
        try:
            consumer.assign([TopicPartition(self.topic, number, first_seq)])
            while following <= last_seq:
                remaining_s = deadline - time.monotonic()
                if remaining_s <= 0:
                    raise ReplayUnavailableError(
                        f"cannot replay {where}: timed out after reading up to offset {following - 1}")
                wanted = min(last_seq - following + 1, _CHUNK)
                for m in consumer.consume(wanted, min(_WAIT_S, remaining_s)):
                    error = m.error()
                    if error is not None and error.code() != KafkaError._PARTITION_EOF:
                        raise ReplayUnavailableError(f"cannot replay {where}: {error.str()}")
                    if m.topic() != self.topic or m.partition() != number:
                        continue  # not of this read (cannot happen with one assigned partition)
                    if error is not None:  # the end: m.offset() is the offset the log ends before
                        if m.offset() <= last_seq:
                            raise ReplayUnavailableError(
                                f"cannot replay {where}: the partition ends before offset {m.offset()}")
                        following = last_seq + 1  # every offset below the end was delivered
                        break
                    offset = m.offset()
                    if offset < following:
                        continue  # already read (a stale fetch)
                    if not offsets and offset > first_seq:
                        raise ReplayUnavailableError(
                            f"cannot replay {where}: the first offset available is {offset} (retention passed?)")
                    if offset > last_seq:
                        following = offset
                        break
                    bodies.append(m.value() or b"")
                    offsets.append(offset)
                    following = offset + 1
        except KafkaException as exc:
            raise ReplayUnavailableError(f"cannot replay {where}: {exc}") from exc
        finally:
            try:
                consumer.unassign()
            except (KafkaException, RuntimeError):  # client unusable: the next read builds a new one
                self.close()
        return bodies, offsets

    def close(self) -> None:
        """Close the client, if one was created; a later :meth:`read` creates a new one. Idempotent."""
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            consumer.close()


def _position(hub: str, number: int, offset: int) -> str:
    return f"{hub} partition {number} seq={offset} (replay)"


def replay_config(
    bootstrap_servers: str | None,
    eventhub_connection: str | None,
    eventhub_namespace: str | None,
) -> dict[str, Any] | None:
    """Client configuration of :class:`KafkaHubReplay`: where the hub's Kafka endpoint is, and how to log in.

    The first one given wins: a local broker, an Event Hubs connection string, a namespace.

    Parameters
    ----------
    bootstrap_servers : str or None
        ``host:port[,...]`` of a plain Kafka broker (locally Tansu): no TLS, no login.
    eventhub_connection : str or None
        Event Hubs connection string (``Endpoint=sb://<host>/;SharedAccessKeyName=...;
        SharedAccessKey=...``): TLS to ``<host>:9093`` with SASL PLAIN, user ``$ConnectionString``
        and the connection string as password.
    eventhub_namespace : str or None
        Fully qualified namespace (``<name>.servicebus.windows.net``, the value of
        ``EVENTHUB__fullyQualifiedNamespace``): TLS to ``<namespace>:9093`` with SASL OAUTHBEARER, the
        token of ``azure.identity.DefaultAzureCredential`` (a managed identity in Azure; a
        user-assigned one is named by ``AZURE_CLIENT_ID``) for ``https://<namespace>/.default``.
        The credential is created, and azure.identity imported, when the client first asks for a
        token.

    Returns
    -------
    dict or None
        librdkafka properties (and ``oauth_cb``); None when none of the three is given: no replay.
        The Event Hubs emulator's connection string (``UseDevelopmentEmulator=true``) gives its
        Kafka endpoint, ``<host>:9092`` without TLS, SASL PLAIN as above.

    Raises
    ------
    ValueError
        ``eventhub_connection`` has no ``Endpoint=sb://<host>/``.

    Examples
    --------
    >>> replay_config("127.0.0.1:9092", None, None)
    {'bootstrap.servers': '127.0.0.1:9092', 'security.protocol': 'PLAINTEXT'}
    >>> conn = "Endpoint=sb://tc.servicebus.windows.net/;SharedAccessKeyName=listen;SharedAccessKey=k="
    >>> config = replay_config(None, conn, None)
    >>> config["bootstrap.servers"], config["security.protocol"], config["sasl.mechanism"]
    ('tc.servicebus.windows.net:9093', 'SASL_SSL', 'PLAIN')
    >>> config["sasl.username"], config["sasl.password"] == conn
    ('$ConnectionString', True)
    >>> replay_config(None, None, None) is None
    True
    >>> emulator = replay_config(None, "Endpoint=sb://localhost;UseDevelopmentEmulator=true;", None)
    >>> emulator["bootstrap.servers"], emulator["security.protocol"]
    ('localhost:9092', 'SASL_PLAINTEXT')
    """
    if bootstrap_servers:
        return {"bootstrap.servers": bootstrap_servers, "security.protocol": "PLAINTEXT"}
    if eventhub_connection and "usedevelopmentemulator=true" in eventhub_connection.replace(" ", "").lower():
        return {  # the emulator's Kafka endpoint: port 9092, no TLS (docs/deploying.md, the replay into it)
            "bootstrap.servers": f"{_endpoint_host(eventhub_connection)}:{EMULATOR_KAFKA_PORT}",
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "PLAIN",
            "sasl.username": "$ConnectionString",
            "sasl.password": eventhub_connection,
        }
    if eventhub_connection:
        return {
            "bootstrap.servers": f"{_endpoint_host(eventhub_connection)}:{EVENTHUBS_KAFKA_PORT}",
            "security.protocol": "SASL_SSL",
            "sasl.mechanism": "PLAIN",
            "sasl.username": "$ConnectionString",
            "sasl.password": eventhub_connection,
        }
    if eventhub_namespace:
        return {
            "bootstrap.servers": f"{eventhub_namespace}:{EVENTHUBS_KAFKA_PORT}",
            "security.protocol": "SASL_SSL",
            "sasl.mechanism": "OAUTHBEARER",
            "oauth_cb": _EntraToken(eventhub_namespace),
        }
    return None


def _endpoint_host(connection: str) -> str:
    """The host of a connection string's ``Endpoint=sb://<host>/`` (keys in any case); ValueError without one."""
    for part in connection.split(";"):
        key, _, value = part.partition("=")
        if key.strip().lower() == "endpoint":
            host = urlsplit(value.strip()).hostname
            if host:
                return host
    raise ValueError("Event Hubs connection string has no Endpoint=sb://<host>/")


class _EntraToken:
    """confluent-kafka ``oauth_cb``: a Microsoft Entra ID token for ``https://<namespace>/.default``.

    Called by the client with its ``sasl.oauthbearer.config`` (unused); returns ``(token, expiry in
    s since the epoch)``. One ``DefaultAzureCredential``, created on the first call, serves every
    token (it caches and refreshes them).
    """

    def __init__(self, namespace: str) -> None:
        self.scope = f"https://{namespace}/.default"
        self._credential: Any = None

    def __call__(self, _oauth_config: str | None = None) -> tuple[str, float]:
        if self._credential is None:
            from azure.identity import DefaultAzureCredential

            self._credential = DefaultAzureCredential()
        token = self._credential.get_token(self.scope)
        return token.token, float(token.expires_on)
