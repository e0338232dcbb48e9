"""Event Hubs: the namespace, the hubs ``ticks``, ``predictions``, ``deadletter`` and the consumer groups.

Standard tier, so that the Kafka endpoint exists (external Kafka clients, and the ingestor's
``kafka`` publisher). Local (SAS) authentication is off: the bindings and the ingestor use
managed identities (``EVENTHUB__fullyQualifiedNamespace``), external consumers an Entra identity
with Azure Event Hubs Data Receiver on the hub they read.

Consumer groups: ``predict`` (the predict function, on ``ticks``), ``archive`` (the archive
function, on ``predictions``), ``broadcast`` (the broadcast function, ``predictions`` -> SignalR,
so that a SignalR failure or spent quota never holds back ``predict`` nor ``archive``) and
``external`` (other readers of ``predictions``, e.g. a notebook or a second dashboard), so that no
reader steals another's checkpoints (each consumer group keeps its own offsets: "Event Hubs
features", section "Consumer groups", https://learn.microsoft.com/azure/event-hubs/event-hubs-features#consumer-groups).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
from pulumi_azure_native import eventhub, resources

from .config import (
    ARCHIVE_CONSUMER_GROUP,
    BROADCAST_CONSUMER_GROUP,
    DEADLETTER_HUB,
    PREDICT_CONSUMER_GROUP,
    PREDICTIONS_HUB,
    TICKS_HUB,
    StackConfig,
)


@dataclass(frozen=True)
class Messaging:
    namespace: eventhub.Namespace
    hubs: Mapping[str, eventhub.EventHub]
    consumer_groups: Mapping[str, eventhub.ConsumerGroup]

    @property
    def fully_qualified_namespace(self) -> pulumi.Output[str]:
        """``<namespace>.servicebus.windows.net`` (Azure public cloud): the value of
        ``EVENTHUB__fullyQualifiedNamespace`` for identity-based connections."""
        return self.namespace.name.apply(lambda name: f"{name}.servicebus.windows.net")


def declare_messaging(config: StackConfig, group: resources.ResourceGroup) -> Messaging:
    """Declare the namespace, its three hubs (partition counts from ``config``) and consumer groups."""
    prefix = config.name_prefix
    namespace = eventhub.Namespace(
        f"{prefix}-ehns",
        resource_group_name=group.name,
        location=group.location,
        sku=eventhub.SkuArgs(
            name=eventhub.SkuName.STANDARD, tier=eventhub.SkuTier.STANDARD, capacity=config.eventhub_capacity
        ),
        minimum_tls_version=eventhub.TlsVersion.TLS_VERSION_1_2,
        disable_local_auth=True,
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
            (PREDICTIONS_HUB, BROADCAST_CONSUMER_GROUP),
            (PREDICTIONS_HUB, config.external_consumer_group),
        )
    }
    return Messaging(namespace=namespace, hubs=hubs, consumer_groups=groups)
