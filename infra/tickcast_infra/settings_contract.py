"""The settings contract between ``infra/`` and the code: how every app setting is provided in Azure.

``shared/settings.py`` lists every setting the code reads, with the workloads that read it
(``settings_for(FUNCTIONS)``, ``settings_for(INGESTOR)``). This module says, for each of them and
each workload, what the deployment does with it — one :class:`Rule` per name:

- ``VALUE``: set to a value wired from the declared resources or the stack config;
- ``SECRET_REFERENCE``: set, but only as a reference to a Key Vault secret (App Service
  ``@Microsoft.KeyVault(SecretUri=...)``; Container Apps ``secretRef`` to a Key Vault-backed
  secret), never as plain text;
- ``DEFAULT``: deliberately left unset, the code's default is right in Azure;
- ``REPLACED``: a secret connection string left unset because its identity-based form
  (``<prefix>__fullyQualifiedNamespace``, ``__blobServiceUri``, ``__serviceUri``) is set instead;
- ``UNUSED``: irrelevant in this deployment (e.g. the SQLite path when ``MYSQL_URL`` is set).

``tests/unit/test_infra.py`` checks that the names here equal ``settings_for(...)`` exactly, so a
setting added to ``shared/settings.py`` fails the infra tests until this table handles it; and
that the deployed app settings / environment variables match the rules.

Settings read by the local stack alone (``used_by == (LOCAL,)``: replay speed, dashboard port, ...)
have no place here: :data:`CONTRACT` has a table only for the two Azure workloads, and
:func:`check_azure_only` refuses a local-only name in either (``tests/unit/test_settings.py``).

Identity-based connections follow "Configure an identity-based connection" of the Functions
developer guide (https://learn.microsoft.com/azure/azure-functions/functions-reference#configure-an-identity-based-connection):
a connection ``<prefix>`` becomes the settings ``<prefix>__<serviceUri-property>``, plus
``<prefix>__credential=managedidentity`` and ``<prefix>__clientId=<client id>`` to select the
user-assigned identity. The blob trigger additionally needs ``<prefix>__queueServiceUri``
(it keeps its poison messages in queues of that account).

Which identity each connection and SDK client uses is the scheme of :mod:`identity`: the host
connections (``AzureWebJobsStorage``, ``EVENTHUB``, ``AzureSignalRConnectionString``) name the
``host`` identity, ``MODEL_STORAGE`` (promote_model's blob trigger) the ``promote`` identity;
``AZURE_CLIENT_ID`` (what ``DefaultAzureCredential`` picks, i.e. ``predict``'s registry client)
names ``predict``, and ``MODEL_STORAGE_RETRAIN_CLIENT_ID`` / ``MODEL_STORAGE_PROMOTE_CLIENT_ID``
the writers' identities ``shared/serving/wiring.py`` selects for retrain and promotion.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import pulumi

from .config import (
    ARCHIVE_CONSUMER_GROUP,
    BROADCAST_CONSUMER_GROUP,
    DEADLETTER_HUB,
    INGESTOR_HEALTH_PORT,
    INGESTOR_PUBLISHER,
    MODELS_CONTAINER,
    MYSQL_URL_SECRET,
    PREDICT_CONSUMER_GROUP,
    PREDICTIONS_HUB,
    SIGNALR_HUB,
    TICKS_HUB,
)

FUNCTIONS = "functions"
INGESTOR = "ingestor"
LOCAL = "local_stack"
"""The local stack (``make run``): a reader of settings, but never a deployed workload."""


class Handling(enum.Enum):
    VALUE = "value"
    SECRET_REFERENCE = "secret reference"
    DEFAULT = "default accepted"
    REPLACED = "replaced by identity-based form"
    UNUSED = "not used in Azure"


@dataclass(frozen=True)
class Wiring:
    """The values app settings are wired from (Outputs of the declared resources, and config).

    ``client_id`` is the workload's default identity (``AZURE_CLIENT_ID``: the ingestor's, or the
    Function App's ``predict``); ``host_client_id``, ``retrain_client_id`` and
    ``promote_client_id`` are the Function App's other identities (:mod:`identity`). ``blob_endpoint``,
    ``queue_endpoint`` and ``table_endpoint`` are the host account's, ``models_blob_endpoint`` and
    ``models_queue_endpoint`` the models account's.
    """

    client_id: pulumi.Input[str]
    eventhub_namespace: pulumi.Input[str]
    symbols: str
    ingestor_subscriptions: str
    retrain_schedule: str
    host_client_id: pulumi.Input[str] = ""
    retrain_client_id: pulumi.Input[str] = ""
    promote_client_id: pulumi.Input[str] = ""
    blob_endpoint: pulumi.Input[str] = ""
    queue_endpoint: pulumi.Input[str] = ""
    table_endpoint: pulumi.Input[str] = ""
    models_blob_endpoint: pulumi.Input[str] = ""
    models_queue_endpoint: pulumi.Input[str] = ""
    signalr_uri: pulumi.Input[str] = ""
    mysql_url: pulumi.Input[str] = ""
    app_insights_connection_string: pulumi.Input[str] = ""


Value = Callable[[Wiring], pulumi.Input[str]]


@dataclass(frozen=True)
class Rule:
    """How one setting is provided to one workload.

    ``value`` computes the setting (``VALUE``) or the secret's content (``SECRET_REFERENCE``);
    ``secret_name`` names the Key Vault secret; ``replaced_by`` names the identity-based setting
    that replaces a connection string; ``why`` is the reason, for people and the docs.
    """

    handling: Handling
    why: str
    value: Value | None = None
    secret_name: str | None = None
    replaced_by: str | None = None

    def __post_init__(self) -> None:
        needs_value = self.handling in (Handling.VALUE, Handling.SECRET_REFERENCE)
        if needs_value != (self.value is not None):
            raise ValueError(f"{self.handling.value} rule must {'' if needs_value else 'not '}have a value")
        if (self.handling is Handling.SECRET_REFERENCE) != (self.secret_name is not None):
            raise ValueError("a secret reference (and only one) names its Key Vault secret")
        if (self.handling is Handling.REPLACED) != (self.replaced_by is not None):
            raise ValueError("a replaced setting (and only one) names its replacement")


def _value(why: str, value: Value) -> Rule:
    return Rule(Handling.VALUE, why, value=value)


def _fixed(text: str, why: str) -> Rule:
    return Rule(Handling.VALUE, why, value=lambda _w: text)


def _default(why: str) -> Rule:
    return Rule(Handling.DEFAULT, why)


_EVENTHUB_REPLACED = Rule(
    Handling.REPLACED, "identity-based connection instead of a connection string",
    replaced_by="EVENTHUB__fullyQualifiedNamespace",
)

#: How each setting of ``settings_for(FUNCTIONS)`` reaches the Function App.
FUNCTION_APP: Mapping[str, Rule] = {
    "TICKS_HUB_NAME": _fixed(TICKS_HUB, "binding expression %TICKS_HUB_NAME%: the ticks hub"),
    "PREDICTIONS_HUB_NAME": _fixed(PREDICTIONS_HUB, "binding expression: the predictions hub"),
    "DEADLETTER_HUB_NAME": _fixed(DEADLETTER_HUB, "binding expression: the deadletter hub"),
    "PREDICT_CONSUMER_GROUP": _fixed(PREDICT_CONSUMER_GROUP, "binding expression: consumer group on ticks"),
    "ARCHIVE_CONSUMER_GROUP": _fixed(ARCHIVE_CONSUMER_GROUP, "binding expression: consumer group on predictions"),
    "BROADCAST_CONSUMER_GROUP": _fixed(
        BROADCAST_CONSUMER_GROUP, "binding expression: broadcast's consumer group on predictions"
    ),
    "EVENTHUB__fullyQualifiedNamespace": _value(
        "connection EVENTHUB with the host identity", lambda w: w.eventhub_namespace
    ),
    "EVENTHUB": _EVENTHUB_REPLACED,
    "AZURE_CLIENT_ID": _value(
        "DefaultAzureCredential picks the predict identity (reads models, writes checkpoints only)",
        lambda w: w.client_id,
    ),
    "MODEL_STORAGE_RETRAIN_CLIENT_ID": _value(
        "retrain's registry client uses the retrain identity (writes candidates only)",
        lambda w: w.retrain_client_id,
    ),
    "MODEL_STORAGE_PROMOTE_CLIENT_ID": _value(
        "promote_model's registry client uses the promote identity (writes pointers and decisions only)",
        lambda w: w.promote_client_id,
    ),
    "MODEL_STORAGE": Rule(
        Handling.REPLACED, "identity-based connection instead of a connection string",
        replaced_by="MODEL_STORAGE__blobServiceUri",
    ),
    "MODEL_STORAGE__blobServiceUri": _value(
        "model registry and the promote_model blob trigger (connection MODEL_STORAGE): the models account",
        lambda w: w.models_blob_endpoint,
    ),
    "MODELS_CONTAINER": _fixed(MODELS_CONTAINER, "the container infra creates"),
    "MODEL_KEY": _default("registry key 'default' is what retrain trains and predict falls back to"),
    "MODEL_POLL_SECONDS": _default("5 s champion polling is cheap (one conditional GET per symbol)"),
    "MODEL_CHECKPOINT_SECONDS": _default("5-minute checkpoints"),
    "FORECAST_MODEL": _default("the default model family"),
    "PREDICTION_INTERVAL_LEVEL": _default("90 % intervals, as documented"),
    "STATE_WARMUP_BARS": _default("4 hours of bars to warm features after a restart"),
    "RETRAIN_SCHEDULE": _value("binding expression %RETRAIN_SCHEDULE% (stack config)", lambda w: w.retrain_schedule),
    "RETRAIN_LOOKBACK_DAYS": _default("7 days of history per challenger"),
    "RETRAIN_HOLDOUT_MINUTES": _default("6 hours held out"),
    "RETRAIN_MIN_BARS": _default("1000 bars at least"),
    "MYSQL_URL": Rule(
        Handling.SECRET_REFERENCE, "contains the MySQL password: Key Vault reference",
        value=lambda w: w.mysql_url, secret_name=MYSQL_URL_SECRET,
    ),
    "HISTORY_SQLITE_PATH": Rule(Handling.UNUSED, "MYSQL_URL is set, so the SQLite fallback is never opened"),
    "AzureSignalRConnectionString": Rule(
        Handling.REPLACED, "identity-based connection instead of a connection string",
        replaced_by="AzureSignalRConnectionString__serviceUri",
    ),
    "SIGNALR_HUB_NAME": _fixed(SIGNALR_HUB, "binding expression %SIGNALR_HUB_NAME%"),
    "SYMBOLS": _value("stack config symbols", lambda w: w.symbols),
    "PRICE_UPDATE_MS": _default("one price update per symbol per second"),
}

#: How each setting of ``settings_for(INGESTOR)`` reaches the ingestor Container App.
INGESTOR_APP: Mapping[str, Rule] = {
    "TICKS_HUB_NAME": _fixed(TICKS_HUB, "the hub ticks are published to"),
    "DEADLETTER_HUB_NAME": _fixed(DEADLETTER_HUB, "the hub malformed exchange messages are set aside in"),
    "EVENTHUB__fullyQualifiedNamespace": _value(
        "Event Hubs publisher with DefaultAzureCredential", lambda w: w.eventhub_namespace
    ),
    "EVENTHUB": _EVENTHUB_REPLACED,
    "AZURE_CLIENT_ID": _value("DefaultAzureCredential picks the ingestor identity", lambda w: w.client_id),
    "INGESTOR_PUBLISHER": _fixed(INGESTOR_PUBLISHER, "publish to Event Hubs, not Kafka"),
    "INGESTOR_SUBSCRIPTIONS": _value("stack config ingestorSubscriptions", lambda w: w.ingestor_subscriptions),
    "KAFKA_BOOTSTRAP_SERVERS": Rule(Handling.UNUSED, "INGESTOR_PUBLISHER=eventhubs"),
    "INGESTOR_BUFFER_EVENTS": _default("100,000 buffered ticks"),
    "INGESTOR_HEALTH_PORT": _fixed(str(INGESTOR_HEALTH_PORT), "the port the health probes call"),
    "INGESTOR_STALE_SECONDS": _default("30 s without messages marks a connection stale"),
    "INGESTOR_SOURCE_URLS": _default("the exchanges' documented websocket endpoints"),
    "INGESTOR_BACKOFF_INITIAL_SECONDS": _default("0.5 s first reconnect delay"),
    "INGESTOR_BACKOFF_MAX_SECONDS": _default("30 s reconnect delay cap"),
    "INGESTOR_BUFFER_WAIT_SECONDS": _default("1 s wait for buffer room"),
    "INGESTOR_HEARTBEAT_SECONDS": _default("30 s of silence means a stalled connection"),
    "INGESTOR_PING_INTERVAL_SECONDS": _default("20 s websocket keepalive"),
    "INGESTOR_PING_TIMEOUT_SECONDS": _default("20 s keepalive timeout"),
    "INGESTOR_SHUTDOWN_SECONDS": _default("25 s drain on SIGTERM, within Container Apps' 30 s grace period"),
    "INGESTOR_STATS_SECONDS": _default("a counters log line a minute"),
}

CONTRACT: Mapping[str, Mapping[str, Rule]] = {FUNCTIONS: FUNCTION_APP, INGESTOR: INGESTOR_APP}


def check_azure_only(local_only: set[str]) -> None:
    """Raise ``ValueError`` if a contract table (or :data:`CONTRACT` itself) provides a setting that
    only the local stack reads; ``local_only`` are those names (``shared.settings`` is not imported
    here: the Pulumi program runs without the application's packages)."""
    if LOCAL in CONTRACT:
        raise ValueError("the local stack is not a deployed workload")
    for workload, rules in CONTRACT.items():
        wrong = sorted(local_only & set(rules))
        if wrong:
            raise ValueError(f"{workload}: local-only settings must not be set in Azure: {wrong}")

@dataclass(frozen=True)
class Connection:
    """An identity-based connection: its service-URI properties (beyond the one in the contract
    above) and the client id of the user-assigned identity it authenticates as."""

    properties: Mapping[str, Value]
    client_id: Value


def _host(w: Wiring) -> pulumi.Input[str]:
    return w.host_client_id


#: Identity-based connection groups of the Function App: prefix -> :class:`Connection`. Each gets
#: ``__credential=managedidentity`` and ``__clientId``.
FUNCTION_IDENTITY_CONNECTIONS: Mapping[str, Connection] = {
    "EVENTHUB": Connection({}, _host),
    # promote_model's blob trigger: poison queue in the models account.
    "MODEL_STORAGE": Connection({"queueServiceUri": lambda w: w.models_queue_endpoint}, lambda w: w.promote_client_id),
    "AzureSignalRConnectionString": Connection({"serviceUri": lambda w: w.signalr_uri}, _host),
    # The host's own storage ("Connecting to host storage with an identity"): the host account.
    "AzureWebJobsStorage": Connection(
        {
            "blobServiceUri": lambda w: w.blob_endpoint,
            "queueServiceUri": lambda w: w.queue_endpoint,
            "tableServiceUri": lambda w: w.table_endpoint,
        },
        _host,
    ),
}

#: Host-level settings of the Function App that are not the code's (Application Insights with
#: Entra authentication: https://learn.microsoft.com/azure/azure-monitor/app/azure-ad-authentication).
FUNCTION_HOST_SETTINGS: Mapping[str, Value] = {
    "APPLICATIONINSIGHTS_CONNECTION_STRING": lambda w: w.app_insights_connection_string,
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": lambda w: pulumi.Output.concat(
        "ClientId=", w.host_client_id, ";Authorization=AAD"
    ),
}


