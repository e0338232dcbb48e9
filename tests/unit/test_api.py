"""The HTTP functions (API, dashboard, negotiate) with no database server: their declarations, an
unreachable database (nothing listens on the port), the dashboard's page and files, negotiate.

``call`` is shared with ``tests/integration/test_api.py``, which runs the queries on MariaDB.
"""

from __future__ import annotations

import json

import azure.functions as func
import pytest

import function_app
from functions import api as api_module
from functions import dashboard as dashboard_module
from functions import reset_services
from local_stack.functions_host import app_functions


def call(function, route: dict[str, str] | None = None, params: dict[str, str] | None = None,
         url: str = "http://localhost:7071/api/x", method: str = "GET") -> tuple[int, dict]:
    req = func.HttpRequest(method=method, url=url, params=params or {}, route_params=route or {}, body=b"")
    response = function.build().get_user_function()(req)
    assert response.mimetype == "application/json"
    return response.status_code, json.loads(response.get_body())


def test_http_functions_and_bindings_are_declared():
    functions = {f.get_function_name(): f for f in app_functions(function_app.app)}
    routes = {name: f.get_trigger().get_dict_repr() for name, f in functions.items()
              if f.get_trigger().get_dict_repr()["type"] == "httpTrigger"}
    assert {name: t["route"] for name, t in routes.items()} == {
        "get_predictions": "predictions/{symbol}", "get_bars": "bars/{symbol}", "get_accuracy": "accuracy/{symbol}",
        "get_symbols": "symbols", "health": "health", "negotiate": "negotiate", "dashboard": "dashboard/{*path}",
        "get_model_changes": "model-changes/{symbol}", "openapi": "openapi.json", "zz_not_found": "{*path}",
    }
    # the Functions host tries routes in function-name order (azure-functions-host#9876): the catch-all last
    assert max(routes) == "zz_not_found" and routes["zz_not_found"].get("methods") is None
    negotiate = {b.get_dict_repr()["name"]: b.get_dict_repr() for b in functions["negotiate"].get_bindings()}
    assert negotiate["connectionInfo"]["type"] == "signalRConnectionInfo"
    assert negotiate["connectionInfo"]["hubName"] == "%SIGNALR_HUB_NAME%"
    assert negotiate["connectionInfo"]["connectionStringSetting"] == "AzureSignalRConnectionString"
    # negotiate's clients receive what broadcast sends: the same hub, the same connection
    broadcast = {b.get_dict_repr()["name"]: b.get_dict_repr() for b in functions["broadcast"].get_bindings()}
    assert broadcast["signalr"]["type"] == "signalR" and broadcast["signalr"]["direction"].name == "OUT"
    assert broadcast["signalr"]["hubName"] == "%SIGNALR_HUB_NAME%"
    assert broadcast["signalr"]["connectionStringSetting"] == "AzureSignalRConnectionString"


def test_health_is_503_when_the_database_is_unreachable(monkeypatch):
    monkeypatch.setenv("MYSQL_URL", "mysql+pymysql://nobody:secret@127.0.0.1:9/none")  # port 9: nothing listens
    reset_services()
    try:
        status, body = call(api_module.health)
        assert status == 503 and body["status"] == "unavailable" and "secret" not in json.dumps(body)
        status, body = call(api_module.get_predictions, {"symbol": "kraken:BTC-USD"})
        assert status == 503 and "history store unavailable" in body["error"]["message"]
    finally:
        reset_services()


def _page(path: str, url: str | None = None) -> func.HttpResponse:
    req = func.HttpRequest(method="GET", url=url or f"http://localhost:7071/api/dashboard/{path}",
                           route_params={"path": path}, body=b"")
    return dashboard_module.dashboard.build().get_user_function()(req)


def test_dashboard_serves_the_page_and_allow_listed_files_only():
    page = _page("")
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    html = page.get_body().decode()
    assert '<div id="chart"' in html and "http" not in html.split("<script", 1)[1].split("</body>")[0]  # no CDN
    for script in ("vendor/signalr.min.js", "vendor/lightweight-charts.standalone.production.js", "app.js"):
        assert f'src="{script}"' in html
        response = _page(script)
        assert response.status_code == 200 and response.mimetype == "text/javascript" and response.get_body()
    assert _page("vendor/signalr.min.js").headers["Cache-Control"].startswith("public")
    for path in ("../function_app.py", "vendor/../../shared/settings.py", "node_modules/ws/index.js", "x.html"):
        response = _page(path)
        assert response.status_code == 404 and response.mimetype == "application/json"
        assert json.loads(response.get_body())["error"]["status"] == 404
    redirect = _page("", url="http://localhost:7071/api/dashboard")
    assert redirect.status_code == 308 and redirect.headers["Location"] == "dashboard/"


def test_negotiate_returns_the_connection_info_binding_value():
    info = json.dumps({"url": "https://example.service.signalr.net/client/?hub=tickcast", "accessToken": "abc"})
    req = func.HttpRequest(method="POST", url="http://localhost:7071/api/negotiate", body=b"")
    response = dashboard_module.negotiate.build().get_user_function()(req, connectionInfo=info)
    assert response.status_code == 200 and json.loads(response.get_body()) == json.loads(info)


def test_vendor_files_copied_into_web_are_served_before_node_modules(tmp_path):
    from shared.serving.webassets import NODE_MODULES, VENDOR, copy_vendor, resolve_asset

    written = copy_vendor(web=tmp_path)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in written) == sorted(VENDOR)
    for url_path, source in VENDOR.items():
        assert (tmp_path / url_path).read_bytes() == (NODE_MODULES / source).read_bytes()
        assert resolve_asset(url_path, web=tmp_path).path == tmp_path / url_path
        assert resolve_asset(url_path, web=tmp_path / "empty").path == NODE_MODULES / source  # fallback
    with pytest.raises(FileNotFoundError, match="npm ci"):
        copy_vendor(web=tmp_path, node_modules=tmp_path / "missing")
