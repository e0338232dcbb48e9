"""The one place where tickcast reads its configuration (environment variables / app settings).

In Azure these are the Function App's and the Container App's app settings; locally
the local stack sets them for its own processes. Every name is listed in
:data:`SETTINGS`, which ``infra/`` and the README are checked against, so code and
deployment cannot drift apart.

Binding expressions in ``functions/`` refer to some of these names as ``%NAME%``
(hub names, consumer groups) or as connection prefixes (``EVENTHUB``,
``MODEL_STORAGE``): those are resolved by the Functions host, not by this module.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

FUNCTIONS = "functions"
INGESTOR = "ingestor"


class Setting(NamedTuple):
    """One app setting: its default, what it means, who reads it, and whether it is a secret.

    ``default`` of ``None`` means "required where used". ``used_by`` names the
    workloads that read it (:data:`FUNCTIONS` = the Function App, :data:`INGESTOR`
    = the Container App); ``infra/`` sets every setting of a workload on it.
    ``secret`` settings (connection strings, passwords) must only ever be passed
    as secret references, never as plain text.
    """

    default: str | None
    meaning: str
    used_by: tuple[str, ...] = (FUNCTIONS,)
    secret: bool = False


_BOTH = (FUNCTIONS, INGESTOR)

#: name -> :class:`Setting` (indexable as ``(default, meaning, used_by, secret)``).
SETTINGS: dict[str, Setting] = {
    # --- Event Hubs (Kafka topics locally) -------------------------------------------------
    "TICKS_HUB_NAME": Setting("ticks", "Event Hub (Kafka topic) carrying tick events, key = symbol", _BOTH),
    "PREDICTIONS_HUB_NAME": Setting(
        "predictions", "Event Hub (Kafka topic) carrying bar, prediction and model-change events"
    ),
    "DEADLETTER_HUB_NAME": Setting(
        "deadletter", "Event Hub (Kafka topic) where malformed inputs are set aside", _BOTH
    ),
    "PREDICT_CONSUMER_GROUP": Setting("predict", "consumer group of the predict function on the ticks hub"),
    "ARCHIVE_CONSUMER_GROUP": Setting("archive", "consumer group of the archive function on the predictions hub"),
    "EVENTHUB__fullyQualifiedNamespace": Setting(
        None,
        "Event Hubs namespace host (<name>.servicebus.windows.net) for identity-based connections "
        "of the function bindings and the ingestor",
        _BOTH,
    ),
    "EVENTHUB": Setting(
        None,
        "Event Hubs connection string, used instead of EVENTHUB__fullyQualifiedNamespace "
        "(locally: the Event Hubs emulator's)",
        _BOTH,
        secret=True,
    ),
    "AZURE_CLIENT_ID": Setting(
        None, "client id of the workload's user-assigned managed identity (read by DefaultAzureCredential)", _BOTH
    ),
    # --- model registry (Blob Storage) --------------------------------------------------------
    "MODEL_STORAGE": Setting(
        None,
        "Blob Storage connection string for the model registry (locally Azurite's); "
        "in Azure use MODEL_STORAGE__blobServiceUri with a managed identity",
        secret=True,
    ),
    "MODEL_STORAGE__blobServiceUri": Setting(None, "Blob service URL used with DefaultAzureCredential"),
    "MODELS_CONTAINER": Setting("models", "blob container holding model blobs, pointers and decisions"),
    "MODEL_KEY": Setting(
        "default", "registry key of the fallback model, used for symbols with no champion of their own"
    ),
    "MODEL_POLL_SECONDS": Setting(
        "5", "how often predict checks a champion pointer (current.json, by ETag) for a new version"
    ),
    "MODEL_CHECKPOINT_SECONDS": Setting(
        "300", "how often predict checkpoints each symbol's online-updated model to Blob; 0 = never"
    ),
    "FORECAST_MODEL": Setting("linear", "model family of a cold-start forecaster, by name: linear (default) or tree"),
    "PREDICTION_INTERVAL_LEVEL": Setting("0.9", "coverage of the stated prediction interval, in (0, 1)"),
    "STATE_WARMUP_BARS": Setting(
        "240", "completed bars per symbol read from history to warm feature state after a restart"
    ),
    # --- retraining and promotion -------------------------------------------------------------
    "RETRAIN_SCHEDULE": Setting("0 0 * * * *", "NCRONTAB schedule of the retrain timer (default hourly)"),
    "RETRAIN_LOOKBACK_DAYS": Setting("7", "days of bars read from history to train a challenger"),
    "RETRAIN_HOLDOUT_MINUTES": Setting(
        "360", "most recent minutes held out to compare challenger, champion and persistence"
    ),
    "RETRAIN_MIN_BARS": Setting("1000", "fewest bars (training + holdout) a retrain needs; fewer = no candidate"),
    # --- history store (MySQL) ----------------------------------------------------------------
    "MYSQL_URL": Setting("", "SQLAlchemy URL of the MySQL history store; empty = embedded SQLite", secret=True),
    "HISTORY_SQLITE_PATH": Setting("tickcast-history.sqlite3", "SQLite file used when MYSQL_URL is empty"),
    # --- SignalR, HTTP API, dashboard ---------------------------------------------------------
    "AzureSignalRConnectionString": Setting(
        None, "Azure SignalR Service connection string used by the signalR bindings", secret=True
    ),
    "SIGNALR_HUB_NAME": Setting("tickcast", "SignalR hub that web clients join"),
    "SYMBOLS": Setting(
        "binance:BTCUSDT,binance:ETHUSDT,coinbase:BTC-USD,kraken:BTC/USD",
        "comma-separated exchange:SYMBOL pairs served by the HTTP API and retrained by the timer",
    ),
    "PRICE_UPDATE_MS": Setting("1000", "least time between two latest-price SignalR updates of one symbol"),
    # --- ingestor (Container App) -------------------------------------------------------------
    "INGESTOR_PUBLISHER": Setting("eventhubs", "where the ingestor publishes ticks: eventhubs or kafka", (INGESTOR,)),
    "INGESTOR_SUBSCRIPTIONS": Setting(
        "binance:BTCUSDT,ETHUSDT;coinbase:BTC-USD;kraken:BTC/USD",
        "live trade streams: ';'-separated source:SYMBOL,SYMBOL groups (one connection per group); "
        "sources binance (spot), binance-usdm (USD-M futures, alias binance-futures), coinbase, kraken",
        (INGESTOR,),
    ),
    "KAFKA_BOOTSTRAP_SERVERS": Setting(
        "localhost:9092", "Kafka bootstrap servers when INGESTOR_PUBLISHER=kafka", (INGESTOR,)
    ),
    "INGESTOR_BUFFER_EVENTS": Setting(
        "100000", "bound of the ingestor's publish buffer; ticks beyond it are dropped and counted", (INGESTOR,)
    ),
    "INGESTOR_HEALTH_PORT": Setting("8080", "port of the ingestor's HTTP /healthz endpoint", (INGESTOR,)),
    "INGESTOR_STALE_SECONDS": Setting(
        "30", "readiness fails when the newest message of a connection is older than this", (INGESTOR,)
    ),
    "INGESTOR_SOURCE_URLS": Setting(
        "",
        "comma-separated source=wss://... overrides of the exchanges' websocket endpoints; empty = documented ones",
        (INGESTOR,),
    ),
    "INGESTOR_HEARTBEAT_SECONDS": Setting(
        "30", "a connection that receives no message for this long is treated as stalled and reconnected", (INGESTOR,)
    ),
    "INGESTOR_PING_INTERVAL_SECONDS": Setting(
        "20", "interval of the websocket keepalive pings the ingestor sends", (INGESTOR,)
    ),
    "INGESTOR_PING_TIMEOUT_SECONDS": Setting(
        "20", "a keepalive ping unanswered for this long drops the connection", (INGESTOR,)
    ),
    "INGESTOR_BACKOFF_INITIAL_SECONDS": Setting(
        "0.5", "first reconnect delay; doubles per failed attempt, with jitter", (INGESTOR,)
    ),
    "INGESTOR_BACKOFF_MAX_SECONDS": Setting("30", "cap of the reconnect delay", (INGESTOR,)),
    "INGESTOR_BUFFER_WAIT_SECONDS": Setting(
        "1", "how long a connection waits for room in a full publish buffer before it drops a tick", (INGESTOR,)
    ),
    "INGESTOR_SHUTDOWN_SECONDS": Setting(
        "25", "on SIGTERM, how long the ingestor may take to publish what it has already received", (INGESTOR,)
    ),
    "INGESTOR_STATS_SECONDS": Setting("60", "interval of the ingestor's counters log line; 0 = never", (INGESTOR,)),
}


def settings_for(workload: str) -> dict[str, Setting]:
    """The settings read by ``workload`` (:data:`FUNCTIONS` or :data:`INGESTOR`), by name."""
    return {name: s for name, s in SETTINGS.items() if workload in s.used_by}


class SettingsError(ValueError):
    """A setting is missing or has a value that cannot be used; ``str()`` names it."""


def parse_symbols(text: str) -> tuple[tuple[str, str], ...]:
    """Parse ``"exchange:SYMBOL,exchange:SYMBOL"`` into ``(exchange, SYMBOL)`` pairs.

    Exchanges are lower-cased, symbols upper-cased (exchange-native, e.g. ``BTCUSDT``,
    ``BTC-USD``, ``BTC/USD``); duplicates are dropped, order kept.

    Raises
    ------
    SettingsError
        An entry without ``:`` or with an empty part.

    Examples
    --------
    >>> parse_symbols("binance:btcusdt, kraken:BTC/USD")
    (('binance', 'BTCUSDT'), ('kraken', 'BTC/USD'))
    """
    pairs: list[tuple[str, str]] = []
    for entry in text.split(","):
        entry = entry.strip()
        if not entry:
            continue
        exchange, sep, symbol = entry.partition(":")
        if not sep or not exchange.strip() or not symbol.strip():
            raise SettingsError(f"SYMBOLS entry {entry!r} is not exchange:SYMBOL")
        pair = (exchange.strip().lower(), symbol.strip().upper())
        if pair not in pairs:
            pairs.append(pair)
    return tuple(pairs)


@dataclass(frozen=True)
class Settings:
    """Typed view of the Function App's settings in :data:`SETTINGS`; build it with :meth:`from_env`.

    Durations are in seconds, intervals in the units their names give.
    """

    ticks_hub: str
    predictions_hub: str
    deadletter_hub: str
    predict_consumer_group: str
    archive_consumer_group: str
    model_storage_connection: str | None
    model_storage_url: str | None
    models_container: str
    model_key: str
    model_poll_seconds: float
    model_checkpoint_seconds: float
    forecast_model: str
    interval_level: float
    state_warmup_bars: int
    retrain_schedule: str
    retrain_lookback_days: float
    retrain_holdout_minutes: int
    retrain_min_bars: int
    mysql_url: str
    history_sqlite_path: str
    signalr_hub: str
    symbols: tuple[tuple[str, str], ...]
    price_update_ms: int

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read every setting from ``environ`` (default ``os.environ``), applying defaults.

        Raises
        ------
        SettingsError
            A numeric setting that does not parse or is negative, an interval level
            outside (0, 1), or a malformed ``SYMBOLS``.
        """
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            value = env.get(name)
            return SETTINGS[name].default if value in (None, "") else value

        def number(name: str) -> float:
            try:
                value = float(get(name))  # type: ignore[arg-type]
            except ValueError:
                raise SettingsError(f"{name}={env.get(name)!r} is not a number") from None
            if not value >= 0:
                raise SettingsError(f"{name}={env.get(name)!r} must be a number >= 0")
            return value

        def integer(name: str) -> int:
            value = number(name)
            if value != int(value):
                raise SettingsError(f"{name}={env.get(name)!r} must be a whole number")
            return int(value)

        level = number("PREDICTION_INTERVAL_LEVEL")
        if not 0 < level < 1:
            raise SettingsError(f"PREDICTION_INTERVAL_LEVEL={level} must lie in (0, 1)")
        return cls(
            ticks_hub=get("TICKS_HUB_NAME"),  # type: ignore[arg-type]
            predictions_hub=get("PREDICTIONS_HUB_NAME"),  # type: ignore[arg-type]
            deadletter_hub=get("DEADLETTER_HUB_NAME"),  # type: ignore[arg-type]
            predict_consumer_group=get("PREDICT_CONSUMER_GROUP"),  # type: ignore[arg-type]
            archive_consumer_group=get("ARCHIVE_CONSUMER_GROUP"),  # type: ignore[arg-type]
            model_storage_connection=get("MODEL_STORAGE"),
            model_storage_url=get("MODEL_STORAGE__blobServiceUri"),
            models_container=get("MODELS_CONTAINER"),  # type: ignore[arg-type]
            model_key=get("MODEL_KEY"),  # type: ignore[arg-type]
            model_poll_seconds=number("MODEL_POLL_SECONDS"),
            model_checkpoint_seconds=number("MODEL_CHECKPOINT_SECONDS"),
            forecast_model=get("FORECAST_MODEL") or "",
            interval_level=level,
            state_warmup_bars=integer("STATE_WARMUP_BARS"),
            retrain_schedule=get("RETRAIN_SCHEDULE"),  # type: ignore[arg-type]
            retrain_lookback_days=number("RETRAIN_LOOKBACK_DAYS"),
            retrain_holdout_minutes=integer("RETRAIN_HOLDOUT_MINUTES"),
            retrain_min_bars=integer("RETRAIN_MIN_BARS"),
            mysql_url=get("MYSQL_URL") or "",
            history_sqlite_path=get("HISTORY_SQLITE_PATH"),  # type: ignore[arg-type]
            signalr_hub=get("SIGNALR_HUB_NAME"),  # type: ignore[arg-type]
            symbols=parse_symbols(get("SYMBOLS") or ""),
            price_update_ms=integer("PRICE_UPDATE_MS"),
        )
