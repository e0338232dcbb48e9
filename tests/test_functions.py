"""The function app: binding declarations, and the functions called as the host would call them.

Bindings are read from ``app.get_functions()``; the functions are called through
``fn.build().get_user_function()`` with real ``func.EventHubEvent`` objects, a real
Azurite model registry and a real MariaDB history store.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import azure.functions as func
import pytest
from azure.functions.decorators.core import BindingDirection, Cardinality

import function_app
from functions import archive as archive_module
from functions import predict as predict_module
from functions import reset_services
from local_stack.functions_host import CollectingOut, app_functions
from shared.contracts.batches import RawEvent
from shared.contracts.events import Tick, encode
from shared.stream.features import FEATURE_NAMES
from shared.forecast.forecaster import ReturnForecaster
from shared.storage.history import HistoryStore
from ingestor.parsers.recorded import read_recorded
from shared.settings import SETTINGS

REPO = Path(__file__).resolve().parents[1]
KRAKEN = REPO / "samples" / "kraken_XBTUSD_trades_20190701T00Z-01Z.csv.gz"


def bindings(name: str) -> dict[str, dict]:
    fn = next(f for f in app_functions(function_app.app) if f.get_function_name() == name)
    return {b.get_dict_repr()["name"]: b.get_dict_repr() for b in fn.get_bindings()}


def test_app_registers_exactly_the_blueprint_functions():
    names = {f.get_function_name() for f in app_functions(function_app.app)}
    assert {"archive", "predict", "promote_model", "retrain"} <= names


def test_retrain_is_a_timer_on_the_configured_schedule():
    trigger = bindings("retrain")["timer"]
    assert trigger["type"] == "timerTrigger"
    assert trigger["schedule"] == "%RETRAIN_SCHEDULE%"
    assert not trigger["runOnStartup"]
    fields = SETTINGS["RETRAIN_SCHEDULE"].default.split()
    assert len(fields) == 6, "NCRONTAB has six fields: second minute hour day month day-of-week"


def test_promote_model_is_an_event_grid_blob_trigger_on_candidate_metadata():
    b = bindings("promote_model")
    trigger = b["blob"]
    assert trigger["type"] == "blobTrigger"
    assert trigger["source"] == "EventGrid"  # the only blob trigger source on Flex Consumption
    assert trigger["path"] == "%MODELS_CONTAINER%/{key}/candidates/{version}/metadata.json"
    assert trigger["connection"] == "MODEL_STORAGE"
    assert b["changes"]["type"] == "eventHub" and b["changes"]["eventHubName"] == "%PREDICTIONS_HUB_NAME%"
    assert b["signalr"]["type"] == "signalR" and b["signalr"]["hubName"] == "%SIGNALR_HUB_NAME%"


def test_predict_bindings():
    b = bindings("predict")
    trigger = b["events"]
    assert trigger["type"] == "eventHubTrigger"
    assert trigger["direction"] == BindingDirection.IN
    assert trigger["cardinality"] == Cardinality.MANY
    assert trigger["eventHubName"] == "%TICKS_HUB_NAME%"
    assert trigger["consumerGroup"] == "%PREDICT_CONSUMER_GROUP%"
    assert trigger["connection"] == "EVENTHUB"
    assert b["predictions"]["type"] == "eventHub" and b["predictions"]["eventHubName"] == "%PREDICTIONS_HUB_NAME%"
    assert b["deadletters"]["type"] == "eventHub" and b["deadletters"]["eventHubName"] == "%DEADLETTER_HUB_NAME%"
    assert {x["direction"] for k, x in b.items() if k != "events"} == {BindingDirection.OUT}


def test_archive_bindings_use_their_own_consumer_group():
    b = bindings("archive")
    trigger = b["events"]
    assert trigger["type"] == "eventHubTrigger"
    assert trigger["cardinality"] == Cardinality.MANY
    assert trigger["eventHubName"] == "%PREDICTIONS_HUB_NAME%"
    assert trigger["consumerGroup"] == "%ARCHIVE_CONSUMER_GROUP%"
    assert trigger["consumerGroup"] != bindings("predict")["events"]["consumerGroup"]


def test_every_binding_expression_names_a_documented_setting():
    for fn in app_functions(function_app.app):
        for b in fn.get_bindings():
            for value in b.get_dict_repr().values():
                for name in re.findall(r"%([^%]+)%", str(value)):
                    assert name in SETTINGS, f"{fn.get_function_name()} uses undocumented setting {name}"
                conn = b.get_dict_repr().get("connection")
                assert conn is None or any(s == conn or s.startswith(conn + "__") for s in SETTINGS)


def events_from(ticks: list[Tick], start_seq: int = 0) -> list[func.EventHubEvent]:
    return [
        func.EventHubEvent(body=encode(t), partition_key=t.symbol, sequence_number=start_seq + i, offset=str(i))
        for i, t in enumerate(ticks)
    ]


@pytest.fixture
def app_settings(monkeypatch, azurite, blob_container, mysql_url):
    """App settings pointing the functions at this test's container and database."""
    monkeypatch.setenv("MODEL_STORAGE", azurite.connection_string)
    monkeypatch.setenv("MODELS_CONTAINER", blob_container.container_name)
    monkeypatch.setenv("MODEL_KEY", "btc-1m")
    monkeypatch.setenv("MYSQL_URL", mysql_url)
    reset_services()
    yield
    reset_services()


