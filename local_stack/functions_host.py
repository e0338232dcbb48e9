"""Drive Event-Hub-triggered Azure Functions from Kafka, the way the Functions host would.

This driver is hand-written because the Functions host (a .NET runtime with its
Event Hubs extension) is not available offline and no Python library runs
``azure.functions`` apps from Kafka; so the local stack reads each
function's binding declarations (``app.get_functions()``), resolves ``%NAME%``
binding expressions from the app settings, consumes the trigger hub as a Kafka
topic with the function's consumer group, and calls the decorated Python
function (``fn.get_user_function()``) with a batch of ``func.EventHubEvent`` and
one ``func.Out`` per Event Hub output binding.

A batch is committed in numbered steps (after quix-streams' checkpoint):

1. consume up to ``max_batch`` records (waiting at most ``max_wait_s``);
2. call the function with them;
3. produce everything it set on its output bindings (keyed by ``symbol``);
4. flush the producer, so the outputs are acknowledged by the broker;
5. commit the consumed offsets, synchronously.

So a crash between steps redelivers the batch (at-least-once) and never loses
an output; the downstream upserts make the redelivery harmless.

A ``signalR`` output binding (messages ``{"target", "arguments"}``, one or a JSON
array of them, as the Functions host accepts) is validated before step 3 and
handed to the ``signalr`` sink (the local hub) after step 4; without a sink the
messages are dropped, as Azure SignalR Service drops messages nobody listens to.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import azure.functions as func
from azure.functions.decorators.core import BindingDirection
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition

log = logging.getLogger(__name__)

_SETTING = re.compile(r"%([^%]+)%")


class BindingError(RuntimeError):
    """A function's bindings cannot be driven locally (missing setting, unsupported binding)."""


class CommitError(RuntimeError):
    """Outputs could not be acknowledged by the broker, so the batch's offsets were not committed."""


def resolve(expression: str, settings: Mapping[str, str]) -> str:
    """Resolve ``%NAME%`` binding expressions from ``settings``, as the Functions host does.

    Raises
    ------
    BindingError
        If a referenced setting is missing.
    """

    def sub(m: re.Match) -> str:
        if m.group(1) not in settings:
            raise BindingError(f"binding expression {m.group(0)} names a missing app setting")
        return settings[m.group(1)]

    return _SETTING.sub(sub, expression)


def trigger_of(function: Any, kind: str, what: str) -> dict[str, Any]:
    """The trigger declaration of ``function`` (its ``get_dict_repr()``), checked to be of type ``kind``.

    Raises
    ------
    BindingError
        The trigger is of another type (``what`` names the expected one, e.g. ``"a timer"``).
    """
    trigger = function.get_trigger().get_dict_repr()
    if trigger.get("type") != kind:
        raise BindingError(f"{function.get_function_name()}: trigger {trigger.get('type')} is not {what}")
    return trigger


