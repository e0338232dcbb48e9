"""Workload identities, least-privilege role assignments, and what they do and do not isolate.

Every workload runs as user-assigned managed identities of its own, so that rights are granted
before the workload exists and can be read in isolation:

- ``ingestor``: the ingestor Container App (sends ticks, pulls its image);
- ``host``: the Function App's platform side — the Functions host's storage
  (``AzureWebJobsStorage``, on the *host* account only), the deployment package, Key Vault
  references, telemetry, and every binding connection except the model registry's: ``EVENTHUB``
  (Event Hubs triggers and outputs) and ``AzureSignalRConnectionString`` (``negotiate``,
  ``broadcast``). It holds no role on the models account at all;
- ``predict``: the SDK client ``predict`` reads the registry with (``AZURE_CLIENT_ID``, the one
  ``DefaultAzureCredential`` picks): reads the ``models`` container, writes only
  ``<key>/checkpoints/...``; reads and writes the ``predict-state`` container (its partition
  state, ``shared.serving.partitions``), on which no other identity has a role; receives on the
  ``ticks`` hub (its Kafka endpoint: the replay after a restore, ``shared.serving.hubreplay``);
- ``retrain``: reads ``models``, writes only ``<key>/candidates/...``
  (``MODEL_STORAGE_RETRAIN_CLIENT_ID``);
- ``promote``: reads ``models``, writes only ``<key>/current.json`` and ``<key>/decisions/...``
  (``MODEL_STORAGE_PROMOTE_CLIENT_ID``, and ``MODEL_STORAGE__clientId``, the connection of
  promote_model's blob trigger, which also needs the models account's queues for its poison queue).
  ``broadcast`` and the HTTP functions read no model blob, so they need no model identity.

Write rights are Storage Blob Data Contributor on the ``models`` container with a role-assignment
condition on the blob path ("Azure role assignment condition format and syntax",
https://learn.microsoft.com/azure/role-based-access-control/conditions-format; the
``blobs:path`` attribute, "Actions and attributes for Azure role assignment conditions for Azure
Blob Storage", https://learn.microsoft.com/azure/storage/blobs/storage-auth-abac-attributes): every
write-like data action of that role (write, add, delete, move) is allowed only when the path
matches the identity's prefixes and none of the others' (:func:`path_condition`), so a model key
that itself contains ``/candidates/`` cannot turn a candidate write into a pointer write. The
blob trigger's binding reference lists Storage Blob Data Owner for a trigger connection; Owner's
blob data actions are a wildcard that a path condition cannot bound, so ``promote`` gets
Contributor (read, write, delete, list: what the trigger does on a flat-namespace account) plus
Storage Queue Data Contributor — to be confirmed on the first real deployment.

What this does *not* isolate: all four Function App identities are attached to the one app, and
any code running in its worker can ask the platform's identity endpoint for a token of any of them
by client id ("Managed identities for App Service and Azure Functions",
https://learn.microsoft.com/azure/app-service/overview-managed-identity). So the scheme stops
mis-wiring and bugs (``predict`` cannot overwrite a pointer through its own client; a leaked
``predict`` token cannot plant a candidate) and it bounds every identity's reach, but it does not
stop code that already executes inside the app — e.g. a planted pickle unpickled by ``predict`` —
from using the promoter's identity. That gap closes only by moving ``retrain`` and
``promote_model`` into a Function App of their own (own plan, own identities, the ``predict``
app holding none of the writers' identities); until then it is the remaining gap, and the
signature check of the reliability issue (a candidate is verified before it is unpickled) is
the control that stands in it.

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
#: Storage Blob Data Owner: the Functions host's minimum on AzureWebJobsStorage (host account only).
STORAGE_BLOB_DATA_OWNER = "b7e6dc6d-f1e8-4753-8033-0f276bb0955b"
#: Storage Blob Data Contributor: read, write, delete blobs; the model identities' role, path-conditioned.
STORAGE_BLOB_DATA_CONTRIBUTOR = "ba92f5b4-2d11-453d-a403-e96b0029c9fe"
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
    STORAGE_BLOB_DATA_CONTRIBUTOR: "Storage Blob Data Contributor",
    STORAGE_QUEUE_DATA_CONTRIBUTOR: "Storage Queue Data Contributor",
    STORAGE_TABLE_DATA_CONTRIBUTOR: "Storage Table Data Contributor",
    SIGNALR_SERVICE_OWNER: "SignalR Service Owner",
    KEY_VAULT_SECRETS_USER: "Key Vault Secrets User",
    MONITORING_METRICS_PUBLISHER: "Monitoring Metrics Publisher",
    ACR_PULL: "AcrPull",
}


#: The write-like blob data actions of Storage Blob Data Contributor (its ``dataActions`` are read,
#: write, delete, add/action and move/action; "Azure built-in roles", Storage Blob Data Contributor).
BLOB_WRITE_ACTIONS = tuple(
    f"Microsoft.Storage/storageAccounts/blobServices/containers/blobs/{action}"
    for action in ("write", "add/action", "delete", "move/action")
)
BLOB_PATH = "@Resource[Microsoft.Storage/storageAccounts/blobServices/containers/blobs:path]"
#: Path patterns (``StringLike``, relative to the container) of each kind of registry blob.
REGISTRY_PATHS = {
    "candidates": "*/candidates/*",
    "pointer": "*/current.json",
    "decisions": "*/decisions/*",
    "checkpoints": "*/checkpoints/*",
}


def path_condition(allowed: tuple[str, ...]) -> str:
    """A role-assignment condition (version 2.0) that lets the blob write actions through only
    for paths of the registry kinds ``allowed`` (keys of :data:`REGISTRY_PATHS`) and of no other kind.

    Reads and lists are not touched. Format: "Azure role assignment condition format and syntax".

    >>> print(path_condition(("pointer",)))  # doctest: +NORMALIZE_WHITESPACE
    ( ( !(ActionMatches{'Microsoft.Storage/storageAccounts/blobServices/containers/blobs/write'})
    AND !(ActionMatches{'Microsoft.Storage/storageAccounts/blobServices/containers/blobs/add/action'})
    AND !(ActionMatches{'Microsoft.Storage/storageAccounts/blobServices/containers/blobs/delete'})
    AND !(ActionMatches{'Microsoft.Storage/storageAccounts/blobServices/containers/blobs/move/action'}) )
    OR ( (@Resource[Microsoft.Storage/storageAccounts/blobServices/containers/blobs:path] StringLike '*/current.json')
    AND @Resource[Microsoft.Storage/storageAccounts/blobServices/containers/blobs:path] StringNotLike '*/candidates/*'
    AND @Resource[Microsoft.Storage/storageAccounts/blobServices/containers/blobs:path] StringNotLike '*/decisions/*'
    AND @Resource[Microsoft.Storage/storageAccounts/blobServices/containers/blobs:path] StringNotLike '*/checkpoints/*' ) )
    """
    unknown = set(allowed) - set(REGISTRY_PATHS)
    if not allowed or unknown:
        raise ValueError(f"allowed must name registry paths of {sorted(REGISTRY_PATHS)}, got {allowed}")
    actions = " AND ".join(f"!(ActionMatches{{'{a}'}})" for a in BLOB_WRITE_ACTIONS)
    anyof = " OR ".join(f"{BLOB_PATH} StringLike '{REGISTRY_PATHS[k]}'" for k in allowed)
    noneof = [f"{BLOB_PATH} StringNotLike '{p}'" for k, p in REGISTRY_PATHS.items() if k not in allowed]
    return f"( ( {actions} ) OR ( ({anyof}) AND {' AND '.join(noneof)} ) )"


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
        condition: str | None = None,
    ) -> authorization.RoleAssignment:
        """Assign built-in ``role`` on ``scope`` to this identity (principal type ServicePrincipal,
        so that the assignment does not wait for Entra replication of the new identity), limited
        by ``condition`` (a version 2.0 role-assignment condition, e.g. :func:`path_condition`)."""
        assignment = authorization.RoleAssignment(
            f"{self.logical_name}-{name}",
            principal_id=self.identity.principal_id,
            principal_type=authorization.PrincipalType.SERVICE_PRINCIPAL,
            role_definition_id=role_definition_id(subscription_id, role),
            scope=scope,
            description=f"tickcast {self.key}: {description}",
            condition=condition,
            condition_version="2.0" if condition else None,
        )
        self.assignments.append(assignment)
        return assignment


def workload_identity(prefix: str, key: str, group: resources.ResourceGroup) -> Workload:
    """Declare the user-assigned managed identity ``key`` (``host``, ``predict``, ``retrain``,
    ``promote`` or ``ingestor``)."""
    logical_name = f"{prefix}-id-{key}"
    identity = managedidentity.UserAssignedIdentity(
        logical_name,
        resource_group_name=group.name,
        location=group.location,
    )
    return Workload(key=key, logical_name=logical_name, identity=identity, assignments=[])
