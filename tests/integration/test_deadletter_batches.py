"""A batch that still fails on its last try is dead-lettered whole, never lost, never retried forever.

Against real Tansu, with ``archive`` (the app's own function, its own exponential retry policy)
driven by the local Event Hub driver, which passes ``context`` as the Python worker does:

* "Azure Functions error handling and retries"
  (https://learn.microsoft.com/azure/azure-functions/functions-bindings-error-pages), sections
  "Retry policies" (Python: a function that declares ``context`` reads
  ``context.retry_context.retry_count`` and ``max_retry_count``; the last try is the one where
  they are equal) and "Max retry counts" (an execution is retried at most ``max_retry_count``
  times);
* Azure/Azure-Functions#947: the Event Hubs trigger checkpoints a batch whether its invocation
  succeeded or not, so only dead-lettering on the last try keeps a failing batch.

The retry delays are shortened (``RetryPolicy.delays``); the count is the function's own.
"""

from __future__ import annotations

import gc
import itertools
import json
import socket

import pytest
from confluent_kafka import Producer

import function_app
from functions import archive as archive_module
from functions import reset_services
from local_stack.functions_host import EventHubFunctionDriver, app_functions
from local_stack.hostjson import RetryPolicy
from local_stack.tansu import consumer_config, producer_config
from shared.settings import SETTINGS
from shared.storage.history import HistoryStore
from tests.integration.test_kafka import read_topic

BAR = {"v": 1, "type": "bar", "exchange": "kraken", "symbol": "BTC/USD", "open_time_ms": 1561939200000,
       "open": 10749.4, "high": 10760.0, "low": 10740.0, "close": 10751.2, "volume": 3.5, "trade_count": 12}


def closed_port() -> int:
    """A local TCP port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def archive_driver(monkeypatch, kafka_broker, topic_factory, tmp_path):
    """``start(mysql_url) -> (driver, send, dead_hub)``: ``archive`` on fresh topics, fast retries."""
    monkeypatch.setattr(RetryPolicy, "delays", lambda self, rng=None: itertools.repeat(0.05))
    drivers: list[EventHubFunctionDriver] = []
    producers: list[Producer] = []

    def start(mysql_url: str):
        predictions_hub, dead_hub = topic_factory(1, "predictions"), topic_factory(1, "dead")
        settings = {
            **{name: s.default for name, s in SETTINGS.items() if s.default},
            "PREDICTIONS_HUB_NAME": predictions_hub, "DEADLETTER_HUB_NAME": dead_hub,
            "ARCHIVE_CONSUMER_GROUP": f"archive-{predictions_hub}", "MYSQL_URL": mysql_url,
            "HISTORY_SQLITE_PATH": str(tmp_path / "unused.sqlite3"),
        }
        for k, v in settings.items():
            monkeypatch.setenv(k, v)
        reset_services()
        bootstrap = kafka_broker.bootstrap_servers
        fns = {f.get_function_name(): f for f in app_functions(function_app.app)}
        driver = EventHubFunctionDriver(fns["archive"], settings,
                                        consumer_config(bootstrap, "unused", session_timeout_ms=2000),
                                        producer_config(bootstrap), poll_s=0.05)
        drivers.append(driver)
        producer = Producer(producer_config(bootstrap, **{"linger.ms": 0}))
        producers.append(producer)

        def send(bodies: list[dict]) -> None:
            for b in bodies:
                producer.produce(predictions_hub, value=json.dumps(b).encode(), key=b"BTC/USD")
            producer.flush(10)
            for _ in range(400):
                driver.run_once()
                if driver.totals.consumed >= len(bodies):
                    return
            raise AssertionError(f"only {driver.totals.consumed} of {len(bodies)} events checkpointed")

        return driver, send, dead_hub

    yield start
    for driver in drivers:
        driver.close()
    drivers.clear()
    producers.clear()
    gc.collect()  # drop the Kafka clients before the session's broker stops
    reset_services()


def test_archive_dead_letters_a_batch_that_fails_every_try_and_loses_nothing(archive_driver, kafka_broker):
    """MySQL is unreachable (a closed port): every try of the batch fails. The policy's 5 retries
    are made (6 invocations), and the last try sets every event of the batch on the dead-letter
    hub with its position and the reason, then returns: ``lost`` stays 0, the batch is checkpointed."""
    driver, send, dead_hub = archive_driver(f"mysql+pymysql://root@127.0.0.1:{closed_port()}/tickcast")
    bodies = [dict(BAR, open_time_ms=BAR["open_time_ms"] + 60_000 * i) for i in range(3)]
    send(bodies)
    retries = RetryPolicy.of(archive_module.archive.build()).max_retry_count
    assert retries == 5
    assert driver.totals.attempts == retries + 1
    assert driver.totals.lost == 0 and driver.totals.consumed == 3
    letters = [json.loads(m.value()) for m in read_topic(kafka_broker.bootstrap_servers, dead_hub, 3)]
    assert len(letters) == 3
    assert [json.loads(x["payload"]) for x in letters] == bodies
    assert all(x["type"] == "deadletter" and x["source"] == "predictions" for x in letters)
    assert [x["position"].split(" ")[0] for x in letters] == ["predictions[0]", "predictions[1]", "predictions[2]"]
    assert all(f"seq={i}" in x["position"] for i, x in enumerate(letters))
    assert all(x["reason"].startswith(f"batch failed after {retries + 1} tries: ") for x in letters)
    assert all("OperationalError" in x["reason"] for x in letters)


def test_a_batch_that_succeeds_on_a_retry_dead_letters_nothing(archive_driver, kafka_broker, mysql_url, monkeypatch):
    """The first try fails (the service cannot be built once), the first retry succeeds: the batch
    is archived, nothing reaches the dead-letter hub and nothing is lost."""
    driver, send, dead_hub = archive_driver(mysql_url)
    real_get, calls = archive_module.service.get, []

    def flaky_get():
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("database restarting")
        return real_get()

    monkeypatch.setattr(archive_module.service, "get", flaky_get)
    send([BAR])
    assert driver.totals.attempts == 2 and driver.totals.lost == 0
    assert driver.totals.produced.get(dead_hub, 0) == 0
    assert read_topic(kafka_broker.bootstrap_servers, dead_hub, 0, timeout=1.0) == []
    with HistoryStore.from_url(mysql_url) as store:
        assert store.count_bars() == 1
