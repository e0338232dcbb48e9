"""The fault suite's readback against a real Tansu: a hub's end is read, not taken from the watermark.

Tansu 0.6 answers ListOffsets with the newest record batch's base offset + 1, so 20 events produced
in one batch report a high watermark of 1 (measured; ``local_stack.faults.readback._high``): a drain
judged on it could be declared while the newest batch was still being processed, and a hub read up
to it could stop short.
"""

from __future__ import annotations

from confluent_kafka import Consumer, Producer, TopicPartition

from local_stack.faults.readback import committed_lag, read_hub
from local_stack.tansu import consumer_config, producer_config


def _one_batch(bootstrap: str, topic: str, n: int) -> None:
    producer = Producer(producer_config(bootstrap, **{"linger.ms": 100}))
    for i in range(n):
        producer.produce(topic, b"e%d" % i, partition=0)
    assert producer.flush(30) == 0


def test_a_hub_is_read_to_its_end_when_the_watermark_says_less(kafka_broker, topic_factory):
    topic = topic_factory(partitions=1)
    _one_batch(kafka_broker.bootstrap_servers, topic, 20)
    records = read_hub(kafka_broker.bootstrap_servers, topic, idle_s=1.0)
    assert [r.value for r in records] == [b"e%d" % i for i in range(20)]


def test_the_lag_counts_every_event_past_the_checkpoint(kafka_broker, topic_factory):
    topic = topic_factory(partitions=1)
    _one_batch(kafka_broker.bootstrap_servers, topic, 20)
    group = f"{topic}-group"
    consumer = Consumer(consumer_config(kafka_broker.bootstrap_servers, group))
    try:
        consumer.commit(offsets=[TopicPartition(topic, 0, 1)], asynchronous=False)
    finally:
        consumer.close()
    assert committed_lag(kafka_broker.bootstrap_servers, group, topic) == 19
