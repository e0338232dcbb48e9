"""Blueprint ``api``: the read-only HTTP API over the history store (MySQL) and the model registry.

Routes (anonymous, GET, JSON; see :mod:`shared.serving.api` for parameters, units and errors,
and ``/api/openapi.json`` for the OpenAPI 3.1 description, :mod:`shared.serving.openapi`):

* ``/api/predictions/{symbol}?limit=`` - latest predictions with their realised closes;
* ``/api/bars/{symbol}?from=&to=&limit=`` - closed one-minute bars;
* ``/api/accuracy/{symbol}?window=`` - live MAE of model and persistence, directional
  accuracy and interval coverage, per model version;
* ``/api/model-changes/{symbol}?limit=&refused=`` - promotion decisions of the models serving
  the symbol, from the registry (:mod:`shared.serving.modelchanges`);
* ``/api/symbols`` - the served symbols and their URL ids;
* ``/api/health`` - 200 when the history store answers, else 503;
* ``/api/openapi.json`` - the OpenAPI description;
* anything else under ``/api`` (function ``zz_not_found``) - a JSON 404, or 405 naming the
  allowed method when the path is a route's.

``{symbol}`` is ``exchange:SYMBOL`` with ``/`` written as ``-`` (``kraken:BTC-USD``).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import azure.functions as func

from functions.common import ProcessService
from shared.serving.wiring import make_history_api

if TYPE_CHECKING:  # shared.serving.api imports SQLAlchemy: loaded on first use, not to index the app
    from shared.serving.api import ApiResponse

bp = func.Blueprint()
service = ProcessService(make_history_api, close=lambda api: api.close())


def _model_changes_api(settings):
    from shared.serving.modelchanges import ModelChangesApi

    return ModelChangesApi.from_settings(settings)


changes_service = ProcessService(_model_changes_api, close=lambda api: api.close())
_JSON_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


def as_http(response: ApiResponse) -> func.HttpResponse:
    """An :class:`ApiResponse` as the function's HTTP response (JSON, UTF-8)."""
    return func.HttpResponse(response.text(), status_code=response.status, headers=dict(response.headers),
                             mimetype="application/json", charset="utf-8")


def json_http(status: int, body: dict, headers: dict[str, str] | None = None) -> func.HttpResponse:
    """A JSON HTTP response of ``body`` with the API's headers (and ``headers``)."""
    return func.HttpResponse(json.dumps(body, separators=(",", ":")), status_code=status,
                             headers={**_JSON_HEADERS, **(headers or {})}, mimetype="application/json",
                             charset="utf-8")


@bp.function_name("get_predictions")
@bp.route(route="predictions/{symbol}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def get_predictions(req: func.HttpRequest) -> func.HttpResponse:
    """The latest predictions of one symbol, oldest first."""
    return as_http(service.get().predictions(req.route_params.get("symbol"), req.params))


@bp.function_name("get_bars")
@bp.route(route="bars/{symbol}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def get_bars(req: func.HttpRequest) -> func.HttpResponse:
    """Closed one-minute bars of one symbol in a time range, oldest first."""
    return as_http(service.get().bars(req.route_params.get("symbol"), req.params))


@bp.function_name("get_accuracy")
@bp.route(route="accuracy/{symbol}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def get_accuracy(req: func.HttpRequest) -> func.HttpResponse:
    """Live accuracy of one symbol's realised forecasts against persistence, per model version."""
    return as_http(service.get().accuracy(req.route_params.get("symbol"), req.params))


@bp.function_name("get_model_changes")
@bp.route(route="model-changes/{symbol}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def get_model_changes(req: func.HttpRequest) -> func.HttpResponse:
    """Promotion decisions of the models serving one symbol, newest first."""
    return json_http(*changes_service.get().changes(req.route_params.get("symbol"), req.params))


@bp.function_name("get_symbols")
@bp.route(route="symbols", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def get_symbols(req: func.HttpRequest) -> func.HttpResponse:
    """The served symbols with their URL ids."""
    return as_http(service.get().symbols(req.params))


@bp.function_name("health")
@bp.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def health(req: func.HttpRequest) -> func.HttpResponse:
    """Liveness and readiness: 200 when the history store answers, else 503."""
    return as_http(service.get().health(req.params))


@bp.function_name("openapi")
@bp.route(route="openapi.json", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def openapi(req: func.HttpRequest) -> func.HttpResponse:
    """The OpenAPI 3.1 description of the routes."""
    from shared.serving.openapi import document
    from shared.serving.params import ApiError, check_known, error_body

    try:
        check_known(req.params, ())
    except ApiError as err:
        return json_http(400, error_body(400, err.message, err.parameter))
    return json_http(200, document(req.url.split("/api/", 1)[0] + "/"))


# The Functions host tries routes in the alphabetical order of their function names, not by
# ASP.NET Core's route precedence (Azure/azure-functions-host#9876, Azure/azure-webjobs-sdk-extensions
# #842): the catch-all is named to sort after every other function, so it takes only what no route took.
@bp.function_name("zz_not_found")
@bp.route(route="{*path}", auth_level=func.AuthLevel.ANONYMOUS)
def not_found(req: func.HttpRequest) -> func.HttpResponse:
    """A JSON 404 (no such route) or 405 (the route exists, with another method) for anything else under /api."""
    from shared.serving.openapi import unmatched

    return json_http(*unmatched("/api/" + (req.route_params.get("path") or ""), req.method or "GET"))
