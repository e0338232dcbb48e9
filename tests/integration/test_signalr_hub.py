"""The local SignalR hub against the SignalR protocols, with real clients.

* The official ``@microsoft/signalr`` client (Node 20, ``tests/signalr_client.mjs``)
  negotiates through the app's own ``negotiate`` function (served by the local HTTP
  host), follows the redirect to the hub, completes the handshake, receives every
  target ``predict`` sends, stays connected only thanks to the hub's pings, gets an
  error for a hub-method invocation, reconnects by itself after a close that allows
  it, and ends on a close with an error.
* The Python ``signalrcore`` client (1.0.2) receives every target, both ways it connects:
  through the app's ``negotiate`` straight to the WebSocket (no second negotiate, no ``id``),
  and through the hub's own negotiate with handshake ``version: 0``.
* A raw WebSocket client checks the wire: negotiate response, handshake success and
  error, record separators across and within frames, pings, and the close sent to
  a silent client.
"""

from __future__ import annotations

import json
import queue
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import websockets.sync.client as ws_client

import function_app
from local_stack.functions_host import app_functions
from local_stack.http_host import LocalWebServer
from local_stack.signalr_hub import RECORD_SEPARATOR, SignalRHubServer
from shared.serving.broadcast import PriceUpdate, message_for_event
from shared.contracts.events import Bar, ModelChange, Prediction, to_dict

REPO = Path(__file__).resolve().parents[2]
CLIENT = REPO / "tests" / "signalr_client.mjs"
HUB = "tickcast-test"

PREDICTION = Prediction("kraken", "BTC/USD", 1561939260000, 1561939200412, 10750.1, 10751.3, 10738.2,
                        10764.4, 0.9, "v20240101-abc", 12, 0)
BAR = Bar("kraken", "BTC/USD", 1561939200000, 10749.4, 10760.0, 10740.0, 10750.1, 3.5, 12)
CHANGE = ModelChange("default", "v2", "v1", 1561939300000, "holdout MAE ratio 0.991 < 0.998")
PRICE = PriceUpdate("kraken", "BTC/USD", 10752.0, 1561939265000, 1561939265100)


def _server(**hub_options) -> LocalWebServer:
    hub = SignalRHubServer(**hub_options)
    return LocalWebServer(app_functions(function_app.app), {"SIGNALR_HUB_NAME": HUB}, port=0, hub=hub)


@pytest.fixture
def server():
    with _server(ping_interval_s=0.3, client_timeout_s=5.0) as srv:
        yield srv


