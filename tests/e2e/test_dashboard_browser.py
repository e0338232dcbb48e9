"""End to end in a real browser: the dashboard during a replay through the whole local stack.

``local_stack.run.run`` replays recorded Binance ETHUSDT trades (an 11-minute file at 30x,
so a minute closes every 2 s) through Tansu, ``predict`` and ``archive`` into this test's
MariaDB database, and serves the dashboard, the HTTP API and the local SignalR hub. Debian's
Chromium, driven by Playwright, opens the page while the replay runs; the test waits until
forecast points are drawn from live SignalR messages, saves ``reports/dashboard.png``, and
fails when no forecast point appears.
"""

from __future__ import annotations

import io
import queue
import threading
import uuid
from pathlib import Path

import pytest

from local_stack.http_host import WebOptions
from local_stack.run import DEFAULT_HISTORY, run

REPO = Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared" / "data"
ETH_CSV = DATA / "binance_spot_ETHUSDT_trades_20240808T2354Z-20240809T0005Z.csv.gz"
CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOT = REPO / "reports" / "dashboard.png"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's Chromium (/usr/bin/chromium) is not installed; "
                                                     "`make test` installs it (apt-get install chromium)"),
]


def _number(page, selector: str, attribute: str) -> int:
    return int(page.locator(selector).get_attribute(attribute) or 0)


def _wait_until(page, condition, timeout_s: float) -> None:
    for _ in range(int(timeout_s * 4)):
        if condition():
            return
        page.wait_for_timeout(250)
    raise AssertionError(
        f"no forecast point rendered within {timeout_s}s (data-forecast-count="
        f"{_number(page, '#chart', 'data-forecast-count')}, live messages {_number(page, 'body', 'data-live-messages')})"
    )


def test_dashboard_renders_live_forecasts_during_a_replay(kafka_broker, azurite, mysql_url, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    tag = uuid.uuid4().hex[:8]
    env = {
        "TICKS_HUB_NAME": f"ticks-{tag}", "PREDICTIONS_HUB_NAME": f"predictions-{tag}",
        "DEADLETTER_HUB_NAME": f"deadletter-{tag}", "PREDICT_CONSUMER_GROUP": f"predict-{tag}",
        "ARCHIVE_CONSUMER_GROUP": f"archive-{tag}", "MODELS_CONTAINER": f"models-{tag}",
        "MYSQL_URL": mysql_url, "SIGNALR_HUB_NAME": f"tickcast-{tag}", "PRICE_UPDATE_MS": "500",
    }
    urls: queue.Queue = queue.Queue()
    done = threading.Event()
    web = WebOptions(port=0, serve_until=done, on_ready=urls.put, ping_interval_s=5.0)
    out = io.StringIO()
    result: dict = {}

    def replay() -> None:
        try:
            result["summary"] = run([ETH_CSV], DEFAULT_HISTORY, speed=30, workdir=tmp_path, env=env, out=out,
                                    broker=kafka_broker, azurite=azurite, timeout_s=120, web=web)
        except BaseException as exc:  # reported by the test thread
            result["error"] = exc
            urls.put(None)

    runner = threading.Thread(target=replay, daemon=True)
    runner.start()
    console: list[str] = []
    try:
        url = urls.get(timeout=60)
        assert url is not None, f"the local stack failed to start: {result.get('error')}\n{out.getvalue()}"
        with sync_playwright() as p:
            browser = p.chromium.launch_persistent_context(
                str(tmp_path / "chromium-profile"), executable_path=str(CHROMIUM), headless=True,
                args=CHROMIUM_ARGS, viewport={"width": 1280, "height": 1000},
            )
            try:
                page = browser.new_page()
                page.on("console", lambda m: console.append(f"{m.type}: {m.text}") if m.type == "error" else None)
                page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
                page.goto(url + "#binance:ETHUSDT")
                # Read attributes through locators: the page's CSP forbids eval, which wait_for_function needs.
                expect(page.locator("body")).to_have_attribute("data-connection", "connected", timeout=30_000)
                # Fails here when no forecast point is drawn; several arrive live over SignalR during the replay.
                _wait_until(page, lambda: _number(page, "#chart", "data-forecast-count") >= 6
                            and _number(page, "body", "data-live-messages") > 0, timeout_s=45)
                page.wait_for_timeout(500)  # let the chart paint the latest update
                SCREENSHOT.parent.mkdir(exist_ok=True)
                page.screenshot(path=str(SCREENSHOT), full_page=True)
                chart = page.locator("#chart")
                forecasts = int(chart.get_attribute("data-forecast-count"))
                assert forecasts >= 6 and page.locator("#chart canvas").count() > 0
                assert page.locator("body").get_attribute("data-symbol") == "binance:ETHUSDT"
                assert page.locator("#forecast").inner_text().replace(",", "").replace(".", "").isdigit()
                assert page.locator("#model-version").inner_text() not in ("", "–")
                assert page.locator("#history tbody tr").count() >= min(forecasts, 12)
                live = int(page.locator("body").get_attribute("data-live-messages"))
            finally:
                browser.close()
    finally:
        done.set()
        runner.join(60)
    assert not runner.is_alive(), "run() did not return after serve_until was set"
    assert "error" not in result, f"{result.get('error')!r}\n{out.getvalue()}"
    assert live > forecasts / 2  # bars, predictions and prices came over SignalR
    assert result["summary"]["symbols"]["binance:ETHUSDT"]["predictions"] >= forecasts
    assert "dashboard: http://127.0.0.1:" in out.getvalue()
    assert console == [], console
    assert SCREENSHOT.stat().st_size > 10_000
