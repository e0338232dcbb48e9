"""What the Functions host takes from ``host.json`` and from a function's retry policy, for the local drivers.

The local drivers (:mod:`local_stack.functions_host`, :mod:`local_stack.lifecycle_host`) stand in
for the Functions host, so they read the same configuration the host reads, with the host's
defaults and its validation, and apply a failed invocation's retry policy the way the host does:

* ``extensions.eventHubs`` (Event Hubs extension 5.x/6.x): ``maxEventBatchSize`` (default 100;
  10 before extension 6.0.0), ``minEventBatchSize`` (default 1), ``maxWaitTime`` (default 1 min,
  at most 10 min, considered only when ``minEventBatchSize`` is above 1) and
  ``batchCheckpointFrequency`` (default 1). Source: "Azure Event Hubs trigger and bindings for
  Azure Functions", section "host.json settings", tab "Extension v5.x/v6.x+"
  (https://learn.microsoft.com/azure/azure-functions/functions-bindings-event-hubs#host-json),
  and the setters of ``EventHubOptions`` in Azure/azure-sdk-for-net
  (sdk/eventhub/Microsoft.Azure.WebJobs.Extensions.EventHubs/src/Config/EventHubOptions.cs).
* ``extensions.queues.maxDequeueCount`` (default 5): the tries of a blob trigger before its
  blob is poison ("Azure Blob storage trigger for Azure Functions", section "Poison blobs":
  "The same MaxDequeueCount setting is used for poison blob handling").
* A retry policy (``@bp.retry(...)``; ``fn.get_settings_dict("retry_policy")``): read as the
  Python worker reads it (``build_retry_protos`` in Azure/azure-functions-python-worker:
  ``int(max_retry_count)``; intervals through ``time.strptime(value, "%H:%M:%S")``, so whole
  seconds only, and anything else fails indexing) and applied as the host applies it
  ("Azure Functions error handling and retries", sections "Retry strategies" and "Max retry
  counts", https://learn.microsoft.com/azure/azure-functions/functions-bindings-error-pages;
  the delays of ``RandomizedExponentialBackoffStrategy`` in Azure/azure-webjobs-sdk).
* The invocation context a function gets when it declares a ``context`` parameter
  (:class:`InvocationContext`, a ``func.Context``), with the ``retry_context`` the host sends
  for each try: ``retry_count`` 0 on the first, ``max_retry_count`` the policy's (0 without
  one, as the worker reads an absent retry context) ("Azure Functions error handling and
  retries", section "Retry policies", Python: ``context.retry_context``).
"""

from __future__ import annotations

import json
import logging
import random
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import azure.functions as func
from azure.functions._abc import RetryContext, TraceContext

log = logging.getLogger(__name__)

HOST_JSON = Path(__file__).resolve().parents[1] / "host.json"
"""The app's ``host.json``, deployed with the code and read by the host at start-up."""

RETRY_POLICY = "retry_policy"
"""The setting name under which ``@bp.retry`` stores a function's policy (azure-functions)."""

RETRY_STRATEGIES = ("fixed_delay", "exponential_backoff")
"""The strategies of the Python v2 model's ``strategy`` property."""

RANDOMIZATION = 0.2
"""``RandomizedExponentialBackoffStrategy.RandomizationFactor``: each increment is scaled by 0.8–1.2."""


class BindingError(RuntimeError):
    """A function cannot be indexed or driven locally (missing setting, unsupported binding, bad retry policy)."""


class HostJsonError(ValueError):
    """A ``host.json`` value the host would refuse at start-up."""


_TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d{1,2}):(\d{1,2})(?::(\d{1,2})(?:\.(\d{1,7}))?)?$")


