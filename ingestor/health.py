"""HTTP health endpoints of the Container App (aiohttp).

``GET /healthz``
    Liveness: 200 while the publish pump and every connection task are running
    (reconnecting counts as running), 503 once one of them has died -- the Container
    App then restarts the replica. The body (JSON) also carries the readiness checks
    and all counters, so one request shows the whole state.
``GET /readyz``
    Readiness: 200 when every connection is connected and its newest message is at most
    ``INGESTOR_STALE_SECONDS`` old, and the publish lag (age of the oldest tick not yet
    acknowledged) is at most that too; else 503. Same body; its ``reason`` names each
    connection (or the publish lag) that is not ready and why, e.g. ``connection
    binance:BTCUSDT: not connected: ConnectionRefusedError: ... (3 failed attempts in a row;
    next in 1.6 s)``, and each check carries its own ``reason``.

Both answer in a few microseconds from in-memory state; neither touches the network.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from ingestor.metrics import Metrics

log = logging.getLogger(__name__)

__all__ = ["HealthServer", "not_ready_reason", "readiness"]


def readiness(metrics: Metrics, *, stale_seconds: float, publish_lag_s: float) -> tuple[bool, dict[str, Any]]:
    """Evaluate readiness; returns (ready, checks by name -> {"ok": bool, "reason": str, ...}).

    Each failed check's ``reason`` says why in words, e.g. ``not connected:
    ConnectionRefusedError: ... (3 failed attempts in a row; next in 1.6 s)``.
    """
    now = time.monotonic()
    checks: dict[str, Any] = {}
    for name, conn in metrics.connections.items():
        age = conn.message_age(now)
        why = conn.not_ready_because(stale_seconds, now)
        checks[f"connection {name}"] = {
            "ok": why is None,
            "reason": why or "ok",
            "connected": conn.connected,
            "last_message_age_s": None if age is None else round(age, 3),
            "last_error": conn.last_error,
        }
    lag_ok = publish_lag_s <= stale_seconds
    checks["publish lag"] = {
        "ok": lag_ok,
        "reason": "ok" if lag_ok else (
            f"the oldest unpublished tick is {publish_lag_s:.1f} s old (limit INGESTOR_STALE_SECONDS="
            f"{stale_seconds:g}): the publisher is not delivering"
        ),
        "lag_s": round(publish_lag_s, 3),
    }
    ready = bool(metrics.connections) and all(c["ok"] for c in checks.values())
    return ready, checks


def not_ready_reason(checks: dict[str, Any]) -> str:
    """One line naming every failed check and why (``"ok"`` when none failed).

    >>> not_ready_reason({"publish lag": {"ok": True, "reason": "ok"}})
    'ok'
    >>> not_ready_reason({"connection kraken:BTC/USD": {"ok": False, "reason": "not connected yet (connecting)"}})
    'connection kraken:BTC/USD: not connected yet (connecting)'
    """
    failed = [f"{name}: {check['reason']}" for name, check in checks.items() if not check["ok"]]
    return "; ".join(failed) or "ok"


class HealthServer:
    """Serve ``/healthz`` and ``/readyz`` on ``host:port``.

    Parameters
    ----------
    metrics : Metrics
        Counters and connection gauges shown in the body.
    stale_seconds : float
        ``INGESTOR_STALE_SECONDS``.
    publish_lag : callable
        Returns the current publish lag, seconds.
    alive : callable
        Returns (alive, reason).
    port : int, default 8080
        ``INGESTOR_HEALTH_PORT``; 0 picks a free port (see :attr:`port` after :meth:`start`).
    host : str, default ``"0.0.0.0"``
        Listen address (all interfaces, as the Container App's probes need).
    """

    def __init__(
        self,
        metrics: Metrics,
        *,
        stale_seconds: float,
        publish_lag: Callable[[], float],
        alive: Callable[[], tuple[bool, str]],
        port: int = 8080,
        host: str = "0.0.0.0",
    ) -> None:
        self.metrics = metrics
        self.stale_seconds = stale_seconds
        self.publish_lag = publish_lag
        self.alive = alive
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    def state(self) -> tuple[bool, bool, dict[str, Any]]:
        """(alive, ready, JSON body)."""
        alive, reason = self.alive()
        lag = self.publish_lag()
        ready, checks = readiness(self.metrics, stale_seconds=self.stale_seconds, publish_lag_s=lag)
        if alive and not ready:
            reason = not_ready_reason(checks) if self.metrics.connections else "no subscription"
        body = {
            "alive": alive,
            "ready": ready and alive,
            "reason": reason,
            "publish_lag_s": round(lag, 3),
            "checks": checks,
            **self.metrics.snapshot(),
        }
        return alive, ready and alive, body

    async def _healthz(self, request: web.Request) -> web.Response:
        alive, _, body = self.state()
        return web.json_response(body, status=200 if alive else 503, dumps=json.dumps)

    async def _readyz(self, request: web.Request) -> web.Response:
        _, ready, body = self.state()
        return web.json_response(body, status=200 if ready else 503, dumps=json.dumps)

    async def start(self) -> int:
        """Start listening; returns the bound port."""
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        addresses = self._runner.addresses  # the bound port when 0 was asked
        if addresses:
            self.port = addresses[0][1]
        log.info("health endpoint listening", extra={"fields": {"port": self.port}})
        return self.port

    async def stop(self) -> None:
        """Stop listening."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
