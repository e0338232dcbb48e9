"""Azure Database for MySQL flexible server: the history store of ``archive`` and ``retrain``.

- server: MySQL 8.0, Burstable B1ms by default, public network access restricted by firewall;
- database ``tickcast`` (utf8mb4, the charset ``shared/storage/history/`` declares for its tables);
- ``require_secure_transport=ON``: clients must use TLS (the server's minimum TLS version is 1.2
  by default), see https://learn.microsoft.com/azure/mysql/flexible-server/how-to-connect-tls-ssl;
- firewall rule 0.0.0.0-0.0.0.0, which Azure documents as "allow public access from any Azure
  service within Azure to this server" (the Function App has no fixed outbound address on Flex
  Consumption without a virtual network).

``MYSQL_URL`` (``mysql+pymysql://login:password@host:3306/db?ssl_ca=...``) carries the admin
password, so it is built as a secret Output and stored only in Key Vault (:mod:`vault`).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

import pulumi
from pulumi_azure_native import dbformysql, resources

from .config import MYSQL_SSL_CA, StackConfig

#: Start and end address of the firewall rule that admits Azure services.
AZURE_SERVICES_IP = "0.0.0.0"


@dataclass(frozen=True)
class Database:
    server: dbformysql.Server
    database: dbformysql.Database
    firewall_rule: dbformysql.FirewallRule
    require_tls: dbformysql.Configuration

    @property
    def host(self) -> pulumi.Output[str]:
        """``<server>.mysql.database.azure.com`` (Azure public cloud)."""
        return self.server.name.apply(lambda name: f"{name}.mysql.database.azure.com")


def mysql_url(login: str, password: str, host: str, database: str) -> str:
    """The SQLAlchemy URL ``shared/storage/history/`` opens, with TLS verified against the system CAs.

    >>> mysql_url("tick", "p@ss:w/rd", "db.mysql.database.azure.com", "tickcast")
    'mysql+pymysql://tick:p%40ss%3Aw%2Frd@db.mysql.database.azure.com:3306/tickcast?ssl_ca=/etc/ssl/certs/ca-certificates.crt'
    """
    return (
        f"mysql+pymysql://{quote(login, safe='')}:{quote(password, safe='')}@{host}:3306/"
        f"{quote(database, safe='')}?ssl_ca={MYSQL_SSL_CA}"
    )


def declare_database(config: StackConfig, group: resources.ResourceGroup) -> Database:
    """Declare the MySQL flexible server, its database, the TLS requirement and the firewall rule."""
    if config.mysql_admin_password is None:
        raise ValueError("mysqlAdminPassword is not set: pulumi config set --secret mysqlAdminPassword <password>")
    prefix = config.name_prefix
    server = dbformysql.Server(
        f"{prefix}-mysql",
        resource_group_name=group.name,
        location=group.location,
        version=config.mysql_version,
        administrator_login=config.mysql_admin_login,
        administrator_login_password=pulumi.Output.secret(config.mysql_admin_password),
        sku=dbformysql.MySQLServerSkuArgs(name=config.mysql_sku, tier=config.mysql_tier),
        # Every storage property explicit: StorageArgs silently fills in autoIoScaling="Enabled",
        # logOnDisk and storageRedundancy when unset. Autoscale IOPS is a documented opt-in that
        # bills per IO ("Azure Database for MySQL - Flexible Server service tiers", Autoscale IOPS);
        # chosen here on purpose: retrain's hourly history reads must not stall on a fixed IOPS cap.
        storage=dbformysql.StorageArgs(
            storage_size_gb=config.mysql_storage_gb,
            auto_grow="Enabled",
            auto_io_scaling="Enabled",
            log_on_disk="Disabled",
            storage_redundancy="LocalRedundancy",
        ),
        backup=dbformysql.BackupArgs(backup_retention_days=7, geo_redundant_backup="Disabled"),
        high_availability=dbformysql.HighAvailabilityArgs(mode="Disabled"),
        network=dbformysql.NetworkArgs(public_network_access="Enabled"),
    )
    database = dbformysql.Database(
        f"{prefix}-mysql-db",
        resource_group_name=group.name,
        server_name=server.name,
        database_name=config.mysql_database,
        charset="utf8mb4",
        collation="utf8mb4_bin",
    )
    # Server parameters and firewall rules are applied one at a time: the flexible server
    # rejects concurrent updates ("server is busy"), hence the explicit ordering.
    require_tls = dbformysql.Configuration(
        f"{prefix}-mysql-require-tls",
        resource_group_name=group.name,
        server_name=server.name,
        configuration_name="require_secure_transport",
        value="ON",
        source="user-override",
        opts=pulumi.ResourceOptions(depends_on=[database]),
    )
    firewall_rule = dbformysql.FirewallRule(
        f"{prefix}-mysql-allow-azure",
        resource_group_name=group.name,
        server_name=server.name,
        firewall_rule_name="AllowAllAzureServicesAndResourcesWithinAzureIps",
        start_ip_address=AZURE_SERVICES_IP,
        end_ip_address=AZURE_SERVICES_IP,
        opts=pulumi.ResourceOptions(depends_on=[require_tls]),
    )
    return Database(server=server, database=database, firewall_rule=firewall_rule, require_tls=require_tls)


def database_url(config: StackConfig, db: Database) -> pulumi.Output[str]:
    """``MYSQL_URL`` for ``db``, as a secret Output (it contains the admin password)."""
    url = pulumi.Output.all(db.host, db.database.name, pulumi.Output.secret(config.mysql_admin_password)).apply(
        lambda args: mysql_url(config.mysql_admin_login, args[2], args[0], args[1])
    )
    return pulumi.Output.secret(url)
