"""The HTTP functions (API, dashboard, negotiate) called as the Functions host calls them, on MariaDB.

History comes from real Kraken trades run through the predict service and stored in
this test's own MariaDB database; the later half of the predictions is relabelled
as a second model version so the per-version figures are exercised. Expected values
are computed here from the stored records, independently of the SQL aggregates.
"""

from __future__ import annotations

import dataclasses
import itertools
from datetime import UTC, datetime
from pathlib import Path

import pytest

from functions import api as api_module
from functions import reset_services
from shared.contracts.batches import RawEvent
from shared.offline.evaluation import summarise
from shared.contracts.events import Bar, Prediction, decode_output, encode
from shared.storage.history import HistoryStore
from ingestor.parsers.recorded import read_recorded
from shared.serving.predicting import build_predict_service
from tests.unit.test_api import call

REPO = Path(__file__).resolve().parents[2]
KRAKEN = REPO / "samples" / "kraken_XBTUSD_trades_20190701T00Z-01Z.csv.gz"
SYMBOLS = "kraken:BTC/USD,binance:BTCUSDT,coinbase:BTC-USD"
MINUTES = 40


@pytest.fixture
def app_settings(monkeypatch, mysql_url):
    monkeypatch.setenv("MYSQL_URL", mysql_url)
    monkeypatch.setenv("SYMBOLS", SYMBOLS)
    reset_services()
    yield
    reset_services()


