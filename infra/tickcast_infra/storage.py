"""Storage: two accounts, so that the Functions host's rights never reach the model registry.

- the **host** account holds the Functions host's own containers, queues and tables
  (``AzureWebJobsStorage__*``: keys, timer and blob-trigger bookkeeping, Event Hubs checkpoints;
  the host creates them) and ``app-package``, the Flex Consumption app's deployment packages
  (``functionAppConfig.deployment.storage``). The host needs Storage Blob Data Owner on it
  ("Connecting to host storage with an identity",
  https://learn.microsoft.com/azure/azure-functions/functions-reference#connecting-to-host-storage-with-an-identity);
- the **models** account holds only ``models``, the model registry (``shared/lifecycle/registry/``):
  candidates, champion pointers, decisions, checkpoints. ``promote_model`` is triggered by Event
  Grid ``BlobCreated`` events on it, and its blob trigger keeps its poison queue in this account
  (the trigger's connection, ``MODEL_STORAGE``). Who may write which blob here is decided by
  path-conditioned role assignments (:mod:`identity`), which is only sound if no identity holds a
  blanket blob role on the account — hence the host's Owner role lives on the other account.

Both are StorageV2, Standard_LRS, TLS 1.2 minimum, HTTPS only, no anonymous blob access, and
shared-key access off: every client authenticates with Microsoft Entra ID. No hierarchical
namespace: role-assignment conditions on ``blobs:path`` work on flat-namespace accounts ("Actions
and attributes for Azure role assignment conditions for Azure Blob Storage",
https://learn.microsoft.com/azure/storage/blobs/storage-auth-abac-attributes).

Endpoints are written for the Azure public cloud (``<account>.blob.core.windows.net``), like the
Event Hubs namespace host in :mod:`messaging`.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
from pulumi_azure_native import resources, storage

from .config import DEPLOYMENT_CONTAINER, MODELS_CONTAINER, STATE_CONTAINER, StackConfig


def endpoint(account: storage.StorageAccount, service: str) -> pulumi.Output[str]:
    """``https://<account>.<service>.core.windows.net/`` for ``service`` blob, queue or table."""
    return account.name.apply(lambda name: f"https://{name}.{service}.core.windows.net/")


@dataclass(frozen=True)
class Storage:
    """The host account (with ``app-package``) and the models account (with ``models``, and
    ``predict-state``: predict's partition state, shared.serving.partitions)."""

    account: storage.StorageAccount
    models_account: storage.StorageAccount
    models_container: storage.BlobContainer
    deployment_container: storage.BlobContainer
    state_container: storage.BlobContainer

    def endpoint(self, service: str) -> pulumi.Output[str]:
        """Endpoint of ``service`` (blob, queue, table) of the host account."""
        return endpoint(self.account, service)

    def models_endpoint(self, service: str) -> pulumi.Output[str]:
        """Endpoint of ``service`` (blob, queue) of the models account."""
        return endpoint(self.models_account, service)

    @property
    def blob_endpoint(self) -> pulumi.Output[str]:
        return self.endpoint("blob")

    @property
    def deployment_container_url(self) -> pulumi.Output[str]:
        return pulumi.Output.concat(self.blob_endpoint, self.deployment_container.name)

    @property
    def models_container_id(self) -> pulumi.Output[str]:
        """ARM id of the ``models`` container: the scope of the model identities' blob roles."""
        return self.models_container.id


def declare_storage(config: StackConfig, group: resources.ResourceGroup) -> Storage:
    """Declare the host and models storage accounts and their blob containers."""
    prefix = config.name_prefix

    def account(name: str) -> storage.StorageAccount:
        return storage.StorageAccount(
            name,
            resource_group_name=group.name,
            location=group.location,
            kind=storage.Kind.STORAGE_V2,
            sku=storage.SkuArgs(name=storage.SkuName.STANDARD_LRS),
            minimum_tls_version=storage.MinimumTlsVersion.TLS1_2,
            enable_https_traffic_only=True,
            allow_blob_public_access=False,
            allow_shared_key_access=False,
        )

    def container(name: str, owner: storage.StorageAccount) -> storage.BlobContainer:
        return storage.BlobContainer(
            f"{prefix}-{name}",
            resource_group_name=group.name,
            account_name=owner.name,
            container_name=name,
            public_access=storage.PublicAccess.NONE,
        )

    host = account(f"{prefix}st")
    models = account(f"{prefix}stm")
    return Storage(
        account=host,
        models_account=models,
        models_container=container(MODELS_CONTAINER, models),
        deployment_container=container(DEPLOYMENT_CONTAINER, host),
        state_container=container(STATE_CONTAINER, models),
    )
