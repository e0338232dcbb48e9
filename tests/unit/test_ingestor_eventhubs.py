"""Event Hubs publishing, offline: batch splitting against the SDK's real EventDataBatch size limits,
and client construction from a connection string or a managed identity (no network is used)."""

from __future__ import annotations

import asyncio
import json

import pytest
from azure.eventhub import EventData, EventDataBatch

from ingestor.config import IngestorConfig
from ingestor.publishers import make_publisher
from ingestor.publishers.eventhubs import RETRY_OPTIONS, EventHubsTickPublisher, build_batches
from shared.contracts.events import Tick, decode_tick, encode
from shared.settings import SettingsError

SYMBOLS = ("BTCUSDT", "ETHUSDT", "BTC/USD")


def ticks(n: int) -> list[Tick]:
    return [
        Tick(
            "binance",
            SYMBOLS[i % 3],
            1000 + i,
            60_000 + i / 100,
            0.001 * (i % 13),
            "buy" if i % 2 else "sell",
            1_723_161_255_000 + i,
            1_723_161_256_000 + i,
        )
        for i in range(n)
    ]


def items(ts: list[Tick]) -> list[tuple[str, bytes, Tick]]:
    return [(t.symbol, encode(t), t) for t in ts]


def batch_factory(max_size: int | None, made: list[EventDataBatch]):
    async def new_batch(key: str) -> EventDataBatch:
        batch = EventDataBatch(max_size_in_bytes=max_size, partition_key=key)
        made.append(batch)
        return batch

    return new_batch


def event_size(body: bytes) -> int:
    """Bytes one event adds to a non-empty batch (the SDK's own accounting)."""
    b = EventDataBatch(max_size_in_bytes=1 << 20, partition_key="BTCUSDT")
    b.add(EventData(body))
    before = b.size_in_bytes
    b.add(EventData(body))
    return b.size_in_bytes - before


@pytest.mark.parametrize("limit", [2048, 16_384, None])  # None = the SDK default, 1 MiB
def test_batches_respect_the_sdk_size_limit_and_keep_order_per_key(limit):
    sent = ticks(3000)
    made: list[EventDataBatch] = []
    batches, rejected = asyncio.run(build_batches(items(sent), batch_factory(limit, made)))
    assert not rejected
    assert len(made) == len(batches)
    for kb in batches:
        assert kb.batch.size_in_bytes <= kb.batch.max_size_in_bytes == (limit or 1024 * 1024)
        assert len(kb.batch) == len(kb.events) > 0
        assert {t.symbol for t in kb.events} == {kb.partition_key}
        assert kb.batch._partition_key == kb.partition_key  # what send_batch routes by
    # every event exactly once, each key's events in their original order
    for symbol in SYMBOLS:
        got = [t for kb in batches if kb.partition_key == symbol for t in kb.events]
        assert got == [t for t in sent if t.symbol == symbol]
    # batches are full: the next event of the same key would not have fitted
    size = event_size(encode(sent[0]))
    by_key: dict[str, list] = {}
    for kb in batches:
        by_key.setdefault(kb.partition_key, []).append(kb)
    for chain in by_key.values():
        for kb in chain[:-1]:
            assert kb.batch.size_in_bytes + size > kb.batch.max_size_in_bytes - 8
    if limit == 2048:
        total = sum(kb.batch.size_in_bytes for kb in batches)
        assert len(batches) >= total // 2048 > 50  # really split


def test_batch_contents_decode_back_to_the_ticks():
    sent = ticks(300)
    batches, _ = asyncio.run(build_batches(items(sent), batch_factory(4096, [])))
    for kb in batches:
        bodies = [b"".join(e.body) for e in kb.batch._internal_events]
        assert [decode_tick(b) for b in bodies] == kb.events
        assert all(e.content_type == "application/json" for e in kb.batch._internal_events)


def test_event_too_large_for_an_empty_batch_is_rejected_not_fatal():
    sent = ticks(30)
    huge = Tick("binance", "X" * 5000, 1, 1.0, 1.0, "buy", 1, 1)
    mixed = sent[:10] + [huge] + sent[10:]
    batches, rejected = asyncio.run(build_batches(items(mixed), batch_factory(2048, [])))
    assert [t for t, _ in rejected] == [huge] and "exceeds the batch limit of 2048 bytes" in rejected[0][1]
    assert sorted((t for kb in batches for t in kb.events), key=lambda t: t.trade_id) == sent


def test_publisher_from_connection_string_uses_sdk_retry_policy():
    conn = "Endpoint=sb://tickcast-test.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey=c2VjcmV0"
    config = IngestorConfig.from_env(
        {
            "INGESTOR_PUBLISHER": "eventhubs",
            "EVENTHUB": conn,
            "TICKS_HUB_NAME": "ticks-x",
            "DEADLETTER_HUB_NAME": "dead-x",
        }
    )
    publisher = make_publisher(config)
    assert isinstance(publisher, EventHubsTickPublisher)

    async def main():
        await publisher.start()  # creates clients only; AMQP links open on first send
        try:
            clients = publisher._clients
            assert set(clients) == {"ticks-x", "dead-x"}
            for hub, client in clients.items():
                assert client.eventhub_name == hub
                assert client._address.hostname == "tickcast-test.servicebus.windows.net"
                assert client._config.retry_total == RETRY_OPTIONS["retry_total"]
                assert client._config.backoff_max == RETRY_OPTIONS["retry_backoff_max"]
                assert client._config.retry_mode == "exponential"
        finally:
            await publisher.close()

    asyncio.run(main())


def test_publisher_with_managed_identity_uses_default_azure_credential():
    from azure.identity.aio import DefaultAzureCredential

    config = IngestorConfig.from_env(
        {
            "INGESTOR_PUBLISHER": "eventhubs",
            "EVENTHUB__fullyQualifiedNamespace": "tickcast-test.servicebus.windows.net",
            "AZURE_CLIENT_ID": "00000000-0000-0000-0000-000000000001",
        }
    )
    publisher = make_publisher(config)

    async def main():
        await publisher.start()
        try:
            assert isinstance(publisher._credential, DefaultAzureCredential)
            client = publisher._clients["ticks"]
            assert client._address.hostname == "tickcast-test.servicebus.windows.net"
            assert client._credential is publisher._credential
        finally:
            await publisher.close()
        assert publisher._credential is None

    asyncio.run(main())


def test_eventhubs_without_connection_settings_is_a_settings_error():
    config = IngestorConfig.from_env({"INGESTOR_PUBLISHER": "eventhubs"})
    with pytest.raises(SettingsError, match="EVENTHUB"):
        make_publisher(config)
    assert json.loads(encode(ticks(1)[0]))["type"] == "tick"
