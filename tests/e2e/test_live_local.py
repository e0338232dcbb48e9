"""``python -m local_stack --live`` end to end, against a local exchange server (issue 17, item 1).

The exchange is :class:`tests.integration.test_ingestor_wsserver.ReplayServer`, which speaks
Binance's combined-stream protocol on loopback and sends recorded BTCUSDT and ETHUSDT trade
messages verbatim. The local stack runs as the user runs it (a child process, its own Tansu and
Azurite, the dashboard on a free port), with ``--url`` pointing the live ingestor at that server.

At first nothing listens on the server's port (as with no network): the run must say so within
seconds and keep retrying with a visible, growing backoff. Then the server comes up: the
ingestor connects, every trade flows through predict to the printed predictions (one per closed
minute that had a previous bar, per symbol), the dashboard's HTTP API lists both symbols, and
Ctrl-C (SIGINT) stops it all: the ingestor publishes what it received, the pipeline drains, the
summary is printed, exit status 0.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from local_stack.tansu import free_port
from tests.integration.test_ingestor_wsserver import ReplayServer, load_trades

REPO = Path(__file__).resolve().parents[2]
PER_SYMBOL = 6_000  # BTCUSDT: 5 minutes of 2024-08-08 23:54..; ETHUSDT: 6 minutes
pytestmark = pytest.mark.slow


class Output:
    """Collects a child's stdout lines in a thread; ``wait_for`` blocks until a line matches."""

    def __init__(self, stream) -> None:
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream) -> None:
        for line in stream:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()

    def wait_for(self, pattern: str, timeout: float, count: int = 1) -> list[str]:
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [line for line in self.lines if regex.search(line)]
                if len(found) >= count:
                    return found
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    tail = "\n".join(self.lines[-30:])
                    raise AssertionError(f"no {count} line(s) matching {pattern!r} within {timeout} s; output:\n{tail}")
                self._cond.wait(remaining)

    def join(self) -> None:
        self._thread.join(10)


def _expected_predictions(trades) -> dict[str, int]:
    minutes: dict[str, set[int]] = {}
    for t in trades:
        minutes.setdefault(t.symbol, set()).add(json.loads(t.text)["data"]["T"] // 60_000)
    # bars close when a later minute starts (the last stays open); the first closed bar has no previous bar
    return {symbol: len(m) - 2 for symbol, m in minutes.items()}


def test_live_local_stack_against_a_local_exchange(tmp_path):
    trades = load_trades(PER_SYMBOL)
    expected = _expected_predictions(trades)
    assert expected["BTCUSDT"] >= 3 and expected["ETHUSDT"] >= 3
    port = free_port()
    server = ReplayServer(trades, [("send", len(trades)), ("end",)], port=port)
    env = {**os.environ, "INGESTOR_BACKOFF_INITIAL_SECONDS": "0.5", "INGESTOR_BACKOFF_MAX_SECONDS": "4",
           "RETRAIN_EVERY_S": "600"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "local_stack", "--live", "binance:BTCUSDT,ETHUSDT",
         "--url", f"binance=ws://127.0.0.1:{port}/stream", "--web-port", "0", "--workdir", str(tmp_path)],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    out = Output(proc.stdout)
    try:
        # nothing listens yet: it says so within seconds, and keeps retrying with a growing backoff
        out.wait_for(r"ingestor: streaming live trades of binance:BTCUSDT,ETHUSDT", 120)
        first = time.monotonic()
        failures = out.wait_for(r"ingestor: binance:BTCUSDT,ETHUSDT: connect failed: ConnectionRefusedError", 30,
                                count=4)
        assert time.monotonic() - first < 30
        delays = [float(re.search(r"retrying in ([\d.]+) s", f).group(1)) for f in failures]
        attempts = [int(re.search(r"attempt (\d+)", f).group(1)) for f in failures]
        assert attempts[:4] == [1, 2, 3, 4] and max(delays) > min(delays), failures
        # the exchange comes up: connected, and every trade becomes ticks, bars and predictions
        server.start()
        out.wait_for(r"ingestor: binance:BTCUSDT,ETHUSDT: connected", 30)
        total = sum(expected.values())
        out.wait_for(r"^\d{4}-\d\d-\d\d \d\d:\d\dZ +binance (BTCUSDT|ETHUSDT) +last", 120, count=total)
        dashboard = out.wait_for(r"dashboard: http://127\.0\.0\.1:\d+/api/dashboard/", 1)[0]
        base = re.search(r"(http://127\.0\.0\.1:\d+)/api/dashboard/", dashboard).group(1)
        with urllib.request.urlopen(f"{base}/api/symbols", timeout=10) as r:
            symbols = json.loads(r.read())
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        proc.wait(90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        server.stop()
        out.join()
    text = "\n".join(out.lines)
    print("\n".join(line for line in out.lines if not re.match(r"^\d{4}-", line))[-6000:])
    assert proc.returncode == 0, text[-3000:]
    assert "Traceback" not in text
    # the listing, like func start
    assert re.search(r"\bFunctions:\n.*predict: eventHubTrigger \(hub ticks, consumer group predict\)", text)
    assert re.search(r"get_bars: \[GET\] http://127\.0\.0\.1:\d+/api/bars/\{symbol\}", text)
    # what the server sent was published once each, and drained through predict
    sent = sum(len(ids) for ids in server.unique_sent().values())
    assert sent == len(trades)
    stopped = re.search(r"live ingestor stopped: (\d+) trades received, (\d+) ticks published, (\d+) connect failures",
                        text)
    assert stopped and int(stopped.group(1)) == int(stopped.group(2)) == sent and int(stopped.group(3)) >= 4
    assert f"predict consumed {sent}," in text
    for symbol, n in expected.items():
        printed = [line for line in out.lines if re.match(rf"^\d{{4}}-.*binance {symbol} +last", line)]
        assert len(printed) == n, (symbol, printed)
        row = re.search(rf"^\s+binance {symbol}\s+(\d+)", text, re.M)
        assert row and int(row.group(1)) == n
    assert "BTCUSDT" in json.dumps(symbols) and "ETHUSDT" in json.dumps(symbols)  # served by the HTTP API
    assert "stopped every process started" in text
    assert not re.search(r"^%\d\|", text, re.M)  # no raw librdkafka lines
