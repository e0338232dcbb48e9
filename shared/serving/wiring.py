"""Composition root: build the services the drivers (Azure Functions, local stack) call.

Each builder reads :class:`shared.settings.Settings` and creates the SDK clients
once; drivers keep the result for the life of their process.

The builders import their services' modules when they are called, not when this
module is imported. The function app's blueprints import this module, and the
Functions host imports every blueprint to index the app (``app.get_functions()``)
before the first invocation; on Flex Consumption every instance group (``http``,
and one per other function) pays that import at each cold start. So indexing loads
no river (nor scipy, which river's drift detectors import), SQLAlchemy, pandas or
Blob Storage SDK: ``tests/unit/test_cold_start.py`` guards it, and
``bench/cold_start.py`` measures it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from shared.settings import Settings, SettingsError

if TYPE_CHECKING:  # the annotations only; the builders import these when called
    from shared.lifecycle.promotion import PromotionService
    from shared.lifecycle.registry import ModelRegistry
    from shared.lifecycle.retrain import RetrainService
    from shared.serving.api import HistoryApi
    from shared.serving.predicting import PredictService
    from shared.storage.archiving import ArchiveService


def make_registry(settings: Settings, client_id: str | None = None) -> ModelRegistry | None:
    """The model registry, or ``None`` when no Blob Storage is configured.

    ``client_id`` selects the user-assigned managed identity the registry's client authenticates
    as, when it uses the identity-based form (``MODEL_STORAGE__blobServiceUri``): retrain and
    promote_model write with identities of their own (``MODEL_STORAGE_RETRAIN_CLIENT_ID``,
    ``MODEL_STORAGE_PROMOTE_CLIENT_ID``; infra/tickcast_infra/identity.py). ``None`` keeps
    ``DefaultAzureCredential`` (``AZURE_CLIENT_ID``); a connection string (``MODEL_STORAGE``,
    locally Azurite's) ignores it.
    """
    if not (settings.model_storage_connection or settings.model_storage_url):
        return None
    from shared.lifecycle.registry import ModelRegistry

    if client_id and not settings.model_storage_connection:
        from azure.identity import ManagedIdentityCredential
        from azure.storage.blob import ContainerClient

        container = ContainerClient(
            settings.model_storage_url,  # type: ignore[arg-type]  # set: checked above
            settings.models_container,
            credential=ManagedIdentityCredential(client_id=client_id),
        )
        return ModelRegistry(container)
    return ModelRegistry.from_settings(settings)


def require_registry(settings: Settings, who: str, client_id: str | None = None) -> ModelRegistry:
    """The model registry; ``who`` names the function that cannot work without one;
    ``client_id`` as in :func:`make_registry`.

    Raises
    ------
    SettingsError
        Neither ``MODEL_STORAGE`` nor ``MODEL_STORAGE__blobServiceUri`` is set.
    """
    registry = make_registry(settings, client_id)
    if registry is None:
        raise SettingsError(f"{who} needs MODEL_STORAGE or MODEL_STORAGE__blobServiceUri")
    return registry


def make_predict_service(settings: Settings) -> PredictService:
    """A :class:`PredictService` serving each symbol's champion (or ``MODEL_KEY``'s), hot-reloaded.

    It emits a ``price`` event per symbol at most every ``PRICE_UPDATE_MS``. Feature state of a newly seen symbol is warmed from the newest
    ``STATE_WARMUP_BARS`` bars of the history store (MySQL, or the SQLite file).
    """
    from shared.serving.predicting import build_predict_service
    from shared.storage.history import HistoryStore

    store = HistoryStore.from_settings(settings) if settings.state_warmup_bars > 0 else None
    warmup = None
    if store is not None:
        n = settings.state_warmup_bars
        warmup = lambda exchange, symbol: store.latest_bars(exchange, symbol, n)
    service = build_predict_service(
        make_registry(settings),
        settings.model_key,
        settings.interval_level,
        settings.model_poll_seconds,
        checkpoint_seconds=settings.model_checkpoint_seconds,
        warmup=warmup,
        forecast_model=settings.forecast_model,
        price_update_ms=settings.price_update_ms,
    )
    if store is not None:
        service.closers.append(store.close)
    return service


def make_retrain_service(settings: Settings) -> RetrainService:
    """A :class:`RetrainService` over the history store and the registry (which must be configured).

    Raises
    ------
    SettingsError
        Neither ``MODEL_STORAGE`` nor ``MODEL_STORAGE__blobServiceUri`` is set.
    """
    from shared.lifecycle.retrain import RetrainService
    from shared.serving.engine import new_forecaster
    from shared.storage.history import HistoryStore

    registry = require_registry(settings, "retrain", settings.model_storage_retrain_client_id)
    level, family = settings.interval_level, settings.forecast_model
    return RetrainService(
        HistoryStore.from_settings(settings),
        registry,
        settings.symbols,
        fallback_key=settings.model_key,
        lookback_days=settings.retrain_lookback_days,
        holdout_minutes=settings.retrain_holdout_minutes,
        min_bars=settings.retrain_min_bars,
        new_forecaster=lambda: new_forecaster(family, level),
    )


def make_promotion_service(settings: Settings) -> PromotionService:
    """A :class:`PromotionService` over the registry (which must be configured).

    Raises
    ------
    SettingsError
        Neither ``MODEL_STORAGE`` nor ``MODEL_STORAGE__blobServiceUri`` is set.
    """
    from shared.lifecycle.promotion import PromotionService

    registry = require_registry(settings, "promote_model", settings.model_storage_promote_client_id)
    return PromotionService(registry, settings.model_key)


def make_archive_service(settings: Settings) -> ArchiveService:
    """An :class:`ArchiveService` over MySQL (``MYSQL_URL``) or the embedded SQLite file."""
    from shared.storage.archiving import ArchiveService
    from shared.storage.history import HistoryStore

    return ArchiveService(HistoryStore.from_settings(settings), source=settings.predictions_hub)


def make_history_api(settings: Settings) -> HistoryApi:
    """The read-only :class:`~shared.serving.api.HistoryApi` over the history store, opened on first query."""
    from shared.serving.api import HistoryApi

    return HistoryApi.from_settings(settings)
