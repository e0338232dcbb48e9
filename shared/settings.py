"""The one place where tickcast reads its configuration (environment variables / app settings).

In Azure these are the Function App's and the Container App's app settings; locally
the local stack sets them for its own processes. Every name is listed in
:data:`SETTINGS`, which ``infra/`` and ``docs/configuration.md`` are checked against, so code and
deployment cannot drift apart.

Binding expressions in ``functions/`` refer to some of these names as ``%NAME%``
(hub names, consumer groups) or as connection prefixes (``EVENTHUB``,
``MODEL_STORAGE``): those are resolved by the Functions host, not by this module.

Every value is parsed here, by :class:`SettingsReader` (text, numbers, whole numbers,
ports, flags, choices; an unset or empty variable reads as its default), into the typed
views of the three readers: :class:`Settings` (the Function App), ``ingestor.config.
IngestorConfig`` (the ingestor) and :class:`LocalSettings` (the local stack's own knobs).
Nothing is read at import time. A value that cannot be used raises :class:`SettingsError`
naming the variable, its value and the expected form.

Examples
--------
>>> read = SettingsReader({"MODEL_POLL_SECONDS": "2.5", "EXIT_WHEN_DONE": "yes"})
>>> read.number("MODEL_POLL_SECONDS"), read.integer("RETRAIN_MIN_BARS"), read.flag("EXIT_WHEN_DONE")
(2.5, 1000, True)
>>> SettingsReader({"RETRAIN_MIN_BARS": "1.5"}).integer("RETRAIN_MIN_BARS")
Traceback (most recent call last):
...
shared.settings.SettingsError: RETRAIN_MIN_BARS='1.5' must be a whole number >= 0
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

FUNCTIONS = "functions"
INGESTOR = "ingestor"
LOCAL = "local_stack"


class Setting(NamedTuple):
    """One app setting: its default, what it means, who reads it, and whether it is a secret.

    ``default`` of ``None`` means "required where used". ``used_by`` names the
    workloads that read it (:data:`FUNCTIONS` = the Function App, :data:`INGESTOR`
    = the Container App, :data:`LOCAL` = the local stack, ``python -m local_stack``);
    ``infra/`` sets every setting of the two Azure workloads on them, and never a
    setting read by :data:`LOCAL` alone. The local stack runs the Function App's code,
    so it also reads the :data:`FUNCTIONS` settings (through :class:`Settings`).
    ``secret`` settings (connection strings, passwords) must only ever be passed
    as secret references, never as plain text.
    """

    default: str | None
    meaning: str
    used_by: tuple[str, ...] = (FUNCTIONS,)
    secret: bool = False


_BOTH = (FUNCTIONS, INGESTOR)


def _ingestor(default: str, meaning: str) -> Setting:
    return Setting(default, meaning, (INGESTOR,))


def _local(default: str, meaning: str) -> Setting:
    return Setting(default, meaning, (LOCAL,))

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
    "BROADCAST_CONSUMER_GROUP": Setting(
        "broadcast", "consumer group of the broadcast function (predictions hub -> SignalR) on the predictions hub"
    ),
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
    "MODEL_STORAGE_RETRAIN_CLIENT_ID": Setting(
        None,
        "client id of the user-assigned identity retrain writes candidates with (with "
        "MODEL_STORAGE__blobServiceUri; unset = DefaultAzureCredential, i.e. AZURE_CLIENT_ID)",
    ),
    "MODEL_STORAGE_PROMOTE_CLIENT_ID": Setting(
        None,
        "client id of the user-assigned identity promote_model writes pointers and decisions with "
        "(with MODEL_STORAGE__blobServiceUri; unset = DefaultAzureCredential, i.e. AZURE_CLIENT_ID)",
    ),
    "MODELS_CONTAINER": Setting("models", "blob container holding model blobs, pointers and decisions"),
    "STATE_CONTAINER": Setting(
        "predict-state",
        "blob container holding predict's partition state (bars in progress, online models), saved every "
        "STATE_SNAPSHOT_SECONDS and restored when a worker gets the partition; only predict's identity writes it",
    ),
    "STATE_SNAPSHOT_SECONDS": Setting(
        "5",
        "least time between two saves of a partition's state by predict (0 = after every batch); a worker "
        "that restores an older state replays the ticks hub from it (STATE_REPLAY_BOOTSTRAP_SERVERS)",
    ),
    "STATE_REPLAY_BOOTSTRAP_SERVERS": Setting(
        "",
        "Kafka endpoint predict re-reads the ticks hub from after restoring a state; empty = the Event Hubs "
        "namespace's Kafka endpoint (<namespace>:9093, SASL_SSL with EVENTHUB or the managed identity); "
        "locally the Kafka broker",
    ),
    "MODEL_SIGNING_KEY": Setting(
        None,
        "HMAC-SHA256 key (>= 32 bytes) that signs every model blob and is checked before unpickling; "
        "unset = no model is saved or loaded (in Azure a Key Vault reference)",
        secret=True,
    ),
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
    "INGESTOR_PUBLISHER": _ingestor("eventhubs", "where the ingestor publishes ticks: eventhubs or kafka"),
    "INGESTOR_SUBSCRIPTIONS": _ingestor(
        "binance:BTCUSDT,ETHUSDT;coinbase:BTC-USD;kraken:BTC/USD",
        "live trade streams: ';'-separated source:SYMBOL,SYMBOL groups (one connection per group); "
        "sources binance (spot), binance-usdm (USD-M futures, alias binance-futures), coinbase, kraken",
    ),
    "KAFKA_BOOTSTRAP_SERVERS": _ingestor("localhost:9092", "Kafka bootstrap servers when INGESTOR_PUBLISHER=kafka"),
    "INGESTOR_BUFFER_EVENTS": _ingestor(
        "100000", "bound of the ingestor's publish buffer; ticks beyond it are dropped and counted"
    ),
    "INGESTOR_HEALTH_PORT": _ingestor("8080", "port of the ingestor's HTTP /healthz endpoint"),
    "INGESTOR_STALE_SECONDS": _ingestor(
        "30", "readiness fails when the newest message of a connection is older than this"
    ),
    "INGESTOR_SOURCE_URLS": _ingestor(
        "",
        "comma-separated source=wss://... overrides of the exchanges' websocket endpoints; empty = documented ones",
    ),
    "INGESTOR_HEARTBEAT_SECONDS": _ingestor(
        "30", "a connection that receives no message for this long is treated as stalled and reconnected"
    ),
    "INGESTOR_PING_INTERVAL_SECONDS": _ingestor("20", "interval of the websocket keepalive pings the ingestor sends"),
    "INGESTOR_PING_TIMEOUT_SECONDS": _ingestor("20", "a keepalive ping unanswered for this long drops the connection"),
    "INGESTOR_BACKOFF_INITIAL_SECONDS": _ingestor("0.5", "first reconnect delay; doubles per failed attempt, with jitter"),
    "INGESTOR_BACKOFF_MAX_SECONDS": _ingestor("30", "cap of the reconnect delay"),
    "INGESTOR_BUFFER_WAIT_SECONDS": _ingestor(
        "1", "how long a connection waits for room in a full publish buffer before it drops a tick"
    ),
    "INGESTOR_SHUTDOWN_SECONDS": _ingestor(
        "25", "on SIGTERM, how long the ingestor may take to publish what it has already received"
    ),
    "INGESTOR_STATS_SECONDS": _ingestor("60", "interval of the ingestor's counters log line; 0 = never"),
    # --- local stack only (python -m local_stack, make run); never set in Azure ---------------
    "REPLAY_SPEED": _local("60", "replay speed factor of the local stack: 1 = recorded pace, 0 = as fast as possible"),
    "RETRAIN_EVERY_S": _local(
        "15", "seconds between two local runs of the retrain timer (in Azure: RETRAIN_SCHEDULE)"
    ),
    "DASHBOARD_PORT": _local("7071", "port of the local dashboard, HTTP API and SignalR hub; 0 = any free port"),
    "EXIT_WHEN_DONE": _local(
        "0", "1 = the local stack exits after the replay instead of serving the dashboard until Ctrl-C"
    ),
}


def settings_for(workload: str) -> dict[str, Setting]:
    """The settings read by ``workload`` (:data:`FUNCTIONS`, :data:`INGESTOR` or :data:`LOCAL`), by name."""
    return {name: s for name, s in SETTINGS.items() if workload in s.used_by}


class SettingsError(ValueError):
    """A setting is missing or has a value that cannot be used; ``str()`` names it and the expected form."""


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


class SettingsReader:
    """Typed reads of the settings in :data:`SETTINGS` from one environment.

    The one parser of tickcast's settings: :class:`Settings`, :class:`LocalSettings`
    and ``ingestor.config.IngestorConfig`` read through it. An unset or empty
    variable reads as its default.

    Parameters
    ----------
    environ : mapping of str to str, optional
        The environment; default ``os.environ`` (read when a value is asked for).

    Raises
    ------
    KeyError
        A name that is not in :data:`SETTINGS` (a programming error, not a setting error).
    """

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self.environ = os.environ if environ is None else environ

    def text(self, name: str) -> str | None:
        """The value of ``name``, or its default (``None`` for a required setting) when unset or empty."""
        default = SETTINGS[name].default
        value = self.environ.get(name)
        return default if value in (None, "") else value

    def number(self, name: str, *, positive: bool = False) -> float:
        """A finite number ``>= 0`` (``> 0`` with ``positive``).

        Raises
        ------
        SettingsError
            The value does not parse, is not finite, or is out of range.
        """
        raw = self.text(name)
        try:
            value = float(raw)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise SettingsError(f"{name}={raw!r} is not a number") from None
        if not 0 <= value < math.inf or (positive and value == 0):
            raise SettingsError(f"{name}={raw!r} must be a finite number {'>' if positive else '>='} 0")
        return value

    def integer(self, name: str, *, positive: bool = False) -> int:
        """A whole number ``>= 0`` (``> 0`` with ``positive``); ``"100"`` and ``"1e3"`` are fine.

        Raises
        ------
        SettingsError
            The value does not parse, is not whole, or is out of range.
        """
        value = self.number(name, positive=positive)
        if value != int(value):
            raise SettingsError(f"{name}={self.text(name)!r} must be a whole number {'>' if positive else '>='} 0")
        return int(value)

    def port(self, name: str) -> int:
        """A TCP port, 0-65535 (0 = any free port).

        Raises
        ------
        SettingsError
            Not a whole number in that range.
        """
        value = self.integer(name)
        if value > 65535:
            raise SettingsError(f"{name}={self.text(name)!r} is not a TCP port (0-65535)")
        return value

    def flag(self, name: str) -> bool:
        """A yes/no setting: ``1``/``true``/``yes``/``on`` or ``0``/``false``/``no``/``off`` (any case).

        Raises
        ------
        SettingsError
            Any other value.
        """
        raw = self.text(name) or ""
        if raw.strip().lower() in _TRUE:
            return True
        if raw.strip().lower() in _FALSE:
            return False
        raise SettingsError(f"{name}={raw!r} must be 1 or 0 (or true/false, yes/no, on/off)")

    def choice(self, name: str, choices: tuple[str, ...]) -> str:
        """One of ``choices`` (compared in lower case, surrounding blanks ignored).

        Raises
        ------
        SettingsError
            Any other value.
        """
        value = (self.text(name) or "").strip().lower()
        if value not in choices:
            raise SettingsError(f"{name}={value!r} must be one of {choices}")
        return value


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
    broadcast_consumer_group: str
    model_storage_connection: str | None
    model_storage_url: str | None
    model_storage_retrain_client_id: str | None
    model_storage_promote_client_id: str | None
    models_container: str
    state_container: str
    state_snapshot_seconds: float
    state_replay_bootstrap_servers: str
    eventhub_connection: str | None
    eventhub_namespace: str | None
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
            A numeric setting that does not parse, is not finite or is negative, an
            interval level outside (0, 1), or a malformed ``SYMBOLS``.
        """
        read = SettingsReader(environ)
        level = read.number("PREDICTION_INTERVAL_LEVEL")
        if not 0 < level < 1:
            raise SettingsError(f"PREDICTION_INTERVAL_LEVEL={level} must lie in (0, 1)")
        return cls(
            ticks_hub=read.text("TICKS_HUB_NAME") or "",
            predictions_hub=read.text("PREDICTIONS_HUB_NAME") or "",
            deadletter_hub=read.text("DEADLETTER_HUB_NAME") or "",
            predict_consumer_group=read.text("PREDICT_CONSUMER_GROUP") or "",
            archive_consumer_group=read.text("ARCHIVE_CONSUMER_GROUP") or "",
            broadcast_consumer_group=read.text("BROADCAST_CONSUMER_GROUP") or "",
            model_storage_connection=read.text("MODEL_STORAGE"),
            model_storage_url=read.text("MODEL_STORAGE__blobServiceUri"),
            model_storage_retrain_client_id=read.text("MODEL_STORAGE_RETRAIN_CLIENT_ID"),
            model_storage_promote_client_id=read.text("MODEL_STORAGE_PROMOTE_CLIENT_ID"),
            models_container=read.text("MODELS_CONTAINER") or "",
            state_container=read.text("STATE_CONTAINER") or "",
            state_snapshot_seconds=read.number("STATE_SNAPSHOT_SECONDS"),
            state_replay_bootstrap_servers=read.text("STATE_REPLAY_BOOTSTRAP_SERVERS") or "",
            eventhub_connection=read.text("EVENTHUB"),
            eventhub_namespace=read.text("EVENTHUB__fullyQualifiedNamespace"),
            model_key=read.text("MODEL_KEY") or "",
            model_poll_seconds=read.number("MODEL_POLL_SECONDS"),
            model_checkpoint_seconds=read.number("MODEL_CHECKPOINT_SECONDS"),
            forecast_model=read.text("FORECAST_MODEL") or "",
            interval_level=level,
            state_warmup_bars=read.integer("STATE_WARMUP_BARS"),
            retrain_schedule=read.text("RETRAIN_SCHEDULE") or "",
            retrain_lookback_days=read.number("RETRAIN_LOOKBACK_DAYS"),
            retrain_holdout_minutes=read.integer("RETRAIN_HOLDOUT_MINUTES"),
            retrain_min_bars=read.integer("RETRAIN_MIN_BARS"),
            mysql_url=read.text("MYSQL_URL") or "",
            history_sqlite_path=read.text("HISTORY_SQLITE_PATH") or "",
            signalr_hub=read.text("SIGNALR_HUB_NAME") or "",
            symbols=parse_symbols(read.text("SYMBOLS") or ""),
            price_update_ms=read.integer("PRICE_UPDATE_MS"),
        )


