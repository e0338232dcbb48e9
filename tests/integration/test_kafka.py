"""Kafka transport against a real Tansu broker: round trips, consumer groups, replay, pacing, CLI."""

from __future__ import annotations

import gzip
import json
import os
import signal
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from ingestor.publisher import KafkaPublisher
from ingestor.replay import replay
from local_stack.tansu import TansuBroker, consumer_config, producer_config
from shared.contracts.events import Tick, decode_tick
from ingestor.parsers import read_recorded
from tests.data_files import BTC_SPOT_CSV, ETH_SPOT_CSV, KRAKEN_CSV, data_file
from tests.unit.test_replay import _cli, make_tick


# ----------------------------------------------------------------------------- helpers
def read_topic(bootstrap: str, topic: str, expected: int, *, timeout: float = 30.0, settle: float = 0.5):
    """All messages of ``topic`` from the beginning (no group join): waits for ``expected``
    messages, then ``settle`` seconds more to catch any extra ones."""
    consumer = Consumer(consumer_config(bootstrap, "reader-unused", **{"enable.auto.offset.store": False}))
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        partitions = sorted(metadata.topics[topic].partitions)
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        messages = []
        deadline = time.monotonic() + timeout
        settle_until = None
        while time.monotonic() < deadline:
            batch = consumer.consume(10_000, 0.1)
            for m in batch:
                assert m.error() is None, m.error()
                messages.append(m)
            if len(messages) >= expected:
                if settle_until is None:
                    settle_until = time.monotonic() + settle
                elif time.monotonic() >= settle_until:
                    break
        return messages
    finally:
        consumer.close()


def csv_head(src: Path, dest: Path, *, seconds: float | None = None, rows: int | None = None) -> Path:
    """Write the header and the first ``rows`` rows / ``seconds`` of recorded time of a trade CSV."""
    with gzip.open(src, "rt") as f:
        lines = [next(f)]
        first = None
        for line in f:
            t = int(line.split(",", 1)[0])
            first = t if first is None else first
            if seconds is not None and t - first > seconds * 1000:
                break
            if rows is not None and len(lines) > rows:
                break
            lines.append(line)
    dest.write_text("".join(lines))
    return dest


# ----------------------------------------------------------------------------- broker
def test_broker_is_up_and_create_topics_is_idempotent(kafka_broker, topic_factory):
    assert kafka_broker.running
    host, port = kafka_broker.bootstrap_servers.split(":")
    assert host == "127.0.0.1" and int(port) > 0
    print(f"\nTansu start-up took {kafka_broker.startup_seconds:.3f} s")
    name = topic_factory(partitions=4)
    kafka_broker.create_topics([name], partitions=4)  # already exists: fine
    topics = kafka_broker.admin().list_topics(timeout=10).topics
    assert len(topics[name].partitions) == 4


def test_broker_start_failure_is_clear_and_leaves_no_process(kafka_broker):
    clash = TansuBroker(port=kafka_broker.port, startup_timeout=10)
    with pytest.raises(RuntimeError, match="Tansu") as info:
        clash.start()
    assert "AddrInUse" in str(info.value) or "Address" in str(info.value)
    assert not clash.running and clash.pid is None


def test_stop_leaves_no_process():
    broker = TansuBroker().start()
    pid = broker.pid
    assert broker.running and pid
    broker.stop()
    broker.stop()  # idempotent
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    with pytest.raises(RuntimeError, match="not running"):
        broker.bootstrap_servers


# ----------------------------------------------------------------------------- round trip
def test_tick_round_trip_keyed_by_symbol(kafka_broker, new_topic):
    symbols = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "BTC/USD"]
    sent = [make_tick(i, symbols[i % len(symbols)]) for i in range(400)]
    with KafkaPublisher(kafka_broker.bootstrap_servers, new_topic) as publisher:
        for tick in sent:
            publisher.publish(tick)
        assert publisher.flush(10) == 0
    assert publisher.delivered == 400 and publisher.failed == 0 and publisher.close() == 0

    messages = read_topic(kafka_broker.bootstrap_servers, new_topic, len(sent))
    assert len(messages) == len(sent)
    partition_of: dict[str, int] = {}
    received: dict[str, list[Tick]] = {}
    for m in messages:
        tick = decode_tick(m.value())
        assert m.key() == tick.symbol.encode("utf-8")
        assert partition_of.setdefault(tick.symbol, m.partition()) == m.partition()  # one partition per key
        received.setdefault(tick.symbol, []).append(tick)
    for symbol in symbols:
        assert received[symbol] == [t for t in sent if t.symbol == symbol]  # order kept per symbol


