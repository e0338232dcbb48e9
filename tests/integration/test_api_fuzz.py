"""Every HTTP route fuzzed with hypothesis (real handlers, MariaDB, Azurite), the same through the local
HTTP host over loopback, and the OpenAPI description checked against the routes actually registered.

No input may yield a 500: each answer is 2xx/3xx, or a 4xx whose body is the API's JSON error
(``{"error": {"status", "parameter", "message"}}``). The OpenAPI document must name exactly the
registered routes, with their methods and path parameters, and each documented query parameter
must be one the handler reads (a bad value is refused naming it), while an undocumented one is
refused on the JSON routes.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.parse
import urllib.request

import azure.functions as func
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import function_app
from functions import api as api_module
from functions import dashboard as dashboard_module
from local_stack.functions_host import app_functions
from local_stack.http_host import LocalWebServer
from shared.serving.openapi import ROUTES, document
from tests.integration.test_api import SYMBOLS, app_settings, history  # noqa: F401 - fixtures

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
_PARAM = re.compile(r"\{\*?([A-Za-z_]+)\}")

# Values that broke or nearly broke the API, then anything hypothesis makes of them.
NASTY = ["", "1561942680", "²", "9" * 4300, "-1", "1e3", "NaN", "\x00", "%", "%2F", "../..", "kraken:BTC-USD",
         "KRAKEN:btc%2fusd", "btc/usd", "2024-08-08T23:54:00Z", "0001-01-01T00:00+01:00", "true", "٣", "' OR 1=1 --"]
text = st.sampled_from(NASTY) | st.text(max_size=40) | st.integers(-10**25, 10**25).map(str) \
    | st.from_regex(r"[0-9TZ:+\-. ]{1,25}", fullmatch=True)
# Half of the path values name a served symbol, so the query parameters behind it get fuzzed too.
route_values = st.sampled_from(["kraken:BTC-USD", "binance:BTCUSDT", "coinbase:BTC-USD", "btcusdt"]) | text
names = st.sampled_from(["limit", "from", "to", "window", "refused", "form", "negotiateVersion"]) \
    | st.text(min_size=1, max_size=10)


@pytest.fixture
def registry_settings(app_settings, monkeypatch, azurite, blob_container):  # noqa: F811 - a fixture
    monkeypatch.setenv("MODEL_STORAGE", azurite.connection_string)
    monkeypatch.setenv("MODELS_CONTAINER", blob_container.container_name)
    monkeypatch.setenv("SIGNALR_HUB_NAME", "tickcast-fuzz")
    from functions import reset_services

    reset_services()
    yield
    reset_services()


def _assert_answer(status: int, content_type: str, body: bytes, where: str) -> None:
    assert status < 500, f"{where}: {status} {body[:300]!r}"
    if status >= 400:
        assert content_type.startswith("application/json"), f"{where}: {status} {content_type}"
        error = json.loads(body)["error"]
        assert error["status"] == status and isinstance(error["message"], str) and error["message"], where


HANDLERS = {
    "get_predictions": api_module.get_predictions, "get_bars": api_module.get_bars,
    "get_accuracy": api_module.get_accuracy, "get_model_changes": api_module.get_model_changes,
    "get_symbols": api_module.get_symbols, "health": api_module.health, "openapi": api_module.openapi,
    "dashboard": dashboard_module.dashboard, "zz_not_found": api_module.not_found,
}


def _queries(operation_id: str) -> st.SearchStrategy[dict[str, str]]:
    """Mostly the route's own query parameters only (an unknown name is refused before any value is
    read, so those get fuzzed apart), sometimes any names."""
    known = [n for r in ROUTES if r.operation_id == operation_id for n in r.query()]
    own = st.dictionaries(st.sampled_from(known), text, max_size=len(known)) if known else st.just({})
    return own | own | st.dictionaries(names, text, max_size=3)


@pytest.mark.parametrize("name", sorted(HANDLERS))
def test_every_handler_answers_any_input_without_a_500(registry_settings, history, name):  # noqa: F811
    fn = HANDLERS[name].build().get_user_function()

    @FUZZ
    @given(route_value=route_values, query=_queries(name),
           method=st.sampled_from(["GET", "GET", "POST", "DELETE"]))
    def check(route_value, query, method):
        route = {"symbol": route_value, "path": route_value}
        req = func.HttpRequest(method=method, url=f"http://localhost:7071/api/x/{urllib.parse.quote(route_value)}",
                               params=query, route_params=route, body=b"")
        response = fn(req)
        _assert_answer(response.status_code, response.mimetype or "", response.get_body(), f"{name} {route} {query}")

    check()


@pytest.fixture
def web(registry_settings):
    with LocalWebServer(app_functions(function_app.app), {"SIGNALR_HUB_NAME": "tickcast-fuzz"}, port=0) as server:
        yield server


def _get(url: str, method: str = "GET") -> tuple[int, str, bytes, dict]:
    req = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(req, timeout=10) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read(), dict(e.headers)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # noqa: D102 - keep 3xx answers as they are
        return None


segments = st.lists(st.sampled_from(["predictions", "bars", "accuracy", "model-changes", "symbols", "health",
                                     "openapi.json", "negotiate", "dashboard", "app.js", "kraken:BTC-USD"])
                    | text, min_size=0, max_size=3)


@st.composite
def urls(draw) -> tuple[str, str]:
    """``(method, path and query under /api/)``: a documented route with fuzzed values, or any path."""
    route = draw(st.sampled_from(ROUTES) | st.none())
    if route is None:
        path = "/".join(urllib.parse.quote(p, safe=":") for p in draw(segments))
        query = draw(st.dictionaries(names, text, max_size=3))
    else:
        path = route.path.removeprefix("/api/")
        for param in _PARAM.findall(path):
            path = path.replace("{" + param + "}", urllib.parse.quote(draw(route_values), safe=":"))
        query = draw(_queries(route.operation_id))
    method = draw(st.sampled_from(["GET", "GET", "GET", "POST", "PUT", "DELETE"]))
    return method, path + ("?" + urllib.parse.urlencode(query) if query else "")


@settings(FUZZ, max_examples=300)
@given(request=urls())
def test_the_local_host_over_loopback_answers_any_url_without_a_500(web, history, request):  # noqa: F811
    method, tail = request
    status, content_type, body, _ = _get(f"{web.url}/api/{tail}", method)
    if len(f"{method} /api/{tail} HTTP/1.1") > REQUEST_LINE_LIMIT:
        # refused by the HTTP server before any route runs (aiohttp's max_line_size; Azure's front end
        # has URL limits of its own): a plain 4xx, never a 500
        assert 400 <= status < 500, (status, body[:200])
        return
    _assert_answer(status, content_type, body, f"{method} /api/{tail}")


REQUEST_LINE_LIMIT = 8190
"""aiohttp's default ``max_line_size`` (``aiohttp/http_parser.py``): a longer request line is answered
by the server with a plain-text 400."""


def test_unmatched_routes_and_methods_are_json_over_loopback(web):
    for url, method, status in ((f"{web.url}/api/nope", "GET", 404), (f"{web.url}/api", "GET", 404),
                                (f"{web.url}/api/bars/kraken:BTC-USD", "POST", 405),
                                (f"{web.url}/api/negotiate", "GET", 405),
                                (f"{web.url}/api/dashboard/nope.js", "GET", 404)):
        got, content_type, body, headers = _get(url, method)
        assert got == status and content_type.startswith("application/json"), (url, got, body)
        assert json.loads(body)["error"]["status"] == status
        if status == 405:
            assert headers["Allow"] in ("GET", "POST")


def _registered() -> dict[str, tuple[str, set[str], list[str]]]:
    """Function name -> (OpenAPI path, methods, path parameters) of every registered HTTP route."""
    out = {}
    for fn in app_functions(function_app.app):
        trigger = fn.get_trigger().get_dict_repr()
        if trigger["type"] != "httpTrigger":
            continue
        template = trigger["route"]
        methods = {str(getattr(m, "value", m)).upper() for m in trigger.get("methods") or []}
        out[fn.get_function_name()] = ("/api/" + _PARAM.sub(r"{\1}", template), methods,
                                       _PARAM.findall(template))
    return out


def test_openapi_names_exactly_the_registered_routes_and_their_parameters(web):
    status, _, body, _ = _get(f"{web.url}/api/openapi.json")
    assert status == 200
    served = json.loads(body)
    assert served == document(web.url + "/")
    registered = _registered()
    catch_all = registered.pop("zz_not_found")
    assert catch_all == ("/api/{path}", set(), ["path"])  # answers what no route takes; not an operation
    documented = {op["operationId"]: (path, {method.upper()},
                                      [p["name"] for p in op.get("parameters", []) if p["in"] == "path"])
                  for path, item in served["paths"].items() for method, op in item.items()}
    assert documented == registered  # every route documented, every documented route registered


@pytest.mark.parametrize("route", [r for r in ROUTES if r.method == "GET" and r.operation_id != "dashboard"],
                         ids=lambda r: r.operation_id)
def test_documented_query_parameters_are_the_ones_the_handlers_read(web, history, route):  # noqa: F811
    base = web.url + route.path.replace("{symbol}", "kraken:BTC-USD")
    status, _, body, _ = _get(base)
    assert status == 200, body
    for name in route.query():  # a bad value is refused naming the parameter: the handler reads it
        status, _, body, _ = _get(base + "?" + urllib.parse.urlencode({name: "zz-not-a-value"}))
        assert status == 400 and json.loads(body)["error"]["parameter"] == name, (name, body)
    if route.strict:
        status, _, body, _ = _get(base + "?bogus=1")
        assert status == 400 and json.loads(body)["error"]["parameter"] == "bogus", body