def timespan_seconds(text: str) -> float:
    """Seconds in a .NET ``TimeSpan`` string as host.json writes it: ``[d.]hh:mm[:ss[.fffffff]]``.

    Raises
    ------
    HostJsonError
        Not such a string.

    Examples
    --------
    >>> timespan_seconds("00:00:01"), timespan_seconds("00:05:00"), timespan_seconds("1.00:00:00.5")
    (1.0, 300.0, 86400.5)
    """
    m = _TIMESPAN.match(text.strip()) if isinstance(text, str) else None
    if m is None:
        raise HostJsonError(f"{text!r} is not a TimeSpan (hh:mm:ss)")
    days, hours, minutes, seconds, fraction = m.groups()
    return timedelta(days=int(days or 0), hours=int(hours), minutes=int(minutes), seconds=int(seconds or 0),
                     microseconds=int((fraction or "0").ljust(7, "0")) / 10).total_seconds()


def load_host_json(path: Path | str = HOST_JSON) -> dict[str, Any]:
    """The parsed ``host.json`` at ``path`` (the repository's by default).

    Raises
    ------
    OSError, json.JSONDecodeError
        The file cannot be read or is not JSON (the host would not start either).
    """
    return json.loads(Path(path).read_text())


def _extension(host: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    """``host["extensions"][name]`` with keys matched case-insensitively, as the host's configuration does."""
    extensions = {k.lower(): v for k, v in (host.get("extensions") or {}).items()}
    return {k.lower(): v for k, v in (extensions.get(name.lower()) or {}).items()}


@dataclass(frozen=True)
class EventHubOptions:
    """The batching and checkpointing options of the Event Hubs trigger (host.json ``extensions.eventHubs``).

    Attributes
    ----------
    max_event_batch_size : events at most per invocation (>= 1).
    min_event_batch_size : events wanted per invocation (>= 1); a partial batch is dispatched
        after ``max_wait_time_s``.
    max_wait_time_s : seconds to wait to fill a batch, in [0, 600]; ignored when
        ``min_event_batch_size`` is 1.
    batch_checkpoint_frequency : batches per partition between two checkpoints (>= 1).

    Raises
    ------
    HostJsonError
        A value the host's ``EventHubOptions`` setters refuse.
    """

    max_event_batch_size: int = 100
    min_event_batch_size: int = 1
    max_wait_time_s: float = 60.0
    batch_checkpoint_frequency: int = 1

    def __post_init__(self) -> None:
        if self.max_event_batch_size < 1:
            raise HostJsonError("maxEventBatchSize must be larger than 0")
        if self.min_event_batch_size < 1:
            raise HostJsonError("minEventBatchSize must be larger than or equal to 1")
        if not 0 <= self.max_wait_time_s <= 600:
            raise HostJsonError("maxWaitTime must be between 00:00:00 and 00:10:00")
        if self.batch_checkpoint_frequency < 1:
            raise HostJsonError("batchCheckpointFrequency must be larger than 0")

    @property
    def waits(self) -> bool:
        """Whether the trigger waits to fill a batch (only when the minimum is above 1)."""
        return self.min_event_batch_size > 1

    @classmethod
    def from_host_json(cls, host: Mapping[str, Any] | None = None) -> EventHubOptions:
        """The options in ``host`` (a parsed host.json; the repository's when ``None``), defaults elsewhere.

        Raises
        ------
        HostJsonError
            A value of the wrong type or out of range.
        """
        eh = _extension(load_host_json() if host is None else host, "eventHubs")
        try:
            return cls(
                max_event_batch_size=int(eh.get("maxeventbatchsize", cls.max_event_batch_size)),
                min_event_batch_size=int(eh.get("mineventbatchsize", cls.min_event_batch_size)),
                max_wait_time_s=(timespan_seconds(eh["maxwaittime"]) if "maxwaittime" in eh
                                 else cls.max_wait_time_s),
                batch_checkpoint_frequency=int(eh.get("batchcheckpointfrequency", cls.batch_checkpoint_frequency)),
            )
        except (TypeError, ValueError) as exc:
            raise HostJsonError(f"host.json extensions.eventHubs: {exc}") from None


def max_dequeue_count(host: Mapping[str, Any] | None = None) -> int:
    """Tries of a blob-triggered function per blob before the blob is poison (``extensions.queues.maxDequeueCount``).

    Raises
    ------
    HostJsonError
        A value below 1 or not an integer.
    """
    value = _extension(load_host_json() if host is None else host, "queues").get("maxdequeuecount", 5)
    try:
        count = int(value)
    except (TypeError, ValueError):
        count = 0
    if count < 1:
        raise HostJsonError(f"host.json extensions.queues.maxDequeueCount {value!r} is not a positive integer")
    return count


def _worker_seconds(value: Any, what: str, function: str) -> int:
    """An interval as the Python worker converts it (``convert_to_seconds``: ``%H:%M:%S``, whole seconds)."""
    try:
        t = time.strptime(value, "%H:%M:%S")
    except (TypeError, ValueError):
        raise BindingError(f"{function}: retry {what} {value!r} is not HH:mm:ss; the Python worker cannot index it") from None
    return t.tm_hour * 3600 + t.tm_min * 60 + t.tm_sec


@dataclass(frozen=True)
class RetryPolicy:
    """A function's retry policy, as the host applies it to a failed execution.

    Attributes
    ----------
    strategy : ``"fixed_delay"`` or ``"exponential_backoff"``.
    max_retry_count : retries after the first execution; ``-1`` retries forever.
    delay_s : seconds between retries (fixed delay).
    minimum_s, maximum_s : first delay and cap of the delays (exponential backoff), seconds.
    """

    strategy: str
    max_retry_count: int
    delay_s: int = 0
    minimum_s: int = 0
    maximum_s: int = 0

    @classmethod
    def of(cls, function: Any) -> RetryPolicy | None:
        """The policy that ``@bp.retry`` declared on ``function`` (an indexed ``azure.functions`` function), or ``None``.

        Raises
        ------
        BindingError
            A policy the Python worker or the host cannot index: unknown strategy, a count that is
            not an integer >= -1, an interval that is not whole ``HH:mm:ss``, minimum above maximum.
        """
        spec = function.get_settings_dict(RETRY_POLICY)
        if not spec:
            return None
        name = function.get_function_name()
        strategy = spec.get("strategy")
        if strategy not in RETRY_STRATEGIES:
            raise BindingError(f"{name}: retry strategy {strategy!r} is not one of {RETRY_STRATEGIES}")
        try:
            count = int(spec.get("max_retry_count"))
        except (TypeError, ValueError):
            raise BindingError(f"{name}: retry max_retry_count {spec.get('max_retry_count')!r} is not an integer") from None
        if count < -1:
            raise BindingError(f"{name}: retry max_retry_count {count} is below -1")
        if strategy == "fixed_delay":
            return cls(strategy, count, delay_s=_worker_seconds(spec.get("delay_interval"), "delay_interval", name))
        minimum = _worker_seconds(spec.get("minimum_interval"), "minimum_interval", name)
        maximum = _worker_seconds(spec.get("maximum_interval"), "maximum_interval", name)
        if minimum > maximum:
            raise BindingError(f"{name}: retry minimum_interval must not be greater than maximum_interval")
        return cls(strategy, count, minimum_s=minimum, maximum_s=maximum)

    def retries_left(self, retried: int) -> bool:
        """Whether a failed execution that was already retried ``retried`` times is retried again."""
        return self.max_retry_count == -1 or retried < self.max_retry_count

    def delays(self, rng: random.Random | None = None) -> Iterator[float]:
        """The successive delays before retries 1, 2, ... of one execution, in seconds.

        Fixed delay: ``delay_s`` each time. Exponential backoff (``RandomizedExponentialBackoffStrategy``
        with the minimum as back-off unit): the first delay is the minimum; delay ``n`` >= 2 is the
        minimum plus ``u * 2**(n-2) * minimum`` with ``u`` uniform in [0.8, 1.2], until it reaches the
        maximum, which it then stays at.
        """
        if self.strategy == "fixed_delay":
            while True:
                yield float(self.delay_s)
        rng = rng or random.Random()
        current, exponent = 0.0, 0
        while True:
            if current != self.maximum_s:
                backoff = float(self.minimum_s)
                if exponent > 0:
                    backoff += rng.uniform(1 - RANDOMIZATION, 1 + RANDOMIZATION) * 2 ** (exponent - 1) * self.minimum_s
                if backoff < self.maximum_s:
                    current, exponent = backoff, exponent + 1
                else:
                    current = float(self.maximum_s)
            yield current


@dataclass
class Outcome:
    """How one execution went under its retry policy.

    Attributes
    ----------
    succeeded : an attempt completed.
    attempts : invocations made (1 + retries).
    error : the last attempt's exception when it did not succeed.
    interrupted : the host stopped during a retry delay (nothing is checkpointed then).
    delays : the delays waited before each retry, seconds.
    """

    succeeded: bool = False
    attempts: int = 0
    error: BaseException | None = None
    interrupted: bool = False
    delays: list[float] = field(default_factory=list)


def execute(attempt: Callable[[], Any], policy: RetryPolicy | None, name: str,
            stop: threading.Event | None = None, rng: random.Random | None = None) -> Outcome:
    """Run ``attempt`` once, then again per ``policy`` while it raises, as the host runs a function execution.

    Without a policy a failure is final. With one, the execution is retried after each delay of
    :meth:`RetryPolicy.delays` until an attempt succeeds or ``max_retry_count`` retries failed.
    Setting ``stop`` during a delay ends the execution, ``interrupted``. Exceptions of ``attempt``
    are logged and kept in the outcome, never raised.
    """
    outcome = Outcome()
    delays = policy.delays(rng) if policy is not None else None
    stop = stop or threading.Event()
    while True:
        outcome.attempts += 1
        try:
            attempt()
        except Exception as exc:
            outcome.error = exc
            log.warning("%s: execution failed (attempt %d): %s", name, outcome.attempts, exc, exc_info=True)
        else:
            outcome.succeeded, outcome.error = True, None
            return outcome
        if policy is None or not policy.retries_left(outcome.attempts - 1):
            return outcome
        delay = next(delays)
        outcome.delays.append(delay)
        if stop.wait(delay):
            outcome.interrupted = True
            return outcome


class HostRetryContext(RetryContext):
    """``func.Context.retry_context`` of one try: which retry it is, and how many the policy allows.

    Attributes
    ----------
    retry_count : retries before this try (0 on the first try).
    max_retry_count : the policy's retries; 0 without a policy, -1 retries forever.
    exception : the previous try's error, ``None`` on the first try.
    """

    def __init__(self, retry_count: int, max_retry_count: int, exception: Any = None) -> None:
        self._retry_count, self._max_retry_count, self._exception = retry_count, max_retry_count, exception

    @property
    def retry_count(self) -> int:
        return self._retry_count

    @property
    def max_retry_count(self) -> int:
        return self._max_retry_count

    @property
    def exception(self) -> Any:
        return self._exception


class _NoTrace(TraceContext):
    """An empty distributed-tracing context (the local stack has no tracing)."""

    trace_state = ""
    trace_parent = ""
    attributes: dict[str, str] = {}


class InvocationContext(func.Context):
    """The ``func.Context`` the Python worker passes to a function that declares ``context``.

    azure-functions defines ``Context`` and ``RetryContext`` only as abstract classes (the concrete
    ones live in the worker), so the local drivers implement them here.
    """

    def __init__(self, function_name: str, retry_context: HostRetryContext) -> None:
        self._invocation_id = str(uuid.uuid4())
        self._function_name = function_name
        self._retry_context = retry_context
        self._thread_local_storage = threading.local()

    @classmethod
    def for_try(cls, function_name: str, policy: RetryPolicy | None, retried: int) -> InvocationContext:
        """The context of the try of ``function_name`` after ``retried`` failed tries, under ``policy``."""
        return cls(function_name, HostRetryContext(retried, policy.max_retry_count if policy is not None else 0))

    @property
    def invocation_id(self) -> str:
        return self._invocation_id

    @property
    def thread_local_storage(self) -> Any:
        return self._thread_local_storage

    @property
    def function_name(self) -> str:
        return self._function_name

    @property
    def function_directory(self) -> str:
        return str(HOST_JSON.parent)

    @property
    def trace_context(self) -> TraceContext:
        return _NoTrace()

    @property
    def retry_context(self) -> HostRetryContext:
        return self._retry_context
