"""Minute bars from real Binance spot trades, against an independent grouping of the CSV rows."""

from __future__ import annotations

import csv
import dataclasses
import gzip
import math
from functools import cache

import pytest

from shared.stream.bars import MINUTE_MS, BarBuilder, minute_of
from shared.contracts.events import Bar, Tick
from ingestor.parsers.recorded import read_recorded
from tests.data_files import BTC_SPOT_CSV, KRAKEN_CSV, data_file


@cache
def _ticks(name: str) -> tuple[Tick, ...]:
    records = list(read_recorded(data_file(name)))
    assert not [r for r in records if r.error]
    return tuple(r.tick for r in records if r.tick is not None)


@cache
def _reference(name: str) -> tuple[tuple, ...]:
    """(open_time_ms, open, high, low, close, volume, count) per minute, from the raw CSV rows."""
    groups: dict[int, list[tuple[float, float]]] = {}
    with gzip.open(data_file(name), "rt", newline="") as fh:
        for row in csv.DictReader(fh):
            groups.setdefault(int(row["trade_time_ms"]) // 60_000, []).append(
                (float(row["price"]), float(row["qty"]))
            )
    out = []
    for minute in sorted(groups):
        trades = groups[minute]
        prices = [p for p, _ in trades]
        out.append(
            (minute * 60_000, prices[0], max(prices), min(prices), prices[-1],
             math.fsum(q for _, q in trades), len(trades))
        )
    return tuple(out)


def _build(ticks, exchange="binance", symbol="BTCUSDT"):
    builder = BarBuilder(exchange, symbol)
    closed = [bar for tick in ticks if (bar := builder.add(tick)) is not None]
    return builder, closed


def _assert_matches(bar: Bar, ref: tuple) -> None:
    t, o, h, lo, c, v, n = ref
    assert (bar.open_time_ms, bar.open, bar.high, bar.low, bar.close, bar.trade_count) == (t, o, h, lo, c, n)
    assert bar.volume == pytest.approx(v, rel=1e-12)


def test_bars_match_reference_grouping():
    ticks = _ticks(BTC_SPOT_CSV)
    ref = _reference(BTC_SPOT_CSV)
    assert len(ticks) == 19_904 and sum(r[6] for r in ref) == 19_904
    assert len(ref) == 12  # 23:54 .. 00:05 UTC
    assert ref[0][0] == 1723161240000 and ref[-1][0] == 1723161900000

    builder, closed = _build(ticks)
    assert len(closed) == len(ref) - 1  # the last minute has no later tick: still open
    assert {(b.exchange, b.symbol) for b in closed} == {("binance", "BTCUSDT")}
    for bar, expected in zip(closed, ref):
        _assert_matches(bar, expected)
    assert builder.late == 0 and builder.out_of_sequence == 0
    assert builder.open_minute_ms == ref[-1][0]

    last = builder.flush()
    _assert_matches(last, ref[-1])
    assert builder.open_minute_ms is None
    assert builder.flush() is None  # nothing left


def test_each_bar_is_returned_by_the_first_tick_of_a_later_minute():
    ticks = _ticks(BTC_SPOT_CSV)
    builder = BarBuilder("binance", "BTCUSDT")
    for i, tick in enumerate(ticks):
        bar = builder.add(tick)
        opens_minute = i > 0 and minute_of(tick.event_time_ms) != minute_of(ticks[i - 1].event_time_ms)
        assert (bar is not None) == opens_minute
        if bar is not None:
            assert bar.open_time_ms == minute_of(ticks[i - 1].event_time_ms)
            assert bar.close == ticks[i - 1].price
            assert bar.open_time_ms % MINUTE_MS == 0


def test_kraken_bars_without_trade_ids():
    ticks = _ticks(KRAKEN_CSV)
    assert all(t.trade_id is None for t in ticks)
    builder, closed = _build(ticks, "kraken", "BTC/USD")
    bars = closed + [builder.flush()]
    assert len(bars) == 60
    assert sum(b.trade_count for b in bars) == 2_672  # the duplicate row is not judged by id: it counts
    assert builder.out_of_sequence == 0 and builder.late == 0
    assert [b.open_time_ms for b in bars] == [1561939200000 + i * MINUTE_MS for i in range(60)]
    for bar in bars:
        assert bar.low <= min(bar.open, bar.close) <= max(bar.open, bar.close) <= bar.high


# ----------------------------------------------------------------------------- late ticks
def test_late_ticks_are_counted_and_not_merged():
    ticks = list(_ticks(BTC_SPOT_CSV))
    _, clean = _build(ticks)
    # right after the first tick of every minute, send (without id) ticks for the minute that
    # just closed and the one before, with an extreme price and quantity: if either were merged
    # anywhere, some bar would show it
    injected, late = [], 0
    for i, tick in enumerate(ticks):
        injected.append(tick)
        if i and minute_of(tick.event_time_ms) != minute_of(ticks[i - 1].event_time_ms):
            for back in (1, 2):
                old = minute_of(tick.event_time_ms) - back * MINUTE_MS + 59_999
                if old >= minute_of(ticks[0].event_time_ms):
                    injected.append(dataclasses.replace(
                        tick, trade_id=None, event_time_ms=old, price=1.0, quantity=1e6))
                    late += 1
    assert late == 11 + 10
    builder, closed = _build(injected)
    assert builder.late == late
    assert builder.out_of_sequence == 0
    assert closed == clean


