"""The live ingestor against a local Binance-like websockets server and the real Tansu broker.

The server (:mod:`tests.integration.test_ingestor_wsserver`) replays recorded raw Binance messages
and injects faults; the ingestor publishes to a topic of its own on the session's Tansu
broker. Checked by trade id against what the server sent: every trade sent after each
(re)subscription is published exactly once, duplicates are not published again, gaps
and bad messages are counted, reconnects stay within the backoff bound, a stall is
detected by the heartbeat and a frozen peer by the keepalive ping, and SIGTERM
publishes everything already received.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition

from ingestor.config import IngestorConfig
from ingestor.live import Ingestor, run_live
from local_stack.tansu import consumer_config, free_port
from shared.contracts.events import decode_tick
from tests.integration.test_ingestor_wsserver import (
    GARBAGE,
    GARBAGE_MALFORMED,
    GARBAGE_UNKNOWN,
    ReplayServer,
    load_trades,
)

REPO = Path(__file__).resolve().parents[2]

BACKOFF_MAX = 0.4
FAST = {  # short bounds so the faults play out in seconds
    "INGESTOR_BACKOFF_INITIAL_SECONDS": "0.05",
    "INGESTOR_BACKOFF_MAX_SECONDS": str(BACKOFF_MAX),
    "INGESTOR_HEARTBEAT_SECONDS": "1.5",
    "INGESTOR_PING_INTERVAL_SECONDS": "0.5",
    "INGESTOR_PING_TIMEOUT_SECONDS": "2",
    "INGESTOR_STALE_SECONDS": "5",
    "INGESTOR_SHUTDOWN_SECONDS": "15",
    "INGESTOR_STATS_SECONDS": "0",
}


def read_topic(bootstrap: str, topic: str, expected: int, timeout: float = 20.0, settle: float = 0.5) -> list:
    """Every message of ``topic`` from the beginning: waits for ``expected``, then ``settle`` s for extras."""
    consumer = Consumer(consumer_config(bootstrap, "unused", **{"enable.auto.offset.store": False}))
    try:
        partitions = sorted(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        got: list = []
        deadline = time.monotonic() + timeout
        settle_until = None
        while time.monotonic() < deadline:
            for m in consumer.consume(10_000, 0.1):
                assert m.error() is None, m.error()
                got.append(m)
            if len(got) >= expected:
                settle_until = settle_until or time.monotonic() + settle
                if time.monotonic() >= settle_until:
                    break
        return got
    finally:
        consumer.close()


def health(port: int, path: str = "/healthz") -> tuple[int, dict]:
    """``(status, JSON body)`` of the ingestor's health endpoint ``path`` (``/healthz`` or ``/readyz``)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def wait_for(predicate, timeout: float, what: str, interval: float = 0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def reconnect_delays(server: ReplayServer) -> list[float]:
    s = server.sessions
    return [b.connected_at - a.ended_at for a, b in zip(s, s[1:])]


# --------------------------------------------------------------------------- the fault-injected run
SCRIPT = [
    ("send", 300),
    ("garbage",),
    ("send", 200),
    ("dup", 50),
    ("drop",),  # forced disconnect 1
    ("skip", 40),
    ("send", 300),
    ("stall", 3.0),  # stall: found by the heartbeat
    ("skip", 25),
    ("send", 300),
    ("dup", 10),
    ("close",),  # forced disconnect 2 (clean close)
    ("skip", 30),
    ("send", 300),
    ("garbage",),
    ("drop",),  # forced disconnect 3
    ("send", 200),
    ("end",),
]


