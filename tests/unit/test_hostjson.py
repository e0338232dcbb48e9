"""The local drivers read host.json and retry policies as the Functions host does (no servers).

Sources: "Azure Event Hubs trigger and bindings for Azure Functions", section "host.json settings",
tab "Extension v5.x/v6.x+" (defaults and limits; ``EventHubOptions`` setters in
Azure/azure-sdk-for-net); "Azure Functions error handling and retries", sections "Retry strategies"
and "Max retry counts"; ``build_retry_protos`` in Azure/azure-functions-python-worker (whole-second
``HH:mm:ss`` intervals); ``RandomizedExponentialBackoffStrategy`` in Azure/azure-webjobs-sdk.
"""

from __future__ import annotations

import json
import random
import threading

import azure.functions as func
import pytest

import function_app
from local_stack.functions_host import EventHubFunctionDriver, app_functions
from local_stack.hostjson import (
    HOST_JSON,
    BindingError,
    EventHubOptions,
    HostJsonError,
    RetryPolicy,
    execute,
    load_host_json,
    max_dequeue_count,
    timespan_seconds,
)
from local_stack.lifecycle_host import TimerFunctionDriver

SETTINGS = {"TICKS_HUB_NAME": "ticks", "PREDICTIONS_HUB_NAME": "predictions", "DEADLETTER_HUB_NAME": "deadletter",
            "PREDICT_CONSUMER_GROUP": "predict", "ARCHIVE_CONSUMER_GROUP": "archive", "SIGNALR_HUB_NAME": "tickcast",
            "BROADCAST_CONSUMER_GROUP": "broadcast", "RETRAIN_SCHEDULE": "0 0 * * * *"}
OFFLINE = {"bootstrap.servers": "127.0.0.1:9"}


def test_the_driver_batches_with_the_repository_host_json():
    """The driver's default options are host.json's ``extensions.eventHubs`` values, not its own."""
    eh = json.loads(HOST_JSON.read_text())["extensions"]["eventHubs"]
    archive = {f.get_function_name(): f for f in app_functions(function_app.app)}["archive"]
    driver = EventHubFunctionDriver(archive, SETTINGS, OFFLINE, OFFLINE)
    try:
        assert driver.options == EventHubOptions(
            max_event_batch_size=eh["maxEventBatchSize"], min_event_batch_size=eh["minEventBatchSize"],
            max_wait_time_s=timespan_seconds(eh["maxWaitTime"]),
            batch_checkpoint_frequency=eh["batchCheckpointFrequency"])
        assert driver.options.min_event_batch_size == 1 and not driver.options.waits
    finally:
        driver.consumer.close()


def test_host_json_values_defaults_and_limits():
    """Values are read case-insensitively; absent ones take the extension's defaults (100, 1, 1 min, 1);
    out-of-range ones are refused as the host's option setters refuse them."""
    host = {"extensions": {"EventHubs": {"MaxEventBatchSize": 64, "minEventBatchSize": 8, "maxWaitTime": "00:00:02.5",
                                        "batchCheckpointFrequency": 3}}}
    assert EventHubOptions.from_host_json(host) == EventHubOptions(64, 8, 2.5, 3)
    assert EventHubOptions.from_host_json({}) == EventHubOptions(100, 1, 60.0, 1)
    for bad in ({"maxEventBatchSize": 0}, {"minEventBatchSize": 0}, {"maxWaitTime": "00:10:01"},
                {"batchCheckpointFrequency": 0}, {"maxWaitTime": "5 seconds"}, {"maxEventBatchSize": "many"}):
        with pytest.raises(HostJsonError):
            EventHubOptions.from_host_json({"extensions": {"eventHubs": bad}})
    assert max_dequeue_count(load_host_json()) == 5  # the repository's host.json sets none: the default
    assert max_dequeue_count({"extensions": {"queues": {"maxDequeueCount": 2}}}) == 2
    with pytest.raises(HostJsonError):
        max_dequeue_count({"extensions": {"queues": {"maxDequeueCount": 0}}})