@pytest.fixture
def history(mysql_url) -> tuple[list[Bar], list[Prediction]]:
    """Bars and predictions of the first 40 minutes of the Kraken recording, stored in MariaDB."""
    ticks = itertools.takewhile(
        lambda t: t.event_time_ms < 1561939200000 + MINUTES * 60_000,
        (r.tick for r in read_recorded(KRAKEN) if r.tick is not None),
    )
    service = build_predict_service(None, "default", 0.9, 5.0)
    result = service.handle([RawEvent(encode(t), str(i)) for i, t in enumerate(ticks)])
    events = [decode_output(x) for x in result.outputs]
    bars = [e for e in events if isinstance(e, Bar)]
    predictions = [e for e in events if isinstance(e, Prediction)]
    middle = predictions[len(predictions) // 2].target_time_ms
    predictions = [p if p.target_time_ms < middle else dataclasses.replace(p, model_version="v2") for p in predictions]
    with HistoryStore.from_url(mysql_url) as store:
        store.upsert_bars(bars)
        store.upsert_predictions(predictions)
    assert len(bars) >= MINUTES - 2 and {p.model_version for p in predictions} == {"cold-start", "v2"}
    return bars, predictions


@pytest.mark.parametrize("symbol", ["kraken:BTC-USD", "KRAKEN:btc-usd", "kraken:BTC%2FUSD", "kraken:BTC/USD"])
def test_predictions_returns_the_latest_oldest_first_with_realised_closes(app_settings, history, symbol):
    bars, predictions = history
    status, body = call(api_module.get_predictions, {"symbol": symbol}, {"limit": "5"})
    assert status == 200
    assert (body["id"], body["exchange"], body["symbol"], body["count"]) == ("kraken:BTC-USD", "kraken", "BTC/USD", 5)
    closes = {b.open_time_ms: b.close for b in bars}
    expected = sorted(predictions, key=lambda p: p.target_time_ms)[-5:]
    assert [p["target_time_ms"] for p in body["predictions"]] == [p.target_time_ms for p in expected]
    for got, want in zip(body["predictions"], expected):
        assert got["predicted_close"] == want.predicted_close and got["model_version"] == want.model_version
        assert got["lower"] <= got["predicted_close"] <= got["upper"]
        assert got["realised_close"] == closes.get(want.target_time_ms)
    assert body["predictions"][-1]["realised_close"] is None  # the last target minute has not closed
    assert "quote currency" in body["units"]["prices"] and "ms" in body["units"]["times"]


def test_a_symbol_without_exchange_must_be_unambiguous(app_settings, history):
    status, body = call(api_module.get_predictions, {"symbol": "btcusdt"}, {"limit": "1"})
    assert status == 200 and body["id"] == "binance:BTCUSDT"  # one exchange lists it
    status, body = call(api_module.get_predictions, {"symbol": "btc/usd"})
    assert status == 400 and "kraken:BTC-USD" in body["error"]["message"]  # kraken BTC/USD and coinbase BTC-USD
    assert "coinbase:BTC-USD" in body["error"]["message"]


def test_predictions_default_limit_covers_all_here(app_settings, history):
    status, body = call(api_module.get_predictions, {"symbol": "kraken:BTC-USD"})
    assert status == 200 and body["limit"] == 60 and body["count"] == len(history[1])


@pytest.mark.parametrize("limit", ["0", "1001", "abc", "-3", "1.5", "9" * 30])
def test_bad_limits_are_refused_with_a_reason(app_settings, limit):
    status, body = call(api_module.get_predictions, {"symbol": "kraken:BTC-USD"}, {"limit": limit})
    assert status == 400
    assert body["error"]["parameter"] == "limit" and "limit must be" in body["error"]["message"]


@pytest.mark.parametrize("symbol", ["binance:ETHUSDT", "nope", "kraken:BTC-USD' OR '1'='1", "", "x" * 200])
def test_unknown_symbols_are_refused_and_nothing_leaks(app_settings, history, mysql_url, symbol):
    for function in (api_module.get_predictions, api_module.get_bars, api_module.get_accuracy):
        status, body = call(function, {"symbol": symbol})
        assert status == 400 and body["error"]["parameter"] == "symbol"
    if symbol.startswith("binance:ETH"):
        assert "kraken:BTC-USD" in body["error"]["message"]  # says which symbols are served
    with HistoryStore.from_url(mysql_url) as store:
        assert store.count_predictions() == len(history[1])


def test_bars_in_a_range_given_as_ms_or_iso(app_settings, history):
    bars, _ = history
    start, end = bars[3].open_time_ms, bars[9].open_time_ms
    iso = lambda ms: datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat().replace("+00:00", "Z")
    for params in ({"from": str(start), "to": str(end)}, {"from": iso(start), "to": iso(end)}):
        status, body = call(api_module.get_bars, {"symbol": "kraken:BTC-USD"}, params)
        assert status == 200 and (body["from_ms"], body["to_ms"]) == (start, end)
        assert [b["open_time_ms"] for b in body["bars"]] == [b.open_time_ms for b in bars[3:9]]
        assert [b["close"] for b in body["bars"]] == [b.close for b in bars[3:9]]
        assert body["truncated"] is False
    status, body = call(api_module.get_bars, {"symbol": "kraken:BTC-USD"}, {"from": str(start), "limit": "2"})
    assert [b["open_time_ms"] for b in body["bars"]] == [bars[3].open_time_ms, bars[4].open_time_ms]
    assert body["truncated"] is True
    status, body = call(api_module.get_bars, {"symbol": "kraken:BTC-USD"}, {"to": str(end), "limit": "3"})
    assert [b["open_time_ms"] for b in body["bars"]] == [b.open_time_ms for b in bars[6:9]]
    status, body = call(api_module.get_bars, {"symbol": "kraken:BTC-USD"})
    assert body["count"] == len(bars) and body["bars"][-1]["open_time_ms"] == bars[-1].open_time_ms


@pytest.mark.parametrize(("params", "parameter"), [
    ({"from": "yesterday"}, "from"), ({"to": "2019-13-01T00:00Z"}, "to"),
    ({"from": "1561939800000", "to": "1561939200000"}, "from"), ({"from": "1561939200000", "to": "1561939200000"}, "from"),
    ({"limit": "5001"}, "limit"), ({"to": "99999999999999999"}, "to"), ({"from": "1561942680"}, "from"),
    ({"from": "²"}, "from"), ({"to": "9" * 4300}, "to"), ({"form": "1561942680000"}, "form"),
])
def test_bad_bar_ranges_are_refused_with_a_reason(app_settings, params, parameter):
    status, body = call(api_module.get_bars, {"symbol": "kraken:BTC-USD"}, params)
    assert status == 400 and body["error"]["parameter"] == parameter and body["error"]["message"]


def test_epoch_seconds_are_recognised_not_read_as_1970(app_settings, history):
    start = history[0][10].open_time_ms
    status, body = call(api_module.get_bars, {"symbol": "kraken:BTC-USD"}, {"from": str(start // 1000)})
    assert status == 400 and body["error"]["parameter"] == "from"  # not every bar since 1970
    assert f"looks like seconds since the epoch; pass ms: from={start}" in body["error"]["message"]
    status, body = call(api_module.get_bars, {"symbol": "kraken:BTC-USD"}, {"from": str(start)})
    assert status == 200 and body["bars"][0]["open_time_ms"] == start


def _expected_scores(records) -> dict:
    s = summarise(records)
    moved = [r for r in records if r.realised_close != r.last_close]
    hits = [r for r in moved if (r.predicted_close - r.last_close) * (r.realised_close - r.last_close) > 0]
    up = sum(r.realised_close > r.last_close for r in moved)
    return {"realised_count": s.realised, "mae_model": s.mae_model, "mae_persistence": s.mae_persistence,
            "coverage": s.coverage, "moves": len(moved), "directional_accuracy": len(hits) / len(moved),
            "moves_up": up, "moves_down": len(moved) - up,
            "majority_direction_rate": max(up, len(moved) - up) / len(moved)}


def _assert_scores(got: dict, want: dict) -> None:
    for key, value in want.items():
        assert got[key] == pytest.approx(value, rel=1e-9), key
    assert got["mae_ratio"] == pytest.approx(want["mae_model"] / want["mae_persistence"], rel=1e-9)


@pytest.mark.parametrize("window", ["43200", "7"])
def test_accuracy_per_model_version_against_persistence(app_settings, history, mysql_url, window):
    status, body = call(api_module.get_accuracy, {"symbol": "kraken:BTC-USD"}, {"window": window})
    assert status == 200 and body["window_minutes"] == int(window)
    with HistoryStore.from_url(mysql_url) as store:
        realised = [r for r in store.predictions("kraken", "BTC/USD") if r.realised_close is not None]
    last = max(r.target_time_ms for r in realised)
    in_window = [r for r in realised if r.target_time_ms > last - int(window) * 60_000]
    assert (body["from_ms"], body["to_ms"]) == (max(0, last + 60_000 - int(window) * 60_000), last + 60_000)
    _assert_scores(body["overall"], _expected_scores(in_window))
    versions = sorted({r.model_version for r in in_window}, key=lambda v: min(r.target_time_ms for r in in_window
                                                                               if r.model_version == v))
    assert [v["model_version"] for v in body["by_model_version"]] == versions
    for got in body["by_model_version"]:
        _assert_scores(got, _expected_scores([r for r in in_window if r.model_version == got["model_version"]]))
    assert body["overall"]["interval_level"] == pytest.approx(0.9)


@pytest.mark.parametrize("window", ["0", "43201", "an hour"])
def test_bad_windows_are_refused(app_settings, window):
    status, body = call(api_module.get_accuracy, {"symbol": "kraken:BTC-USD"}, {"window": window})
    assert status == 400 and body["error"]["parameter"] == "window"


def test_a_symbol_without_history_answers_empty(app_settings, history):
    status, body = call(api_module.get_accuracy, {"symbol": "coinbase:BTC-USD"})
    assert status == 200 and body["overall"]["realised_count"] == 0 and body["overall"]["mae_model"] is None
    assert body["by_model_version"] == [] and body["from_ms"] is None
    assert body["overall"]["majority_direction_rate"] is None and body["overall"]["moves_up"] == 0
    status, body = call(api_module.get_predictions, {"symbol": "coinbase:BTC-USD"})
    assert status == 200 and body["predictions"] == []


def test_symbols_and_health(app_settings):
    status, body = call(api_module.get_symbols)
    assert status == 200 and [s["id"] for s in body["symbols"]] == ["kraken:BTC-USD", "binance:BTCUSDT", "coinbase:BTC-USD"]
    status, body = call(api_module.health)
    assert status == 200 and body["status"] == "ok" and body["database"] == "ok"




def test_model_changes_per_symbol_from_the_decision_log(app_settings, monkeypatch, azurite, model_registry):
    """Decisions recorded in the registry (Azurite) are served per symbol: its own key and the fallback key."""
    monkeypatch.setenv("MODEL_STORAGE", azurite.connection_string)
    monkeypatch.setenv("MODELS_CONTAINER", model_registry.container.container_name)
    reset_services()

    def decide(key: str, version: str, promoted: bool, at: int, previous: str | None = None) -> None:
        model_registry.record_decision(key, version, {
            "key": key, "version": version, "promoted": promoted, "reason": f"{key} {version}",
            "decided_at_ms": at, "champion_version": previous, "challenger_mae_usd": 1.5,
            "champion_mae_usd": 1.6, "persistence_mae_usd": 1.7})

    decide("default", "v1", True, 1_000)
    decide("kraken.BTC_USD", "k1", True, 2_000, "v1")
    decide("kraken.BTC_USD", "k2", False, 3_000, "k1")
    decide("binance.BTCUSDT", "b1", True, 4_000, "v1")  # another symbol: never in kraken's list
    meta = model_registry.save("kraken.BTC_USD", {"a": 1}, training_start_ms=0, training_end_ms=1,
                               feature_names=["x"])
    model_registry.set_current("kraken.BTC_USD", meta.version)

    status, body = call(api_module.get_model_changes, {"symbol": "kraken:BTC-USD"})
    assert status == 200 and body["keys"] == {"own": "kraken.BTC_USD", "fallback": "default"}
    assert [(c["key"], c["version"], c["scope"]) for c in body["changes"]] == [
        ("kraken.BTC_USD", "k1", "own"), ("default", "v1", "fallback")]  # newest first, promotions only
    assert body["changes"][0]["previous_version"] == "v1" and body["changes"][0]["challenger_mae"] == 1.5
    assert body["serving"] == {"key": "kraken.BTC_USD", "version": meta.version}
    status, body = call(api_module.get_model_changes, {"symbol": "kraken:BTC-USD"}, {"refused": "true", "limit": "2"})
    assert [(c["version"], c["promoted"]) for c in body["changes"]] == [("k2", False), ("k1", True)]
    status, body = call(api_module.get_model_changes, {"symbol": "coinbase:BTC-USD"})
    assert [c["version"] for c in body["changes"]] == ["v1"] and body["serving"] is None
    for params, parameter in (({"limit": "0"}, "limit"), ({"refused": "maybe"}, "refused"), ({"x": "1"}, "x")):
        status, body = call(api_module.get_model_changes, {"symbol": "kraken:BTC-USD"}, params)
        assert status == 400 and body["error"]["parameter"] == parameter
    status, body = call(api_module.get_model_changes, {"symbol": "binance:ETHUSDT"})
    assert status == 400 and body["error"]["parameter"] == "symbol"

    monkeypatch.setenv("MODELS_CONTAINER", "no-such-container")
    reset_services()
    status, body = call(api_module.get_model_changes, {"symbol": "kraken:BTC-USD"})
    assert status == 503 and "does not exist" in body["error"]["message"]
