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

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from shared.settings import Settings, SettingsError

if TYPE_CHECKING:  # the annotations only; the builders import these when called
    from shared.contracts.events import Bar
    from shared.lifecycle.champions import Backoff
    from shared.lifecycle.promotion import PromotionService
    from shared.lifecycle.registry import ModelRegistry
    from shared.lifecycle.retrain import RetrainService
    from shared.serving.api import HistoryApi
    from shared.serving.predicting import PredictService
    from shared.serving.statestore import PartitionStateStore
    from shared.storage.archiving import ArchiveService
    from shared.storage.history import HistoryStore

log = logging.getLogger(__name__)

SERVING_BLOB_CLIENT: dict[str, Any] = {"retry_total": 0, "connection_timeout": 2, "read_timeout": 10}
"""Blob client options of ``predict``'s registry, whose calls run inside the bar-close path.

No retries: azure-storage-blob's default policy is ``ExponentialRetry`` with ``retry_total=3``
and ``initial_backoff=15`` s (learn.microsoft.com, "Implement a retry policy with Python",
storage-retry-policy-python), which froze a bar close for 17 s during a 10.6 s Azurite outage;
the breaker of :class:`shared.lifecycle.champions.ChampionSource` retries instead, at later bar
closes. ``connection_timeout`` 2 s (azure-core's default is 300 s) bounds a connect to an
unreachable endpoint; ``read_timeout`` 10 s (default 300 s) is the longest silence between two
socket reads, ample for a model blob in the same region.
"""


def make_registry(settings: Settings, client_id: str | None = None, **client_kwargs: Any) -> ModelRegistry | None:
    """The model registry, or ``None`` when no Blob Storage is configured.

    ``client_id`` selects the user-assigned managed identity the registry's client authenticates
    as, when it uses the identity-based form (``MODEL_STORAGE__blobServiceUri``): retrain and
    promote_model write with identities of their own (``MODEL_STORAGE_RETRAIN_CLIENT_ID``,
    ``MODEL_STORAGE_PROMOTE_CLIENT_ID``; infra/tickcast_infra/identity.py). ``None`` keeps
    ``DefaultAzureCredential`` (``AZURE_CLIENT_ID``); a connection string (``MODEL_STORAGE``,
    locally Azurite's) ignores it. ``client_kwargs`` go to the ``ContainerClient`` (e.g.
    :data:`SERVING_BLOB_CLIENT`).
    """
    if not (settings.model_storage_connection or settings.model_storage_url):
        return None
    from shared.lifecycle.registry import ModelRegistry

    credential = None
    if client_id and not settings.model_storage_connection:
        from azure.identity import ManagedIdentityCredential

        credential = ManagedIdentityCredential(client_id=client_id)
    return ModelRegistry.from_settings(settings, credential=credential, **client_kwargs)


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


class HistoryWarmup:
    """Warm-up bars from the history store, opened on first use; never fails, never waits long.

    ``predict`` must start and predict with the database down, so the store is not opened
    when the service is built but when the first symbol is seen. A failure to open or read
    opens ``backoff``: one log line, and every symbol first seen during the back-off starts
    with cold features (``[]``) without a connection attempt. Such a symbol is not warmed
    later: its features fill from the live bars within ``bars`` minutes, and replaying stored
    bars into features that already saw newer ones would put them out of order. Symbols first
    seen after the database answers again are warmed as usual.

    Parameters
    ----------
    open_store : opens the history store (e.g. ``HistoryStore.from_settings``).
    bars : newest bars to read per symbol (``STATE_WARMUP_BARS``).
    backoff : breaker between attempts (:class:`shared.lifecycle.champions.Backoff`).
    """

    def __init__(self, open_store: Callable[[], HistoryStore], bars: int, backoff: Backoff) -> None:
        self.open_store = open_store
        self.bars = bars
        self.backoff = backoff
        self.store: HistoryStore | None = None
        self.skipped = 0
        """Symbols that started with cold features because the store was unreachable."""

    def __call__(self, exchange: str, symbol: str) -> list[Bar]:
        """The newest ``bars`` stored bars of the symbol, oldest first; ``[]`` while the store is down."""
        if not self.backoff.ready():
            self.skipped += 1
            return []
        try:
            if self.store is None:
                self.store = self.open_store()
            bars = self.store.latest_bars(exchange, symbol, self.bars)
        except Exception as exc:  # any driver error: degrade to cold features, keep streaming
            self.skipped += 1
            delay = self.backoff.failed()
            log.error("history store unreachable (%s); %s %s and symbols first seen in the next %.0f s "
                      "start with cold features", type(exc).__name__, exchange, symbol, delay)
            return []
        self.backoff.succeeded()
        return bars

    def close(self) -> None:
        """Close the store if it was opened."""
        if self.store is not None:
            self.store.close()
            self.store = None


