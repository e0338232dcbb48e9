"""Replay recorded trade files as a live tick stream, at a chosen speed.

:class:`ReplaySource` reads one or more recorded files (any format of
:mod:`ingestor.parsers.recorded`), merges them by recorded exchange time
(:func:`heapq.merge`, so several symbols replay together), paces the ticks by that
time divided by ``speed``, and stamps each tick's ``ingest_time_ms`` with the wall
clock at the moment it is handed on. :func:`replay` drives a source into a
:class:`~ingestor.publisher.Publisher`: ticks are published, malformed lines are
counted, logged with their position and dead-lettered, non-trade lines are counted
as skipped; nothing in the data stops the replay.

Speed: ``1`` = recorded pace, ``60`` = one recorded hour per wall-clock minute,
``0`` = as fast as possible. Times are ms since the epoch, UTC; prices in quote currency.
"""

from __future__ import annotations

import heapq
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass

from ingestor.publisher import Publisher
from shared.contracts.events import DeadLetter, Tick
from ingestor.parsers.recorded import RecordedTrade, read_recorded

log = logging.getLogger(__name__)

__all__ = ["ReplaySource", "ReplayStats", "merged_records", "replay"]

_LOG_FIRST_MALFORMED = 20


@dataclass
class ReplayStats:
    """Counters of one replay.

    Attributes
    ----------
    read : int
        Lines read from the files (CSV headers excluded), whatever they held.
    published : int
        Ticks handed to the publisher.
    malformed : int
        Lines that could not be turned into a tick (counted, logged, dead-lettered).
    skipped : int
        Lines that are not trades: book ticker / depth / snapshot messages, annotations.
    deadlettered : int
        Malformed lines handed to the publisher's dead-letter path.
    delivered, failed : int or None
        Delivery reports received during the replay, if the publisher counts them.
    undelivered : int or None
        Messages not confirmed delivered after the final flush (pending + failed).
    first_event_time_ms, last_event_time_ms : int or None
        Recorded exchange time of the first and last published tick (ms since epoch UTC).
    replay_s : float
        Wall-clock seconds from the start until the last line was handed on (paced
        replay time, without the final flush).
    elapsed_s : float
        Wall-clock duration of the replay including the final flush, seconds.
    interrupted : bool
        The replay was stopped early (stop event, SIGTERM, KeyboardInterrupt).
    """

    read: int = 0
    published: int = 0
    malformed: int = 0
    skipped: int = 0
    deadlettered: int = 0
    delivered: int | None = None
    failed: int | None = None
    undelivered: int | None = None
    first_event_time_ms: int | None = None
    last_event_time_ms: int | None = None
    replay_s: float = 0.0
    elapsed_s: float = 0.0
    interrupted: bool = False

    @property
    def ticks_per_second(self) -> float:
        """Published ticks per wall-clock second."""
        return self.published / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def as_dict(self) -> dict[str, object]:
        """All counters plus ``ticks_per_second``, JSON-serialisable."""
        return {**asdict(self), "ticks_per_second": round(self.ticks_per_second, 1)}


def _merge_key(record: RecordedTrade) -> int:
    return record.time_ms if record.time_ms is not None else -1


