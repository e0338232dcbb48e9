"""Workload identities and least-privilege role assignments.

Each workload runs as its own user-assigned managed identity, so that its rights can be granted
before the workload exists and read in isolation:

- ``functions``: the Function App (bindings, host storage, Key Vault references, telemetry);
- ``ingestor``: the ingestor Container App (sends ticks, pulls its image).

Built-in role definition ids, from "Azure built-in roles"
(https://learn.microsoft.com/azure/role-based-access-control/built-in-roles). Which roles the
Functions bindings need is listed in the Functions developer guide, "Connecting to host storage
with an identity" and each binding's "Identity-based connections" section
(https://learn.microsoft.com/azure/azure-functions/functions-reference#connecting-to-host-storage-with-an-identity).
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
from pulumi_azure_native import authorization, managedidentity, resources

# --- built-in role definition ids (GUIDs are the same in every tenant) ------------------------------
#: Azure Event Hubs Data Sender: send events (Event Hub output bindings, the ingestor).
EVENT_HUBS_DATA_SENDER = "2b629674-e913-4c01-ae53-ef4638d8f975"
#: Azure Event Hubs Data Receiver: receive events (Event Hub trigger).
EVENT_HUBS_DATA_RECEIVER = "a638d3c7-ab3a-418d-83e6-5f17a39d4fde"
#: Storage Blob Data Owner: the Functions host's minimum on AzureWebJobsStorage; also owns model blobs.
STORAGE_BLOB_DATA_OWNER = "b7e6dc6d-f1e8-4753-8033-0f276bb0955b"
#: Storage Queue Data Contributor: blob trigger bookkeeping/poison queue on its storage account.
STORAGE_QUEUE_DATA_CONTRIBUTOR = "974c5e8b-45b9-4653-ba55-5f855dd0fb88"
#: Storage Table Data Contributor: the host persists diagnostic events in AzureWebJobsStorage tables.
STORAGE_TABLE_DATA_CONTRIBUTOR = "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3"
#: SignalR Service Owner: what the Functions SignalR bindings need in Serverless mode (negotiate
#: generates client tokens; the output binding calls the data-plane REST API).
SIGNALR_SERVICE_OWNER = "7e4f1700-ea5a-4f59-8f37-079cfe29dce3"
#: Key Vault Secrets User: read secret contents (Key Vault references in app settings).
KEY_VAULT_SECRETS_USER = "4633458b-17de-408a-b874-0445c86b69e6"
#: Monitoring Metrics Publisher: Entra-authenticated Application Insights ingestion.
MONITORING_METRICS_PUBLISHER = "3913510d-42f4-4e42-8a64-420c390055eb"
#: AcrPull: pull images from the container registry.
ACR_PULL = "7f951dda-4ed3-4680-a7ca-43fe172d538d"

#: Role name by id, for messages and docs.
ROLE_NAMES = {
    EVENT_HUBS_DATA_SENDER: "Azure Event Hubs Data Sender",
    EVENT_HUBS_DATA_RECEIVER: "Azure Event Hubs Data Receiver",
    STORAGE_BLOB_DATA_OWNER: "Storage Blob Data Owner",
    STORAGE_QUEUE_DATA_CONTRIBUTOR: "Storage Queue Data Contributor",
    STORAGE_TABLE_DATA_CONTRIBUTOR: "Storage Table Data Contributor",
    SIGNALR_SERVICE_OWNER: "SignalR Service Owner",
    KEY_VAULT_SECRETS_USER: "Key Vault Secrets User",
    MONITORING_METRICS_PUBLISHER: "Monitoring Metrics Publisher",
    ACR_PULL: "AcrPull",
}


def role_definition_id(subscription_id: pulumi.Input[str], role: str) -> pulumi.Output[str]:
    """The subscription-scoped resource id of built-in role ``role`` (a GUID from this module)."""
    return pulumi.Output.concat(
        "/subscriptions/", subscription_id, "/providers/Microsoft.Authorization/roleDefinitions/", role
    )


@dataclass(frozen=True)
class Workload:
    """A workload's user-assigned identity and the role assignments granted to it."""

    key: str
    logical_name: str
    identity: managedidentity.UserAssignedIdentity
    assignments: list[authorization.RoleAssignment]

    @property
    def client_id(self) -> pulumi.Output[str]:
        """Client id: the value of ``AZURE_CLIENT_ID`` and ``<connection>__clientId``."""
        return self.identity.client_id

    @property
    def resource_id(self) -> pulumi.Output[str]:
        return self.identity.id

    def grant(
        self,
        name: str,
        role: str,
        scope: pulumi.Input[str],
        subscription_id: pulumi.Input[str],
        description: str,
    ) -> authorization.RoleAssignment:
        """Assign built-in ``role`` on ``scope`` to this identity (principal type ServicePrincipal,
        so that the assignment does not wait for Entra replication of the new identity)."""
        assignment = authorization.RoleAssignment(
            f"{self.logical_name}-{name}",
            principal_id=self.identity.principal_id,
            principal_type=authorization.PrincipalType.SERVICE_PRINCIPAL,
            role_definition_id=role_definition_id(subscription_id, role),
            scope=scope,
            description=f"tickcast {self.key}: {description}",
        )
        self.assignments.append(assignment)
        return assignment


def workload_identity(prefix: str, key: str, group: resources.ResourceGroup) -> Workload:
    """Declare the user-assigned managed identity of workload ``key`` (``functions`` or ``ingestor``)."""
    logical_name = f"{prefix}-id-{key}"
    identity = managedidentity.UserAssignedIdentity(
        logical_name,
        resource_group_name=group.name,
        location=group.location,
    )
    return Workload(key=key, logical_name=logical_name, identity=identity, assignments=[])
