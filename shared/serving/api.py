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
"message": ...}}`` saying what is wrong; an unreachable database gets 503.
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
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

from sqlalchemy.exc import SQLAlchemyError

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
_MAX_TIME_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z


class ApiError(ValueError):
    """A request the API refuses: ``status`` (400, 404, 503), the ``parameter`` at fault, and why."""

    def __init__(self, message: str, parameter: str | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.parameter = parameter
        self.status = status


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
        return cls(err.status, {"error": {"status": err.status, "parameter": err.parameter, "message": err.message}})


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


# -- symbols -------------------------------------------------------------------------------


def url_id(exchange: str, symbol: str) -> str:
    """The URL form of a pair: ``exchange:SYMBOL`` with ``/`` written as ``-``.

    Examples
    --------
    >>> url_id("kraken", "BTC/USD")
    'kraken:BTC-USD'
    """
    return f"{exchange}:{symbol.replace('/', '-')}"


class SymbolIndex:
    """Resolves URL symbols (see the module docstring) to configured ``(exchange, SYMBOL)`` pairs.

    Parameters
    ----------
    pairs : sequence of (exchange, SYMBOL)
        The configured pairs (``Settings.symbols``).

    Raises
    ------
    ValueError
        Two configured pairs have the same URL id (e.g. ``x:A/B`` and ``x:A-B``).

    Examples
    --------
    >>> index = SymbolIndex([("kraken", "BTC/USD"), ("binance", "BTCUSDT")])
    >>> index.resolve("KRAKEN:btc-usd"), index.resolve("kraken:BTC%2FUSD"), index.resolve("btcusdt")
    (('kraken', 'BTC/USD'), ('kraken', 'BTC/USD'), ('binance', 'BTCUSDT'))
    """

    def __init__(self, pairs: Sequence[tuple[str, str]]) -> None:
        self.pairs = tuple(pairs)
        self._by_id: dict[str, tuple[str, str]] = {}
        for exchange, symbol in self.pairs:
            key = self._key(url_id(exchange, symbol))
            if key in self._by_id:
                raise ValueError(f"SYMBOLS lists two pairs with the URL id {url_id(exchange, symbol)!r}")
            self._by_id[key] = (exchange, symbol)

    @staticmethod
    def _key(text: str) -> str:
        return text.strip().replace("/", "-").upper()

    def ids(self) -> list[str]:
        """URL ids of the configured pairs, in configuration order."""
        return [url_id(e, s) for e, s in self.pairs]

    def resolve(self, text: str | None) -> tuple[str, str]:
        """The configured pair that ``text`` names.

        Raises
        ------
        ApiError
            Empty, too long, not configured, or (without an exchange) listed by several exchanges.
        """
        raw = unquote(text or "").strip()
        if not raw:
            raise ApiError("symbol is missing: use exchange:SYMBOL, e.g. " + self._examples(), "symbol")
        if len(raw) > 100:
            raise ApiError("symbol is longer than 100 characters", "symbol")
        if ":" in raw:
            found = self._by_id.get(self._key(raw))
            if found is not None:
                return found
        else:
            matches = [pair for key, pair in self._by_id.items() if key.split(":", 1)[1] == self._key(raw)]
            if len(matches) == 1:
                return matches[0]
            if len(matches) > 1:
                raise ApiError(
                    f"symbol {raw!r} is listed by several exchanges; name one: "
                    + ", ".join(url_id(*m) for m in matches),
                    "symbol",
                )
        raise ApiError(f"symbol {raw!r} is not served; configured symbols: {self._examples()}", "symbol")

    def _examples(self) -> str:
        return ", ".join(self.ids()) or "(none: the SYMBOLS setting is empty)"


# -- parameters ----------------------------------------------------------------------------


def parse_int(params: Mapping[str, str], name: str, bounds: tuple[int, int, int]) -> int:
    """Query parameter ``name`` as an integer within ``bounds`` = (default, least, most).

    Raises
    ------
    ApiError
        Not a whole number, or out of bounds.

    Examples
    --------
    >>> parse_int({"limit": "25"}, "limit", (60, 1, 1000)), parse_int({}, "limit", (60, 1, 1000))
    (25, 60)
    """
    default, least, most = bounds
    text = (params.get(name) or "").strip()
    if not text:
        return default
    try:
        value = int(text, 10)
    except ValueError:
        raise ApiError(f"{name} must be a whole number from {least} to {most}, got {text[:40]!r}", name) from None
    if not least <= value <= most:
        raise ApiError(f"{name} must be from {least} to {most}, got {value}", name)
    return value


def parse_time_ms(params: Mapping[str, str], name: str) -> int | None:
    """Query parameter ``name`` as ms since epoch UTC, or ``None`` when absent.

    Accepts integer milliseconds since the Unix epoch (``1723161240000``) or an
    ISO 8601 date-time (``2024-08-08T23:54:00Z``, ``2024-08-09T01:54+02:00``);
    one without a UTC offset is taken as UTC.

    Raises
    ------
    ApiError
        Neither form, or outside year 1970 to 9999.

    Examples
    --------
    >>> parse_time_ms({"from": "2024-08-08T23:54:00Z"}, "from"), parse_time_ms({"from": "60000"}, "from")
    (1723161240000, 60000)
    """
    text = (params.get(name) or "").strip()
    if not text:
        return None
    if text.isdigit():
        value = int(text)
    else:
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise ApiError(
                f"{name} must be ms since the Unix epoch or an ISO 8601 time such as 2024-08-08T23:54:00Z,"
                f" got {text[:40]!r}",
                name,
            ) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        value = int(moment.timestamp() * 1000)
    if not 0 <= value <= _MAX_TIME_MS:
        raise ApiError(f"{name} must lie between 1970 and 9999, got {text[:40]!r}", name)
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
            window = parse_int(params, "window", ACCURACY_WINDOW_MINUTES)
            store = self.store()
            last = store.last_realised_target_ms(exchange, sym)
            rows: list[VersionAccuracy] = []
            start = end = None
            if last is not None:
                end = last + 60_000
                start = max(0, end - window * 60_000)
                rows = store.accuracy_by_version(exchange, sym, start, end)
            return {
                **self._head(exchange, sym), "window_minutes": window, "from_ms": start, "to_ms": end,
                "overall": accuracy_json(rows),
                "by_model_version": [{"model_version": r.model_version, **accuracy_json([r])} for r in rows],
            }

        return self._answer(build)

    def symbols(self) -> ApiResponse:
        """``GET /api/symbols``: the served pairs, each with its URL ``id``."""
        return ApiResponse(200, {"symbols": [
            {"id": url_id(e, s), "exchange": e, "symbol": s} for e, s in self.index.pairs
        ]}, JSON_HEADERS)

    def health(self) -> ApiResponse:
        """``GET /api/health``: 200 ``{"status": "ok"}`` when the history store answers, else 503."""
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
