"""Key Vault: where secrets live, so that no app setting carries one in plain text.

The vault uses the Azure RBAC permission model. The only secret today is ``mysql-url``
(``MYSQL_URL``); the Function App reads it through a Key Vault reference
``@Microsoft.KeyVault(SecretUri=...)`` resolved with its user-assigned identity
(``keyVaultReferenceIdentity``), which holds Key Vault Secrets User on that one secret
(https://learn.microsoft.com/azure/app-service/app-service-key-vault-references).
The versionless secret URI is used, so a rotated value is picked up within a day (or on restart).
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
from pulumi_azure_native import keyvault, resources

from .config import StackConfig


@dataclass(frozen=True)
class Vault:
    vault: keyvault.Vault
    secrets: dict[str, keyvault.Secret]

    def secret_uri(self, name: str) -> pulumi.Output[str]:
        """Versionless URI ``https://<vault>.vault.azure.net/secrets/<name>/`` (Azure public cloud)."""
        return pulumi.Output.all(self.vault.name, self.secrets[name].name).apply(
            lambda args: f"https://{args[0]}.vault.azure.net/secrets/{args[1]}/"
        )

    def reference(self, name: str) -> pulumi.Output[str]:
        """The app-setting value that makes App Service resolve secret ``name`` from this vault."""
        return self.secret_uri(name).apply(lambda uri: f"@Microsoft.KeyVault(SecretUri={uri})")


def declare_vault(
    config: StackConfig,
    group: resources.ResourceGroup,
    tenant_id: pulumi.Input[str],
    secrets: dict[str, pulumi.Input[str]],
) -> Vault:
    """Declare the vault and one secret per entry of ``secrets`` (values wrapped as Pulumi secrets)."""
    prefix = config.name_prefix
    vault = keyvault.Vault(
        f"{prefix}-kv",
        resource_group_name=group.name,
        location=group.location,
        properties=keyvault.VaultPropertiesArgs(
            tenant_id=tenant_id,
            sku=keyvault.SkuArgs(family="A", name=keyvault.SkuName.STANDARD),
            enable_rbac_authorization=True,
            enable_soft_delete=True,
            soft_delete_retention_in_days=7,
            public_network_access="Enabled",
        ),
    )
    declared = {
        name: keyvault.Secret(
            f"{prefix}-kv-{name}",
            resource_group_name=group.name,
            vault_name=vault.name,
            secret_name=name,
            properties=keyvault.SecretPropertiesArgs(value=pulumi.Output.secret(value)),
        )
        for name, value in secrets.items()
    }
    return Vault(vault=vault, secrets=declared)