def test_idempotent_producer_delivers_exactly_once(kafka_broker, new_topic):
    producer = Producer(producer_config(kafka_broker.bootstrap_servers, **{"enable.idempotence": True}))
    errors = []
    n = 20_000
    for i in range(n):
        producer.produce(new_topic, str(i).encode(), b"k%d" % (i % 5),
                         on_delivery=lambda err, msg: err and errors.append(err))
        producer.poll(0)
    assert producer.flush(30) == 0 and not errors
    values = [int(m.value()) for m in read_topic(kafka_broker.bootstrap_servers, new_topic, n)]
    assert sorted(values) == list(range(n))


def test_consumer_group_commit_and_resume(kafka_broker, new_topic):
    n, first_part = 150, 60
    with KafkaPublisher(kafka_broker.bootstrap_servers, new_topic) as publisher:
        for i in range(n):
            publisher.publish(make_tick(i, f"SYM{i % 5}"))
    assert publisher.close() == 0
    group = f"group-{new_topic}"
    config = consumer_config(kafka_broker.bootstrap_servers, group, session_timeout_ms=2000)

    first = Consumer(config)
    first.subscribe([new_topic])
    started = time.monotonic()
    join_s = None
    seen_first: list[int] = []
    while len(seen_first) < first_part and time.monotonic() - started < 30:
        m = first.poll(0.1)
        if m is None or m.error():
            continue
        join_s = join_s or time.monotonic() - started
        seen_first.append(decode_tick(m.value()).trade_id)
    assert len(seen_first) == first_part
    committed = first.commit(asynchronous=False)
    assert all(tp.error is None for tp in committed)
    first.close()
    print(f"\nconsumer group join + first message: {join_s:.2f} s (session.timeout.ms=2000)")

    second = Consumer(config)
    second.subscribe([new_topic])
    seen_second: list[int] = []
    deadline = time.monotonic() + 30
    settle_until = None
    while time.monotonic() < deadline:
        m = second.poll(0.1)
        if m is not None and not m.error():
            seen_second.append(decode_tick(m.value()).trade_id)
        if len(seen_second) >= n - first_part:
            settle_until = settle_until or time.monotonic() + 1.0
            if time.monotonic() >= settle_until:
                break
    second.close()
    assert len(seen_second) == n - first_part  # exactly the rest...
    assert not set(seen_first) & set(seen_second)  # ...no duplicates...
    assert sorted(seen_first + seen_second) == list(range(n))  # ...and no loss


# ----------------------------------------------------------------------------- replay
def test_replay_eth_csv_publishes_every_trade_once(kafka_broker, new_topic):
    path = data_file(ETH_SPOT_CSV)
    expected_ids = [r.tick.trade_id for r in read_recorded(path)]
    with KafkaPublisher(kafka_broker.bootstrap_servers, new_topic) as publisher:
        before = time.time_ns() // 1_000_000
        stats = replay(path, publisher, speed=0)
        after = time.time_ns() // 1_000_000
    assert (stats.read, stats.published, stats.malformed, stats.skipped) == (14_515, 14_515, 0, 0)
    assert stats.delivered == 14_515 and stats.undelivered == 0 and not stats.interrupted
    print(f"\nreplay at speed 0: {stats.published / stats.replay_s:,.0f} ticks/s handed to the producer, "
          f"{stats.ticks_per_second:,.0f} ticks/s delivered ({stats.elapsed_s:.2f} s incl. flush)")

    messages = read_topic(kafka_broker.bootstrap_servers, new_topic, len(expected_ids))
    ticks = [decode_tick(m.value()) for m in messages]
    assert len(ticks) == 14_515
    assert sorted(t.trade_id for t in ticks) == expected_ids  # every trade exactly once
    assert {m.key() for m in messages} == {b"ETHUSDT"}
    assert [t.trade_id for t in ticks] == expected_ids  # one key, one partition: recorded order kept
    assert all(before <= t.ingest_time_ms <= after for t in ticks)  # stamped at publish time


