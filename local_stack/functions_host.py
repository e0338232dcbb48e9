"""Drive Event-Hub-triggered Azure Functions from Kafka, the way the Functions host would.

This driver is hand-written because the Functions host (a .NET runtime with its
Event Hubs extension) is not available offline and no Python library runs
``azure.functions`` apps from Kafka; so the local stack reads each
function's binding declarations (``app.get_functions()``), resolves ``%NAME%``
binding expressions from the app settings only (both in :mod:`local_stack.bindings`), consumes the trigger hub as a Kafka
topic with the function's consumer group, and calls the decorated Python
function (``fn.get_user_function()``) with a batch of ``func.EventHubEvent`` and
one ``func.Out`` per output binding. It is never kinder than the host:

* **Batches** follow host.json's ``extensions.eventHubs`` (:class:`~local_stack.hostjson.EventHubOptions`),
  one partition per batch as the host's per-partition processors make them: a batch is
  dispatched as soon as ``minEventBatchSize`` events of a partition are there, with at most
  ``maxEventBatchSize``; ``maxWaitTime`` applies only when the minimum is above 1, and then a
  partial batch goes after that wait ("Azure Event Hubs trigger and bindings for Azure
  Functions", section "host.json settings").
* **A failed invocation** (the function raises, or an output binding fails) is retried only
  under the function's retry policy (``@bp.retry``), with the policy's count and delays, while
  that partition waits; then, succeeded or not, its batch is **checkpointed past**. Without a
  policy a failed batch is lost at once. The host "intentionally checkpoint[s] the batch
  regardless of function success/failure" (``EventHubListener.cs`` in Azure/azure-sdk-for-net;
  Azure/Azure-Functions#947); "Event Hubs checkpoints aren't written until after the retry policy
  for the execution has completed" ("Azure Functions error handling and retries", section
  "Retry policies"). Lost events are counted (``totals.lost``) and logged with their offsets.
* **The try number**: a function that declares a ``context`` parameter gets a ``func.Context``
  (:class:`~local_stack.hostjson.InvocationContext`) whose ``retry_context`` holds the retries
  before this try and the policy's ``max_retry_count``, as the Python worker passes it
  ("Azure Functions error handling and retries", section "Retry policies", Python).
* **Checkpoints** are written every ``batchCheckpointFrequency`` batches of a partition.

One invocation goes in numbered steps:

1. call the function with the batch;
2. produce everything it set on its Event Hub output bindings (keyed by ``symbol``);
3. flush the producer, so the outputs are acknowledged by the broker;
4. hand what it set on ``signalR`` output bindings to the ``signalr`` sink (the local hub);

a failure at any step fails the invocation (an output binding error fails it in Azure too).
Step 3 sends at once whatever the producer's ``linger.ms``: librdkafka's ``flush`` ignores
``linger.ms`` for the duration of the call (``rd_kafka_flush`` in ``src/rdkafka.h``; librdkafka
v1.8.0), so outputs leave when the invocation completes, as the host sends output-binding events
with the invocation's result, and the outputs of one invocation still go in one request.
After the invocation and its retries, the batch's offsets are committed synchronously (the
checkpoint). A crash before the checkpoint redelivers the batch (at-least-once); the downstream
upserts make the redelivery harmless.

Each :class:`BatchReport` carries the batch's timings (``BatchReport.TIMINGS``): the first event's
hop from its enqueued time to the driver, its wait in the driver, then building the events, the
function call, produce, flush and the checkpoint commit; ``bench/pipeline.py`` prints their
percentiles for the latency runs.

A ``signalR`` output binding (messages ``{"target", "arguments"}``, one or a JSON
array of them, as the Functions host accepts) is validated before step 2; without a sink the
messages are dropped, as Azure SignalR Service drops messages nobody listens to.
"""

from __future__ import annotations

import inspect
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar

import azure.functions as func
from azure.functions.meta import Datum
from confluent_kafka import (TIMESTAMP_NOT_AVAILABLE, Consumer, KafkaError, KafkaException, Message, Producer,
                             TopicPartition)

from local_stack.bindings import (BindingError, CollectingOut, app_functions, output_bindings, resolve,
                                  signalr_messages, trigger_of)
from local_stack.hostjson import EventHubOptions, InvocationContext, Outcome, RetryPolicy, execute

__all__ = ["BindingError", "BatchReport", "CollectingOut", "EventHubFunctionDriver", "OutputError", "app_functions",
           "event_hub_events", "output_bindings", "resolve", "signalr_messages", "trigger_of"]

log = logging.getLogger(__name__)


