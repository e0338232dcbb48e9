"""Request parameters of the HTTP API: symbols in URLs, whole numbers, times, booleans, unknown names.

Every parser takes the raw text a client sent and either returns a value or raises
:class:`ApiError` (status 400) with the parameter at fault and a message that names the fix.
Nothing here raises anything else, whatever the input (``tests/integration/test_api_fuzz.py``
drives every route with hypothesis).

Times
-----
``from``/``to`` are ms since the Unix epoch, UTC, or an ISO 8601 date-time, and must lie in
:data:`TIME_RANGE_MS`: from 2009-01-03T00:00:00Z (Bitcoin's genesis block; no crypto trade is
older) to 2100-01-01T00:00:00Z (far beyond any stored minute). The bounds are chosen so that
the usual unit mistakes fall outside and are recognised: a time of this century in seconds
(``1561942680``) read as ms is in January 1970, and one in microseconds or nanoseconds is
past the year 40000; the answer says which unit it looks like and gives the value in ms.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from urllib.parse import unquote

_WHOLE = re.compile(r"[+-]?[0-9]{1,20}")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class ApiError(ValueError):
    """A request the API refuses: ``status`` (400, 404, 405, 503), the ``parameter`` at fault, and why."""

    def __init__(self, message: str, parameter: str | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.parameter = parameter
        self.status = status


def error_body(status: int, message: str, parameter: str | None = None) -> dict:
    """The JSON body of every error answer under ``/api``.

    Examples
    --------
    >>> error_body(404, "no route GET /api/nope")
    {'error': {'status': 404, 'parameter': None, 'message': 'no route GET /api/nope'}}
    """
    return {"error": {"status": status, "parameter": parameter, "message": message}}


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
    """Resolves URL symbols (see :mod:`shared.serving.api`) to configured ``(exchange, SYMBOL)`` pairs.

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


# -- query parameters ----------------------------------------------------------------------


def check_known(params: Mapping[str, str], known: Collection[str]) -> None:
    """Refuse query parameters a route does not take (a typo such as ``form=`` is not ignored).

    Raises
    ------
    ApiError
        ``params`` has a name outside ``known``.

    Examples
    --------
    >>> check_known({"limit": "5"}, ["limit"])
    >>> check_known({"form": "5"}, ["from", "to"])
    Traceback (most recent call last):
    ...
    shared.serving.params.ApiError: unknown query parameter 'form'; this route takes: from, to
    """
    for name in params:
        if name not in known:
            takes = ", ".join(known) or "no query parameters"
            raise ApiError(f"unknown query parameter {name[:40]!r}; this route takes: {takes}", name[:40])


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
    if not _WHOLE.fullmatch(text):
        raise ApiError(f"{name} must be a whole number from {least} to {most}, got {text[:40]!r}", name)
    value = int(text, 10)
    if not least <= value <= most:
        raise ApiError(f"{name} must be from {least} to {most}, got {value}", name)
    return value


def parse_bool(params: Mapping[str, str], name: str, default: bool = False) -> bool:
    """Query parameter ``name`` as ``true``/``false`` (also ``1``/``0``, any case).

    Raises
    ------
    ApiError
        Another value.

    Examples
    --------
    >>> parse_bool({"refused": "TRUE"}, "refused"), parse_bool({}, "refused")
    (True, False)
    """
    text = (params.get(name) or "").strip().lower()
    if not text:
        return default
    if text in ("true", "1"):
        return True
    if text in ("false", "0"):
        return False
    raise ApiError(f"{name} must be true or false, got {text[:40]!r}", name)


TIME_RANGE_MS = (1_230_940_800_000, 4_102_444_800_000)
"""Plausible ``from``/``to``: [2009-01-03T00:00:00Z, 2100-01-01T00:00:00Z), ms since epoch UTC (module docstring)."""

_UNITS = (("seconds", 1000), ("microseconds", 1 / 1000), ("nanoseconds", 1 / 1_000_000))


def _iso(ms: float) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time_ms(params: Mapping[str, str], name: str) -> int | None:
    """Query parameter ``name`` as ms since epoch UTC, or ``None`` when absent.

    Accepts integer milliseconds since the Unix epoch (``1723161240000``) or an
    ISO 8601 date-time (``2024-08-08T23:54:00Z``, ``2024-08-09T01:54+02:00``,
    ``2024-08-08``); one without a UTC offset is taken as UTC. The time must lie in
    :data:`TIME_RANGE_MS`.

    Raises
    ------
    ApiError
        Neither form, or outside the range; a number that is a plausible time in
        seconds, microseconds or nanoseconds gets "looks like seconds; pass ms: ...".

    Examples
    --------
    >>> parse_time_ms({"from": "2024-08-08T23:54:00Z"}, "from"), parse_time_ms({"from": "1723161240000"}, "from")
    (1723161240000, 1723161240000)
    >>> parse_time_ms({"from": "1561942680"}, "from")
    Traceback (most recent call last):
    ...
    shared.serving.params.ApiError: from=1561942680 looks like seconds since the epoch; pass ms: from=1561942680000 (2019-07-01T00:58:00Z)
    """
    text = (params.get(name) or "").strip()
    if not text:
        return None
    least, most = TIME_RANGE_MS
    if text.isascii() and text.isdigit():
        if len(text) > 22:
            raise ApiError(f"{name} has {len(text)} digits: pass ms since the Unix epoch, e.g. 1723161240000", name)
        value = int(text)
        if least <= value < most:
            return value
        for unit, factor in _UNITS:
            if least <= value * factor < most:
                ms = int(value * factor)
                raise ApiError(f"{name}={text} looks like {unit} since the epoch; pass ms: {name}={ms}"
                               f" ({_iso(ms)})", name)
        raise ApiError(f"{name}={text[:40]} ms is {'before 2009-01-03' if value < least else 'after 2099'}:"
                       f" {name} must lie from 2009-01-03 to 2099 (ms since the Unix epoch, or ISO 8601)", name)
    try:
        moment = datetime.fromisoformat(text)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        value = (moment - _EPOCH) // timedelta(milliseconds=1)
    except (ValueError, OverflowError, TypeError):
        raise ApiError(
            f"{name} must be ms since the Unix epoch or an ISO 8601 time such as 2024-08-08T23:54:00Z,"
            f" got {text[:40]!r}",
            name,
        ) from None
    if not least <= value < most:
        raise ApiError(f"{name}={text[:40]} is outside 2009-01-03 to 2099, where market data can be", name)
    return value
