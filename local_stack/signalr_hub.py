"""A local SignalR hub: the stand-in for Azure SignalR Service in serverless mode.

It speaks what the official clients speak, so the dashboard works unchanged
locally and in Azure:

1. The app's ``negotiate`` function returns :meth:`SignalRHubServer.connection_info`
   (``{"url": ".../client/?hub=<hub>", "accessToken": <JWT>}``), the same shape as
   the ``signalRConnectionInfo`` input binding; the client follows the URL.
2. ``POST /client/negotiate?hub=<hub>&negotiateVersion=1`` with ``Authorization:
   Bearer <token>`` answers the negotiate response of the SignalR transport
   protocol: ``connectionId``, ``connectionToken``, ``negotiateVersion`` and the one
   transport offered, WebSockets (text and binary frames).
3. ``GET /client/?hub=<hub>&id=<connectionToken>`` upgrades to a WebSocket (the
   token in ``access_token`` or the ``Authorization`` header). The ``id`` is
   optional, as the SignalR transport protocol says of WebSockets ("The
   **optional** ``id`` query string value is used to identify the connection to
   attach to. If there is no ``id`` query string value, a new connection is
   established", dotnet/aspnetcore ``src/SignalR/docs/specs/TransportProtocols.md``):
   the Python ``signalrcore`` client follows the ``url``/``accessToken`` redirect
   straight to the WebSocket without a second negotiate. An ``id`` that was never
   negotiated gets 404. Then the JSON hub protocol: the client's handshake
   ``{"protocol":"json","version":N}`` + 0x1E is answered ``{}`` + 0x1E, for every
   version 0 to 2 that ASP.NET Core's ``JsonHubProtocol`` accepts
   (``IsVersionSupported(version) => version <= Version`` with ``Version = 2``;
   ``signalrcore`` sends 0 on some paths, the JS client 1), or ``{"error": ...}``
   for another protocol or version; each record ends with the record separator 0x1E.
4. Messages published with :meth:`SignalRHubServer.publish` (the ``broadcast``
   function's ``signalR`` output, routed here by the local driver) go to every
   client of the hub as invocations ``{"type":1,"target":...,"arguments":[...]}``.
   The hub pings (type 6) every ``ping_interval_s``, closes (type 7, with
   ``error``) a client silent for ``client_timeout_s``, and answers a client's
   invocation of a hub method with a completion (type 3) carrying an error:
   a serverless hub has no server methods.

Access tokens are HS256 JWTs made and checked with PyJWT, signed with a per-process
secret (``aud`` = the client URL, ``exp``), as Azure SignalR's are signed with its
access key. The hub protocol itself is written here: no library serves the server
side of SignalR's transport and JSON hub protocol in Python, offline.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import jwt
from aiohttp import WSMsgType, web

log = logging.getLogger(__name__)

RECORD_SEPARATOR = "\x1e"
"""Ends every record of the SignalR JSON hub protocol (and the handshake)."""

INVOCATION, STREAM_ITEM, COMPLETION, STREAM_INVOCATION, CANCEL_INVOCATION, PING, CLOSE = range(1, 8)
"""Message types of the hub protocol."""

PING_RECORD = json.dumps({"type": PING}) + RECORD_SEPARATOR


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def client_url(base_url: str, hub: str) -> str:
    """The client URL of ``hub`` (the ``url`` of connection info, the ``aud`` of its tokens).

    >>> client_url("http://127.0.0.1:7071/", "tick cast")
    'http://127.0.0.1:7071/client/?hub=tick%20cast'
    """
    return f"{base_url.rstrip('/')}/client/?hub={quote(hub, safe='')}"


def encode_records(messages: Iterable[Mapping[str, Any]]) -> str:
    """Hub-protocol invocation records (each followed by 0x1E) for output-binding messages.

    Raises
    ------
    ValueError
        A message without a string ``target`` or a list ``arguments``.

    Examples
    --------
    >>> encode_records([{"target": "bar", "arguments": [1]}])
    '{"type":1,"target":"bar","arguments":[1]}\\x1e'
    """
    out = []
    for m in messages:
        target, arguments = m.get("target"), m.get("arguments", [])
        if not isinstance(target, str) or not target or not isinstance(arguments, list):
            raise ValueError(f"not a SignalR message (target, arguments): {str(m)[:200]}")
        out.append(json.dumps({"type": INVOCATION, "target": target, "arguments": arguments},
                              separators=(",", ":"), allow_nan=False))
        out.append(RECORD_SEPARATOR)
    return "".join(out)


JSON_PROTOCOL_VERSIONS = range(0, 3)
"""Handshake versions of the ``json`` protocol accepted: ASP.NET Core's ``JsonHubProtocol`` has
``Version = 2`` and ``IsVersionSupported(version) => version <= Version``
(dotnet/aspnetcore ``src/SignalR/common/Protocols.Json/src/Protocol/JsonHubProtocol.cs``); version 2
adds stateful reconnect, which is used only when negotiate offers it, and this hub never does."""


def handshake_error(request: object) -> str | None:
    """The ``error`` answering a decoded handshake request, or ``None`` to accept it.

    The messages are those of ASP.NET Core SignalR's ``HubConnectionContext.HandshakeAsync``.

    Examples
    --------
    >>> handshake_error({"protocol": "json", "version": 0}) is None
    True
    >>> handshake_error({"protocol": "messagepack", "version": 1})
    "Requested protocol 'messagepack' is not available."
    >>> handshake_error({"protocol": "json", "version": 7})
    "The server does not support version 7 of the 'json' protocol."
    """
    if not isinstance(request, dict) or not isinstance(request.get("protocol"), str):
        return "Handshake request is not valid JSON with protocol and version."
    protocol, version = request["protocol"], request.get("version")
    if protocol != "json":
        return f"Requested protocol '{protocol}' is not available."
    if isinstance(version, bool) or not isinstance(version, int) or version not in JSON_PROTOCOL_VERSIONS:
        return f"The server does not support version {version} of the 'json' protocol."
    return None


def _audiences(request: web.Request, hub: str) -> list[str]:
    """Client URLs a token for ``hub`` may name (its ``aud``) when presented on ``request``.

    The URL the client reached (``Host`` header), and the same host with the port the server
    listens on: ``signalrcore`` 1.0.2 sends ``Host`` without the port, which only a server on
    the scheme's default port (as Azure SignalR Service's 443) would not notice.
    """
    audiences = [client_url(f"{request.scheme}://{request.host}", hub)]
    sockname = request.transport.get_extra_info("sockname") if request.transport is not None else None
    if sockname and ":" not in request.host.rsplit("]", 1)[-1]:
        audiences.append(client_url(f"{request.scheme}://{request.host}:{sockname[1]}", hub))
    return audiences


@dataclass
class HubStats:
    """Counters of the hub since it started (for logs and tests)."""

    negotiations: int = 0
    connections_opened: int = 0
    connections_closed: int = 0
    handshakes_failed: int = 0
    messages_published: int = 0
    records_sent: int = 0
    pings_sent: int = 0
    pings_received: int = 0
    invocations_refused: int = 0
    slow_clients_closed: int = 0


@dataclass
class _Connection:
    connection_id: str
    hub: str
    ws: web.WebSocketResponse
    queue: asyncio.Queue
    opened: float = field(default_factory=time.monotonic)


class SignalRHubServer:
    """The hub endpoints (``/client/negotiate``, ``/client/``) on an aiohttp application.

    Parameters
    ----------
    ping_interval_s : float
        Keep-alive: seconds between two pings to each client (clients time out after 30 s by default).
    client_timeout_s : float
        Close a client that sent nothing (not even a ping) for this long.
    handshake_timeout_s : float
        Close a WebSocket whose handshake did not arrive in time.
    token_lifetime_s : float
        Validity of the access tokens of :meth:`connection_info`.
    max_queue : int
        Records waiting for one slow client before the hub closes it (it may reconnect).
    """

    def __init__(
        self,
        ping_interval_s: float = 15.0,
        client_timeout_s: float = 30.0,
        handshake_timeout_s: float = 15.0,
        token_lifetime_s: float = 3600.0,
        max_queue: int = 1000,
    ) -> None:
        self.ping_interval_s = ping_interval_s
        self.client_timeout_s = client_timeout_s
        self.handshake_timeout_s = handshake_timeout_s
        self.token_lifetime_s = token_lifetime_s
        self.max_queue = max_queue
        self.stats = HubStats()
        self._secret = secrets.token_bytes(32)
        self._pending: dict[str, tuple[str, str, float]] = {}  # connection token -> (hub, connection id, time)
        self._connections: dict[str, _Connection] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- set-up -------------------------------------------------------------------------

    def add_routes(self, app: web.Application) -> None:
        """Add the negotiate and WebSocket endpoints under ``/client/`` and bind to the app's loop."""
        app.router.add_post("/client/negotiate", self._negotiate)
        app.router.add_get("/client/", self._websocket)
        app.router.add_get("/client", self._websocket)
        app.on_startup.append(self._bind)
        app.on_shutdown.append(self._on_shutdown)

    async def _bind(self, _app: web.Application) -> None:
        self._loop = asyncio.get_running_loop()

    async def _on_shutdown(self, _app: web.Application) -> None:
        await self.close_all(error=None, allow_reconnect=True)

    # -- tokens -------------------------------------------------------------------------

    def connection_info(self, hub: str, base_url: str) -> dict[str, str]:
        """What the ``signalRConnectionInfo`` binding gives ``negotiate``: ``url`` and ``accessToken``.

        Parameters
        ----------
        hub : str
            Hub name (``SIGNALR_HUB_NAME``).
        base_url : str
            Scheme, host and port the client reached the app on, e.g. ``http://127.0.0.1:7071``.
        """
        url = client_url(base_url, hub)
        now = int(time.time())
        claims = {"aud": url, "hub": hub, "iat": now, "exp": now + int(self.token_lifetime_s)}
        return {"url": url, "accessToken": jwt.encode(claims, self._secret, algorithm="HS256")}

    def _verify(self, token: str | None, request: web.Request, hub: str) -> str | None:
        """``None`` if ``token`` is a valid, unexpired token for ``hub`` at the URL ``request`` reached; else why not."""
        if not token:
            return "missing access token"
        audiences = _audiences(request, hub)
        audience = audiences[0]
        try:
            claims = jwt.decode(token, self._secret, algorithms=["HS256"], audience=audiences,
                                options={"require": ["aud", "exp", "hub"]})
        except (jwt.InvalidSignatureError, jwt.InvalidAlgorithmError) as exc:
            return f"bad token signature ({exc})"
        except jwt.ExpiredSignatureError:
            return "access token expired"
        except jwt.InvalidAudienceError:
            return f"token is not for {audience}"
        except jwt.InvalidTokenError as exc:  # malformed, a claim missing, issued in the future, ...
            return f"malformed access token ({exc})"
        if claims["hub"] != hub:
            return f"token is not for hub {hub!r}"
        return None

    def _check(self, request: web.Request, hub: str) -> web.Response | None:
        """The error answer of a request without a valid token for ``hub`` (400 / 401), or ``None``."""
        if not hub:
            return web.json_response({"error": "hub query parameter missing"}, status=400)
        problem = self._verify(self._bearer(request), request, hub)
        return web.json_response({"error": problem}, status=401) if problem else None

    @staticmethod
    def _bearer(request: web.Request) -> str | None:
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            return auth[7:].strip()
        return request.query.get("access_token")

    # -- negotiate ----------------------------------------------------------------------

    async def _negotiate(self, request: web.Request) -> web.Response:
        hub = request.query.get("hub", "")
        problem = self._check(request, hub)
        if problem:
            return problem
        self.stats.negotiations += 1
        now = time.monotonic()
        for token, (_, _, created) in list(self._pending.items()):  # drop negotiations never used
            if now - created > 60:
                del self._pending[token]
        connection_id = _b64(secrets.token_bytes(16))
        version = 1 if request.query.get("negotiateVersion", "0") not in ("", "0") else 0
        token = _b64(secrets.token_bytes(16)) if version else connection_id
        self._pending[token] = (hub, connection_id, now)
        body: dict[str, Any] = {
            "connectionId": connection_id,
            "negotiateVersion": version,
            "availableTransports": [{"transport": "WebSockets", "transferFormats": ["Text", "Binary"]}],
        }
        if version:
            body["connectionToken"] = token
        return web.json_response(body, headers={"Cache-Control": "no-store"})

    # -- WebSocket connection -----------------------------------------------------------

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        hub = request.query.get("hub", "")
        problem = self._check(request, hub)
        if problem:
            return problem
        if "id" in request.query:
            pending = self._pending.pop(request.query["id"], None)
            if pending is None or pending[0] != hub:
                return web.json_response({"error": "unknown connection id: negotiate first"}, status=404)
            connection_id = pending[1]
        else:  # no id: a new connection (TransportProtocols.md, "WebSockets"), e.g. signalrcore
            connection_id = _b64(secrets.token_bytes(16))
        ws = web.WebSocketResponse(autoping=True, max_msg_size=1 << 20)
        if not ws.can_prepare(request).ok:
            return web.json_response({"error": "only the WebSockets transport is offered"}, status=400)
        await ws.prepare(request)
        conn = _Connection(connection_id, hub, ws, asyncio.Queue(self.max_queue))
        try:
            if await self._handshake(conn):
                await self._serve(conn)
        finally:
            self._connections.pop(conn.connection_id, None)
            if not ws.closed:
                await ws.close()
            self.stats.connections_closed += 1
        return ws

    async def _handshake(self, conn: _Connection) -> bool:
        """Read the handshake request, answer it; True if the connection may go on."""
        buffer = ""
        deadline = time.monotonic() + self.handshake_timeout_s
        while RECORD_SEPARATOR not in buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.stats.handshakes_failed += 1
                return False
            try:
                msg = await conn.ws.receive(timeout=remaining)
            except TimeoutError:
                self.stats.handshakes_failed += 1
                return False
            if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                return False
            buffer += msg.data if msg.type == WSMsgType.TEXT else msg.data.decode("utf-8", "replace")
        record, _, rest = buffer.partition(RECORD_SEPARATOR)
        try:
            request = json.loads(record)
        except ValueError:
            request = None
        error = handshake_error(request)
        if error is not None:
            await conn.ws.send_str(json.dumps({"error": error}) + RECORD_SEPARATOR)
            self.stats.handshakes_failed += 1
            return False
        await conn.ws.send_str("{}" + RECORD_SEPARATOR)
        self._connections[conn.connection_id] = conn
        self.stats.connections_opened += 1
        log.info("SignalR client %s joined hub %s", conn.connection_id, conn.hub)
        if rest:
            return await self._on_records(conn, rest)
        return True

    async def _serve(self, conn: _Connection) -> None:
        writer = asyncio.create_task(self._write(conn))
        pinger = asyncio.create_task(self._ping(conn))
        try:
            buffer = ""
            while True:
                try:
                    msg = await conn.ws.receive(timeout=self.client_timeout_s)
                except TimeoutError:
                    await self._send_close(conn, "Server timeout elapsed without receiving a message from the client.")
                    return
                if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                    return
                buffer += msg.data if msg.type == WSMsgType.TEXT else msg.data.decode("utf-8", "replace")
                if RECORD_SEPARATOR not in buffer:
                    continue
                complete, _, buffer = buffer.rpartition(RECORD_SEPARATOR)
                if not await self._on_records(conn, complete + RECORD_SEPARATOR):
                    return
        finally:
            pinger.cancel()
            writer.cancel()

    async def _on_records(self, conn: _Connection, text: str) -> bool:
        """Handle complete records from a client; False when the connection should end."""
        for record in filter(None, text.split(RECORD_SEPARATOR)):
            try:
                message = json.loads(record)
                kind = message["type"]
            except (ValueError, KeyError, TypeError):
                await self._send_close(conn, "Error parsing a message: not a JSON hub-protocol record.")
                return False
            if kind == PING:
                self.stats.pings_received += 1
            elif kind == CLOSE:
                return False
            elif kind in (INVOCATION, STREAM_INVOCATION) and message.get("invocationId") is not None:
                self.stats.invocations_refused += 1
                self._enqueue(conn, json.dumps({
                    "type": COMPLETION, "invocationId": message["invocationId"],
                    "error": f"Method '{message.get('target')}' does not exist: this hub runs in serverless mode"
                             " and has no server methods.",
                }) + RECORD_SEPARATOR)
            # other types (non-blocking invocations, stream items, cancels, completions) need no answer
        return True

    async def _write(self, conn: _Connection) -> None:
        while True:
            payload = await conn.queue.get()
            await conn.ws.send_str(payload)
            self.stats.records_sent += payload.count(RECORD_SEPARATOR)

    async def _ping(self, conn: _Connection) -> None:
        while True:
            await asyncio.sleep(self.ping_interval_s)
            if self._enqueue(conn, PING_RECORD):
                self.stats.pings_sent += 1

    def _enqueue(self, conn: _Connection, payload: str) -> bool:
        try:
            conn.queue.put_nowait(payload)
            return True
        except asyncio.QueueFull:
            self.stats.slow_clients_closed += 1
            log.warning("SignalR client %s is too slow; closing it", conn.connection_id)
            asyncio.ensure_future(self._send_close(conn, "Client too slow: messages were dropped.", True))
            return False

    async def _send_close(self, conn: _Connection, error: str | None, allow_reconnect: bool = False) -> None:
        record: dict[str, Any] = {"type": CLOSE}
        if error:
            record["error"] = error
        if allow_reconnect:
            record["allowReconnect"] = True
        try:
            if not conn.ws.closed:
                await conn.ws.send_str(json.dumps(record) + RECORD_SEPARATOR)
                await conn.ws.close()
        except (ConnectionError, RuntimeError):
            pass

    # -- publishing ---------------------------------------------------------------------

    def clients(self, hub: str | None = None) -> int:
        """Number of connected clients (of ``hub``, or of all hubs)."""
        return sum(1 for c in list(self._connections.values()) if hub is None or c.hub == hub)

    def publish(self, hub: str, messages: list[Mapping[str, Any]]) -> None:
        """Send output-binding messages (``target``, ``arguments``) to every client of ``hub``.

        Thread-safe: may be called from any thread once the server runs; returns
        at once (delivery happens on the server's loop). Messages published
        before the server started, or to a hub without clients, are dropped,
        as Azure SignalR Service drops them.

        Raises
        ------
        ValueError
            A message is not ``{"target": str, "arguments": list}``.
        """
        payload = encode_records(messages)
        if not payload or self._loop is None:
            return
        self.stats.messages_published += len(messages)
        self._loop.call_soon_threadsafe(self._fan_out, hub, payload)

    def _fan_out(self, hub: str, payload: str) -> None:
        for conn in list(self._connections.values()):
            if conn.hub == hub:
                self._enqueue(conn, payload)

    async def close_all(self, hub: str | None = None, error: str | None = None, allow_reconnect: bool = False) -> None:
        """Send a close message (type 7) to every client (of ``hub``) and close their sockets."""
        await asyncio.gather(*(
            self._send_close(c, error, allow_reconnect)
            for c in list(self._connections.values()) if hub is None or c.hub == hub
        ))

    def close_clients(self, hub: str | None = None, error: str | None = None, allow_reconnect: bool = False,
                      timeout_s: float = 10.0) -> None:
        """Thread-safe :meth:`close_all` for callers outside the server's loop; waits until sent."""
        if self._loop is None:
            return
        asyncio.run_coroutine_threadsafe(self.close_all(hub, error, allow_reconnect), self._loop).result(timeout_s)

