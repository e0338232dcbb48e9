"""The live ingestor's configuration: read once, from the environment, with defaults from SETTINGS.

Every name read here is an entry of :data:`shared.settings.SETTINGS` with ``used_by``
containing ``ingestor`` (app settings of the Container App), parsed by
:class:`shared.settings.SettingsReader`; the command line of ``python -m ingestor live``
may override them (:meth:`IngestorConfig.replace`).

Subscriptions (``INGESTOR_SUBSCRIPTIONS``) are ``;``-separated groups
``source:SYMBOL,SYMBOL``; each group is one websocket connection. Sources:

=================  ===============  ===========================================
source             tick exchange    default endpoint
=================  ===============  ===========================================
``binance``        ``binance``      ``wss://stream.binance.com:9443/stream``
``binance-usdm``   ``binance-usdm`` ``wss://fstream.binance.com/stream``
``coinbase``       ``coinbase``     ``wss://ws-feed.exchange.coinbase.com``
``kraken``         ``kraken``       ``wss://ws.kraken.com/v2``
=================  ===============  ===========================================

``binance-futures`` is accepted as an alias of ``binance-usdm``. Binance symbols are
written as Binance does (``BTCUSDT``), Coinbase products as ``BTC-USD``, Kraken v2
pairs as ``BTC/USD``; all are upper-cased.

Examples
--------
>>> parse_subscriptions("binance:btcusdt,ETHUSDT; kraken:BTC/USD")
(Subscription(source='binance', symbols=('BTCUSDT', 'ETHUSDT')), Subscription(source='kraken', symbols=('BTC/USD',)))
>>> IngestorConfig.from_env({}).subscriptions[0].symbols
('BTCUSDT', 'ETHUSDT')
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from shared.settings import SettingsError, SettingsReader

__all__ = [
    "SOURCES",
    "SOURCE_ALIASES",
    "IngestorConfig",
    "Subscription",
    "parse_source_urls",
    "parse_subscriptions",
]

SOURCES = ("binance", "binance-usdm", "coinbase", "kraken")
"""Source names understood in subscriptions; each is also the exchange id of its ticks."""

SOURCE_ALIASES = {
    "binance-futures": "binance-usdm",
    "binance-spot": "binance",
    "coinbase-exchange": "coinbase",
}
"""Accepted alternative spellings of :data:`SOURCES`."""

PUBLISHERS = ("eventhubs", "kafka")


class Subscription(NamedTuple):
    """One websocket connection: a source and the symbols it subscribes to (upper case)."""

    source: str
    symbols: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.source}:{','.join(self.symbols)}"


def _source_name(text: str) -> str:
    name = text.strip().lower()
    name = SOURCE_ALIASES.get(name, name)
    if name not in SOURCES:
        raise SettingsError(f"unknown ingestor source {text.strip()!r}; expected one of {SOURCES}")
    return name


def parse_subscriptions(text: str) -> tuple[Subscription, ...]:
    """Parse ``"source:SYM,SYM;source:SYM"`` into :class:`Subscription` groups.

    Empty groups are skipped; symbols are upper-cased and de-duplicated per group.

    Raises
    ------
    SettingsError
        A group without ``source:``, an unknown source, a group with no symbol, or no
        group at all.
    """
    groups: list[Subscription] = []
    for group in text.split(";"):
        group = group.strip()
        if not group:
            continue
        source, sep, rest = group.partition(":")
        if not sep:
            raise SettingsError(f"INGESTOR_SUBSCRIPTIONS group {group!r} is not source:SYMBOL,SYMBOL")
        symbols: list[str] = []
        for sym in rest.split(","):
            sym = sym.strip().upper()
            if sym and sym not in symbols:
                symbols.append(sym)
        if not symbols:
            raise SettingsError(f"INGESTOR_SUBSCRIPTIONS group {group!r} names no symbol")
        groups.append(Subscription(_source_name(source), tuple(symbols)))
    if not groups:
        raise SettingsError("INGESTOR_SUBSCRIPTIONS names no subscription")
    return tuple(groups)


def parse_source_urls(text: str) -> dict[str, str]:
    """Parse ``"source=ws://host:port/path,source=..."`` into a dict (endpoint overrides).

    >>> parse_source_urls("binance=ws://127.0.0.1:9000/stream")
    {'binance': 'ws://127.0.0.1:9000/stream'}

    Raises
    ------
    SettingsError
        An entry without ``=``, an unknown source, or a URL not starting with ws:// or wss://.
    """
    urls: dict[str, str] = {}
    for entry in text.split(","):
        entry = entry.strip()
        if not entry:
            continue
        source, sep, url = entry.partition("=")
        url = url.strip()
        if not sep or not url.startswith(("ws://", "wss://")):
            raise SettingsError(f"INGESTOR_SOURCE_URLS entry {entry!r} is not source=ws[s]://...")
        urls[_source_name(source)] = url
    return urls


@dataclass(frozen=True)
class IngestorConfig:
    """Typed settings of the live ingestor (durations in seconds).

    Build it with :meth:`from_env`; :meth:`replace` applies command-line overrides.
    Attribute names follow the SETTINGS names they come from.
    """

    publisher: str = "eventhubs"
    subscriptions: tuple[Subscription, ...] = ()
    kafka_bootstrap_servers: str = "localhost:9092"
    buffer_events: int = 100_000
    health_port: int = 8080
    stale_seconds: float = 30.0
    eventhub_connection: str | None = None
    eventhub_namespace: str | None = None
    azure_client_id: str | None = None
    ticks_hub: str = "ticks"
    deadletter_hub: str = "deadletter"
    source_urls: dict[str, str] = field(default_factory=dict)
    heartbeat_seconds: float = 30.0
    ping_interval_seconds: float = 20.0
    ping_timeout_seconds: float = 20.0
    backoff_initial_seconds: float = 0.5
    backoff_max_seconds: float = 30.0
    buffer_wait_seconds: float = 1.0
    shutdown_seconds: float = 25.0
    stats_seconds: float = 60.0
    kafka_config: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> IngestorConfig:
        """Read the ingestor's settings from ``environ`` (default ``os.environ``).

        Raises
        ------
        SettingsError
            An unknown publisher, a malformed subscription or URL list, a number that
            does not parse or is out of range.
        """
        read = SettingsReader(environ)
        config = cls(
            publisher=read.choice("INGESTOR_PUBLISHER", PUBLISHERS),
            subscriptions=parse_subscriptions(read.text("INGESTOR_SUBSCRIPTIONS") or ""),
            kafka_bootstrap_servers=read.text("KAFKA_BOOTSTRAP_SERVERS") or "",
            buffer_events=read.integer("INGESTOR_BUFFER_EVENTS", positive=True),
            health_port=read.port("INGESTOR_HEALTH_PORT"),
            stale_seconds=read.number("INGESTOR_STALE_SECONDS", positive=True),
            eventhub_connection=read.text("EVENTHUB"),
            eventhub_namespace=read.text("EVENTHUB__fullyQualifiedNamespace"),
            azure_client_id=read.text("AZURE_CLIENT_ID"),
            ticks_hub=read.text("TICKS_HUB_NAME") or "",
            deadletter_hub=read.text("DEADLETTER_HUB_NAME") or "",
            source_urls=parse_source_urls(read.text("INGESTOR_SOURCE_URLS") or ""),
            heartbeat_seconds=read.number("INGESTOR_HEARTBEAT_SECONDS", positive=True),
            ping_interval_seconds=read.number("INGESTOR_PING_INTERVAL_SECONDS", positive=True),
            ping_timeout_seconds=read.number("INGESTOR_PING_TIMEOUT_SECONDS", positive=True),
            backoff_initial_seconds=read.number("INGESTOR_BACKOFF_INITIAL_SECONDS"),
            backoff_max_seconds=read.number("INGESTOR_BACKOFF_MAX_SECONDS"),
            buffer_wait_seconds=read.number("INGESTOR_BUFFER_WAIT_SECONDS"),
            shutdown_seconds=read.number("INGESTOR_SHUTDOWN_SECONDS", positive=True),
            stats_seconds=read.number("INGESTOR_STATS_SECONDS"),
        )
        config.check(complete=False)
        return config

    def check(self, *, complete: bool = True) -> None:
        """Raise :class:`SettingsError` for values or combinations that cannot work.

        With ``complete`` (the default), also require the chosen publisher's connection
        settings; :meth:`from_env` skips that so command-line options can still supply them.
        """
        if self.health_port > 65535:
            raise SettingsError(f"INGESTOR_HEALTH_PORT={self.health_port} is not a TCP port")
        if self.backoff_max_seconds < self.backoff_initial_seconds:
            raise SettingsError("INGESTOR_BACKOFF_MAX_SECONDS must be >= INGESTOR_BACKOFF_INITIAL_SECONDS")
        if self.publisher not in PUBLISHERS:
            raise SettingsError(f"INGESTOR_PUBLISHER={self.publisher!r} must be one of {PUBLISHERS}")
        if not complete:
            return
        if self.publisher == "kafka" and not self.kafka_bootstrap_servers:
            raise SettingsError("INGESTOR_PUBLISHER=kafka needs KAFKA_BOOTSTRAP_SERVERS")
        if self.publisher == "eventhubs" and not (self.eventhub_connection or self.eventhub_namespace):
            raise SettingsError(
                "INGESTOR_PUBLISHER=eventhubs needs EVENTHUB (connection string) or "
                "EVENTHUB__fullyQualifiedNamespace (managed identity)"
            )

    def replace(self, **changes: Any) -> IngestorConfig:
        """A copy with ``changes`` applied (``None`` values are ignored), values checked again."""
        config = dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})
        config.check(complete=False)
        return config

    def url_for(self, source: str, default: str) -> str:
        """The websocket endpoint of ``source``: an ``INGESTOR_SOURCE_URLS`` override or ``default``."""
        return self.source_urls.get(source, default)
