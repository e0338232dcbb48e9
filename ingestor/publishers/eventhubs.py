"""Publish to Azure Event Hubs with the azure-eventhub async producer.

* Clients: one :class:`azure.eventhub.aio.EventHubProducerClient` per hub (ticks,
  dead letters), from the ``EVENTHUB`` connection string or, without one, from
  ``EVENTHUB__fullyQualifiedNamespace`` with :class:`azure.identity.aio.DefaultAzureCredential`
  (the Container App's user-assigned managed identity, selected by ``AZURE_CLIENT_ID``).
* Retries: the SDK's retry policy (``retry_total``, exponential ``retry_backoff_factor``
  capped at ``retry_backoff_max``); a batch that still fails is handed back to the pump,
  which retries it after its own backoff.
* Batches: :func:`build_batches` fills batches made by ``create_batch(partition_key=symbol)``
  until :meth:`EventDataBatch.add` raises ``ValueError`` (the batch's byte limit, by
  default the link's maximum message size, 1 MiB on Standard namespaces), then starts a
  new one. All events of a batch share one partition key, so a symbol's ticks stay in
  order on one partition. An event too large for an empty batch is rejected (set aside),
  not retried.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

from azure.eventhub import EventData, EventDataBatch

from ingestor.publishers.base import PublishResult
from shared.contracts.events import DeadLetter, Tick, encode

log = logging.getLogger(__name__)

__all__ = ["RETRY_OPTIONS", "EventHubsTickPublisher", "KeyedBatch", "build_batches"]

E = TypeVar("E")

RETRY_OPTIONS: dict[str, Any] = {
    "retry_total": 3,
    "retry_backoff_factor": 0.8,
    "retry_backoff_max": 30,
    "retry_mode": "exponential",
}
"""azure-eventhub retry keywords: the SDK defaults (3 attempts, factor 0.8, exponential)
with the backoff capped at 30 s instead of 120 s, so a failed batch returns to the pump
within the Container App's 30 s termination grace period."""


class KeyedBatch(Generic[E]):
    """An :class:`~azure.eventhub.EventDataBatch` and the events it holds, for one partition key."""

    __slots__ = ("batch", "events", "partition_key")

    def __init__(self, batch: EventDataBatch, partition_key: str) -> None:
        self.batch = batch
        self.partition_key = partition_key
        self.events: list[E] = []

    def __len__(self) -> int:
        return len(self.events)


async def build_batches(
    items: Sequence[tuple[str, bytes, E]],
    new_batch: Callable[[str], Awaitable[EventDataBatch]],
    *,
    content_type: str = "application/json",
) -> tuple[list[KeyedBatch[E]], list[tuple[E, str]]]:
    """Split keyed events into size-limited batches, one partition key per batch.

    Parameters
    ----------
    items : sequence of (partition_key, body, event)
        Encoded events; ``event`` is carried along so callers know what each batch holds.
    new_batch : async callable
        ``await new_batch(partition_key)`` returns an empty batch, e.g.
        ``lambda key: producer.create_batch(partition_key=key)``.
    content_type : str, default ``"application/json"``
        Set on every :class:`~azure.eventhub.EventData`.

    Returns
    -------
    batches : list of KeyedBatch
        In order of each key's first event; within a key, events keep their order and
        a later batch holds later events. Every batch is non-empty and within its
        ``max_size_in_bytes`` (enforced by :meth:`EventDataBatch.add`).
    rejected : list of (event, reason)
        Events larger than an empty batch allows.
    """
    open_batches: dict[str, KeyedBatch[E]] = {}
    batches: list[KeyedBatch[E]] = []
    rejected: list[tuple[E, str]] = []
    for key, body, event in items:
        data = EventData(body)
        data.content_type = content_type
        current = open_batches.get(key)
        if current is not None:
            try:
                current.batch.add(data)
                current.events.append(event)
                continue
            except ValueError:
                pass  # full: start the next batch of this key
        fresh: KeyedBatch[E] = KeyedBatch(await new_batch(key), key)
        try:
            fresh.batch.add(data)
        except ValueError as exc:
            rejected.append(
                (
                    event,
                    f"event of {len(body)} bytes exceeds the batch limit "
                    f"of {fresh.batch.max_size_in_bytes} bytes: {exc}",
                )
            )
            continue
        fresh.events.append(event)
        open_batches[key] = fresh
        batches.append(fresh)
    return batches, rejected


