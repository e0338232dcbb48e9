"""Serve the app's HTTP functions, the dashboard and a SignalR hub locally, the way the Functions host would.

:class:`HttpFunctionHost` reads each HTTP-triggered function's bindings
(``app.get_functions()``), maps its route template under ``/api/`` (``{name}``
segments, ``{*rest}`` catch-alls), and calls the decorated Python function with
an ``azure.functions.HttpRequest`` built from the aiohttp request. A
``signalRConnectionInfo`` input binding is supplied by the local hub
(:class:`~local_stack.signalr_hub.SignalRHubServer`), so ``negotiate`` returns
what it would return in Azure, pointing at the local hub.

:class:`LocalWebServer` runs both on one port in a background thread with its
own event loop; ``/`` redirects to the dashboard.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import azure.functions as func
from aiohttp import web
from azure.functions.decorators.core import BindingDirection

from local_stack.functions_host import BindingError, resolve
from local_stack.signalr_hub import SignalRHubServer

log = logging.getLogger(__name__)

ROUTE_PREFIX = "api"
"""The Functions host's default HTTP route prefix (``host.json`` keeps it)."""

_PARAM = re.compile(r"\{(\*?)([A-Za-z_][A-Za-z0-9_]*)(?::[^}]*)?\}")


def aiohttp_paths(template: str) -> list[str]:
    """aiohttp path patterns for a Functions route template (under ``/api/``).

    ``{name}`` and ``{name:constraint}`` match one segment; ``{*name}`` matches
    the rest of the path, including nothing (so ``dashboard/{*path}`` also
    serves ``/api/dashboard``).

    Raises
    ------
    BindingError
        Optional parameters (``{name?}``), which the local host does not support.

    Examples
    --------
    >>> aiohttp_paths("bars/{symbol}")
    ['/api/bars/{symbol}']
    >>> aiohttp_paths("dashboard/{*path}")
    ['/api/dashboard/{path:.*}', '/api/dashboard']
    """
    if "?}" in template:
        raise BindingError(f"route {template!r}: optional parameters are not supported locally")
    path = "/" + ROUTE_PREFIX + "/" + template.strip("/")
    converted = _PARAM.sub(lambda m: f"{{{m.group(2)}:.*}}" if m.group(1) else f"{{{m.group(2)}}}", path)
    paths = [converted]
    catch_all = re.search(r"/\{\*[^}]+\}$", path)
    if catch_all:
        paths.append(path[: catch_all.start()])
    return paths


@dataclass
class _HttpFunction:
    name: str
    user_function: Callable[..., Any]
    trigger_arg: str
    methods: list[str] | None
    paths: list[str]
    route_params: list[str]
    connection_info: dict[str, str]  # argument name -> hub name