def test_fault_injected_run_publishes_every_trade_once(kafka_broker, topic_factory):
    topic = topic_factory(partitions=3, suffix="ticks")
    dead = topic_factory(partitions=1, suffix="dead")
    port = free_port()
    trades = load_trades(1500)
    with ReplayServer(trades, SCRIPT) as server:
        env = {
            **os.environ,
            **FAST,
            "INGESTOR_PUBLISHER": "kafka",
            "KAFKA_BOOTSTRAP_SERVERS": kafka_broker.bootstrap_servers,
            "TICKS_HUB_NAME": topic,
            "DEADLETTER_HUB_NAME": dead,
            "INGESTOR_SUBSCRIPTIONS": "binance:BTCUSDT,ETHUSDT",
            "INGESTOR_SOURCE_URLS": f"binance={server.url}",
            "INGESTOR_HEALTH_PORT": str(port),
        }
        proc = subprocess.Popen(
            [sys.executable, "-m", "ingestor", "live"],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert server.script_done.wait(30), "the fault script did not finish"
            expected = sum(len(ids) for ids in server.unique_sent().values())
            wait_for(lambda: health(port)[1]["counters"]["published"] >= expected, 15, "publishing")
            status, body = health(port)
            assert status == 200 and body["alive"]
            assert body["connections"]["binance:BTCUSDT,ETHUSDT"]["connected"]
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert proc.returncode == 0, err[-3000:]
    result = json.loads(out.strip().splitlines()[-1])
    counters = result["counters"]
    print("\nfault-injected run, final counters as printed:\n" + json.dumps(counters))
    print("clock skew (ms):", json.dumps(result["connections"]["binance:BTCUSDT,ETHUSDT"]["clock_skew_ms"]))
    print("reconnect delays (s):", [round(d, 3) for d in reconnect_delays(server)])

    sent = server.sent_ids()
    unique = server.unique_sent()
    n_unique = sum(len(v) for v in unique.values())
    n_sent = sum(len(v) for v in sent.values())
    gaps, missing = server.expected_gaps()
    assert len(server.sessions) == 5  # 3 forced disconnects + 1 stall = 4 reconnects
    assert [s.ended_by for s in server.sessions[:4]] == ["drop", "stall", "close", "drop"]
    assert counters["reconnects"] == 4 and counters["disconnects"] == 4
    assert counters["heartbeat_timeouts"] == 1 and counters["ping_timeouts"] == 0
    assert counters["received"] == n_sent
    assert counters["duplicates"] == server.duplicates_sent == 60
    assert counters["published"] == n_unique and counters["undelivered"] == 0 and counters["dropped"] == 0
    assert counters["malformed"] == 2 * GARBAGE_MALFORMED and counters["unknown"] == 2 * GARBAGE_UNKNOWN
    assert counters["deadlettered"] == server.garbage_sent == 2 * len(GARBAGE)
    assert (counters["gaps"], counters["gap_trades"]) == (gaps, missing) and gaps >= 3 and missing == 95
    # every reconnect within the backoff bound (+ the local handshake)
    assert all(0 <= d <= BACKOFF_MAX + 0.3 for d in reconnect_delays(server)), reconnect_delays(server)
    # the stall ended by the heartbeat: the client closed about INGESTOR_HEARTBEAT_SECONDS after the last message
    stall = server.sessions[1]
    assert stall.ended_by == "stall" and 1.5 <= stall.ended_at - stall.subscribed_at < 2.6

    # exactly once in Tansu, checked by trade id
    messages = read_topic(kafka_broker.bootstrap_servers, topic, n_unique)
    ticks = [decode_tick(m.value()) for m in messages]
    per_symbol: dict[str, list[int]] = {}
    for m, t in zip(messages, ticks):
        assert m.key() == t.symbol.encode()
        per_symbol.setdefault(t.symbol, []).append(t.trade_id)
    assert {s: Counter(ids) for s, ids in per_symbol.items()} == {
        s: Counter(ids) for s, ids in unique.items()
    }
    assert all(len(ids) == len(set(ids)) for ids in per_symbol.values())
    assert {t.exchange for t in ticks} == {"binance"}
    for ids in per_symbol.values():  # one partition per symbol: in order
        assert ids == sorted(ids)
    letters = read_topic(kafka_broker.bootstrap_servers, dead, 2 * len(GARBAGE))
    assert len(letters) == 2 * len(GARBAGE)
    assert all(json.loads(m.value())["source"] == "ws:binance:BTCUSDT,ETHUSDT" for m in letters)


# --------------------------------------------------------------------------- in-process runs
def _config(server_url: str, **changes) -> IngestorConfig:
    env = {
        **FAST,
        "INGESTOR_PUBLISHER": "kafka",
        "INGESTOR_SUBSCRIPTIONS": "binance:BTCUSDT,ETHUSDT",
        "INGESTOR_SOURCE_URLS": f"binance={server_url}",
        "INGESTOR_HEALTH_PORT": "0",
    }
    return IngestorConfig.from_env(env).replace(**changes)


async def _run_until(config: IngestorConfig, done, timeout: float) -> tuple[dict, Ingestor]:
    """Run the ingestor in this loop until ``done(ingestor)`` is true, then stop it."""
    stop = asyncio.Event()
    holder: list[Ingestor] = []
    task = asyncio.create_task(run_live(config, stop=stop, handle_signals=False, started=holder.append))
    deadline = time.monotonic() + timeout
    while not (holder and done(holder[0])):
        if task.done():
            await task
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)
    stop.set()
    return await task, holder[0]


def test_connect_refused_is_retried_within_backoff_bound(kafka_broker, topic_factory):
    """Nothing listens at first: websockets' reconnect loop retries with our capped backoff."""
    port = free_port()
    topic = topic_factory(suffix="ticks")
    trades = load_trades(100)
    server = ReplayServer(trades, [("send", 100), ("end",)], port=port)
    config = _config(
        f"ws://127.0.0.1:{port}/stream",
        kafka_bootstrap_servers=kafka_broker.bootstrap_servers,
        ticks_hub=topic,
        deadletter_hub=topic_factory(suffix="dead"),
    )
    started_at: list[float] = []

    async def main():
        async def start_server_later():
            await asyncio.sleep(1.0)
            started_at.append(time.monotonic())
            await asyncio.to_thread(server.start)

        starter = asyncio.create_task(start_server_later())
        result = await _run_until(config, lambda ing: ing.metrics.counters["published"] >= 100, 20)
        await starter
        return result

    try:
        (snapshot, ingestor) = asyncio.run(main())
    finally:
        server.stop()
    counters = snapshot["counters"]
    assert counters["connects"] == 1 and counters["published"] == 100
    assert server.sessions[0].connected_at - started_at[0] <= BACKOFF_MAX + 0.3
    assert snapshot["connections"]["binance:BTCUSDT,ETHUSDT"]["last_trade_ids"]


