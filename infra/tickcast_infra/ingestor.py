"""The ingestor: a Container Apps environment, a container registry and the ingestor Container App.

- Environment: workload-profiles environment (Consumption profile), logs to Log Analytics (the
  workspace's shared key is passed as a secret).
- Registry: Azure Container Registry (Basic, admin user and anonymous pull off); the ingestor's
  identity holds AcrPull on it and the app pulls with that identity.
- App: image from the stack config ``ingestorImage``, exactly one replica (min = max = 1: every
  replica would open its own exchange connections and publish every trade again), no ingress (it
  only connects out), environment variables from :mod:`settings_contract` (secret settings as
  Key Vault-backed Container Apps secrets, referenced by ``secretRef``), and liveness and startup
  probes on ``GET /healthz`` at ``INGESTOR_HEALTH_PORT``.

The app is declared once ``ingestorImage`` is set: push the image to the registry first (its
login server is a stack output), then ``pulumi config set ingestorImage <server>/tickcast-ingestor:<tag>``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
from pulumi_azure_native import app, containerregistry, operationalinsights, resources

from .config import INGESTOR_HEALTH_PORT, StackConfig

WORKLOAD_PROFILE = "Consumption"
HEALTH_PATH = "/healthz"


@dataclass(frozen=True)
class Ingestor:
    registry: containerregistry.Registry
    environment: app.ManagedEnvironment
    app: app.ContainerApp | None


def declare_registry(config: StackConfig, group: resources.ResourceGroup) -> containerregistry.Registry:
    """Declare the container registry the ingestor image is pushed to."""
    return containerregistry.Registry(
        f"{config.name_prefix}acr",
        resource_group_name=group.name,
        location=group.location,
        sku=containerregistry.SkuArgs(name="Basic"),
        admin_user_enabled=False,
        anonymous_pull_enabled=False,
    )


def declare_environment(
    config: StackConfig, group: resources.ResourceGroup, workspace: operationalinsights.Workspace
) -> app.ManagedEnvironment:
    """Declare the Container Apps environment, logging to ``workspace``."""
    shared_key = pulumi.Output.secret(
        operationalinsights.get_shared_keys_output(
            resource_group_name=group.name, workspace_name=workspace.name
        ).primary_shared_key
    )
    return app.ManagedEnvironment(
        f"{config.name_prefix}-cae",
        resource_group_name=group.name,
        location=group.location,
        app_logs_configuration=app.AppLogsConfigurationArgs(
            destination="log-analytics",
            log_analytics_configuration=app.LogAnalyticsConfigurationArgs(
                customer_id=workspace.customer_id, shared_key=shared_key
            ),
        ),
        # A plain mapping: app.WorkloadProfileArgs adds enableFips=False, a property of dedicated
        # profiles only (Azure/azure-rest-api-specs#30418), never of the Consumption profile.
        workload_profiles=[{"name": WORKLOAD_PROFILE, "workload_profile_type": WORKLOAD_PROFILE}],
    )


def declare_ingestor_app(
    config: StackConfig,
    group: resources.ResourceGroup,
    environment: app.ManagedEnvironment,
    registry: containerregistry.Registry,
    identity_id: pulumi.Input[str],
    env: Mapping[str, pulumi.Input[str]],
    secret_env: Mapping[str, pulumi.Input[str]],
    depends_on: list[pulumi.Resource],
) -> app.ContainerApp:
    """Declare the ingestor Container App.

    ``env`` holds plain values; ``secret_env`` maps a setting name to the Key Vault secret URI
    its value is read from (a Container Apps secret with the ingestor's identity, then ``secretRef``).
    """
    secret_names = {name: name.lower().replace("_", "-") for name in secret_env}
    probe = app.ContainerAppProbeHttpGetArgs(path=HEALTH_PATH, port=INGESTOR_HEALTH_PORT)
    return app.ContainerApp(
        f"{config.name_prefix}-ingestor",
        resource_group_name=group.name,
        location=group.location,
        managed_environment_id=environment.id,
        workload_profile_name=WORKLOAD_PROFILE,
        identity=app.ManagedServiceIdentityArgs(
            type=app.ManagedServiceIdentityType.USER_ASSIGNED, user_assigned_identities=[identity_id]
        ),
        configuration=app.ConfigurationArgs(
            active_revisions_mode=app.ActiveRevisionsMode.SINGLE,
            registries=[app.RegistryCredentialsArgs(server=registry.login_server, identity=identity_id)],
            secrets=[
                app.SecretArgs(name=secret_names[name], key_vault_url=uri, identity=identity_id)
                for name, uri in secret_env.items()
            ],
        ),
        template=app.TemplateArgs(
            containers=[
                app.ContainerArgs(
                    name="ingestor",
                    image=config.ingestor_image,
                    resources=app.ContainerResourcesArgs(cpu=0.5, memory="1Gi"),
                    env=[app.EnvironmentVarArgs(name=k, value=v) for k, v in env.items()]
                    + [app.EnvironmentVarArgs(name=k, secret_ref=secret_names[k]) for k in secret_env],
                    probes=[
                        app.ContainerAppProbeArgs(
                            type=app.Type.STARTUP, http_get=probe, period_seconds=5, failure_threshold=24
                        ),
                        app.ContainerAppProbeArgs(
                            type=app.Type.LIVENESS, http_get=probe, period_seconds=15, failure_threshold=4
                        ),
                    ],
                )
            ],
            scale=app.ScaleArgs(min_replicas=1, max_replicas=1),
        ),
        opts=pulumi.ResourceOptions(depends_on=depends_on),
    )