class EventHubsTickPublisher:
    """Ticks to the ticks hub (partition key = symbol), dead letters to the dead-letter hub.

    Parameters
    ----------
    ticks_hub, deadletter_hub : str
        Event Hub names (``TICKS_HUB_NAME``, ``DEADLETTER_HUB_NAME``).
    connection_string : str, optional
        ``EVENTHUB``; takes precedence. May name the hub itself (``EntityPath``) only
        when it is the ticks hub.
    namespace : str, optional
        ``EVENTHUB__fullyQualifiedNamespace`` (``<name>.servicebus.windows.net``), used
        with :class:`~azure.identity.aio.DefaultAzureCredential` when there is no
        connection string.
    client_id : str, optional
        ``AZURE_CLIENT_ID``: the user-assigned managed identity to use.
    retry_options : dict, optional
        Overrides of :data:`RETRY_OPTIONS`.

    Raises
    ------
    ValueError
        Neither a connection string nor a namespace.
    """

    name = "eventhubs"

    def __init__(
        self,
        ticks_hub: str,
        deadletter_hub: str,
        *,
        connection_string: str | None = None,
        namespace: str | None = None,
        client_id: str | None = None,
        retry_options: dict[str, Any] | None = None,
    ) -> None:
        if not connection_string and not namespace:
            raise ValueError("Event Hubs needs a connection string or a fully qualified namespace")
        self.ticks_hub = ticks_hub
        self.deadletter_hub = deadletter_hub
        self.connection_string = connection_string
        self.namespace = namespace
        self.client_id = client_id
        self.retry_options = {**RETRY_OPTIONS, **(retry_options or {})}
        self._credential: Any = None
        self._clients: dict[str, Any] = {}

    def _client(self, hub: str) -> Any:
        from azure.eventhub.aio import EventHubProducerClient

        if self.connection_string:
            return EventHubProducerClient.from_connection_string(
                self.connection_string, eventhub_name=hub, **self.retry_options
            )
        if self._credential is None:
            from azure.identity.aio import DefaultAzureCredential

            self._credential = DefaultAzureCredential(managed_identity_client_id=self.client_id)
        return EventHubProducerClient(
            fully_qualified_namespace=self.namespace,
            eventhub_name=hub,
            credential=self._credential,
            **self.retry_options,
        )

    async def start(self) -> None:
        """Create the two producer clients (AMQP links open on first use)."""
        self._clients = {hub: self._client(hub) for hub in {self.ticks_hub, self.deadletter_hub}}

    async def _send(self, hub: str, items: Sequence[tuple[str, bytes, E]]) -> PublishResult[E]:
        from azure.eventhub.exceptions import EventHubError

        client = self._clients[hub]
        result: PublishResult[E] = PublishResult()
        try:
            batches, result.rejected = await build_batches(
                items, lambda key: client.create_batch(partition_key=key)
            )
        except EventHubError as exc:  # create_batch opens the link: it can fail like a send
            result.failed = [event for _, _, event in items]
            result.error = f"create_batch failed: {exc}"
            return result
        for keyed in batches:
            if result.failed:  # keep per-key order: once one batch failed, retry everything after it
                result.failed.extend(keyed.events)
                continue
            try:
                await client.send_batch(keyed.batch)
                result.delivered += len(keyed.events)
            except EventHubError as exc:
                log.warning("send_batch to %s failed after the SDK's retries: %s", hub, exc)
                result.failed.extend(keyed.events)
                result.error = str(exc)
        return result

    async def publish(self, ticks: Sequence[Tick]) -> PublishResult[Tick]:
        """Send ``ticks`` in batches keyed by symbol."""
        return await self._send(self.ticks_hub, [(t.symbol, encode(t), t) for t in ticks])

    async def publish_deadletters(self, letters: Sequence[DeadLetter]) -> PublishResult[DeadLetter]:
        """Send dead letters keyed by their source."""
        return await self._send(self.deadletter_hub, [(d.source, encode(d), d) for d in letters])

    async def close(self, timeout: float = 10.0) -> None:
        """Close the clients and the credential."""
        clients, self._clients = self._clients, {}
        for client in clients.values():
            await client.close()
        if self._credential is not None:
            await self._credential.close()
            self._credential = None