def test_replay_sets_aside_malformed_lines(kafka_broker, topic_factory, tmp_path):
    topic, dead = topic_factory(3, "ticks"), topic_factory(1, "dead")
    head = csv_head(data_file(BTC_SPOT_CSV), tmp_path / "binance_spot_BTCUSDT_trades_head.csv", rows=500)
    lines = head.read_text().splitlines(keepends=True)
    bad = [
        "1723161255999,1723161255999,1,1,NaN,0.1,true,BTCUSDT\n",
        "oops\n",
        "1723161256000,1723161256000,1,2,-3,0.1,false,BTCUSDT\n",
        "1723161256000,1723161256000,1,3,61000,0.1,perhaps,BTCUSDT\n",
    ]
    for offset, line in zip((10, 100, 250, 400), bad):
        lines.insert(offset, line)
    dirty = tmp_path / "binance_spot_BTCUSDT_trades_dirty.csv"
    dirty.write_text("".join(lines))
    good_ids = [int(line.split(",")[3]) for line in lines[1:] if line not in bad]

    with KafkaPublisher(kafka_broker.bootstrap_servers, topic, deadletter_topic=dead) as publisher:
        stats = replay(dirty, publisher, speed=0)
    assert (stats.read, stats.published, stats.malformed, stats.deadlettered) == (504, 500, 4, 4)
    assert stats.undelivered == 0 and publisher.delivered == 504

    ticks = [decode_tick(m.value()) for m in read_topic(kafka_broker.bootstrap_servers, topic, 500)]
    assert sorted(t.trade_id for t in ticks) == sorted(good_ids)
    letters = [json.loads(m.value()) for m in read_topic(kafka_broker.bootstrap_servers, dead, 4)]
    assert [d["type"] for d in letters] == ["deadletter"] * 4
    assert [d["position"] for d in letters] == [f"{dirty.name}:{i + 1}" for i in (10, 100, 250, 400)]
    assert [d["payload"] for d in letters] == [b.rstrip("\n") for b in bad]
    assert all(d["source"] == dirty.name and d["reason"] for d in letters)


def test_replay_pacing_speed_600(kafka_broker, new_topic, tmp_path):
    head = csv_head(data_file(BTC_SPOT_CSV), tmp_path / "binance_spot_BTCUSDT_trades_30s.csv", seconds=30)
    ticks = [r.tick for r in read_recorded(head)]
    span_s = (ticks[-1].event_time_ms - ticks[0].event_time_ms) / 1000
    assert 25 < span_s <= 30
    with KafkaPublisher(kafka_broker.bootstrap_servers, new_topic) as publisher:
        stats = replay(head, publisher, speed=600)
    assert stats.published == len(ticks) and stats.undelivered == 0
    print(f"\n{span_s:.1f} recorded s at speed 600: paced part {stats.replay_s:.3f} s "
          f"(ideal {span_s / 600:.3f} s), {stats.elapsed_s:.3f} s with the final flush")
    assert span_s / 600 * 0.8 <= stats.replay_s < 0.5
    assert stats.elapsed_s < 3.0  # includes the idempotent producer's one-off ~0.5 s PID set-up


# ----------------------------------------------------------------------------- CLI
def test_cli_replays_kraken_file(kafka_broker, new_topic):
    proc = _cli(str(data_file(KRAKEN_CSV)), "--bootstrap-servers", kafka_broker.bootstrap_servers,
                "--topic", new_topic, "--speed", "0")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    result = json.loads(out.strip().splitlines()[-1])
    assert result["published"] == 2_672 and result["undelivered"] == 0 and result["malformed"] == 0
    ticks = [decode_tick(m.value()) for m in read_topic(kafka_broker.bootstrap_servers, new_topic, 2_672)]
    assert len(ticks) == 2_672 and {t.symbol for t in ticks} == {"BTC/USD"}


def test_cli_sigterm_flushes_what_was_published(kafka_broker, new_topic):
    proc = _cli(str(data_file(BTC_SPOT_CSV)), "--bootstrap-servers", kafka_broker.bootstrap_servers,
                "--topic", new_topic, "--speed", "5")
    time.sleep(2.5)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err
    result = json.loads(out.strip().splitlines()[-1])
    assert result["interrupted"] and result["undelivered"] == 0
    assert 0 < result["published"] < 19_904
    messages = read_topic(kafka_broker.bootstrap_servers, new_topic, result["published"])
    assert len(messages) == result["published"]


