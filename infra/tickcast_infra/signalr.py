"""Azure SignalR Service in Serverless mode: pushes predictions and prices to web clients.

Serverless mode is what the Functions SignalR bindings require (no hub server keeps
connections; ``negotiate`` hands out client tokens and the output binding sends through the REST
API). Access keys are disabled: the Function App authenticates with its identity
(``AzureSignalRConnectionString__serviceUri``, role SignalR Service Owner). CORS admits the
dashboard's origin, the Function App that serves the page (the browser talks to
``<name>.service.signalr.net`` after negotiating with the Function App).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
from pulumi_azure_native import resources, signalrservice

from .config import StackConfig


@dataclass(frozen=True)
class SignalR:
    service: signalrservice.SignalR

    @property
    def service_uri(self) -> pulumi.Output[str]:
        """``https://<name>.service.signalr.net`` (Azure public cloud)."""
        return self.service.name.apply(lambda name: f"https://{name}.service.signalr.net")


def declare_signalr(
    config: StackConfig, group: resources.ResourceGroup, allowed_origins: Sequence[pulumi.Input[str]]
) -> SignalR:
    """Declare the SignalR Service resource (SKU from ``config``) with CORS for ``allowed_origins``."""
    tier = config.signalr_sku.split("_")[0]
    service = signalrservice.SignalR(
        f"{config.name_prefix}-signalr",
        resource_group_name=group.name,
        location=group.location,
        kind=signalrservice.ServiceKind.SIGNAL_R,
        sku=signalrservice.ResourceSkuArgs(name=config.signalr_sku, tier=tier, capacity=1),
        features=[
            signalrservice.SignalRFeatureArgs(flag=signalrservice.FeatureFlags.SERVICE_MODE, value="Serverless"),
            signalrservice.SignalRFeatureArgs(
                flag=signalrservice.FeatureFlags.ENABLE_CONNECTIVITY_LOGS, value="True"
            ),
        ],
        cors=signalrservice.SignalRCorsSettingsArgs(allowed_origins=list(allowed_origins)),
        disable_local_auth=True,
        disable_aad_auth=False,
        public_network_access="Enabled",
        tls=signalrservice.SignalRTlsSettingsArgs(client_cert_enabled=False),
    )
    return SignalR(service=service)
