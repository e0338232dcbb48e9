"""Accuracy of realised forecasts next to the persistence baseline, per symbol.

The persistence (naive) forecast says the next close equals the last close; every
report shows it beside the model (ARCHITECTURE.md, "Forecast semantics").
Latency percentiles use the nearest-rank method.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Protocol, Sequence


class RealisedForecast(Protocol):
    """What :func:`summarise` reads from a stored prediction (prices in quote currency)."""

    last_close: float
    predicted_close: float
    lower: float
    upper: float
    latency_ms: int
    realised_close: float | None


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile ``q`` in [0, 100] of ``values`` (NaN when empty)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class ForecastSummary:
    """Scores of one symbol's forecasts.

    ``mae_model``/``mae_persistence`` are mean absolute errors in quote currency over
    the ``realised`` predictions; ``coverage`` is the share of realised closes inside
    the interval; latencies in ms (tick ingest to prediction).
    """

    predictions: int
    realised: int
    mae_model: float
    mae_persistence: float
    coverage: float
    latency_p50_ms: float
    latency_p99_ms: float

    @property
    def mae_ratio(self) -> float:
        """``mae_model / mae_persistence`` (< 1: better than persistence; NaN if undefined)."""
        return self.mae_model / self.mae_persistence if self.mae_persistence else math.nan


def summarise(records: Iterable[RealisedForecast]) -> ForecastSummary:
    """Score ``records`` (one symbol's predictions, realised or not)."""
    records = list(records)
    done = [r for r in records if r.realised_close is not None]
    n = len(done)
    latencies = [r.latency_ms for r in records]

    def mean(values: list[float]) -> float:
        return sum(values) / len(values) if values else math.nan

    return ForecastSummary(
        predictions=len(records),
        realised=n,
        mae_model=mean([abs(r.predicted_close - r.realised_close) for r in done]),
        mae_persistence=mean([abs(r.last_close - r.realised_close) for r in done]),
        coverage=mean([1.0 if r.lower <= r.realised_close <= r.upper else 0.0 for r in done]),
        latency_p50_ms=percentile(latencies, 50),
        latency_p99_ms=percentile(latencies, 99),
    )
