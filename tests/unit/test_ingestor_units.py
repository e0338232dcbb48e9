"""Ingestor building blocks without a network: settings, subscriptions, backoff, the bounded buffer, logs."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingestor.backoff import Backoff
from ingestor.buffer import BoundedBuffer
from ingestor.config import IngestorConfig, Subscription, parse_source_urls, parse_subscriptions
from ingestor.logs import JsonFormatter
from ingestor.sources import make_source
from shared.settings import INGESTOR, SETTINGS, SettingsError, settings_for


# ----------------------------------------------------------------------------- settings
def test_default_subscriptions_are_the_documented_ones():
    config = IngestorConfig.from_env({})
    assert config.subscriptions == (
        Subscription("binance", ("BTCUSDT", "ETHUSDT")),
        Subscription("coinbase", ("BTC-USD",)),
        Subscription("kraken", ("BTC/USD",)),
    )
    assert (config.publisher, config.buffer_events, config.health_port) == ("eventhubs", 100_000, 8080)
    assert (config.ticks_hub, config.deadletter_hub, config.stale_seconds) == ("ticks", "deadletter", 30.0)


def test_every_ingestor_setting_is_read_by_config():
    source = open(__import__("ingestor.config").config.__file__).read()
    for name in settings_for(INGESTOR):
        assert f'"{name}"' in source, f"{name} is an ingestor setting but ingestor/config.py does not read it"
    assert all(SETTINGS[n].used_by == (INGESTOR,) for n in SETTINGS if n.startswith("INGESTOR_"))


def test_subscription_format_and_aliases():
    subs = parse_subscriptions(" binance-futures:btcusdt ;;binance:BTCUSDT,btcusdt, ETHUSDT;kraken:BTC/USD ")
    assert subs == (
        Subscription("binance-usdm", ("BTCUSDT",)),
        Subscription("binance", ("BTCUSDT", "ETHUSDT")),
        Subscription("kraken", ("BTC/USD",)),
    )
    assert str(subs[1]) == "binance:BTCUSDT,ETHUSDT"
    sources = [make_source(s) for s in subs]
    assert [(s.exchange, s.url) for s in sources] == [
        ("binance-usdm", "wss://fstream.binance.com/stream"),
        ("binance", "wss://stream.binance.com:9443/stream"),
        ("kraken", "wss://ws.kraken.com/v2"),
    ]
    assert json.loads(sources[1].subscribe_messages()[0])["params"] == ["btcusdt@trade", "ethusdt@trade"]
    kraken_sub = json.loads(sources[2].subscribe_messages()[0])
    assert kraken_sub["params"] == {"channel": "trade", "symbol": ["BTC/USD"], "snapshot": True}
    coinbase = make_source(Subscription("coinbase", ("BTC-USD",)), "ws://127.0.0.1:1/")
    assert coinbase.url == "ws://127.0.0.1:1/" and json.loads(coinbase.subscribe_messages()[0])[
        "channels"
    ] == ["matches", "heartbeat"]


@pytest.mark.parametrize("text", ["", ";", "binance", "binance:", "nasdaq:AAPL", "binance:,"])
def test_bad_subscriptions(text):
    with pytest.raises(SettingsError):
        parse_subscriptions(text)


@pytest.mark.parametrize(
    "env",
    [
        {"INGESTOR_PUBLISHER": "rabbit"},
        {"INGESTOR_BUFFER_EVENTS": "0"},
        {"INGESTOR_BUFFER_EVENTS": "1.5"},
        {"INGESTOR_HEARTBEAT_SECONDS": "-1"},
        {"INGESTOR_HEARTBEAT_SECONDS": "nan"},
        {"INGESTOR_HEALTH_PORT": "70000"},
        {"INGESTOR_BACKOFF_INITIAL_SECONDS": "5", "INGESTOR_BACKOFF_MAX_SECONDS": "1"},
        {"INGESTOR_SOURCE_URLS": "binance=http://x"},
        {"INGESTOR_SOURCE_URLS": "ftx=ws://x"},
    ],
)
def test_bad_settings_are_settings_errors(env):
    with pytest.raises(SettingsError):
        IngestorConfig.from_env(env)


def test_publisher_needs_its_connection_settings():
    with pytest.raises(SettingsError, match="EVENTHUB"):
        IngestorConfig.from_env({}).check()
    IngestorConfig.from_env({"EVENTHUB": "Endpoint=sb://x/;SharedAccessKeyName=a;SharedAccessKey=b"}).check()
    IngestorConfig.from_env({"INGESTOR_PUBLISHER": "kafka"}).check()  # KAFKA_BOOTSTRAP_SERVERS has a default
    assert parse_source_urls("kraken=wss://beta-ws.kraken.com/v2") == {
        "kraken": "wss://beta-ws.kraken.com/v2"
    }


# ----------------------------------------------------------------------------- backoff
@settings(max_examples=200, deadline=None)
@given(initial=st.floats(0, 10), extra=st.floats(0, 100), seed=st.integers(0, 2**32), n=st.integers(1, 60))
def test_backoff_is_capped_jittered_and_grows(initial, extra, seed, n):
    b = Backoff(initial, initial + extra, rng=random.Random(seed))
    delays = [b.next_delay() for _ in range(n)]
    for k, d in enumerate(delays):
        ceiling = min(initial + extra, initial * 2**k)
        assert ceiling / 2 <= d <= ceiling <= initial + extra
    b.reset()
    assert b.next_delay() <= initial


def test_backoff_delays_feed_websockets_and_share_state():
    b = Backoff(1.0, 4.0, rng=random.Random(0))
    gen = b.delays()
    first = [next(gen) for _ in range(4)]
    assert b.attempt == 4 and first[-1] >= 2.0
    with pytest.raises(ValueError):
        Backoff(2.0, 1.0)


# ----------------------------------------------------------------------------- buffer
def test_buffer_back_pressure_then_drop():
    async def main():
        buf: BoundedBuffer[int] = BoundedBuffer(3, wait_seconds=0.3)
        for i in range(3):
            assert await buf.put(i)

        # a consumer frees room within the wait: the put succeeds (back-pressure, no drop)
        async def consume_soon():
            await asyncio.sleep(0.05)
            return await buf.get_batch(1)

        consumer = asyncio.create_task(consume_soon())
        t0 = time.monotonic()
        assert await buf.put(3)
        waited = time.monotonic() - t0
        assert await consumer == [0] and 0.03 < waited < 0.3
        # nobody consumes: the put waits the full bound, then drops and counts
        t0 = time.monotonic()
        assert not await buf.put(4)
        assert time.monotonic() - t0 >= 0.29 and buf.dropped == 1
        buf.requeue([100, 101])  # failed publishes go back to the front, in order
        assert await buf.get_batch(10) == [100, 101, 1, 2, 3]
        assert await buf.get_batch(10, timeout=0.05) == []
        buf.close()
        assert await buf.get_batch(10) == []
        with pytest.raises(RuntimeError):
            buf.put_nowait(5)

    asyncio.run(main())


def test_buffer_close_wakes_a_waiting_consumer_and_keeps_items():
    async def main():
        buf: BoundedBuffer[str] = BoundedBuffer(10)
        waiter = asyncio.create_task(buf.get_batch(5, timeout=5))
        await asyncio.sleep(0.01)
        buf.put_nowait("a")
        assert await waiter == ["a"]
        buf.put_nowait("b")
        buf.close()
        assert buf.oldest_put_monotonic is not None
        assert await buf.get_batch(5) == ["b"] and buf.oldest_put_monotonic is None

    asyncio.run(main())


# ----------------------------------------------------------------------------- logs
def test_json_log_lines():
    record = logging.LogRecord("ingestor.x", logging.WARNING, __file__, 1, "gap in %s", ("BTCUSDT",), None)
    record.fields = {"missed": 3, "message": "not overwritten"}
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "gap in BTCUSDT" and line["missed"] == 3 and line["level"] == "WARNING"
    assert line["time"].endswith("+00:00")


def test_subscriptions_from_cli_override_settings():
    from ingestor.__main__ import build_parser, live_config

    args = build_parser().parse_args(
        [
            "live",
            "--publisher",
            "kafka",
            "--bootstrap-servers",
            "h:1",
            "--subscriptions",
            "binance-futures:BTCUSDT;coinbase:BTC-USD,ETH-USD",
            "--url",
            "coinbase=ws://127.0.0.1:1/x",
            "--health-port",
            "0",
            "-X",
            "linger.ms=1",
        ]
    )
    config = live_config(args)
    assert config.subscriptions == parse_subscriptions("binance-usdm:BTCUSDT;coinbase:BTC-USD,ETH-USD")
    assert config.source_urls == {"coinbase": "ws://127.0.0.1:1/x"}
    assert config.kafka_config == {"linger.ms": "1"} and config.health_port == 0
