"""What reaches the SignalR hub: ``predict`` emits bars, predictions and throttled price events on the
predictions hub; ``broadcast`` turns them into one message each (the newest price per symbol).

The functions are called as the host calls them (real ``EventHubEvent`` batches of recorded
Kraken trades); the ``signalR`` output is read the way the Functions host and the local
driver read it (a JSON array of ``{"target", "arguments"}`` messages).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import azure.functions as func
import pytest

from functions import broadcast as broadcast_module
from functions import predict as predict_module
from functions import reset_services
from local_stack.functions_host import BindingError, CollectingOut, signalr_messages
from shared.contracts.batches import RawEvent
from shared.contracts.events import Bar, DeadLetter, ModelChange, PriceUpdate, Tick, decode_output, encode, to_dict
from shared.serving.broadcast import encode_messages, message_for_event, messages_for_batch
from shared.serving.predicting import PriceThrottle
from ingestor.parsers.recorded import read_recorded

REPO = Path(__file__).resolve().parents[2]
KRAKEN = REPO / "samples" / "kraken_XBTUSD_trades_20190701T00Z-01Z.csv.gz"


@pytest.fixture
def predict_env(monkeypatch, tmp_path):
    """No model registry (symbols start cold), SQLite history, and 300 ms between price updates."""
    for name in ("MODEL_STORAGE", "MODEL_STORAGE__blobServiceUri", "MYSQL_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HISTORY_SQLITE_PATH", str(tmp_path / "history.sqlite3"))
    monkeypatch.setenv("PRICE_UPDATE_MS", "300")
    reset_services()
    yield
    reset_services()


def _events(bodies: list[bytes], start: int, key: str | None = "BTC/USD") -> list[func.EventHubEvent]:
    return [func.EventHubEvent(body=b, partition_key=key, sequence_number=start + i, offset=str(i))
            for i, b in enumerate(bodies)]


def _predict(ticks: list[Tick], start: int = 0) -> list[bytes]:
    preds, dead = CollectingOut(), CollectingOut()
    predict_module.predict.build().get_user_function()(
        events=_events([encode(t) for t in ticks], start), predictions=preds, deadletters=dead)
    return [x.encode() for x in preds.items()]


def _broadcast(bodies: list[bytes]) -> list[dict]:
    hub = CollectingOut()
    broadcast_module.broadcast.build().get_user_function()(events=_events(bodies, 0, key=None), signalr=hub)
    return signalr_messages(hub.get()) if hub.get() is not None else []


def _prices(outputs: list[bytes]) -> list[dict]:
    return [json.loads(x) for x in outputs if json.loads(x)["type"] == "price"]


def test_every_prediction_and_bar_is_broadcast_and_prices_are_throttled_by_predict(predict_env):
    ticks = [r.tick for r in read_recorded(KRAKEN) if r.tick is not None][:2000]
    first, second, third = ticks[:700], ticks[700:1400], ticks[1400:]

    outputs = _predict(first)
    messages = _broadcast(outputs)
    events = [json.loads(x) for x in outputs if json.loads(x)["type"] != "price"]
    assert any(e["type"] == "prediction" for e in events)
    assert [(m["target"], m["arguments"]) for m in messages[:-1]] == [
        ({"prediction": "prediction", "bar": "bar"}[e["type"]], [e]) for e in events
    ]
    [price] = _prices(outputs)
    assert messages[-1] == {"target": "latestPrice", "arguments": [price]}  # the wire form the dashboard reads
    assert decode_output(json.dumps(price)) == PriceUpdate(**{k: price[k] for k in PriceUpdate.__slots__})
    newest = max(first, key=lambda t: t.event_time_ms)
    assert (price["exchange"], price["symbol"], price["price"], price["event_time_ms"]) == (
        "kraken", "BTC/USD", newest.price, newest.event_time_ms)
    assert abs(price["sent_at_ms"] - time.time() * 1000) < 5000

    assert _prices(_predict(second, 700)) == []  # within 300 ms of the last update: no price event
    time.sleep(0.35)
    [price] = _prices(_predict(third, 1400))
    assert price["price"] == max(third, key=lambda t: t.event_time_ms).price


def test_rejected_ticks_never_become_the_latest_price(predict_env):
    ticks = [r.tick for r in read_recorded(KRAKEN) if r.tick is not None][:200]
    late = Tick("kraken", "BTC/USD", None, 1.0, 0.1, "buy", ticks[0].event_time_ms - 3_600_000, ticks[-1].ingest_time_ms)
    [price] = _prices(_predict(ticks + [late]))
    assert price["price"] == ticks[-1].price != late.price


def test_a_batch_becomes_messages_in_hub_order_then_the_newest_price_per_symbol():
    bar = Bar("binance", "ETHUSDT", 1723161240000, 2580.1, 2581.0, 2579.5, 2580.7, 12.5, 40)
    change = ModelChange("default", "v2", "v1", 1723161300000, "better on holdout")
    eth = PriceUpdate("binance", "ETHUSDT", 2580.7, 1723161299000, 1723161299100)
    btc_old = PriceUpdate("kraken", "BTC/USD", 61000.5, 1723161299500, 1723161299600)
    btc_new = PriceUpdate("kraken", "BTC/USD", 61001.0, 1723161300100, 1723161300600)
    dead = DeadLetter("ticks", "ticks[0]", "not JSON", "x")
    bodies = [encode(btc_old), encode(bar), encode(eth), b"{not json", encode(dead), encode(btc_new), encode(change)]
    out = messages_for_batch(RawEvent(b, f"predictions[{i}]") for i, b in enumerate(bodies))
    assert out.messages == [
        {"target": "bar", "arguments": [to_dict(bar)]},
        {"target": "modelChanged", "arguments": [to_dict(change)]},
        {"target": "latestPrice", "arguments": [to_dict(btc_new)]},
        {"target": "latestPrice", "arguments": [to_dict(eth)]},
    ]
    assert out.counts == {"bar": 1, "model_change": 1, "price": 2, "superseded_prices": 1, "malformed": 2}
    assert json.loads(encode_messages(out.messages)) == out.messages
    assert encode_messages([]) is None
    with pytest.raises(ValueError):
        message_for_event(dead)
    with pytest.raises(ValueError):
        PriceThrottle(-1)


def test_a_promotion_reaches_signalr_through_broadcast():
    """promote_model only writes the model_change event to the predictions hub; broadcast sends it on."""
    change = ModelChange("kraken.BTC_USD", "v3", "v2", 1723161300000, "holdout MAE 15.66 <= 15.67")
    assert _broadcast([encode(change)]) == [{"target": "modelChanged", "arguments": [to_dict(change)]}]
    assert _broadcast([]) == []


@pytest.mark.parametrize(("value", "targets"), [
    ('[{"target":"bar","arguments":[1]},{"target":"prediction","arguments":[2]}]', ["bar", "prediction"]),
    ('{"target":"bar","arguments":[]}', ["bar"]),
    ([{"target": "bar", "arguments": []}, '{"target":"modelChanged","arguments":[]}'], ["bar", "modelChanged"]),
])
def test_signalr_output_values_are_read_as_the_host_reads_them(value, targets):
    assert [m["target"] for m in signalr_messages(value)] == targets


@pytest.mark.parametrize("value", ["not json", '{"arguments":[]}', '[{"target":"bar","arguments":"x"}]', "[1]"])
def test_malformed_signalr_output_fails_the_invocation(value):
    with pytest.raises(BindingError):
        signalr_messages(value)
