"""SignalR off the critical path, against a real Kafka-compatible broker (Tansu): ``predict`` and
``broadcast`` are driven by the local Event Hub driver, and the SignalR hub fails.

An output binding's error fails the invocation and cannot be caught in code ("Azure Functions
error handling and retries", learn.microsoft.com/azure/azure-functions/functions-bindings-error-pages:
"When using output bindings, you can't handle errors that occur when accessing the remote
service"). The local driver fails ``broadcast``'s invocation on the SignalR sink's error the same
way, and, as ``broadcast`` has no retry policy, checkpoints past the batch (Azure/Azure-Functions#947);
this test shows that it costs no prediction and blocks nothing downstream.
"""

from __future__ import annotations

import json

from confluent_kafka import Producer

import function_app
from functions import reset_services
from ingestor.parsers.recorded import read_recorded
from local_stack.functions_host import EventHubFunctionDriver, app_functions
from local_stack.tansu import consumer_config, producer_config
from shared.contracts.events import encode
from shared.settings import SETTINGS
from tests.data_files import KRAKEN_CSV, data_file
from tests.integration.test_kafka import read_topic


class QuotaExceeded(RuntimeError):
    """What the SignalR binding raises when the unit's daily message quota is spent."""


def test_a_failing_signalr_hub_loses_no_prediction_and_blocks_nothing(
    monkeypatch, kafka_broker, topic_factory, tmp_path
):
    ticks_hub, predictions_hub, dead_hub = (topic_factory(1, s) for s in ("ticks", "predictions", "dead"))
    settings = {
        **{name: s.default for name, s in SETTINGS.items() if s.default},
        "TICKS_HUB_NAME": ticks_hub, "PREDICTIONS_HUB_NAME": predictions_hub, "DEADLETTER_HUB_NAME": dead_hub,
        "PREDICT_CONSUMER_GROUP": f"predict-{ticks_hub}", "BROADCAST_CONSUMER_GROUP": f"broadcast-{ticks_hub}",
        "HISTORY_SQLITE_PATH": str(tmp_path / "history.sqlite3"), "STATE_WARMUP_BARS": "0",
    }
    for name in ("MODEL_STORAGE", "MODEL_STORAGE__blobServiceUri", "MYSQL_URL"):
        monkeypatch.delenv(name, raising=False)
    for k, v in settings.items():
        monkeypatch.setenv(k, v)
    reset_services()
    bootstrap = kafka_broker.bootstrap_servers
    ccfg, pcfg = consumer_config(bootstrap, "unused", session_timeout_ms=2000), producer_config(bootstrap)
    fns = {f.get_function_name(): f for f in app_functions(function_app.app)}
    sent: list[dict] = []
    hub_up = [False]

    def hub(name: str, messages: list[dict]) -> None:
        if not hub_up[0]:
            raise QuotaExceeded("SignalR Service: daily message quota exceeded")
        sent.extend(messages)

    predict = EventHubFunctionDriver(fns["predict"], settings, ccfg, pcfg)
    broadcast = EventHubFunctionDriver(fns["broadcast"], settings, ccfg, pcfg, signalr=hub)
    try:
        ticks = [r.tick for r in read_recorded(data_file(KRAKEN_CSV)) if r.tick is not None][:900]
        producer = Producer(pcfg)
        for t in ticks:
            producer.produce(ticks_hub, value=encode(t), key=t.symbol.encode())
        producer.flush(30)
        for _ in range(200):
            predict.run_once()
            if predict.totals.consumed >= len(ticks):
                break
        produced = predict.totals.produced[predictions_hub]
        outputs = [json.loads(m.value()) for m in read_topic(bootstrap, predictions_hub, produced)]
        predictions = [o for o in outputs if o["type"] == "prediction"]
        assert len(outputs) == produced and len(predictions) >= 5

        for _ in range(200):  # the SignalR output fails each of broadcast's invocations, and only those
            broadcast.run_once()
            if broadcast.totals.consumed >= produced:
                break
        assert sent == [] and broadcast.totals.lost == broadcast.totals.consumed == produced
        assert predict.totals.lost == 0 and predict.totals.produced[predictions_hub] == produced

        hub_up[0] = True  # the quota resets: later batches go out, nothing waits for the failed one
        producer.produce(ticks_hub, value=encode(ticks[-1].__class__(**{
            **{f: getattr(ticks[-1], f) for f in ticks[-1].__slots__},
            "trade_id": None, "event_time_ms": ticks[-1].event_time_ms + 61_000,
            "ingest_time_ms": ticks[-1].ingest_time_ms + 61_000})), key=b"BTC/USD")  # a minute later, as received
        producer.flush(30)
        for _ in range(200):
            predict.run_once()
            broadcast.run_once()
            if any(m["target"] == "prediction" for m in sent):
                break
        assert [m["arguments"][0] for m in sent if m["target"] == "prediction"][-1]["target_time_ms"] > \
            predictions[-1]["target_time_ms"]
    finally:
        for driver in (predict, broadcast):
            driver.close()
        reset_services()
