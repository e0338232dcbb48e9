"""The driver's batch of ``func.EventHubEvent``: each event as the Python worker would build it.

:func:`local_stack.functions_host.event_hub_events` shares one datetime between records enqueued in
the same millisecond and one string between records of one key; every event must still equal the
plain one-by-one construction (body, partition key, sequence number, ``"<partition>:<offset>"``,
an aware UTC ``enqueued_time``, and the batch's ``PartitionContext`` metadata).
"""

from __future__ import annotations

from datetime import UTC, datetime

from confluent_kafka import TIMESTAMP_CREATE_TIME, Message
from hypothesis import given
from hypothesis import strategies as st

from local_stack.functions_host import event_hub_events

T0 = 1_796_000_000_000  # ms since epoch UTC

records_st = st.lists(st.tuples(st.sampled_from([None, b"", b"BTC/USD", b"ETH/USD", b"\xff\xfe"]),
                                st.integers(0, 3), st.binary(max_size=20)), min_size=1, max_size=40)


def plain(m: Message) -> tuple:
    """What one record becomes when built on its own."""
    return ((m.value() or b""), (m.key() or b"").decode("utf-8", "replace") or None, m.offset(),
            f"{m.partition()}:{m.offset()}", datetime.fromtimestamp(m.timestamp()[1] / 1000, tz=UTC))


@given(records_st, st.integers(0, 7))
def test_each_event_equals_the_one_built_on_its_own(specs, partition):
    records = [Message(topic="ticks", partition=partition, offset=100 + i, key=key, value=value,
                       timestamp=(TIMESTAMP_CREATE_TIME, T0 + step))
               for i, (key, step, value) in enumerate(specs)]
    events = event_hub_events(records, "ticks", "predict")
    assert [(e.get_body(), e.partition_key, e.sequence_number, e.offset, e.enqueued_time) for e in events] == \
           [plain(m) for m in records]
    assert all(e.enqueued_time.tzinfo is UTC for e in events)
    assert events[0].metadata["PartitionContext"] == {
        "EventHubName": "ticks", "ConsumerGroup": "predict", "PartitionId": str(partition)}


def test_an_empty_batch_has_no_events():
    assert event_hub_events([], "ticks", "predict") == []
