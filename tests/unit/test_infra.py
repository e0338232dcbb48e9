"""Unit tests of the Pulumi stack in ``infra/``, run offline under ``pulumi.runtime.set_mocks``.

The stack is built by ``tickcast_infra.stack.build`` (a module apart from ``infra/__main__.py``,
as Pulumi's testing guide recommends); the mocks record every resource registration and invoke,
and the tests assert on the inputs the program sent. Names and app settings are compared with
``shared.settings`` (``SETTINGS``, ``settings_for``) and with the binding declarations in
``functions/``, so application code and infrastructure cannot drift apart.
"""

from __future__ import annotations

import asyncio
import doctest
import re
from fnmatch import fnmatchcase
import runpy
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml  # PyYAML, a dependency of pulumi

from shared.settings import FUNCTIONS, INGESTOR, SETTINGS, settings_for

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
if str(INFRA) not in sys.path:
    sys.path.insert(0, str(INFRA))

import tickcast_infra
from tickcast_infra import config as infra_config
from tickcast_infra import identity as roles
from tickcast_infra import settings_contract as contract
from tickcast_infra.config import StackConfig
from tickcast_infra.settings_contract import Handling
from tickcast_infra.stack import StackOutputs, build

SUBSCRIPTION = "00000000-0000-0000-0000-0000000000aa"
TENANT = "00000000-0000-0000-0000-0000000000bb"
PASSWORD = "Tick-Pa55word!x"
SHARED_KEY = "MOCK-LOG-ANALYTICS-SHARED-KEY=="
BLOBS_KEY = "MOCK-BLOBS-EXTENSION-KEY=="
IKEY_CONNECTION = "InstrumentationKey=11111111-2222-3333-4444-555555555555;IngestionEndpoint=https://x/"
SIGNING_KEY = "MOCK-GENERATED-MODEL-SIGNING-KEY-0123456789abcdef0123456789abcdef"
#: Values that must never appear in plain text in any resource input.
SECRET_VALUES = (PASSWORD, SHARED_KEY, BLOBS_KEY, SIGNING_KEY)
SECRET_SIG = pulumi.runtime.rpc._special_sig_key  # the marker of a secret value in mock inputs

# --- mocks -------------------------------------------------------------------------------------------
#: input that names the resource, for types whose name is given explicitly
EXPLICIT_NAME = {
    "azure-native:eventhub:EventHub": "eventHubName",
    "azure-native:eventhub:ConsumerGroup": "consumerGroupName",
    "azure-native:storage:BlobContainer": "containerName",
    "azure-native:dbformysql:Database": "databaseName",
    "azure-native:dbformysql:FirewallRule": "firewallRuleName",
    "azure-native:dbformysql:Configuration": "configurationName",
    "azure-native:keyvault:Secret": "secretName",
    "azure-native:web:WebApp": "name",
    "azure-native:eventgrid:SystemTopicEventSubscription": "eventSubscriptionName",
}


@dataclass(frozen=True)
class Registered:
    typ: str
    name: str  # logical name
    inputs: dict
    id: str
    outputs: dict

    @property
    def short(self) -> str:
        return self.typ.removeprefix("azure-native:")


class RecordingMocks(pulumi.runtime.Mocks):
    """Answers every registration with its inputs plus the outputs Azure would compute, and records it."""

    def __init__(self) -> None:
        self.resources: list[Registered] = []
        self.calls: list[str] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        inputs = dict(args.inputs)
        key = EXPLICIT_NAME.get(args.typ)
        name = inputs.get(key, args.name) if key else args.name
        outputs: dict[str, Any] = {**inputs, "name": name}
        identity = inputs.get("identity")
        if isinstance(identity, dict) and isinstance(identity.get("userAssignedIdentities"), list):
            # the input is a list of identity ids, the output a map id -> details
            outputs["identity"] = {**identity, "userAssignedIdentities": {i: {} for i in identity["userAssignedIdentities"]}}
        rid = f"/mock/{args.typ.split(':')[-1]}/{args.name}"
        if args.typ == "azure-native:resources:ResourceGroup":
            rid = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{name}"
        elif args.typ == "azure-native:managedidentity:UserAssignedIdentity":
            outputs.update(clientId=f"{name}-client-id", principalId=f"{name}-principal-id")
        elif args.typ == "azure-native:web:WebApp":
            outputs["defaultHostName"] = f"{name}.azurewebsites.net"
        elif args.typ == "azure-native:containerregistry:Registry":
            outputs["loginServer"] = f"{name}.azurecr.io"
        elif args.typ == "azure-native:operationalinsights:Workspace":
            outputs["customerId"] = f"{name}-customer-id"
        elif args.typ == "azure-native:applicationinsights:Component":
            outputs["connectionString"] = IKEY_CONNECTION
        elif args.typ == "pulumi-python:dynamic:Resource":  # vault.GeneratedKey: what its create() draws
            outputs["value"] = SIGNING_KEY
        self.resources.append(Registered(args.typ, args.name, inputs, rid, outputs))
        return rid, outputs

    def call(self, args: pulumi.runtime.MockCallArgs):
        self.calls.append(args.token)
        answers = {
            "azure-native:authorization:getClientConfig": {
                "subscriptionId": SUBSCRIPTION, "tenantId": TENANT, "clientId": "c", "objectId": "o",
            },
            "azure-native:operationalinsights:getSharedKeys": {"primarySharedKey": SHARED_KEY},
            "azure-native:web:listWebAppHostKeys": {"masterKey": "m", "systemKeys": {"blobs_extension": BLOBS_KEY}},
        }
        return answers.get(args.token, {})

    def of_type(self, short: str) -> list[Registered]:
        return [r for r in self.resources if r.short == short]

    def one(self, short: str) -> Registered:
        found = self.of_type(short)
        assert len(found) == 1, f"{short}: {[r.name for r in found]}"
        return found[0]

    def by_id(self, rid: str) -> Registered:
        (found,) = [r for r in self.resources if r.id == rid]
        return found


def is_secret(value: Any) -> bool:
    return isinstance(value, dict) and SECRET_SIG in value


def unwrap(value: Any) -> Any:
    """The value with every secret marker removed (to read secret inputs in assertions)."""
    if is_secret(value):
        return unwrap(value["value"])
    if isinstance(value, dict):
        return {k: unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap(v) for v in value]
    return value