def merged_records(
    paths: Sequence[str | os.PathLike[str]],
    *,
    exchange: str | None = None,
    fmt: str | None = None,
) -> Iterator[RecordedTrade]:
    """All lines of ``paths`` as :class:`RecordedTrade` items, merged by recorded exchange time.

    Each file must be in time order (the recorded files are); ties keep the order of
    ``paths``. Formats and exchanges are detected per file unless given. Files are
    opened (and checked) now, read lazily.
    """
    readers = [read_recorded(p, fmt=fmt, exchange=exchange) for p in paths]
    if len(readers) == 1:
        return readers[0]
    return heapq.merge(*readers, key=_merge_key)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class ReplaySource:
    """Iterate recorded files as a paced stream of :class:`RecordedTrade` items.

    Parameters
    ----------
    paths : path-like or sequence of path-likes
        Recorded files; several are merged by exchange time.
    speed : float, default 1
        Replay speed factor: 1 = recorded pace, 60 = a recorded hour per minute,
        0 = no pacing (as fast as the consumer takes them).
    exchange, fmt : str, optional
        Passed to :func:`ingestor.parsers.recorded.read_recorded` for every file.
    stop : threading.Event, optional
        Iteration ends early (``stats.interrupted``) once it is set.
    sleep : callable, optional
        ``sleep(seconds)`` used to wait between ticks; default :func:`time.sleep`.
        :func:`replay` passes one that serves the publisher's delivery reports.
    now_ms : callable, optional
        Wall clock for ``ingest_time_ms``, ms since epoch UTC.
    monotonic : callable, optional
        Clock for pacing, seconds.

    Notes
    -----
    Only ticks are paced; skipped and malformed lines pass through at once. A tick
    is due at ``start + (event_time_ms - first_event_time_ms) / 1000 / speed``; a
    tick that is already late is yielded without waiting, so a slow consumer
    catches up instead of drifting. Each yielded tick is a copy with
    ``ingest_time_ms`` set to ``now_ms()`` at the moment it is yielded.

    Examples
    --------
    The Kraken hour shipped in the repository's ``samples/``, unpaced, with a fixed wall clock:

    >>> from pathlib import Path
    >>> samples = Path(__file__).resolve().parents[1] / "samples"
    >>> path = samples / "kraken_XBTUSD_trades_20190701T00Z-01Z.csv.gz"
    >>> src = ReplaySource(path, speed=0, now_ms=lambda: 42)
    >>> ticks = [r.tick for r in src if r.tick]
    >>> len(ticks), src.stats.read, src.stats.published, src.stats.malformed, src.stats.skipped
    (2672, 2672, 2672, 0, 0)
    >>> ticks[0].symbol, ticks[0].price, ticks[0].event_time_ms, ticks[0].ingest_time_ms
    ('BTC/USD', 10749.4, 1561939203172, 42)
    >>> src.stats.first_event_time_ms, src.stats.last_event_time_ms, src.stats.interrupted
    (1561939203172, 1561942791213, False)
    """

    def __init__(
        self,
        paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
        *,
        speed: float = 1.0,
        exchange: str | None = None,
        fmt: str | None = None,
        stop: threading.Event | None = None,
        sleep: Callable[[float], object] | None = None,
        now_ms: Callable[[], int] = _now_ms,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        if not paths:
            raise ValueError("no files to replay")
        if not speed >= 0:  # also rejects NaN
            raise ValueError(f"speed must be >= 0, got {speed!r}")
        self.paths = list(paths)
        self.speed = float(speed)
        self.exchange = exchange
        self.fmt = fmt
        self.stop = stop
        self.sleep = sleep or time.sleep
        self.now_ms = now_ms
        self.monotonic = monotonic
        self.stats = ReplayStats()
        self._records = merged_records(self.paths, exchange=exchange, fmt=fmt)  # checks the files now

    def __iter__(self) -> Iterator[RecordedTrade]:
        stats = self.stats
        stop = self.stop
        speed = self.speed
        monotonic = self.monotonic
        now_ms = self.now_ms
        t0_ms: int | None = None
        w0 = 0.0
        for record in self._records:
            if stop is not None and stop.is_set():
                stats.interrupted = True
                return
            stats.read += 1
            tick = record.tick
            if tick is None:
                if record.error is not None:
                    stats.malformed += 1
                else:
                    stats.skipped += 1
                yield record
                continue
            event_ms = tick.event_time_ms
            if speed > 0:
                if t0_ms is None:
                    t0_ms, w0 = event_ms, monotonic()
                else:
                    delay = w0 + (event_ms - t0_ms) / (1000.0 * speed) - monotonic()
                    if delay > 0.0005:
                        self.sleep(delay)
                        if stop is not None and stop.is_set():
                            stats.interrupted = True
                            return
            if stats.first_event_time_ms is None:
                stats.first_event_time_ms = event_ms
            stats.last_event_time_ms = event_ms
            stats.published += 1
            yield RecordedTrade(
                record.position,
                record.time_ms,
                Tick(
                    tick.exchange,
                    tick.symbol,
                    tick.trade_id,
                    tick.price,
                    tick.quantity,
                    tick.side,
                    event_ms,
                    now_ms(),
                ),
            )


def replay(
    paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    publisher: Publisher,
    *,
    speed: float = 1.0,
    exchange: str | None = None,
    fmt: str | None = None,
    stop: threading.Event | None = None,
    limit: int | None = None,
    flush_timeout: float = 30.0,
    progress: Callable[[ReplayStats], object] | None = None,
    progress_interval: float = 1.0,
) -> ReplayStats:
    """Replay recorded files into ``publisher`` and return the counts.

    Parameters
    ----------
    paths : path-like or sequence of path-likes
        Recorded trade files (see :mod:`ingestor.parsers.recorded`), merged by exchange time.
    publisher : Publisher
        E.g. :class:`~ingestor.publisher.KafkaPublisher`. It is flushed, not closed.
    speed : float, default 1
        1 = recorded pace, 60 = one recorded hour per minute, 0 = as fast as possible.
    exchange, fmt : str, optional
        Override the exchange id / format detected from each file.
    stop : threading.Event, optional
        Set it (e.g. from a SIGTERM handler) to end the replay early, cleanly.
    limit : int, optional
        Stop after publishing this many ticks.
    flush_timeout : float, default 30
        Seconds to wait for outstanding deliveries at the end.
    progress : callable, optional
        Called with the running stats about every ``progress_interval`` seconds.

    Returns
    -------
    ReplayStats
        ``interrupted`` is set when ``stop`` or a KeyboardInterrupt ended the replay;
        a KeyboardInterrupt is absorbed after the final flush so the counts are returned.
    """
    started = time.monotonic()
    stop = stop or threading.Event()
    delivered0 = getattr(publisher, "delivered", None)
    failed0 = getattr(publisher, "failed", None)

    def idle(seconds: float) -> None:
        end = time.monotonic() + seconds
        while not stop.is_set():
            remaining = end - time.monotonic()
            if remaining <= 0:
                return
            publisher.poll(min(remaining, 0.1))

    source = ReplaySource(paths, speed=speed, exchange=exchange, fmt=fmt, stop=stop, sleep=idle)
    stats = source.stats
    next_progress = started + progress_interval
    try:
        for record in source:
            tick = record.tick
            if tick is not None:
                publisher.publish(tick)
                if limit is not None and stats.published >= limit:
                    break
            elif record.error is not None:
                _set_aside(publisher, record, stats)
            if progress is not None and stats.read % 512 == 0 and time.monotonic() >= next_progress:
                next_progress = time.monotonic() + progress_interval
                stats.elapsed_s = time.monotonic() - started
                progress(stats)
    except KeyboardInterrupt:
        stats.interrupted = True
        log.warning("replay interrupted; flushing %d published ticks", stats.published)
    finally:
        stats.replay_s = time.monotonic() - started
        pending = publisher.flush(flush_timeout)
        stats.elapsed_s = time.monotonic() - started
        if delivered0 is not None:
            stats.delivered = publisher.delivered - delivered0
        if failed0 is not None:
            stats.failed = publisher.failed - failed0
        stats.undelivered = pending + (stats.failed or 0)
    if stats.malformed > _LOG_FIRST_MALFORMED:
        log.warning("%d malformed lines in total were set aside", stats.malformed)
    if progress is not None:
        progress(stats)
    return stats


def _set_aside(publisher: Publisher, record: RecordedTrade, stats: ReplayStats) -> None:
    source = record.position.rpartition(":")[0] or record.position
    if stats.malformed <= _LOG_FIRST_MALFORMED:
        log.warning("malformed line %s set aside: %s", record.position, record.error)
        if stats.malformed == _LOG_FIRST_MALFORMED:
            log.warning("further malformed lines are counted, not logged one by one")
    else:
        log.debug("malformed line %s set aside: %s", record.position, record.error)
    publisher.publish_deadletter(
        DeadLetter(
            source=source,
            position=record.position,
            reason=record.error or "?",
            payload=record.raw or "(none)",
        )
    )
    stats.deadlettered += 1