def make_predict_service(settings: Settings) -> PredictService:
    """A :class:`PredictService` serving each symbol's champion (or ``MODEL_KEY``'s), hot-reloaded.

    It emits a ``price`` event per symbol at most every ``PRICE_UPDATE_MS``. Feature state of a
    newly seen symbol is warmed from the newest ``STATE_WARMUP_BARS`` bars of the history store
    (MySQL, or the SQLite file) through a :class:`HistoryWarmup`, so the service builds and
    predicts with the database down. Its registry client is configured by
    :data:`SERVING_BLOB_CLIENT`, so a Blob Storage outage costs a bar close milliseconds (a
    refused connection) to 2 s (an unreachable host), once per back-off period. Each partition's
    state is saved every ``STATE_SNAPSHOT_SECONDS`` and a restore replays the ticks hub
    (:func:`make_hub_replay`); without a Kafka endpoint to replay from, it is saved every batch.

    Raises
    ------
    ValueError
        A malformed or unsupported ``MYSQL_URL`` (no connection is attempted here), or an
        ``EVENTHUB`` connection string without an ``Endpoint``.
    """
    from shared.lifecycle.champions import Backoff
    from shared.serving.predicting import build_predict_service
    from shared.storage.history import HistoryStore, normalise_url

    warmup = None
    if settings.state_warmup_bars > 0:
        normalise_url(settings.mysql_url)  # a malformed MYSQL_URL still fails the build (ValueError)
        warmup = HistoryWarmup(lambda: HistoryStore.from_settings(settings), settings.state_warmup_bars,
                               Backoff())
    registry = make_registry(settings, **SERVING_BLOB_CLIENT)
    state_store = make_state_store(settings, registry)
    replay = make_hub_replay(settings) if state_store is not None else None
    snapshot_seconds = settings.state_snapshot_seconds
    if replay is None and snapshot_seconds and state_store is not None:
        log.warning("no Kafka endpoint to replay the ticks hub from: partition state saved every batch, "
                    "not every STATE_SNAPSHOT_SECONDS=%g", snapshot_seconds)
        snapshot_seconds = 0.0
    service = build_predict_service(
        registry,
        settings.model_key,
        settings.interval_level,
        settings.model_poll_seconds,
        checkpoint_seconds=settings.model_checkpoint_seconds,
        warmup=warmup,
        forecast_model=settings.forecast_model,
        price_update_ms=settings.price_update_ms,
        state_store=state_store,
        poll_in_background=True,
        snapshot_seconds=snapshot_seconds,
        replay=replay,
    )
    if warmup is not None:
        service.closers.append(warmup.close)
    if replay is not None:
        service.closers.append(replay.close)
    if state_store is not None:
        service.closers.append(state_store.close)
    return service


def make_hub_replay(settings: Settings):
    """``predict``'s reader of the ticks hub for replays after a restore (:class:`KafkaHubReplay`), on
    ``STATE_REPLAY_BOOTSTRAP_SERVERS``, else the Kafka endpoint of the ``EVENTHUB`` namespace; ``None``
    when neither is set (a restored state behind the stream then has its bars marked partial).

    Raises
    ------
    ValueError
        An ``EVENTHUB`` connection string without an ``Endpoint``.
    """
    from shared.serving.hubreplay import KafkaHubReplay, replay_config

    config = replay_config(settings.state_replay_bootstrap_servers or None, settings.eventhub_connection,
                           settings.eventhub_namespace)
    if config is None:
        log.warning("no Kafka endpoint for the ticks hub: a restored state behind the stream loses its minute")
        return None
    return KafkaHubReplay(config, settings.ticks_hub, hub=settings.ticks_hub)


def make_state_store(settings: Settings, registry: ModelRegistry | None) -> PartitionStateStore | None:
    """``predict``'s partition state store on ``STATE_CONTAINER`` of the registry's account, with the
    registry's credential and :data:`SERVING_BLOB_CLIENT` options, signed with ``MODEL_SIGNING_KEY``;
    ``None`` without a registry or a signing key (then state lives in memory only, and a restart
    loses the minute in progress: see :mod:`shared.serving.partitions`).
    """
    from shared.serving.statestore import PartitionStateStore

    if registry is None or not registry.blobs.signer.has_key:
        log.warning("no model storage or signing key: partition state is kept in memory only")
        return None
    from azure.storage.blob import ContainerClient

    if settings.model_storage_connection:
        container = ContainerClient.from_connection_string(
            settings.model_storage_connection, settings.state_container, **SERVING_BLOB_CLIENT)
    else:  # the same account and identity as the registry's client
        container = ContainerClient(settings.model_storage_url, settings.state_container,
                                    credential=registry.container.credential, **SERVING_BLOB_CLIENT)
    return PartitionStateStore(container, registry.blobs.signer, settings.ticks_hub, settings.predict_consumer_group)


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