def test_frozen_peer_is_found_by_keepalive_ping(kafka_broker, topic_factory):
    """A peer that stops reading (no pongs) is dropped by websockets' keepalive, then reconnected."""
    trades = load_trades(100)
    topic = topic_factory(suffix="ticks")
    with ReplayServer(trades, [("send", 20), ("freeze", 2.0), ("send", 20), ("end",)]) as server:
        config = _config(
            server.url,
            kafka_bootstrap_servers=kafka_broker.bootstrap_servers,
            ticks_hub=topic,
            deadletter_hub=topic_factory(suffix="dead"),
            heartbeat_seconds=30.0,
            ping_interval_seconds=0.2,
            ping_timeout_seconds=0.4,
        )
        snapshot, _ = asyncio.run(_run_until(config, lambda ing: ing.metrics.counters["published"] >= 40, 20))
    counters = snapshot["counters"]
    assert counters["ping_timeouts"] == 1 and counters["heartbeat_timeouts"] == 0
    assert counters["reconnects"] == 1 and counters["published"] == 40
    assert server.sessions[0].ended_by == "freeze"


def test_full_buffer_drops_are_counted_and_nothing_else_is_lost(kafka_broker, topic_factory):
    """Buffer of 50 with no wait and a publisher that cannot reach its broker: drops are counted;
    received = published + dropped + undelivered holds at shutdown."""
    trades = load_trades(200)
    with ReplayServer(trades, [("send", 200), ("end",)]) as server:
        config = _config(
            server.url,
            kafka_bootstrap_servers=f"127.0.0.1:{free_port()}",  # nobody there
            buffer_events=50,
            buffer_wait_seconds=0.0,
            shutdown_seconds=1.5,
            kafka_config={"message.timeout.ms": 500, "log_level": 2},
        )
        snapshot, _ = asyncio.run(_run_until(config, lambda ing: ing.metrics.counters["received"] >= 200, 20))
    c = snapshot["counters"]
    assert c["received"] == 200 and c["published"] == 0
    assert c["dropped"] > 0 and c["publish_failures"] >= 1
    assert c["received"] - c["duplicates"] == c["published"] + c["dropped"] + c["undelivered"]


def test_healthz_readiness_and_liveness(kafka_broker, topic_factory):
    """/healthz: 200 while alive; readiness (connected, fresh message, publish lag) flips when the feed goes quiet."""
    trades = load_trades(50)

    async def main(config: IngestorConfig) -> dict:
        seen: dict = {}

        async def fetch(ing: Ingestor) -> tuple[int, int, dict]:
            port = ing.health.port
            return (
                (await asyncio.to_thread(health, port))[0],
                (await asyncio.to_thread(_status, port, "/readyz")),
                (await asyncio.to_thread(health, port))[1],
            )

        stop = asyncio.Event()
        holder: list[Ingestor] = []
        task = asyncio.create_task(run_live(config, stop=stop, handle_signals=False, started=holder.append))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and "stale" not in seen:
            await asyncio.sleep(0.05)
            if not holder:
                continue
            ing = holder[0]
            if ing.metrics.counters["published"] >= 50 and "fresh" not in seen:
                seen["fresh"] = await fetch(ing)
            elif "fresh" in seen:
                probe = await fetch(ing)
                if probe[1] == 503:
                    seen["stale"] = probe
        stop.set()
        await task
        return seen

    with ReplayServer(trades, [("send", 50), ("end",)]) as server:
        config = _config(
            server.url,
            kafka_bootstrap_servers=kafka_broker.bootstrap_servers,
            ticks_hub=topic_factory(suffix="t"),
            deadletter_hub=topic_factory(suffix="d"),
            stale_seconds=1.5,
            heartbeat_seconds=30.0,
        )
        seen = asyncio.run(main(config))
    status, ready_status, body = seen["fresh"]
    assert (status, ready_status) == (200, 200) and body["ready"] and body["counters"]["published"] == 50
    assert body["checks"]["publish lag"]["ok"] and body["connections"]["binance:BTCUSDT,ETHUSDT"]["connected"]
    status, ready_status, body = seen["stale"]
    assert (status, ready_status) == (200, 503)  # liveness stays up while readiness fails
    assert not body["ready"] and not body["checks"]["connection binance:BTCUSDT,ETHUSDT"]["ok"]


def _status(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