def test_archive_declares_a_bounded_exponential_backoff():
    """archive's idempotent upserts may be re-run: 5 retries, 4 s to 15 min (the documented example)."""
    archive = {f.get_function_name(): f for f in app_functions(function_app.app)}["archive"]
    assert RetryPolicy.of(archive) == RetryPolicy("exponential_backoff", 5, minimum_s=4, maximum_s=900)


def _policy(**retry) -> RetryPolicy | None:
    app = func.FunctionApp()

    def tick(timer: func.TimerRequest) -> None:
        raise RuntimeError("always")

    handler = app.timer_trigger(arg_name="timer", schedule="* * * * * *")(tick)
    if retry:
        handler = app.retry(**retry)(handler)
    app.function_name("tick")(handler)
    [fn] = app.get_functions()
    return fn


def test_retry_policies_are_read_as_the_python_worker_reads_them():
    """Intervals are whole-second ``HH:mm:ss`` (the worker's ``time.strptime``); other values fail indexing."""
    assert RetryPolicy.of(_policy()) is None
    assert RetryPolicy.of(_policy(strategy="fixed_delay", max_retry_count="-1", delay_interval="00:01:30")) == \
        RetryPolicy("fixed_delay", -1, delay_s=90)
    for bad in (dict(strategy="linear", max_retry_count="3", delay_interval="00:00:01"),
                dict(strategy="fixed_delay", max_retry_count="three", delay_interval="00:00:01"),
                dict(strategy="fixed_delay", max_retry_count="-2", delay_interval="00:00:01"),
                dict(strategy="fixed_delay", max_retry_count="3", delay_interval="00:00:00.5"),
                dict(strategy="fixed_delay", max_retry_count="3"),
                dict(strategy="exponential_backoff", max_retry_count="3", minimum_interval="00:00:05",
                     maximum_interval="00:00:02")):
        with pytest.raises(BindingError):
            RetryPolicy.of(_policy(**bad))


def test_exponential_backoff_delays_follow_the_host_strategy():
    """First retry: the minimum; then minimum + (0.8..1.2) * 2**(n-2) * minimum, capped at the maximum."""
    delays = RetryPolicy("exponential_backoff", 10, minimum_s=4, maximum_s=60).delays(random.Random(7))
    got = [next(delays) for _ in range(7)]
    assert got[0] == 4
    for n, d in enumerate(got[1:5], start=2):
        increment = 2 ** (n - 2) * 4
        assert 4 + 0.8 * increment <= d <= 4 + 1.2 * increment
    assert got[5:] == [60, 60]


def test_execute_retries_exactly_max_retry_count_times_then_gives_up():
    """"The maximum number of retries allowed per function execution": 1 + max_retry_count invocations."""
    calls = []

    def fail():
        calls.append(1)
        raise ValueError("no")

    outcome = execute(fail, RetryPolicy("fixed_delay", 3, delay_s=0), "f")
    assert (outcome.succeeded, outcome.attempts, len(calls), outcome.delays) == (False, 4, 4, [0.0, 0.0, 0.0])
    assert isinstance(outcome.error, ValueError)
    assert execute(fail, None, "f").attempts == 1
    stop = threading.Event()
    stop.set()  # the host stops during the first delay: no more attempts, nothing to checkpoint
    interrupted = execute(fail, RetryPolicy("fixed_delay", 3, delay_s=5), "f", stop)
    assert interrupted.interrupted and interrupted.attempts == 1


def test_a_timer_is_retried_only_under_a_policy():
    """"Retries" table: Timer retries come from retry policies (function-level); without one a failed
    occurrence is not run again until the next schedule."""
    for retry, attempts in (({}, 1), (dict(strategy="fixed_delay", max_retry_count="2",
                                           delay_interval="00:00:00"), 3)):
        driver = TimerFunctionDriver(_policy(**retry), {}, OFFLINE, interval_s=60)
        with pytest.raises(RuntimeError, match="always"):
            driver.run_once()
        assert (driver.attempts, driver.invocations) == (attempts, 0)