def test_predict_then_archive_through_the_user_functions(app_settings, model_registry, mysql_url):
    model = ReturnForecaster()
    meta = model_registry.save("btc-1m", model, training_start_ms=0, training_end_ms=60_000,
                               feature_names=FEATURE_NAMES)
    model_registry.set_current("btc-1m", meta.version)
    ticks = [r.tick for r in read_recorded(KRAKEN) if r.tick is not None][:600]
    minutes = sorted({t.event_time_ms // 60_000 for t in ticks})

    predict = predict_module.predict.build().get_user_function()
    outputs: list[dict] = []
    for i in range(0, len(ticks), 97):  # several invocations: state carries across batches
        preds, dead = CollectingOut(), CollectingOut()
        predict(events=events_from(ticks[i:i + 97], i), predictions=preds, deadletters=dead, signalr=CollectingOut())
        assert dead.get() is None
        outputs += [json.loads(x) for x in preds.items()]

    bars = [o for o in outputs if o["type"] == "bar"]
    predictions = [o for o in outputs if o["type"] == "prediction"]
    assert [b["open_time_ms"] // 60_000 for b in bars] == minutes[:-1]  # the last minute is still open
    assert len(predictions) == len(bars) - 1
    assert {p["model_version"] for p in predictions} == {meta.version}
    assert all(p["lower"] <= p["predicted_close"] <= p["upper"] for p in predictions)

    archive = archive_module.archive.build().get_user_function()
    body = [func.EventHubEvent(body=json.dumps(o).encode(), sequence_number=i) for i, o in enumerate(outputs)]
    dead = CollectingOut()
    archive(events=body, deadletters=dead)
    archive(events=body, deadletters=dead)  # redelivery is harmless
    assert dead.get() is None
    with HistoryStore.from_url(mysql_url) as store:
        assert store.count_bars() == len(bars)
        assert store.count_predictions() == len(predictions)
        rows = store.predictions("kraken", "BTC/USD")
        realised = [r for r in rows if r.realised_close is not None]
        assert len(realised) == len(predictions) - 1  # the last target minute has not closed
        closes = {b["open_time_ms"]: b["close"] for b in bars}
        assert all(r.realised_close == closes[r.target_time_ms] for r in realised)


def test_predict_sets_aside_malformed_events_and_keeps_the_rest(app_settings):
    ticks = [r.tick for r in read_recorded(KRAKEN) if r.tick is not None][:300]
    events = events_from(ticks)
    events.insert(10, func.EventHubEvent(body=b"{not json", sequence_number=9999))
    events.insert(20, func.EventHubEvent(body=b'{"v":1,"type":"tick","symbol":"BTC/USD"}', sequence_number=9998))
    preds, dead = CollectingOut(), CollectingOut()
    predict_module.predict.build().get_user_function()(events=events, predictions=preds, deadletters=dead,
                                                       signalr=CollectingOut())
    letters = [json.loads(x) for x in dead.items()]
    assert [d["source"] for d in letters] == ["ticks", "ticks"]
    assert "seq=9999" in letters[0]["position"] and letters[0]["payload"] == "{not json"
    assert "exchange" in letters[1]["reason"]
    # every valid tick still counted: the model started cold (no champion in this container)
    outputs = [json.loads(x) for x in preds.items()]
    minutes = sorted({t.event_time_ms // 60_000 for t in ticks})
    assert len([o for o in outputs if o["type"] == "bar"]) == len(minutes) - 1
    assert {o["model_version"] for o in outputs if o["type"] == "prediction"} == {"cold-start"}


def test_archive_sets_aside_malformed_events(app_settings, mysql_url):
    good = {"v": 1, "type": "bar", "exchange": "kraken", "symbol": "BTC/USD", "open_time_ms": 1561939200000,
            "open": 10749.4, "high": 10760.0, "low": 10740.0, "close": 10751.2, "volume": 3.5, "trade_count": 12}
    bad = dict(good, close=-1.0)
    events = [func.EventHubEvent(body=json.dumps(x).encode(), sequence_number=i) for i, x in enumerate([bad, good])]
    dead = CollectingOut()
    archive_module.archive.build().get_user_function()(events=events, deadletters=dead)
    [letter] = [json.loads(x) for x in dead.items()]
    assert letter["source"] == "predictions" and "close" in letter["reason"]
    with HistoryStore.from_url(mysql_url) as store:
        assert [b.close for b in store.bars("kraken", "BTC/USD")] == [10751.2]


def test_unreachable_model_storage_starts_the_symbol_cold(monkeypatch):
    """A registry that cannot be reached is logged; the stream goes on with a cold model."""
    from azure.storage.blob import ContainerClient

    from shared.serving.predicting import build_predict_service
    from shared.lifecycle.registry import ModelRegistry

    dead = ContainerClient.from_connection_string(
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey="
        "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
        "BlobEndpoint=http://127.0.0.1:9/devstoreaccount1",  # port 9 (discard): nothing listens
        "models", retry_total=0,
    )
    service = build_predict_service(ModelRegistry(dead), "default", 0.9, 10.0)
    ticks = [r.tick for r in read_recorded(KRAKEN) if r.tick is not None][:300]
    result = service.handle([RawEvent(encode(t), str(i)) for i, t in enumerate(ticks)])
    versions = {json.loads(x)["model_version"] for x in result.outputs if b'"prediction"' in x}
    assert versions == {"cold-start"}
