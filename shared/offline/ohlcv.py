"""Read one-minute OHLCV bar files (CSV or CSV.gz) into :class:`shared.contracts.events.Bar` records.

Accepted header styles (as in ``../shared/data``): a time column named one of
``open_time_ms``, ``timestamp_ms``, ``ts_ms``, ``time_ms`` (ms since epoch UTC) or
``open_time_utc``, ``timestamp_utc``, ``timestamp``, ``time``, ``date`` (ISO 8601, or
epoch ms/s as digits); ``open``, ``high``, ``low``, ``close``; a volume column
``volume`` or ``volume_<base>`` (the first such); optional ``trade_count``. The bar
time is taken as the minute's open time, floored to the minute.

Rows whose prices are missing, non-finite or not positive are counted in
:attr:`OhlcvReader.skipped` (with their line numbers in ``skipped_lines``), not raised.
Inconsistent rows -- ``high < low``, or open or close outside ``[low, high]`` -- are set aside
the same way and also counted in :attr:`OhlcvReader.inconsistent`: such a bar is a bad print
or a broken export, and its close would be learned as a real price.

Sub-minute files (rows between minute boundaries, e.g. one-second bars) are resampled to
minutes by :func:`load_minute_bars` as OHLCV resampling is defined (pandas
``resample("1min").agg(first, max, min, last, sum)``): open of the first row, highest high,
lowest low, close of the last row, summed volume and trade count. Flooring them and keeping
the last row would make open, high, low and volume wrong.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from shared.stream.bars import MINUTE_MS
from shared.contracts.events import Bar

_MS_COLUMNS = ("open_time_ms", "timestamp_ms", "ts_ms", "time_ms")
_ISO_COLUMNS = ("open_time_utc", "timestamp_utc", "timestamp", "time", "date", "datetime")


class OhlcvFormatError(ValueError):
    """The file's header does not name the columns a bar needs."""


def _open_text(path: Path) -> io.TextIOBase:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def _parse_time(value: str) -> int:
    value = value.strip()
    if value.isdigit():
        n = int(value)
        return n * 1000 if n < 10**11 else n  # seconds vs milliseconds
    dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


@dataclass
class OhlcvReader:
    """Iterate the bars of one OHLCV file.

    Parameters
    ----------
    path : the CSV or CSV.gz file.
    exchange, symbol : identity given to the bars (files rarely carry it).
    symbol_filter : for long files with a ``symbol`` column, keep only this symbol.

    Attributes
    ----------
    skipped, skipped_lines : rows set aside (invalid values) and the first 100 of their line numbers.
    inconsistent : of those, rows whose open or close lies outside ``[low, high]`` (or ``high < low``).
    symbols_seen : distinct values of the ``symbol`` column met so far (empty without one).

    Raises
    ------
    OhlcvFormatError
        When iteration starts on a file without time/open/high/low/close columns, or
        ``symbol_filter`` is given for a file without a ``symbol`` column.
    """

    path: Path
    exchange: str = "file"
    symbol: str = "BTCUSD"
    symbol_filter: str | None = None
    floor: bool = True
    skipped: int = 0
    inconsistent: int = 0
    skipped_lines: list[int] = field(default_factory=list)
    symbols_seen: set[str] = field(default_factory=set)

    def __iter__(self) -> Iterator[Bar]:
        with _open_text(Path(self.path)) as fh:
            reader = csv.DictReader(fh)
            cols = {c.strip().lower(): c for c in reader.fieldnames or []}
            time_col = next((cols[c] for c in _MS_COLUMNS + _ISO_COLUMNS if c in cols), None)
            missing = [c for c in ("open", "high", "low", "close") if c not in cols]
            if time_col is None or missing:
                raise OhlcvFormatError(
                    f"{self.path}: need a time column and open/high/low/close; header is {reader.fieldnames}"
                )
            vol_col = cols.get("volume") or next(
                (cols[c] for c in cols if c.startswith("volume")), None
            )
            count_col = cols.get("trade_count")
            sym_col = cols.get("symbol")
            if self.symbol_filter and sym_col is None:
                raise OhlcvFormatError(
                    f"{self.path}: a symbol filter ({self.symbol_filter!r}) needs a 'symbol' column;"
                    f" header is {reader.fieldnames}"
                )
            for line, row in enumerate(reader, start=2):
                if sym_col:
                    self.symbols_seen.add(row[sym_col])
                    if self.symbol_filter and row[sym_col] != self.symbol_filter:
                        continue
                try:
                    t = _parse_time(row[time_col])
                    o, h, lo, c = (float(row[cols[k]]) for k in ("open", "high", "low", "close"))
                    v = float(row[vol_col]) if vol_col and row[vol_col] else 0.0
                    n = int(float(row[count_col])) if count_col and row[count_col] else 0
                except (ValueError, TypeError):
                    self._skip(line)
                    continue
                if not all(math.isfinite(p) and p > 0 for p in (o, h, lo, c)) or not math.isfinite(v):
                    self._skip(line)
                    continue
                if not (lo <= o <= h and lo <= c <= h):
                    self.inconsistent += 1
                    self._skip(line)
                    continue
                yield Bar(self.exchange, self.symbol, t - t % MINUTE_MS if self.floor else t, o, h, lo, c, v, n)

    def _skip(self, line: int) -> None:
        self.skipped += 1
        if len(self.skipped_lines) < 100:
            self.skipped_lines.append(line)