def output_bindings(function: Any, settings: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """The output bindings of ``function``: Event Hub ones (name -> topic) and ``signalR`` ones (name -> hub).

    Raises
    ------
    BindingError
        Another output binding type, or an expression that cannot be resolved.
    """
    topics: dict[str, str] = {}
    hubs: dict[str, str] = {}
    for binding in function.get_bindings():
        spec = binding.get_dict_repr()
        if spec.get("direction") != BindingDirection.OUT:
            continue
        if spec.get("type") == "eventHub":
            topics[spec["name"]] = resolve(spec["eventHubName"], settings)
        elif spec.get("type") == "signalR":
            hubs[spec["name"]] = resolve(spec["hubName"], settings)
        else:
            raise BindingError(
                f"{function.get_function_name()}: output binding type {spec.get('type')} is not supported locally"
            )
    return topics, hubs


_FUNCTIONS: dict[int, list[Any]] = {}


def app_functions(app: func.FunctionApp) -> list[Any]:
    """``app.get_functions()``, indexed once per app object.

    azure-functions refuses to index an app twice in one process (it reports every
    function as a duplicate name), so drivers and tests share this one indexing.
    """
    if id(app) not in _FUNCTIONS:
        _FUNCTIONS[id(app)] = app.get_functions()
    return _FUNCTIONS[id(app)]


class CollectingOut(func.Out):
    """A ``func.Out`` that keeps what the function set, for the driver to send on."""

    def __init__(self) -> None:
        self._value: Any = None

    def set(self, val: Any) -> None:
        self._value = val

    def get(self) -> Any:
        return self._value

    def items(self) -> list[str | bytes]:
        """The value set, as a list of events (a single value becomes a list of one)."""
        if self._value is None:
            return []
        return list(self._value) if isinstance(self._value, (list, tuple)) else [self._value]


def _key_of(event: str | bytes) -> bytes | None:
    try:
        symbol = json.loads(event).get("symbol")
    except (ValueError, AttributeError):
        return None
    return symbol.encode() if isinstance(symbol, str) else None


def signalr_messages(value: Any) -> list[dict]:
    """The messages a function set on a ``signalR`` output binding, as the Functions host reads them.

    A JSON string holding one message or an array of messages, a dict, or a list
    of either; each must be ``{"target": str, "arguments": list}``.

    Raises
    ------
    BindingError
        A value that is not such a message (the host would fail the invocation).
    """
    items = value if isinstance(value, (list, tuple)) else [value]
    messages: list[dict] = []
    for item in items:
        if isinstance(item, (str, bytes)):
            try:
                item = json.loads(item)
            except ValueError as exc:
                raise BindingError(f"signalR output is not JSON: {exc}") from None
        for message in item if isinstance(item, list) else [item]:
            if not (isinstance(message, dict) and isinstance(message.get("target"), str)
                    and isinstance(message.get("arguments", []), list)):
                raise BindingError(f"signalR output is not a message with target and arguments: {str(message)[:200]}")
            messages.append(message)
    return messages


@dataclass
class BatchReport:
    """What one driven invocation consumed and produced."""

    consumed: int = 0
    produced: dict[str, int] = field(default_factory=dict)


class EventHubFunctionDriver:
    """Runs one Event-Hub-triggered function (cardinality many) from a Kafka topic.

    Parameters
    ----------
    function : an ``azure.functions`` ``Function`` (from ``app.get_functions()``
        or ``builder.build()``) whose trigger is ``eventHubTrigger``.
    settings : app settings used to resolve ``%NAME%`` expressions.
    consumer_config, producer_config : confluent-kafka configs (bootstrap servers
        and tuning); ``group.id`` comes from the trigger's consumer group.
    max_batch, max_wait_s : batch bounds, like host.json's ``maxEventBatchSize``
        and ``maxWaitTime``.

    Raises
    ------
    BindingError
        If the trigger is not an Event Hub trigger or an expression cannot be resolved.
    """

    def __init__(
        self,
        function: Any,
        settings: Mapping[str, str],
        consumer_config: Mapping[str, Any],
        producer_config: Mapping[str, Any],
        max_batch: int = 500,
        max_wait_s: float = 0.05,
        on_batch: Callable[[BatchReport], None] | None = None,
        signalr: Callable[[str, list[dict]], None] | None = None,
    ) -> None:
        trigger = trigger_of(function, "eventHubTrigger", "an Event Hub trigger")
        self.name = function.get_function_name()
        self.user_function = function.get_user_function()
        self.trigger_arg = trigger["name"]
        self.topic = resolve(trigger["eventHubName"], settings)
        self.group = resolve(trigger.get("consumerGroup") or "$Default", settings)
        self.outputs, self.signalr_outputs = output_bindings(function, settings)
        """Event Hub output binding name -> topic; signalR output binding name -> hub name."""
        self.signalr = signalr
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.on_batch = on_batch
        self.consumer = Consumer({**consumer_config, "group.id": self.group, "enable.auto.commit": False})
        self.producer = Producer(dict(producer_config))
        self.assigned = threading.Event()
        """Set once the consumer group has assigned partitions to this driver."""
        self.consumer.subscribe([self.topic], on_assign=lambda _c, _parts: self.assigned.set())
        self._failed_deliveries = 0
        self.totals = BatchReport()
        """Cumulative records consumed and committed, and outputs produced, per topic."""

    def _delivered(self, err: KafkaError | None, _msg: Any) -> None:
        if err is not None:
            self._failed_deliveries += 1
            log.error("%s: output not delivered: %s", self.name, err)

    def run_once(self) -> BatchReport:
        """Drive one batch through the five steps in the module docstring; return what it did.

        Raises
        ------
        CommitError
            When outputs were not acknowledged; offsets are then left uncommitted.
        """
        report = BatchReport()
        # 1. consume
        records = [m for m in self.consumer.consume(self.max_batch, self.max_wait_s) if not self._kafka_error(m)]
        if not records:
            return report
        report.consumed = len(records)
        events = [
            func.EventHubEvent(
                body=m.value() or b"",
                partition_key=(m.key() or b"").decode("utf-8", "replace") or None,
                sequence_number=m.offset(),
                offset=f"{m.partition()}:{m.offset()}",
                enqueued_time=datetime.fromtimestamp(m.timestamp()[1] / 1000, tz=UTC),
            )
            for m in records
        ]
        # 2. call the function
        outs = {name: CollectingOut() for name in self.outputs}
        hub_outs = {name: CollectingOut() for name in self.signalr_outputs}
        self.user_function(**{self.trigger_arg: events}, **outs, **hub_outs)
        hub_messages = {name: signalr_messages(out.get()) for name, out in hub_outs.items() if out.get() is not None}
        # 3. produce its outputs
        self._failed_deliveries = 0
        for name, out in outs.items():
            items = out.items()
            report.produced[self.outputs[name]] = len(items)
            for item in items:
                value = item.encode() if isinstance(item, str) else item
                self.producer.produce(self.outputs[name], value=value, key=_key_of(value), on_delivery=self._delivered)
                self.producer.poll(0)
        # 4. flush: every output acknowledged before anything is committed
        if self.producer.flush(30) > 0 or self._failed_deliveries:
            raise CommitError(f"{self.name}: {self._failed_deliveries} outputs failed or unflushed; offsets not committed")
        # after the flush, before the commit: SignalR messages to the hub (at most a duplicate on redelivery)
        for name, messages in hub_messages.items():
            hub = self.signalr_outputs[name]
            report.produced[f"signalR:{hub}"] = len(messages)
            if self.signalr is not None:
                self.signalr(hub, messages)
        # 5. commit the consumed offsets
        offsets: dict[tuple[str, int], int] = {}
        for m in records:
            offsets[(m.topic(), m.partition())] = max(offsets.get((m.topic(), m.partition()), -1), m.offset())
        self.consumer.commit(
            offsets=[TopicPartition(t, p, o + 1) for (t, p), o in offsets.items()], asynchronous=False
        )
        self.totals.consumed += report.consumed
        for topic, n in report.produced.items():
            self.totals.produced[topic] = self.totals.produced.get(topic, 0) + n
        if self.on_batch is not None:
            self.on_batch(report)
        return report

    def _kafka_error(self, message: Any) -> bool:
        err = message.error()
        if err is None:
            return False
        if err.code() != KafkaError._PARTITION_EOF:
            log.warning("%s: consumer error: %s", self.name, err)
        return True

    def run(self, stop: threading.Event) -> None:
        """Drive batches until ``stop`` is set; a failing batch is logged and retried."""
        while not stop.is_set():
            try:
                self.run_once()
            except Exception:  # keep driving, like the host: the batch is redelivered
                log.exception("%s: invocation failed; its batch will be redelivered", self.name)
                self._rewind()
                stop.wait(1.0)

    def _rewind(self) -> None:
        """Seek back to the committed offsets, so an uncommitted batch is consumed again."""
        assignment = self.consumer.assignment()
        if not assignment:
            return
        for tp in self.consumer.committed(assignment, timeout=10):
            if tp.offset < 0:  # nothing committed yet: start of the partition
                tp.offset = OFFSET_BEGINNING
            self.consumer.seek(tp)

    def close(self) -> None:
        """Flush outputs and leave the consumer group."""
        self.producer.flush(10)
        self.consumer.close()
