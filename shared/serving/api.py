"""The HTTP API over the history store: validate the request, query, shape the JSON answer.

The HTTP functions (``functions/api.py``) and the local web host are thin
drivers of :class:`HistoryApi`; nothing here knows about Azure Functions.

Symbols in URLs
---------------
A symbol is written ``exchange:SYMBOL`` with every ``/`` of the exchange-native
symbol written as ``-`` (``kraken:BTC-USD`` for Kraken's ``BTC/USD``,
``binance:BTCUSDT``, ``coinbase:BTC-USD``); case does not matter, and a
percent-encoded ``/`` (``kraken:BTC%2FUSD``) is accepted too. The exchange may
be left out when only one configured exchange lists the symbol. Only the pairs
of the ``SYMBOLS`` setting are served; :meth:`HistoryApi.symbols` lists them
with their URL ids.

Units
-----
Prices in the quote currency of the symbol (USD for ``BTC/USD``, USDT for
``BTCUSDT``), volumes in the base asset, times in integer ms since the Unix
epoch, UTC (field names end in ``_ms``), ratios and shares as fractions in
[0, 1]. Every JSON answer repeats this in a ``units`` object.

Errors
------
A bad request gets status 400 and ``{"error": {"status": 400, "parameter": ...,
"message": ...}}`` saying what is wrong and how to fix it (rules in
:mod:`shared.serving.params`: ``from``/``to`` ranges, unit mistakes, unknown query
parameters); an unreachable database gets 503 with the same body. Unmatched routes
and methods under ``/api`` get 404/405 in that form too (:mod:`shared.serving.openapi`).
Queries are parameterised SQLAlchemy Core (see :class:`shared.storage.history.HistoryStore`).
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from shared.serving.params import (  # noqa: F401 - re-exported: the API's parameter rules
    TIME_RANGE_MS,
    ApiError,
    SymbolIndex,
    check_known,
    error_body,
    parse_int,
    parse_time_ms,
    url_id,
)
from shared.storage.history import HistoryStore, PredictionRecord, VersionAccuracy

log = logging.getLogger(__name__)

UNITS = {
    "prices": "quote currency of the symbol (e.g. USD for BTC/USD, USDT for BTCUSDT)",
    "volumes": "base asset",
    "times": "ms since the Unix epoch, UTC (fields ending in _ms)",
    "shares": "fractions in [0, 1]",
}
"""The ``units`` object of every JSON answer."""

PREDICTIONS_LIMIT = (60, 1, 1000)
"""``limit`` of ``/predictions``: (default, least, most)."""
BARS_LIMIT = (240, 1, 5000)
"""``limit`` of ``/bars``: (default, least, most)."""
ACCURACY_WINDOW_MINUTES = (60, 1, 43_200)
"""``window`` of ``/accuracy`` in minutes: (default, least, most = 30 days)."""
QUERY: dict[str, tuple[str, ...]] = {
    "predictions": ("limit",), "bars": ("from", "to", "limit"), "accuracy": ("window",),
    "symbols": (), "health": (),
}
"""Query parameters each route takes; any other name is refused (400)."""

@dataclass(frozen=True)
class ApiResponse:
    """An HTTP answer: ``status``, a JSON-able ``body`` and extra ``headers``."""

    status: int
    body: Mapping[str, Any]
    headers: Mapping[str, str] = field(default_factory=dict)

    def text(self) -> str:
        """``body`` as compact JSON; NaN and infinities become ``null``."""
        return json.dumps(_finite(self.body), separators=(",", ":"), allow_nan=False)

    @classmethod
    def error(cls, err: ApiError) -> ApiResponse:
        """The JSON error answer for ``err``."""
        return cls(err.status, error_body(err.status, err.message, err.parameter), JSON_HEADERS)


JSON_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
"""Headers of every JSON answer (besides ``Content-Type: application/json``)."""


def _finite(value: Any) -> Any:
    """``value`` with non-finite floats replaced by ``None``, recursively."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


# -- the API -------------------------------------------------------------------------------


def _prediction_json(p: PredictionRecord) -> dict[str, Any]:
    return {
        "target_time_ms": p.target_time_ms,
        "made_at_ms": p.made_at_ms,
        "last_close": p.last_close,
        "predicted_close": p.predicted_close,
        "lower": p.lower,
        "upper": p.upper,
        "interval_level": p.interval_level,
        "model_version": p.model_version,
        "latency_ms": p.latency_ms,
        "drift_alarms": p.drift_alarms,
        "realised_close": p.realised_close,
    }


