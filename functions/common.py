"""Helpers shared by the blueprints: turning trigger events into ``shared`` inputs."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Generic, TypeVar

import azure.functions as func

from shared.contracts.batches import RawEvent
from shared.settings import Settings

if TYPE_CHECKING:
    from shared.serving.predicting import EventId

T = TypeVar("T")
_SERVICES: list[ProcessService] = []


class ProcessService(Generic[T]):
    """A service built once per worker process from the app settings, on first use.

    Like the SDK clients of the Azure Functions samples it lives at module level and
    is reused across invocations; building it lazily lets the app be indexed
    (``app.get_functions()``) without any settings present.
    """

    def __init__(self, factory: Callable[[Settings], T], close: Callable[[T], None] | None = None) -> None:
        self._factory = factory
        self._close = close
        self._value: T | None = None
        _SERVICES.append(self)

    def get(self) -> T:
        """The service, built from ``Settings.from_env()`` the first time."""
        if self._value is None:
            self._value = self._factory(Settings.from_env())
        return self._value

    def reset(self) -> None:
        """Close and forget the service, as a fresh worker would; the next ``get`` rebuilds it."""
        if self._value is not None and self._close is not None:
            self._close(self._value)
        self._value = None


def reset_all() -> None:
    """Reset every :class:`ProcessService` of the app."""
    for service in _SERVICES:
        service.reset()


def raw_events(hub: str, events: list[func.EventHubEvent]) -> list[RawEvent]:
    """Wrap Event Hub events as :class:`RawEvent` with a position: hub, partition key, sequence, offset."""
    return [
        RawEvent(
            e.get_body(),
            f"{hub}[{i}] key={e.partition_key} seq={e.sequence_number} offset={e.offset}",
        )
        for i, e in enumerate(events)
    ]


def as_text(events: list[bytes]) -> list[str]:
    """Encoded JSON events as strings, the form an Event Hub output binding sends one by one."""
    return [e.decode("utf-8") for e in events]


def event_ids(events: list[func.EventHubEvent]) -> list[EventId | None]:
    """``(partition, sequence number)`` of each event, naming it across redeliveries.

    The partition is ``PartitionContext.PartitionId`` of the trigger metadata, which the
    Event Hubs extension binds for a batch of one partition (``events[0].metadata``: "For
    cardinality=many scenarios, each event points to the common metadata of all the events",
    azure.functions.EventHubEvent); without it (the local driver) the partition key, which
    the ingestor sets to the symbol so that all its ticks share one partition. An event with
    neither, or without a sequence number, gets ``None`` and is always applied.
    """
    partition = None
    metadata = events[0].metadata if events else None
    context = _get(metadata, "PartitionContext")
    if isinstance(context, Mapping) and _get(context, "PartitionId") is not None:
        partition = f"partition {_get(context, 'PartitionId')}"
    ids: list[EventId | None] = []
    for e in events:
        where = partition or (f"key {e.partition_key}" if e.partition_key is not None else None)
        ids.append((where, e.sequence_number) if where is not None and e.sequence_number is not None else None)
    return ids


def _get(mapping, name: str):
    """``mapping[name]``, whatever the case of the first letter (the host's JSON is camel or Pascal case)."""
    if not isinstance(mapping, Mapping):
        return None
    return mapping.get(name, mapping.get(name[0].lower() + name[1:]))
