"""Model lifecycle against real Azurite, MariaDB and Tansu: retrain -> candidate -> promotion -> hot reload.

The functions are driven the way the local stack drives them (timer driver, blob
poller standing in for Event Grid, direct calls of the predict function), so the
bindings, the settings and the shared services are all exercised.
"""

from __future__ import annotations

import json
import pickle
import threading
import time
import uuid

import azure.functions as func
import pytest
from azure.functions.decorators.core import BindingDirection
from confluent_kafka import Consumer

import function_app
from functions import reset_services
from local_stack.functions_host import CollectingOut, app_functions
from local_stack.lifecycle_host import BlobTriggerPoller, TimerFunctionDriver
from local_stack.tansu import consumer_config, producer_config
from shared.stream.bars import MINUTE_MS
from shared.lifecycle.champions import ChampionSource
from shared.serving.engine import COLD_START_VERSION, ForecastEngine
from shared.contracts.events import Bar, Tick, decode_output, encode
from shared.stream.features import FEATURE_NAMES
from shared.forecast.forecaster import ReturnForecaster
from shared.storage.history import HistoryStore
from shared.offline.ohlcv import OhlcvReader
from shared.lifecycle.promotion import PromotionService, parse_candidate_blob
from shared.lifecycle.registry import symbol_key
from shared.lifecycle.retrain import Prequential, RetrainService
from shared.settings import SETTINGS
from tests.data_files import BINANCE_1M, data_file

EXCHANGE, SYMBOL = "binance", "BTCUSDT"
KEY = symbol_key(EXCHANGE, SYMBOL)


@pytest.fixture(scope="module")
def real_bars() -> list[Bar]:
    """2,400 consecutive one-minute Binance BTCUSDT bars (2019), as recorded."""
    bars = []
    for bar in OhlcvReader(data_file(BINANCE_1M), exchange=EXCHANGE, symbol=SYMBOL):
        if bars and bar.open_time_ms != bars[-1].open_time_ms + MINUTE_MS:
            bars.clear()  # keep a gap-free run
        bars.append(bar)
        if len(bars) == 2400:
            return bars
    raise AssertionError("no gap-free run of 2,400 minutes in the file")


def shifted(bars: list[Bar], last_open_ms: int) -> list[Bar]:
    """The bars moved in time so that the last one opens at ``last_open_ms``."""
    offset = last_open_ms - bars[-1].open_time_ms
    return [Bar(b.exchange, b.symbol, b.open_time_ms + offset, b.open, b.high, b.low, b.close, b.volume,
                b.trade_count) for b in bars]


def current_minute_ms() -> int:
    now = time.time_ns() // 1_000_000
    return now - now % MINUTE_MS


