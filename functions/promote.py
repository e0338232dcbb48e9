"""Blueprint ``promote_model``: validate a new candidate blob and promote it if it earned it.

Trigger: blob ``%MODELS_CONTAINER%/{key}/candidates/{version}/metadata.json`` with
``source=EventGrid`` (the only blob trigger Flex Consumption supports; the registry
writes ``metadata.json`` last, so the model blob is complete when this fires),
connection ``MODEL_STORAGE``. The decision logic — sha256 before unpickling, smoke
prediction, holdout MAE against the champion, compare-and-swap of ``current.json``,
a decision record — is :class:`shared.lifecycle.promotion.PromotionService`.
Output, when promoted: a ``model_change`` event on ``%PREDICTIONS_HUB_NAME%``; the
``broadcast`` function sends it on to SignalR web clients (target ``modelChanged``),
so a promotion never fails or waits on SignalR.
"""

from __future__ import annotations

import logging

import azure.functions as func

from functions.common import ProcessService
from shared.contracts.events import encode
from shared.serving.wiring import make_promotion_service

bp = func.Blueprint()
log = logging.getLogger(__name__)
service = ProcessService(make_promotion_service)


@bp.function_name("promote_model")
@bp.blob_trigger(
    arg_name="blob",
    path="%MODELS_CONTAINER%/{key}/candidates/{version}/metadata.json",
    connection="MODEL_STORAGE",
    source=func.BlobSource.EVENT_GRID,
)
@bp.event_hub_output(arg_name="changes", event_hub_name="%PREDICTIONS_HUB_NAME%", connection="EVENTHUB")
def promote_model(blob: func.InputStream, changes: func.Out[list[str]]) -> None:
    """Decide about the candidate whose metadata blob was created; announce a promotion."""
    from shared.lifecycle.promotion import parse_candidate_blob  # heavy: imported on first use

    key, version = parse_candidate_blob(blob.name or "")
    decision = service.get().handle(key, version)
    if decision.promoted:
        change = decision.model_change()
        changes.set([encode(change).decode("utf-8")])
