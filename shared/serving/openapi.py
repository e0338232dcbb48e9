"""The routes of the HTTP API as data: the OpenAPI 3.1 description and the answer to unmatched requests.

:data:`ROUTES` lists every HTTP route the function app registers under ``/api`` (besides the
catch-all that answers what nothing else matches), with its method, path and query
parameters. :func:`document` turns it into the OpenAPI 3.1 document served at
``/api/openapi.json``; ``tests/integration/test_api_fuzz.py`` checks it against the routes
actually registered (``app.get_functions()``) and against what the handlers accept.
:func:`unmatched` is the JSON 404/405 of the catch-all function, so every error under
``/api`` has the body of :func:`shared.serving.params.error_body`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from shared.serving.params import TIME_RANGE_MS, error_body

OPENAPI_VERSION = "3.1.0"
"""The OpenAPI Specification version the document follows (spec.openapis.org/oas/v3.1.0)."""


@dataclass(frozen=True)
class Param:
    """One parameter: ``name``, where it goes (``path``/``query``), its JSON Schema and description."""

    name: str
    where: str
    schema: dict[str, Any]
    description: str

    def to_openapi(self) -> dict[str, Any]:
        """The OpenAPI Parameter Object."""
        return {"name": self.name, "in": self.where, "required": self.where == "path",
                "schema": self.schema, "description": self.description}


@dataclass(frozen=True)
class Route:
    """One route: ``method`` (upper case), ``path`` under ``/api`` with ``{name}`` segments, parameters."""

    method: str
    path: str
    operation_id: str
    summary: str
    params: tuple[Param, ...] = ()
    content_type: str = "application/json"
    responses: dict[str, str] = field(default_factory=dict)
    strict: bool = True  # unknown query parameters are refused (400)

    def query(self) -> tuple[str, ...]:
        """Names of the query parameters."""
        return tuple(p.name for p in self.params if p.where == "query")

    def pattern(self) -> re.Pattern[str]:
        """A regex matching the URL paths of this route (``{path}`` of the dashboard spans segments)."""
        regex = re.escape(self.path)
        regex = regex.replace(r"/\{path\}", "(?:/.*)?").replace(r"/\{symbol\}", r"/[^/]+")
        return re.compile(regex + "/?")


SYMBOL = Param("symbol", "path", {"type": "string", "maxLength": 100, "examples": ["kraken:BTC-USD"]},
               "exchange:SYMBOL with / written as - (case-insensitive; the exchange may be left out when "
               "only one configured exchange lists the symbol); GET /api/symbols lists them")
_FROM, _TO = (
    Param(name, "query", {"type": "string", "examples": ["1723161240000", "2024-08-08T23:54:00Z"]},
          f"{what} minute open time: ms since the Unix epoch UTC or ISO 8601 (no offset: UTC), from "
          f"2009-01-03 to 2099 ({TIME_RANGE_MS[0]} to {TIME_RANGE_MS[1] - 1} ms); a time in seconds, "
          "microseconds or nanoseconds is refused with its value in ms")
    for name, what in (("from", "first (inclusive)"), ("to", "end (exclusive)"))
)


def _limit(default: int, most: int) -> Param:
    return Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": most, "default": default},
                 f"how many items, 1 to {most}")


_ERRORS = {"400": "bad parameter (the error names it and the fix)", "503": "history store or registry unavailable"}

ROUTES: tuple[Route, ...] = (
    Route("GET", "/api/predictions/{symbol}", "get_predictions",
          "The latest predictions, oldest first, each with its realised close once known",
          (SYMBOL, _limit(60, 1000)), responses=_ERRORS),
    Route("GET", "/api/bars/{symbol}", "get_bars",
          "Closed one-minute bars (from <= open time < to), oldest first",
          (SYMBOL, _FROM, _TO, _limit(240, 5000)), responses=_ERRORS),
    Route("GET", "/api/accuracy/{symbol}", "get_accuracy",
          "Live MAE of model and persistence, direction calls, interval coverage, per model version",
          (SYMBOL, Param("window", "query", {"type": "integer", "minimum": 1, "maximum": 43200, "default": 60},
                         "minutes of target times ending with the newest realised one, 1 to 43200")),
          responses=_ERRORS),
    Route("GET", "/api/model-changes/{symbol}", "get_model_changes",
          "Promotion decisions of the models serving the symbol (its own key and the fallback key), newest first",
          (SYMBOL, _limit(20, 200),
           Param("refused", "query", {"type": "boolean", "default": False},
                 "also list refused candidates (true/false)")), responses=_ERRORS),
    Route("GET", "/api/symbols", "get_symbols", "The served symbols with their URL ids",
          responses={"400": "a query parameter was given"}),
    Route("GET", "/api/health", "health", "200 when the history store answers, else 503",
          responses={"400": "a query parameter was given", "503": "history store unavailable"}),
    Route("GET", "/api/openapi.json", "openapi", "This OpenAPI 3.1 description",
          responses={"400": "a query parameter was given"}),
    Route("POST", "/api/negotiate", "negotiate",
          "SignalR connection info (url, accessToken) of hub SIGNALR_HUB_NAME, for the SignalR clients",
          (Param("negotiateVersion", "query", {"type": "integer"},
                 "sent by the SignalR clients; the answer is the same for every version"),), strict=False),
    Route("GET", "/api/dashboard/{path}", "dashboard",
          "The dashboard page (path empty) and its allow-listed static files",
          (Param("path", "path", {"type": "string"}, "file under the dashboard, empty for the page"),),
          content_type="text/html", responses={"404": "not an allow-listed file"}, strict=False),
)
"""Every route under ``/api`` but the catch-all; the order of the document."""


def route_for(operation_id: str) -> Route:
    """The route of one operation (= function name).

    Raises
    ------
    KeyError
        No such operation.
    """
    for route in ROUTES:
        if route.operation_id == operation_id:
            return route
    raise KeyError(operation_id)


_ERROR_SCHEMA = {
    "type": "object", "required": ["error"],
    "properties": {"error": {"type": "object", "required": ["status", "message"], "properties": {
        "status": {"type": "integer"}, "parameter": {"type": ["string", "null"]}, "message": {"type": "string"},
    }}},
}


def document(server_url: str | None = None) -> dict[str, Any]:
    """The OpenAPI 3.1 document of :data:`ROUTES`.

    Parameters
    ----------
    server_url : str, optional
        Base URL of the app (``servers``); relative (``/``) when not given.

    Examples
    --------
    >>> doc = document()
    >>> doc["openapi"], sorted(doc["paths"]["/api/bars/{symbol}"])
    ('3.1.0', ['get'])
    """
    paths: dict[str, dict[str, Any]] = {}
    error_ref = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    for route in ROUTES:
        responses: dict[str, Any] = {"200": {"description": "OK", "content": {route.content_type: {}}}}
        for status, why in route.responses.items():
            responses[status] = {"description": why, "content": error_ref}
        operation: dict[str, Any] = {"operationId": route.operation_id, "summary": route.summary,
                                     "responses": responses}
        if route.params:
            operation["parameters"] = [p.to_openapi() for p in route.params]
        paths.setdefault(route.path, {})[route.method.lower()] = operation
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "tickcast HTTP API", "version": "1",
            "description": "Next-minute crypto price forecasts against persistence. Prices in the quote currency "
                           "of the symbol, volumes in the base asset, times in ms since the Unix epoch UTC "
                           "(fields ending in _ms), shares as fractions in [0, 1]. Every error under /api is "
                           "JSON: {\"error\": {\"status\", \"parameter\", \"message\"}}; unknown query "
                           "parameters are refused.",
        },
        "servers": [{"url": server_url or "/"}],
        "paths": paths,
        "components": {"schemas": {"Error": _ERROR_SCHEMA}},
    }


def unmatched(path: str, method: str) -> tuple[int, dict[str, Any], dict[str, str]]:
    """``(status, JSON body, headers)`` for a request no route took: 405 if the path is a route's, else 404.

    Examples
    --------
    >>> unmatched("/api/bars/kraken:BTC-USD", "DELETE")[:2]
    (405, {'error': {'status': 405, 'parameter': None, 'message': 'DELETE is not allowed on /api/bars/kraken:BTC-USD; use GET'}})
    >>> unmatched("/api/nope", "GET")[0]
    404
    """
    path = "/" + path.lstrip("/")
    allowed = sorted({r.method for r in ROUTES if r.pattern().fullmatch(path)})
    if allowed:
        message = f"{method[:10]} is not allowed on {path[:200]}; use {', '.join(allowed)}"
        return 405, error_body(405, message), {"Allow": ", ".join(allowed)}
    listed = ", ".join(sorted({r.path for r in ROUTES}))
    message = f"no route {method[:10]} {path[:200]}; the routes are {listed} (described at /api/openapi.json)"
    return 404, error_body(404, message), {}
