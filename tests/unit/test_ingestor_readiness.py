"""/readyz names what is not ready and why (issue 17, item 2), and ``make run``'s listing of what it
drives (item 8), without a network: the readiness rules on connection gauges, and the listing built
from the function app's own declarations."""

from __future__ import annotations

import re

from ingestor.health import not_ready_reason, readiness
from ingestor.metrics import COUNTERS, Metrics


def _metrics() -> Metrics:
    m = Metrics()
    m.connection("binance:BTCUSDT", "binance", ("BTCUSDT",))
    m.connection("kraken:BTC/USD", "kraken", ("BTC/USD",))
    return m


def test_not_ready_names_each_connection_and_why():
    m = _metrics()
    ready, checks = readiness(m, stale_seconds=30, publish_lag_s=0.0)
    assert not ready and not_ready_reason(checks) == (
        "connection binance:BTCUSDT: not connected yet (connecting); "
        "connection kraken:BTC/USD: not connected yet (connecting)"
    )
    b = m.connections["binance:BTCUSDT"]
    b.connect_failures = b.failures_in_a_row = 2
    b.last_error = "OSError: [Errno 101] Network is unreachable"
    k = m.connections["kraken:BTC/USD"]
    k.connected, k.last_message_monotonic = True, None
    ready, checks = readiness(m, stale_seconds=30, publish_lag_s=45.0)
    reason = not_ready_reason(checks)
    assert not ready
    assert "connection binance:BTCUSDT: not connected: OSError: [Errno 101] Network is unreachable" \
           " (2 failed attempts in a row)" in reason
    assert "connection kraken:BTC/USD: connected, no message received yet" in reason
    assert "publish lag: the oldest unpublished tick is 45.0 s old (limit INGESTOR_STALE_SECONDS=30)" in reason
    assert checks["connection binance:BTCUSDT"]["last_error"] == b.last_error


def test_ready_when_connected_fresh_and_published():
    import time

    m = _metrics()
    for c in m.connections.values():
        c.connected, c.last_message_monotonic = True, time.monotonic()
    ready, checks = readiness(m, stale_seconds=30, publish_lag_s=1.0)
    assert ready and not_ready_reason(checks) == "ok"
    assert all(c["reason"] == "ok" for c in checks.values())


def test_connect_failures_is_a_counter_in_the_snapshot():
    m = _metrics()
    m.inc("connect_failures")
    snap = m.snapshot()
    assert "connect_failures" in COUNTERS and snap["counters"]["connect_failures"] == 1
    assert snap["connections"]["binance:BTCUSDT"]["connect_failures"] == 0


def test_listing_names_every_function_with_its_trigger_and_http_urls():
    import function_app
    from local_stack.functions_host import app_functions
    from local_stack.listing import function_listing
    from local_stack.run import LIFECYCLE_ENV
    from shared.settings import LOCAL, SETTINGS

    settings = {**{n: s.default for n, s in SETTINGS.items() if s.default and s.used_by != (LOCAL,)},
                "TICKS_HUB_NAME": "ticks", "PREDICTIONS_HUB_NAME": "predictions", **LIFECYCLE_ENV}
    functions = app_functions(function_app.app)

    class Served:  # what LocalWebServer.http.functions holds: name, methods, served paths
        def __init__(self, name, paths):
            self.name, self.paths = name, paths

    http = [Served(fn.get_function_name(), [f"/api/{fn.get_trigger().get_dict_repr().get('route')}"
                                            .replace("{*path}", "{path:.*}")])
            for fn in functions if fn.get_trigger().get_dict_repr()["type"] == "httpTrigger"]
    lines = function_listing(functions, settings, base_url="http://127.0.0.1:7071", http_functions=http,
                             timer_every_s=15)
    assert lines[0] == "Functions:"
    names = [re.match(r"\s+(\w+): ", line).group(1) for line in lines[1:]]
    assert sorted(names) == sorted(fn.get_function_name() for fn in functions)
    text = "\n".join(lines)
    assert "    predict: eventHubTrigger (hub ticks, consumer group predict)" in text
    assert re.search(r"    retrain: timerTrigger \(schedule .+; locally every 15 s\)", text)
    assert "    promote_model: blobTrigger (path models/{key}/candidates/{version}/metadata.json;" in text
    assert "    get_bars: [GET] http://127.0.0.1:7071/api/bars/{symbol}" in text
    assert "    dashboard: [GET] http://127.0.0.1:7071/api/dashboard/{*path}" in text
    unserved = function_listing(functions, settings)
    assert "    get_bars: [GET] /api/bars/{symbol} (not served)" in unserved
