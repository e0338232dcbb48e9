"""The stack's configuration: every ``pulumi config`` key of the project, read once into :class:`StackConfig`.

Keys live in the project's namespace (``pulumi config set ticksPartitions 8`` sets
``tickcast:ticksPartitions``) and are declared, with the same defaults, in ``infra/Pulumi.yaml``
(``tests/unit/test_infra.py`` checks that both agree). The one secret, ``mysqlAdminPassword``, has no
default: set it with ``pulumi config set --secret mysqlAdminPassword ...``.

Names the application code refers to are fixed here as constants. They must equal the defaults
of the matching settings in ``shared/settings.py`` (checked by the tests); they are not imported
from there so that the Pulumi program runs from ``infra/`` on its own.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import ClassVar

import pulumi

# --- names the application code refers to (defaults in shared.settings.SETTINGS) -----------------
TICKS_HUB = "ticks"
PREDICTIONS_HUB = "predictions"
DEADLETTER_HUB = "deadletter"
PREDICT_CONSUMER_GROUP = "predict"
ARCHIVE_CONSUMER_GROUP = "archive"
BROADCAST_CONSUMER_GROUP = "broadcast"
MODELS_CONTAINER = "models"
STATE_CONTAINER = "predict-state"
SIGNALR_HUB = "tickcast"
INGESTOR_HEALTH_PORT = 8080
INGESTOR_PUBLISHER = "eventhubs"
#: Defaults of SYMBOLS, INGESTOR_SUBSCRIPTIONS and RETRAIN_SCHEDULE in shared/settings.py.
DEFAULT_SYMBOLS = "binance:BTCUSDT,binance:ETHUSDT,coinbase:BTC-USD,kraken:BTC/USD"
DEFAULT_INGESTOR_SUBSCRIPTIONS = "binance:BTCUSDT,ETHUSDT;coinbase:BTC-USD;kraken:BTC/USD"
DEFAULT_RETRAIN_SCHEDULE = "0 0 * * * *"

# --- names only infra/ uses ----------------------------------------------------------------------
#: Blob container holding the Flex Consumption app's deployment packages.
DEPLOYMENT_CONTAINER = "app-package"
#: Key Vault secret holding MYSQL_URL (read by the Function App through a Key Vault reference).
MYSQL_URL_SECRET = "mysql-url"
#: HTTP routes of the function app (functions/dashboard.py: ``negotiate`` (POST) and ``dashboard/{*path}``
#: under the default ``api`` prefix; the trailing slash keeps the page's relative asset URLs inside it).
NEGOTIATE_PATH = "/api/negotiate"
DASHBOARD_PATH = "/api/dashboard/"
#: CA bundle of the Functions Linux image (Debian); it holds the roots Azure MySQL certificates
#: chain to (DigiCert Global Root G2, Microsoft RSA Root CA 2017).
MYSQL_SSL_CA = "/etc/ssl/certs/ca-certificates.crt"

#: Event Hubs Standard tier: 1 to 32 partitions per hub, fixed once the hub exists.
MAX_PARTITIONS = 32
#: Flex Consumption instance sizes (MB), https://learn.microsoft.com/azure/azure-functions/flex-consumption-plan
FLEX_INSTANCE_MEMORY_MB = (512, 2048, 4096)
SIGNALR_SKUS = ("Free_F1", "Standard_S1", "Premium_P1")
#: Messages per unit per day and concurrent connections per unit of each SignalR SKU ("Azure SignalR
#: Service pricing" / "Azure SignalR Service limits": Free 20,000 messages/day and 20 connections;
#: Standard and Premium 1,000,000 messages/day and 1,000 connections per unit).
SIGNALR_QUOTAS = {
    "Free_F1": (20_000, 20),
    "Standard_S1": (1_000_000, 1_000),
    "Premium_P1": (1_000_000, 1_000),
}
#: Logins Azure Database for MySQL refuses for the administrator.
_RESERVED_LOGINS = {"azure_superuser", "admin", "administrator", "root", "guest", "public", "sa"}

_PREFIX = re.compile(r"[a-z][a-z0-9]{2,10}")
_LOGIN = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,31}")
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,49}")
_SYMBOL = re.compile(r"[A-Za-z0-9-]+:[^,:;\s]+")


@dataclass(frozen=True)
class StackConfig:
    """The stack's settings; defaults equal those declared in ``infra/Pulumi.yaml``.

    ``name_prefix`` is 3-11 lowercase letters and digits starting with a letter, so that the
    storage account's auto-generated name (prefix + ``st`` + 8 random characters) stays
    within Azure's 3-24 lowercase alphanumerics.

    ``signalr_sku`` defaults to ``Standard_S1``: 1,000,000 messages and 1,000 connections per unit
    per day (:data:`SIGNALR_QUOTAS`; each 2 KB of a message counts as one message, and a message
    sent to N clients counts N times). The budget: four symbols' throttled prices (one per symbol
    per ``PRICE_UPDATE_MS`` = 1 s) are ~4 messages/s per viewer, i.e. ~345,600 a day per viewer, plus
    one prediction and one bar per symbol per minute (~11,500 a day per viewer): ``Standard_S1``
    carries about 2.8 viewers around the clock (or ~67 viewer-hours a day) per unit; ``Free_F1``
    (20,000 a day, 20 connections) would be spent by one viewer in about 1.3 hours. When the quota
    is spent SignalR refuses further messages until the day ends; only the ``broadcast`` function
    is affected (it has its own consumer group on the predictions hub), never ``predict``. Raise
    the unit count or ``PRICE_UPDATE_MS`` for more viewers.

    ``ingestor_image`` empty means "no ingestor yet": the Container Apps environment and the
    registry are declared, the ingestor Container App only once an image was pushed and set.
    ``promote_model_events`` creates the Event Grid subscription of ``promote_model``; it needs
    the function code published first (Event Grid validates the webhook when it subscribes).

    >>> StackConfig(ticks_partitions=8).ticks_partitions
    8
    >>> StackConfig(ticks_partitions=0)
    Traceback (most recent call last):
    ...
    ValueError: ticksPartitions=0 must be an integer in 1..32
    """

    location: str = "westeurope"
    name_prefix: str = "tickcast"
    ticks_partitions: int = 4
    predictions_partitions: int = 2
    deadletter_partitions: int = 1
    eventhub_capacity: int = 1
    external_consumer_group: str = "external"
    symbols: str = DEFAULT_SYMBOLS
    ingestor_subscriptions: str = DEFAULT_INGESTOR_SUBSCRIPTIONS
    ingestor_image: str = ""
    retrain_schedule: str = DEFAULT_RETRAIN_SCHEDULE
    signalr_sku: str = "Standard_S1"
    mysql_sku: str = "Standard_B1ms"
    mysql_tier: str = "Burstable"
    mysql_version: str = "8.0.21"
    mysql_storage_gb: int = 20
    mysql_admin_login: str = "tickcast"
    mysql_database: str = "tickcast"
    function_instance_memory_mb: int = 2048
    function_maximum_instances: int = 40
    log_retention_days: int = 30
    promote_model_events: bool = False
    #: Secret; a plain ``str`` in tests, a secret ``pulumi.Output`` when read from the stack config.
    mysql_admin_password: pulumi.Input[str] | None = field(default=None, repr=False, compare=False)

    #: dataclass field -> key in the project's Pulumi config namespace
    CONFIG_KEYS: ClassVar[Mapping[str, str]] = {
        "location": "location",
        "name_prefix": "namePrefix",
        "ticks_partitions": "ticksPartitions",
        "predictions_partitions": "predictionsPartitions",
        "deadletter_partitions": "deadletterPartitions",
        "eventhub_capacity": "eventhubCapacity",
        "external_consumer_group": "externalConsumerGroup",
        "symbols": "symbols",
        "ingestor_subscriptions": "ingestorSubscriptions",
        "ingestor_image": "ingestorImage",
        "retrain_schedule": "retrainSchedule",
        "signalr_sku": "signalrSku",
        "mysql_sku": "mysqlSku",
        "mysql_tier": "mysqlTier",
        "mysql_version": "mysqlVersion",
        "mysql_storage_gb": "mysqlStorageGb",
        "mysql_admin_login": "mysqlAdminLogin",
        "mysql_database": "mysqlDatabase",
        "function_instance_memory_mb": "functionInstanceMemoryMb",
        "function_maximum_instances": "functionMaximumInstances",
        "log_retention_days": "logRetentionDays",
        "promote_model_events": "promoteModelEvents",
        "mysql_admin_password": "mysqlAdminPassword",
    }
    #: keys whose value is a secret (read with ``require_secret``)
    SECRET_KEYS: ClassVar[frozenset[str]] = frozenset({"mysqlAdminPassword"})

    def __post_init__(self) -> None:
        if not self.location.strip():
            raise ValueError("location must not be empty")
        if not _PREFIX.fullmatch(self.name_prefix):
            raise ValueError(
                f"namePrefix={self.name_prefix!r} must be 3-11 lowercase letters and digits, "
                "starting with a letter"
            )
        for name in ("ticks_partitions", "predictions_partitions", "deadletter_partitions"):
            self._check_int(name, 1, MAX_PARTITIONS)
        self._check_int("eventhub_capacity", 1, 40)
        self._check_int("mysql_storage_gb", 20, 16384)
        self._check_int("function_maximum_instances", 40, 1000)
        self._check_int("log_retention_days", 30, 730)
        if self.function_instance_memory_mb not in FLEX_INSTANCE_MEMORY_MB or isinstance(
            self.function_instance_memory_mb, bool
        ):
            raise ValueError(f"functionInstanceMemoryMb must be one of {FLEX_INSTANCE_MEMORY_MB}")
        if not isinstance(self.promote_model_events, bool):
            raise ValueError("promoteModelEvents must be true or false")  # noqa: TRY004 - a config error
        if self.signalr_sku not in SIGNALR_SKUS:
            raise ValueError(f"signalrSku={self.signalr_sku!r} must be one of {SIGNALR_SKUS}")
        for name in ("external_consumer_group", "mysql_database"):
            if not _NAME.fullmatch(getattr(self, name)):
                raise ValueError(f"{self.CONFIG_KEYS[name]}={getattr(self, name)!r} is not a valid name")
        if self.external_consumer_group in (
            PREDICT_CONSUMER_GROUP, ARCHIVE_CONSUMER_GROUP, BROADCAST_CONSUMER_GROUP, "$Default"
        ):
            raise ValueError("externalConsumerGroup must differ from the functions' consumer groups")
        if not _LOGIN.fullmatch(self.mysql_admin_login) or self.mysql_admin_login.lower() in _RESERVED_LOGINS:
            raise ValueError(f"mysqlAdminLogin={self.mysql_admin_login!r} is not an allowed MySQL admin login")
        if not all(_SYMBOL.fullmatch(e.strip()) for e in self.symbols.split(",")):
            raise ValueError(f"symbols={self.symbols!r} must be comma-separated exchange:SYMBOL pairs")
        if not self.ingestor_subscriptions.strip():
            raise ValueError("ingestorSubscriptions must not be empty")
        if len(self.retrain_schedule.split()) != 6:
            raise ValueError(f"retrainSchedule={self.retrain_schedule!r} must be a 6-field NCRONTAB expression")
        if self.ingestor_image and (" " in self.ingestor_image or ":" not in self.ingestor_image.split("/")[-1]
                                    and "@" not in self.ingestor_image):
            raise ValueError(f"ingestorImage={self.ingestor_image!r} must be a full reference with a tag or digest")
        if isinstance(self.mysql_admin_password, str):
            check_mysql_password(self.mysql_admin_password)

    def _check_int(self, name: str, low: int, high: int) -> None:
        value = getattr(self, name)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(f"{self.CONFIG_KEYS[name]}={value!r} must be an integer in {low}..{high}")

    @classmethod
    def from_pulumi_config(cls, config: pulumi.Config | None = None) -> StackConfig:
        """Read the settings from ``config`` (default: the project's ``pulumi.Config()``).

        Unset keys take the dataclass defaults; the password is read as a secret
        (``require_secret``: the stack refuses to deploy without it). A non-integer count raises
        ``pulumi.ConfigTypeError``, an out-of-range value ``ValueError``.
        """
        config = pulumi.Config() if config is None else config
        defaults = cls()
        types = {f.name: f.type for f in fields(cls)}
        values: dict[str, object] = {}
        for name, key in cls.CONFIG_KEYS.items():
            if key in cls.SECRET_KEYS:
                values[name] = config.require_secret(key)
                continue
            default = getattr(defaults, name)
            if types[name] in ("bool", bool) or isinstance(default, bool):
                value: object = config.get_bool(key)
            elif isinstance(default, int):
                value = config.get_int(key)
            else:
                value = config.get(key)
            values[name] = default if value is None else value
        return cls(**values)  # type: ignore[arg-type]


def check_mysql_password(password: str) -> None:
    """Azure Database for MySQL's rule: 8-128 characters from at least three of upper case,
    lower case, digits and symbols.

    >>> check_mysql_password("Tick-cast-2024")
    >>> check_mysql_password("short")
    Traceback (most recent call last):
    ...
    ValueError: mysqlAdminPassword must have 8-128 characters from at least 3 of: upper, lower, digit, symbol
    """
    classes = sum(
        any(test(c) for c in password)
        for test in (str.isupper, str.islower, str.isdigit, lambda c: not c.isalnum())
    )
    if not 8 <= len(password) <= 128 or classes < 3:
        raise ValueError(
            "mysqlAdminPassword must have 8-128 characters from at least 3 of: upper, lower, digit, symbol"
        )
