"""The ``predict`` use case: a batch of raw tick events in, bar and prediction events out.

Decoding and validation happen here, event by event: a malformed tick is counted,
logged with its position and set aside as a dead letter, and the rest of the
batch is processed. Valid ticks go through :class:`shared.engine.ForecastEngine`.
The Azure Function and the local stack are two thin drivers of :class:`PredictService`.
"""

from __future__ import annotations

import logging
import time
from typing import Callable, Iterable

from azure.core.exceptions import AzureError

from shared.batches import BatchResult, RawEvent
from shared.engine import ForecastEngine
from shared.events import MalformedEventError, Tick, decode_tick, encode
from shared.forecaster import ReturnForecaster
from shared.registry import ModelRegistry, RegistryError

log = logging.getLogger(__name__)


class RegistryModelSource:
    """Finds the starting model of a symbol in the registry, caching what it loaded.

    Looks up the champion (``current.json``) of ``default_key``; a result (or its
    absence) is reused for ``cache_seconds``. Registry errors (unreachable storage,
    a digest mismatch) are logged and the symbol starts cold rather than stalling
    the stream.
    """

    def __init__(self, registry: ModelRegistry, default_key: str, cache_seconds: float = 10.0) -> None:
        self.registry = registry
        self.default_key = default_key
        self.cache_seconds = cache_seconds
        self._cached: tuple[float, tuple[ReturnForecaster, str] | None] | None = None

    def __call__(self, exchange: str, symbol: str) -> tuple[ReturnForecaster, str] | None:
        now = time.monotonic()
        if self._cached is not None and now - self._cached[0] < self.cache_seconds:
            return self._cached[1]
        try:
            found = self.registry.load_current(self.default_key)
        except (RegistryError, AzureError) as exc:  # e.g. digest mismatch, storage unreachable
            log.error("cannot load model %r for %s %s: %s", self.default_key, exchange, symbol, exc)
            found = None
        result = None if found is None else (found[0], found[1].version)
        self._cached = (now, result)
        return result


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
        return result


def build_predict_service(
    registry: ModelRegistry | None, default_key: str, interval_level: float, cache_seconds: float,
    clock: Callable[[], int] | None = None,
) -> PredictService:
    """Wire a :class:`PredictService` to a registry (``None``: every symbol starts cold)."""
    source = RegistryModelSource(registry, default_key, cache_seconds) if registry else (lambda e, s: None)
    engine = ForecastEngine(source, interval_level=interval_level)
    if clock is not None:
        engine.clock = clock
    return PredictService(engine)
