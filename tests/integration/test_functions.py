"""The function app: binding declarations, and the functions called as the host would call them.

Bindings are read from ``app.get_functions()``; the functions are called through
``fn.build().get_user_function()`` with real ``func.EventHubEvent`` objects, a real
Azurite model registry and a real MariaDB history store.
"""

from __future__ import annotations

import json
from pathlib import Path

import azure.functions as func
import pytest

from functions import archive as archive_module
from functions import predict as predict_module
from functions import reset_services
from local_stack.functions_host import CollectingOut
from shared.contracts.events import Tick, encode
from shared.stream.features import FEATURE_NAMES
from shared.forecast.forecaster import ReturnForecaster
from shared.storage.history import HistoryStore
from ingestor.parsers.recorded import read_recorded

REPO = Path(__file__).resolve().parents[2]
KRAKEN = REPO / "samples" / "kraken_XBTUSD_trades_20190701T00Z-01Z.csv.gz"


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
    monkeypatch.setenv("STATE_CONTAINER", f"{blob_container.container_name}-state")  # predict's, this test's
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
        predict(events=events_from(ticks[i:i + 97], i), predictions=preds, deadletters=dead)
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
    predict_module.predict.build().get_user_function()(events=events, predictions=preds, deadletters=dead)
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