class NodeClient:
    """The Node SignalR client as a child process: JSON events from stdout, commands to stdin."""

    def __init__(self, base: str) -> None:
        self.proc = subprocess.Popen(["node", str(CLIENT), base], cwd=REPO, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.events: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:  # type: ignore[union-attr]
            self.events.put(json.loads(line))

    def send(self, command: str) -> None:
        self.proc.stdin.write(command + "\n")  # type: ignore[union-attr]
        self.proc.stdin.flush()  # type: ignore[union-attr]

    def expect(self, event: str, timeout: float = 10.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            try:
                got = self.events.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                raise AssertionError(f"no {event!r} event within {timeout}s; stderr: {self._stderr()}") from None
            if got["event"] == event:
                return got
            if got["event"] in ("closed", "start-failed") and event != got["event"]:
                raise AssertionError(f"expected {event!r}, got {got}")

    def _stderr(self) -> str:
        if self.proc.poll() is None:
            return "(running)"
        return self.proc.stderr.read()[-2000:]  # type: ignore[union-attr]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(5)


@pytest.fixture
def node_client(server):
    if shutil.which("node") is None:
        pytest.fail("Node.js 20 is needed for the SignalR client test (apt-get install nodejs)")
    client = NodeClient(f"{server.url}/api")
    yield client
    client.close()


def _wait(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def test_official_client_receives_pings_invocations_reconnects_and_closes(server, node_client):
    hub = server.hub
    connected = node_client.expect("connected")
    assert connected["state"] == "Connected" and connected["connectionId"]
    assert hub.clients(HUB) == 1 and hub.stats.negotiations == 1

    messages = [message_for_event(PREDICTION), message_for_event(BAR), message_for_event(CHANGE),
                message_for_event(PRICE)]
    hub.publish(HUB, messages)
    received = [node_client.expect("message") for _ in messages]
    assert [(m["target"], m["args"]) for m in received] == [
        ("prediction", [to_dict(PREDICTION)]), ("bar", [to_dict(BAR)]),
        ("modelChanged", [to_dict(CHANGE)]), ("latestPrice", [to_dict(PRICE)]),
    ]
    hub.publish("another-hub", [message_for_event(BAR)])  # other hubs' clients only

    # The client times the server out after 1.5 s of silence: only the hub's pings keep it connected.
    node_client.send("idle 2500")
    assert node_client.expect("idle-done")["state"] == "Connected"
    assert hub.stats.pings_sent >= 5 and hub.stats.pings_received >= 5  # both sides keep alive

    node_client.send("invoke")
    assert "serverless" in node_client.expect("invoke-error")["error"]

    hub.close_clients(HUB, error="hub restarting", allow_reconnect=True)
    assert "hub restarting" in (node_client.expect("reconnecting")["error"] or "")
    assert node_client.expect("reconnected")["state"] == "Connected"
    assert hub.stats.negotiations == 2  # reconnecting negotiates again through /api/negotiate
    _wait(lambda: hub.clients(HUB) == 1)
    hub.publish(HUB, [message_for_event(PREDICTION)])
    assert node_client.expect("message")["args"] == [to_dict(PREDICTION)]
    assert node_client.events.empty()  # nothing from another-hub arrived

    hub.close_clients(HUB, error="replay over", allow_reconnect=False)
    closed = node_client.expect("closed")
    assert "replay over" in closed["error"] and closed["state"] == "Disconnected"
    assert node_client.proc.wait(5) == 0
    _wait(lambda: hub.clients(HUB) == 0)


def _negotiate(server, token: str | None) -> tuple[int, dict]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    req = urllib.request.Request(f"{server.url}/client/negotiate?hub={HUB}&negotiateVersion=1", data=b"",
                                 headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _connect(server):
    """Negotiate via the app's negotiate function; return the WebSocket URL and token of one connection."""
    req = urllib.request.Request(f"{server.url}/api/negotiate?negotiateVersion=1", data=b"", method="POST")
    with urllib.request.urlopen(req, timeout=5) as r:
        info = json.loads(r.read())
    assert info["url"] == f"{server.url}/client/?hub={HUB}"
    status, body = _negotiate(server, info["accessToken"])
    assert status == 200
    ws_url = info["url"].replace("http://", "ws://") + f"&id={body['connectionToken']}"
    return ws_url, info["accessToken"], body


def _records(ws, timeout: float = 3.0) -> list[dict]:
    text = ws.recv(timeout=timeout)
    assert text.endswith(RECORD_SEPARATOR)
    return [json.loads(r) for r in text.split(RECORD_SEPARATOR) if r]


def test_negotiate_requires_a_valid_token_and_offers_websockets(server):
    status, body = _negotiate(server, None)
    assert status == 401 and "token" in body["error"]
    status, body = _negotiate(server, "e30.e30.AAAA")
    assert status == 401 and "signature" in body["error"]
    _, token, body = _connect(server)
    assert body["negotiateVersion"] == 1 and body["connectionId"] and body["connectionToken"]
    assert body["availableTransports"] == [{"transport": "WebSockets", "transferFormats": ["Text", "Binary"]}]
    with pytest.raises(Exception, match="404"):  # an id that was never negotiated
        ws_client.connect(f"ws://127.0.0.1:{server.port}/client/?hub={HUB}&id=nope&access_token={token}")


def test_handshake_records_pings_and_refused_invocations_on_the_wire(server):
    ws_url, token, _ = _connect(server)
    with ws_client.connect(ws_url + f"&access_token={token}") as ws:
        ws.send(json.dumps({"protocol": "json", "version": 1}) + RECORD_SEPARATOR)
        assert ws.recv(timeout=3) == "{}" + RECORD_SEPARATOR
        assert _records(ws, 2) == [{"type": 6}]  # keep-alive ping
        first = json.dumps({"type": 1, "invocationId": "1", "target": "join", "arguments": []})
        second = json.dumps({"type": 1, "invocationId": "2", "target": "leave", "arguments": []})
        ping = json.dumps({"type": 6})
        ws.send(first[:10])  # one record split over two frames ...
        ws.send(first[10:] + RECORD_SEPARATOR + ping + RECORD_SEPARATOR + second + RECORD_SEPARATOR)  # ... then three
        completions = []
        while len(completions) < 2:
            completions += [r for r in _records(ws) if r["type"] == 3]
        assert [c["invocationId"] for c in completions] == ["1", "2"]
        assert all("serverless" in c["error"] for c in completions)
        ws.send(json.dumps({"type": 7}) + RECORD_SEPARATOR)  # client close
        _wait(lambda: server.hub.clients(HUB) == 0)


def test_handshake_with_another_protocol_is_refused(server):
    ws_url, token, _ = _connect(server)
    with ws_client.connect(ws_url + f"&access_token={token}") as ws:
        ws.send(json.dumps({"protocol": "messagepack", "version": 1}) + RECORD_SEPARATOR)
        answer = json.loads(ws.recv(timeout=3).rstrip(RECORD_SEPARATOR))
        assert answer == {"error": "Requested protocol 'messagepack' is not available."}
    assert server.hub.stats.handshakes_failed == 1 and server.hub.clients() == 0


def test_a_silent_client_is_closed_with_an_error():
    with _server(ping_interval_s=10.0, client_timeout_s=0.8) as srv:
        ws_url, token, _ = _connect(srv)
        with ws_client.connect(ws_url + f"&access_token={token}") as ws:
            ws.send(json.dumps({"protocol": "json", "version": 1}) + RECORD_SEPARATOR)
            assert ws.recv(timeout=3) == "{}" + RECORD_SEPARATOR
            [close] = _records(ws, 3)
            assert close["type"] == 7 and "timeout" in close["error"].lower()


# -- the Python signalrcore client --------------------------------------------------------------


def _signalrcore_client(url: str, options: dict | None = None):
    """A signalrcore 1.0.2 connection to ``url`` with the JSON protocol, recording what it receives."""
    from signalrcore.hub_connection_builder import HubConnectionBuilder
    from signalrcore.types import HubProtocolEncoding

    received: queue.Queue = queue.Queue()
    opened = threading.Event()
    connection = HubConnectionBuilder().with_url(url, options=options).with_hub_protocol(HubProtocolEncoding.text).build()
    for target in ("prediction", "bar", "modelChanged", "latestPrice"):
        connection.on(target, lambda args, target=target: received.put((target, args)))
    connection.on_open(opened.set)
    return connection, opened, received


@pytest.mark.parametrize("route", ["app negotiate, no second negotiate", "hub negotiate, handshake version 0"])
def test_signalrcore_client_receives_every_broadcast_target(server, route):
    """signalrcore follows the app's ``url``/``accessToken`` answer straight to the WebSocket (no ``id``),
    or, pointed at the hub with a token, negotiates there (version 0) and sends handshake ``version: 0``."""
    if route.startswith("app"):
        connection, opened, received = _signalrcore_client(f"{server.url}/api")
    else:
        info = server.hub.connection_info(HUB, server.url)
        connection, opened, received = _signalrcore_client(
            info["url"], {"access_token_factory": lambda: info["accessToken"]})
    try:
        assert connection.start() is not False
        assert opened.wait(5), "signalrcore did not complete the handshake"
        _wait(lambda: server.hub.clients(HUB) == 1)
        assert server.hub.stats.negotiations == (0 if route.startswith("app") else 1)
        assert server.hub.stats.handshakes_failed == 0
        messages = [message_for_event(PREDICTION), message_for_event(BAR), message_for_event(CHANGE),
                    message_for_event(PRICE)]
        server.hub.publish(HUB, messages)
        got = [received.get(timeout=5) for _ in messages]
        assert got == [("prediction", [to_dict(PREDICTION)]), ("bar", [to_dict(BAR)]),
                       ("modelChanged", [to_dict(CHANGE)]), ("latestPrice", [to_dict(PRICE)])]
    finally:
        connection.stop()
    _wait(lambda: server.hub.clients(HUB) == 0)


@pytest.mark.parametrize(("version", "answer"), [
    (0, {}), (1, {}), (2, {}),
    (3, {"error": "The server does not support version 3 of the 'json' protocol."}),
    ("1", {"error": "The server does not support version 1 of the 'json' protocol."}),
    (None, {"error": "The server does not support version None of the 'json' protocol."}),
])
def test_handshake_versions_on_a_connection_without_id(server, version, answer):
    """A WebSocket without ``id`` is a new connection; json versions 0 to 2 are accepted as ASP.NET Core does."""
    info = server.hub.connection_info(HUB, server.url)
    url = info["url"].replace("http://", "ws://")
    with ws_client.connect(url, additional_headers={"Authorization": f"Bearer {info['accessToken']}"}) as ws:
        ws.send(json.dumps({"protocol": "json", "version": version}) + RECORD_SEPARATOR)
        assert json.loads(ws.recv(timeout=3).rstrip(RECORD_SEPARATOR)) == answer
    assert server.hub.stats.handshakes_failed == (0 if answer == {} else 1)
    with pytest.raises(Exception, match="401"):  # still no connection without a token
        ws_client.connect(url)
