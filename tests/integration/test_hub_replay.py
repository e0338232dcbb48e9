"""Replaying a range of a ticks partition (shared.serving.hubreplay) against a real Tansu broker.

The reader's client configuration (:func:`replay_config`) is checked without a broker.
"""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer

from local_stack.tansu import free_port, producer_config
from shared.serving.hubreplay import KafkaHubReplay, ReplayUnavailableError, replay_config

N_P1, N_P0 = 200, 30


def body(partition: int, i: int) -> bytes:
    return b'{"partition": %d, "i": %d}' % (partition, i)


@pytest.fixture
def filled_topic(kafka_broker, topic_factory) -> str:
    """A 2-partition topic with ``N_P1`` messages on partition 1 and ``N_P0`` on partition 0; the
    i-th message of a partition is ``body(partition, i)`` at offset i."""
    topic = topic_factory(partitions=2)
    producer = Producer(producer_config(kafka_broker.bootstrap_servers, **{"enable.idempotence": False}))
    for i in range(max(N_P1, N_P0)):
        if i < N_P1:
            producer.produce(topic, body(1, i), partition=1)
        if i < N_P0:
            producer.produce(topic, body(0, i), partition=0)
    assert producer.flush(30) == 0
    return topic


@pytest.fixture
def reader(kafka_broker, filled_topic):
    reader = KafkaHubReplay(replay_config(kafka_broker.bootstrap_servers, None, None), filled_topic,
                            timeout_s=10.0)
    yield reader
    reader.close()


# ----------------------------------------------------------------------------- against Tansu
def test_reads_exactly_the_range_in_order(reader):
    events, ids = reader.read("partition 1", 50, 120)
    assert [e.body for e in events] == [body(1, i) for i in range(50, 121)]
    assert ids == [("partition 1", i) for i in range(50, 121)]
    assert events[0].position == "ticks partition 1 seq=50 (replay)"
    assert all(f"partition 1 seq={i}" in e.position for e, i in zip(events, range(50, 121)))


def test_a_second_read_reuses_the_client(reader):
    events, ids = reader.read("partition 1", 0, N_P1 - 1)  # the whole partition, up to its last event
    assert [e.body for e in events] == [body(1, i) for i in range(N_P1)]
    consumer = reader._consumer
    events, ids = reader.read("partition 0", 3, 7)  # another partition
    assert [e.body for e in events] == [body(0, i) for i in range(3, 8)]
    assert ids == [("partition 0", i) for i in range(3, 8)]
    events, ids = reader.read("partition 1", 110, 115)  # back, inside what was read before
    assert [e.body for e in events] == [body(1, i) for i in range(110, 116)]
    assert ids == [("partition 1", i) for i in range(110, 116)]
    assert reader._consumer is consumer
    assert consumer.assignment() == []  # unassigned between reads: nothing fetched in the background


def test_reading_past_the_end_of_the_partition_raises(reader):
    # the end is seen (EOF), not waited for: a timeout would say "timed out"
    with pytest.raises(ReplayUnavailableError, match=f"ends before offset {N_P1}"):
        reader.read("partition 1", 190, N_P1 + 50)
    with pytest.raises(ReplayUnavailableError, match=f"ends before offset {N_P0}"):
        reader.read("partition 0", N_P0, N_P0)  # starts at the end
    events, _ = reader.read("partition 1", 198, 199)  # the reader still works after a failed read
    assert [e.body for e in events] == [body(1, 198), body(1, 199)]


def test_reading_where_tansu_has_nothing_times_out(kafka_broker, filled_topic):
    # Tansu answers a fetch past the high watermark, or of a missing partition, with neither data nor error
    reader = KafkaHubReplay(replay_config(kafka_broker.bootstrap_servers, None, None), filled_topic, timeout_s=1.0)
    try:
        with pytest.raises(ReplayUnavailableError):
            reader.read("partition 1", N_P1 + 10, N_P1 + 20)
        with pytest.raises(ReplayUnavailableError):
            reader.read("partition 5", 0, 1)
    finally:
        reader.close()


def test_an_unreachable_broker_times_out():
    reader = KafkaHubReplay(replay_config(f"127.0.0.1:{free_port()}", None, None), "ticks", timeout_s=1.0)
    try:
        with pytest.raises(ReplayUnavailableError, match="timed out"):
            reader.read("partition 0", 0, 10)
    finally:
        reader.close()


def test_malformed_partition_names_and_long_ranges_raise(kafka_broker, filled_topic):
    reader = KafkaHubReplay(replay_config(kafka_broker.bootstrap_servers, None, None), filled_topic,
                            max_events=10, timeout_s=10.0)
    try:
        for name in ("key BTCUSDT", "partition x", "1", "partition 1 "):
            with pytest.raises(ReplayUnavailableError, match="not of the form"):
                reader.read(name, 0, 5)
        with pytest.raises(ReplayUnavailableError, match="max_events=10"):
            reader.read("partition 1", 0, 10)  # 11 events
        events, ids = reader.read("partition 1", 0, 9)  # 10 events: fine
        assert [e.body for e in events] == [body(1, i) for i in range(10)] and len(ids) == 10
        with pytest.raises(ValueError):
            reader.read("partition 1", -1, 3)
    finally:
        reader.close()


def test_an_empty_range_touches_no_broker(reader):
    assert reader.read("partition 1", 10, 9) == ([], [])
    assert reader._consumer is None  # no client was even created
    nowhere = KafkaHubReplay(replay_config(f"127.0.0.1:{free_port()}", None, None), "ticks", timeout_s=0.1)
    assert nowhere.read("key BTCUSDT", 5, 4) == ([], [])


