"""Blueprint ``broadcast``: predictions hub -> SignalR (bars, predictions, latest prices, model changes).

Trigger: Event Hub ``%PREDICTIONS_HUB_NAME%``, cardinality many, its own consumer group
``%BROADCAST_CONSUMER_GROUP%``, connection ``EVENTHUB``. Output: the SignalR Service
hub ``%SIGNALR_HUB_NAME%`` (connection ``AzureSignalRConnectionString``); the messages
and their targets are :mod:`shared.serving.broadcast`'s.

Why a function of its own: an output binding's error fails the invocation and cannot
be caught in code ("Azure Functions error handling and retries",
learn.microsoft.com/azure/azure-functions/functions-bindings-error-pages, "When using
output bindings, you can't handle errors that occur when accessing the remote
service"). Here a SignalR failure or an exhausted daily message quota fails only
``broadcast``'s invocation; ``predict`` and ``archive`` read the hub through their own
consumer groups and never wait for it.

No retry policy: without one the host checkpoints past a failed batch
(Azure/Azure-Functions#947), and the dashboards miss those messages — live prices are
superseded within ``PRICE_UPDATE_MS``, and a dashboard reloads bars and predictions
from the HTTP API when it reconnects. Retrying against an exhausted quota would only
delay the next batches.
"""

from __future__ import annotations

import logging

import azure.functions as func

from functions.common import raw_events
from shared.serving.broadcast import encode_messages, messages_for_batch

bp = func.Blueprint()
log = logging.getLogger(__name__)


@bp.function_name("broadcast")
@bp.event_hub_message_trigger(
    arg_name="events",
    event_hub_name="%PREDICTIONS_HUB_NAME%",
    connection="EVENTHUB",
    consumer_group="%BROADCAST_CONSUMER_GROUP%",
    cardinality="many",
    data_type="binary",
)
@bp.generic_output_binding(
    arg_name="signalr", type="signalR", hubName="%SIGNALR_HUB_NAME%",
    connectionStringSetting="AzureSignalRConnectionString",
)
def broadcast(events: list[func.EventHubEvent], signalr: func.Out[str]) -> None:
    """Send a batch of bar, prediction, price and model-change events to the SignalR hub's clients."""
    batch = messages_for_batch(raw_events("predictions", events))
    value = encode_messages(batch.messages)
    if value is not None:
        signalr.set(value)  # one JSON array: the host sends each element as a message
    log.info("broadcast batch: %s", dict(batch.counts))