def read_ohlcv(path: str | Path, exchange: str = "file", symbol: str = "BTCUSD") -> list[Bar]:
    """Return all valid bars of ``path`` in file order (see :class:`OhlcvReader`)."""
    return list(OhlcvReader(Path(path), exchange, symbol))


@dataclass
class MinuteSeries:
    """The bars of one symbol, ascending and one per minute, and what loading them set aside.

    ``duplicates`` counts rows whose time was already present (the later row wins);
    ``gaps`` counts missing minutes between consecutive bars; ``skipped`` counts invalid rows,
    ``inconsistent`` those of them outside their own range; ``resampled`` counts sub-minute rows
    aggregated into minutes (0 for a one-minute file).
    """

    bars: list[Bar]
    skipped: int = 0
    duplicates: int = 0
    gaps: int = 0
    inconsistent: int = 0
    resampled: int = 0


def load_minute_bars(
    path: str | Path, symbol: str | None = None, exchange: str = "file", name: str | None = None
) -> MinuteSeries:
    """Read a one-minute OHLCV file into ascending, de-duplicated bars of one symbol.

    Files may be in ascending or descending time order (exports of both kinds exist).

    Parameters
    ----------
    path : CSV or CSV.gz file (header styles as in :class:`OhlcvReader`).
    symbol : for long files with a ``symbol`` column, the symbol to keep (required when
        the file holds several).
    exchange, name : identity given to the bars (``name`` defaults to ``symbol``, else empty).

    Raises
    ------
    OhlcvFormatError
        Missing columns, a file with several symbols and no ``symbol``, an unknown ``symbol``
        (the message lists those present), or no valid bar at all.
    FileNotFoundError
        If ``path`` does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such OHLCV file: {path}")
    reader = OhlcvReader(path, exchange, name or symbol or "", symbol_filter=symbol, floor=False)
    by_time: dict[int, Bar] = {}
    rows = 0
    for bar in reader:
        rows += 1
        by_time[bar.open_time_ms] = bar
    if symbol is None and len(reader.symbols_seen) > 1:
        raise OhlcvFormatError(
            f"{path}: the file holds several symbols ({', '.join(sorted(reader.symbols_seen))}); choose one with --symbol"
        )
    if not by_time:
        hint = f" (symbols in the file: {', '.join(sorted(reader.symbols_seen))})" if reader.symbols_seen else ""
        raise OhlcvFormatError(f"{path}: no valid bars{' for ' + repr(symbol) if symbol else ''}{hint}")
    rows_kept = [by_time[t] for t in sorted(by_time)]
    sub_minute = any(b.open_time_ms % MINUTE_MS for b in rows_kept)
    bars = _resample(rows_kept) if sub_minute else rows_kept
    gaps = sum((b.open_time_ms - a.open_time_ms) // MINUTE_MS - 1 for a, b in zip(bars, bars[1:]))
    return MinuteSeries(bars, reader.skipped, rows - len(rows_kept), gaps, reader.inconsistent,
                        len(rows_kept) if sub_minute else 0)


def _resample(rows: list[Bar]) -> list[Bar]:
    """One-minute bars from ascending sub-minute rows: first open, max high, min low, last close, summed volume."""
    out: list[Bar] = []
    for row in rows:
        minute = row.open_time_ms - row.open_time_ms % MINUTE_MS
        last = out[-1] if out else None
        if last is not None and last.open_time_ms == minute:
            out[-1] = Bar(last.exchange, last.symbol, minute, last.open, max(last.high, row.high),
                          min(last.low, row.low), row.close, last.volume + row.volume,
                          last.trade_count + row.trade_count)
        else:
            out.append(Bar(row.exchange, row.symbol, minute, row.open, row.high, row.low, row.close,
                           row.volume, row.trade_count))
    return out
