"""The storage account: model registry, the Functions host's storage, deployment packages.

One StorageV2 account (Standard_LRS, TLS 1.2 minimum, HTTPS only, no anonymous blob access,
shared-key access off: every client authenticates with Microsoft Entra ID) holds

- ``models``: the model registry (``shared/lifecycle/registry/``); ``promote_model`` is triggered by
  Event Grid ``BlobCreated`` events on it;
- ``app-package``: the Flex Consumption app's deployment packages
  (``functionAppConfig.deployment.storage``);
- the Functions host's own containers, queues and tables (``AzureWebJobsStorage__*``; the host
  creates them).

Endpoints are written for the Azure public cloud (``<account>.blob.core.windows.net``), like the
Event Hubs namespace host in :mod:`messaging`.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
from pulumi_azure_native import resources, storage

from .config import DEPLOYMENT_CONTAINER, MODELS_CONTAINER, StackConfig


@dataclass(frozen=True)
class Storage:
    account: storage.StorageAccount
    models_container: storage.BlobContainer
    deployment_container: storage.BlobContainer

    def endpoint(self, service: str) -> pulumi.Output[str]:
        """``https://<account>.<service>.core.windows.net/`` for ``service`` blob, queue or table."""
        return self.account.name.apply(lambda name: f"https://{name}.{service}.core.windows.net/")

    @property
    def blob_endpoint(self) -> pulumi.Output[str]:
        return self.endpoint("blob")

    @property
    def deployment_container_url(self) -> pulumi.Output[str]:
        return pulumi.Output.concat(self.blob_endpoint, self.deployment_container.name)


def declare_storage(config: StackConfig, group: resources.ResourceGroup) -> Storage:
    """Declare the storage account and its two blob containers."""
    prefix = config.name_prefix
    account = storage.StorageAccount(
        f"{prefix}st",
        resource_group_name=group.name,
        location=group.location,
        kind=storage.Kind.STORAGE_V2,
        sku=storage.SkuArgs(name=storage.SkuName.STANDARD_LRS),
        minimum_tls_version=storage.MinimumTlsVersion.TLS1_2,
        enable_https_traffic_only=True,
        allow_blob_public_access=False,
        allow_shared_key_access=False,
    )

    def container(name: str) -> storage.BlobContainer:
        return storage.BlobContainer(
            f"{prefix}-{name}",
            resource_group_name=group.name,
            account_name=account.name,
            container_name=name,
            public_access=storage.PublicAccess.NONE,
        )

    return Storage(
        account=account,
        models_container=container(MODELS_CONTAINER),
        deployment_container=container(DEPLOYMENT_CONTAINER),
    )
