"""Reading back what a scenario produced: whole hubs, consumer-group checkpoints, the history store.

A hub is read whole by assigning every partition from its first offset (no consumer group is
joined, so nothing is committed) until each partition reached its end read before, or nothing
arrived for ``idle_s`` seconds. The suite waits for the pipeline to drain by comparing each
function's committed offsets (its checkpoints) with the hubs' ends. An end is read to the end of
the partition, not taken from the broker's high watermark, which Tansu can underreport (:func:`_high`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaError, TopicPartition

from local_stack.tansu import consumer_config

__all__ = ["Record", "committed_lag", "read_hub", "wait_drained"]


@dataclass(frozen=True, slots=True)
class Record:
    """One event of a hub: partition, offset, key, body, and the broker's timestamp (ms since epoch UTC)."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes
    timestamp_ms: int


def _partitions(consumer: Consumer, topic: str) -> list[int]:
    meta = consumer.list_topics(topic, timeout=10).topics[topic]
    if meta.error is not None:
        raise RuntimeError(f"topic {topic}: {meta.error}")
    return sorted(meta.partitions)


def _high(bootstrap: str, consumer: Consumer, topic: str, partitions: list[int],
          timeout_s: float = 10.0) -> dict[int, int]:
    """The end offset of each partition of ``topic`` (one past its newest event), read to the end.

    Tansu's ListOffsets can answer less than the end: measured with Tansu 0.6 and confluent-kafka
    2.16, a partition of 20 events produced in one batch reports a high watermark of 1 (the
    newest record batch's base offset + 1), so a drain judged on it can be declared before the
    newest batch was processed, and a hub read up to it can stop short. The watermark is only
    where reading starts: ``consumer``'s group is not used, a reader of its own reads from there
    to the end of each partition (``enable.partition.eof``), whose offset is the true end.

    Raises
    ------
    RuntimeError
        Some partition's end was not reached within ``timeout_s``.
    """
    hint = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions}
    reader = Consumer(consumer_config(bootstrap, "faults-ends", **{"enable.partition.eof": True}))
    try:
        reader.assign([TopicPartition(topic, p, max(0, hint[p])) for p in partitions])
        ends: dict[int, int] = {}
        deadline = time.monotonic() + timeout_s
        while len(ends) < len(partitions):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{topic}: no end of partitions {sorted(set(partitions) - set(ends))} "
                                   f"within {timeout_s:g} s")
            for m in reader.consume(10_000, 0.2):
                error = m.error()
                if error is not None and error.code() == KafkaError._PARTITION_EOF:
                    ends[m.partition()] = m.offset()
        return ends
    finally:
        reader.close()


def read_hub(bootstrap: str, topic: str, idle_s: float = 3.0, timeout_s: float = 120.0) -> list[Record]:
    """Every event of ``topic``, per partition in offset order.

    Raises
    ------
    RuntimeError
        The topic does not exist.
    """
    consumer = Consumer(consumer_config(bootstrap, "faults-reader", **{"enable.partition.eof": False}))
    try:
        partitions = _partitions(consumer, topic)
        high = _high(bootstrap, consumer, topic, partitions)
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        out: list[Record] = []
        nxt = {p: 0 for p in partitions}
        deadline, last = time.monotonic() + timeout_s, time.monotonic()
        while time.monotonic() < deadline and time.monotonic() - last < idle_s:
            if all(nxt[p] >= high[p] for p in partitions):
                break
            for m in consumer.consume(1000, 0.2):
                if m.error() is not None:
                    continue
                last = time.monotonic()
                nxt[m.partition()] = m.offset() + 1
                out.append(Record(m.partition(), m.offset(), m.key(), m.value() or b"", m.timestamp()[1]))
        return out
    finally:
        consumer.close()


def committed_lag(bootstrap: str, group: str, topic: str) -> int:
    """Events of ``topic`` past ``group``'s checkpoints (high watermark minus committed offset, summed)."""
    consumer = Consumer(consumer_config(bootstrap, group))
    try:
        partitions = _partitions(consumer, topic)
        high = _high(bootstrap, consumer, topic, partitions)
        done = consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=10)
        return sum(max(0, high[tp.partition] - max(tp.offset, 0)) for tp in done)
    finally:
        consumer.close()


def wait_drained(bootstrap: str, pairs: list[tuple[str, str]], timeout_s: float, alive=lambda: True) -> float:
    """Wait until every ``(group, topic)`` of ``pairs`` checkpointed its whole topic, twice in a row
    0.5 s apart; return the seconds waited.

    ``alive`` is called on every round; when it returns False the wait fails at once.

    Raises
    ------
    RuntimeError
        Not drained within ``timeout_s`` (the remaining lag per group is in the message), or ``alive()`` is False.
    """
    t0 = time.monotonic()
    calm = 0
    lags: dict[str, int] = {}
    while time.monotonic() - t0 < timeout_s:
        if not alive():
            raise RuntimeError("the functions process died before the pipeline drained")
        try:
            lags = {group: committed_lag(bootstrap, group, topic) for group, topic in pairs}
        except Exception as exc:  # the broker may still be waking up
            lags = {"error": repr(exc)}  # type: ignore[dict-item]
        calm = calm + 1 if all(v == 0 for v in lags.values()) else 0
        if calm >= 2:
            return time.monotonic() - t0
        time.sleep(0.5)
    raise RuntimeError(f"not drained after {timeout_s:g} s: lag {lags}")
