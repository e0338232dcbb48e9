"""Event Grid: the storage account's system topic and the subscription behind ``promote_model``.

``promote_model`` is a blob trigger with ``source=EventGrid`` (the only blob-trigger kind Flex
Consumption supports). It receives ``Microsoft.Storage.BlobCreated`` events from an Event Grid
subscription whose webhook is the blob extension endpoint of the app,
``https://<app>/runtime/webhooks/blobs?functionName=Host.Functions.promote_model&code=<blobs_extension key>``
("Tutorial: Trigger Azure Functions on blob containers using an event subscription",
https://learn.microsoft.com/azure/azure-functions/functions-event-grid-blob-trigger).

The key is a secret (read from the app's host keys, kept as a Pulumi secret). Event Grid validates
the webhook when the subscription is created, which only succeeds once the function code is
published: the subscription is declared when ``promoteModelEvents`` is true (set it after the
first ``func azure functionapp publish``). The system topic itself is declared always.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
from pulumi_azure_native import eventgrid, resources, web

from .config import MODELS_CONTAINER, StackConfig

#: Name of the blob-triggered function (functions/ registers it as ``promote_model``).
PROMOTE_MODEL_FUNCTION = "promote_model"
BLOB_CREATED = "Microsoft.Storage.BlobCreated"
#: The trigger path of promote_model is ``%MODELS_CONTAINER%/{key}/candidates/{version}/metadata.json``
#: (functions/promote.py): only the creation of a candidate's metadata blob, written last, matters.
TRIGGER_BLOB_SUFFIX = "/metadata.json"


@dataclass(frozen=True)
class Events:
    system_topic: eventgrid.SystemTopic
    subscription: eventgrid.SystemTopicEventSubscription | None


def blob_webhook_url(host_name: str, key: str, function: str = PROMOTE_MODEL_FUNCTION) -> str:
    """The blob extension webhook of ``function`` on the app at ``host_name``.

    >>> blob_webhook_url("app.azurewebsites.net", "k")
    'https://app.azurewebsites.net/runtime/webhooks/blobs?functionName=Host.Functions.promote_model&code=k'
    """
    return f"https://{host_name}/runtime/webhooks/blobs?functionName=Host.Functions.{function}&code={key}"


def declare_events(
    config: StackConfig,
    group: resources.ResourceGroup,
    account_id: pulumi.Input[str],
    app: web.WebApp,
    host_name: pulumi.Input[str],
) -> Events:
    """Declare the storage system topic, and the ``promote_model`` subscription when enabled."""
    prefix = config.name_prefix
    topic = eventgrid.SystemTopic(
        f"{prefix}-st-events",
        resource_group_name=group.name,
        location=group.location,
        source=account_id,
        topic_type="Microsoft.Storage.StorageAccounts",
    )
    if not config.promote_model_events:
        return Events(system_topic=topic, subscription=None)

    keys = web.list_web_app_host_keys_output(name=app.name, resource_group_name=group.name)
    blobs_key = pulumi.Output.secret(keys.apply(lambda k: (k.system_keys or {})["blobs_extension"]))
    endpoint = pulumi.Output.secret(
        pulumi.Output.all(host_name, blobs_key).apply(lambda args: blob_webhook_url(args[0], args[1]))
    )
    subscription = eventgrid.SystemTopicEventSubscription(
        f"{prefix}-promote-model",
        resource_group_name=group.name,
        system_topic_name=topic.name,
        event_subscription_name=PROMOTE_MODEL_FUNCTION.replace("_", "-"),
        destination=eventgrid.WebHookEventSubscriptionDestinationArgs(
            endpoint_type="WebHook",
            endpoint_url=endpoint,
            max_events_per_batch=1,
            preferred_batch_size_in_kilobytes=64,
        ),
        filter=eventgrid.EventSubscriptionFilterArgs(
            included_event_types=[BLOB_CREATED],
            subject_begins_with=f"/blobServices/default/containers/{MODELS_CONTAINER}/blobs/",
            subject_ends_with=TRIGGER_BLOB_SUFFIX,
        ),
        event_delivery_schema="EventGridSchema",
        retry_policy=eventgrid.RetryPolicyArgs(max_delivery_attempts=30, event_time_to_live_in_minutes=1440),
    )
    return Events(system_topic=topic, subscription=subscription)