class OutputError(RuntimeError):
    """Outputs were not acknowledged by the broker: the invocation fails, as an output binding error does."""


def _key_of(event: str | bytes) -> bytes | None:
    try:
        symbol = json.loads(event).get("symbol")
    except (ValueError, AttributeError):
        return None
    return symbol.encode() if isinstance(symbol, str) else None


def event_hub_events(records: list[Message], hub: str, group: str) -> list[func.EventHubEvent]:
    """One ``func.EventHubEvent`` per record of one partition's batch, as the Python worker builds them.

    Every event points to the batch's common trigger metadata, whose ``PartitionContext`` names the
    hub, consumer group and partition (``azure.functions.EventHubEvent.metadata``); ``enqueued_time``
    is the record's Kafka timestamp (ms since epoch UTC) as an aware UTC datetime, as the worker
    parses ``EnqueuedTimeUtc``; ``offset`` is ``"<partition>:<offset>"``. Records enqueued in the
    same millisecond share one datetime and records of one key one string (both immutable): the
    per-record cost falls from 1.5 to 0.9 us when a backlog is drained (~100 records per ms; 1.4 us
    at one record per ms; ``bench/pipeline.py`` shows the build share of the drain).
    """
    if not records:
        return []
    partition = records[0].partition()
    metadata = {"PartitionContext": Datum(json.dumps({
        "EventHubName": hub, "ConsumerGroup": group, "PartitionId": str(partition)}), "json")}
    prefix = f"{partition}:"
    times: dict[int, datetime] = {}
    keys: dict[bytes | None, str | None] = {None: None}
    events = []
    for m in records:
        ms = m.timestamp()[1]
        when = times.get(ms)
        if when is None:
            when = times[ms] = datetime.fromtimestamp(ms / 1000, tz=UTC)
        raw = m.key()
        key = keys.get(raw, keys)
        if key is keys:
            key = keys[raw] = raw.decode("utf-8", "replace") or None
        offset = m.offset()
        events.append(func.EventHubEvent(body=m.value() or b"", trigger_metadata=metadata, partition_key=key,
                                         sequence_number=offset, offset=prefix + str(offset), enqueued_time=when))
    return events


@dataclass
class BatchReport:
    """What one batch did: events consumed, outputs produced, attempts, events lost.

    Attributes
    ----------
    consumed : events in the batch.
    produced : outputs per topic (``signalR:<hub>`` for SignalR messages) of the attempt that succeeded.
    partition : the Kafka partition (the Event Hub partition) of the batch; -1 in totals.
    attempts : invocations made (1 + retries).
    lost : events of the batch when every attempt failed and it was checkpointed past, else 0.
    hop_ms : wall-clock ms from the batch's first event's enqueued time (its Kafka timestamp, ms
        since epoch UTC, set by the producer) to its arrival in the driver: producer linger, broker
        and fetch wait together (clocks of one machine).
    waited_ms : ms the batch's first event waited in the driver before dispatch (``time.monotonic``).
    build_ms : ms building the batch's ``func.EventHubEvent`` objects (last attempt).
    invoke_ms : ms in the function call (last attempt).
    produce_ms : ms handing the outputs to the producer and validating SignalR outputs (last attempt).
    flush_ms : ms until the broker acknowledged every output (``Producer.flush``; last attempt).
    commit_ms : ms of the synchronous checkpoint commit (0 when this batch wrote no checkpoint).

    In :attr:`EventHubFunctionDriver.totals` the ``*_ms`` fields are sums over the batches.
    """

    consumed: int = 0
    produced: dict[str, int] = field(default_factory=dict)
    partition: int = -1
    attempts: int = 0
    lost: int = 0
    hop_ms: float = 0.0
    waited_ms: float = 0.0
    build_ms: float = 0.0
    invoke_ms: float = 0.0
    produce_ms: float = 0.0
    flush_ms: float = 0.0
    commit_ms: float = 0.0

    TIMINGS: ClassVar[tuple[str, ...]] = ("hop_ms", "waited_ms", "build_ms", "invoke_ms", "produce_ms", "flush_ms", "commit_ms")
    """The names of the per-batch timings, in the order a batch goes through them."""


_Key = tuple[str, int]