def accuracy_json(rows: Sequence[VersionAccuracy]) -> dict[str, Any]:
    """Scores of the summed ``rows`` (one model version, or all of them together).

    ``mae_model``/``mae_persistence`` are mean absolute errors in quote currency,
    ``mae_ratio`` their ratio (< 1: the model beats persistence), ``directional_accuracy``
    the share of realised moves whose direction the model called, ``coverage`` the
    share of realised closes inside the interval; ``None`` where undefined.
    """
    n = sum(r.realised for r in rows)
    moves = sum(r.moves for r in rows)
    mae_model = sum(r.abs_error_model for r in rows) / n if n else None
    mae_persistence = sum(r.abs_error_persistence for r in rows) / n if n else None
    return {
        "realised_count": n,
        "mae_model": mae_model,
        "mae_persistence": mae_persistence,
        "mae_ratio": mae_model / mae_persistence if mae_model is not None and mae_persistence else None,
        "directional_accuracy": sum(r.direction_hits for r in rows) / moves if moves else None,
        "moves": moves,
        "coverage": sum(r.covered for r in rows) / n if n else None,
        "interval_level": sum(r.interval_level * r.realised for r in rows) / n if n else None,
        "first_target_time_ms": min((r.first_target_time_ms for r in rows), default=None),
        "last_target_time_ms": max((r.last_target_time_ms for r in rows), default=None),
    }


def direction_counts(records: Sequence[PredictionRecord]) -> dict[str, list[int]]:
    """``{model_version: [up moves, down moves]}`` of the realised records (close above / below the last close)."""
    counts: dict[str, list[int]] = {}
    for r in records:
        if r.realised_close is None or r.realised_close == r.last_close:
            continue
        counts.setdefault(r.model_version, [0, 0])[0 if r.realised_close > r.last_close else 1] += 1
    return counts


def majority_json(up_down: Sequence[int]) -> dict[str, Any]:
    """``moves_up``, ``moves_down`` and ``majority_direction_rate``: the share of the moves in the more
    frequent direction, i.e. the direction-call rate of a forecaster that always called that direction
    (in hindsight) - the baseline beside ``directional_accuracy``; ``None`` without moves.

    Examples
    --------
    >>> majority_json([3, 1])
    {'moves_up': 3, 'moves_down': 1, 'majority_direction_rate': 0.75}
    """
    up, down = up_down
    return {"moves_up": up, "moves_down": down,
            "majority_direction_rate": max(up, down) / (up + down) if up + down else None}