def test_late_tick_with_a_higher_trade_id():
    t = lambda ms, p, i: Tick("binance", "BTCUSDT", i, p, 1.0, "buy", ms, ms)
    b = BarBuilder("binance", "BTCUSDT")
    assert b.add(t(1_000, 100.0, 1)) is None
    assert b.add(t(2_000, 102.0, 2)) is None
    first = b.add(t(61_000, 101.0, 3))
    assert first == Bar("binance", "BTCUSDT", 0, 100.0, 102.0, 100.0, 102.0, 2.0, 2)
    assert b.add(t(59_999, 50.0, 1_000)) is None  # minute 0 has closed; a spurious high id
    assert (b.late, b.out_of_sequence) == (1, 0)
    assert b.add(t(62_000, 103.0, 5)) is None  # the late tick did not move the last id forward
    assert (b.late, b.out_of_sequence) == (1, 0)
    assert b.flush() == Bar("binance", "BTCUSDT", 60_000, 101.0, 103.0, 101.0, 103.0, 2.0, 2)


# ----------------------------------------------------------------------------- trade ids
def test_duplicate_and_lower_trade_ids_are_dropped():
    ticks = list(_ticks(BTC_SPOT_CSV))
    _, clean = _build(ticks)
    injected, dropped = [], 0
    for i, tick in enumerate(ticks):
        injected.append(tick)
        if i % 1000 == 999:  # an exact duplicate (replay / reconnect)
            injected.append(tick)
            dropped += 1
        elif i % 1000 == 500:  # an older trade re-sent, with a price that would show in any bar
            injected.append(dataclasses.replace(ticks[i - 300], price=1e9, quantity=1e6))
            dropped += 1
    assert dropped == 39
    builder, closed = _build(injected)
    assert builder.out_of_sequence == dropped
    assert builder.late == 0
    assert closed == clean
    assert builder.flush() == _build(ticks)[0].flush()


def test_trade_id_equal_to_last_is_dropped_even_in_a_new_minute():
    t = lambda ms, p, i: Tick("binance", "BTCUSDT", i, p, 1.0, "buy", ms, ms)
    b = BarBuilder("binance", "BTCUSDT")
    b.add(t(1_000, 100.0, 10))
    assert b.add(t(61_000, 200.0, 10)) is None  # would close minute 0 if it were accepted
    assert b.add(t(62_000, 200.0, 9)) is None
    assert b.out_of_sequence == 2
    assert b.open_minute_ms == 0
    assert b.flush() == Bar("binance", "BTCUSDT", 0, 100.0, 100.0, 100.0, 100.0, 1.0, 1)


def test_ticks_without_trade_id_are_never_judged_by_id():
    t = lambda ms, p, i: Tick("binance", "BTCUSDT", i, p, 1.0, "sell", ms, ms)
    b = BarBuilder("binance", "BTCUSDT")
    b.add(t(1_000, 100.0, 100))
    b.add(t(2_000, 99.0, None))
    b.add(t(2_000, 99.0, None))  # identical id-less ticks are both kept
    b.add(t(2_500, 1.0, 100))  # right after them, the last id is still 100: a duplicate
    b.add(t(3_000, 98.0, 101))
    b.add(t(4_000, 1.0, 100))  # the id-less ticks did not reset the last id: 100 is still old
    b.add(t(5_000, 97.0, None))
    assert (b.out_of_sequence, b.late) == (2, 0)
    assert b.flush() == Bar("binance", "BTCUSDT", 0, 100.0, 100.0, 97.0, 97.0, 5.0, 5)


def test_flush_returns_the_open_bar_and_none_before_any_tick():
    b = BarBuilder("kraken", "BTC/USD")
    assert b.flush() is None and b.open_minute_ms is None
    ticks = _ticks(KRAKEN_CSV)[:5]
    for tick in ticks:
        assert b.add(tick) is None  # all in minute 00:00
    bar = b.flush()
    assert bar == Bar(
        "kraken", "BTC/USD", 1561939200000, ticks[0].price, max(t.price for t in ticks),
        min(t.price for t in ticks), ticks[-1].price, pytest.approx(sum(t.quantity for t in ticks)), 5,
    )
    assert b.flush() is None


@pytest.mark.parametrize(
    "ms, expected", [(0, 0), (59_999, 0), (60_000, 60_000), (1723161255342, 1723161240000)]
)
def test_minute_of(ms, expected):
    assert minute_of(ms) == expected

