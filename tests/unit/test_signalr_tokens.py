"""The local SignalR hub's access tokens (PyJWT, HS256): signature, audience, hub and expiry are checked."""

from __future__ import annotations

import time

import jwt
from aiohttp.test_utils import make_mocked_request

from local_stack.signalr_hub import SignalRHubServer

BASE = "http://127.0.0.1:7071"


def _request(host: str = "127.0.0.1:7071", hub: str = "tickcast"):
    return make_mocked_request("POST", f"/client/negotiate?hub={hub}", headers={"Host": host})


def test_a_token_of_connection_info_is_accepted_for_its_hub_and_url():
    hub = SignalRHubServer()
    info = hub.connection_info("tickcast", BASE)
    assert info["url"] == f"{BASE}/client/?hub=tickcast"
    claims = jwt.decode(info["accessToken"], options={"verify_signature": False})
    assert jwt.get_unverified_header(info["accessToken"])["alg"] == "HS256"
    assert claims["aud"] == info["url"] and claims["hub"] == "tickcast"
    assert claims["exp"] - claims["iat"] == 3600
    assert hub._verify(info["accessToken"], _request(), "tickcast") is None


def test_wrong_signature_audience_hub_and_expiry_are_refused():
    hub = SignalRHubServer(token_lifetime_s=3600)
    token = hub.connection_info("tickcast", BASE)["accessToken"]
    assert hub._verify(None, _request(), "tickcast") == "missing access token"
    assert "signature" in SignalRHubServer()._verify(token, _request(), "tickcast")  # another hub's secret
    assert "signature" in hub._verify("e30.e30.AAAA", _request(), "tickcast")
    assert "malformed" in hub._verify("not-a-jwt", _request(), "tickcast")
    assert hub._verify(token, _request(host="localhost:9999"), "tickcast").startswith("token is not for http://localhost:9999")
    other = hub.connection_info("other", BASE)["accessToken"]
    assert hub._verify(other, _request(hub="tickcast"), "tickcast").startswith("token is not for")  # aud names the hub
    now = int(time.time())
    expired = jwt.encode({"aud": f"{BASE}/client/?hub=tickcast", "hub": "tickcast", "iat": now - 20, "exp": now - 10},
                         hub._secret, algorithm="HS256")
    assert hub._verify(expired, _request(), "tickcast") == "access token expired"
    no_hub = jwt.encode({"aud": f"{BASE}/client/?hub=tickcast", "exp": now + 60}, hub._secret, algorithm="HS256")
    assert "malformed" in hub._verify(no_hub, _request(), "tickcast")
