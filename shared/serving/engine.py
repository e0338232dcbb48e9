"""Per-symbol stream processing: ticks -> minute bars -> features -> predict, then learn.

:class:`ForecastEngine` holds one :class:`SymbolState` per ``(exchange, symbol)``.
At every bar close of minute ``m`` it

1. emits the closed bar;
2. updates the features with it (completed bars only);
3. teaches the model the label of the forecast made at the close of ``m - 1``
   (``ln(close_m / close_{m-1})``), if that forecast targeted minute ``m``;
4. predicts the close of minute ``m + 1`` and emits the prediction.

So every closed bar that had a previous bar yields exactly one prediction, and
the model only ever learns labels that have been realised (no look-ahead).

Between steps 3 and 4 — the minute boundary — the engine asks its
:class:`ModelProvider` whether a new champion should serve the symbol
(``refresh``) and swaps it in; the feature state is the engine's and survives
the swap. After learning it offers the model for a periodic checkpoint.
A symbol seen for the first time starts from ``provider.initial`` and, when a
``warmup`` source is given, replays the newest stored bars through its features
so that the first bar close after a restart already yields a prediction.
Forecasts whose target minute had no trades (a gap) are not learned from, and
are counted in :attr:`EngineStats.unlearned_gaps`. Steps 2-4 are the one prequential
rule of :class:`shared.forecast.prequential.PrequentialStepper` (A. P. Dawid, "Statistical
theory: the prequential approach", JRSS A 147, 1984), which a :class:`SymbolState` is.

Each symbol gets its own copy of the model it starts from, so symbols do not
teach each other.
"""

from __future__ import annotations

import logging
import pickle
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from shared.stream.bars import MINUTE_MS, BarBuilder
from shared.contracts.events import Bar, Prediction, Tick
from shared.stream.features import BarFeatures
from shared.forecast.forecaster import ReturnForecaster, make_forecaster
from shared.forecast.prequential import Forecast, PrequentialStepper
from shared.lifecycle.registry.layout import PICKLE_PROTOCOL

log = logging.getLogger(__name__)

PARTIAL_FROM_NEXT_TICK = -1
""":attr:`SymbolState.partial` of a symbol whose lost ticks end before its next tick's minute."""

COLD_START_VERSION = "cold-start"
"""Model version stamped on predictions of a fresh, untrained forecaster (no model registered)."""

ModelSource = Callable[[str, str], "tuple[ReturnForecaster, str] | None"]
"""Called with ``(exchange, symbol)``; returns ``(forecaster, version)`` or ``None`` (no model)."""

Warmup = Callable[[str, str], "list[Bar]"]
"""Called with ``(exchange, symbol)``; returns the newest completed bars, oldest first."""


class ModelProvider(Protocol):
    """Where the engine's models come from (see :class:`shared.lifecycle.champions.ChampionSource`)."""

    def initial(self, exchange: str, symbol: str) -> Any:
        """An object with ``forecaster`` and ``version`` to start the symbol with, or ``None``."""

    def refresh(self, exchange: str, symbol: str, serving_version: str) -> Any:
        """A new ``forecaster``/``version`` to swap in at this minute boundary, or ``None``."""

    def checkpoint(self, exchange: str, symbol: str, forecaster: Any, version: str) -> bool:
        """Offer the online-updated model for a checkpoint; return whether one was written."""


@dataclass(frozen=True)
class _Found:
    forecaster: Any
    version: str


class StaticModels:
    """A :class:`ModelProvider` over a plain :data:`ModelSource` callable: no reloads, no checkpoints."""

    def __init__(self, source: ModelSource) -> None:
        self.source = source

    def initial(self, exchange: str, symbol: str) -> _Found | None:
        """What ``source`` returns for the symbol, as an object with ``forecaster`` and ``version``."""
        found = self.source(exchange, symbol)
        return None if found is None else _Found(*found)

    def refresh(self, exchange: str, symbol: str, serving_version: str) -> None:
        """Never a new model."""
        return

    def checkpoint(self, exchange: str, symbol: str, forecaster: Any, version: str) -> bool:
        """Never a checkpoint."""
        return False


