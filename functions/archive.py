"""Blueprint ``archive``: predictions hub -> MySQL history (bars, predictions, realised prices).

Trigger: Event Hub ``%PREDICTIONS_HUB_NAME%``, cardinality many, its own consumer
group ``%ARCHIVE_CONSUMER_GROUP%``. Malformed events go to ``%DEADLETTER_HUB_NAME%``.

Failures: a database error fails the invocation. The Event Hubs trigger checkpoints a batch
whether its invocation succeeded or not (Azure/Azure-Functions#947), and retries it only under a
retry policy ("Azure Functions error handling and retries",
https://learn.microsoft.com/azure/azure-functions/functions-bindings-error-pages). Since the
upserts are idempotent, re-running a batch is safe, so this function declares one: exponential
backoff, 5 retries, from 4 s up to 15 min between tries (the documented example's bounds),
about 1.5 min in all while the partition waits. On the last try (``context.retry_context``:
``retry_count == max_retry_count``, same page, Python) a batch that still fails is dead-lettered
whole (:func:`functions.common.dead_letter_last_try`): every event goes to ``%DEADLETTER_HUB_NAME%``
with its position and the reason, and the function returns, so the checkpoint past it loses
nothing; the batch is missing from the history until replayed from the dead letters
(docs/failures.md).
"""

from __future__ import annotations

import logging

import azure.functions as func

from functions.common import ProcessService, as_text, dead_letter_last_try, raw_events
from shared.serving.wiring import make_archive_service

bp = func.Blueprint()
log = logging.getLogger(__name__)
service = ProcessService(make_archive_service, close=lambda s: s.store.close())


@bp.function_name("archive")
@bp.retry(strategy="exponential_backoff", max_retry_count="5", minimum_interval="00:00:04",
          maximum_interval="00:15:00")
@bp.event_hub_message_trigger(
    arg_name="events",
    event_hub_name="%PREDICTIONS_HUB_NAME%",
    connection="EVENTHUB",
    consumer_group="%ARCHIVE_CONSUMER_GROUP%",
    cardinality="many",
    data_type="binary",
)
@bp.event_hub_output(arg_name="deadletters", event_hub_name="%DEADLETTER_HUB_NAME%", connection="EVENTHUB")
def archive(events: list[func.EventHubEvent], deadletters: func.Out[list[str]],
            context: func.Context = None) -> None:
    """Upsert a batch of bar and prediction events into the history store.

    ``context`` is passed by the Python worker (its ``retry_context`` says which try this is);
    on the last try a batch that still fails is dead-lettered whole instead of raising.
    """

    def handle() -> None:
        result = service.get().handle(raw_events("predictions", events))
        if result.deadletters:
            deadletters.set(as_text(result.deadletters))
        log.info("archive batch: %s", dict(result.counts))

    dead_letter_last_try(context, "predictions", events, deadletters, handle)
