"""Blueprint ``archive``: predictions hub -> MySQL history (bars, predictions, realised prices).

Trigger: Event Hub ``%PREDICTIONS_HUB_NAME%``, cardinality many, its own consumer
group ``%ARCHIVE_CONSUMER_GROUP%``. Upserts are idempotent, so redelivery is safe;
a database error fails the invocation so the batch is retried.
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
