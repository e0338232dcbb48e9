"""The ``predict`` use case: a batch of raw tick events in, bar and prediction events out.

Decoding and validation happen here, event by event: a malformed tick is counted,
logged with its position and set aside as a dead letter, and the rest of the
batch is processed. Valid ticks go through :class:`shared.serving.engine.ForecastEngine`.
The Azure Function and the local stack are two thin drivers of :class:`PredictService`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from shared.contracts.batches import BatchResult, RawEvent
from shared.lifecycle.champions import ChampionSource
from shared.serving.engine import ForecastEngine, Warmup
from shared.contracts.events import MalformedEventError, Tick, decode_tick, encode
from shared.lifecycle.registry import ModelRegistry

log = logging.getLogger(__name__)


class PredictService:
    """Decode, validate and forecast one batch of tick events at a time.

    Parameters
    ----------
    engine : the stateful per-symbol engine (kept across batches).
    source : name of the input hub, used in dead letters (default ``ticks``).
    """

    def __init__(self, engine: ForecastEngine, source: str = "ticks") -> None:
        self.engine = engine
        self.source = source
        self.closers: list[Callable[[], None]] = []
        """Called by :meth:`close` (e.g. the history store used for warm-up)."""

    def close(self) -> None:
        """Release what the service holds (database connections); the engine state is dropped."""
        for close in self.closers:
            close()
        self.closers.clear()

    def handle(self, batch: Iterable[RawEvent]) -> BatchResult:
        """Process one batch; returns encoded bar/prediction events and dead letters."""
        result = BatchResult()
        ticks: list[Tick] = []
        raws: list[RawEvent] = []
        for raw in batch:
            try:
                ticks.append(decode_tick(raw.body))
                raws.append(raw)
            except MalformedEventError as exc:
                result.set_aside(self.source, raw, str(exc))
        result.counts["ticks"] += len(ticks)
        rejected: list[tuple[int, str, str]] = []
        for event in self.engine.process(ticks, rejected):
            result.outputs.append(encode(event))
            result.counts[event.type + "s"] += 1
        for index, counter, reason in rejected:
            result.set_aside(self.source, raws[index], reason, counter)
        skipped = {index for index, _, _ in rejected}
        for index, tick in enumerate(ticks):
            if index not in skipped:
                result.note_price(tick.exchange, tick.symbol, tick.price, tick.event_time_ms)
        return result


def build_predict_service(
    registry: ModelRegistry | None,
    default_key: str,
    interval_level: float,
    poll_seconds: float,
    clock: Callable[[], int] | None = None,
    *,
    checkpoint_seconds: float = 0.0,
    warmup: Warmup | None = None,
    forecast_model: str = "",
) -> PredictService:
    """Wire a :class:`PredictService` to a registry (``None``: every symbol starts cold).

    Parameters
    ----------
    registry : model registry, or ``None``.
    default_key : fallback model key (``MODEL_KEY``).
    interval_level : interval coverage of cold-start forecasters.
    poll_seconds : least time between two reads of a champion pointer (``MODEL_POLL_SECONDS``).
    clock : wall clock in ms since epoch UTC, for tests.
    checkpoint_seconds : least time between two checkpoints of a symbol's model; 0 = never.
    warmup : newest stored bars of a symbol (e.g. from the history store), for restarts.
    forecast_model : model family of cold-start forecasters.
    """
    source = (
        ChampionSource(registry, default_key, poll_seconds, checkpoint_seconds)
        if registry is not None
        else (lambda e, s: None)
    )
    engine = ForecastEngine(source, interval_level=interval_level, forecast_model=forecast_model, warmup=warmup)
    if clock is not None:
        engine.clock = clock
    return PredictService(engine)
