"""The tickcast stack: the Azure resources of the design (ARCHITECTURE.md), in pulumi-azure-native v3.

Declared now (minimal first cut):

- a resource group holding everything;
- a storage account (StorageV2, Standard_LRS, TLS 1.2 minimum, HTTPS only, no public blob
  access) with the ``models`` blob container of the model registry;
- an Event Hubs namespace (Standard SKU, so the Kafka endpoint is on) with the hubs
  ``ticks``, ``predictions`` and ``deadletter`` and the consumer groups ``predict`` (on
  ticks) and ``archive`` (on predictions).

NOT YET DECLARED — a later issue adds them here: the Function App (Flex Consumption plan,
its own storage, managed identity and app settings from ``shared.settings.SETTINGS``, with
role assignments "Azure Event Hubs Data Receiver/Sender" and "Storage Blob Data
Contributor"), the ingestor Container App and its environment, Azure Database for MySQL
Flexible Server, Azure SignalR Service (serverless mode), the Event Grid subscription behind
the ``promote_model`` blob trigger, Application Insights. Until then, local (SAS) auth stays
on for the namespace and the storage account.

Names: hub, consumer-group and container names are fixed, because the code refers to them
(their defaults in ``shared.settings.SETTINGS``; ``tests/test_infra.py`` checks both agree).
The resource group, storage account and namespace are auto-named by Pulumi from
``<namePrefix>...`` plus a random suffix, since the last two must be globally unique.

The config is read once, into :class:`StackConfig`, and :func:`build` takes it as an
argument so tests can build the stack under ``pulumi.runtime.set_mocks`` with any config.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar, Mapping

import pulumi
from pulumi_azure_native import eventhub, resources, storage

# Names the application code refers to. They must equal the defaults of TICKS_HUB_NAME,
# PREDICTIONS_HUB_NAME, DEADLETTER_HUB_NAME, PREDICT_CONSUMER_GROUP, ARCHIVE_CONSUMER_GROUP
# and MODELS_CONTAINER in shared/settings.py (checked by tests/test_infra.py). They are not
# imported from there so that the Pulumi program runs from infra/ on its own.
TICKS_HUB = "ticks"
PREDICTIONS_HUB = "predictions"
DEADLETTER_HUB = "deadletter"
PREDICT_CONSUMER_GROUP = "predict"
ARCHIVE_CONSUMER_GROUP = "archive"
MODELS_CONTAINER = "models"

#: Event Hubs Standard tier: 1 to 32 partitions per hub, fixed once the hub exists.
MAX_PARTITIONS = 32

_PREFIX = re.compile(r"[a-z][a-z0-9]{2,10}")


@dataclass(frozen=True)
class StackConfig:
    """The stack's settings; defaults equal those declared in ``infra/Pulumi.yaml``.

    ``name_prefix`` is 3-11 lowercase letters and digits starting with a letter, so that the
    storage account's auto-generated name (prefix + ``st`` + 8 random characters) stays
    within Azure's 3-24 lowercase alphanumerics.

    >>> StackConfig(ticks_partitions=8).ticks_partitions
    8
    >>> StackConfig(ticks_partitions=0)
    Traceback (most recent call last):
    ...
    ValueError: ticksPartitions=0 must be an integer in 1..32
    """

    location: str = "westeurope"
    name_prefix: str = "tickcast"
    ticks_partitions: int = 4
    predictions_partitions: int = 2
    deadletter_partitions: int = 1

    #: dataclass field -> key in the project's Pulumi config namespace
    CONFIG_KEYS: ClassVar[Mapping[str, str]] = {
        "location": "location",
        "name_prefix": "namePrefix",
        "ticks_partitions": "ticksPartitions",
        "predictions_partitions": "predictionsPartitions",
        "deadletter_partitions": "deadletterPartitions",
    }

    def __post_init__(self) -> None:
        if not self.location.strip():
            raise ValueError("location must not be empty")
        if not _PREFIX.fullmatch(self.name_prefix):
            raise ValueError(
                f"namePrefix={self.name_prefix!r} must be 3-11 lowercase letters and digits, "
                "starting with a letter"
            )
        for field, key in self.CONFIG_KEYS.items():
            if field.endswith("_partitions"):
                value = getattr(self, field)
                if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_PARTITIONS:
                    raise ValueError(f"{key}={value!r} must be an integer in 1..{MAX_PARTITIONS}")

    @classmethod
    def from_pulumi_config(cls, config: pulumi.Config | None = None) -> "StackConfig":
        """Read the settings from ``config`` (default: the project's ``pulumi.Config()``).

        Unset keys take the dataclass defaults; a non-integer partition count raises
        ``pulumi.ConfigTypeError``, an out-of-range value ``ValueError``.
        """
        config = pulumi.Config() if config is None else config
        defaults = cls()
        values: dict[str, object] = {}
        for field, key in cls.CONFIG_KEYS.items():
            if field.endswith("_partitions"):
                value = config.get_int(key)
            else:
                value = config.get(key)
            values[field] = getattr(defaults, field) if value is None else value
        return cls(**values)  # type: ignore[arg-type]


@dataclass(frozen=True)
class StackOutputs:
    """The resources :func:`build` declared, and the values the stack exports."""

    resource_group: resources.ResourceGroup
    storage_account: storage.StorageAccount
    models_container: storage.BlobContainer
    eventhub_namespace: eventhub.Namespace
    hubs: Mapping[str, eventhub.EventHub]
    consumer_groups: Mapping[str, eventhub.ConsumerGroup]

    @property
    def eventhub_fully_qualified_namespace(self) -> pulumi.Output[str]:
        """``<namespace>.servicebus.windows.net`` (Azure public cloud): the value of the
        ``EVENTHUB__fullyQualifiedNamespace`` app setting for identity-based bindings."""
        return self.eventhub_namespace.name.apply(lambda name: f"{name}.servicebus.windows.net")

    def exports(self) -> dict[str, pulumi.Output[str]]:
        """Stack outputs by name, as ``__main__.py`` exports them."""
        return {
            "resource_group_name": self.resource_group.name,
            "storage_account_name": self.storage_account.name,
            "eventhub_namespace_name": self.eventhub_namespace.name,
            "eventhub_fully_qualified_namespace": self.eventhub_fully_qualified_namespace,
        }


def build(config: StackConfig) -> StackOutputs:
    """Declare the stack's resources for ``config`` and return them."""
    prefix = config.name_prefix
    group = resources.ResourceGroup(f"{prefix}-rg", location=config.location)

    account = storage.StorageAccount(
        f"{prefix}st",
        resource_group_name=group.name,
        location=group.location,
        kind=storage.Kind.STORAGE_V2,
        sku=storage.SkuArgs(name=storage.SkuName.STANDARD_LRS),
        minimum_tls_version=storage.MinimumTlsVersion.TLS1_2,
        enable_https_traffic_only=True,
        allow_blob_public_access=False,
    )
    container = storage.BlobContainer(
        f"{prefix}-{MODELS_CONTAINER}",
        resource_group_name=group.name,
        account_name=account.name,
        container_name=MODELS_CONTAINER,
        public_access=storage.PublicAccess.NONE,
    )

    namespace = eventhub.Namespace(
        f"{prefix}-ehns",
        resource_group_name=group.name,
        location=group.location,
        sku=eventhub.SkuArgs(name=eventhub.SkuName.STANDARD, tier=eventhub.SkuTier.STANDARD, capacity=1),
        minimum_tls_version=eventhub.TlsVersion.TLS_VERSION_1_2,
    )
    partitions = {
        TICKS_HUB: config.ticks_partitions,
        PREDICTIONS_HUB: config.predictions_partitions,
        DEADLETTER_HUB: config.deadletter_partitions,
    }
    hubs = {
        hub: eventhub.EventHub(
            f"{prefix}-{hub}",
            resource_group_name=group.name,
            namespace_name=namespace.name,
            event_hub_name=hub,
            partition_count=count,
        )
        for hub, count in partitions.items()
    }
    groups = {
        group_name: eventhub.ConsumerGroup(
            f"{prefix}-{hub}-{group_name}",
            resource_group_name=group.name,
            namespace_name=namespace.name,
            event_hub_name=hubs[hub].name,
            consumer_group_name=group_name,
        )
        for hub, group_name in (
            (TICKS_HUB, PREDICT_CONSUMER_GROUP),
            (PREDICTIONS_HUB, ARCHIVE_CONSUMER_GROUP),
        )
    }
    return StackOutputs(
        resource_group=group,
        storage_account=account,
        models_container=container,
        eventhub_namespace=namespace,
        hubs=hubs,
        consumer_groups=groups,
    )
