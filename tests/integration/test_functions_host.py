"""The local Functions drivers against real Tansu (and Azurite): batching, failures, retries, indexing.

Each test names the Microsoft document (or source) whose behaviour it pins; the drivers must
never be kinder than the Functions host:

* "Azure Event Hubs trigger and bindings for Azure Functions", section "host.json settings"
  (https://learn.microsoft.com/azure/azure-functions/functions-bindings-event-hubs#host-json);
* "Azure Functions error handling and retries", sections "Retries", "Retry policies",
  "Retry strategies", "Max retry counts"
  (https://learn.microsoft.com/azure/azure-functions/functions-bindings-error-pages);
* Azure/Azure-Functions#947 ("Event Hub-triggered function *always* checkpoints") and the comment
  in ``EventHubListener.cs`` (Azure/azure-sdk-for-net): "we intentionally checkpoint the batch
  regardless of function success/failure";
* "Azure Blob storage trigger for Azure Functions", section "Poison blobs".
"""

from __future__ import annotations

import contextlib
import gc
import threading
import time
import uuid

import azure.functions as func
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from local_stack.functions_host import BindingError, EventHubFunctionDriver
from local_stack.hostjson import EventHubOptions
from local_stack.lifecycle_host import BlobTriggerPoller
from local_stack.tansu import consumer_config, producer_config


def event_hub_function(hub: str = "%HUB%", body=None, retry: dict | None = None):
    """A one-function app: Event Hub trigger on ``hub`` (group ``%GROUP%``), calling ``body(events)``."""
    app = func.FunctionApp()

    def handler(events: list[func.EventHubEvent]) -> None:
        body(events)

    handler = app.event_hub_message_trigger(arg_name="events", event_hub_name=hub, connection="EVENTHUB",
                                            consumer_group="%GROUP%", cardinality="many",
                                            data_type="binary")(handler)
    if retry is not None:
        handler = app.retry(**retry)(handler)
    app.function_name("probe")(handler)
    [fn] = app.get_functions()
    return fn


class Recorder:
    """Records each invocation (time, bodies); raises for a batch holding a body that starts with ``bad``."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, list[str]]] = []

    def __call__(self, events: list[func.EventHubEvent]) -> None:
        bodies = [e.get_body().decode() for e in events]
        self.calls.append((time.monotonic(), bodies))
        if any(b.startswith("bad") for b in bodies):
            raise RuntimeError(f"cannot handle {bodies}")

    def batches(self) -> list[list[str]]:
        return [bodies for _, bodies in self.calls]

    def wait_for(self, n: int, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.calls) < n and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(self.calls) >= n, f"only {len(self.calls)} of {n} invocations: {self.batches()}"


@pytest.fixture
def drive(kafka_broker, topic_factory):
    """``drive(recorder, options, retry=None) -> (driver, send)``: a running driver on a fresh 1-partition topic."""
    started: list[tuple[EventHubFunctionDriver, threading.Event, threading.Thread]] = []
    producer = Producer(producer_config(kafka_broker.bootstrap_servers, **{"linger.ms": 0}))

    def start(recorder, options: EventHubOptions, retry: dict | None = None):
        topic = topic_factory(partitions=1)
        settings = {"HUB": topic, "GROUP": f"g-{uuid.uuid4().hex[:8]}"}
        driver = EventHubFunctionDriver(
            event_hub_function(body=recorder, retry=retry), settings,
            consumer_config(kafka_broker.bootstrap_servers, "unused", session_timeout_ms=2000),
            producer_config(kafka_broker.bootstrap_servers), options=options)
        stop = threading.Event()
        thread = threading.Thread(target=driver.run, args=(stop,), daemon=True)
        thread.start()
        started.append((driver, stop, thread))
        assert driver.assigned.wait(20), "no partition assigned"

        def send(*bodies: str) -> float:
            for b in bodies:
                producer.produce(topic, value=b.encode())
            producer.flush(10)
            return time.monotonic()

        return driver, send

    yield start
    for driver, stop, thread in started:
        stop.set()
        thread.join(10)
        driver.close()
    started.clear()
    del producer
    gc.collect()  # drop the Kafka clients before the session's broker stops


def committed(kafka_broker, driver: EventHubFunctionDriver) -> int:
    """The partition 0 checkpoint of ``driver``'s consumer group (the next offset to read), read by another client."""
    reader = Consumer(consumer_config(kafka_broker.bootstrap_servers, driver.group))
    try:
        [tp] = reader.committed([TopicPartition(driver.topic, 0)], timeout=10)
        return tp.offset
    finally:
        reader.close()


