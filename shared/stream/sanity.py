"""Time, sequence and new-symbol sanity of ticks, judged before a tick can move a symbol's clock.

A bar builder trusts each accepted tick: one tick dated in 2100 makes every later valid tick of
its symbol late, and a trade id of ``2**63 - 1`` makes every later one out of sequence. So
``predict`` asks a :class:`TickGate` first, and a tick it refuses is dead-lettered with the reason
and never reaches the engine. The rules, with their bounds and why:

``future``
    ``event_time_ms > ingest_time_ms + MAX_AHEAD_OF_INGEST_MS`` (60 s), for a tick that would
    move its symbol's clock forward (an older one is judged by the bar builder). A trade cannot happen
    after it was received; the slack covers exchange and ingestor clock skew (NTP keeps both
    within a second or so) with a wide margin. A replay stamps ``ingest_time_ms`` with the wall
    clock when it hands a recorded tick on (``ingestor/replay.py``), so recorded ticks are always
    in the past of their ingest time and pass.
``time_jump``
    The tick is ahead of its symbol's newest accepted tick by more than the ingest time elapsed
    between the two plus ``MAX_JUMP_MS`` (2 min). Live and at recorded pace both clocks advance
    together, so a quiet symbol's long gap passes; a tick a few minutes ahead of the stream does
    not. A fast replay (speed 0 or 60) compresses ingest time, so a recorded gap longer than 2 min
    looks like a jump: it is accepted once ``CONFIRM`` consecutive refused ticks agree with each
    other (each within the rule of the previous one), and the first ``CONFIRM - 1`` of them are
    dead-lettered (the samples' longest gap is 58 s, so replays of them lose nothing).
``stale``
    The first tick of a symbol lags the feed (the newest accepted tick of any symbol, by
    ``ingest - event``) by more than ``MAX_BEHIND_MS`` (6 h), or is ahead of it by more than
    ``MAX_JUMP_MS`` (then ``time_jump``): a new symbol cannot set its clock from an outlier.
    Confirmed like ``time_jump`` (a replay of old data next to live data is not wedged).
    A known symbol's tick that is behind is already refused by the bar builder as ``late``
    without moving anything. (The first tick the gate ever sees has no reference but ingest time.)
``id_jump``
    The trade id is above the symbol's highest accepted id by more than ``MAX_ID_JUMP``
    (1,000,000) plus ``MAX_IDS_PER_S`` (10,000) per second of event time between the two ticks:
    Binance BTCUSDT, the busiest pair, peaks at a few thousand trades per second. Confirmed like
    ``time_jump``. Ids are 63-bit integers already (decoding refuses larger).
``new_symbol_rate``
    At most ``NEW_SYMBOL_BURST`` (64) new symbols at once, then one per ``NEW_SYMBOL_REFILL_MS``
    (60 s) of the service's wall clock (a token bucket): each new symbol costs a model load and
    state, and a producer inventing symbols must not exhaust memory or the registry. This is the
    allow-list policy: ``SYMBOLS`` names the pairs the HTTP API serves and retrain trains; which
    pairs are published is the ingestor's subscriptions, so ``predict`` bounds the rate of new
    symbols instead of requiring a list (a new listing then needs no redeploy of ``predict``).

Times are ms since the epoch, UTC. A tick's state is recorded only by :meth:`TickGate.accept`,
after the engine accepted it, so a refused or late tick never moves the gate either.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from shared.contracts.events import Tick

MAX_AHEAD_OF_INGEST_MS = 60_000
MAX_JUMP_MS = 120_000
MAX_BEHIND_MS = 6 * 3_600_000
MAX_ID_JUMP = 1_000_000
MAX_IDS_PER_S = 10_000
CONFIRM = 3
NEW_SYMBOL_BURST = 64
NEW_SYMBOL_REFILL_MS = 60_000
MAX_PENDING = 4096
"""Refused jumps remembered for confirmation, at most (bounded memory under invented symbols)."""


@dataclass(slots=True)
class _Mark:
    """A reference point: event and ingest time (ms since epoch UTC) and the highest trade id."""

    event_ms: int
    ingest_ms: int
    trade_id: int | None
    count: int = 1


def _jump(tick: Tick, ref: _Mark) -> tuple[str, str] | None:
    """``(counter, reason)`` if ``tick`` jumps implausibly ahead of ``ref`` in time or trade id."""
    elapsed_ingest = max(0, tick.ingest_time_ms - ref.ingest_ms)
    ahead = tick.event_time_ms - ref.event_ms - elapsed_ingest
    if ahead > MAX_JUMP_MS:
        return "time_jump", (f"event time {tick.event_time_ms} is {ahead} ms ahead of its symbol's clock "
                             f"(bound {MAX_JUMP_MS} ms beyond the ingest time elapsed)")
    if tick.trade_id is not None and ref.trade_id is not None:
        allowed = MAX_ID_JUMP + MAX_IDS_PER_S * max(0, tick.event_time_ms - ref.event_ms) // 1000
        if tick.trade_id - ref.trade_id > allowed:
            return "id_jump", f"trade id {tick.trade_id} jumps {tick.trade_id - ref.trade_id} above the last ({allowed} allowed)"
    return None


class TickGate:
    """Refuses ticks whose time or trade id is implausible, and bounds the rate of new symbols.

    Parameters
    ----------
    clock : wall clock in ms since epoch UTC (the new-symbol token bucket).

    Examples
    --------
    >>> gate = TickGate(clock=lambda: 0)
    >>> t = Tick("kraken", "BTC/USD", 7, 100.0, 1.0, "buy", 1_000, 2_000)
    >>> gate.check(t) is None
    True
    >>> gate.accept(t)
    >>> gate.check(Tick("kraken", "BTC/USD", 8, 100.0, 1.0, "buy", 4_000_000_000_000, 2_000))[0]
    'future'
    >>> gate.check(Tick("kraken", "BTC/USD", 2**62, 100.0, 1.0, "buy", 1_500, 2_000))[0]
    'id_jump'
    """

    def __init__(self, clock: Callable[[], int]) -> None:
        self.clock = clock
        self._marks: dict[tuple[str, str], _Mark] = {}
        self._pending: dict[tuple[str, str], _Mark] = {}
        self._feed: _Mark | None = None
        self._tokens = float(NEW_SYMBOL_BURST)
        self._refilled_ms: int | None = None

    def check(self, tick: Tick) -> tuple[str, str] | None:
        """``None`` if ``tick`` may go to the engine, else ``(counter, reason)`` to dead-letter it."""
        key = (tick.exchange, tick.symbol)
        ref = self._marks.get(key)
        if (ref is None or tick.event_time_ms > ref.event_ms) and \
                tick.event_time_ms > tick.ingest_time_ms + MAX_AHEAD_OF_INGEST_MS:
            return "future", (f"event time {tick.event_time_ms} is more than {MAX_AHEAD_OF_INGEST_MS} ms "
                              f"after its ingest time {tick.ingest_time_ms}")
        if ref is None:
            if self._feed is not None:
                lag_behind = (tick.ingest_time_ms - tick.event_time_ms) - (self._feed.ingest_ms - self._feed.event_ms)
                if lag_behind > MAX_BEHIND_MS and not self._confirmed(key, tick):
                    return "stale", f"a new symbol's first tick lags the feed by {lag_behind} ms (bound {MAX_BEHIND_MS})"
                verdict = _jump(tick, _Mark(self._feed.event_ms, self._feed.ingest_ms, None))
                if verdict is not None and not self._confirmed(key, tick):
                    return verdict
            if not self._has_token():
                return "new_symbol_rate", f"more than {NEW_SYMBOL_BURST} new symbols, then one per {NEW_SYMBOL_REFILL_MS} ms"
            return None
        verdict = _jump(tick, ref)
        if verdict is not None and not self._confirmed(key, tick):
            return verdict
        return None

    def _confirmed(self, key: tuple[str, str], tick: Tick) -> bool:
        """Note a refused jump; True when it is the ``CONFIRM``-th consecutive one that agrees."""
        pending = self._pending.get(key)
        count = pending.count + 1 if pending is not None and _jump(tick, pending) is None \
            and tick.event_time_ms >= pending.event_ms else 1
        self._pending.pop(key, None)
        self._pending[key] = _Mark(tick.event_time_ms, tick.ingest_time_ms, tick.trade_id, count)
        if len(self._pending) > MAX_PENDING:  # symbols that only ever sent refused ticks: forget the oldest
            del self._pending[next(iter(self._pending))]
        return count >= CONFIRM

    def _has_token(self) -> bool:
        now = self.clock()
        if self._refilled_ms is not None:
            self._tokens = min(NEW_SYMBOL_BURST, self._tokens + max(0, now - self._refilled_ms) / NEW_SYMBOL_REFILL_MS)
        self._refilled_ms = now
        return self._tokens >= 1

    def accept(self, tick: Tick) -> None:
        """Record that the engine accepted ``tick``: it becomes its symbol's and the feed's reference."""
        key = (tick.exchange, tick.symbol)
        self._pending.pop(key, None)
        ref = self._marks.get(key)
        if ref is not None:
            self.accept_known(tick, ref)
            return
        self._tokens -= 1
        self._marks[key] = _Mark(tick.event_time_ms, tick.ingest_time_ms, tick.trade_id)
        feed = self._feed
        if feed is None:
            self._feed = _Mark(tick.event_time_ms, tick.ingest_time_ms, None)
        elif tick.event_time_ms >= feed.event_ms:
            feed.event_ms, feed.ingest_ms = tick.event_time_ms, tick.ingest_time_ms

    def accept_known(self, tick: Tick, ref: _Mark) -> None:
        """:meth:`accept` of a tick of a known symbol whose mark is ``ref`` and which has no pending
        refused jump (:meth:`export` gives both): moves ``ref`` and the feed, in place."""
        time_ms = tick.event_time_ms
        if time_ms >= ref.event_ms:
            ref.event_ms, ref.ingest_ms = time_ms, tick.ingest_time_ms
        trade_id = tick.trade_id
        if trade_id is not None and (ref.trade_id is None or trade_id > ref.trade_id):
            ref.trade_id = trade_id
        feed = self._feed
        if feed is None:
            self._feed = _Mark(time_ms, tick.ingest_time_ms, None)
        elif time_ms >= feed.event_ms:  # in place: one tick, no allocation
            feed.event_ms, feed.ingest_ms = time_ms, tick.ingest_time_ms

    def export(self, key: tuple[str, str]) -> tuple[_Mark | None, _Mark | None]:
        """The gate's state of one ``(exchange, symbol)``: its reference mark and its pending refused jump."""
        return self._marks.get(key), self._pending.get(key)

    def restore(self, key: tuple[str, str], state: tuple[_Mark | None, _Mark | None]) -> None:
        """Put back what :meth:`export` returned for ``key`` (a worker taking a partition over)."""
        mark, pending = state
        self.forget(key)
        if mark is not None:
            self._marks[key] = mark
        if pending is not None:
            self._pending[key] = pending

    def forget(self, key: tuple[str, str]) -> None:
        """Drop the state of ``key`` (its partition moved to another worker)."""
        self._marks.pop(key, None)
        self._pending.pop(key, None)

    @property
    def feed(self) -> _Mark | None:
        """The feed's reference: the newest accepted tick of any symbol (event and ingest time)."""
        return self._feed

    def restore_feed(self, feed: _Mark | None) -> None:
        """Take ``feed`` as the feed's reference if it is newer than the one held."""
        if feed is not None and (self._feed is None or feed.event_ms > self._feed.event_ms):
            self._feed = _Mark(feed.event_ms, feed.ingest_ms, None)
