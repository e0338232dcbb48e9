"""The tickcast stack: every Azure resource of the design (docs/architecture.md), in pulumi-azure-native v3.

:func:`build` declares, in one resource group:

- monitoring: Log Analytics workspace, Application Insights (:mod:`.monitoring`);
- storage: the host account with ``app-package``, the models account with ``models`` (:mod:`.storage`);
- Event Hubs: Standard namespace, hubs ``ticks``/``predictions``/``deadletter``, consumer groups
  ``predict``/``archive``/``broadcast``/``external`` (:mod:`.messaging`);
- MySQL flexible server, database, TLS required, firewall rule for Azure services (:mod:`.database`);
- Key Vault holding ``MYSQL_URL`` and the generated ``MODEL_SIGNING_KEY`` (:mod:`.vault`);
- SignalR Service, Serverless, CORS for the dashboard (:mod:`.signalr`);
- user-assigned identities per workload (``host``, ``predict``, ``retrain``, ``promote`` for the
  Function App, ``ingestor``) and their role assignments (:mod:`.identity`);
- the Flex Consumption Function App with its app settings (:mod:`.functionapp`,
  :mod:`.settings_contract`), and the Event Grid topic/subscription of ``promote_model`` (:mod:`.events`);
- Container Apps environment, container registry and the ingestor app (:mod:`.ingestor`).

Names: hub, consumer-group and container names are fixed, because the code refers to them (their
defaults in ``shared.settings.SETTINGS``; the tests check both agree). Other resources are
auto-named by Pulumi from ``<namePrefix>...`` plus a random suffix, except the Function App, whose
name is derived from the resource group id (see :mod:`.functionapp`).

The config is read once, into :class:`StackConfig`, and :func:`build` takes it as an argument so
tests can build the stack under ``pulumi.runtime.set_mocks`` with any config.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
from pulumi_azure_native import app as containerapps
from pulumi_azure_native import authorization, eventhub, resources, storage

from . import identity as roles
from .config import (
    ARCHIVE_CONSUMER_GROUP,
    DEADLETTER_HUB,
    MAX_PARTITIONS,
    MODELS_CONTAINER,
    PREDICT_CONSUMER_GROUP,
    PREDICTIONS_HUB,
    TICKS_HUB,
    StackConfig,
)
from .database import Database, database_url, declare_database
from .events import Events, declare_events
from .functionapp import FunctionApp, declare_function_app, default_host_name, function_app_name
from .identity import Workload, path_condition, workload_identity
from .ingestor import Ingestor, declare_environment, declare_ingestor_app, declare_registry
from .messaging import Messaging, declare_messaging
from .monitoring import Monitoring, declare_monitoring
from .settings_contract import (
    FUNCTIONS,
    INGESTOR,
    Wiring,
    function_app_settings,
    plain_settings,
    secret_settings,
    secrets_needed,
)
from .signalr import SignalR, declare_signalr
from .storage import Storage, declare_storage
from .vault import GeneratedKey, Vault, declare_vault

#: The Function App's identities (:mod:`.identity`); ``host`` first (deployment, Key Vault references).
HOST, PREDICT, RETRAIN, PROMOTE = "host", "predict", "retrain", "promote"
FUNCTION_IDENTITIES = (HOST, PREDICT, RETRAIN, PROMOTE)
#: Registry paths each model identity may write (keys of ``identity.REGISTRY_PATHS``).
MODEL_WRITES = {PREDICT: ("checkpoints",), RETRAIN: ("candidates",), PROMOTE: ("pointer", "decisions")}

__all__ = [
    "ARCHIVE_CONSUMER_GROUP",
    "DEADLETTER_HUB",
    "MAX_PARTITIONS",
    "MODELS_CONTAINER",
    "PREDICTIONS_HUB",
    "PREDICT_CONSUMER_GROUP",
    "TICKS_HUB",
    "StackConfig",
    "StackOutputs",
    "build",
]


@dataclass(frozen=True)
class StackOutputs:
    """The resources :func:`build` declared, and the values the stack exports."""

    resource_group: resources.ResourceGroup
    monitoring: Monitoring
    storage: Storage
    messaging: Messaging
    database: Database
    vault: Vault
    signalr: SignalR
    workloads: Mapping[str, Workload]
    function_app: FunctionApp
    events: Events
    ingestor: Ingestor

    # Shortcuts kept from the first cut of the stack.
    @property
    def storage_account(self) -> storage.StorageAccount:
        """The host account (AzureWebJobsStorage, deployment packages)."""
        return self.storage.account

    @property
    def models_container(self) -> storage.BlobContainer:
        return self.storage.models_container

    @property
    def eventhub_namespace(self) -> eventhub.Namespace:
        return self.messaging.namespace

    @property
    def hubs(self) -> Mapping[str, eventhub.EventHub]:
        return self.messaging.hubs

    @property
    def consumer_groups(self) -> Mapping[str, eventhub.ConsumerGroup]:
        return self.messaging.consumer_groups

    @property
    def eventhub_fully_qualified_namespace(self) -> pulumi.Output[str]:
        return self.messaging.fully_qualified_namespace

    def exports(self) -> dict[str, pulumi.Output[str]]:
        """Stack outputs by name, as ``__main__.py`` exports them."""
        outputs = {
            "resource_group_name": self.resource_group.name,
            "storage_account_name": self.storage.account.name,
            "models_storage_account_name": self.storage.models_account.name,
            "eventhub_namespace_name": self.messaging.namespace.name,
            "eventhub_fully_qualified_namespace": self.messaging.fully_qualified_namespace,
            "function_app_name": self.function_app.app.name,
            "function_app_url": self.function_app.url,
            "negotiate_url": self.function_app.negotiate_url,
            "dashboard_url": self.function_app.dashboard_url,
            "signalr_service_uri": self.signalr.service_uri,
            "mysql_host": self.database.host,
            "mysql_database": self.database.database.name,
            "key_vault_name": self.vault.vault.name,
            "container_registry_login_server": self.ingestor.registry.login_server,
        }
        if self.ingestor.app is not None:
            outputs["ingestor_app_name"] = self.ingestor.app.name
        return outputs


def _grant_function_roles(
    ids: Mapping[str, Workload],
    subscription_id: pulumi.Input[str],
    messaging: Messaging,
    store: Storage,
    signalr: SignalR,
    vault: Vault,
    monitoring: Monitoring,
) -> None:
    """The Function App identities' rights (:mod:`.identity` says why each and what it isolates).

    ``host``: receive on the hubs the functions are triggered by, send on those they write, own
    blobs and use queues and tables of the host account (host storage, deployment packages),
    SignalR Service Owner (negotiate, broadcast), read its Key Vault secrets, publish telemetry.
    ``predict``/``retrain``/``promote``: Storage Blob Data Contributor on the ``models`` container,
    writes limited to their registry paths; ``predict`` also owns its state container and receives
    on the ticks hub (the replay after a restore, :mod:`shared.serving.hubreplay`); ``promote`` also uses the models account's queues
    (promote_model's blob trigger keeps its poison queue there).
    """
    host = ids[HOST]
    hubs = messaging.hubs
    for hub in (TICKS_HUB, PREDICTIONS_HUB):
        host.grant(f"eh-receive-{hub}", roles.EVENT_HUBS_DATA_RECEIVER, hubs[hub].id, subscription_id,
                   f"Event Hub trigger on {hub}")
    for hub in (PREDICTIONS_HUB, DEADLETTER_HUB):
        host.grant(f"eh-send-{hub}", roles.EVENT_HUBS_DATA_SENDER, hubs[hub].id, subscription_id,
                   f"Event Hub output to {hub}")
    account = store.account.id
    host.grant("blob-owner", roles.STORAGE_BLOB_DATA_OWNER, account, subscription_id,
               "host storage (AzureWebJobsStorage) and deployment packages, host account only")
    host.grant("queue-contributor", roles.STORAGE_QUEUE_DATA_CONTRIBUTOR, account, subscription_id,
               "host queues (timer and blob trigger bookkeeping)")
    host.grant("table-contributor", roles.STORAGE_TABLE_DATA_CONTRIBUTOR, account, subscription_id,
               "host diagnostic events")
    host.grant("signalr-owner", roles.SIGNALR_SERVICE_OWNER, signalr.service.id, subscription_id,
               "SignalR bindings of negotiate and broadcast, Serverless mode")
    for name in secret_settings(FUNCTIONS).values():
        host.grant(f"kv-{name}", roles.KEY_VAULT_SECRETS_USER, vault.secrets[name].id, subscription_id,
                   f"Key Vault reference to {name}")
    host.grant("appi-publisher", roles.MONITORING_METRICS_PUBLISHER, monitoring.app_insights.id,
               subscription_id, "Entra-authenticated telemetry")
    for key, kinds in MODEL_WRITES.items():
        ids[key].grant("models-blob", roles.STORAGE_BLOB_DATA_CONTRIBUTOR, store.models_container_id,
                       subscription_id, f"read models, write only {'/'.join(kinds)}",
                       condition=path_condition(kinds))
    ids[PREDICT].grant("state-blob", roles.STORAGE_BLOB_DATA_CONTRIBUTOR, store.state_container.id,
                       subscription_id, "predict's partition state: read and write, no other identity")
    ids[PREDICT].grant("eh-replay-ticks", roles.EVENT_HUBS_DATA_RECEIVER, messaging.hubs[TICKS_HUB].id,
                       subscription_id, "re-read the ticks since a restored partition state (Kafka endpoint)")
    ids[PROMOTE].grant("models-queue", roles.STORAGE_QUEUE_DATA_CONTRIBUTOR, store.models_account.id,
                       subscription_id, "promote_model blob trigger's poison queue")


def build(config: StackConfig) -> StackOutputs:
    """Declare the stack's resources for ``config`` and return them."""
    prefix = config.name_prefix
    group = resources.ResourceGroup(f"{prefix}-rg", location=config.location)
    client = authorization.get_client_config_output()

    monitoring = declare_monitoring(config, group)
    store = declare_storage(config, group)
    messaging = declare_messaging(config, group)
    database = declare_database(config, group)
    ids = {key: workload_identity(prefix, key, group) for key in FUNCTION_IDENTITIES}
    ingestor_identity = workload_identity(prefix, INGESTOR, group)

    app_name = function_app_name(prefix, group)
    host_name = default_host_name(app_name)
    signalr = declare_signalr(config, group, allowed_origins=[pulumi.Output.concat("https://", host_name)])

    function_wiring = Wiring(
        client_id=ids[PREDICT].client_id,
        eventhub_namespace=messaging.fully_qualified_namespace,
        symbols=config.symbols,
        ingestor_subscriptions=config.ingestor_subscriptions,
        retrain_schedule=config.retrain_schedule,
        host_client_id=ids[HOST].client_id,
        retrain_client_id=ids[RETRAIN].client_id,
        promote_client_id=ids[PROMOTE].client_id,
        blob_endpoint=store.endpoint("blob"),
        queue_endpoint=store.endpoint("queue"),
        table_endpoint=store.endpoint("table"),
        models_blob_endpoint=store.models_endpoint("blob"),
        models_queue_endpoint=store.models_endpoint("queue"),
        signalr_uri=signalr.service_uri,
        mysql_url=database_url(config, database),
        model_signing_key=GeneratedKey(f"{prefix}-model-signing-key").value,
        app_insights_connection_string=monitoring.app_insights.connection_string,
    )
    ingestor_wiring = Wiring(
        client_id=ingestor_identity.client_id,
        eventhub_namespace=messaging.fully_qualified_namespace,
        symbols=config.symbols,
        ingestor_subscriptions=config.ingestor_subscriptions,
        retrain_schedule=config.retrain_schedule,
    )
    vault = declare_vault(
        config, group, client.tenant_id,
        {**secrets_needed(FUNCTIONS, function_wiring), **secrets_needed(INGESTOR, ingestor_wiring)},
    )

    _grant_function_roles(ids, client.subscription_id, messaging, store, signalr, vault, monitoring)
    function_app = declare_function_app(
        config,
        group,
        name=app_name,
        identity_id=ids[HOST].resource_id,
        identity_ids=[w.resource_id for w in ids.values()],
        deployment_container_url=store.deployment_container_url,
        app_settings=function_app_settings(function_wiring, vault.reference),
        depends_on=[a for w in ids.values() for a in w.assignments],
    )
    events = declare_events(config, group, store.models_account.id, function_app.app, function_app.host_name)

    registry = declare_registry(config, group)
    environment = declare_environment(config, group, monitoring.workspace)
    for hub in (TICKS_HUB, DEADLETTER_HUB):
        ingestor_identity.grant(f"eh-send-{hub}", roles.EVENT_HUBS_DATA_SENDER, messaging.hubs[hub].id,
                                client.subscription_id, f"publish to {hub}")
    ingestor_identity.grant("acr-pull", roles.ACR_PULL, registry.id, client.subscription_id, "pull its image")
    for name in secret_settings(INGESTOR).values():
        ingestor_identity.grant(f"kv-{name}", roles.KEY_VAULT_SECRETS_USER, vault.secrets[name].id,
                                client.subscription_id, f"secret reference to {name}")
    ingestor_app: containerapps.ContainerApp | None = None
    if config.ingestor_image:
        ingestor_app = declare_ingestor_app(
            config,
            group,
            environment,
            registry,
            identity_id=ingestor_identity.resource_id,
            env=plain_settings(INGESTOR, ingestor_wiring),
            secret_env={name: vault.secret_uri(secret) for name, secret in secret_settings(INGESTOR).items()},
            depends_on=list(ingestor_identity.assignments),
        )

    return StackOutputs(
        resource_group=group,
        monitoring=monitoring,
        storage=store,
        messaging=messaging,
        database=database,
        vault=vault,
        signalr=signalr,
        workloads={**ids, INGESTOR: ingestor_identity},
        function_app=function_app,
        events=events,
        ingestor=Ingestor(registry=registry, environment=environment, app=ingestor_app),
    )
