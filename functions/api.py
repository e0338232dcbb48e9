"""Blueprint ``api``: the read-only HTTP API over the history store (MySQL).

Routes (anonymous, GET, JSON; see :mod:`shared.serving.api` for parameters, units and errors):

* ``/api/predictions/{symbol}?limit=`` - latest predictions with their realised closes;
* ``/api/bars/{symbol}?from=&to=&limit=`` - closed one-minute bars;
* ``/api/accuracy/{symbol}?window=`` - live MAE of model and persistence, directional
  accuracy and interval coverage, per model version;
* ``/api/symbols`` - the served symbols and their URL ids;
* ``/api/health`` - 200 when the history store answers, else 503.

``{symbol}`` is ``exchange:SYMBOL`` with ``/`` written as ``-`` (``kraken:BTC-USD``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import azure.functions as func

from functions.common import ProcessService
from shared.serving.wiring import make_history_api

if TYPE_CHECKING:  # shared.serving.api imports SQLAlchemy: loaded on first use, not to index the app
    from shared.serving.api import ApiResponse

bp = func.Blueprint()
service = ProcessService(make_history_api, close=lambda api: api.close())


def as_http(response: ApiResponse) -> func.HttpResponse:
    """An :class:`ApiResponse` as the function's HTTP response (JSON, UTF-8)."""
    return func.HttpResponse(response.text(), status_code=response.status, headers=dict(response.headers),
                             mimetype="application/json", charset="utf-8")


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


@bp.function_name("get_symbols")
@bp.route(route="symbols", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def get_symbols(req: func.HttpRequest) -> func.HttpResponse:
    """The served symbols with their URL ids."""
    return as_http(service.get().symbols())


@bp.function_name("health")
@bp.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def health(req: func.HttpRequest) -> func.HttpResponse:
    """Liveness and readiness: 200 when the history store answers, else 503."""
    return as_http(service.get().health())
