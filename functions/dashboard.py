"""Blueprint ``dashboard``: the web page, its static files, and SignalR negotiation.

* ``POST /api/negotiate`` - the SignalR connection info (service URL and access
  token) from the ``signalRConnectionInfo`` input binding of hub ``%SIGNALR_HUB_NAME%``;
  the official client calls it when built with ``withUrl("<app>/api")``.
* ``GET /api/dashboard/{*path}`` - the page and its files, from an allow-list
  (:mod:`shared.serving.webassets`); ``/api/dashboard`` redirects to ``/api/dashboard/``
  so the page's relative links resolve; any other name gets a JSON 404, like every error under ``/api``.
"""

from __future__ import annotations

import json

import azure.functions as func

from shared.serving.params import error_body
from shared.serving.webassets import CONTENT_SECURITY_POLICY, resolve_asset

bp = func.Blueprint()


@bp.function_name("negotiate")
@bp.route(route="negotiate", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
@bp.generic_input_binding(
    arg_name="connectionInfo", type="signalRConnectionInfo", hubName="%SIGNALR_HUB_NAME%",
    connectionStringSetting="AzureSignalRConnectionString",
)
def negotiate(req: func.HttpRequest, connectionInfo: str) -> func.HttpResponse:
    """Hand the client its SignalR Service URL and access token (JSON ``url``, ``accessToken``)."""
    return func.HttpResponse(connectionInfo, mimetype="application/json", headers={"Cache-Control": "no-store"})


@bp.function_name("dashboard")
@bp.route(route="dashboard/{*path}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def dashboard(req: func.HttpRequest) -> func.HttpResponse:
    """Serve the dashboard page or one of its allow-listed files."""
    path = req.route_params.get("path") or ""
    if not path and not req.url.split("?", 1)[0].endswith("/"):
        return func.HttpResponse(status_code=308, headers={"Location": "dashboard/"})
    asset = resolve_asset(path)
    if asset is None:
        body = error_body(404, f"no dashboard file {path[:200]!r}; the page is /api/dashboard/", "path")
        return func.HttpResponse(json.dumps(body), status_code=404, mimetype="application/json", charset="utf-8",
                                 headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"})
    headers = {"Cache-Control": asset.cache_control, "X-Content-Type-Options": "nosniff"}
    if asset.content_type.startswith("text/html"):
        headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    return func.HttpResponse(asset.path.read_bytes(), headers=headers, mimetype=asset.content_type.split(";")[0],
                             charset="utf-8")