class HttpFunctionHost:
    """Routes requests to the HTTP-triggered functions among ``functions``.

    Parameters
    ----------
    functions : sequence of ``azure.functions`` ``Function``
        E.g. ``app_functions(function_app.app)``; functions with other triggers are skipped.
    settings : mapping
        App settings used to resolve ``%NAME%`` binding expressions.
    hub : SignalRHubServer, optional
        Supplies ``signalRConnectionInfo`` input bindings; required if a function has one.
    max_workers : int
        Threads that run the (synchronous) functions.

    Raises
    ------
    BindingError
        A binding the local host cannot supply, or a missing setting.
    """

    def __init__(
        self,
        functions: Sequence[Any],
        settings: Mapping[str, str],
        hub: SignalRHubServer | None = None,
        max_workers: int = 4,
    ) -> None:
        self.hub = hub
        self.functions: list[_HttpFunction] = []
        self._executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="http-fn")
        for fn in functions:
            trigger = fn.get_trigger().get_dict_repr()
            if trigger.get("type") != "httpTrigger":
                continue
            name = fn.get_function_name()
            info: dict[str, str] = {}
            for binding in fn.get_bindings():
                spec = binding.get_dict_repr()
                if spec is trigger or spec.get("type") in ("httpTrigger",):
                    continue
                if spec.get("type") == "http" and spec.get("direction") == BindingDirection.OUT:
                    if spec.get("name") != "$return":
                        raise BindingError(f"{name}: only a $return HTTP output is supported locally")
                    continue
                if spec.get("type") == "signalRConnectionInfo":
                    if hub is None:
                        raise BindingError(f"{name}: a signalRConnectionInfo binding needs the local hub")
                    info[spec["name"]] = resolve(spec["hubName"], settings)
                    continue
                raise BindingError(f"{name}: binding type {spec.get('type')} is not supported by the local HTTP host")
            template = trigger.get("route") or name
            methods = [str(getattr(m, "value", m)).upper() for m in trigger.get("methods") or []] or None
            self.functions.append(_HttpFunction(
                name, fn.get_user_function(), trigger["name"], methods, aiohttp_paths(template),
                [m.group(2) for m in _PARAM.finditer(template)], info,
            ))

    def add_routes(self, app: web.Application) -> None:
        """Add one route per function path and method to ``app``, in the order the Functions host tries them.

        The host tries routes in the alphabetical order of their function names, not by route
        precedence (Azure/azure-functions-host#9876); aiohttp tries them in the order they were
        added. So a catch-all route (``{*path}``) takes only what the functions before it did not.
        """
        for fn in sorted(self.functions, key=lambda f: f.name):
            for path in fn.paths:
                for method in fn.methods or ["*"]:
                    app.router.add_route(method, path, self._handler(fn))

    def close(self) -> None:
        """Stop the worker threads (after running calls finish)."""
        self._executor.shutdown(wait=True)

    def _handler(self, fn: _HttpFunction) -> Callable[[web.Request], Any]:
        async def handle(request: web.Request) -> web.Response:
            route_params = {name: request.match_info.get(name, "") for name in fn.route_params}
            req = func.HttpRequest(
                method=request.method,
                url=str(request.url),
                headers=dict(request.headers),
                params={k: v for k, v in request.query.items()},
                route_params=route_params,
                body=await request.read(),
            )
            kwargs: dict[str, Any] = {fn.trigger_arg: req}
            base_url = f"{request.scheme}://{request.host}"
            for arg, hub_name in fn.connection_info.items():
                kwargs[arg] = json.dumps(self.hub.connection_info(hub_name, base_url))  # type: ignore[union-attr]
            loop = asyncio.get_running_loop()
            try:
                result = await loop.run_in_executor(self._executor, lambda: fn.user_function(**kwargs))
            except Exception:
                log.exception("HTTP function %s failed", fn.name)
                return json_error(500, f"function {fn.name} failed; see the log")
            if not isinstance(result, func.HttpResponse):
                log.error("HTTP function %s returned %r, not an HttpResponse", fn.name, type(result))
                return json_error(500, f"function {fn.name} returned no HTTP response; see the log")
            headers = dict(result.headers)
            if not any(k.lower() == "content-type" for k in headers) and result.mimetype:
                headers["Content-Type"] = result.mimetype + (f"; charset={result.charset}" if result.charset else "")
            return web.Response(status=result.status_code, body=result.get_body(), headers=headers)

        return handle


def json_error(status: int, message: str, headers: Mapping[str, str] | None = None) -> web.Response:
    """An error answer with the API's JSON body (:func:`shared.serving.params.error_body`)."""
    body = {"error": {"status": status, "parameter": None, "message": message}}
    return web.json_response(body, status=status, headers={"Cache-Control": "no-store", **(headers or {})})


@web.middleware
async def api_errors_as_json(request: web.Request, handler: Callable[[web.Request], Any]) -> web.StreamResponse:
    """Under ``/api/``: an error aiohttp raises itself (no route, method not allowed, bad request) as JSON.

    The app's catch-all function normally answers unmatched routes; this covers an app
    without one and errors raised before any function runs.
    """
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if not (request.path == f"/{ROUTE_PREFIX}" or request.path.startswith(f"/{ROUTE_PREFIX}/")) \
                or exc.status < 400:
            raise
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return json_error(exc.status, f"{exc.reason}: {request.method} {request.path[:200]}", headers)


@dataclass
class WebOptions:
    """How ``local_stack.run`` serves the dashboard, the HTTP API and the SignalR hub.

    Attributes
    ----------
    port : preferred TCP port (0: any free port); busy -> a free one is used instead.
    host : interface to listen on (loopback by default).
    serve_until : after the replay, keep serving until this event is set (``None``: stop at once).
    on_ready : called with the dashboard URL once the server listens.
    ping_interval_s : the hub's keep-alive interval.
    """

    port: int = 7071
    host: str = "127.0.0.1"
    serve_until: threading.Event | None = None
    on_ready: Callable[[str], None] | None = None
    ping_interval_s: float = 15.0