def new_forecaster(family: str = "", interval_level: float = 0.9) -> ReturnForecaster:
    """A fresh, untrained forecaster of model ``family`` ("" = the default) at ``interval_level``.

    Raises
    ------
    ValueError
        Unknown family (the message lists the valid names) or a level outside (0, 1).
    """
    return make_forecaster(family, interval_level)


def now_ms() -> int:
    """Wall-clock time in ms since epoch UTC."""
    return time.time_ns() // 1_000_000


@dataclass
class EngineStats:
    """Counters since the engine started (all plain counts)."""

    ticks: int = 0
    bars: int = 0
    predictions: int = 0
    learned: int = 0
    unlearned_gaps: int = 0
    model_swaps: int = 0
    checkpoints: int = 0
    warmup_bars: int = 0
    late: int = 0
    out_of_sequence: int = 0
    partial_bars: int = 0


class SymbolState(PrequentialStepper):
    """Everything the engine keeps for one ``(exchange, symbol)``: its bar builder, the version
    of the model serving it, and its prequential state (``features``, ``forecaster``, the
    ``pending`` forecast: a :class:`shared.forecast.prequential.PrequentialStepper`).

    Parameters
    ----------
    builder : the symbol's bar builder.
    features : its feature state (survives model swaps).
    forecaster : the model serving it (the engine's private copy, taught online).
    model_version : that model's registry version, or :data:`COLD_START_VERSION`.
    pending : a forecast waiting for its target bar, if any.
    partial : ticks of this symbol may have been lost (its state was restored from behind the
        stream, :mod:`shared.serving.partitions`): ``None`` (no), :data:`PARTIAL_FROM_NEXT_TICK`
        (set it to the minute of the next tick), or the open time (ms since epoch UTC) of the last
        minute that may lack ticks. Bars that close with an open time at or before it are dropped,
        neither emitted nor learned from, and counted in :attr:`EngineStats.partial_bars`.
    """

    __slots__ = ("builder", "model_version", "partial")

    def __init__(self, builder: BarBuilder, features: BarFeatures, forecaster: ReturnForecaster,
                 model_version: str, pending: Forecast | None = None, partial: int | None = None) -> None:
        super().__init__(forecaster, features)
        self.builder = builder
        self.model_version = model_version
        self.pending = pending
        self.partial = partial


def pickle_core(state: SymbolState) -> bytes:
    """The model-side state of ``state`` pickled: ``(features, forecaster, pending, resolved, gaps,
    model_version)`` (the format of :attr:`shared.serving.partitions.SymbolSnapshot.core`)."""
    return pickle.dumps((state.features, state.forecaster, state.pending, state.resolved, state.gaps,
                         state.model_version), protocol=PICKLE_PROTOCOL)


CORE_LOG_BARS = 32
"""Bars replayed at most when a symbol's model-side state is restored or rolled back: it is pickled
afresh once its :class:`CoreLog` holds this many (a replayed bar step costs ~30-40 us, a pickling
~0.2 ms at 30 bars and more with a day of features; 32 keeps a restore of 1,000 symbols near 1 s)."""


class CoreLog:
    """A symbol's model-side state pickled at some bar, and the bars closed since.

    Attributes
    ----------
    state : the :class:`SymbolState` it belongs to (a new state object makes it stale).
    core : :func:`pickle_core` bytes.
    bars : ``(open_time_ms, open, high, low, close, volume, trade_count, flow)`` of each bar whose
        close succeeded since ``core`` was taken, in order; ``flow`` is the order-flow features the
        close joined (``None``: none). Replaying them (:func:`_replay`) gives today's state exactly:
        the same steps on the same inputs, and no model swap in between (a swap starts a new log).
    """

    __slots__ = ("state", "core", "bars")

    def __init__(self, state: SymbolState, core: bytes, bars: list[tuple]) -> None:
        self.state, self.core, self.bars = state, core, bars


