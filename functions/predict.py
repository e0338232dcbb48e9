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
applied, so a retry sends what the failed invocation should have sent. On the last try
(``context.retry_context.retry_count == max_retry_count``, same page, Python) a batch that
still fails is dead-lettered whole (:func:`functions.common.dead_letter_last_try`): every
tick goes to ``%DEADLETTER_HUB_NAME%`` with its position and the reason, and the function
returns, so the host's checkpoint past it (Azure/Azure-Functions#947) loses nothing. Ticks
the engine applied stay applied (bars and state continue); the outputs of that batch are
not sent (the bars and predictions of those minutes never reach the hub; the next minutes' do).
State (bars in progress, features, per-symbol models) lives in this worker process and is saved
per partition, with the outputs of the batch, before the function returns; a worker that gets a
partition restores it (:mod:`shared.serving.partitions`, docs/failures.md "Restarts"). The
partition key is the symbol, so one partition holds all of a symbol's ticks.
"""

from __future__ import annotations

import logging

import azure.functions as func

from functions.common import ProcessService, as_text, dead_letter_last_try, event_ids, raw_events
from shared.serving.wiring import make_predict_service

bp = func.Blueprint()
log = logging.getLogger(__name__)

RETRY = {"strategy": "fixed_delay", "max_retry_count": "3", "delay_interval": "00:00:01"}
"""``predict``'s retry policy: three more tries, one second apart (then the batch is dead-lettered whole)."""


service = ProcessService(make_predict_service, close=lambda s: s.close())


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
    context: func.Context = None,
) -> None:
    """Forecast from a batch of tick events; send bars, predictions, prices and dead letters on.

    ``context`` is passed by the Python worker (its ``retry_context`` says which try this is);
    on the last try a batch that still fails is dead-lettered whole instead of raising.
    """

    def handle() -> None:
        result = service.get().handle(raw_events("ticks", events), event_ids(events))
        predictions.set(as_text(result.outputs))
        if result.deadletters:
            deadletters.set(as_text(result.deadletters))
        log.info("predict batch: %s", dict(result.counts))

    dead_letter_last_try(context, "ticks", events, deadletters, handle)
