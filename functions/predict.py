"""Blueprint ``predict``: ticks hub -> minute bars, forecasts and latest prices -> predictions hub.

Trigger: Event Hub ``%TICKS_HUB_NAME%``, cardinality many, consumer group
``%PREDICT_CONSUMER_GROUP%``, connection ``EVENTHUB`` (a connection string, or
``EVENTHUB__fullyQualifiedNamespace`` with a managed identity).
Outputs: bar, prediction and throttled price events to ``%PREDICTIONS_HUB_NAME%``;
malformed, late and out-of-sequence ticks to ``%DEADLETTER_HUB_NAME%``. Nothing else:
SignalR is the ``broadcast`` function's job (:mod:`functions.broadcast`), because an
output binding's error fails the invocation and cannot be caught in code ("Azure
Functions error handling and retries", learn.microsoft.com/azure/azure-functions/
functions-bindings-error-pages), so a SignalR outage or an exhausted message quota
would otherwise fail ``predict``.

Retry: a fixed-delay policy (:data:`RETRY`), which the Event Hubs trigger supports
(same page, "Retries": Event Hubs — retry policy, function level). The host re-invokes
the function with the same batch and does not checkpoint past it until it succeeds or
the retries are spent; :class:`shared.serving.predicting.PredictService` applies each
event (partition, sequence number) once and re-emits the outputs of events it already
applied, so a retry sends what the failed invocation should have sent. A batch that
still fails after the last retry is checkpointed past (Azure/Azure-Functions#947): its
ticks that the engine applied stay applied (bars and state continue), but its outputs
are lost (the bars and predictions of those minutes never reach the hub; the next
minutes' do).
State (bars in progress, features, per-symbol models) lives in this worker
process: the partition key is the symbol, so one instance owns a symbol.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING

import azure.functions as func

from functions.common import ProcessService, as_text, raw_events
from shared.serving.wiring import make_predict_service

if TYPE_CHECKING:  # the engine imports river: loaded on first use, not to index the app
    from shared.serving.predicting import EventId, PredictService

bp = func.Blueprint()
log = logging.getLogger(__name__)

RETRY = {"strategy": "fixed_delay", "max_retry_count": "3", "delay_interval": "00:00:01"}
"""``predict``'s retry policy: three more tries, one second apart (then the batch is checkpointed past)."""


service = ProcessService(make_predict_service)


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


@bp.function_name("predict")
@bp.event_hub_message_trigger(
    arg_name="events",
    event_hub_name="%TICKS_HUB_NAME%",
    connection="EVENTHUB",
    consumer_group="%PREDICT_CONSUMER_GROUP%",
    cardinality="many",
    data_type="binary",
)
@bp.event_hub_output(arg_name="predictions", event_hub_name="%PREDICTIONS_HUB_NAME%", connection="EVENTHUB")
@bp.event_hub_output(arg_name="deadletters", event_hub_name="%DEADLETTER_HUB_NAME%", connection="EVENTHUB")
@bp.retry(**RETRY)
def predict(
    events: list[func.EventHubEvent],
    predictions: func.Out[list[str]],
    deadletters: func.Out[list[str]],
) -> None:
    """Forecast from a batch of tick events; send bars, predictions, prices and dead letters on."""
    result = service.get().handle(raw_events("ticks", events), event_ids(events))
    predictions.set(as_text(result.outputs))
    if result.deadletters:
        deadletters.set(as_text(result.deadletters))
    log.info("predict batch: %s", dict(result.counts))
