"""The live ingestor says what it is doing when it cannot connect (issue 17, item 2).

Nothing listens on the exchange's port (a free loopback port: a refused connect, as with no
network the first attempt fails at once) and nothing on the Kafka port. Checked: each failed
connect is a WARNING log line with its reason, the attempt number and the backoff before the
next one, and is counted; ``/readyz`` names the connection that is not ready and why; the
delays grow within the backoff bound; librdkafka's own log lines arrive through Python logging as
JSON (confluent-kafka's ``logger`` setting), never as raw ``%3|...|FAIL|rdkafka`` lines.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from local_stack.tansu import free_port
from tests.integration.test_ingestor_live import health, wait_for

REPO = Path(__file__).resolve().parents[2]


def _readyz(port: int) -> tuple[int, dict]:
    return health(port, "/readyz")


def test_refused_connects_are_logged_counted_and_named_by_readyz(tmp_path):
    ws_port, kafka_port, health_port = free_port(), free_port(), free_port()
    env = {
        **os.environ,
        "INGESTOR_PUBLISHER": "kafka",
        "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{kafka_port}",
        "INGESTOR_SUBSCRIPTIONS": "binance:BTCUSDT",
        "INGESTOR_SOURCE_URLS": f"binance=ws://127.0.0.1:{ws_port}/stream",
        "INGESTOR_HEALTH_PORT": str(health_port),
        "INGESTOR_BACKOFF_INITIAL_SECONDS": "0.2",
        "INGESTOR_BACKOFF_MAX_SECONDS": "1.6",
        "INGESTOR_STATS_SECONDS": "0",
        "INGESTOR_SHUTDOWN_SECONDS": "3",
    }
    stderr_path = tmp_path / "stderr.jsonl"
    with open(stderr_path, "w") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "ingestor", "live"], cwd=tmp_path, env=env,
                                stdout=subprocess.PIPE, stderr=stderr, text=True)
        try:
            status, body = wait_for(lambda: _try_readyz(health_port), 20, "the health endpoint")
            # within seconds: several failed attempts, each logged
            wait_for(lambda: stderr_path.read_text().count("connect failed") >= 4, 15, "four failed connects")
            status, body = _readyz(health_port)
            proc.send_signal(signal.SIGTERM)
            out, _ = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    lines = stderr_path.read_text().splitlines()
    entries = [json.loads(line) for line in lines]  # every line is JSON: librdkafka's included
    assert not [line for line in lines if line.startswith("%")]

    failures = [e for e in entries if e["message"].startswith("connect failed")]
    assert all(e["level"] == "WARNING" and e["connection"] == "binance:BTCUSDT" for e in failures)
    assert all("ConnectionRefusedError" in e["error"] for e in failures), failures[0]
    assert [e["attempt"] for e in failures] == list(range(1, len(failures) + 1))
    delays = [e["retry_in_s"] for e in failures]
    assert all(0.1 <= d <= 1.6 for d in delays) and max(delays) > min(delays), delays  # growing, capped
    print("\nconnect failure lines:", *[e["message"] for e in failures[:4]], sep="\n  ")

    kafka_lines = [e for e in entries if e["logger"] == "ingestor.librdkafka"]
    assert kafka_lines and any("FAIL" in e["message"] and str(kafka_port) in e["message"] for e in kafka_lines)

    assert status == 503 and not body["ready"] and body["alive"]
    check = body["checks"]["connection binance:BTCUSDT"]
    assert not check["ok"] and check["reason"].startswith("not connected: ConnectionRefusedError")
    assert body["reason"].startswith("connection binance:BTCUSDT: not connected: ConnectionRefusedError")
    assert "failed attempts in a row; next in" in body["reason"]
    print("/readyz reason:", body["reason"])

    result = json.loads(out.strip().splitlines()[-1])
    assert proc.returncode == 0
    assert result["counters"]["connect_failures"] >= len(failures) >= 4
    assert result["counters"]["connects"] == 0
    assert result["connections"]["binance:BTCUSDT"]["connect_failures"] == result["counters"]["connect_failures"]


def _try_readyz(port: int):
    try:
        return _readyz(port)
    except OSError:
        return None


def test_a_server_that_comes_up_is_connected_after_the_failures():
    """Failures, then the exchange comes up: the connection is made and the failure streak ends."""
    import asyncio

    from ingestor.config import IngestorConfig
    from ingestor.live import run_live
    from tests.integration.test_ingestor_wsserver import ReplayServer, load_trades

    port = free_port()
    config = IngestorConfig.from_env({
        "INGESTOR_PUBLISHER": "kafka",
        "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
        "INGESTOR_SUBSCRIPTIONS": "binance:BTCUSDT",
        "INGESTOR_SOURCE_URLS": f"binance=ws://127.0.0.1:{port}/stream",
        "INGESTOR_HEALTH_PORT": "0",
        "INGESTOR_BACKOFF_INITIAL_SECONDS": "0.1",
        "INGESTOR_BACKOFF_MAX_SECONDS": "0.4",
        "INGESTOR_STATS_SECONDS": "0",
        "INGESTOR_SHUTDOWN_SECONDS": "2",
    }).replace(kafka_config={"message.timeout.ms": 500})
    server = ReplayServer(load_trades(20, ), [("send", 10), ("end",)], port=port)

    async def main():
        stop = asyncio.Event()
        holder = []
        task = asyncio.create_task(run_live(config, stop=stop, handle_signals=False, started=holder.append))
        deadline = time.monotonic() + 20
        while not (holder and holder[0].metrics.counters["connect_failures"] >= 3):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        stats = holder[0].metrics.connections["binance:BTCUSDT"]
        assert not stats.connected and "ConnectionRefusedError" in stats.last_error
        await asyncio.to_thread(server.start)
        while not (stats.connected and holder[0].metrics.counters["received"] >= 10):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        failures_in_a_row = stats.failures_in_a_row
        stop.set()
        return await task, failures_in_a_row

    try:
        snapshot, failures_in_a_row = asyncio.run(main())
    finally:
        server.stop()
    counters = snapshot["counters"]
    assert counters["connect_failures"] >= 3 and counters["connects"] == 1 and failures_in_a_row == 0
    assert counters["received"] == 10