class EventHubFunctionDriver:
    """Runs one Event-Hub-triggered function (cardinality many) from a Kafka topic, as the host would.

    Parameters
    ----------
    function : an ``azure.functions`` ``Function`` (from ``app.get_functions()``
        or ``builder.build()``) whose trigger is ``eventHubTrigger``; its retry policy, if any,
        is read from its settings (``@bp.retry``).
    settings : app settings used to resolve ``%NAME%`` expressions (nothing else is consulted).
    consumer_config, producer_config : confluent-kafka configs (bootstrap servers
        and tuning); ``group.id`` comes from the trigger's consumer group.
    options : batching and checkpointing; by default read from the repository's host.json.
    on_batch : called with the :class:`BatchReport` of each checkpointed batch.
    signalr : sink ``(hub, messages)`` of ``signalR`` output bindings.
    poll_s : longest single wait for the first event of a batch, seconds (how often ``run``
        notices ``stop``); the wait ends as soon as an event arrives.
    rng : random source of the exponential backoff's jitter (tests pass a seeded one).

    Raises
    ------
    BindingError
        The trigger is not an Event Hub trigger, an expression names a missing app setting, an
        output binding cannot be driven locally, or the retry policy cannot be indexed.
    """

    def __init__(
        self,
        function: Any,
        settings: Mapping[str, str],
        consumer_config: Mapping[str, Any],
        producer_config: Mapping[str, Any],
        options: EventHubOptions | None = None,
        on_batch: Callable[[BatchReport], None] | None = None,
        signalr: Callable[[str, list[dict]], None] | None = None,
        poll_s: float = 0.1,
        rng: Any = None,
    ) -> None:
        trigger = trigger_of(function, "eventHubTrigger", "an Event Hub trigger")
        self.name = function.get_function_name()
        self.user_function = function.get_user_function()
        self.trigger_arg = trigger["name"]
        self.takes_context = "context" in inspect.signature(self.user_function).parameters
        """Whether the function declares ``context`` (the worker then passes a ``func.Context``)."""
        self.topic = resolve(trigger["eventHubName"], settings)
        self.group = resolve(trigger.get("consumerGroup") or "$Default", settings)
        self.outputs, self.signalr_outputs = output_bindings(function, settings)
        """Event Hub output binding name -> topic; signalR output binding name -> hub name."""
        self.retry = RetryPolicy.of(function)
        """The function's retry policy; ``None``: a failed batch is checkpointed past at once."""
        self.options = options if options is not None else EventHubOptions.from_host_json()
        self.signalr = signalr
        self.on_batch = on_batch
        self.poll_s = poll_s
        self.rng = rng
        self.consumer = Consumer({**consumer_config, "group.id": self.group, "enable.auto.commit": False})
        self.producer = Producer(dict(producer_config))
        self.assigned = threading.Event()
        """Set once the consumer group has assigned partitions to this driver."""
        self.consumer.subscribe([self.topic], on_assign=self._on_assign, on_revoke=self._on_revoke)
        self._stored: dict[_Key, list[Message]] = {}
        """Events read but not yet dispatched, per partition (the host's stored events)."""
        self._since: dict[_Key, float] = {}
        """When each partition's wait to fill a batch started (``time.monotonic()``)."""
        self._arrived: dict[_Key, list[float]] = {}
        """When each stored event arrived (``time.monotonic()``), parallel to ``_stored``."""
        self._unsaved: dict[_Key, tuple[int, int]] = {}
        """Per partition: batches since its last checkpoint, and the offset to checkpoint."""
        self._failed_deliveries = 0
        self.totals = BatchReport()
        """Cumulative events checkpointed (``consumed``, lost ones included), outputs produced per
        topic, invocations made and events lost."""

    def _on_assign(self, _consumer: Any, _partitions: list[TopicPartition]) -> None:
        self.assigned.set()

    def _on_revoke(self, _consumer: Any, partitions: list[TopicPartition]) -> None:
        """A partition went to another owner: it resumes from the last checkpoint, so forget what is held."""
        for tp in partitions:
            self._stored.pop((tp.topic, tp.partition), None)
            self._since.pop((tp.topic, tp.partition), None)
            self._arrived.pop((tp.topic, tp.partition), None)
            self._unsaved.pop((tp.topic, tp.partition), None)

    def _delivered(self, err: KafkaError | None, _msg: Any) -> None:
        if err is not None:
            self._failed_deliveries += 1
            log.error("%s: output not delivered: %s", self.name, err)

    # ------------------------------------------------------------------ batching
    def _fetch(self) -> None:
        """Read what is there into the per-partition stores, waiting only for the first event.

        The wait ends as soon as one event arrives (``poll``), then everything already fetched is
        taken without waiting (``consume(n, 0)``): nothing waits for a batch to fill unless
        ``minEventBatchSize`` is above 1, and then only until the oldest wait reaches ``maxWaitTime``.
        """
        timeout = self.poll_s
        if self._since:
            oldest = min(self._since.values())
            timeout = min(timeout, max(0.0, oldest + self.options.max_wait_time_s - time.monotonic()))
        first = self.consumer.poll(timeout)
        if first is None:
            return
        now = time.monotonic()
        chunks: dict[int, list[Message]] = {}  # per partition of the one topic subscribed, in order
        for m in [first, *self.consumer.consume(self.options.max_event_batch_size, 0)]:
            if m.error() is not None:
                self._kafka_error(m)
                continue
            chunk = chunks.get(m.partition())
            if chunk is None:
                chunk = chunks[m.partition()] = []
            chunk.append(m)
        for partition, chunk in chunks.items():
            key = (self.topic, partition)
            self._stored.setdefault(key, []).extend(chunk)
            self._arrived.setdefault(key, []).extend([now] * len(chunk))
            self._since.setdefault(key, now)

    def _ready(self) -> list[tuple[_Key, list[Message], float]]:
        """Take the batches due now: ``minEventBatchSize`` events, or whatever waited ``maxWaitTime``.

        Each comes with the arrival time (``time.monotonic()``) of its first event.
        """
        now, o = time.monotonic(), self.options
        due = []
        for key in list(self._stored):
            stored, arrived = self._stored[key], self._arrived[key]
            if len(stored) >= o.min_event_batch_size or now - self._since[key] >= o.max_wait_time_s:
                due.append((key, stored[: o.max_event_batch_size], arrived[0]))
                rest = stored[o.max_event_batch_size:]
                if rest:  # the host restarts the wait on the events left over
                    self._stored[key], self._since[key] = rest, now
                    self._arrived[key] = arrived[o.max_event_batch_size:]
                else:
                    del self._stored[key], self._since[key], self._arrived[key]
        return due

    def run_once(self, stop: threading.Event | None = None) -> list[BatchReport]:
        """Read what is there and dispatch every batch that is due; return their reports.

        ``stop`` ends a retry delay early (the batch is then not checkpointed, as when a host
        instance stops during a retry policy).
        """
        self._fetch()
        due, reports = self._ready(), []
        for i, (key, records, arrived) in enumerate(due):
            try:
                reports.append(self._dispatch(key, records, stop, arrived))
            except Exception:
                # Outside the invocation (e.g. the on_batch callback): the batches not yet
                # dispatched go back in front of their partitions, so none is dropped unseen.
                for k, recs, at in reversed(due[i + 1:]):
                    self._stored[k] = recs + self._stored.get(k, [])
                    self._arrived[k] = [at] * len(recs) + self._arrived.get(k, [])
                    self._since.setdefault(k, time.monotonic())
                raise
        return reports

    # ------------------------------------------------------------------ one batch
    def _invoke(self, records: list[Message], retried: int = 0, report: BatchReport | None = None) -> dict[str, int]:
        """One invocation (after ``retried`` failed tries): call, produce, flush, hand SignalR messages over.

        Returns the outputs per topic; the time of each step goes into ``report`` (``build_ms``,
        ``invoke_ms``, ``produce_ms``, ``flush_ms``), as far as the invocation got.

        Raises
        ------
        Exception
            Whatever the function raises; :class:`BindingError` for an invalid SignalR output;
            :class:`OutputError` when outputs were not acknowledged.
        """
        report = report if report is not None else BatchReport()
        t0 = time.perf_counter()
        events = event_hub_events(records, self.topic, self.group)
        outs = {name: CollectingOut() for name in self.outputs}
        hub_outs = {name: CollectingOut() for name in self.signalr_outputs}
        context = {"context": InvocationContext.for_try(self.name, self.retry, retried)} if self.takes_context else {}
        t1 = time.perf_counter()
        report.build_ms, report.invoke_ms, report.produce_ms, report.flush_ms = (t1 - t0) * 1e3, 0.0, 0.0, 0.0
        try:
            self.user_function(**{self.trigger_arg: events}, **outs, **hub_outs, **context)
        finally:
            t2 = time.perf_counter()
            report.invoke_ms = (t2 - t1) * 1e3
        hub_messages = {name: signalr_messages(out.get()) for name, out in hub_outs.items() if out.get() is not None}
        produced: dict[str, int] = {}
        self._failed_deliveries = 0
        for name, out in outs.items():
            items = out.items()
            produced[self.outputs[name]] = len(items)
            for item in items:
                value = item.encode() if isinstance(item, str) else item
                self.producer.produce(self.outputs[name], value=value, key=_key_of(value), on_delivery=self._delivered)
                self.producer.poll(0)
        t3 = time.perf_counter()
        report.produce_ms = (t3 - t2) * 1e3
        unflushed = self.producer.flush(30)
        report.flush_ms = (time.perf_counter() - t3) * 1e3
        if unflushed > 0 or self._failed_deliveries:
            raise OutputError(f"{self.name}: {self._failed_deliveries} outputs failed or unflushed")
        for name, messages in hub_messages.items():
            hub = self.signalr_outputs[name]
            produced[f"signalR:{hub}"] = len(messages)
            if self.signalr is not None:
                self.signalr(hub, messages)
        return produced

    def _dispatch(self, key: _Key, records: list[Message], stop: threading.Event | None,
                  arrived: float | None = None) -> BatchReport:
        """Invoke for one partition's batch under the retry policy, then checkpoint past it.

        ``arrived``: when the batch's first event arrived in the driver (``time.monotonic()``).
        """
        report = BatchReport(consumed=len(records), partition=key[1])
        if arrived is not None:
            now = time.monotonic()
            report.waited_ms = (now - arrived) * 1e3
            kind, enqueued_ms = records[0].timestamp()
            if kind != TIMESTAMP_NOT_AVAILABLE:
                report.hop_ms = (time.time() - (now - arrived)) * 1e3 - enqueued_ms

        tries = 0

        def attempt() -> None:
            nonlocal tries
            tries += 1
            report.produced = self._invoke(records, retried=tries - 1, report=report)

        outcome: Outcome = execute(attempt, self.retry, self.name, stop, self.rng)
        report.attempts = outcome.attempts
        self.totals.attempts += outcome.attempts
        if outcome.interrupted:  # stopping during a retry delay: no checkpoint, redelivered on restart
            return report
        if not outcome.succeeded:
            report.lost = len(records)
            self.totals.lost += report.lost
            log.error("%s: batch of %d events (%s[%d] offsets %d-%d) failed %d time(s) (%s: %s); checkpointed past: lost",
                      self.name, len(records), key[0], key[1], records[0].offset(), records[-1].offset(),
                      outcome.attempts, "retry policy exhausted" if self.retry else "no retry policy", outcome.error)
        report.commit_ms = self._checkpoint(key, records[-1].offset() + 1)
        self.totals.consumed += report.consumed
        for name in BatchReport.TIMINGS:
            setattr(self.totals, name, getattr(self.totals, name) + getattr(report, name))
        for topic, n in report.produced.items():
            self.totals.produced[topic] = self.totals.produced.get(topic, 0) + n
        if self.on_batch is not None:
            self.on_batch(report)
        return report

    def _checkpoint(self, key: _Key, next_offset: int) -> float:
        """Count the batch; every ``batchCheckpointFrequency`` batches, commit the partition synchronously.

        Returns the ms the commit took (failed or not), 0.0 when this batch wrote no checkpoint.
        """
        batches = self._unsaved.get(key, (0, 0))[0] + 1
        if batches < self.options.batch_checkpoint_frequency:
            self._unsaved[key] = (batches, next_offset)
            return 0.0
        t0 = time.perf_counter()
        try:
            self.consumer.commit(offsets=[TopicPartition(key[0], key[1], next_offset)], asynchronous=False)
        except KafkaException as exc:
            # The host logs a failed checkpoint and reads on; the partition's next checkpoint
            # retries it, and events past the last stored checkpoint are redelivered after a restart.
            self._unsaved[key] = (batches, next_offset)
            log.warning("%s: checkpoint of %s[%d] at offset %d failed: %s", self.name, key[0], key[1], next_offset, exc)
            return (time.perf_counter() - t0) * 1e3
        self._unsaved.pop(key, None)
        return (time.perf_counter() - t0) * 1e3

    def _kafka_error(self, message: Any) -> bool:
        err = message.error()
        if err is None:
            return False
        if err.code() != KafkaError._PARTITION_EOF:
            log.warning("%s: consumer error: %s", self.name, err)
        return True

    def run(self, stop: threading.Event) -> None:
        """Drive batches until ``stop`` is set; an error outside an invocation (a failed commit) is logged."""
        while not stop.is_set():
            try:
                self.run_once(stop)
            except Exception:  # outside an invocation: the host logs it and reads on
                log.exception("%s: driving failed outside an invocation", self.name)
                stop.wait(1.0)
            except BaseException:  # SystemExit and the like from user code: never die silently
                log.critical("%s: driver thread died", self.name, exc_info=True)
                raise

    def close(self) -> None:
        """Flush outputs and leave the consumer group (events not checkpointed are redelivered to the next owner)."""
        self.producer.flush(10)
        self.consumer.close()
