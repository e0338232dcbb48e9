"""Event-time one-minute OHLCV bars, built per symbol from ticks.

A bar covers ``[open_time_ms, open_time_ms + 60,000)`` in exchange time (UTC). It
closes when the first tick of a later minute arrives, so the closing tick is
what triggers the forecast. A tick for a minute that has already closed is
*late*: it is counted (:attr:`BarBuilder.late`) and dropped, never merged into
the closed bar, which has been published. A tick whose trade id is not above
the last one seen is *out of sequence* (a duplicate from a replay or reconnect,
or an out-of-order trade) and is counted and dropped too; ticks without a trade
id (some recorded sources) are never judged by id.

Examples
--------
>>> from shared.contracts.events import Tick
>>> b = BarBuilder("binance", "BTCUSDT")
>>> t = lambda ms, p, i: Tick("binance", "BTCUSDT", i, p, 0.5, "buy", ms, ms)
>>> b.add(t(1_000, 100.0, 1)) is None
True
>>> b.add(t(59_999, 101.0, 2)) is None
True
>>> b.add(t(61_000, 99.0, 3))
Bar(exchange='binance', symbol='BTCUSDT', open_time_ms=0, open=100.0, high=101.0, low=100.0, close=101.0, volume=1.0, trade_count=2)
>>> b.add(t(30_000, 100.5, 4)) is None, b.late
(True, 1)
"""

from __future__ import annotations

from dataclasses import dataclass, field

from shared.contracts.events import Bar, Tick

MINUTE_MS = 60_000
"""Length of one bar in milliseconds."""


def minute_of(time_ms: int) -> int:
    """Return the open time (ms since epoch UTC) of the minute containing ``time_ms``."""
    return time_ms - time_ms % MINUTE_MS


@dataclass(slots=True)
class BarBuilder:
    """Builds consecutive one-minute bars for one ``(exchange, symbol)``.

    Attributes
    ----------
    late : ticks dropped because their minute had already closed.
    out_of_sequence : ticks dropped because their trade id was not above the last
        seen (duplicates and out-of-order trades).
    """

    exchange: str
    symbol: str
    late: int = 0
    out_of_sequence: int = 0
    _minute: int | None = None
    _open: float = 0.0
    _high: float = 0.0
    _low: float = 0.0
    _close: float = 0.0
    _volume: float = 0.0
    _count: int = 0
    _last_trade_id: int | None = field(default=None, repr=False)

    @property
    def open_minute_ms(self) -> int | None:
        """Open time of the bar being built, or ``None`` before the first tick."""
        return self._minute

    def add(self, tick: Tick) -> Bar | None:
        """Add one tick; return the bar it closed, if any.

        The tick must belong to this builder's symbol (not checked on the hot path).
        """
        if self.extend(tick):  # a later trade of the minute being built
            return None
        trade_id = tick.trade_id
        if trade_id is not None and self._last_trade_id is not None and trade_id <= self._last_trade_id:
            self.out_of_sequence += 1
            return None
        minute = tick.event_time_ms - tick.event_time_ms % MINUTE_MS
        if self._minute is not None and minute < self._minute:
            # checked before the id is recorded: a late tick must not move the id forward
            self.late += 1
            return None
        if trade_id is not None:
            self._last_trade_id = trade_id
        price = tick.price  # a new minute (extend took every other tick that is neither late nor a duplicate)
        closed = self._snapshot()
        self._minute = minute
        self._open = self._high = self._low = self._close = price
        self._volume = tick.quantity
        self._count = 1
        return closed

    def extend(self, tick: Tick) -> bool:
        """Add ``tick`` if it is the common case, and say whether it was.

        The common case: ``tick`` belongs to the minute being built and is not out of sequence (its
        trade id, if it has one, is above the last one seen, if any): it changes the bar in progress
        and closes nothing. Any other tick (a new minute, late, out of sequence, or the builder's
        first) changes nothing here and returns False; :meth:`add`, which calls this first, then
        judges it. ``tick`` may be any object with the tick's attributes (``predict``'s
        lane passes the decoded wire struct, :mod:`shared.serving.lane`).

        Examples
        --------
        >>> from shared.contracts.events import Tick
        >>> b = BarBuilder("binance", "BTCUSDT")
        >>> t = lambda ms, p, i: Tick("binance", "BTCUSDT", i, p, 0.5, "buy", ms, ms)
        >>> b.extend(t(1_000, 100.0, 1)), b.add(t(1_000, 100.0, 1))  # the first tick: add's
        (False, None)
        >>> b.extend(t(2_000, 101.0, 2)), b.extend(t(3_000, 99.0, 2)), b.extend(t(60_000, 99.0, 3))
        (True, False, False)
        >>> b.flush()
        Bar(exchange='binance', symbol='BTCUSDT', open_time_ms=0, open=100.0, high=101.0, low=100.0, close=101.0, volume=1.0, trade_count=2)
        """
        trade_id = tick.trade_id
        if trade_id is not None:
            last = self._last_trade_id
            if last is not None and trade_id <= last:
                return False
        time_ms = tick.event_time_ms
        if time_ms - time_ms % MINUTE_MS != self._minute:
            return False
        if trade_id is not None:
            self._last_trade_id = trade_id
        price = tick.price
        if price > self._high:
            self._high = price
        elif price < self._low:
            self._low = price
        self._close = price
        self._volume += tick.quantity
        self._count += 1
        return True

    @property
    def last_trade_id(self) -> int | None:
        """Highest trade id accepted so far, or ``None``."""
        return self._last_trade_id

    def reopen(self, bar: Bar, last_trade_id: int | None) -> None:
        """Undo the :meth:`add` that closed ``bar``: ``bar`` is in progress again, with the trade
        id as it was before that add (``last_trade_id``). For an engine step that failed after
        the builder moved, so that the failed tick leaves no trace.
        """
        self._minute, self._open, self._high, self._low = bar.open_time_ms, bar.open, bar.high, bar.low
        self._close, self._volume, self._count = bar.close, bar.volume, bar.trade_count
        self._last_trade_id = last_trade_id

    def _snapshot(self) -> Bar | None:
        if self._minute is None:
            return None
        return Bar(
            self.exchange, self.symbol, self._minute, self._open, self._high, self._low,
            self._close, self._volume, self._count,
        )

    def flush(self) -> Bar | None:
        """Close and return the bar in progress (end of a finite replay), or ``None``."""
        bar = self._snapshot()
        self._minute = None
        return bar
