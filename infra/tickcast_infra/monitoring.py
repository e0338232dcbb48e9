"""Log Analytics workspace and workspace-based Application Insights.

The workspace collects the Container Apps environment's console and system logs; Application
Insights (workspace-based, local authentication off) receives the Function App's telemetry,
authenticated with the Function App's managed identity (``APPLICATIONINSIGHTS_AUTHENTICATION_STRING``
``Authorization=AAD``, role Monitoring Metrics Publisher; see "Microsoft Entra authentication for
Application Insights", https://learn.microsoft.com/azure/azure-monitor/app/azure-ad-authentication).
"""

from __future__ import annotations

from dataclasses import dataclass

from pulumi_azure_native import applicationinsights, operationalinsights, resources

from .config import StackConfig


@dataclass(frozen=True)
class Monitoring:
    workspace: operationalinsights.Workspace
    app_insights: applicationinsights.Component


def declare_monitoring(config: StackConfig, group: resources.ResourceGroup) -> Monitoring:
    """Declare the Log Analytics workspace and the Application Insights component."""
    prefix = config.name_prefix
    workspace = operationalinsights.Workspace(
        f"{prefix}-log",
        resource_group_name=group.name,
        location=group.location,
        sku=operationalinsights.WorkspaceSkuArgs(name=operationalinsights.WorkspaceSkuNameEnum.PER_GB2018),
        retention_in_days=config.log_retention_days,
    )
    app_insights = applicationinsights.Component(
        f"{prefix}-appi",
        resource_group_name=group.name,
        location=group.location,
        kind="web",
        application_type=applicationinsights.ApplicationType.WEB,
        ingestion_mode=applicationinsights.IngestionMode.LOG_ANALYTICS,
        workspace_resource_id=workspace.id,
        # Only Entra-authenticated telemetry is accepted: the instrumentation key in the
        # connection string is then an identifier, not a credential.
        disable_local_auth=True,
    )
    return Monitoring(workspace=workspace, app_insights=app_insights)