def plain_strings(value: Any, path: str = ""):
    """Every string in ``value`` that is not under a secret marker, with its path."""
    if is_secret(value):
        return
    if isinstance(value, dict):
        for k, v in value.items():
            yield from plain_strings(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from plain_strings(v, f"{path}[{i}]")
    elif isinstance(value, str):
        yield path, value


CONFIG = StackConfig(
    location="northeurope",
    name_prefix="tcx",
    ticks_partitions=8,
    predictions_partitions=3,
    deadletter_partitions=2,
    symbols="binance:BTCUSDT,kraken:BTC/USD",
    ingestor_subscriptions="binance:BTCUSDT;kraken:BTC/USD",
    ingestor_image="tcxacr.azurecr.io/tickcast-ingestor:7",
    retrain_schedule="0 30 * * * *",
    promote_model_events=True,
    mysql_admin_login="tickadmin",
    mysql_admin_password=PASSWORD,
)


@dataclass
class Deployed:
    mocks: RecordingMocks
    exports: dict[str, str]

    def one(self, short: str) -> Registered:
        return self.mocks.one(short)

    def of_type(self, short: str) -> list[Registered]:
        return self.mocks.of_type(short)

    def app_settings(self) -> dict[str, Any]:
        site = self.one("web:WebApp").inputs["siteConfig"]
        pairs = site["appSettings"]
        names = [p["name"] for p in pairs]
        assert len(names) == len(set(names)), "duplicate app settings"
        return {p["name"]: p["value"] for p in pairs}

    def ingestor_env(self) -> dict[str, dict]:
        (container,) = self.one("app:ContainerApp").inputs["template"]["containers"]
        return {e["name"]: e for e in container["env"]}

    def secret(self, name: str) -> Registered:
        """The Key Vault secret named ``name``."""
        (found,) = [r for r in self.of_type("keyvault:Secret") if r.inputs["secretName"] == name]
        return found

    def identity(self, key: str) -> Registered:
        (found,) = [r for r in self.of_type("managedidentity:UserAssignedIdentity") if r.name.endswith(f"-id-{key}")]
        return found

    def account(self, kind: str = "host") -> Registered:
        """The host storage account (``<prefix>st``) or the models account (``<prefix>stm``)."""
        suffix = {"host": "st", "models": "stm"}[kind]
        (found,) = [r for r in self.of_type("storage:StorageAccount") if r.name.endswith(suffix)]
        return found

    def hub(self, name: str) -> Registered:
        (found,) = [r for r in self.of_type("eventhub:EventHub") if r.inputs["eventHubName"] == name]
        return found


def deploy(config: StackConfig) -> Deployed:
    """Build the stack for ``config`` under fresh mocks; return the mocks and the resolved exports."""
    mocks = RecordingMocks()
    pulumi.runtime.set_mocks(mocks, project="tickcast", stack="test", preview=False)
    exports: dict[str, str] = {}

    @pulumi.runtime.test
    def run():
        outputs = build(config)
        names = list(outputs.exports())
        return pulumi.Output.all(*outputs.exports().values()).apply(lambda values: exports.update(zip(names, values)))

    run()
    return Deployed(mocks, exports)


def default(name: str) -> str:
    value = SETTINGS[name][0]
    assert value, f"{name} has no default in shared.settings"
    return value


@pytest.fixture(scope="module", autouse=True)
def event_loop_for_pulumi():
    """Pulumi's mocks run on the thread's current event loop; an earlier test's ``asyncio.run`` leaves
    none (and Python 3.12+ makes none by default), so this module gets one of its own."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    yield loop
    asyncio.set_event_loop(None)
    loop.close()


@pytest.fixture(scope="module")
def built() -> Deployed:
    return deploy(CONFIG)


@pytest.fixture(scope="module")
def minimal() -> Deployed:
    """Defaults, no ingestor image yet, no Event Grid subscription yet."""
    return deploy(StackConfig(mysql_admin_password=PASSWORD))


# --- names shared with the code ------------------------------------------------------------------------


def test_fixed_names_are_the_app_settings_defaults():
    assert infra_config.TICKS_HUB == default("TICKS_HUB_NAME")
    assert infra_config.PREDICTIONS_HUB == default("PREDICTIONS_HUB_NAME")
    assert infra_config.DEADLETTER_HUB == default("DEADLETTER_HUB_NAME")
    assert infra_config.PREDICT_CONSUMER_GROUP == default("PREDICT_CONSUMER_GROUP")
    assert infra_config.ARCHIVE_CONSUMER_GROUP == default("ARCHIVE_CONSUMER_GROUP")
    assert infra_config.BROADCAST_CONSUMER_GROUP == default("BROADCAST_CONSUMER_GROUP")
    assert infra_config.MODELS_CONTAINER == default("MODELS_CONTAINER")
    assert infra_config.SIGNALR_HUB == default("SIGNALR_HUB_NAME")
    assert str(infra_config.INGESTOR_HEALTH_PORT) == default("INGESTOR_HEALTH_PORT")
    assert infra_config.INGESTOR_PUBLISHER == default("INGESTOR_PUBLISHER")
    assert infra_config.DEFAULT_SYMBOLS == default("SYMBOLS")
    assert infra_config.DEFAULT_INGESTOR_SUBSCRIPTIONS == default("INGESTOR_SUBSCRIPTIONS")
    assert infra_config.DEFAULT_RETRAIN_SCHEDULE == default("RETRAIN_SCHEDULE")
    assert (contract.FUNCTIONS, contract.INGESTOR) == (FUNCTIONS, INGESTOR)


# --- Event Hubs --------------------------------------------------------------------------------------------


def test_hub_names_and_partition_counts_follow_config(built):
    hubs = {r.inputs["eventHubName"]: r.inputs["partitionCount"] for r in built.of_type("eventhub:EventHub")}
    assert hubs == {"ticks": 8, "predictions": 3, "deadletter": 2}


def test_default_partition_counts(minimal):
    hubs = {r.inputs["eventHubName"]: r.inputs["partitionCount"] for r in minimal.of_type("eventhub:EventHub")}
    assert hubs == {"ticks": 4, "predictions": 2, "deadletter": 1}


def test_consumer_groups_sit_on_the_right_hubs(built):
    groups = {r.inputs["consumerGroupName"]: r.inputs["eventHubName"] for r in built.of_type("eventhub:ConsumerGroup")}
    assert groups == {
        default("PREDICT_CONSUMER_GROUP"): "ticks",
        default("ARCHIVE_CONSUMER_GROUP"): "predictions",
        default("BROADCAST_CONSUMER_GROUP"): "predictions",
        "external": "predictions",
    }


def test_namespace_is_standard_tls12_without_keys(built):
    ns = built.one("eventhub:Namespace").inputs
    assert ns["sku"] == {"name": "Standard", "tier": "Standard", "capacity": 1}
    assert ns["minimumTlsVersion"] == "1.2"
    assert ns["disableLocalAuth"] is True
    for r in built.of_type("eventhub:EventHub") + built.of_type("eventhub:ConsumerGroup"):
        assert r.inputs["namespaceName"] == built.one("eventhub:Namespace").name


# --- storage ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["host", "models"])
def test_storage_accounts_are_locked_down(built, kind):
    account = built.account(kind).inputs
    assert account["kind"] == "StorageV2"
    assert account["sku"] == {"name": "Standard_LRS"}
    assert account["minimumTlsVersion"] == "TLS1_2"
    assert account["enableHttpsTrafficOnly"] is True
    assert account["allowBlobPublicAccess"] is False
    assert account["allowSharedKeyAccess"] is False
    assert "isHnsEnabled" not in account  # blobs:path conditions need no hierarchical namespace
    assert account["location"] == CONFIG.location


def test_models_live_in_their_own_account_and_containers_are_private(built):
    """The host's Storage Blob Data Owner (host account) must not reach the model registry."""
    containers = {r.inputs["containerName"]: r.inputs for r in built.of_type("storage:BlobContainer")}
    assert {name: c["accountName"] for name, c in containers.items()} == {
        default("MODELS_CONTAINER"): built.account("models").name,
        default("STATE_CONTAINER"): built.account("models").name,
        infra_config.DEPLOYMENT_CONTAINER: built.account("host").name,
    }
    assert all(c["publicAccess"] == "None" for c in containers.values())


# --- the settings contract -------------------------------------------------------------------------------


@pytest.mark.parametrize("workload", [FUNCTIONS, INGESTOR])
def test_contract_covers_exactly_the_settings_of_each_workload(workload):
    """A setting added to shared/settings.py fails here until infra/ decides how to provide it."""
    assert set(contract.CONTRACT[workload]) == set(settings_for(workload))


@pytest.mark.parametrize("workload", [FUNCTIONS, INGESTOR])
def test_contract_rules_are_consistent_with_settings(workload):
    for name, rule in contract.CONTRACT[workload].items():
        setting = SETTINGS[name]
        if setting.secret:
            assert rule.handling in (Handling.SECRET_REFERENCE, Handling.REPLACED, Handling.UNUSED), name
        if rule.handling is Handling.DEFAULT:
            assert setting.default is not None, f"{name} is required where used: no default to accept"
        if rule.handling is Handling.SECRET_REFERENCE:
            assert setting.secret, f"{name} is not a secret: set it as a plain value"


def deployed_settings(deployed: Deployed, workload: str) -> dict[str, Any]:
    if workload == FUNCTIONS:
        return deployed.app_settings()
    return {name: e.get("value", e.get("secretRef")) for name, e in deployed.ingestor_env().items()}


@pytest.mark.parametrize("workload", [FUNCTIONS, INGESTOR])
def test_deployed_settings_follow_the_contract(built, workload):
    settings = deployed_settings(built, workload)
    for name, rule in contract.CONTRACT[workload].items():
        if rule.handling in (Handling.VALUE, Handling.SECRET_REFERENCE):
            assert name in settings, f"{workload}: {name} ({rule.handling.value}) is not set"
        else:
            assert name not in settings, f"{workload}: {name} ({rule.handling.value}) must stay unset"
        if rule.handling is Handling.REPLACED:
            assert rule.replaced_by in settings, f"{workload}: {name} replaced by unset {rule.replaced_by}"


def test_function_app_settings_point_at_the_right_resources(built):
    s = built.app_settings()
    ns = built.one("eventhub:Namespace").name
    account = built.account("host").name
    models = built.account("models").name
    host, predict, retrain, promote = (built.identity(k).outputs["clientId"]
                                       for k in ("host", "predict", "retrain", "promote"))
    signalr = built.one("signalrservice:SignalR").name
    vault = built.one("keyvault:Vault").name
    secret = built.secret(infra_config.MYSQL_URL_SECRET).inputs["secretName"]
    signing = built.secret(contract.MODEL_SIGNING_KEY_SECRET).inputs["secretName"]
    expected = {
        "TICKS_HUB_NAME": built.hub("ticks").inputs["eventHubName"],
        "PREDICTIONS_HUB_NAME": built.hub("predictions").inputs["eventHubName"],
        "DEADLETTER_HUB_NAME": built.hub("deadletter").inputs["eventHubName"],
        "PREDICT_CONSUMER_GROUP": "predict",
        "ARCHIVE_CONSUMER_GROUP": "archive",
        "BROADCAST_CONSUMER_GROUP": "broadcast",
        "EVENTHUB__fullyQualifiedNamespace": f"{ns}.servicebus.windows.net",
        "EVENTHUB__credential": "managedidentity",
        "EVENTHUB__clientId": host,
        "AZURE_CLIENT_ID": predict,
        "MODEL_STORAGE_RETRAIN_CLIENT_ID": retrain,
        "MODEL_STORAGE_PROMOTE_CLIENT_ID": promote,
        "MODEL_STORAGE__blobServiceUri": f"https://{models}.blob.core.windows.net/",
        "MODEL_STORAGE__queueServiceUri": f"https://{models}.queue.core.windows.net/",
        "MODEL_STORAGE__credential": "managedidentity",
        "MODEL_STORAGE__clientId": promote,
        "MODELS_CONTAINER": "models",
        "STATE_CONTAINER": "predict-state",
        "RETRAIN_SCHEDULE": CONFIG.retrain_schedule,
        "MYSQL_URL": f"@Microsoft.KeyVault(SecretUri=https://{vault}.vault.azure.net/secrets/{secret}/)",
        "MODEL_SIGNING_KEY": f"@Microsoft.KeyVault(SecretUri=https://{vault}.vault.azure.net/secrets/{signing}/)",
        "AzureSignalRConnectionString__serviceUri": f"https://{signalr}.service.signalr.net",
        "AzureSignalRConnectionString__credential": "managedidentity",
        "AzureSignalRConnectionString__clientId": host,
        "SIGNALR_HUB_NAME": "tickcast",
        "SYMBOLS": CONFIG.symbols,
        "AzureWebJobsStorage__blobServiceUri": f"https://{account}.blob.core.windows.net/",
        "AzureWebJobsStorage__queueServiceUri": f"https://{account}.queue.core.windows.net/",
        "AzureWebJobsStorage__tableServiceUri": f"https://{account}.table.core.windows.net/",
        "AzureWebJobsStorage__credential": "managedidentity",
        "AzureWebJobsStorage__clientId": host,
        "APPLICATIONINSIGHTS_CONNECTION_STRING": IKEY_CONNECTION,
        "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": f"ClientId={host};Authorization=AAD",
    }
    assert s == expected  # exactly these: nothing unplanned, nothing missing


#: App settings of "Flex Consumption plan deprecations"
#: (https://learn.microsoft.com/azure/azure-functions/functions-app-settings#flex-consumption-plan-deprecations).
FLEX_DEPRECATED_SETTINGS = {
    "ENABLE_ORYX_BUILD", "FUNCTIONS_EXTENSION_VERSION", "FUNCTIONS_WORKER_RUNTIME", "FUNCTIONS_WORKER_RUNTIME_VERSION",
    "FUNCTIONS_MAX_HTTP_CONCURRENCY", "FUNCTIONS_WORKER_PROCESS_COUNT", "FUNCTIONS_WORKER_DYNAMIC_CONCURRENCY_ENABLED",
    "SCM_DO_BUILD_DURING_DEPLOYMENT", "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING", "WEBSITE_CONTENTOVERVNET",
    "WEBSITE_CONTENTSHARE", "WEBSITE_DNS_SERVER", "WEBSITE_MAX_DYNAMIC_APPLICATION_SCALE_OUT",
    "WEBSITE_NODE_DEFAULT_VERSION", "WEBSITE_RUN_FROM_PACKAGE", "WEBSITE_SKIP_CONTENTSHARE_VALIDATION",
    "WEBSITE_VNET_ROUTE_ALL",
}
#: Site properties of the same list (camelCase as sent, at site or siteConfig level).
FLEX_DEPRECATED_PROPERTIES = {
    "alwaysOn", "containerSize", "dnsConfiguration", "ftpsState", "isReserved", "reserved", "isXenon",
    "javaVersion", "linuxFxVersion", "netFrameworkVersion", "powerShellVersion", "functionAppScaleLimit",
    "preWarmedInstanceCount", "use32BitWorkerProcess", "vnetBackupRestoreEnabled", "vnetContentShareEnabled",
    "vnetImagePullEnabled", "vnetRouteAllEnabled", "windowsFxVersion",
}


def test_flex_consumption_forbidden_settings_are_absent(built):
    forbidden = FLEX_DEPRECATED_SETTINGS | {"AzureWebJobsStorage"}  # a connection string: identity form instead
    assert not forbidden & set(built.app_settings())


def test_ingestor_environment_points_at_the_right_resources(built):
    env = built.ingestor_env()
    ns = built.one("eventhub:Namespace").name
    assert {k: e.get("value") for k, e in env.items()} == {
        "TICKS_HUB_NAME": "ticks",
        "DEADLETTER_HUB_NAME": "deadletter",
        "EVENTHUB__fullyQualifiedNamespace": f"{ns}.servicebus.windows.net",
        "AZURE_CLIENT_ID": built.identity("ingestor").outputs["clientId"],
        "INGESTOR_PUBLISHER": "eventhubs",
        "INGESTOR_SUBSCRIPTIONS": CONFIG.ingestor_subscriptions,
        "INGESTOR_HEALTH_PORT": "8080",
    }


def _function_sources() -> str:
    files = sorted((ROOT / "functions").glob("*.py")) + [ROOT / "function_app.py"]
    return "\n".join(p.read_text() for p in files if p.exists())


def test_every_binding_expression_of_the_functions_resolves(built):
    """%NAME% in a binding must be an app setting, or the host cannot index the function."""
    names = set(re.findall(r"%([A-Za-z_][A-Za-z0-9_]*)%", _function_sources()))
    assert names, "no binding expressions found in functions/"
    missing = names - set(built.app_settings())
    assert not missing, f"binding expressions without an app setting: {sorted(missing)}"


def test_every_binding_connection_of_the_functions_is_configured(built):
    """connection="X" (or connection_string_setting="X") needs X, or X__* identity settings."""
    source = _function_sources()
    pattern = r"\b(?:connection|connection_string_setting|connectionStringSetting)\s*=\s*[\"']([A-Za-z_]\w*)[\"']"
    names = set(re.findall(pattern, source))
    assert "EVENTHUB" in names
    settings = built.app_settings()
    for name in names:
        group = {k for k in settings if k.startswith(f"{name}__")}
        assert name in settings or {f"{name}__credential", f"{name}__clientId"} <= group, name
        assert name not in settings, f"{name} would be a connection string (a secret) in plain text"


# --- secrets -----------------------------------------------------------------------------------------


def test_no_secret_in_plain_text_in_any_input(built):
    leaks = [
        (r.typ, r.name, path)
        for r in built.mocks.resources
        for path, text in plain_strings(r.inputs)
        if any(secret in text for secret in SECRET_VALUES)
        or re.search(r"AccountKey=|SharedAccessKey=|AccessKey=|Password=", text)
    ]
    assert not leaks


def test_no_secret_reaches_an_app_setting_or_env_var_even_as_a_pulumi_secret(built):
    """A Pulumi secret is encrypted in state, but an app setting is readable in the portal: the
    settings must hold references, never the secret (so they are not secret-wrapped at all)."""
    site = built.one("web:WebApp").inputs["siteConfig"]
    (container,) = built.one("app:ContainerApp").inputs["template"]["containers"]
    for values in (site, container):
        assert not any(is_secret(v) for v in [values, *values.values()])
        texts = [t for _, t in plain_strings(unwrap(values))]
        assert not [t for t in texts if any(secret in t for secret in SECRET_VALUES)]


def test_secrets_are_passed_as_pulumi_secrets(built):
    server = built.one("dbformysql:Server").inputs
    assert is_secret(server["administratorLoginPassword"]) and unwrap(server["administratorLoginPassword"]) == PASSWORD
    for kv_secret in built.of_type("keyvault:Secret"):
        assert is_secret(kv_secret.inputs["properties"]), kv_secret.name
    env = built.one("app:ManagedEnvironment").inputs["appLogsConfiguration"]
    assert unwrap(env)["logAnalyticsConfiguration"]["sharedKey"] == SHARED_KEY
    sub = built.one("eventgrid:SystemTopicEventSubscription").inputs
    assert BLOBS_KEY in unwrap(sub["destination"])["endpointUrl"]


def test_mysql_url_secret_is_the_history_store_url(built):
    host = built.exports["mysql_host"]
    value = unwrap(built.secret(infra_config.MYSQL_URL_SECRET).inputs["properties"])["value"]
    assert value == (
        f"mysql+pymysql://tickadmin:Tick-Pa55word%21x@{host}:3306/tickcast"
        "?ssl_ca=/etc/ssl/certs/ca-certificates.crt"
    )
    from shared.storage.history import normalise_url

    url = normalise_url(value)
    assert (url.drivername, url.username, url.password, url.host, url.database) == (
        "mysql+pymysql", "tickadmin", PASSWORD, host, "tickcast"
    )


def test_key_vault_uses_rbac_and_the_tenant(built):
    props = built.one("keyvault:Vault").inputs["properties"]
    assert props["enableRbacAuthorization"] is True
    assert props["tenantId"] == TENANT
    assert sorted(r.inputs["secretName"] for r in built.of_type("keyvault:Secret")) == sorted(
        [infra_config.MYSQL_URL_SECRET, contract.MODEL_SIGNING_KEY_SECRET]
    )


def test_model_signing_key_is_generated_once_and_kept_in_key_vault_only(built):
    """MODEL_SIGNING_KEY reaches the Function App only as a Key Vault reference to the stack's
    generated key; the key itself is a Pulumi secret, long enough for HMAC-SHA256 (RFC 2104)."""
    (generated,) = built.of_type("pulumi-python:dynamic:Resource")
    assert generated.name == f"{CONFIG.name_prefix}-model-signing-key"
    value = unwrap(built.secret(contract.MODEL_SIGNING_KEY_SECRET).inputs["properties"])["value"]
    assert value == SIGNING_KEY
    assert built.app_settings()["MODEL_SIGNING_KEY"].startswith("@Microsoft.KeyVault(SecretUri=")
    from tickcast_infra.vault import _GeneratedKeyProvider
    from shared.lifecycle.registry.signing import MIN_KEY_BYTES

    provider = _GeneratedKeyProvider()
    made = [provider.create({}).outs["value"] for _ in range(2)]
    assert made[0] != made[1] and all(len(v.encode()) >= MIN_KEY_BYTES for v in made)
    assert provider.diff("id", {"value": made[0]}, {"value": None}).changes is False  # never rotated by an update


# --- identities and role assignments -----------------------------------------------------------------


FUNCTION_IDENTITIES = ("host", "predict", "retrain", "promote")
WORKLOADS = (*FUNCTION_IDENTITIES, "ingestor")


def role_assignments(deployed: Deployed) -> list[tuple[str, str, str, str | None]]:
    """(identity, role name, scope resource logical name, condition) of every role assignment."""
    principals = {deployed.identity(key).outputs["principalId"]: key for key in WORKLOADS}
    found = []
    prefix = f"/subscriptions/{SUBSCRIPTION}/providers/Microsoft.Authorization/roleDefinitions/"
    for r in deployed.of_type("authorization:RoleAssignment"):
        i = r.inputs
        assert i["principalType"] == "ServicePrincipal"
        assert i["roleDefinitionId"].startswith(prefix)
        assert ("condition" in i) == ("conditionVersion" in i) and i.get("conditionVersion", "2.0") == "2.0"
        role = roles.ROLE_NAMES[i["roleDefinitionId"].removeprefix(prefix)]
        found.append((principals[i["principalId"]], role, deployed.mocks.by_id(i["scope"]).name, i.get("condition")))
    return found


def assignments(deployed: Deployed) -> set[tuple[str, str, str]]:
    """(identity, role name, scope resource logical name) of every role assignment."""
    return {(who, role, scope) for who, role, scope, _ in role_assignments(deployed)}


def test_role_assignments_are_least_privilege(built):
    """The exact role set of every identity (infra/tickcast_infra/identity.py says why)."""
    p = CONFIG.name_prefix
    models = f"{p}-{default('MODELS_CONTAINER')}"
    assert sorted(role_assignments(built)) == sorted([
        ("host", "Azure Event Hubs Data Receiver", f"{p}-ticks", None),
        ("host", "Azure Event Hubs Data Receiver", f"{p}-predictions", None),
        ("host", "Azure Event Hubs Data Sender", f"{p}-predictions", None),
        ("host", "Azure Event Hubs Data Sender", f"{p}-deadletter", None),
        ("host", "Storage Blob Data Owner", f"{p}st", None),
        ("host", "Storage Queue Data Contributor", f"{p}st", None),
        ("host", "Storage Table Data Contributor", f"{p}st", None),
        ("host", "SignalR Service Owner", f"{p}-signalr", None),
        ("host", "Key Vault Secrets User", f"{p}-kv-mysql-url", None),
        ("host", "Key Vault Secrets User", f"{p}-kv-model-signing-key", None),
        ("host", "Monitoring Metrics Publisher", f"{p}-appi", None),
        ("predict", "Storage Blob Data Contributor", models, roles.path_condition(("checkpoints",))),
        ("predict", "Storage Blob Data Contributor", f"{p}-{default('STATE_CONTAINER')}", None),
        ("predict", "Azure Event Hubs Data Receiver", f"{p}-ticks", None),
        ("retrain", "Storage Blob Data Contributor", models, roles.path_condition(("candidates",))),
        ("promote", "Storage Blob Data Contributor", models, roles.path_condition(("pointer", "decisions"))),
        ("promote", "Storage Queue Data Contributor", f"{p}stm", None),
        ("ingestor", "Azure Event Hubs Data Sender", f"{p}-ticks", None),
        ("ingestor", "Azure Event Hubs Data Sender", f"{p}-deadletter", None),
        ("ingestor", "AcrPull", f"{p}acr", None),
    ])


def allows(condition: str, action: str, path: str) -> bool:
    """Evaluate a :func:`identity.path_condition` for one data action on one blob path.

    Implements the subset of "Azure role assignment condition format and syntax" it uses:
    ``!(ActionMatches{...})``, ``StringLike`` / ``StringNotLike`` (``*`` matches any characters,
    ``/`` included), ``AND``, ``OR`` and parentheses.
    """
    expr = re.sub(r"!\(ActionMatches\{'([^']+)'\}\)", lambda m: repr(m.group(1) != action), condition)
    attribute = re.escape(roles.BLOB_PATH)
    expr = re.sub(rf"{attribute} StringNotLike '([^']+)'", lambda m: repr(not fnmatchcase(path, m.group(1))), expr)
    expr = re.sub(rf"{attribute} StringLike '([^']+)'", lambda m: repr(fnmatchcase(path, m.group(1))), expr)
    expr = expr.replace(" AND ", " and ").replace(" OR ", " or ")
    assert re.fullmatch(r"[()TrueFalsendo ]+", expr), expr  # nothing left unevaluated
    return eval(expr)  # noqa: S307 - only True/False/and/or/parentheses remain (checked above)


WRITE = "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/write"
READ = "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read"
#: The registry's blob layout (shared/lifecycle/registry/): who may write each kind.
REGISTRY_BLOBS = {
    "BTCUSDT/candidates/20240101T000000-ab12/model.pkl": "retrain",
    "BTCUSDT/candidates/20240101T000000-ab12/metadata.json": "retrain",
    "BTCUSDT/current.json": "promote",
    "BTCUSDT/decisions/20240101T000000.json": "promote",
    "BTCUSDT/checkpoints/20240101T000000.pkl": "predict",
    # a key shaped to smuggle one kind into another gets nobody's write
    "x/candidates/y/current.json": None,
    "x/checkpoints/y/candidates/z": None,
    "x/checkpoints/current.json": None,
    "x/decisions/current.json": "promote",  # both of its own kinds
}


@pytest.mark.parametrize("path", sorted(REGISTRY_BLOBS))
def test_each_registry_path_is_writable_by_exactly_its_writer(built, path):
    models = f"{CONFIG.name_prefix}-{default('MODELS_CONTAINER')}"
    conditions = {who: c for who, role, scope, c in role_assignments(built)
                  if role == "Storage Blob Data Contributor" and scope == models}
    assert set(conditions) == {"predict", "retrain", "promote"}
    writers = {who for who, c in conditions.items() for action in roles.BLOB_WRITE_ACTIONS if allows(c, action, path)}
    assert writers == ({REGISTRY_BLOBS[path]} if REGISTRY_BLOBS[path] else set())
    assert all(allows(c, READ, path) for c in conditions.values())  # reads are not conditioned


def test_path_condition_refuses_unknown_kinds():
    with pytest.raises(ValueError):
        roles.path_condition(("models",))
    with pytest.raises(ValueError):
        roles.path_condition(())


def test_role_definition_ids_are_the_documented_built_in_roles():
    # From https://learn.microsoft.com/azure/role-based-access-control/built-in-roles
    assert roles.EVENT_HUBS_DATA_SENDER == "2b629674-e913-4c01-ae53-ef4638d8f975"
    assert roles.EVENT_HUBS_DATA_RECEIVER == "a638d3c7-ab3a-418d-83e6-5f17a39d4fde"
    assert roles.STORAGE_BLOB_DATA_OWNER == "b7e6dc6d-f1e8-4753-8033-0f276bb0955b"
    assert roles.STORAGE_BLOB_DATA_CONTRIBUTOR == "ba92f5b4-2d11-453d-a403-e96b0029c9fe"
    assert roles.SIGNALR_SERVICE_OWNER == "7e4f1700-ea5a-4f59-8f37-079cfe29dce3"
    assert roles.KEY_VAULT_SECRETS_USER == "4633458b-17de-408a-b874-0445c86b69e6"
    assert len(set(roles.ROLE_NAMES)) == len(roles.ROLE_NAMES) == 10


def test_workloads_run_as_their_own_identities(built):
    app = built.one("web:WebApp").inputs
    assert app["identity"] == {
        "type": "UserAssigned", "userAssignedIdentities": [built.identity(k).id for k in FUNCTION_IDENTITIES],
    }
    assert app["keyVaultReferenceIdentity"] == built.identity("host").id
    container = built.one("app:ContainerApp").inputs
    assert container["identity"] == {"type": "UserAssigned", "userAssignedIdentities": [built.identity("ingestor").id]}


def test_function_app_waits_for_its_role_assignments(built):
    # the mocks do not expose dependencies; check the resources were registered before the app
    order = [r.typ for r in built.mocks.resources]
    app_at = order.index("azure-native:web:WebApp")
    principals = {built.identity(k).outputs["principalId"] for k in FUNCTION_IDENTITIES}
    granted = [i for i, r in enumerate(built.mocks.resources)
               if r.short == "authorization:RoleAssignment" and r.inputs["principalId"] in principals]
    assert len(granted) == 17 and max(granted) < app_at


# --- Function App ----------------------------------------------------------------------------------------


def test_function_app_is_flex_consumption_python_311(built):
    plan = built.one("web:AppServicePlan").inputs
    assert plan["sku"] == {"name": "FC1", "tier": "FlexConsumption"}
    assert plan["reserved"] is True
    app = built.one("web:WebApp").inputs
    assert app["kind"] == "functionapp,linux"
    assert app["serverFarmId"] == built.one("web:AppServicePlan").id
    assert app["httpsOnly"] is True
    fac = app["functionAppConfig"]
    assert fac["runtime"] == {"name": "python", "version": "3.11"}
    assert fac["scaleAndConcurrency"] == {"instanceMemoryMB": 2048, "maximumInstanceCount": 40}
    account = built.account("host").name
    assert fac["deployment"]["storage"] == {
        "type": "blobContainer",
        "value": f"https://{account}.blob.core.windows.net/{infra_config.DEPLOYMENT_CONTAINER}",
        "authentication": {
            "type": "UserAssignedIdentity",
            "userAssignedIdentityResourceId": built.identity("host").id,
        },
    }


def test_function_app_sends_exactly_the_flex_valid_site_config(built):
    """ARM rejects Flex Consumption sites carrying deprecated site properties (error 51021:
    pulumi/pulumi-azure-native#4168 NetFrameworkVersion, microsoft/azure-pipelines-tasks#21032
    FtpsState...; the list: "Flex Consumption plan deprecations"). pulumi-azure-native injects
    netFrameworkVersion='v4.6' through web.SiteConfigArgs and isXenon/hyperV/... through web.WebApp:
    this is exactly what reaches the engine."""
    app = built.one("web:WebApp").inputs
    site = app["siteConfig"]
    assert {k: v for k, v in site.items() if k != "appSettings"} == {
        "minTlsVersion": "1.2", "scmMinTlsVersion": "1.2", "http20Enabled": True,
    }
    assert [set(pair) for pair in site["appSettings"]] == [{"name", "value"}] * len(site["appSettings"])
    assert set(app) == {
        "name", "resourceGroupName", "location", "kind", "serverFarmId", "httpsOnly", "identity",
        "keyVaultReferenceIdentity", "functionAppConfig", "siteConfig",
    }
    assert not FLEX_DEPRECATED_PROPERTIES & (set(app) | set(site))


def test_injected_site_defaults_are_dropped_only_when_left_at_their_default():
    from tickcast_infra.functionapp import INJECTED_SITE_DEFAULTS, strip_injected_site_defaults

    opts = pulumi.ResourceOptions()

    def run(typ: str, props: dict) -> dict | None:
        args = pulumi.ResourceTransformationArgs(None, typ, "x", props, opts)  # type: ignore[arg-type]
        result = strip_injected_site_defaults(args)
        return None if result is None else result.props

    assert run("azure-native:web:WebApp", {**INJECTED_SITE_DEFAULTS, "kind": "functionapp,linux"}) == {
        "kind": "functionapp,linux"
    }
    assert run("azure-native:web:WebApp", {"client_affinity_enabled": True}) == {"client_affinity_enabled": True}
    assert run("azure-native:web:AppServicePlan", {"is_xenon": False}) is None


def test_sdk_defaults_are_pinned_or_absent_elsewhere(built):
    """The same class of error on other resources: SDK-filled defaults that are wrong for the SKU."""
    storage = built.one("dbformysql:Server").inputs["storage"]
    assert storage == {"storageSizeGB": 20, "autoGrow": "Enabled", "autoIoScaling": "Enabled",
                       "logOnDisk": "Disabled", "storageRedundancy": "LocalRedundancy"}
    # enableFips exists for dedicated workload profiles only (Azure/azure-rest-api-specs#30418)
    assert built.one("app:ManagedEnvironment").inputs["workloadProfiles"] == [
        {"name": "Consumption", "workloadProfileType": "Consumption"}
    ]


def test_function_app_name_is_stable_and_unique_per_resource_group(built):
    group = built.one("resources:ResourceGroup")
    name = built.one("web:WebApp").inputs["name"]
    assert re.fullmatch(rf"{CONFIG.name_prefix}-func-[0-9a-f]{{8}}", name)
    assert name == f"{CONFIG.name_prefix}-func-{tickcast_infra.functionapp.unique_suffix(group.id)}"


# --- SignalR, MySQL, monitoring ---------------------------------------------------------------------------


def test_signalr_is_serverless_with_cors_for_the_dashboard(built):
    s = built.one("signalrservice:SignalR").inputs
    assert {"flag": "ServiceMode", "value": "Serverless"} in s["features"]
    assert s["cors"] == {"allowedOrigins": [built.exports["function_app_url"]]}
    assert s["disableLocalAuth"] is True
    assert s["kind"] == "SignalR"
    assert s["sku"] == {"name": "Standard_S1", "tier": "Standard", "capacity": 1}


def test_mysql_requires_tls_and_admits_azure_services(built):
    server = built.one("dbformysql:Server")
    assert server.inputs["version"] == "8.0.21"
    assert server.inputs["sku"] == {"name": "Standard_B1ms", "tier": "Burstable"}
    assert server.inputs["administratorLogin"] == "tickadmin"
    tls = built.one("dbformysql:Configuration").inputs
    assert (tls["configurationName"], tls["value"], tls["serverName"]) == ("require_secure_transport", "ON",
                                                                          server.name)
    rule = built.one("dbformysql:FirewallRule").inputs
    assert (rule["startIpAddress"], rule["endIpAddress"]) == ("0.0.0.0", "0.0.0.0")
    db = built.one("dbformysql:Database").inputs
    assert (db["databaseName"], db["charset"], db["serverName"]) == ("tickcast", "utf8mb4", server.name)


def test_stack_refuses_to_build_without_a_mysql_password():
    with pytest.raises(Exception, match="mysqlAdminPassword"):
        deploy(StackConfig())


def test_monitoring_is_workspace_based_with_entra_only_ingestion(built):
    workspace = built.one("operationalinsights:Workspace")
    assert workspace.inputs["retentionInDays"] == 30
    appi = built.one("applicationinsights:Component").inputs
    assert appi["workspaceResourceId"] == workspace.id
    assert appi["disableLocalAuth"] is True
    env = unwrap(built.one("app:ManagedEnvironment").inputs["appLogsConfiguration"])
    assert env["destination"] == "log-analytics"
    assert env["logAnalyticsConfiguration"]["customerId"] == workspace.outputs["customerId"]


# --- Event Grid ---------------------------------------------------------------------------------------------


def test_promote_model_subscription_feeds_the_blob_trigger(built):
    topic = built.one("eventgrid:SystemTopic").inputs
    assert topic["source"] == built.account("models").id
    assert topic["topicType"] == "Microsoft.Storage.StorageAccounts"
    sub = built.one("eventgrid:SystemTopicEventSubscription").inputs
    assert sub["systemTopicName"] == built.one("eventgrid:SystemTopic").name
    destination = unwrap(sub["destination"])
    host = built.exports["function_app_url"].removeprefix("https://")
    assert destination["endpointType"] == "WebHook"
    assert destination["endpointUrl"] == (
        f"https://{host}/runtime/webhooks/blobs?functionName=Host.Functions.promote_model&code={BLOBS_KEY}"
    )
    assert sub["filter"] == {
        "includedEventTypes": ["Microsoft.Storage.BlobCreated"],
        "subjectBeginsWith": "/blobServices/default/containers/models/blobs/",
        "subjectEndsWith": "/metadata.json",
        "isSubjectCaseSensitive": False,
    }


def test_event_filter_matches_the_promote_model_trigger_path():
    """The subscription's filters must admit every blob the trigger path matches."""
    from tickcast_infra import events

    paths = re.findall(r"blob_trigger\([^)]*?path\s*=\s*[\"']([^\"']+)[\"']", _function_sources(), re.DOTALL)
    assert len(paths) == 1, paths
    (path,) = paths
    assert path.startswith("%MODELS_CONTAINER%/") and path.endswith(events.TRIGGER_BLOB_SUFFIX)
    name = re.escape(events.PROMOTE_MODEL_FUNCTION)
    assert re.search(rf"function_name\([\"']{name}[\"']\)", _function_sources())


def test_without_the_flag_there_is_no_subscription_yet(minimal):
    assert minimal.of_type("eventgrid:SystemTopic")
    assert not minimal.of_type("eventgrid:SystemTopicEventSubscription")
    assert "azure-native:web:listWebAppHostKeys" not in minimal.mocks.calls


# --- ingestor ----------------------------------------------------------------------------------------------


def test_ingestor_container_app(built):
    app = built.one("app:ContainerApp").inputs
    assert app["managedEnvironmentId"] == built.one("app:ManagedEnvironment").id
    (container,) = app["template"]["containers"]
    assert container["image"] == CONFIG.ingestor_image
    assert app["template"]["scale"] == {"minReplicas": 1, "maxReplicas": 1}
    port = int(built.ingestor_env()["INGESTOR_HEALTH_PORT"]["value"])
    probes = {p["type"]: p["httpGet"] for p in container["probes"]}
    assert set(probes) >= {"Liveness"}
    assert all(p == {"path": "/healthz", "port": port} for p in probes.values())
    registry = built.one("containerregistry:Registry")
    assert app["configuration"]["registries"] == [
        {"server": registry.outputs["loginServer"], "identity": built.identity("ingestor").id}
    ]
    assert "ingress" not in app["configuration"]
    assert registry.inputs["adminUserEnabled"] is False


def test_ingestor_secret_settings_become_key_vault_secret_refs(monkeypatch):
    """If an ingestor setting ever is a secret, it reaches the app only as a Key Vault-backed secretRef."""
    rules = dict(contract.INGESTOR_APP)
    rules["EVENTHUB"] = contract.Rule(Handling.SECRET_REFERENCE, "test", value=lambda w: "Endpoint=sb://x;SharedAccessKey=" + PASSWORD, secret_name="eventhub-conn")
    monkeypatch.setitem(contract.CONTRACT, INGESTOR, rules)
    deployed = deploy(CONFIG)
    env = deployed.ingestor_env()
    assert env["EVENTHUB"] == {"name": "EVENTHUB", "secretRef": "eventhub"}
    (secret,) = deployed.one("app:ContainerApp").inputs["configuration"]["secrets"]
    vault = deployed.one("keyvault:Vault").name
    assert secret == {"name": "eventhub", "keyVaultUrl": f"https://{vault}.vault.azure.net/secrets/eventhub-conn/",
                      "identity": deployed.identity("ingestor").id}
    assert ("ingestor", "Key Vault Secrets User", f"{CONFIG.name_prefix}-kv-eventhub-conn") in assignments(deployed)
    assert not [p for r in deployed.mocks.resources for p, t in plain_strings(r.inputs) if PASSWORD in t]


def test_without_an_image_there_is_no_ingestor_app_yet(minimal):
    assert not minimal.of_type("app:ContainerApp")
    assert minimal.of_type("app:ManagedEnvironment") and minimal.of_type("containerregistry:Registry")
    assert "ingestor_app_name" not in minimal.exports


# --- whole stack -----------------------------------------------------------------------------------------


def test_every_resource_is_prefixed_and_in_the_resource_group(built):
    group = built.one("resources:ResourceGroup")
    assert group.inputs["location"] == CONFIG.location
    for r in built.mocks.resources:
        assert r.name.startswith(CONFIG.name_prefix), r.name
        if "resourceGroupName" in r.inputs:
            assert r.inputs["resourceGroupName"] == group.name, r.name
        if "location" in r.inputs:
            assert r.inputs["location"] == CONFIG.location, r.name


def test_resource_inventory(built):
    counts: dict[str, int] = {}
    for r in built.mocks.resources:
        counts[r.short] = counts.get(r.short, 0) + 1
    assert counts == {
        "resources:ResourceGroup": 1,
        "operationalinsights:Workspace": 1, "applicationinsights:Component": 1,
        "storage:StorageAccount": 2, "storage:BlobContainer": 3,
        "eventhub:Namespace": 1, "eventhub:EventHub": 3, "eventhub:ConsumerGroup": 4,
        "dbformysql:Server": 1, "dbformysql:Database": 1, "dbformysql:Configuration": 1,
        "dbformysql:FirewallRule": 1,
        "managedidentity:UserAssignedIdentity": 5, "signalrservice:SignalR": 1,
        "keyvault:Vault": 1, "keyvault:Secret": 2, "authorization:RoleAssignment": 20,
        "pulumi-python:dynamic:Resource": 1,
        "web:AppServicePlan": 1, "web:WebApp": 1,
        "eventgrid:SystemTopic": 1, "eventgrid:SystemTopicEventSubscription": 1,
        "containerregistry:Registry": 1, "app:ManagedEnvironment": 1, "app:ContainerApp": 1,
    }


def test_exports(built):
    host = f"{built.one('web:WebApp').inputs['name']}.azurewebsites.net"
    ns = built.one("eventhub:Namespace").name
    assert built.exports == {
        "resource_group_name": built.one("resources:ResourceGroup").name,
        "storage_account_name": built.account("host").name,
        "models_storage_account_name": built.account("models").name,
        "eventhub_namespace_name": ns,
        "eventhub_fully_qualified_namespace": f"{ns}.servicebus.windows.net",
        "function_app_name": built.one("web:WebApp").inputs["name"],
        "function_app_url": f"https://{host}",
        "negotiate_url": f"https://{host}/api/negotiate",
        "dashboard_url": f"https://{host}/api/dashboard/",
        "signalr_service_uri": f"https://{built.one('signalrservice:SignalR').name}.service.signalr.net",
        "mysql_host": f"{built.one('dbformysql:Server').name}.mysql.database.azure.com",
        "mysql_database": "tickcast",
        "key_vault_name": built.one("keyvault:Vault").name,
        "container_registry_login_server": built.one("containerregistry:Registry").outputs["loginServer"],
        "ingestor_app_name": built.one("app:ContainerApp").name,
    }


@pulumi.runtime.test
def test_fully_qualified_namespace_output():
    """The pattern of Pulumi's testing guide: assert inside ``apply`` on the resources' outputs."""
    pulumi.runtime.set_mocks(RecordingMocks(), project="tickcast", stack="test", preview=False)
    outputs: StackOutputs = build(StackConfig(mysql_admin_password=PASSWORD))

    def check(args):
        name, host = args
        assert host == f"{name}.servicebus.windows.net"

    return pulumi.Output.all(outputs.eventhub_namespace.name, outputs.eventhub_fully_qualified_namespace).apply(check)


# --- config ------------------------------------------------------------------------------------------


def test_main_builds_the_stack_from_pulumi_config():
    """``infra/__main__.py`` reads the project config and declares the stack (run, not imported)."""
    mocks = RecordingMocks()
    pulumi.runtime.set_mocks(mocks, project="tickcast", stack="test", preview=False)
    pulumi.runtime.set_all_config(
        {"tickcast:ticksPartitions": "12", "tickcast:mysqlAdminPassword": PASSWORD},
        secret_keys=["tickcast:mysqlAdminPassword"],
    )

    @pulumi.runtime.test
    def run_main():
        runpy.run_path(str(INFRA / "__main__.py"), run_name="__main__")

    try:
        run_main()
    finally:
        pulumi.runtime.set_all_config({})
    hubs = {r.inputs["eventHubName"]: r.inputs["partitionCount"] for r in mocks.of_type("eventhub:EventHub")}
    assert hubs["ticks"] == 12
    password = mocks.one("dbformysql:Server").inputs["administratorLoginPassword"]
    assert is_secret(password) and unwrap(password) == PASSWORD


def test_config_is_read_from_pulumi_config():
    pulumi.runtime.set_all_config({
        "tickcast:location": "uksouth", "tickcast:namePrefix": "tick2", "tickcast:ticksPartitions": "16",
        "tickcast:promoteModelEvents": "true", "tickcast:ingestorImage": "r.azurecr.io/i:1",
        "tickcast:mysqlAdminPassword": PASSWORD,
    }, secret_keys=["tickcast:mysqlAdminPassword"])
    try:
        config = StackConfig.from_pulumi_config(pulumi.Config("tickcast"))
    finally:
        pulumi.runtime.set_all_config({})
    assert config == StackConfig(location="uksouth", name_prefix="tick2", ticks_partitions=16,
                                 promote_model_events=True, ingestor_image="r.azurecr.io/i:1")
    assert isinstance(config.mysql_admin_password, pulumi.Output)


def test_config_defaults_match_pulumi_yaml():
    project = yaml.safe_load((INFRA / "Pulumi.yaml").read_text())
    assert project["name"] == "tickcast"
    assert project["runtime"]["name"] == "python"
    declared = project["config"]
    defaults = StackConfig()
    assert set(declared) == set(StackConfig.CONFIG_KEYS.values())
    for field, key in StackConfig.CONFIG_KEYS.items():
        if key in StackConfig.SECRET_KEYS:
            assert declared[key].get("secret") is True and "default" not in declared[key]
        else:
            assert declared[key]["default"] == getattr(defaults, field), key


@pytest.mark.parametrize(
    "kwargs",
    [
        {"ticks_partitions": 0},
        {"predictions_partitions": 33},
        {"deadletter_partitions": True},
        {"ticks_partitions": 2.0},
        {"name_prefix": "Tick"},
        {"name_prefix": "tick-cast"},
        {"name_prefix": "ab"},
        {"name_prefix": "abcdefghijkl"},
        {"location": " "},
        {"mysql_admin_password": "short"},
        {"mysql_admin_password": "alllowercaseletters"},
        {"mysql_admin_login": "admin"},
        {"signalr_sku": "Free"},
        {"function_instance_memory_mb": 1000},
        {"external_consumer_group": "predict"},
        {"symbols": "BTCUSDT"},
        {"retrain_schedule": "0 * * * *"},
        {"ingestor_image": "tickcast-ingestor"},
        {"promote_model_events": "yes"},
    ],
)
def test_bad_config_is_refused(kwargs):
    with pytest.raises(ValueError):
        StackConfig(**kwargs)


@pytest.mark.parametrize("module", ["config", "database", "events", "functionapp", "identity"])
def test_module_doctests(module):
    mod = __import__(f"tickcast_infra.{module}", fromlist=["_"])
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
