"""Drive the timer and blob-triggered functions locally, in place of the Functions host.

Hand-written for the same reason as :mod:`local_stack.functions_host`: the Functions host
and Event Grid are not available offline, and no library drives ``azure.functions`` apps.

* :class:`TimerFunctionDriver` calls a timer-triggered function every ``interval_s``
  seconds (the local stack's short schedule; in Azure the host evaluates the
  NCRONTAB expression of the binding). A failed invocation is retried only under the
  function's retry policy (``@bp.retry``: timers support retry policies, configured per
  function), with its count and delays; without one it is logged and the next occurrence
  runs on schedule ("Azure Functions error handling and retries", sections "Retries" and
  "Retry policies", https://learn.microsoft.com/azure/azure-functions/functions-bindings-error-pages).
* :class:`BlobTriggerPoller` stands in for the Event Grid subscription of an
  ``EventGrid``-source blob trigger: it lists the container every ``poll_s`` seconds
  and calls the function once for each new blob whose name matches the trigger's
  path pattern (blobs present when it started are taken as already seen, like
  events that happened before a subscription existed). A failed blob is tried again at
  the next poll, ``maxDequeueCount`` tries in all (host.json ``extensions.queues``, default 5),
  then set aside as poison with the message the host writes to the ``webjobs-blobtrigger-poison``
  queue ("Azure Blob storage trigger for Azure Functions", section "Poison blobs"). Retry
  policies do not apply to blob triggers (they are the binding extension's retries, set in
  host.json: "Retries" table of the same error-handling page), so one declared on the function
  is not applied, and a warning says so.

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
from local_stack.hostjson import RETRY_POLICY, RetryPolicy, execute, max_dequeue_count

log = logging.getLogger(__name__)

POISON_QUEUE = "webjobs-blobtrigger-poison"
"""The Storage queue the host writes a poison blob's message to."""