def tick_at(minute_ms: int, price: float, trade_id: int) -> Tick:
    """A tick 1 s into ``minute_ms``, stamped as a live ingestor would (100 ms after the trade, never before now):
    the test runs market time faster than the wall clock, and predict refuses ticks dated over a minute
    after their own ingest time."""
    event_ms = minute_ms + 1_000
    return Tick(EXCHANGE, SYMBOL, trade_id, price, 0.01, "buy", event_ms, max(time.time_ns() // 1_000_000, event_ms + 100))


class BiasedForecaster(ReturnForecaster):
    """A deliberately bad model: the default forecaster's forecast pushed up by 0.4 %."""

    def predict_price(self, x, last_close):
        close, lower, upper = super().predict_price(x, last_close)
        return close * 1.004, lower * 1.004, upper * 1.004


# ----------------------------------------------------------------------------- retrain


def test_too_little_history_writes_no_blob(history_store, model_registry, real_bars, caplog):
    history_store.upsert_bars(shifted(real_bars[:200], current_minute_ms() - MINUTE_MS))
    service = RetrainService(history_store, model_registry, [(EXCHANGE, SYMBOL)], min_bars=500, holdout_minutes=60)
    with caplog.at_level("INFO", logger="shared.lifecycle.retrain"):
        [outcome] = service.run()
    assert outcome.status == "skipped"
    assert "too little data: 200 bars" in outcome.reason
    assert model_registry.list_versions(KEY) == []
    assert [r.getMessage() for r in caplog.records if "retrain" in r.getMessage()] == [outcome.describe()]


def test_retrain_writes_a_candidate_with_holdout_scores_of_all_three(history_store, model_registry, real_bars):
    bars = shifted(real_bars[:1500], current_minute_ms() - MINUTE_MS)
    history_store.upsert_bars(bars)
    champion = ReturnForecaster()
    Prequential(champion).feed(shifted(real_bars[1500:], bars[0].open_time_ms - MINUTE_MS))
    meta = model_registry.save("default", champion, training_start_ms=0, training_end_ms=1, feature_names=FEATURE_NAMES)
    model_registry.set_current("default", meta.version)

    [outcome] = RetrainService(history_store, model_registry, [(EXCHANGE, SYMBOL)], min_bars=500,
                               holdout_minutes=240).run()
    assert outcome.status == "candidate", outcome.reason
    stored = model_registry.metadata(KEY, outcome.version)
    extra = stored.extra
    assert (stored.training_start_ms, stored.training_end_ms) == (bars[0].open_time_ms, bars[-1].open_time_ms)
    assert (extra["rows"], extra["training_rows"], extra["holdout_rows"]) == (1500, 1260, 240)
    holdout = extra["holdout"]
    assert holdout["champion"]["key"] == "default" and holdout["champion"]["version"] == meta.version
    assert extra["warm_start_from"] == meta.version  # same family: continues the champion
    for who in ("challenger", "champion", "persistence"):
        assert holdout[who]["n"] == 240 and holdout[who]["mae_usd"] > 0
    assert 0.5 <= holdout["challenger"]["coverage"] <= 1
    assert holdout["persistence"]["coverage"] is None
    # persistence recomputed independently from the stored bars
    hb = bars[-241:]
    expected = sum(abs(b.close - a.close) for a, b in zip(hb, hb[1:])) / 240
    assert holdout["persistence"]["mae_usd"] == pytest.approx(expected)
    assert stored.library_versions["river"] and len(stored.sha256) == 64
    assert list(stored.feature_names) == list(FEATURE_NAMES)


# ----------------------------------------------------------------------------- promotion


def _candidate(registry, key, model, holdout):
    return registry.save(key, model, training_start_ms=0, training_end_ms=60_000, feature_names=FEATURE_NAMES,
                         extra={"holdout": holdout})


def _holdout(challenger_mae, champion=None, champion_mae=None):
    block = lambda mae: {"n": 100, "mae_usd": mae, "rmse_usd": mae * 1.3, "coverage": 0.9}
    return {"challenger": block(challenger_mae),
            "champion": None if champion is None else {"key": champion[0], "version": champion[1],
                                                       **block(champion_mae)},
            "persistence": {"n": 100, "mae_usd": 10.0, "rmse_usd": 13.0, "coverage": None}}


def _promote_champion(registry, key="default"):
    meta = _candidate(registry, key, ReturnForecaster(), _holdout(9.0))
    registry.set_current(key, meta.version)
    return meta.version


@pytest.mark.parametrize("damage", ["one byte changed", "truncated"])
def test_damaged_candidate_is_refused_before_unpickling_and_the_champion_stays(model_registry, blob_container, damage):
    champion = _promote_champion(model_registry, KEY)
    meta = _candidate(model_registry, KEY, ReturnForecaster(), _holdout(1.0, (KEY, champion), 9.0))
    name = f"{KEY}/candidates/{meta.version}/model.pkl"
    data = bytearray(blob_container.download_blob(name).readall())
    if damage == "truncated":
        data = data[: len(data) // 2]
    else:
        data[len(data) // 2] ^= 0x01
    blob_container.upload_blob(name, bytes(data), overwrite=True)

    decision = PromotionService(model_registry).handle(KEY, meta.version)
    assert not decision.promoted
    assert "refused before unpickling" in decision.reason
    assert ("sha256" in decision.reason) if damage != "truncated" else ("bytes" in decision.reason)
    assert model_registry.current(KEY)[0] == champion
    [record] = [d for d in model_registry.decisions(KEY) if d["version"] == meta.version]
    assert record["promoted"] is False and record["reason"] == decision.reason


def _stored_bars_and_fallback_champion(history_store, model_registry, real_bars, n: int):
    """``n`` real bars ending now in the store, and a champion of ``default`` trained on the first 600."""
    bars = shifted(real_bars[:n], current_minute_ms() - MINUTE_MS)
    history_store.upsert_bars(bars)
    champion = ReturnForecaster()
    Prequential(champion).feed(bars[:600])
    meta = model_registry.save("default", champion, training_start_ms=0, training_end_ms=1, feature_names=FEATURE_NAMES)
    model_registry.set_current("default", meta.version)
    return meta


def test_worse_challenger_from_a_real_retrain_is_not_promoted(history_store, model_registry, real_bars):
    meta = _stored_bars_and_fallback_champion(history_store, model_registry, real_bars, 1200)
    [outcome] = RetrainService(history_store, model_registry, [(EXCHANGE, SYMBOL)], min_bars=500,
                               holdout_minutes=200, new_forecaster=BiasedForecaster).run()
    holdout = outcome.extra["holdout"]
    assert outcome.extra["warm_start_from"] is None  # another class: trained fresh
    assert holdout["challenger"]["mae_usd"] > holdout["champion"]["mae_usd"]
    decision = PromotionService(model_registry).handle(KEY, outcome.version)
    assert not decision.promoted
    assert decision.reason.startswith("worse than the champion on the holdout")
    assert model_registry.current(KEY) is None  # the symbol keeps being served by the fallback champion
    assert model_registry.current("default")[0] == meta.version


def _with_test(holdout, n, statistic, p_better):
    return holdout | {"comparison": {"n": n, "lags": 4, "mean_diff": -0.1, "statistic": statistic,
                                     "p_two_sided": 2 * p_better, "statistic_hln": statistic, "p_better": p_better}}


@pytest.mark.parametrize("n, statistic, p_better, promoted, reason", [
    (360, -1.0, 0.16, False, "not better than the champion by the margin"),
    (10, -4.0, 0.001, False, "too few holdout minutes to judge: 10 < 60"),
    (360, -2.5, 0.006, True, "DM -2.50, one-sided p 0.006 over 360 paired minutes"),
])
def test_a_challenger_needs_the_margin_and_the_record_carries_the_statistic(model_registry, n, statistic,
                                                                            p_better, promoted, reason):
    champion = _promote_champion(model_registry, KEY)
    meta = _candidate(model_registry, KEY, ReturnForecaster(),
                      _with_test(_holdout(8.9, (KEY, champion), 9.0), n, statistic, p_better))
    decision = PromotionService(model_registry).handle(KEY, meta.version)
    assert decision.promoted is promoted and reason in decision.reason
    assert model_registry.current(KEY)[0] == (meta.version if promoted else champion)
    [record] = [d for d in model_registry.decisions(KEY) if d["version"] == meta.version]
    assert (record["test_statistic"], record["p_value"], record["holdout_minutes"]) == (statistic, p_better, n)


def test_a_retrain_against_a_champion_writes_the_paired_comparison(history_store, model_registry, real_bars):
    _stored_bars_and_fallback_champion(history_store, model_registry, real_bars, 1500)
    [outcome] = RetrainService(history_store, model_registry, [(EXCHANGE, SYMBOL)], min_bars=500,
                               holdout_minutes=240).run()
    test = outcome.extra["holdout"]["comparison"]
    challenger, champ = outcome.extra["holdout"]["challenger"], outcome.extra["holdout"]["champion"]
    assert test["n"] == challenger["n"] == champ["n"] == 240 and test["lags"] == 4
    assert test["mean_diff"] == pytest.approx(challenger["mae_usd"] - champ["mae_usd"], rel=1e-9, abs=1e-12)
    assert 0.0 <= test["p_better"] <= 1.0 and (test["statistic"] < 0) == (test["mean_diff"] < 0)
    decision = PromotionService(model_registry).handle(KEY, outcome.version)
    [record] = [d for d in model_registry.decisions(KEY) if d["version"] == outcome.version]
    if record["test_statistic"] is not None:  # a worse challenger is refused before the test
        assert record["test_statistic"] == test["statistic_hln"] and record["holdout_minutes"] == 240
        assert decision.promoted == (test["p_better"] <= 0.05)


def test_stale_evaluation_and_broken_models_are_refused(model_registry):
    champion = _promote_champion(model_registry, KEY)
    stale = _candidate(model_registry, KEY, ReturnForecaster(), _holdout(1.0, (KEY, "20200101T000000000Z-deadbeef"), 9.0))
    assert "champion changed since the holdout evaluation" in PromotionService(model_registry).handle(KEY, stale.version).reason
    broken = _candidate(model_registry, KEY, {"not": "a model"}, _holdout(1.0, (KEY, champion), 9.0))
    assert "smoke prediction failed" in PromotionService(model_registry).handle(KEY, broken.version).reason
    assert model_registry.current(KEY)[0] == champion
    assert [d["promoted"] for d in model_registry.decisions(KEY)] == [False, False]


def test_two_promotions_racing_on_one_pointer_leave_exactly_one_winner(model_registry):
    for round_ in range(3):
        key = f"race-{round_}"
        current = model_registry.current(key)
        holdout = _holdout(5.0)
        a = _candidate(model_registry, key, ReturnForecaster(), holdout)
        b = _candidate(model_registry, key, ReturnForecaster(), holdout)
        assert current is None and a.version != b.version
        barrier = threading.Barrier(2)
        decisions = {}

        def promote(version):
            barrier.wait()
            decisions[version] = PromotionService(model_registry, fallback_key="none").handle(key, version)

        threads = [threading.Thread(target=promote, args=(v,)) for v in (a.version, b.version)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        winners = [v for v, d in decisions.items() if d.promoted]
        assert len(winners) == 1, decisions
        assert model_registry.current(key)[0] == winners[0]
        loser = next(d for d in decisions.values() if not d.promoted)
        assert "lost the race" in loser.reason or "champion changed" in loser.reason
        assert sorted(d["promoted"] for d in model_registry.decisions(key)) == [False, True]


# ----------------------------------------------------------------------------- hot reload and recovery


def test_engine_swaps_at_the_minute_boundary_and_keeps_feature_state(model_registry, real_bars):
    first = _promote_champion(model_registry, "default")
    clock = [0.0]
    source = ChampionSource(model_registry, "default", poll_seconds=1.0, clock=lambda: clock[0])
    engine = ForecastEngine(source)
    bars = real_bars[:30]
    out = []
    for i, bar in enumerate(bars[:10]):
        out += engine.process([tick_at(bar.open_time_ms, bar.close, i)])
    state = engine.symbols[(EXCHANGE, SYMBOL)]
    seen_before = state.features.bars_seen
    second = _candidate(model_registry, KEY, ReturnForecaster(), _holdout(1.0)).version
    model_registry.set_current(KEY, second)
    out += engine.process([tick_at(bars[10].open_time_ms, bars[10].close, 10)])  # within the poll interval
    clock[0] = 1.5
    out += engine.process([tick_at(bars[11].open_time_ms, bars[11].close, 11)])
    versions = [p.model_version for p in out if p.type == "prediction"]
    assert versions[:-1] == [first] * (len(versions) - 1) and versions[-1] == second
    assert engine.stats.model_swaps == 1
    assert state.features.bars_seen == seen_before + 2  # the swap did not reset the features


def test_background_polling_swaps_with_no_storage_call_in_the_bar_close(model_registry, real_bars):
    """With :meth:`ChampionSource.start_polling` (as ``predict`` runs), a bar close reads only memory: a
    promoted champion is loaded by the poller first and swapped in at the next bar close after it."""
    first = _promote_champion(model_registry, "default")
    source = ChampionSource(model_registry, "default", poll_seconds=0.2)
    engine = ForecastEngine(source)
    bars = real_bars[:40]
    out = []
    for i, bar in enumerate(bars[:5]):
        out += engine.process([tick_at(bar.open_time_ms, bar.close, i)])
    source.start_polling()
    try:
        second = _candidate(model_registry, KEY, ReturnForecaster(), _holdout(1.0)).version
        model_registry.set_current(KEY, second)
        deadline = time.monotonic() + 20
        while source.champion(EXCHANGE, SYMBOL) != (KEY, second) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert source.champion(EXCHANGE, SYMBOL) == (KEY, second)
        calls = []  # storage calls made by this (the invoking) thread
        for name in ("current_if_changed", "current", "load", "load_checkpoint"):
            real = getattr(model_registry, name)

            def spy(*a, _n=name, _r=real, **k):
                if threading.current_thread() is threading.main_thread():
                    calls.append(_n)
                return _r(*a, **k)

            setattr(model_registry, name, spy)
        time.sleep(0.5)  # at least two poll periods: the bar close below is past its poll interval
        out += engine.process([tick_at(bars[5].open_time_ms, bars[5].close, 5)])
        assert calls == []
    finally:
        source.close()
    versions = [p.model_version for p in out if p.type == "prediction"]
    assert versions[:-1] == [first] * (len(versions) - 1) and versions[-1] == second


def test_with_polling_a_checkpoint_is_written_by_the_polling_thread(model_registry, real_bars):
    """The bar close hands a copy over and returns; the thread writes it, and it is the model as it
    was at that bar close (the live one keeps learning)."""
    champion = _promote_champion(model_registry, "default")
    clock = [0.0]
    source = ChampionSource(model_registry, "default", poll_seconds=0.2, checkpoint_seconds=60,
                            clock=lambda: clock[0])
    engine = ForecastEngine(source)
    writers = []
    real = model_registry.save_checkpoint

    def spy(*args, **kwargs):
        writers.append(threading.current_thread().name)
        return real(*args, **kwargs)

    model_registry.save_checkpoint = spy
    source.start_polling()
    try:
        bars = real_bars[:12]
        for i, bar in enumerate(bars[:10]):
            engine.process([tick_at(bar.open_time_ms, bar.close, i)])
        clock[0] = 61.0
        engine.process([tick_at(bars[10].open_time_ms, bars[10].close, 10)])  # due: handed over
        handed = pickle.dumps(engine.symbols[(EXCHANGE, SYMBOL)].forecaster)
        engine.process([tick_at(bars[11].open_time_ms, bars[11].close, 11)])  # learns on, not due
        assert engine.stats.checkpoints == 1 and writers in ([], ["champion-poller"])
        deadline = time.monotonic() + 10
        while not writers and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        source.close()
    assert writers == ["champion-poller"] and source.checkpoints_saved == 1
    saved, info = model_registry.load_checkpoint(KEY, champion)
    assert pickle.dumps(saved) == handed != pickle.dumps(engine.symbols[(EXCHANGE, SYMBOL)].forecaster)


def test_restart_warms_features_from_history_and_resumes_from_a_checkpoint(model_registry, mysql_url, real_bars):
    champion = _promote_champion(model_registry, "default")
    store = HistoryStore.from_url(mysql_url)
    history = real_bars[:300]
    store.upsert_bars(history)
    clock = [0.0]
    source = ChampionSource(model_registry, "default", checkpoint_seconds=60, clock=lambda: clock[0])
    engine = ForecastEngine(source, warmup=lambda e, s: store.latest_bars(e, s, 240))
    nxt = real_bars[300:320]
    # the first tick opens minute 300; the first tick of minute 301 closes it -> a prediction at once
    out = engine.process([tick_at(nxt[0].open_time_ms, nxt[0].close, 1)])
    out += engine.process([tick_at(nxt[1].open_time_ms, nxt[1].close, 2)])
    assert [e.type for e in out] == ["bar", "prediction"]
    assert engine.stats.warmup_bars == 240
    cold = ForecastEngine(lambda e, s: None)  # without warm-up the first bar close cannot predict
    cold_out = cold.process([tick_at(nxt[0].open_time_ms, nxt[0].close, 1), tick_at(nxt[1].open_time_ms, nxt[1].close, 2)])
    assert [e.type for e in cold_out] == ["bar"]

    for i, bar in enumerate(nxt[2:], start=3):
        clock[0] += 10  # ten seconds per minute
        engine.process([tick_at(bar.open_time_ms, bar.close, i)])
    assert engine.stats.checkpoints >= 2
    state = engine.symbols[(EXCHANGE, SYMBOL)]
    restored, info = model_registry.load_checkpoint(KEY, champion)
    assert info["version"] == champion and info["key"] == KEY
    restarted = ChampionSource(model_registry, "default").initial(EXCHANGE, SYMBOL)
    assert restarted.restored and restarted.version == champion
    # the restored model is the checkpointed one (it learned online), not the untouched champion blob
    x, close = state.pending.x, state.pending.last_close
    untouched, _ = model_registry.load("default", champion)
    assert restarted.forecaster.predict_price(x, close) == restored.predict_price(x, close)
    assert pickle.dumps(restored) == pickle.dumps(restarted.forecaster)
    assert pickle.dumps(restored) != pickle.dumps(untouched)
    store.close()


# ----------------------------------------------------------------------------- the whole loop


def _outs(fn):
    return {b.get_dict_repr()["name"]: CollectingOut() for b in fn.get_bindings()
            if b.get_dict_repr().get("direction") == BindingDirection.OUT}


def test_whole_loop_history_to_predictions_tagged_with_the_new_version(
    monkeypatch, azurite, blob_container, mysql_url, kafka_broker, new_topic, real_bars, tmp_path
):
    settings = {
        **{name: s.default for name, s in SETTINGS.items() if s.default},
        "MODEL_STORAGE": azurite.connection_string,
        "MODELS_CONTAINER": blob_container.container_name,
        "MYSQL_URL": mysql_url,
        "SYMBOLS": f"{EXCHANGE}:{SYMBOL}",
        "RETRAIN_MIN_BARS": "500",
        "RETRAIN_HOLDOUT_MINUTES": "120",
        "MODEL_POLL_SECONDS": "0.2",
        "STATE_WARMUP_BARS": "60",
        "PREDICTIONS_HUB_NAME": new_topic,
        "DEADLETTER_HUB_NAME": new_topic + "-dead",
        "TICKS_HUB_NAME": new_topic + "-ticks",
        "RETRAIN_SCHEDULE": "*/5 * * * * *",
    }
    for k, v in settings.items():
        monkeypatch.setenv(k, v)
    reset_services()
    stop = threading.Event()
    timer = poller = None
    try:
        start = current_minute_ms() - 1500 * MINUTE_MS
        history = shifted(real_bars[:1500], start + 1499 * MINUTE_MS)
        HistoryStore.from_url(mysql_url).upsert_bars(history)
        live = shifted(real_bars[1500:1560], history[-1].open_time_ms + 60 * MINUTE_MS)

        fns = {f.get_function_name(): f for f in app_functions(function_app.app)}
        pcfg = producer_config(kafka_broker.bootstrap_servers)
        timer = TimerFunctionDriver(fns["retrain"], settings, pcfg, interval_s=3600)
        pushed: list[tuple[str, dict]] = []
        poller = BlobTriggerPoller(fns["promote_model"], settings, blob_container, pcfg, poll_s=0.1,
                                   signalr=lambda hub, messages: pushed.extend((hub, m) for m in messages))
        poll_thread = threading.Thread(target=poller.run, args=(stop,), daemon=True)
        poll_thread.start()
        predict = fns["predict"].get_user_function()

        def feed(i):
            bar = live[i]
            outs = _outs(fns["predict"])
            event = func.EventHubEvent(
                body=encode(tick_at(bar.open_time_ms, bar.close, 1000 + i)), partition_key=SYMBOL,
                sequence_number=i, offset=str(i))
            predict(events=[event], **outs)
            return [json.loads(x) for x in outs["predictions"].items()]

        outputs = feed(0) + feed(1)
        first = [o for o in outputs if o["type"] == "prediction"]
        assert [p["model_version"] for p in first] == [COLD_START_VERSION]  # warm-up: predicts at the first close

        timer.run_once()
        [version] = blob_container_versions = [
            parse_candidate_blob(n)[1] for n in blob_container.list_blob_names() if n.endswith("metadata.json")
        ]
        from shared.lifecycle.registry import ModelRegistry

        created_ms = ModelRegistry(blob_container).metadata(KEY, version).created_at_ms
        new_version_at = None
        for i in range(2, 60):
            time.sleep(0.1)  # a minute of market time every 0.1 s
            for o in feed(i):
                if o["type"] == "prediction" and o["model_version"] == version:
                    new_version_at = o["made_at_ms"]
            if new_version_at:
                break
        stop.set()
        poll_thread.join(5)
        assert new_version_at is not None, f"no prediction by {version}; decisions: {ModelRegistry(blob_container).decisions(KEY)}"
        delay_ms = new_version_at - created_ms
        print(f"candidate created -> first prediction by it: {delay_ms} ms")
        assert delay_ms < 5000
        assert blob_container_versions == [version]
        # promote_model has no SignalR output (its failure would fail the promotion): broadcast sends it on
        assert poller.invocations == 1 and poller.outputs.produced == {new_topic: 1} and pushed == []

        consumer = Consumer(consumer_config(kafka_broker.bootstrap_servers, group_id=f"t-{uuid.uuid4().hex}"))
        consumer.subscribe([new_topic])
        change = None
        deadline = time.monotonic() + 20
        while change is None and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and not msg.error():
                change = decode_output(msg.value())
        consumer.close()
        assert change is not None and change.type == "model_change"
        assert (change.key, change.version, change.previous_version) == (KEY, version, "none")
        hub = CollectingOut()
        fns["broadcast"].get_user_function()(events=[func.EventHubEvent(body=encode(change))], signalr=hub)
        [message] = json.loads(hub.get())
        assert message["target"] == "modelChanged" and message["arguments"][0]["version"] == version
    finally:
        stop.set()
        for driver in (timer, poller):
            if driver is not None:
                driver.close()
        reset_services()


def test_pointer_reads_are_conditional_on_the_cached_etag(model_registry):
    from shared.lifecycle.registry import UNCHANGED

    assert model_registry.current_if_changed("k", None) is None
    first = _promote_champion(model_registry, "k")
    version, etag = model_registry.current("k")
    assert version == first
    assert model_registry.current_if_changed("k", etag) == UNCHANGED
    second = _candidate(model_registry, "k", ReturnForecaster(), _holdout(1.0)).version
    model_registry.set_current("k", second, if_match_etag=etag)
    assert model_registry.current_if_changed("k", etag)[0] == second


def test_a_tampered_checkpoint_is_refused_and_the_champion_blob_serves(model_registry, blob_container):
    champion = _promote_champion(model_registry, "default")
    model_registry.save_checkpoint(KEY, champion, ReturnForecaster())
    name = f"{KEY}/checkpoints/{champion}/model.pkl"
    data = bytearray(blob_container.download_blob(name).readall())
    data[-3] ^= 0xFF
    blob_container.upload_blob(name, bytes(data), overwrite=True)
    serving = ChampionSource(model_registry, "default").initial(EXCHANGE, SYMBOL)
    assert serving.version == champion and not serving.restored


def test_operators_can_list_keys_versions_and_decisions(model_registry, monkeypatch, azurite, blob_container, capsys):
    from tickcast.__main__ import main

    champion = _promote_champion(model_registry, KEY)
    worse = _candidate(model_registry, KEY, ReturnForecaster(), _holdout(12.0, (KEY, champion), 9.0)).version
    PromotionService(model_registry).handle(KEY, worse)
    monkeypatch.setenv("MODEL_STORAGE", azurite.connection_string)
    monkeypatch.setenv("MODELS_CONTAINER", blob_container.container_name)
    assert main(["models"]) == 0
    assert f"{KEY}" in capsys.readouterr().out
    assert main(["models", KEY]) == 0
    out = capsys.readouterr().out
    assert f"champion {champion}" in out and worse in out
    assert "refused" in out and "worse than the champion on the holdout: MAE 12.0000 > 9.0000 USD" in out
    monkeypatch.delenv("MODEL_STORAGE")
    assert main(["models"]) == 2
