"""Read one-minute OHLCV bar files (CSV or CSV.gz) into :class:`shared.events.Bar` records.

Accepted header styles (as in ``../shared/data``): a time column named one of
``open_time_ms``, ``timestamp_ms``, ``ts_ms``, ``time_ms`` (ms since epoch UTC) or
``open_time_utc``, ``timestamp_utc``, ``timestamp``, ``time``, ``date`` (ISO 8601, or
epoch ms/s as digits); ``open``, ``high``, ``low``, ``close``; a volume column
``volume`` or ``volume_<base>`` (the first such); optional ``trade_count``. The bar
time is taken as the minute's open time, floored to the minute.

Rows whose prices are missing, non-finite or not positive are counted in
:attr:`OhlcvReader.skipped` (with their line numbers in ``skipped_lines``), not raised.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from shared.bars import MINUTE_MS
from shared.events import Bar

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
        dt = dt.replace(tzinfo=timezone.utc)
    return int(dt.timestamp() * 1000)


@dataclass
class OhlcvReader:
    """Iterate the bars of one OHLCV file.

    Parameters
    ----------
    path : the CSV or CSV.gz file.
    exchange, symbol : identity given to the bars (files rarely carry it).
    symbol_filter : for long files with a ``symbol`` column, keep only this symbol.

    Raises
    ------
    OhlcvFormatError
        When iteration starts on a file without time/open/high/low/close columns.
    """

    path: Path
    exchange: str = "file"
    symbol: str = "BTCUSD"
    symbol_filter: str | None = None
    skipped: int = 0
    skipped_lines: list[int] = field(default_factory=list)

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
            for line, row in enumerate(reader, start=2):
                if self.symbol_filter and sym_col and row[sym_col] != self.symbol_filter:
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
                yield Bar(self.exchange, self.symbol, t - t % MINUTE_MS, o, h, lo, c, v, n)

    def _skip(self, line: int) -> None:
        self.skipped += 1
        if len(self.skipped_lines) < 100:
            self.skipped_lines.append(line)


def read_ohlcv(path: str | Path, exchange: str = "file", symbol: str = "BTCUSD") -> list[Bar]:
    """Return all valid bars of ``path`` in file order (see :class:`OhlcvReader`)."""
    return list(OhlcvReader(Path(path), exchange, symbol))