class LocalWebServer:
    """The HTTP functions, the dashboard and the SignalR hub on one port, in a background thread.

    Parameters
    ----------
    functions, settings : as for :class:`HttpFunctionHost`.
    host, port : where to listen; port 0 picks a free port.
    hub : the SignalR hub (default: a new :class:`SignalRHubServer`).

    Raises
    ------
    OSError
        The port cannot be bound (raised by :meth:`start`).
    """

    def __init__(
        self,
        functions: Sequence[Any],
        settings: Mapping[str, str],
        host: str = "127.0.0.1",
        port: int = 0,
        hub: SignalRHubServer | None = None,
    ) -> None:
        self.hub = hub or SignalRHubServer()
        self.http = HttpFunctionHost(functions, settings, self.hub)
        self.host = host
        self.port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:7071``."""
        return f"http://{self.host}:{self.port}"

    @property
    def dashboard_url(self) -> str:
        """URL of the dashboard page."""
        return f"{self.url}/{ROUTE_PREFIX}/dashboard/"

    def _app(self) -> web.Application:
        app = web.Application(middlewares=[api_errors_as_json])
        self.hub.add_routes(app)
        self.http.add_routes(app)

        async def root(_request: web.Request) -> web.Response:
            raise web.HTTPFound(f"/{ROUTE_PREFIX}/dashboard/")

        app.router.add_get("/", root)
        return app

    def start(self, timeout_s: float = 10.0) -> LocalWebServer:
        """Start listening; returns once the server accepts connections.

        Raises
        ------
        OSError
            The address cannot be bound.
        """
        ready = threading.Event()
        failure: list[BaseException] = []

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                self._runner = web.AppRunner(self._app(), handle_signals=False, access_log=None)
                loop.run_until_complete(self._runner.setup())
                site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
                loop.run_until_complete(site.start())
                self.port = self._runner.addresses[0][1]
            except BaseException as exc:  # reported to start()
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=serve, name="local-web", daemon=True)
        self._thread.start()
        if not ready.wait(timeout_s):
            raise RuntimeError("the local web server did not start in time")
        if failure:
            raise failure[0]
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        """Close every SignalR client (type 7, reconnect allowed), stop serving, join the thread."""
        if self._loop is None or self._thread is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout_s)
        self.http.close()
        self._thread = None

    def __enter__(self) -> LocalWebServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def serve_dashboard(options: WebOptions, settings: Mapping[str, str], say: Callable[[str], None]) -> Iterator[LocalWebServer]:
    """Serve the app's HTTP functions, dashboard and hub while the block runs (for ``local_stack.run``).

    Tries ``options.port`` first and a free port if it is taken; announces the
    dashboard URL through ``say`` and ``options.on_ready``.
    """
    import function_app
    from local_stack.functions_host import app_functions

    functions = app_functions(function_app.app)
    hub = SignalRHubServer(ping_interval_s=options.ping_interval_s)
    server = LocalWebServer(functions, settings, options.host, options.port, hub)
    try:
        server.start()
    except OSError as exc:
        if not options.port:
            raise
        say(f"port {options.port} is taken ({exc.strerror}); serving on a free port instead")
        server = LocalWebServer(functions, settings, options.host, 0, hub)
        server.start()
    try:
        say(f"dashboard: {server.dashboard_url}  (HTTP API under {server.url}/api/, SignalR hub at {server.url}/client/)")
        if options.on_ready is not None:
            options.on_ready(server.dashboard_url)
        yield server
    finally:
        server.stop()


def linger(server: LocalWebServer, options: WebOptions, say: Callable[[str], None]) -> None:
    """After the replay: keep serving until ``options.serve_until`` is set or Ctrl-C (no-op without it)."""
    if options.serve_until is None:
        return
    say(f"replay done; still serving {server.dashboard_url} - press Ctrl-C to stop")
    try:
        while not options.serve_until.wait(0.5):
            pass
    except KeyboardInterrupt:
        say("Ctrl-C: stopping")