@dataclass(frozen=True)
class LocalSettings:
    """Typed view of the local stack's own settings (:data:`LOCAL`); build it with :meth:`from_env`.

    Attributes
    ----------
    replay_speed : float
        Replay speed factor (1 = recorded pace, 0 = as fast as possible).
    retrain_every_s : float
        Seconds between two local runs of the retrain timer, > 0.
    dashboard_port : int
        Port of the dashboard, HTTP API and SignalR hub (0 = any free port).
    exit_when_done : bool
        Exit after the replay instead of serving the dashboard until Ctrl-C.

    Examples
    --------
    >>> LocalSettings.from_env({"DASHBOARD_PORT": "0"})
    LocalSettings(replay_speed=60.0, retrain_every_s=15.0, dashboard_port=0, exit_when_done=False)
    """

    replay_speed: float
    retrain_every_s: float
    dashboard_port: int
    exit_when_done: bool

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> LocalSettings:
        """Read the local stack's settings from ``environ`` (default ``os.environ``), applying defaults.

        Raises
        ------
        SettingsError
            A speed or interval that is not a finite number (the interval not > 0), a
            port outside 0-65535, or a flag that is not 1/0.
        """
        read = SettingsReader(environ)
        return cls(
            replay_speed=read.number("REPLAY_SPEED"),
            retrain_every_s=read.number("RETRAIN_EVERY_S", positive=True),
            dashboard_port=read.port("DASHBOARD_PORT"),
            exit_when_done=read.flag("EXIT_WHEN_DONE"),
        )
