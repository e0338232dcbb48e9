"""Binding declarations of ``azure.functions`` apps, read the way the Functions host reads them.

The local drivers (:mod:`local_stack.functions_host`, :mod:`local_stack.http_host`,
:mod:`local_stack.lifecycle_host`) index an app once (:func:`app_functions`), resolve ``%NAME%``
binding expressions from the app settings only (:func:`resolve`), check each trigger's type
(:func:`trigger_of`), list the output bindings they can drive (:func:`output_bindings`), collect
what a function set on an output (:class:`CollectingOut`) and read ``signalR`` output values as
the host does (:func:`signalr_messages`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import azure.functions as func
from azure.functions.decorators.core import BindingDirection

from local_stack.hostjson import BindingError

__all__ = ["BindingError", "CollectingOut", "app_functions", "output_bindings", "resolve", "signalr_messages",
           "trigger_of"]

_SETTING = re.compile(r"%([^%]+)%")


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