def secrets_needed(workload: str, wiring: Wiring) -> dict[str, pulumi.Input[str]]:
    """Key Vault secret name -> content, for the ``SECRET_REFERENCE`` settings of ``workload``."""
    return {
        rule.secret_name: rule.value(wiring)  # type: ignore[misc]
        for rule in CONTRACT[workload].values()
        if rule.handling is Handling.SECRET_REFERENCE
    }


def plain_settings(workload: str, wiring: Wiring) -> dict[str, pulumi.Input[str]]:
    """The ``VALUE`` settings of ``workload``, by name, in contract order."""
    return {
        name: rule.value(wiring)  # type: ignore[misc]
        for name, rule in CONTRACT[workload].items()
        if rule.handling is Handling.VALUE
    }


def secret_settings(workload: str) -> dict[str, str]:
    """Setting name -> Key Vault secret name, for the ``SECRET_REFERENCE`` settings of ``workload``."""
    return {
        name: rule.secret_name  # type: ignore[misc]
        for name, rule in CONTRACT[workload].items()
        if rule.handling is Handling.SECRET_REFERENCE
    }


def function_app_settings(
    wiring: Wiring, secret_reference: Callable[[str], pulumi.Input[str]]
) -> dict[str, pulumi.Input[str]]:
    """Every app setting of the Function App: the contract's values, its secret references
    (``secret_reference(secret name)`` gives the ``@Microsoft.KeyVault(...)`` value), the
    identity-based connection groups and the host settings."""
    settings = plain_settings(FUNCTIONS, wiring)
    for name, secret in secret_settings(FUNCTIONS).items():
        settings[name] = secret_reference(secret)
    for prefix, connection in FUNCTION_IDENTITY_CONNECTIONS.items():
        for prop, value in connection.properties.items():
            settings[f"{prefix}__{prop}"] = value(wiring)
        settings[f"{prefix}__credential"] = "managedidentity"
        settings[f"{prefix}__clientId"] = connection.client_id(wiring)
    for name, value in FUNCTION_HOST_SETTINGS.items():
        settings[name] = value(wiring)
    return settings