class HistoryApi:
    """The read API of tickcast: predictions, bars, live accuracy, symbols and health.

    Every method takes the raw route/query values, validates them, and returns an
    :class:`ApiResponse` (never raises for bad input or an unreachable database).

    Parameters
    ----------
    open_store : callable returning a HistoryStore
        Opens the history store; called on first use (and again after a failure),
        so the app starts even while the database is down.
    symbols : sequence of (exchange, SYMBOL)
        The served pairs (``Settings.symbols``).
    clock : callable, optional
        Wall clock in ms since epoch UTC (for ``checked_at_ms`` of the health answer).

    Raises
    ------
    ValueError
        Two configured pairs share a URL id.
    """

    def __init__(
        self,
        open_store: Callable[[], HistoryStore],
        symbols: Sequence[tuple[str, str]],
        clock: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    ) -> None:
        self.index = SymbolIndex(symbols)
        self._open_store = open_store
        self._store: HistoryStore | None = None
        self._lock = threading.Lock()
        self.clock = clock

    @classmethod
    def from_settings(cls, settings: Any) -> HistoryApi:
        """The API over ``MYSQL_URL`` (or the SQLite file) serving ``SYMBOLS``."""
        return cls(lambda: HistoryStore.from_settings(settings), settings.symbols)

    def close(self) -> None:
        """Close the store, if it was opened."""
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None

    def store(self) -> HistoryStore:
        """The history store, opened on first use.

        Raises
        ------
        ApiError
            Status 503 when it cannot be opened.
        """
        with self._lock:
            if self._store is None:
                try:
                    self._store = self._open_store()
                except (SQLAlchemyError, OSError) as exc:
                    log.error("history store unavailable: %s", exc)
                    raise ApiError(f"history store unavailable ({type(exc).__name__})", status=503) from None
            return self._store

    def _answer(self, build: Callable[[], dict[str, Any]]) -> ApiResponse:
        try:
            return ApiResponse(200, build(), JSON_HEADERS)
        except ApiError as err:
            return ApiResponse(err.status, ApiResponse.error(err).body, JSON_HEADERS)
        except SQLAlchemyError as exc:
            log.error("history store query failed: %s", exc)
            err = ApiError(f"history store unavailable ({type(exc).__name__})", status=503)
            return ApiResponse(503, ApiResponse.error(err).body, JSON_HEADERS)

    def _head(self, exchange: str, symbol: str) -> dict[str, Any]:
        return {"id": url_id(exchange, symbol), "exchange": exchange, "symbol": symbol, "units": UNITS}

    def predictions(self, symbol: str | None, params: Mapping[str, str]) -> ApiResponse:
        """``GET /api/predictions/{symbol}?limit=``: the ``limit`` latest predictions, oldest first.

        ``limit``: 1 to 1000, default 60. Each item has ``target_time_ms``,
        ``made_at_ms``, ``last_close``, ``predicted_close``, ``lower``, ``upper``,
        ``interval_level``, ``model_version``, ``latency_ms``, ``drift_alarms`` and
        ``realised_close`` (``null`` until the target minute's bar is stored).
        """

        def build() -> dict[str, Any]:
            exchange, sym = self.index.resolve(symbol)
            check_known(params, QUERY["predictions"])
            limit = parse_int(params, "limit", PREDICTIONS_LIMIT)
            rows = self.store().recent_predictions(exchange, sym, limit)
            return {**self._head(exchange, sym), "limit": limit, "count": len(rows),
                    "predictions": [_prediction_json(r) for r in rows]}

        return self._answer(build)

    def bars(self, symbol: str | None, params: Mapping[str, str]) -> ApiResponse:
        """``GET /api/bars/{symbol}?from=&to=&limit=``: closed one-minute bars, oldest first.

        ``from``/``to`` bound the minute open times (``from <= open_time_ms < to``),
        as ms since epoch or ISO 8601; ``limit`` 1 to 5000, default 240. With
        ``from``, the oldest ``limit`` bars from it; otherwise the newest ``limit``
        bars before ``to`` (or the newest overall). ``truncated`` says whether
        the range held more bars than ``limit``.
        """

        def build() -> dict[str, Any]:
            exchange, sym = self.index.resolve(symbol)
            check_known(params, QUERY["bars"])
            start, end = parse_time_ms(params, "from"), parse_time_ms(params, "to")
            if start is not None and end is not None and start >= end:
                raise ApiError(f"from ({start} ms) must be before to ({end} ms)", "from")
            limit = parse_int(params, "limit", BARS_LIMIT)
            store = self.store()
            if start is not None:
                rows = store.bars(exchange, sym, start, end, limit + 1)
                truncated, rows = len(rows) > limit, rows[:limit]
            else:
                rows = store.latest_bars(exchange, sym, limit + 1, end)
                truncated, rows = len(rows) > limit, rows[-limit:]
            return {
                **self._head(exchange, sym), "from_ms": start, "to_ms": end, "limit": limit,
                "count": len(rows), "truncated": truncated,
                "bars": [
                    {"open_time_ms": b.open_time_ms, "open": b.open, "high": b.high, "low": b.low,
                     "close": b.close, "volume": b.volume, "trade_count": b.trade_count}
                    for b in rows
                ],
            }

        return self._answer(build)

    def accuracy(self, symbol: str | None, params: Mapping[str, str]) -> ApiResponse:
        """``GET /api/accuracy/{symbol}?window=``: live accuracy of the realised forecasts.

        ``window``: minutes of target times, 1 to 43200 (30 days), default 60,
        ending with the newest realised target minute (so a replay of old trades
        is scored like live data). Returns ``overall`` and ``by_model_version``
        (oldest version first), each with the fields of :func:`accuracy_json`.
        """

        def build() -> dict[str, Any]:
            exchange, sym = self.index.resolve(symbol)
            check_known(params, QUERY["accuracy"])
            window = parse_int(params, "window", ACCURACY_WINDOW_MINUTES)
            store = self.store()
            last = store.last_realised_target_ms(exchange, sym)
            rows: list[VersionAccuracy] = []
            start = end = None
            moves: dict[str, list[int]] = {}
            if last is not None:
                end = last + 60_000
                start = max(0, end - window * 60_000)
                rows = store.accuracy_by_version(exchange, sym, start, end)
                moves = direction_counts(store.predictions(exchange, sym, start, end))
            every = [sum(c[0] for c in moves.values()), sum(c[1] for c in moves.values())]
            return {
                **self._head(exchange, sym), "window_minutes": window, "from_ms": start, "to_ms": end,
                "overall": {**accuracy_json(rows), **majority_json(every)},
                "by_model_version": [
                    {"model_version": r.model_version, **accuracy_json([r]),
                     **majority_json(moves.get(r.model_version, [0, 0]))}
                    for r in rows
                ],
            }

        return self._answer(build)

    def symbols(self, params: Mapping[str, str] | None = None) -> ApiResponse:
        """``GET /api/symbols``: the served pairs, each with its URL ``id`` (no query parameters)."""
        try:
            check_known(params or {}, QUERY["symbols"])
        except ApiError as err:
            return ApiResponse.error(err)
        return ApiResponse(200, {"symbols": [
            {"id": url_id(e, s), "exchange": e, "symbol": s} for e, s in self.index.pairs
        ]}, JSON_HEADERS)

    def health(self, params: Mapping[str, str] | None = None) -> ApiResponse:
        """``GET /api/health``: 200 ``{"status": "ok"}`` when the history store answers, else 503."""
        try:
            check_known(params or {}, QUERY["health"])
        except ApiError as err:
            return ApiResponse.error(err)
        checked = self.clock()
        try:
            self.store().ping()
        except ApiError as err:
            return ApiResponse(503, {"status": "unavailable", "database": err.message, "checked_at_ms": checked},
                               JSON_HEADERS)
        except SQLAlchemyError as exc:
            log.error("health check failed: %s", exc)
            return ApiResponse(503, {"status": "unavailable", "database": f"unreachable ({type(exc).__name__})",
                                     "checked_at_ms": checked}, JSON_HEADERS)
        return ApiResponse(200, {"status": "ok", "database": "ok", "checked_at_ms": checked,
                                 "symbols": len(self.index.pairs)}, JSON_HEADERS)
