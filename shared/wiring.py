"""Composition root: build the services the drivers (Azure Functions, local stack) call.

Each builder reads :class:`shared.settings.Settings` and creates the SDK clients
once; drivers keep the result for the life of their process.
"""

from __future__ import annotations

from shared.archiving import ArchiveService
from shared.history import HistoryStore
from shared.predicting import PredictService, build_predict_service
from shared.registry import ModelRegistry
from shared.settings import Settings


def make_registry(settings: Settings) -> ModelRegistry | None:
    """The model registry, or ``None`` when no Blob Storage is configured."""
    if not (settings.model_storage_connection or settings.model_storage_url):
        return None
    return ModelRegistry.from_settings(settings)


def make_predict_service(settings: Settings) -> PredictService:
    """A :class:`PredictService` whose symbols start from the registry's champion of ``MODEL_KEY``."""
    return build_predict_service(
        make_registry(settings), settings.model_key, settings.interval_level, settings.model_poll_seconds
    )


def make_archive_service(settings: Settings) -> ArchiveService:
    """An :class:`ArchiveService` over MySQL (``MYSQL_URL``) or the embedded SQLite file."""
    return ArchiveService(HistoryStore.from_settings(settings), source=settings.predictions_hub)
