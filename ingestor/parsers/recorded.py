"""Lazy readers for recorded trade files (plain or gzip), yielding :class:`RecordedTrade` items.

Supported formats, detected from the CSV header or, for websocket recordings, from
the line shape (see :func:`detect_format`):

``binance-csv``
    ``trade_time_ms,event_time_ms,recv_time_ns,trade_id,price,qty,is_buyer_maker,symbol``
    (Binance trades re-serialised from the ``@trade`` stream). The exchange is taken
    from the file name -- ``binance_usdm_...`` gives ``binance-usdm``, otherwise
    ``binance`` -- unless the caller passes ``exchange``.
``kraken-csv``
    ``time_ms,timestamp_utc,exchange,pair,side,price,amount``; the symbol is the pair
    as given (e.g. ``BTC/USD``), the side is the taker side, there is no trade id.
``ws``
    Raw websocket recordings, one message per line after a recorder prefix:
    ``<recv_ns> <json>`` (``*_ws_raw_*.txt.gz``), ``<t1> | <t2> | <t3> | <json>``, or
    ``<epoch_s>: <json>``. Lines starting with ``#`` are annotations. Each message
    goes through the same parser the live ingestor uses for its exchange
    (:mod:`~ingestor.parsers.binance`, :mod:`~ingestor.parsers.coinbase`,
    :mod:`~ingestor.parsers.kraken`), chosen from the ``exchange`` argument or, when
    the file name does not name the exchange, from the message's shape. Trades become
    ticks; every other message (book ticker, depth, heartbeat, reply) is skipped.
    A Kraken v2 message with several trades gives one item per trade (positions
    ``<file>:<line>``, ``<file>:<line>#2``, ...).

Every line after a CSV header gives exactly one :class:`RecordedTrade`: a tick, a
skip (a non-trade message, a blank or ``#`` line), or an error with its reason. The
readers never raise for bad content (a truncated gzip stream ends the iteration with
one final error item); they raise only for files that cannot be opened or whose
format cannot be recognised.

Units: prices in quote currency, quantities in base currency, times in ms since
the epoch, UTC.
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import io
import os
import re
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from shared.contracts.events import MalformedEventError, Tick, validate_tick
from ingestor.parsers import binance, coinbase, kraken
from ingestor.parsers.common import load_object

FORMATS = ("binance-csv", "kraken-csv", "ws")
"""Names of the recorded formats understood by :func:`read_recorded`."""

BINANCE_CSV_COLUMNS = (
    "trade_time_ms",
    "event_time_ms",
    "recv_time_ns",
    "trade_id",
    "price",
    "qty",
    "is_buyer_maker",
    "symbol",
)
KRAKEN_CSV_COLUMNS = ("time_ms", "timestamp_utc", "exchange", "pair", "side", "price", "amount")

_GZIP_MAGIC = b"\x1f\x8b"
_INT_PREFIX = re.compile(r"\d+")
_FLOAT_PREFIX = re.compile(r"\d+(?:\.\d*)?")


@dataclass(frozen=True, slots=True)
class RecordedTrade:
    """One line of a recorded file: a tick, a skipped non-trade line, or an error.

    Attributes
    ----------
    position : str
        ``<file name>:<line number>`` (1-based, header included), for logs and dead letters.
    time_ms : int or None
        Recorded exchange time of the trade, ms since epoch UTC (the tick's
        ``event_time_ms``). For skipped and bad lines, the last exchange time seen
        earlier in the same file (``None`` before the first trade), so a merge by
        time keeps such lines near their neighbours.
    tick : Tick or None
        The trade; ``ingest_time_ms`` is the recorded receive time where the file has
        one (``recv_time_ns`` / the websocket recorder's prefix), else the exchange
        time. Replay re-stamps it at publish time.
    error : str or None
        Why the line could not be turned into a tick (``tick`` is then ``None``).
    raw : str or None
        The offending line (for dead-lettering); set only when ``error`` is set.

    ``tick is None and error is None`` marks a skipped line: a non-trade websocket
    message (book ticker, depth update, REST snapshot) or an annotation / blank line.
    """

    position: str
    time_ms: int | None
    tick: Tick | None
    error: str | None = None
    raw: str | None = None

    @property
    def skipped(self) -> bool:
        """True for a line that is neither a trade nor an error."""
        return self.tick is None and self.error is None


def _open_text(path: str | os.PathLike[str]) -> io.TextIOBase:
    """Open ``path`` as UTF-8 text (undecodable bytes replaced), gunzipping if it is gzip."""
    with open(path, "rb") as probe:
        magic = probe.read(2)
    binary = gzip.open(path, "rb") if magic == _GZIP_MAGIC else open(path, "rb")
    return io.TextIOWrapper(binary, encoding="utf-8", errors="replace", newline="")


def exchange_from_name(path: str | os.PathLike[str], default: str = "binance") -> str:
    """Infer the exchange id from a recorded file's name.

    >>> exchange_from_name("data/binance_usdm_BTCUSDT_trades_x.csv.gz")
    'binance-usdm'
    >>> exchange_from_name("binance_spot_ETHUSDT_ws_raw_x.txt.gz")
    'binance'
    """
    name = os.path.basename(os.fspath(path)).lower()
    if name.startswith("binance_usdm_") or "_usdm_" in name:
        return "binance-usdm"
    if name.startswith("binance_spot_") or name.startswith("binance_"):
        return "binance"
    if name.startswith("kraken_"):
        return "kraken"
    if name.startswith("coinbase_"):
        return "coinbase"
    return default


def detect_format(path: str | os.PathLike[str]) -> str:
    """Return the format of a recorded file: one of :data:`FORMATS`.

    Looks at the first line that is neither blank nor a ``#`` annotation: a known CSV
    header gives ``binance-csv`` or ``kraken-csv``; a line containing a JSON object
    (``{``) after an optional recorder prefix gives ``ws``. A file with ``_ws_raw_``
    in its name is ``ws`` regardless.

    Raises
    ------
    ValueError
        The first content line is not a known header nor a websocket recording line.
    OSError
        The file cannot be read.
    """
    if "_ws_raw_" in os.path.basename(os.fspath(path)):
        return "ws"
    with _open_text(path) as f:
        try:
            for line in f:
                stripped = line.strip()
                if not stripped or stripped.startswith("#"):
                    continue
                header = tuple(c.strip().lower() for c in stripped.split(","))
                if header == BINANCE_CSV_COLUMNS:
                    return "binance-csv"
                if header == KRAKEN_CSV_COLUMNS:
                    return "kraken-csv"
                if "{" in stripped:
                    return "ws"
                raise ValueError(
                    f"{os.fspath(path)}: unrecognised recorded format, first line {stripped[:120]!r}"
                )
        except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
            raise ValueError(f"{os.fspath(path)}: unreadable gzip data: {exc}") from None
    raise ValueError(f"{os.fspath(path)}: empty file, cannot detect its format")


def split_ws_line(line: str) -> tuple[int | None, str]:
    """Split a websocket recording line into (receive time in ns or None, JSON text).

    Recognised prefixes: ``<recv_ns> `` (hftbacktest), ``<epoch_s>: `` (cryptofeed),
    ``<t1> | <t2> | <t3> | `` (local wall-clock times of unknown zone: time ``None``),
    and none at all. The JSON text starts at the first ``{``; a line without one is
    returned as ``(None, line)`` and will not parse as a message.

    >>> split_ws_line('1723161254087896568 {"e":"trade"}')
    (1723161254087896568, '{"e":"trade"}')
    >>> split_ws_line('1618677817.5: {"type":"match"}')
    (1618677817500000000, '{"type":"match"}')
    >>> split_ws_line('2022-05-22 01:45:02.97 | 2022-05-22 01:45:02.97 | x | {"e":"trade"}')
    (None, '{"e":"trade"}')
    """
    brace = line.find("{")
    if brace < 0:
        return None, line
    prefix = line[:brace].strip()
    text = line[brace:].rstrip("\r\n")
    if prefix.endswith(":"):
        prefix = prefix[:-1]
        if _FLOAT_PREFIX.fullmatch(prefix):
            whole, _, frac = prefix.partition(".")
            frac = (frac + "000000000")[:9]
            return int(whole) * 1_000_000_000 + int(frac), text
        return None, text
    if _INT_PREFIX.fullmatch(prefix):
        return int(prefix), text
    return None, text


def _split_csv(line: str) -> list[str]:
    if '"' in line:
        return next(csv.reader([line]))
    return line.split(",")


def read_recorded(
    path: str | os.PathLike[str],
    *,
    fmt: str | None = None,
    exchange: str | None = None,
) -> Iterator[RecordedTrade]:
    """Read a recorded trade file lazily, one :class:`RecordedTrade` per line.

    Parameters
    ----------
    path : path-like
        A recorded file, plain or gzip-compressed (detected from its magic bytes).
    fmt : str, optional
        One of :data:`FORMATS`; detected with :func:`detect_format` when omitted.
    exchange : str, optional
        Exchange id for Binance formats (``binance`` or ``binance-usdm``); inferred from
        the file name when omitted (:func:`exchange_from_name`). Kraken files carry
        their own ``exchange`` column, which wins unless this is given.

    Returns
    -------
    iterator of RecordedTrade
        In file order. The file is detected and checked now; it is opened and read
        only while the iterator is consumed, and closed when it is exhausted or closed.

    Raises
    ------
    ValueError
        Unknown ``fmt``, or a format that cannot be detected.
    OSError
        The file cannot be opened.

    Examples
    --------
    The Kraken hour shipped in the repository's ``samples/`` (2,672 trades, no bad line):

    >>> from pathlib import Path
    >>> samples = Path(__file__).resolve().parents[2] / "samples"
    >>> trades = list(read_recorded(samples / "kraken_XBTUSD_trades_20190701T00Z-01Z.csv.gz"))
    >>> len(trades), sum(r.tick is None for r in trades)
    (2672, 0)
    >>> first = trades[0]
    >>> first.position, first.tick.exchange, first.tick.symbol, first.tick.price, first.tick.quantity
    ('kraken_XBTUSD_trades_20190701T00Z-01Z.csv.gz:2', 'kraken', 'BTC/USD', 10749.4, 0.004)
    >>> first.tick.side, first.tick.event_time_ms, trades[-1].tick.price
    ('sell', 1561939203172, 11014.3)

    One-minute bars are not a recorded trade format:

    >>> read_recorded(samples / "ftx_BTC-PERP_1m_20211231-20220201.csv.gz")
    Traceback (most recent call last):
    ...
    ValueError: ...ftx_BTC-PERP_1m_20211231-20220201.csv.gz: unrecognised recorded format, first line ...
    """
    if fmt is None:
        fmt = detect_format(path)
    if fmt not in FORMATS:
        raise ValueError(f"unknown recorded format {fmt!r}; expected one of {FORMATS}")
    if not os.path.isfile(path):
        raise FileNotFoundError(path)
    name = os.path.basename(os.fspath(path))
    if fmt == "ws":
        explicit = exchange is not None or exchange_from_name(path, default="") != ""
        ws_exchange = exchange or exchange_from_name(path)
        return _records(path, name, lambda lines: _read_ws(lines, ws_exchange, explicit))
    if fmt == "binance-csv":
        exchange = exchange or exchange_from_name(path)
    return _records(path, name, lambda lines: _read_csv(lines, fmt, exchange))


_Lines = Iterator[tuple[str, str]]
"""``(position, line)`` pairs of a recorded file: position ``name:lineno``, the line with its newline."""


def _records(
    path: str | os.PathLike[str], name: str, read: Callable[[_Lines], Iterator[RecordedTrade]]
) -> Iterator[RecordedTrade]:
    """The records ``read`` makes of the file's ``(position, line)`` pairs (position ``name:lineno``);
    if the gzip stream breaks, one error record follows at the next line number, with the time of
    the record before it."""
    broken: list[tuple[str, str]] = []

    def lines() -> _Lines:
        lineno = 0
        with _open_text(path) as f:
            try:
                for line in f:
                    lineno += 1
                    yield f"{name}:{lineno}", line
            except (EOFError, zlib.error, gzip.BadGzipFile, OSError) as exc:
                reason = f"unreadable data after line {lineno}: {type(exc).__name__}: {exc}"
                broken.append((f"{name}:{lineno + 1}", reason))

    last_time: int | None = None
    for record in read(lines()):
        last_time = record.time_ms
        yield record
    for position, reason in broken:
        yield RecordedTrade(position, last_time, None, reason, None)


def _ws_parser(exchange: str, obj: object, explicit: bool):  # -> parse_message function
    """The parse_message function for one websocket message: by exchange, or by its shape."""
    if explicit or not isinstance(obj, dict) or binance.looks_like_binance(obj):
        family = exchange
    elif kraken.looks_like_kraken(obj):
        family = kraken.EXCHANGE
    elif coinbase.looks_like_coinbase(obj):
        family = coinbase.EXCHANGE
    else:
        family = exchange
    if family == kraken.EXCHANGE:
        return kraken.parse_message, family
    if family == coinbase.EXCHANGE:
        return coinbase.parse_message, family
    return binance.parse_message, family


def _read_ws(lines: _Lines, exchange: str, explicit: bool = True) -> Iterator[RecordedTrade]:
    last_time: int | None = None
    for position, line in lines:
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            yield RecordedTrade(position, last_time, None)
            continue
        recv_ns, text = split_ws_line(stripped)
        try:
            if not text.startswith("{"):
                raise MalformedEventError("no JSON object on the line")
            ingest_ms = recv_ns // 1_000_000 if recv_ns is not None else 0
            obj = load_object(text)
            parse, family = _ws_parser(exchange, obj, explicit)
            parsed = parse(obj, exchange=family, ingest_time_ms=ingest_ms)
            if parsed.errors:
                raise MalformedEventError("; ".join(parsed.errors)[:500])
        except MalformedEventError as exc:
            yield RecordedTrade(position, last_time, None, str(exc), line.rstrip("\r\n"))
            continue
        if not parsed.ticks:
            yield RecordedTrade(position, last_time, None)
            continue
        for k, tick in enumerate(parsed.ticks):
            if recv_ns is None:
                tick = dataclasses.replace(tick, ingest_time_ms=tick.event_time_ms)
            last_time = tick.event_time_ms
            yield RecordedTrade(position if k == 0 else f"{position}#{k + 1}", last_time, tick)


def _read_csv(lines: _Lines, fmt: str, exchange: str | None) -> Iterator[RecordedTrade]:
    expected = BINANCE_CSV_COLUMNS if fmt == "binance-csv" else KRAKEN_CSV_COLUMNS
    index: dict[str, int] | None = None
    last_time: int | None = None
    for position, line in lines:
        stripped = line.strip()
        if index is None:
            if not stripped or stripped.startswith("#"):
                yield RecordedTrade(position, last_time, None)
                continue
            header = [c.strip().lower() for c in _split_csv(stripped)]
            missing = [c for c in expected if c not in header]
            if missing:
                # not fatal for the caller's loop: every later line is reported as an error
                reason = f"header lacks columns {missing}"
                yield RecordedTrade(position, None, None, reason, line.rstrip("\r\n"))
                index = {}
                continue
            index = {c: header.index(c) for c in expected}
            width = len(header)
            continue
        if not stripped:
            yield RecordedTrade(position, last_time, None)
            continue
        try:
            if not index:
                raise MalformedEventError("no usable header")
            row = _split_csv(stripped)
            if len(row) != width:
                raise MalformedEventError(f"expected {width} fields, got {len(row)}")
            if fmt == "binance-csv":
                tick = _binance_row(row, index, exchange or "binance")
            else:
                tick = _kraken_row(row, index, exchange)
            tick = validate_tick(tick)
        except MalformedEventError as exc:
            yield RecordedTrade(position, last_time, None, str(exc), line.rstrip("\r\n"))
            continue
        last_time = tick.event_time_ms
        yield RecordedTrade(position, last_time, tick)


def _int_field(row: list[str], index: dict[str, int], column: str) -> int:
    value = row[index[column]].strip()
    try:
        return int(value)
    except ValueError:
        raise MalformedEventError(f"{column} is not an integer: {value[:40]!r}") from None


def _float_field(row: list[str], index: dict[str, int], column: str) -> float:
    value = row[index[column]].strip()
    try:
        return float(value)  # nan / inf / negative are rejected by validate_tick
    except ValueError:
        raise MalformedEventError(f"{column} is not a number: {value[:40]!r}") from None


def _binance_row(row: list[str], index: dict[str, int], exchange: str) -> Tick:
    maker = row[index["is_buyer_maker"]].strip().lower()
    if maker not in ("true", "false"):
        raise MalformedEventError(f"is_buyer_maker must be true or false, got {maker[:40]!r}")
    recv_ns = row[index["recv_time_ns"]].strip()
    trade_time = _int_field(row, index, "trade_time_ms")
    try:
        ingest_ms = int(recv_ns) // 1_000_000 if recv_ns else trade_time
    except ValueError:
        raise MalformedEventError(f"recv_time_ns is not an integer: {recv_ns[:40]!r}") from None
    return Tick(
        exchange=exchange,
        symbol=row[index["symbol"]].strip().upper(),
        trade_id=_int_field(row, index, "trade_id"),
        price=_float_field(row, index, "price"),
        quantity=_float_field(row, index, "qty"),
        side="sell" if maker == "true" else "buy",
        event_time_ms=trade_time,
        ingest_time_ms=ingest_ms,
    )


def _kraken_row(row: list[str], index: dict[str, int], exchange: str | None) -> Tick:
    time_ms = _int_field(row, index, "time_ms")
    return Tick(
        exchange=exchange or row[index["exchange"]].strip().lower(),
        symbol=row[index["pair"]].strip().upper(),
        trade_id=None,
        price=_float_field(row, index, "price"),
        quantity=_float_field(row, index, "amount"),
        side=row[index["side"]].strip().lower(),
        event_time_ms=time_ms,
        ingest_time_ms=time_ms,
    )
