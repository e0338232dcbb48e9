"""Helpers shared by the blueprints: turning trigger events into ``shared`` inputs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

import azure.functions as func

from shared.contracts.batches import RawEvent
from shared.settings import Settings

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
