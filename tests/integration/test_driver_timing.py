"""The local Functions driver's per-batch timings (``BatchReport``), against real Tansu.

What each timing means is pinned by a cause the test controls (a function that sleeps, a
producer timestamp in the past, a batch that must wait for ``maxWaitTime``, a checkpoint every
second batch), never by how fast this machine is: speed is measured by ``bench/pipeline.py``.

The output flush is pinned too: a Python function's output-binding values go back to the host in
the worker's invocation response, and the host sends them to Event Hubs as the invocation
completes ("Azure Event Hubs output binding for Azure Functions"), so the driver must not leave
them lingering in its producer. librdkafka's ``rd_kafka_flush`` ignores ``linger.ms`` for the duration of the call
("queued messages will be sent to the broker as soon as possible", ``src/rdkafka.h``; librdkafka
v1.8.0 CHANGELOG, #3489), which the driver relies on instead of a ``linger.ms`` of 0.
"""

from __future__ import annotations

import gc
import threading
import time
import uuid

import azure.functions as func
import pytest
from confluent_kafka import Consumer, Producer

from local_stack.functions_host import BatchReport, EventHubFunctionDriver
from local_stack.hostjson import EventHubOptions
from local_stack.tansu import consumer_config, producer_config

HOST_JSON = EventHubOptions(max_event_batch_size=500, min_event_batch_size=1, max_wait_time_s=1.0)


def sleeping_function(seconds: float):
    """A one-function app: Event Hub trigger ``%HUB%`` -> sleeps ``seconds`` -> one output per event to ``%OUT%``."""
    app = func.FunctionApp()

    @app.function_name("timed")
    @app.event_hub_message_trigger(arg_name="events", event_hub_name="%HUB%", connection="EVENTHUB",
                                   consumer_group="%GROUP%", cardinality="many", data_type="binary")
    @app.event_hub_output(arg_name="out", event_hub_name="%OUT%", connection="EVENTHUB")
    def timed(events: list[func.EventHubEvent], out: func.Out[list[str]]) -> None:
        time.sleep(seconds)
        out.set([e.get_body().decode() for e in events])

    [fn] = app.get_functions()
    return fn


@pytest.fixture
def timed_driver(kafka_broker, topic_factory):
    """``start(seconds, options, linger_ms=5) -> (driver, send, reports)``: a running driver of
    :func:`sleeping_function` on fresh topics; ``send(*bodies, timestamp_ms=0)``."""
    started: list[tuple[EventHubFunctionDriver, threading.Event, threading.Thread]] = []
    producer = Producer(producer_config(kafka_broker.bootstrap_servers, **{"linger.ms": 0}))

    def start(seconds: float, options: EventHubOptions = HOST_JSON, linger_ms: int = 5):
        hub, out = topic_factory(partitions=1, suffix="in"), topic_factory(partitions=1, suffix="out")
        reports: list[BatchReport] = []
        driver = EventHubFunctionDriver(
            sleeping_function(seconds), {"HUB": hub, "OUT": out, "GROUP": f"g-{uuid.uuid4().hex[:8]}"},
            consumer_config(kafka_broker.bootstrap_servers, "unused", session_timeout_ms=2000),
            producer_config(kafka_broker.bootstrap_servers, **{"linger.ms": linger_ms}),
            options=options, on_batch=reports.append)
        stop = threading.Event()
        thread = threading.Thread(target=driver.run, args=(stop,), daemon=True)
        thread.start()
        started.append((driver, stop, thread))
        assert driver.assigned.wait(20), "no partition assigned"

        def send(*bodies: str, timestamp_ms: int = 0) -> None:
            for b in bodies:
                producer.produce(hub, value=b.encode(), timestamp=timestamp_ms)
            producer.flush(10)

        return driver, send, reports

    yield start
    for driver, stop, thread in started:
        stop.set()
        thread.join(10)
        driver.close()
    started.clear()
    del producer
    gc.collect()  # drop the Kafka clients before the session's broker stops


def wait_for(reports: list, n: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while len(reports) < n and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(reports) >= n, f"only {len(reports)} of {n} batches: {reports}"


def test_each_step_of_a_batch_is_timed_and_the_totals_sum_them(timed_driver, kafka_broker):
    driver, send, reports = timed_driver(0.2)
    send("a", "b", "c")
    deadline = time.monotonic() + 20
    while sum(r.consumed for r in reports) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sum(r.consumed for r in reports) == 3, reports
    first = reports[0]
    assert first.produced == {driver.outputs["out"]: first.consumed}
    assert first.invoke_ms >= 200  # the function's sleep, nothing else
    for name in BatchReport.TIMINGS:
        assert getattr(first, name) >= 0, name
    assert first.flush_ms > 0 and first.commit_ms > 0  # outputs acknowledged, checkpoint written
    assert first.waited_ms < first.invoke_ms  # minEventBatchSize 1: dispatched as soon as it is there
    for name in BatchReport.TIMINGS:
        assert getattr(driver.totals, name) == pytest.approx(sum(getattr(r, name) for r in reports)), name
    reader = Consumer(consumer_config(kafka_broker.bootstrap_servers, f"r-{uuid.uuid4().hex[:8]}"))
    reader.subscribe([driver.outputs["out"]])
    got: list[bytes] = []
    deadline = time.monotonic() + 20
    while len(got) < 3 and time.monotonic() < deadline:
        m = reader.poll(0.1)
        if m is not None and not m.error():
            got.append(m.value())
    reader.close()
    assert sorted(got) == [b"a", b"b", b"c"]


def test_hop_is_the_first_events_time_from_its_enqueued_time_to_the_driver(timed_driver):
    _driver, send, reports = timed_driver(0.0)
    enqueued = int(time.time() * 1000) - 60_000  # a producer timestamp a minute back
    send("old", timestamp_ms=enqueued)
    wait_for(reports, 1)
    assert 60_000 <= reports[0].hop_ms < 60_000 + 20_000


def test_waited_is_the_batch_wait_for_max_wait_time(timed_driver):
    options = EventHubOptions(max_event_batch_size=500, min_event_batch_size=5, max_wait_time_s=0.5)
    _driver, send, reports = timed_driver(0.0, options)
    send("lonely")
    wait_for(reports, 1)
    assert reports[0].consumed == 1
    assert reports[0].waited_ms >= 500  # a partial batch goes only after maxWaitTime ("host.json settings")


def test_commit_time_is_zero_for_a_batch_that_writes_no_checkpoint(timed_driver):
    options = EventHubOptions(max_event_batch_size=500, min_event_batch_size=1, max_wait_time_s=1.0,
                              batch_checkpoint_frequency=2)
    _driver, send, reports = timed_driver(0.0, options)
    send("one")
    wait_for(reports, 1)
    send("two")
    wait_for(reports, 2)
    assert reports[0].commit_ms == 0.0
    assert reports[1].commit_ms > 0.0


def test_outputs_are_sent_when_the_invocation_completes_not_after_the_producers_linger(timed_driver):
    """A producer lingering 10 s still acknowledges an invocation's outputs at once: ``flush`` overrides
    ``linger.ms`` (librdkafka ``rd_kafka_flush``), as the host sends outputs when the function returns."""
    _driver, send, reports = timed_driver(0.0, linger_ms=10_000)
    started = time.monotonic()
    send("x")
    wait_for(reports, 1, timeout=9.0)
    assert sum(reports[0].produced.values()) == 1
    assert reports[0].flush_ms < 5_000 and time.monotonic() - started < 9.0
