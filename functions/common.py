"""Helpers shared by the blueprints: turning trigger events into ``shared`` inputs, dead-lettering failed batches."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from typing import TYPE_CHECKING, Generic, TypeVar

import logging

import azure.functions as func

from shared.contracts.batches import BatchResult, RawEvent
from shared.settings import Settings

if TYPE_CHECKING:
    from shared.serving.predicting import EventId

T = TypeVar("T")
log = logging.getLogger(__name__)
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
    """Wrap Event Hub events as :class:`RawEvent` with a position: hub, partition key, sequence, offset.

    The position is formatted only when read (a dead letter, a log line): a valid event costs none.
    """
    return [RawEvent(e.get_body(), partial(_position, hub, i, e)) for i, e in enumerate(events)]


def _position(hub: str, i: int, e: func.EventHubEvent) -> str:
    return f"{hub}[{i}] key={e.partition_key} seq={e.sequence_number} offset={e.offset}"


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


def last_try(context: func.Context | None) -> bool:
    """Whether this invocation is the last one its retry policy allows.

    "Azure Functions error handling and retries" (learn.microsoft.com/azure/azure-functions/
    functions-bindings-error-pages, "Retry policies", Python): the worker passes ``context`` to a
    function that declares it, and ``context.retry_context`` holds ``retry_count`` (0 on the first
    try) and ``max_retry_count`` (the policy's count; -1 retries forever, so no try is the last).
    Without a context (a direct call) nothing is known, so no try is taken as the last.
    """
    retry = getattr(context, "retry_context", None)
    if retry is None or retry.max_retry_count < 0:
        return False
    return retry.retry_count >= retry.max_retry_count


def dead_letter_last_try(
    context: func.Context | None,
    hub: str,
    events: list[func.EventHubEvent],
    deadletters: func.Out[list[str]],
    handle: Callable[[], None],
) -> None:
    """Run ``handle``; if it raises on the batch's last try, dead-letter the whole batch instead.

    Before the last try an exception propagates, so the host retries the batch under the
    function's policy. On the last try (:func:`last_try`) every event of the batch is set on
    ``deadletters`` as a ``DeadLetter`` (source ``hub``, its position, reason ``"batch failed
    after N tries: <error>"``, payload) and the function returns normally: the host then
    checkpoints past a batch that is kept on the dead-letter hub rather than lost (Azure/
    Azure-Functions#947: the Event Hubs trigger checkpoints whether the invocation succeeded
    or not). Outputs ``handle`` set on other bindings before raising are still sent; the
    blueprints set them only after the handling succeeded.

    Raises
    ------
    Exception
        Whatever ``handle`` raises, on every try but the last.
    """
    try:
        handle()
    except Exception as exc:
        if not last_try(context):
            raise
        tries = context.retry_context.retry_count + 1
        reason = f"batch failed after {tries} tries: {type(exc).__name__}: {exc}"
        log.error("%s batch of %d events failed its last try; dead-lettered whole: %s", hub, len(events), reason,
                  exc_info=True)
        result = BatchResult()
        for raw in raw_events(hub, events):
            result.set_aside(hub, raw, reason, counter="failed")
        deadletters.set(as_text(result.deadletters))
