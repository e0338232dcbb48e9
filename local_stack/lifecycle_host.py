"""Drive the timer and blob-triggered functions locally, in place of the Functions host.

Hand-written for the same reason as :mod:`local_stack.functions_host`: the Functions host
and Event Grid are not available offline, and no library drives ``azure.functions`` apps.

* :class:`TimerFunctionDriver` calls a timer-triggered function every ``interval_s``
  seconds (the local stack's short schedule; in Azure the host evaluates the
  NCRONTAB expression of the binding).
* :class:`BlobTriggerPoller` stands in for the Event Grid subscription of an
  ``EventGrid``-source blob trigger: it lists the container every ``poll_s`` seconds
  and calls the function once for each new blob whose name matches the trigger's
  path pattern (blobs present when it started are taken as already seen, like
  events that happened before a subscription existed).

Both send what the function sets on its Event Hub output bindings to the Kafka
topic of the same name, flushing before the next invocation, and hand what it sets
on a ``signalR`` output binding to the local SignalR hub (when one is given).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Mapping
from typing import Any

import azure.functions as func
from azure.functions.timer import TimerRequest
from azure.storage.blob import ContainerClient
from confluent_kafka import KafkaError, Producer

from local_stack.functions_host import (
    BindingError,
    CollectingOut,
    output_bindings,
    resolve,
    signalr_messages,
    trigger_of,
)

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 5
"""Invocations of one blob before it is set aside as poison (the Functions host's default, ``maxDequeueCount``)."""


def _repeat(driver: Any, every_s: float, stop: threading.Event, failed: str) -> None:
    """Call ``driver.run_once()`` every ``every_s`` seconds until ``stop``; count and log failures."""
    while not stop.wait(every_s):
        try:
            driver.run_once()
        except Exception:
            driver.failures += 1
            log.exception("%s: %s", driver.name, failed)


class _Outputs:
    """The output bindings of one function: Event Hub outputs to Kafka topics, SignalR to a local hub."""

    def __init__(self, function: Any, settings: Mapping[str, str], producer_config: Mapping[str, Any],
                 signalr: Callable[[str, list[dict]], None] | None = None) -> None:
        self.name = function.get_function_name()
        self.topics, self.hubs = output_bindings(function, settings)
        self.producer = Producer(dict(producer_config)) if self.topics else None
        self.signalr = signalr
        self.produced: dict[str, int] = {}

    def collectors(self) -> dict[str, CollectingOut]:
        return {name: CollectingOut() for name in [*self.topics, *self.hubs]}

    def send(self, outs: Mapping[str, CollectingOut]) -> None:
        """Produce and flush what the function set, then hand SignalR messages to the hub.

        Raises
        ------
        RuntimeError
            Event Hub outputs were not acknowledged by the broker.
        BindingError
            A SignalR output is not a valid message list.
        """
        hub_messages = {name: signalr_messages(outs[name].get()) for name in self.hubs if outs[name].get() is not None}
        failed: list[KafkaError] = []
        for name in self.topics:
            for item in outs[name].items():
                value = item.encode() if isinstance(item, str) else item
                self.producer.produce(self.topics[name], value=value,
                                      on_delivery=lambda err, _m: err is not None and failed.append(err))
                self.produced[self.topics[name]] = self.produced.get(self.topics[name], 0) + 1
        if self.producer is not None and (self.producer.flush(30) > 0 or failed):
            raise RuntimeError(f"{self.name}: outputs not acknowledged: {failed}")
        for name, messages in hub_messages.items():
            hub = self.hubs[name]
            self.produced[f"signalR:{hub}"] = self.produced.get(f"signalR:{hub}", 0) + len(messages)
            if self.signalr is not None:
                self.signalr(hub, messages)

    def close(self) -> None:
        if self.producer is not None:
            self.producer.flush(10)


class TimerFunctionDriver:
    """Calls a timer-triggered function every ``interval_s`` seconds (first call after one interval).

    Raises
    ------
    BindingError
        The function's trigger is not a timer, or an output cannot be driven locally.
    """

    def __init__(self, function: Any, settings: Mapping[str, str], producer_config: Mapping[str, Any],
                 interval_s: float, signalr: Callable[[str, list[dict]], None] | None = None) -> None:
        trigger = trigger_of(function, "timerTrigger", "a timer")
        self.name = function.get_function_name()
        self.user_function = function.get_user_function()
        self.trigger_arg = trigger["name"]
        self.schedule = resolve(trigger["schedule"], settings)
        self.interval_s = interval_s
        self.outputs = _Outputs(function, settings, producer_config, signalr)
        self.invocations = 0
        self.failures = 0

    def run_once(self, past_due: bool = False) -> None:
        """One invocation, as the host makes it at a scheduled time."""
        timer = TimerRequest(past_due=past_due)
        outs = self.outputs.collectors()
        self.user_function(**{self.trigger_arg: timer}, **outs)
        self.outputs.send(outs)
        self.invocations += 1

    def run(self, stop: threading.Event) -> None:
        """Invoke every ``interval_s`` until ``stop`` is set; a failing invocation is logged."""
        _repeat(self, self.interval_s, stop, "timer invocation failed")

    def close(self) -> None:
        self.outputs.close()


def path_pattern(path: str) -> tuple[str, re.Pattern[str]]:
    """Split a resolved blob trigger path ``container/a/{x}/b`` into ``(container, regex of the rest)``.

    Each ``{name}`` matches one path segment (no ``/``).

    Raises
    ------
    BindingError
        The path has no container part.

    Examples
    --------
    >>> c, rx = path_pattern("models/{key}/candidates/{version}/metadata.json")
    >>> c, rx.fullmatch("k/candidates/v1/metadata.json").groupdict()
    ('models', {'key': 'k', 'version': 'v1'})
    """
    container, sep, rest = path.partition("/")
    if not sep or not container:
        raise BindingError(f"blob trigger path {path!r} has no container part")
    parts = re.split(r"(\{[A-Za-z_][A-Za-z0-9_]*\})", rest)
    regex = "".join(f"(?P<{p[1:-1]}>[^/]+)" if p.startswith("{") else re.escape(p) for p in parts)
    return container, re.compile(regex)


class BlobTriggerPoller:
    """Calls a blob-triggered function for each new blob matching its path (Event Grid's stand-in).

    Parameters
    ----------
    function : an ``azure.functions`` function whose trigger is ``blobTrigger``.
    settings : app settings, for ``%NAME%`` expressions in the path.
    container : client of the container named by the path.
    producer_config : confluent-kafka producer config for Event Hub outputs.
    poll_s : seconds between two listings.
    on_invocation : called with the blob name after each successful invocation.

    Raises
    ------
    BindingError
        The trigger is not a blob trigger, or its container differs from ``container``.
    """

    def __init__(self, function: Any, settings: Mapping[str, str], container: ContainerClient,
                 producer_config: Mapping[str, Any], poll_s: float = 1.0,
                 on_invocation: Callable[[str], None] | None = None,
                 signalr: Callable[[str, list[dict]], None] | None = None) -> None:
        trigger = trigger_of(function, "blobTrigger", "a blob trigger")
        self.name = function.get_function_name()
        self.user_function = function.get_user_function()
        self.trigger_arg = trigger["name"]
        name, self.pattern = path_pattern(resolve(trigger["path"], settings))
        if name != container.container_name:
            raise BindingError(f"{self.name}: trigger container {name!r} is not {container.container_name!r}")
        self.container = container
        self.poll_s = poll_s
        self.on_invocation = on_invocation
        self.outputs = _Outputs(function, settings, producer_config, signalr)
        self.seen: set[str] = set(self._matching())
        self.invocations = 0
        self.failures = 0
        self.attempts: dict[str, int] = {}
        self.poisoned: list[str] = []

    def _matching(self) -> list[str]:
        return sorted(n for n in self.container.list_blob_names() if self.pattern.fullmatch(n))

    def run_once(self) -> int:
        """List the container once and invoke the function for every new matching blob; return how many."""
        n = 0
        for name in self._matching():
            if name in self.seen:
                continue
            attempts = self.attempts[name] = self.attempts.get(name, 0) + 1
            if attempts > MAX_ATTEMPTS:  # like the host's poison-blob handling: give up on it
                log.error("%s: %s failed %d times; set aside as poison", self.name, name, MAX_ATTEMPTS)
                self.poisoned.append(name)
                self.seen.add(name)
                continue
            downloader = self.container.download_blob(name)
            data = downloader.readall()
            stream = func.blob.InputStream(
                data=data, name=f"{self.container.container_name}/{name}", length=len(data),
                uri=f"{self.container.url}/{name}",
            )
            outs = self.outputs.collectors()
            self.user_function(**{self.trigger_arg: stream}, **outs)
            self.outputs.send(outs)
            self.seen.add(name)  # only after success: a failed invocation is retried next poll
            self.invocations += 1
            n += 1
            if self.on_invocation is not None:
                self.on_invocation(name)
        return n

    def run(self, stop: threading.Event) -> None:
        """Poll every ``poll_s`` until ``stop`` is set; failures are logged and retried."""
        _repeat(self, self.poll_s, stop, "blob-triggered invocation failed; retrying on the next poll")

    def close(self) -> None:
        self.outputs.close()
