"""What the valid trades must give: bars from the trades themselves, predictions from the same engine.

Bars come straight from the recorded trades through :class:`shared.stream.bars.BarBuilder`
(every minute that a later trade closed; the last minute stays open). Predictions come from a
:class:`shared.serving.engine.ForecastEngine` fed the same trades in one process, starting from
the champion the suite registered (no warm-up bars: every scenario starts on an empty history
store). Neither depends on wall time, so any run of the functions on these trades must produce
exactly these events, whatever fails on the way.

Keys: bars by ``(exchange, symbol, open_time_ms)``, predictions by ``(exchange, symbol,
target_time_ms)`` (ms since epoch UTC). :data:`PREDICTION_FIELDS` are compared (``made_at_ms`` and
``latency_ms`` are wall-clock and are not).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from shared.contracts.events import Bar, Prediction, Tick

__all__ = ["BAR_FIELDS", "Expected", "PREDICTION_FIELDS", "expected_events", "recorded_ticks"]

BAR_FIELDS = ("open", "high", "low", "close", "volume", "trade_count")
"""Bar fields compared (prices in quote currency, volume in base currency)."""
PREDICTION_FIELDS = ("last_close", "predicted_close", "lower", "upper", "model_version")
"""Prediction fields compared."""

Key = tuple[str, str, int]


@dataclass
class Expected:
    """The bars and predictions the valid trades must give, by key, and the trades' span."""

    bars: dict[Key, Bar]
    predictions: dict[Key, Prediction]
    ticks: int
    first_event_ms: int
    last_event_ms: int


def recorded_ticks(path: str | Path, limit: int | None = None) -> list[Tick]:
    """The ticks of a recorded trade file, in file order, as ``python -m ingestor replay --limit`` publishes them."""
    from ingestor.replay import merged_records

    ticks = (r.tick for r in merged_records([path]) if r.tick is not None)
    return list(itertools.islice(ticks, limit))


def expected_events(ticks: Iterable[Tick], model: object, version: str, interval_level: float) -> Expected:
    """Bars and predictions of ``ticks``, starting every symbol from ``model`` (registry ``version``).

    Raises
    ------
    ValueError
        No tick.
    """
    from shared.serving.engine import ForecastEngine
    from shared.stream.bars import BarBuilder

    ticks = list(ticks)
    if not ticks:
        raise ValueError("no valid tick")
    builders: dict[tuple[str, str], BarBuilder] = {}
    bars: dict[Key, Bar] = {}
    for t in ticks:
        builder = builders.setdefault((t.exchange, t.symbol), BarBuilder(t.exchange, t.symbol))
        bar = builder.add(t)
        if bar is not None:
            bars[(bar.exchange, bar.symbol, bar.open_time_ms)] = bar
    engine = ForecastEngine(lambda exchange, symbol: (model, version), interval_level=interval_level)
    predictions = {(e.exchange, e.symbol, e.target_time_ms): e for e in engine.process(ticks)
                   if isinstance(e, Prediction)}
    return Expected(bars, predictions, len(ticks), min(t.event_time_ms for t in ticks),
                    max(t.event_time_ms for t in ticks))
