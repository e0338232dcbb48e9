"""Blueprint ``predict``: ticks hub -> minute bars and forecasts -> predictions hub.

Trigger: Event Hub ``%TICKS_HUB_NAME%``, cardinality many, consumer group
``%PREDICT_CONSUMER_GROUP%``, connection ``EVENTHUB`` (a connection string, or
``EVENTHUB__fullyQualifiedNamespace`` with a managed identity).
Outputs: bar and prediction events to ``%PREDICTIONS_HUB_NAME%``; malformed,
late and out-of-sequence ticks to ``%DEADLETTER_HUB_NAME%``; predictions, bars and
throttled latest prices to the SignalR hub ``%SIGNALR_HUB_NAME%`` (see
:mod:`shared.serving.broadcast` for the targets).
State (bars in progress, features, per-symbol models) lives in this worker
process: the partition key is the symbol, so one instance owns a symbol.
"""

from __future__ import annotations

import logging

import azure.functions as func

from functions.common import ProcessService, as_text, raw_events
from shared.serving.broadcast import Broadcaster
from shared.serving.wiring import make_predict_service

bp = func.Blueprint()
log = logging.getLogger(__name__)
service = ProcessService(make_predict_service)
broadcaster = ProcessService(Broadcaster.from_settings)


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
@bp.generic_output_binding(
    arg_name="signalr", type="signalR", hubName="%SIGNALR_HUB_NAME%",
    connectionStringSetting="AzureSignalRConnectionString",
)
def predict(
    events: list[func.EventHubEvent],
    predictions: func.Out[list[str]],
    deadletters: func.Out[list[str]],
    signalr: func.Out[str],
) -> None:
    """Forecast from a batch of tick events; send bars, predictions and dead letters on."""
    result = service.get().handle(raw_events("ticks", events))
    predictions.set(as_text(result.outputs))
    if result.deadletters:
        deadletters.set(as_text(result.deadletters))
    messages = broadcaster.get().encode(result.outputs, result.latest_prices)
    if messages:
        signalr.set(messages)  # one JSON array: the host sends each element as a message
    log.info("predict batch: %s", dict(result.counts))
