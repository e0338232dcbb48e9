"""Reading back what a scenario produced: whole hubs, consumer-group checkpoints, the history store.

A hub is read whole by assigning every partition from its first offset (no consumer group is
joined, so nothing is committed) until each partition reached the high watermark read before,
or nothing arrived for ``idle_s`` seconds. The suite waits for the pipeline to drain by
comparing each function's committed offsets (its checkpoints) with the hubs' high watermarks.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from confluent_kafka import Consumer, TopicPartition

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


def _high(consumer: Consumer, topic: str, partitions: list[int]) -> dict[int, int]:
    return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions}


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
        high = _high(consumer, topic, partitions)
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
        high = _high(consumer, topic, partitions)
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
