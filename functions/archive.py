"""Blueprint ``archive``: predictions hub -> MySQL history (bars, predictions, realised prices).

Trigger: Event Hub ``%PREDICTIONS_HUB_NAME%``, cardinality many, its own consumer
group ``%ARCHIVE_CONSUMER_GROUP%``. Malformed events go to ``%DEADLETTER_HUB_NAME%``.

Failures: a database error fails the invocation. The Event Hubs trigger checkpoints a batch
whether its invocation succeeded or not (Azure/Azure-Functions#947), and retries it only under a
retry policy ("Azure Functions error handling and retries",
https://learn.microsoft.com/azure/azure-functions/functions-bindings-error-pages). Since the
upserts are idempotent, re-running a batch is safe, so this function declares one: exponential
backoff, 5 retries, from 4 s up to 15 min between tries (the documented example's bounds),
about 1.5 min in all while the partition waits. A batch that still fails is checkpointed past
and is missing from the history (docs/failures.md says how to replay it).
"""

from __future__ import annotations

import logging

import azure.functions as func

from functions.common import ProcessService, as_text, raw_events
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
def archive(events: list[func.EventHubEvent], deadletters: func.Out[list[str]]) -> None:
    """Upsert a batch of bar and prediction events into the history store."""
    result = service.get().handle(raw_events("predictions", events))
    if result.deadletters:
        deadletters.set(as_text(result.deadletters))
    log.info("archive batch: %s", dict(result.counts))