# ----------------------------------------------------------------------------- what Tansu cannot show
class FakeMessage:
    def __init__(self, offset: int, error: KafkaError | None = None, topic: str = "ticks", partition: int = 2):
        self._offset, self._error, self._topic, self._partition = offset, error, topic, partition

    def offset(self) -> int:
        return self._offset

    def error(self) -> KafkaError | None:
        return self._error

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def value(self) -> bytes:
        return b"v%d" % self._offset


class FakeConsumer:
    """Hands out ``script`` (messages, or an exception to raise) one ``consume`` call at a time."""

    def __init__(self, script):
        self.script = list(script)

    def __call__(self, config, logger=None):
        return self

    def assign(self, partitions):
        pass

    def unassign(self):
        pass

    def close(self):
        pass

    def consume(self, num_messages, timeout):
        item = self.script.pop(0) if self.script else []
        if isinstance(item, Exception):
            raise item
        return item


def fake_read(monkeypatch, script, first, last):
    monkeypatch.setattr("shared.serving.hubreplay.Consumer", FakeConsumer(script))
    reader = KafkaHubReplay({"bootstrap.servers": "fake:1"}, "ticks", timeout_s=1.0)
    events, ids = reader.read("partition 2", first, last)
    assert [e.body for e in events] == [b"v%d" % n for _, n in ids]
    return [n for _, n in ids]


def eof_at(offset: int) -> FakeMessage:
    """The client's end-of-partition event: ``offset`` is the offset the log ends before."""
    return FakeMessage(offset, KafkaError(KafkaError._PARTITION_EOF))


def test_offsets_the_log_skips_are_absent_not_an_error(monkeypatch):
    # transactions' control records take offsets that no message has (here 32 and 35)
    assert fake_read(monkeypatch, [[FakeMessage(30), FakeMessage(31)], [FakeMessage(33), FakeMessage(34)],
                                   [eof_at(36)]], 30, 35) == [30, 31, 33, 34]
    assert fake_read(monkeypatch, [[FakeMessage(30), FakeMessage(31), FakeMessage(33)]], 30, 32) == [30, 31]


def test_retention_passed_raises(monkeypatch):
    with pytest.raises(ReplayUnavailableError, match="first offset available is 40"):
        fake_read(monkeypatch, [[FakeMessage(40), FakeMessage(41)]], 30, 45)


def test_broker_errors_raise(monkeypatch):
    out_of_range = FakeMessage(30, KafkaError(KafkaError.OFFSET_OUT_OF_RANGE))
    with pytest.raises(ReplayUnavailableError, match="cannot replay"):
        fake_read(monkeypatch, [[], [out_of_range]], 30, 45)
    with pytest.raises(ReplayUnavailableError, match="cannot replay"):
        fake_read(monkeypatch, [[FakeMessage(30)], KafkaException(KafkaError(KafkaError._FATAL))], 30, 45)


# ----------------------------------------------------------------------------- configuration, no broker
CONN = "Endpoint=sb://tickcast-ehns.servicebus.windows.net/;SharedAccessKeyName=listen;SharedAccessKey=abc=="


def test_replay_config_local_broker_wins():
    assert replay_config("127.0.0.1:9092", CONN, "x.servicebus.windows.net") == {
        "bootstrap.servers": "127.0.0.1:9092", "security.protocol": "PLAINTEXT"}


def test_replay_config_from_a_connection_string():
    assert replay_config(None, CONN, "other.servicebus.windows.net") == {
        "bootstrap.servers": "tickcast-ehns.servicebus.windows.net:9093",
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "PLAIN",
        "sasl.username": "$ConnectionString",
        "sasl.password": CONN,
    }
    entity = "endpoint=sb://ns2.servicebus.windows.net;SharedAccessKeyName=l;SharedAccessKey=k=;EntityPath=ticks"
    assert replay_config(None, entity, None)["bootstrap.servers"] == "ns2.servicebus.windows.net:9093"
    for bad in ("SharedAccessKeyName=l;SharedAccessKey=k=", "Endpoint=;SharedAccessKey=k"):
        with pytest.raises(ValueError, match="Endpoint"):
            replay_config(None, bad, None)


def test_replay_config_from_a_namespace_uses_an_entra_token():
    config = replay_config(None, None, "tickcast-ehns.servicebus.windows.net")
    assert {k: v for k, v in config.items() if k != "oauth_cb"} == {
        "bootstrap.servers": "tickcast-ehns.servicebus.windows.net:9093",
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "OAUTHBEARER",
    }
    assert callable(config["oauth_cb"])
    assert config["oauth_cb"].scope == "https://tickcast-ehns.servicebus.windows.net/.default"


def test_replay_config_none_means_no_replay():
    assert replay_config(None, None, None) is None
    assert replay_config("", "", "") is None


def test_the_reader_keeps_its_own_consumer_settings():
    reader = KafkaHubReplay({"bootstrap.servers": "h:1", "enable.partition.eof": False, "fetch.wait.max.ms": 50,
                             "enable.auto.commit": True}, "ticks")
    assert reader.config["enable.partition.eof"] is True and reader.config["enable.auto.commit"] is False
    assert reader.config["enable.auto.offset.store"] is False
    assert reader.config["fetch.wait.max.ms"] == 50 and reader.config["group.id"]