def test_a_low_rate_event_is_dispatched_at_once_when_min_batch_is_1(drive, kafka_broker):
    """host.json reference, Event Hubs extension 5.x: ``maxWaitTime`` "is only considered when
    ``minEventBatchSize`` is larger than 1 and is otherwise ignored", so with the minimum at 1 the
    host invokes as soon as one event is there. The old driver's ``consume(500, 0.05)`` held every
    low-rate batch for 50 ms; here ``maxWaitTime`` is 5 s and single events, 0.2 s apart, must still
    go at once (Tansu's own fetch wait is 10 ms)."""
    recorder = Recorder()
    driver, send = drive(recorder, EventHubOptions(max_event_batch_size=500, min_event_batch_size=1,
                                                   max_wait_time_s=5.0))
    send("warm-up")  # the first fetch after an assignment also looks up the start offset
    recorder.wait_for(1)
    latencies = []
    for i in range(7):
        time.sleep(0.2)
        sent = send(f"event-{i}")
        recorder.wait_for(2 + i)
        latencies.append(recorder.calls[-1][0] - sent)
    print(f"\nsingle events, min batch 1: dispatched after {sorted(round(x * 1000) for x in latencies)} ms")
    assert recorder.batches() == [["warm-up"]] + [[f"event-{i}"] for i in range(7)]
    assert sorted(latencies)[3] < 0.04 and max(latencies) < 0.5
    deadline = time.monotonic() + 5
    while committed(kafka_broker, driver) != 8 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert committed(kafka_broker, driver) == 8


def test_with_min_batch_above_1_a_partial_batch_waits_for_max_wait_time(drive):
    """host.json reference, Event Hubs extension 5.x: "If less than ``minEventBatchSize`` events were
    available before the wait time elapses, the function is invoked with a partial batch"; and
    batches hold at most ``maxEventBatchSize`` events (a full batch goes without waiting)."""
    recorder = Recorder()
    _, send = drive(recorder, EventHubOptions(max_event_batch_size=3, min_event_batch_size=3,
                                              max_wait_time_s=1.5))
    sent = send("a", "b", "c", "d")
    recorder.wait_for(2)
    first, second = recorder.calls
    assert [first[1], second[1]] == [["a", "b", "c"], ["d"]]
    assert first[0] - sent < 1.0  # the minimum was there: no wait
    assert second[0] - sent >= 1.5  # the partial batch waited maxWaitTime


def test_without_retry_policy_a_failed_batch_is_checkpointed_past_and_lost(drive, kafka_broker):
    """Azure/Azure-Functions#947 and ``EventHubListener.cs``: the host checkpoints a batch whether
    the function succeeded or failed; "Azure Functions error handling and retries", "Retries": Event
    Hubs retries come only from a (function-level) retry policy. So without one, the failed batch
    is invoked once, never again, and the next batch is delivered after it. What it loses: both
    events of the failed batch are gone for this consumer group (checkpoint 4 of 4, ``lost`` 2);
    a restart would not see them again."""
    recorder = Recorder()
    driver, send = drive(recorder, EventHubOptions(max_event_batch_size=2, min_event_batch_size=2,
                                                   max_wait_time_s=10))
    send("bad-1", "bad-2", "ok-3", "ok-4")
    recorder.wait_for(2)
    time.sleep(0.5)  # room for a (wrong) redelivery
    assert recorder.batches() == [["bad-1", "bad-2"], ["ok-3", "ok-4"]]
    assert driver.totals.lost == 2 and driver.totals.consumed == 4 and driver.totals.attempts == 2
    assert committed(kafka_broker, driver) == 4


def test_with_exponential_backoff_policy_a_batch_is_retried_max_retry_count_times_then_lost(drive, kafka_broker):
    """"Azure Functions error handling and retries": a retry policy reruns a failed execution
    "until either successful completion occurs or the maximum number of retries is reached";
    exponential backoff: "The first retry waits for the minimum delay. On subsequent retries, time
    is added exponentially ... until the maximum delay is reached" (with 0.8–1.2 jitter,
    ``RandomizedExponentialBackoffStrategy``); "Event Hubs checkpoints aren't written until after
    the retry policy for the execution has completed ... progress on the specific partition is
    paused". The Python worker takes intervals as whole ``HH:mm:ss`` seconds, so 1 s is the
    smallest non-zero one. Expected: 3 invocations of the failing batch, 1 s then 1.8–2 s apart,
    then the checkpoint moves past it (lost) and only then is the next batch delivered."""
    recorder = Recorder()
    driver, send = drive(recorder, EventHubOptions(max_event_batch_size=2, min_event_batch_size=2,
                                                   max_wait_time_s=10),
                         retry={"strategy": "exponential_backoff", "max_retry_count": "2",
                                "minimum_interval": "00:00:01", "maximum_interval": "00:00:02"})
    send("bad-1", "bad-2", "ok-3", "ok-4")
    recorder.wait_for(4)
    time.sleep(0.5)
    assert recorder.batches() == [["bad-1", "bad-2"]] * 3 + [["ok-3", "ok-4"]]
    (t0, _), (t1, _), (t2, _), (t3, _) = recorder.calls
    print(f"\nretry gaps: {t1 - t0:.2f} s, {t2 - t1:.2f} s")
    assert 1.0 <= t1 - t0 < 1.5
    assert 1.8 <= t2 - t1 < 2.5
    assert t3 - t2 < 1.0  # the next batch right after the policy gave up
    assert driver.totals.lost == 2 and driver.totals.attempts == 4
    assert committed(kafka_broker, driver) == 4


