"""Check ``python -m local_stack``'s inputs before any server starts, and size the replay.

Every check raises :class:`InputError`, whose text is the one line the command prints (the
problem and the fix), so a missing file, a history that is not OHLCV, a speed of -5 or an
unreachable ``MYSQL_URL`` cost a second, not a started broker and a trained model.

:func:`replay_plan` reads the recorded files once (the ingestor's own reader,
:func:`ingestor.replay.merged_records`), which checks them and gives the exchange-time span
that, divided by the speed, is how long the replay takes: ``make run`` waits for the replay
itself rather than for a fixed deadline, and says how long that will be.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["InputError", "ReplayPlan", "check_history", "check_mysql", "check_speed", "replay_plan"]

HISTORY_PROBE_ROWS = 1_000
"""Rows of the history file read up front: enough to see its header and some valid bars."""


class InputError(Exception):
    """An input the local stack cannot use; the text names the problem and the fix (one line)."""


@dataclass(frozen=True)
class ReplayPlan:
    """What a replay will publish, from one pass over the recorded files.

    Attributes
    ----------
    trades : int
        Trade lines (ticks the ingestor will publish).
    first_ms, last_ms : int or None
        Exchange time of the first and last trade, ms since epoch UTC (``None``: no trade).
    """

    trades: int
    first_ms: int | None
    last_ms: int | None

    @property
    def span_s(self) -> float:
        """Exchange-time span of the trades, seconds (0 without trades)."""
        if self.first_ms is None or self.last_ms is None:
            return 0.0
        return (self.last_ms - self.first_ms) / 1000.0

    def duration_s(self, speed: float) -> float | None:
        """Wall-clock seconds the paced replay takes at ``speed`` (``None`` for speed 0: unpaced).

        >>> ReplayPlan(2672, 1561939203172, 1561942791213).duration_s(1.0)
        3588.041
        >>> round(ReplayPlan(2672, 1561939203172, 1561942791213).duration_s(60.0), 2)
        59.8
        >>> ReplayPlan(2672, 0, 10).duration_s(0.0) is None
        True
        """
        return None if speed == 0 else self.span_s / speed


def check_speed(speed: float) -> float:
    """``speed`` if it is a finite number >= 0.

    Raises
    ------
    InputError
        Negative, NaN or infinite.
    """
    if not (speed >= 0 and math.isfinite(speed)):
        raise InputError(f"--speed {speed:g}: give a number >= 0 (1 = recorded pace, 60 = an hour per minute,"
                         " 0 = as fast as possible)")
    return speed


def replay_plan(files: Sequence[Path]) -> ReplayPlan:
    """Read the recorded ``files`` once: check them and measure what they hold.

    Raises
    ------
    InputError
        A file that is missing, not gzip although it says so, of no known recorded format, or
        without a single trade.
    """
    from ingestor.parsers.recorded import FORMATS
    from ingestor.replay import merged_records

    for path in files:
        if not Path(path).is_file():
            raise InputError(f"{path}: no such file; give recorded trade files (or none for the bundled hour)")
    trades, first, last = 0, None, None
    try:
        for record in merged_records(list(files)):
            if record.tick is None:
                if record.error is not None and "gzip" in record.error and trades == 0:
                    raise InputError(f"{record.position}: {record.error}; give a gzip file or a plain one")
                continue
            t = record.tick.event_time_ms
            first = t if first is None else min(first, t)
            last = t if last is None else max(last, t)
            trades += 1
    except (OSError, EOFError, UnicodeError, ValueError) as exc:
        raise InputError(f"cannot replay {_strip_path(str(exc), files)}; give recorded trade files"
                         f" ({', '.join(FORMATS)}; plain or gzip)") from None
    if trades == 0:
        raise InputError(f"no trade in {', '.join(str(f) for f in files)}; give recorded trade files with trades")
    return ReplayPlan(trades, first, last)


def _strip_path(text: str, files: Sequence[Path]) -> str:
    return text if any(str(f) in text for f in files) else f"{', '.join(map(str, files))}: {text}"


def check_history(path: Path) -> None:
    """Check that ``path`` is a one-minute OHLCV file with valid bars (reads its first rows).

    Raises
    ------
    InputError
        Missing, unreadable (e.g. a ``.gz`` that is not gzip), a header without time and
        open/high/low/close, or no valid bar in its first :data:`HISTORY_PROBE_ROWS` rows.
    """
    from shared.offline.ohlcv import OhlcvFormatError, OhlcvReader

    if not path.is_file():
        raise InputError(f"--history {path}: no such file; give a one-minute OHLCV CSV(.gz) for the initial model")
    reader = OhlcvReader(path)
    bars = 0
    try:
        for bars, _bar in enumerate(reader, start=1):
            if bars + reader.skipped >= HISTORY_PROBE_ROWS:
                break
    except OhlcvFormatError as exc:
        raise InputError(f"--history {exc}; give a one-minute OHLCV CSV(.gz)") from None
    except (OSError, EOFError, UnicodeError) as exc:
        raise InputError(f"--history {path}: cannot read it ({exc}); give a one-minute OHLCV CSV, plain or gzip"
                         ) from None
    if bars == 0:
        raise InputError(f"--history {path}: no valid bar in its first {HISTORY_PROBE_ROWS} rows;"
                         " give a one-minute OHLCV CSV(.gz)")


def check_mysql(environ: Mapping[str, str] | None = None) -> None:
    """If ``MYSQL_URL`` is set, open the history store once (bounded connect timeout) and close it.

    Raises
    ------
    InputError
        A malformed or unsupported URL, or a database that cannot be reached.
    """
    from sqlalchemy.exc import SQLAlchemyError

    from shared.settings import SettingsReader
    from shared.storage.history import HistoryStore

    url = SettingsReader(environ if environ is not None else os.environ).text("MYSQL_URL")
    if not url:
        return
    try:
        HistoryStore.from_url(url).close()
    except ValueError as exc:
        raise InputError(f"MYSQL_URL: {exc}") from None
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        raise InputError(f"MYSQL_URL: cannot reach the history store: {reason}; start the database, fix the"
                         " URL, or unset MYSQL_URL for the embedded SQLite file") from None