def _repeat(driver: Any, every_s: float, stop: threading.Event, failed: str) -> None:
    """Call ``driver.run_once(stop=stop)`` every ``every_s`` seconds until ``stop``; count and log failures."""
    while not stop.wait(every_s):
        try:
            driver.run_once(stop=stop)
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

    Parameters
    ----------
    function : an ``azure.functions`` function whose trigger is ``timerTrigger``; its retry
        policy, if any, comes from its settings (``@bp.retry``).
    settings : app settings, for ``%NAME%`` expressions (the schedule, outputs).
    producer_config : confluent-kafka producer config for Event Hub outputs.
    interval_s : seconds between two occurrences (the local stand-in for the schedule).
    signalr : sink ``(hub, messages)`` of ``signalR`` output bindings.
    rng : random source of the exponential backoff's jitter.

    Raises
    ------
    BindingError
        The function's trigger is not a timer, an output cannot be driven locally, or the
        retry policy cannot be indexed.
    """

    def __init__(self, function: Any, settings: Mapping[str, str], producer_config: Mapping[str, Any],
                 interval_s: float, signalr: Callable[[str, list[dict]], None] | None = None,
                 rng: Any = None) -> None:
        trigger = trigger_of(function, "timerTrigger", "a timer")
        self.name = function.get_function_name()
        self.user_function = function.get_user_function()
        self.trigger_arg = trigger["name"]
        self.schedule = resolve(trigger["schedule"], settings)
        self.interval_s = interval_s
        self.outputs = _Outputs(function, settings, producer_config, signalr)
        self.retry = RetryPolicy.of(function)
        """The function's retry policy; ``None``: a failed occurrence is not retried."""
        self.rng = rng
        self.invocations = 0
        """Successful executions."""
        self.attempts = 0
        """Invocations made, retries included."""
        self.failures = 0

    def run_once(self, past_due: bool = False, stop: threading.Event | None = None) -> None:
        """One occurrence, as the host runs it at a scheduled time: an invocation, retried per the policy.

        Raises
        ------
        Exception
            The last attempt's error when the occurrence failed (after the policy's retries).
        """

        def attempt() -> None:
            outs = self.outputs.collectors()
            self.user_function(**{self.trigger_arg: TimerRequest(past_due=past_due)}, **outs)
            self.outputs.send(outs)

        outcome = execute(attempt, self.retry, self.name, stop, self.rng)
        self.attempts += outcome.attempts
        if outcome.succeeded:
            self.invocations += 1
        elif outcome.error is not None:
            raise outcome.error

    def run(self, stop: threading.Event) -> None:
        """Run an occurrence every ``interval_s`` until ``stop`` is set; a failed one is logged, not retried later."""
        _repeat(self, self.interval_s, stop, "timer occurrence failed")

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
    poll_s : seconds between two listings (and so between two tries of a failing blob).
    on_invocation : called with the blob name after each successful invocation.
    signalr : sink ``(hub, messages)`` of ``signalR`` output bindings.
    max_tries : tries per blob before it is poison; by default host.json's
        ``extensions.queues.maxDequeueCount`` (5 when unset).

    Raises
    ------
    BindingError
        The trigger is not a blob trigger, or its container differs from ``container``.
    """

    def __init__(self, function: Any, settings: Mapping[str, str], container: ContainerClient,
                 producer_config: Mapping[str, Any], poll_s: float = 1.0,
                 on_invocation: Callable[[str], None] | None = None,
                 signalr: Callable[[str, list[dict]], None] | None = None,
                 max_tries: int | None = None) -> None:
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
        self.max_tries = max_tries if max_tries is not None else max_dequeue_count()
        if function.get_settings_dict(RETRY_POLICY):
            log.warning("%s: retry policies do not apply to blob triggers; each blob is tried %d times, then poison",
                        self.name, self.max_tries)
        self.seen: set[str] = set(self._matching())
        self.invocations = 0
        self.failures = 0
        self.attempts: dict[str, int] = {}
        """Tries so far per blob name."""
        self.poisoned: list[str] = []
        """Blobs set aside after ``max_tries`` failed tries."""
        self.poison_messages: list[dict[str, str]] = []
        """What the host would have written to the ``webjobs-blobtrigger-poison`` queue for each."""

    def _matching(self) -> list[str]:
        return sorted(n for n in self.container.list_blob_names() if self.pattern.fullmatch(n))

    def run_once(self, stop: threading.Event | None = None) -> int:
        """List the container once and invoke the function for every new matching blob; return how many succeeded.

        A failed try is counted; the blob is tried again at the next listing, and after
        ``max_tries`` failed tries it is poison: set aside, never tried again.

        Raises
        ------
        Exception
            The first failed try of this listing, after every other new blob was tried.
        """
        n = 0
        first_error: Exception | None = None
        for name in self._matching():
            if name in self.seen:
                continue
            tries = self.attempts[name] = self.attempts.get(name, 0) + 1
            try:
                etag = self._invoke(name)
            except Exception as exc:
                first_error = first_error or exc
                if tries >= self.max_tries:
                    self._poison(name)
                continue
            self.seen.add(name)
            self.invocations += 1
            n += 1
            if self.on_invocation is not None:
                self.on_invocation(name)
            log.debug("%s: %s (etag %s) processed after %d tries", self.name, name, etag, tries)
        if first_error is not None:
            raise first_error
        return n

    def _invoke(self, name: str) -> str:
        """One try of ``name``: download, call, send the outputs; returns the blob's ETag."""
        downloader = self.container.download_blob(name)
        data = downloader.readall()
        stream = func.blob.InputStream(
            data=data, name=f"{self.container.container_name}/{name}", length=len(data),
            uri=f"{self.container.url}/{name}",
        )
        outs = self.outputs.collectors()
        self.user_function(**{self.trigger_arg: stream}, **outs)
        self.outputs.send(outs)
        return downloader.properties.etag

    def _poison(self, name: str) -> None:
        """Set ``name`` aside after its last failed try, recording the host's poison-queue message."""
        try:
            props = self.container.get_blob_client(name).get_blob_properties()
            blob_type, etag = str(getattr(props.blob_type, "value", props.blob_type)), props.etag
        except Exception:  # the blob may be gone; the message still names it
            blob_type, etag = "BlockBlob", ""
        message = {"FunctionId": f"Host.Functions.{self.name}", "BlobType": blob_type,
                   "ContainerName": self.container.container_name, "BlobName": name, "ETag": etag}
        log.error("%s: %s failed %d tries; poison (%s message: %s)", self.name, name, self.max_tries,
                  POISON_QUEUE, message)
        self.poisoned.append(name)
        self.poison_messages.append(message)
        self.seen.add(name)

    def run(self, stop: threading.Event) -> None:
        """Poll every ``poll_s`` until ``stop`` is set; failed tries are logged and tried again up to ``max_tries``."""
        _repeat(self, self.poll_s, stop, "blob-triggered invocation failed; tried again at the next poll until poison")

    def close(self) -> None:
        self.outputs.close()
