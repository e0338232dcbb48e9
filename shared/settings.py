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
from dataclasses import dataclass
from typing import Mapping

#: name -> (default, meaning). A default of ``None`` means "required where used".
SETTINGS: dict[str, tuple[str | None, str]] = {
    "TICKS_HUB_NAME": ("ticks", "Event Hub (Kafka topic) carrying tick events, key = symbol"),
    "PREDICTIONS_HUB_NAME": ("predictions", "Event Hub (Kafka topic) carrying bar and prediction events"),
    "DEADLETTER_HUB_NAME": ("deadletter", "Event Hub (Kafka topic) where malformed inputs are set aside"),
    "PREDICT_CONSUMER_GROUP": ("predict", "consumer group of the predict function on the ticks hub"),
    "ARCHIVE_CONSUMER_GROUP": ("archive", "consumer group of the archive function on the predictions hub"),
    "EVENTHUB__fullyQualifiedNamespace": (
        None,
        "Event Hubs namespace host for identity-based trigger/output bindings "
        "(or EVENTHUB as a connection string)",
    ),
    "MODEL_STORAGE": (
        None,
        "Blob Storage connection string for the model registry (locally Azurite's); "
        "in Azure use MODEL_STORAGE__blobServiceUri with a managed identity",
    ),
    "MODEL_STORAGE__blobServiceUri": (None, "Blob service URL used with DefaultAzureCredential"),
    "MODELS_CONTAINER": ("models", "blob container holding model blobs and their metadata"),
    "MODEL_KEY": ("default", "registry key of the model used for symbols with no model of their own"),
    "MODEL_CACHE_SECONDS": ("10", "how long predict trusts its cached model before asking the registry again"),
    "PREDICTION_INTERVAL_LEVEL": ("0.9", "coverage of the stated prediction interval, in (0, 1)"),
    "MYSQL_URL": ("", "SQLAlchemy URL of the MySQL history store; empty = embedded SQLite"),
    "HISTORY_SQLITE_PATH": ("tickcast-history.sqlite3", "SQLite file used when MYSQL_URL is empty"),
}


class SettingsError(ValueError):
    """A setting is missing or has a value that cannot be used; ``str()`` names it."""


@dataclass(frozen=True)
class Settings:
    """Typed view of the settings in :data:`SETTINGS`; build it with :meth:`from_env`."""

    ticks_hub: str
    predictions_hub: str
    deadletter_hub: str
    predict_consumer_group: str
    archive_consumer_group: str
    model_storage_connection: str | None
    model_storage_url: str | None
    models_container: str
    model_key: str
    model_cache_seconds: float
    interval_level: float
    mysql_url: str
    history_sqlite_path: str

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        """Read every setting from ``environ`` (default ``os.environ``), applying defaults.

        Raises
        ------
        SettingsError
            A numeric setting that does not parse, or an interval level outside (0, 1).
        """
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            value = env.get(name)
            return SETTINGS[name][0] if value in (None, "") else value

        def number(name: str) -> float:
            try:
                return float(get(name))  # type: ignore[arg-type]
            except ValueError:
                raise SettingsError(f"{name}={env.get(name)!r} is not a number") from None

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
            model_cache_seconds=number("MODEL_CACHE_SECONDS"),
            interval_level=level,
            mysql_url=get("MYSQL_URL") or "",
            history_sqlite_path=get("HISTORY_SQLITE_PATH"),  # type: ignore[arg-type]
        )