def _replay(state: SymbolState, key: tuple[str, str], bars: Iterable[tuple]) -> None:
    """Step ``state`` through logged bars as :meth:`ForecastEngine._on_bar_close` did, without outputs."""
    exchange, symbol = key
    for open_time_ms, open_, high, low, close, volume, count, flow in bars:
        bar = Bar(exchange, symbol, open_time_ms, open_, high, low, close, volume, count)
        state.resolve(bar, flow=flow if flow is not None else {})
        state.forecast(bar)


def unpickle_core(state: SymbolState, core: bytes) -> None:
    """Put the model-side state pickled by :func:`pickle_core` back into ``state``."""
    (state.features, state.forecaster, state.pending, state.resolved, state.gaps,
     state.model_version) = pickle.loads(core)


@dataclass
class ForecastEngine:
    """Turns batches of ticks into bar and prediction events.

    Parameters
    ----------
    model_source : a :class:`ModelProvider`, or a :data:`ModelSource` callable that
        returns the starting ``(forecaster, version)`` of a symbol (``None``: start
        from a fresh forecaster, version :data:`COLD_START_VERSION`).
    interval_level : coverage of the interval of a cold-start forecaster.
    forecast_model : model family of a cold-start forecaster (``FORECAST_MODEL``; "" = default).
    warmup : newest stored bars of a symbol, replayed through its features when it is first seen.
    clock : wall clock in ms since epoch UTC (``made_at_ms`` and latency).
    tick_features : feed accepted ticks to each symbol's order flow, whose features of the closing
        minute join its bar features (:mod:`shared.stream.orderflow`; saved with the partition
        state, :mod:`shared.serving.partitions`). Off by default: the recordings at hand are too
        short to show that it helps (docs/forecasting.md).
    replaying : the engine is re-applying ticks it applied before a restart
        (:mod:`shared.serving.partitions`, "Snapshots and replay"): no model is swapped in and no
        checkpoint is offered, so the replayed bars move the model-side state exactly as they did
        the first time (a swap forces a state save, so none lies in a replayed span).
    """

    model_source: ModelProvider | ModelSource
    interval_level: float = 0.9
    forecast_model: str = ""
    warmup: Warmup | None = None
    clock: Callable[[], int] = now_ms
    tick_features: bool = False
    replaying: bool = False
    stats: EngineStats = field(default_factory=EngineStats)
    symbols: dict[tuple[str, str], SymbolState] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not hasattr(self.model_source, "initial"):
            self.model_source = StaticModels(self.model_source)  # type: ignore[arg-type]
        self.provider: ModelProvider = self.model_source  # type: ignore[assignment]
        self.cores: dict[tuple[str, str], CoreLog] = {}
        """``(exchange, symbol)`` -> its model-side state pickled at some bar and the bars closed since
        (:class:`CoreLog`): the bar close's rollback and the partition-state save share it."""

    def _core_log(self, key: tuple[str, str], state: SymbolState) -> CoreLog:
        """The symbol's :class:`CoreLog`, pickled afresh when missing, stale or :data:`CORE_LOG_BARS` long."""
        log_ = self.cores.get(key)
        if log_ is None or log_.state is not state or len(log_.bars) >= CORE_LOG_BARS:
            log_ = self.cores[key] = CoreLog(state, pickle_core(state), [])
        return log_

    def core_snapshot(self, key: tuple[str, str], state: SymbolState) -> tuple[bytes, tuple]:
        """``(core, bars)``: the symbol's model-side state pickled at some bar (:func:`pickle_core`)
        and the bars closed since (:attr:`CoreLog.bars`), which :meth:`restore_core` replays.

        Pickling once every :data:`CORE_LOG_BARS` bars instead of at every save or bar close is
        what makes a save of a partition cheap (the model-side state is ~6-70 KiB per symbol).
        """
        log_ = self._core_log(key, state)
        return log_.core, tuple(log_.bars)

    def restore_core(self, key: tuple[str, str], state: SymbolState, core: bytes, bars: Iterable[tuple]) -> None:
        """Put ``core`` (:func:`pickle_core` bytes) into ``state`` and replay ``bars`` (:meth:`core_snapshot`)
        through it: its model-side state is then the one that was saved, exactly.

        Raises
        ------
        pickle.UnpicklingError, Exception
            What unpickling or a replayed step raises (a state that is not what was saved).
        """
        unpickle_core(state, core)
        bars = list(bars)
        _replay(state, key, bars)
        self.cores[key] = CoreLog(state, core, bars)

    def step(self, tick: Tick, rejected: list[tuple[int, str, str]] | None = None) -> list[Bar | Prediction]:
        """:meth:`process` of one tick (the per-event path of ``predict``); same contract."""
        return self.process((tick,), rejected)

    def _state(self, tick: Tick) -> SymbolState:
        key = (tick.exchange, tick.symbol)
        state = self.symbols.get(key)
        if state is None:
            found = self.provider.initial(tick.exchange, tick.symbol)
            if found is None:
                log.warning("no model registered for %s %s: starting cold", *key)
                forecaster, version = new_forecaster(self.forecast_model, self.interval_level), COLD_START_VERSION
            else:
                # A private copy: the source's model stays as it was for other symbols.
                forecaster, version = pickle.loads(pickle.dumps(found.forecaster)), found.version
            state = SymbolState(BarBuilder(tick.exchange, tick.symbol), BarFeatures(), forecaster, version)
            self._warm(state, tick)
            self.symbols[key] = state
        return state

    def _warm(self, state: SymbolState, tick: Tick) -> None:
        """Replay stored bars (older than the tick's minute) through the new symbol's features."""
        if self.warmup is None:
            return
        try:
            bars = self.warmup(tick.exchange, tick.symbol)
        except Exception as exc:  # history unreachable: start with empty features, keep streaming
            log.error("cannot warm %s %s from history: %s", tick.exchange, tick.symbol, exc)
            return
        minute = tick.event_time_ms - tick.event_time_ms % MINUTE_MS
        for bar in bars:
            if bar.open_time_ms < minute:
                state.features.update(bar)
                self.stats.warmup_bars += 1

    def process(
        self, ticks: Iterable[Tick], rejected: list[tuple[int, str, str]] | None = None
    ) -> list[Bar | Prediction]:
        """Feed validated ticks in arrival order; return the bars closed and predictions made.

        Ticks the bar builder drops are appended to ``rejected`` (when given) as
        ``(index in ticks, counter name, reason)``: ``late`` or ``out_of_sequence``.

        Raises
        ------
        Exception
            Whatever the model source or a bar close raises (e.g. ``ValueError`` for a symbol
            with no valid registry key); the tick that raised leaves no trace in the engine
            (:meth:`_close_atomically`), ticks before it in ``ticks`` stay applied.
        """
        out: list[Bar | Prediction] = []
        stats = self.stats
        symbols = self.symbols
        for i, tick in enumerate(ticks):
            state = symbols.get((tick.exchange, tick.symbol)) or self._state(tick)  # may raise (model lookup)
            stats.ticks += 1
            builder = state.builder
            if state.partial == PARTIAL_FROM_NEXT_TICK:  # the lost ticks end before this one's minute
                state.partial = max(tick.event_time_ms - tick.event_time_ms % MINUTE_MS, builder.open_minute_ms or 0)
            late, oos, last_id = builder.late, builder.out_of_sequence, builder._last_trade_id
            bar = builder.add(tick)
            accepted = builder.late == late and builder.out_of_sequence == oos
            if builder.late != late:
                stats.late += 1
                if rejected is not None:
                    rejected.append((i, "late", f"late tick: its minute closed before minute {builder.open_minute_ms} opened"))
            elif builder.out_of_sequence != oos:
                stats.out_of_sequence += 1
                if rejected is not None:
                    rejected.append((i, "out_of_sequence", f"trade id {tick.trade_id} not above the last seen"))
            if bar is not None and state.partial is not None and bar.open_time_ms <= state.partial:
                if builder.open_minute_ms is not None and builder.open_minute_ms > state.partial:
                    state.partial = None  # the last minute that may lack ticks is behind
                stats.partial_bars += 1  # a minute that may lack ticks: never published nor learned
                log.warning("dropped the partial bar %s %s at %d: ticks before the restart were lost",
                            bar.exchange, bar.symbol, bar.open_time_ms)
            elif bar is not None:
                prediction = self._close_atomically(state, bar, tick.ingest_time_ms, last_id)
                out.append(bar)
                if prediction is not None:
                    out.append(prediction)
            if accepted and self.tick_features:  # after the close: a close that raised leaves no trace of it
                state.add_tick(tick)
        return out

    def _close_atomically(self, state: SymbolState, bar: Bar, closing_ingest_ms: int,
                          last_id: int | None) -> Prediction | None:
        """:meth:`_on_bar_close`, all or nothing: if it raises, the symbol's builder, features,
        model, pending forecast and the engine's counters are put back as they were before the
        closing tick (the symbol's :class:`CoreLog` unpickled and replayed), and the error is
        raised again. A close that succeeds is appended to the log, or, after a model swap (which
        a replay cannot redo), drops it so that the next snapshot pickles the state afresh.
        """
        saved_stats = vars(self.stats).copy()  # plain counters: a dict copy, ~8x cheaper than dataclasses.replace
        saved_stats["ticks"] -= 1
        key = (bar.exchange, bar.symbol)
        try:
            saved = self._core_log(key, state)
            flow = state.flow_features(bar)
        except Exception:
            vars(self.stats).update(saved_stats)
            state.builder.reopen(bar, last_id)
            raise
        forecaster = state.forecaster
        try:
            self.stats.bars += 1
            prediction = self._on_bar_close(state, bar, closing_ingest_ms, flow)
        except Exception:
            vars(self.stats).update(saved_stats)
            state.builder.reopen(bar, last_id)
            unpickle_core(state, saved.core)
            _replay(state, key, saved.bars)
            raise
        if state.forecaster is forecaster:
            saved.bars.append((bar.open_time_ms, bar.open, bar.high, bar.low, bar.close, bar.volume,
                               bar.trade_count, flow))
        else:
            del self.cores[key]
        return prediction

    def _on_bar_close(self, state: SymbolState, bar: Bar, closing_ingest_ms: int,
                      flow: dict[str, float] | None) -> Prediction | None:
        stats = self.stats
        gaps = state.gaps
        if state.resolve(bar, flow=flow if flow is not None else {}) is not None:  # learned the label of the forecast made a minute ago
            stats.learned += 1
            if not self.replaying and state.model_version != COLD_START_VERSION and self.provider.checkpoint(
                bar.exchange, bar.symbol, state.forecaster, state.model_version
            ):
                stats.checkpoints += 1
        elif state.gaps != gaps:
            stats.unlearned_gaps += 1
        # The minute boundary: swap in a new champion before forecasting the next minute.
        swap = None if self.replaying else self.provider.refresh(bar.exchange, bar.symbol, state.model_version)
        if swap is not None:
            state.forecaster, state.model_version = pickle.loads(pickle.dumps(swap.forecaster)), swap.version
            stats.model_swaps += 1
        forecast = state.forecast(bar)
        if forecast is None:
            return None
        made_at = self.clock()
        stats.predictions += 1
        return Prediction(
            exchange=bar.exchange,
            symbol=bar.symbol,
            target_time_ms=forecast.target_time_ms,
            made_at_ms=made_at,
            last_close=bar.close,
            predicted_close=forecast.predicted,
            lower=forecast.lower,
            upper=forecast.upper,
            interval_level=state.forecaster.interval_level,
            model_version=state.model_version,
            latency_ms=made_at - closing_ingest_ms,
            drift_alarms=getattr(state.forecaster, "drift_alarms", 0),
        )