def test_with_fixed_delay_policy_a_batch_that_recovers_is_not_lost(drive):
    """"Azure Functions error handling and retries", "Retry strategies", fixed delay: "A specified
    amount of time is allowed to elapse between each retry"; a retry that succeeds ends the
    execution, so nothing is lost."""
    failures = iter([True, False])
    calls: list[float] = []

    def flaky(events: list[func.EventHubEvent]) -> None:
        calls.append(time.monotonic())
        if next(failures):
            raise RuntimeError("transient")

    driver, send = drive(flaky, EventHubOptions(), retry={"strategy": "fixed_delay", "max_retry_count": "3",
                                                            "delay_interval": "00:00:01"})
    send("x")
    deadline = time.monotonic() + 10
    while driver.totals.consumed < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(calls) == 2 and 1.0 <= calls[1] - calls[0] < 1.5
    assert driver.totals.lost == 0 and driver.totals.consumed == 1


def test_binding_expressions_resolve_from_app_settings_only(kafka_broker, monkeypatch):
    """The host resolves ``%NAME%`` from app settings, and a function whose expression names an
    unset one fails to index ("Azure Functions binding expression patterns", "Binding expressions -
    app settings"). The driver gets the app settings explicitly: the process environment and the
    settings' documented defaults are not consulted. A retry interval the Python worker cannot
    parse (``time.strptime(v, "%H:%M:%S")`` in its ``build_retry_protos``) fails indexing too."""
    monkeypatch.setenv("HUB", "from-the-environment")
    ccfg = consumer_config(kafka_broker.bootstrap_servers, "unused")
    pcfg = producer_config(kafka_broker.bootstrap_servers)
    with pytest.raises(BindingError, match="%HUB%"):
        EventHubFunctionDriver(event_hub_function(body=print), {"GROUP": "g"}, ccfg, pcfg)
    with pytest.raises(BindingError, match="%GROUP%"):
        EventHubFunctionDriver(event_hub_function(body=print), {"HUB": "h"}, ccfg, pcfg)
    with pytest.raises(BindingError, match="HH:mm:ss"):
        EventHubFunctionDriver(event_hub_function(body=print, retry={
            "strategy": "fixed_delay", "max_retry_count": "3", "delay_interval": "00:00:00.5"}),
            {"HUB": "h", "GROUP": "g"}, ccfg, pcfg)


def test_blob_trigger_tries_a_failing_blob_max_dequeue_count_times_then_poisons_it(blob_container, kafka_broker):
    """"Azure Blob storage trigger for Azure Functions", "Poison blobs": "When a blob trigger function
    fails for a given blob, Azure Functions retries that function a total of five times by default.
    If all 5 tries fail, Azure Functions adds a message to a Storage queue named
    webjobs-blobtrigger-poison" (FunctionId, BlobType, ContainerName, BlobName, ETag). A retry
    policy does not change that: blob triggers are not among the triggers that support one."""
    app = func.FunctionApp()
    tries: list[str] = []

    def handler(blob: func.InputStream) -> None:
        tries.append(blob.name)
        raise RuntimeError("cannot read it")

    handler = app.blob_trigger(arg_name="blob", path="%CONTAINER%/in/{name}", connection="STORAGE",
                               source=func.BlobSource.EVENT_GRID)(handler)
    handler = app.retry(strategy="fixed_delay", max_retry_count="9", delay_interval="00:00:00")(handler)
    app.function_name("probe_blob")(handler)
    [fn] = app.get_functions()
    poller = BlobTriggerPoller(fn, {"CONTAINER": blob_container.container_name}, blob_container,
                               producer_config(kafka_broker.bootstrap_servers), poll_s=0.01)
    assert poller.max_tries == 5  # host.json sets no extensions.queues.maxDequeueCount: the default
    blob_container.upload_blob("in/x.json", b"{}")
    for _ in range(8):
        with pytest.raises(RuntimeError) if len(tries) < 5 else contextlib.nullcontext():
            poller.run_once()
    assert len(tries) == 5 and poller.poisoned == ["in/x.json"]
    [message] = poller.poison_messages
    assert message["BlobName"] == "in/x.json" and message["ContainerName"] == blob_container.container_name
    assert message["BlobType"] == "BlockBlob" and message["ETag"]

