"""What ``predict`` sends to the SignalR hub: one message per prediction and bar, throttled latest prices.

The predict function is called as the host calls it (real ``EventHubEvent`` batches of
recorded Kraken trades); its ``signalR`` output is read the way the Functions host and
the local driver read it (a JSON array of ``{"target", "arguments"}`` messages).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import azure.functions as func
import pytest

from functions import predict as predict_module
from functions import reset_services
from local_stack.functions_host import BindingError, CollectingOut, signalr_messages
from shared.serving.broadcast import Broadcaster, PriceThrottle, message_for_event
from shared.contracts.events import Bar, DeadLetter, ModelChange, Tick, encode, to_dict
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


def _events(ticks: list[Tick], start: int) -> list[func.EventHubEvent]:
    return [func.EventHubEvent(body=encode(t), partition_key=t.symbol, sequence_number=start + i, offset=str(i))
            for i, t in enumerate(ticks)]


def _invoke(ticks: list[Tick], start: int = 0) -> tuple[list[dict], list[dict]]:
    preds, dead, hub = CollectingOut(), CollectingOut(), CollectingOut()
    predict_module.predict.build().get_user_function()(
        events=_events(ticks, start), predictions=preds, deadletters=dead, signalr=hub)
    outputs = [json.loads(x) for x in preds.items()]
    return outputs, signalr_messages(hub.get()) if hub.get() is not None else []


def test_predict_broadcasts_every_prediction_and_bar_and_throttles_prices(predict_env):
    ticks = [r.tick for r in read_recorded(KRAKEN) if r.tick is not None][:2000]
    first, second, third = ticks[:700], ticks[700:1400], ticks[1400:]

    outputs, messages = _invoke(first)
    events = [m for m in messages if m["target"] != "latestPrice"]
    assert [(m["target"], m["arguments"]) for m in events] == [
        ({"prediction": "prediction", "bar": "bar"}[o["type"]], [o]) for o in outputs
    ]
    assert any(m["target"] == "prediction" for m in messages)
    [price] = [m["arguments"][0] for m in messages if m["target"] == "latestPrice"]
    newest = max(first, key=lambda t: t.event_time_ms)
    assert (price["exchange"], price["symbol"], price["price"], price["event_time_ms"]) == (
        "kraken", "BTC/USD", newest.price, newest.event_time_ms)
    assert abs(price["sent_at_ms"] - time.time() * 1000) < 5000

    _, messages = _invoke(second, 700)  # within 300 ms of the last update: no price
    assert [m for m in messages if m["target"] == "latestPrice"] == []
    time.sleep(0.35)
    _, messages = _invoke(third, 1400)
    [price] = [m["arguments"][0] for m in messages if m["target"] == "latestPrice"]
    assert price["price"] == max(third, key=lambda t: t.event_time_ms).price


def test_rejected_ticks_never_become_the_latest_price(predict_env):
    ticks = [r.tick for r in read_recorded(KRAKEN) if r.tick is not None][:200]
    late = Tick("kraken", "BTC/USD", None, 1.0, 0.1, "buy", ticks[0].event_time_ms - 3_600_000, ticks[-1].ingest_time_ms)
    _, messages = _invoke(ticks + [late])
    [price] = [m["arguments"][0] for m in messages if m["target"] == "latestPrice"]
    assert price["price"] == ticks[-1].price != late.price


def test_broadcaster_with_a_clock_and_several_symbols():
    now = [0]
    b = Broadcaster(1000, clock=lambda: now[0])
    bar = Bar("binance", "ETHUSDT", 1723161240000, 2580.1, 2581.0, 2579.5, 2580.7, 12.5, 40)
    change = ModelChange("default", "v2", "v1", 1723161300000, "better on holdout")
    dead = DeadLetter("ticks", "ticks[0]", "not JSON", "x")
    prices = {("binance", "ETHUSDT"): (2580.7, 1723161299000), ("kraken", "BTC/USD"): (61000.5, 1723161299500)}
    messages = b.messages([encode(bar), encode(dead), to_dict(change)], prices)
    assert [m["target"] for m in messages] == ["bar", "modelChanged", "latestPrice", "latestPrice"]
    assert messages[1] == {"target": "modelChanged", "arguments": [to_dict(change)]}
    now[0] = 999
    assert b.messages([], prices) == [] and b.encode([], prices) is None
    now[0] = 1000
    assert json.loads(b.encode([], {("kraken", "BTC/USD"): (61001.0, 1723161300100)}))[0]["arguments"][0]["price"] == 61001.0
    with pytest.raises(ValueError):
        message_for_event(dead)
    with pytest.raises(ValueError):
        PriceThrottle(-1)


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
