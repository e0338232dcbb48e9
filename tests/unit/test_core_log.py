"""A symbol's model-side state is pickled once every ``CORE_LOG_BARS`` bars, with the bars closed since
logged (``shared.serving.engine.CoreLog``): restoring = unpickling + replaying them must give the live
state exactly, with and without order-flow features, across log renewals and model swaps."""

from __future__ import annotations

import pickle
from functools import cache

import pytest

from ingestor.parsers.recorded import read_recorded
from shared.contracts.events import Tick
from shared.serving.engine import CORE_LOG_BARS, ForecastEngine, SymbolState
from shared.stream.bars import BarBuilder
from tests.data_files import BTC_SPOT_CSV, KRAKEN_CSV, data_file

CLOCK_MS = 1_900_000_000_000


@cache
def _ticks(name: str) -> tuple[Tick, ...]:
    return tuple(r.tick for r in read_recorded(data_file(name)) if r.tick is not None)


def _restored(engine: ForecastEngine, key: tuple[str, str]) -> SymbolState:
    """A fresh state made from the engine's snapshot of ``key``, as a worker taking the partition over would."""
    live = engine.symbols[key]
    core, log = engine.core_snapshot(key, live)
    copy = ForecastEngine(lambda e, s: None, clock=lambda: CLOCK_MS)
    state = SymbolState(pickle.loads(pickle.dumps(live.builder)), None, None, "", None, live.partial)
    copy.restore_core(key, state, pickle.loads(pickle.dumps(core)), pickle.loads(pickle.dumps(log)))
    return state


@pytest.mark.parametrize("tick_features", [False, True])
def test_a_restored_state_equals_the_live_one_at_every_bar(tick_features):
    ticks = _ticks(KRAKEN_CSV)
    engine = ForecastEngine(lambda e, s: None, clock=lambda: CLOCK_MS, tick_features=tick_features)
    key = (ticks[0].exchange, ticks[0].symbol)
    checked = renewals = 0
    last_core = None
    for tick in ticks:
        out = engine.step(tick)
        if not any(e.type == "bar" for e in out):
            continue
        live = engine.symbols[key]
        core, log = engine.core_snapshot(key, live)
        renewals += core is not last_core
        last_core = core
        assert len(log) < CORE_LOG_BARS
        assert _parts(_restored(engine, key)) == _parts(live)
        checked += 1
    assert checked >= 50 and renewals >= 2  # the hour has ~60 bars: the log was renewed on the way


def _parts(state: SymbolState) -> list[bytes]:
    """The model-side state, each part pickled on its own (pickling the tuple whole would also compare
    which equal strings are one object)."""
    return [pickle.dumps(getattr(state, name), protocol=5)
            for name in ("features", "forecaster", "pending", "resolved", "gaps", "model_version")]


def test_a_restored_engine_goes_on_to_emit_what_the_live_one_emits():
    ticks = _ticks(KRAKEN_CSV)
    key = (ticks[0].exchange, ticks[0].symbol)
    for cut in (700, 1500, len(ticks) // 2):
        live = ForecastEngine(lambda e, s: None, clock=lambda: CLOCK_MS)
        for tick in ticks[:cut]:
            live.step(tick)
        other = ForecastEngine(lambda e, s: None, clock=lambda: CLOCK_MS)
        other.symbols[key] = _restored(live, key)
        ahead = [e for t in ticks[cut:] for e in live.step(t)]
        assert ahead and [e for t in ticks[cut:] for e in other.step(t)] == ahead


def test_a_model_swap_starts_a_new_log():
    """A swap cannot be replayed, so the next snapshot pickles the swapped-in model."""
    ticks = _ticks(BTC_SPOT_CSV)
    swaps = {"n": 0}

    class Provider:
        def initial(self, exchange, symbol):
            return None

        def refresh(self, exchange, symbol, version):
            swaps["n"] += 1
            if swaps["n"] == 4:
                from shared.serving.engine import new_forecaster
                return type("Swap", (), {"forecaster": new_forecaster(), "version": "v2"})()
            return None

        def checkpoint(self, *args):
            return False

    engine = ForecastEngine(Provider(), clock=lambda: CLOCK_MS)
    key = (ticks[0].exchange, ticks[0].symbol)
    for tick in ticks:
        engine.step(tick)
    live = engine.symbols[key]
    assert live.model_version == "v2"
    assert _parts(_restored(engine, key)) == _parts(live)
    assert len(engine.core_snapshot(key, live)[1]) == engine.stats.bars - 4  # logged since the swap


def test_a_new_state_object_never_reuses_another_s_log():
    engine = ForecastEngine(lambda e, s: None, clock=lambda: CLOCK_MS)
    ticks = _ticks(KRAKEN_CSV)[:400]
    for tick in ticks:
        engine.step(tick)
    key = (ticks[0].exchange, ticks[0].symbol)
    old_core, _ = engine.core_snapshot(key, engine.symbols[key])
    fresh = SymbolState(BarBuilder(*key), None, None, "", None)
    fresh.forecaster = engine.symbols[key].forecaster
    core, log = engine.core_snapshot(key, fresh)
    assert core is not old_core and log == ()
