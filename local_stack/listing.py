"""What the local stack drives, listed like ``func start`` lists a function app's functions.

Core Tools prints, once the host is up, ``Functions:`` then one line per function: HTTP
functions as ``name: [METHODS] URL``, the others as ``name: triggerType``
(learn.microsoft.com, "Run functions locally", ``func start``). :func:`function_listing` does
the same from the app's own declarations (``app.get_functions()``), and adds what the local
drivers put in place of the Functions host: the hub and consumer group of each Event Hub
trigger, the local timer interval, the Azurite poller of the blob trigger. The HTTP routes
come from the local HTTP host that serves them (:attr:`local_stack.http_host.LocalWebServer.http`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["function_listing", "route_text"]

_CATCH_ALL = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*):\.\*\}")


def route_text(path: str) -> str:
    """A served aiohttp path written as a Functions route template.

    >>> route_text("/api/bars/{symbol}")
    '/api/bars/{symbol}'
    >>> route_text("/api/dashboard/{path:.*}")
    '/api/dashboard/{*path}'
    """
    return _CATCH_ALL.sub(lambda m: "{*" + m.group(1) + "}", path)


def _value(item: Any) -> str:
    return str(getattr(item, "value", item))


def function_listing(
    functions: Sequence[Any],
    settings: Mapping[str, str],
    *,
    base_url: str | None = None,
    http_functions: Sequence[Any] = (),
    timer_every_s: float | None = None,
) -> list[str]:
    """The ``Functions:`` block: one line per function, HTTP functions last with their URLs.

    Parameters
    ----------
    functions : sequence of ``azure.functions`` ``Function``
        ``app_functions(function_app.app)``.
    settings : mapping
        App settings that resolve ``%NAME%`` expressions.
    base_url : str, optional
        Where the HTTP functions are served (e.g. ``http://127.0.0.1:7071``); ``None``: not served.
    http_functions : sequence
        The local HTTP host's routed functions (``LocalWebServer.http.functions``: ``name``,
        ``methods``, ``paths``).
    timer_every_s : float, optional
        The local interval that replaces timer schedules.

    Returns
    -------
    list of str
        Lines without newlines, the first being ``Functions:``.

    Raises
    ------
    local_stack.functions_host.BindingError
        An expression names a missing app setting.
    """
    from local_stack.functions_host import resolve

    routes = {fn.name: fn for fn in http_functions}
    lines = ["Functions:"]
    http_lines = []
    for fn in functions:
        name = fn.get_function_name()
        trigger = fn.get_trigger().get_dict_repr()
        kind = trigger.get("type", "?")
        if kind == "httpTrigger":
            served = routes.get(name)
            methods = [_value(m).upper() for m in trigger.get("methods") or []]
            method_text = f"[{','.join(methods) if methods else 'ALL'}]"
            if served is None or base_url is None:
                http_lines.append(f"    {name}: {method_text} /api/{trigger.get('route') or name} (not served)")
            else:
                http_lines.append(f"    {name}: {method_text} {base_url}{route_text(served.paths[0])}")
            continue
        if kind == "eventHubTrigger":
            hub = resolve(trigger["eventHubName"], settings)
            group = resolve(trigger.get("consumerGroup") or "$Default", settings)
            detail = f"hub {hub}, consumer group {group}"
        elif kind == "timerTrigger":
            schedule = resolve(trigger.get("schedule", ""), settings)
            detail = f"schedule {schedule}" + (f"; locally every {timer_every_s:g} s" if timer_every_s else "")
        elif kind == "blobTrigger":
            detail = f"path {resolve(trigger.get('path', ''), settings)}; locally a poller of Azurite for Event Grid"
        else:
            detail = ""
        lines.append(f"    {name}: {kind}" + (f" ({detail})" if detail else ""))
    return lines + http_lines
