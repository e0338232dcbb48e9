"""Composition root: build the services the drivers (Azure Functions, local stack) call.

Each builder reads :class:`shared.settings.Settings` and creates the SDK clients
once; drivers keep the result for the life of their process.
"""

from __future__ import annotations

from shared.storage.archiving import ArchiveService
from shared.serving.engine import new_forecaster
from shared.storage.history import HistoryStore
from shared.serving.predicting import PredictService, build_predict_service
from shared.lifecycle.promotion import PromotionService
from shared.lifecycle.registry import ModelRegistry
from shared.lifecycle.retrain import RetrainService
from shared.settings import Settings, SettingsError


def make_registry(settings: Settings) -> ModelRegistry | None:
    """The model registry, or ``None`` when no Blob Storage is configured."""
    if not (settings.model_storage_connection or settings.model_storage_url):
        return None
    return ModelRegistry.from_settings(settings)


def require_registry(settings: Settings, who: str) -> ModelRegistry:
    """The model registry; ``who`` names the function that cannot work without one.

    Raises
    ------
    SettingsError
        Neither ``MODEL_STORAGE`` nor ``MODEL_STORAGE__blobServiceUri`` is set.
    """
    registry = make_registry(settings)
    if registry is None:
        raise SettingsError(f"{who} needs MODEL_STORAGE or MODEL_STORAGE__blobServiceUri")
    return registry


def make_predict_service(settings: Settings) -> PredictService:
    """A :class:`PredictService` serving each symbol's champion (or ``MODEL_KEY``'s), hot-reloaded.

    Feature state of a newly seen symbol is warmed from the newest
    ``STATE_WARMUP_BARS`` bars of the history store (MySQL, or the SQLite file).
    """
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
    registry = require_registry(settings, "retrain")
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
    return PromotionService(require_registry(settings, "promote_model"), settings.model_key)


def make_archive_service(settings: Settings) -> ArchiveService:
    """An :class:`ArchiveService` over MySQL (``MYSQL_URL``) or the embedded SQLite file."""
    return ArchiveService(HistoryStore.from_settings(settings), source=settings.predictions_hub)
