"""Binance message parser and recorded-file readers, checked against the real recordings."""

from __future__ import annotations

import gzip
import json
import math
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.contracts.events import MalformedEventError, Tick, decode_tick, encode
from ingestor.parsers import parse_trade, read_recorded, split_ws_line
from ingestor.parsers.recorded import detect_format, exchange_from_name
from tests.data_files import (
    BTC_SPOT_CSV,
    BTC_WS_RAW,
    ETH_SPOT_CSV,
    KRAKEN_CSV,
    USDM_0718_CSV,
    USDM_CSV,
    WS_SAMPLES,
    data_file,
)

SPOT_TRADE = {
    "e": "trade",
    "E": 1723161255343,
    "s": "BTCUSDT",
    "t": 3735683259,
    "p": "61837.63000000",
    "q": "0.02000000",
    "T": 1723161255342,
    "m": True,
    "M": True,
}
USDM_TRADE = {
    "e": "trade",
    "E": 1723161256322,
    "T": 1723161256322,
    "s": "BTCUSDT",
    "t": 5266583935,
    "p": "61800.30",
    "q": "0.006",
    "X": "MARKET",
    "m": False,
}


BOOK_TICKER = {"u": 1, "s": "BTCUSDT", "b": "61837.63", "B": "3.7", "a": "61837.64", "A": "1.5"}


def wrap(data: object, stream: str = "btcusdt@trade") -> str:
    return json.dumps({"stream": stream, "data": data})


# ----------------------------------------------------------------------------- parse_trade
def test_spot_trade_raw_ws_form():
    tick = parse_trade(json.dumps(SPOT_TRADE), ingest_time_ms=1723161255400)
    expected = Tick("binance", "BTCUSDT", 3735683259, 61837.63, 0.02, "sell", 1723161255342, 1723161255400)
    assert tick == expected


def test_spot_trade_combined_stream_wrapper_bytes_and_mapping():
    expected = Tick("binance", "BTCUSDT", 3735683259, 61837.63, 0.02, "sell", 1723161255342, 7)
    assert parse_trade(wrap(SPOT_TRADE).encode(), ingest_time_ms=7) == expected
    assert parse_trade({"stream": "btcusdt@trade", "data": SPOT_TRADE}, ingest_time_ms=7) == expected
    assert parse_trade(SPOT_TRADE, ingest_time_ms=7) == expected


def test_buyer_is_taker_gives_buy_side():
    tick = parse_trade({**SPOT_TRADE, "m": False}, ingest_time_ms=0)
    assert tick is not None and tick.side == "buy"


def test_usdm_trade():
    tick = parse_trade(wrap(USDM_TRADE), exchange="binance-usdm", ingest_time_ms=1)
    assert tick == Tick("binance-usdm", "BTCUSDT", 5266583935, 61800.30, 0.006, "buy", 1723161256322, 1)
    assert decode_tick(encode(tick)) == tick


def test_trade_time_not_event_time_is_used():
    tick = parse_trade({**SPOT_TRADE, "E": 1, "T": 2}, ingest_time_ms=0)
    assert tick is not None and tick.event_time_ms == 2


def test_lower_case_symbol_is_upper_cased():
    tick = parse_trade({**SPOT_TRADE, "s": "ethusdt"}, ingest_time_ms=0)
    assert tick is not None and tick.symbol == "ETHUSDT"


@pytest.mark.parametrize(
    "message",
    [
        wrap(BOOK_TICKER, "btcusdt@bookTicker"),
        BOOK_TICKER,
        wrap({"e": "depthUpdate", "E": 1, "s": "BTCUSDT", "U": 1, "u": 2, "b": [], "a": []}, "btcusdt@depth"),
        {"lastUpdateId": 50093239218, "bids": [["61837.63", "3.78"]], "asks": [["61837.64", "1.5"]]},
        {"e": "aggTrade", "E": 1, "s": "BTCUSDT", "a": 1, "p": "1", "q": "1", "f": 1, "l": 1, "T": 1},
        {"result": None, "id": 1},
        {"type": "match", "trade_id": 1, "side": "sell", "size": "1", "price": "1", "product_id": "BTC-USD"},
        {},
        {"stream": "btcusdt@bookTicker", "data": [1, 2]},
        {**USDM_TRADE, "X": "INSURANCE_FUND"},
        {**USDM_TRADE, "X": "NA", "p": "0"},
    ],
    ids=[
        "bookTicker",
        "bookTicker-raw",
        "depthUpdate",
        "rest-snapshot",
        "aggTrade",
        "subscribe-reply",
        "coinbase-match",
        "empty-object",
        "non-trade-stream-odd-data",
        "usdm-insurance-fund",
        "usdm-na",
    ],
)
def test_non_trade_messages_give_none(message):
    assert parse_trade(message, ingest_time_ms=0) is None


def _without(key: str) -> dict:
    return {k: v for k, v in SPOT_TRADE.items() if k != key}


@pytest.mark.parametrize(
    "message, reason",
    [
        ("{not json", "not JSON"),
        (b"\xff\xfe\x00", "not JSON"),
        ("", "not JSON"),
        ("[1, 2]", "not a JSON object"),
        ("42", "not a JSON object"),
        ("[" * 100_000, "not JSON"),
        (_without("p"), "price"),
        (_without("q"), "quantity"),
        (_without("T"), "trade time"),
        (_without("t"), "trade id"),
        (_without("s"), "symbol"),
        (_without("m"), "'m'"),
        ({**SPOT_TRADE, "p": "-61837.63"}, "price"),
        ({**SPOT_TRADE, "p": "0"}, "price"),
        ({**SPOT_TRADE, "p": "0.00000000"}, "price"),
        ({**SPOT_TRADE, "p": "NaN"}, "price"),
        ({**SPOT_TRADE, "p": "nan"}, "price"),
        ({**SPOT_TRADE, "p": "inf"}, "price"),
        ({**SPOT_TRADE, "p": "Infinity"}, "price"),
        ({**SPOT_TRADE, "p": "1e999"}, "price"),
        ({**SPOT_TRADE, "p": float("nan")}, "price"),
        ({**SPOT_TRADE, "p": float("inf")}, "price"),
        ({**SPOT_TRADE, "p": ""}, "price"),
        ({**SPOT_TRADE, "p": "1_000"}, "price"),
        ({**SPOT_TRADE, "p": " 1.0"}, "price"),
        ({**SPOT_TRADE, "p": None}, "price"),
        ({**SPOT_TRADE, "p": True}, "price"),
        ({**SPOT_TRADE, "q": "-0.1"}, "quantity"),
        ({**SPOT_TRADE, "q": "abc"}, "quantity"),
        ({**SPOT_TRADE, "m": "true"}, "'m'"),
        ({**SPOT_TRADE, "m": 1}, "'m'"),
        ({**SPOT_TRADE, "t": "3735683259"}, "trade id"),
        ({**SPOT_TRADE, "t": -1}, "trade_id"),
        ({**SPOT_TRADE, "t": 1.5}, "trade id"),
        ({**SPOT_TRADE, "T": -5}, "event_time_ms"),
        ({**SPOT_TRADE, "T": "1723161255342"}, "trade time"),
        ({**SPOT_TRADE, "s": ""}, "symbol"),
        ({**SPOT_TRADE, "s": 5}, "symbol"),
        ({**USDM_TRADE, "X": 5}, "'X'"),
        ({"stream": "btcusdt@trade", "data": "oops"}, "not a JSON object"),
        ({"stream": "btcusdt@trade", "data": {"u": 1}}, "event type"),
    ],
)
def test_malformed_trades_raise_with_reason(message, reason):
    with pytest.raises(MalformedEventError) as info:
        parse_trade(message, ingest_time_ms=0)
    assert reason.lower() in str(info.value).lower()


def test_malformed_json_nan_literal_price():
    text = json.dumps(SPOT_TRADE).replace('"61837.63000000"', "NaN")
    with pytest.raises(MalformedEventError, match="price"):
        parse_trade(text, ingest_time_ms=0)


def test_negative_ingest_time_is_rejected():
    with pytest.raises(MalformedEventError, match="ingest_time_ms"):
        parse_trade(SPOT_TRADE, ingest_time_ms=-1)


# ----------------------------------------------------------------------------- hypothesis
json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=5), children, max_size=5),
    max_leaves=20,
)
trade_field_values = {
    "e": st.sampled_from(["trade", "aggTrade", "depthUpdate", ""]) | json_values,
    "E": st.integers() | json_values,
    "s": st.sampled_from(["BTCUSDT", "ethusdt", ""]) | json_values,
    "t": st.integers(min_value=-(2**70), max_value=2**70) | json_values,
    "p": st.sampled_from(["61837.63", "0", "-1", "NaN", "inf", "1e999", "1e-999", ".5", "5."])
    | st.from_regex(r"-?\d{0,6}(\.\d{0,8})?([eE][+-]?\d{1,4})?", fullmatch=True)
    | json_values,
    "q": st.sampled_from(["0.02", "0", "-0.1", "1e400"]) | json_values,
    "T": st.integers(min_value=-(2**70), max_value=2**70) | json_values,
    "m": st.booleans() | json_values,
    "M": json_values,
    "X": st.sampled_from(["MARKET", "INSURANCE_FUND"]) | json_values,
}
trade_like = st.fixed_dictionaries({}, optional=trade_field_values)
# a valid spot or USD-M trade with some fields replaced or removed: exercises the paths near success
near_trades = st.builds(
    lambda base, changes, drop: {k: v for k, v in {**base, **changes}.items() if k not in drop},
    st.sampled_from([SPOT_TRADE, USDM_TRADE]),
    st.fixed_dictionaries({}, optional=trade_field_values),
    st.sets(st.sampled_from(sorted(trade_field_values)), max_size=2),
)
wrapped = st.builds(
    lambda stream, data: {"stream": stream, "data": data},
    st.sampled_from(["btcusdt@trade", "btcusdt@bookTicker", ""]) | json_values,
    near_trades | trade_like | json_values,
)
messages = st.one_of(
    json_values,
    trade_like,
    near_trades,
    wrapped,
    st.text(max_size=200),
    st.binary(max_size=200),
)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(message=messages, as_text=st.booleans(), exchange=st.sampled_from(["binance", "binance-usdm"]))
def test_parser_raises_only_malformed_event_error(message, as_text, exchange):
    if as_text and not isinstance(message, (str, bytes)):
        message = json.dumps(message)  # NaN/Infinity literals included, as Python's json writes them
    try:
        result = parse_trade(message, ingest_time_ms=1_700_000_000_000, exchange=exchange)
    except MalformedEventError as exc:
        assert str(exc)
        return
    assert result is None or isinstance(result, Tick)
    if result is not None:
        assert math.isfinite(result.price) and result.price > 0
        assert math.isfinite(result.quantity) and result.quantity >= 0
        assert result.side in ("buy", "sell")
        assert decode_tick(encode(result)) == result


# ----------------------------------------------------------------------------- ws lines
def test_split_ws_line_formats():
    assert split_ws_line('1723161254087896568 {"a":1}\n') == (1723161254087896568, '{"a":1}')
    assert split_ws_line('1618677817.079694: {"a":1}') == (1618677817079694000, '{"a":1}')
    assert split_ws_line('2022-05-22 01:45:02.977325 | 2022-05-22 | x | {"a":1}') == (None, '{"a":1}')
    assert split_ws_line('{"a":1}') == (None, '{"a":1}')
    assert split_ws_line("no json here") == (None, "no json here")


def ws_sample_lines() -> Iterator[tuple[str | None, str]]:
    """``(group, line)`` for each message line of ws_message_samples.txt; ``group`` is the letter of
    the last ``# [X] ...`` header above the line (A Binance spot, B USD-M, C recorder lines, D Coinbase)."""
    group = None
    for line in data_file(WS_SAMPLES).read_text(encoding="utf-8").splitlines():
        if line.startswith("# ["):
            group = line[3]
        if line.strip() and not line.startswith("#"):
            yield group, line


def test_every_trade_line_of_ws_message_samples_parses():
    trades, others = [], 0
    for group, line in ws_sample_lines():
        recv_ns, text = split_ws_line(line)
        exchange = "binance-usdm" if group == "B" else "binance"
        tick = parse_trade(text, exchange=exchange, ingest_time_ms=0)
        if '"e":"trade"' in text:
            assert tick is not None, line
            trades.append((group, tick))
            if group in ("A", "B"):
                assert recv_ns is not None and abs(recv_ns // 1_000_000 - tick.event_time_ms) < 2_000
            if group == "C":
                assert recv_ns is None  # local wall-clock prefix of unknown zone
        else:
            assert tick is None, line
            others += 1
    assert [g for g, _ in trades] == ["A"] * 3 + ["B"] * 2 + ["C"] * 3
    assert others == 7
    by_group = {g: [t for gg, t in trades if gg == g] for g in "ABC"}
    assert [t.trade_id for t in by_group["A"]] == [3735693016, 3735693017, 3735693018]
    assert [t.side for t in by_group["A"]] == ["sell", "buy", "buy"]
    assert {t.exchange for t in by_group["B"]} == {"binance-usdm"}
    assert by_group["B"][0].price == 61800.30 and by_group["B"][0].quantity == 0.006
    assert [t.trade_id for t in by_group["C"]] == [1377031638, 1377031639, 1377031640]
    assert all(t.event_time_ms == 1653173103258 and t.side == "sell" for t in by_group["C"])


def test_ws_message_samples_read_as_recording():
    # 8 Binance trades and, through the Coinbase parser, 2 matches + 1 last_match
    records = list(read_recorded(data_file(WS_SAMPLES)))
    ticks = [r.tick for r in records if r.tick is not None]
    assert len(ticks) == 11
    assert not [r for r in records if r.error]
    coinbase = [t for t in ticks if t.exchange == "coinbase"]
    assert [(t.symbol, t.trade_id, t.side) for t in coinbase] == [
        ("SKL-BTC", 280232, "buy"),  # maker side "sell" -> taker bought
        ("SKL-USD", 1568268, "buy"),
        ("BAND-GBP", 881613, "buy"),
    ]
    assert coinbase[0].event_time_ms == 1618677817089 and coinbase[0].ingest_time_ms == 1618677817129
    # an explicit exchange keeps to that exchange's parser: Coinbase lines are skipped
    assert sum(r.tick is not None for r in read_recorded(data_file(WS_SAMPLES), exchange="binance")) == 8


# ----------------------------------------------------------------------------- recorded files
def _read_all(path: Path):
    records = list(read_recorded(path))
    ticks = [r.tick for r in records if r.tick is not None]
    errors = [r for r in records if r.error]
    return records, ticks, errors


@pytest.mark.parametrize(
    "name, rows, exchange, symbol",
    [
        (BTC_SPOT_CSV, 19_904, "binance", "BTCUSDT"),
        (ETH_SPOT_CSV, 14_515, "binance", "ETHUSDT"),
        (USDM_CSV, 21_313, "binance-usdm", "BTCUSDT"),
        (USDM_0718_CSV, 10_701, "binance-usdm", "BTCUSDT"),
    ],
)
def test_binance_trade_csv_reads_fully(name, rows, exchange, symbol):
    path = data_file(name)
    assert detect_format(path) == "binance-csv"
    records, ticks, errors = _read_all(path)
    assert not errors
    assert len(records) == len(ticks) == rows
    assert {t.exchange for t in ticks} == {exchange}
    assert {t.symbol for t in ticks} == {symbol}
    ids = [t.trade_id for t in ticks]
    assert ids == list(range(ids[0], ids[0] + rows))  # contiguous, no gaps or duplicates
    times = [t.event_time_ms for t in ticks]
    assert times == sorted(times)
    assert all(r.time_ms == r.tick.event_time_ms for r in records)
    assert records[0].position == f"{name}:2"


def test_btc_spot_csv_first_row_and_range():
    _, ticks, _ = _read_all(data_file(BTC_SPOT_CSV))
    assert ticks[0] == Tick(
        "binance", "BTCUSDT", 3735683259, 61837.63, 0.02, "sell", 1723161255342, 1723161254087
    )
    assert ticks[0].event_time_ms == 1723161255342  # 2024-08-08T23:54:15.342Z
    assert ticks[-1].event_time_ms == 1723161905800  # 2024-08-09T00:05:05.800Z
    assert 61_556 <= min(t.price for t in ticks) and max(t.price for t in ticks) <= 61_861.99


def test_exchange_override():
    first = next(read_recorded(data_file(BTC_SPOT_CSV), exchange="binance-usdm"))
    assert first.tick is not None and first.tick.exchange == "binance-usdm"


def test_kraken_csv_reads_fully():
    path = data_file(KRAKEN_CSV)
    assert detect_format(path) == "kraken-csv"
    records, ticks, errors = _read_all(path)
    assert not errors and len(records) == len(ticks) == 2_672
    assert {(t.exchange, t.symbol, t.trade_id) for t in ticks} == {("kraken", "BTC/USD", None)}
    assert ticks[0] == Tick("kraken", "BTC/USD", None, 10749.4, 0.004, "sell", 1561939203172, 1561939203172)
    assert ticks[-1].event_time_ms == 1561942791213  # 00:59:51.213Z
    assert {t.side for t in ticks} == {"buy", "sell"}
    assert 10_600 <= min(t.price for t in ticks) and max(t.price for t in ticks) <= 11_042
    assert len(ticks) - len(set(ticks)) == 1  # the one exact duplicate row is kept


def test_ws_raw_recording_matches_trade_csv():
    raw_path = data_file(BTC_WS_RAW)
    assert detect_format(raw_path) == "ws"
    records, ws_ticks, errors = _read_all(raw_path)
    assert not errors
    assert len(records) == 99_574
    assert len(ws_ticks) == 19_904
    assert sum(r.skipped for r in records) == 99_574 - 19_904
    _, csv_ticks, _ = _read_all(data_file(BTC_SPOT_CSV))
    assert [t.trade_id for t in ws_ticks] == [t.trade_id for t in csv_ticks]
    # same trades, same recorder receive time: the two files describe identical ticks
    assert ws_ticks == csv_ticks


# ----------------------------------------------------------------------------- bad content
HEADER = "trade_time_ms,event_time_ms,recv_time_ns,trade_id,price,qty,is_buyer_maker,symbol\n"
GOOD = "1723161255342,1723161255343,1723161254087896568,{id},61837.63,0.02,true,BTCUSDT\n"


def test_bad_csv_rows_are_reported_not_raised(tmp_path):
    lines = [
        HEADER,
        GOOD.format(id=1),
        "1723161255342,1723161255343,1723161254087896568,2,NaN,0.02,true,BTCUSDT\n",
        "1723161255342,1723161255343,1723161254087896568,3,-5,0.02,true,BTCUSDT\n",
        "1723161255342,1723161255343,1723161254087896568,4,0,0.02,true,BTCUSDT\n",
        "1723161255342,1723161255343,1723161254087896568,5,inf,0.02,true,BTCUSDT\n",
        "garbage\n",
        "1723161255342,1723161255343,1723161254087896568,6,1.0,0.02,maybe,BTCUSDT\n",
        "1723161255342,,1723161254087896568,x,1.0,0.02,true,BTCUSDT\n",
        "\n",
        '1723161255350,1723161255351,1723161254087896568,7,"61,837.5",0.02,false,BTCUSDT\n',
        GOOD.format(id=8),
    ]
    path = tmp_path / "binance_spot_BTCUSDT_trades_bad.csv"
    path.write_text("".join(lines))
    gz = tmp_path / "binance_usdm_BTCUSDT_trades_bad.csv.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    for p, exchange in ((path, "binance"), (gz, "binance-usdm")):
        records = list(read_recorded(p))
        assert [r.tick.trade_id for r in records if r.tick] == [1, 8]
        assert {r.tick.exchange for r in records if r.tick} == {exchange}
        errors = [r for r in records if r.error]
        assert [r.position.rpartition(":")[2] for r in errors] == ["3", "4", "5", "6", "7", "8", "9", "11"]
        assert all(r.raw and r.time_ms == 1723161255342 for r in errors)
        assert "fields" in errors[4].error and "is_buyer_maker" in errors[5].error
        assert "trade_id" in errors[6].error
        assert sum(r.skipped for r in records) == 1  # the blank line


def test_truncated_gzip_ends_with_an_error_item(tmp_path):
    body = gzip.compress((HEADER + "".join(GOOD.format(id=i) for i in range(5000))).encode())
    path = tmp_path / "binance_spot_trunc.csv.gz"
    path.write_bytes(body[: len(body) // 2])
    records = list(read_recorded(path))
    assert records[-1].error and "unreadable" in records[-1].error
    good = [r.tick.trade_id for r in records if r.tick]
    assert good == list(range(len(good))) and 0 < len(good) < 5000


def test_ws_recording_with_bad_lines(tmp_path):
    trade = wrap(SPOT_TRADE)
    path = tmp_path / "binance_spot_BTCUSDT_ws_raw_x.txt"
    path.write_text(
        "\n".join(
            [
                f"1723161254087896568 {trade}",
                '1723161254087896569 {"stream":"btcusdt@bookTicker","data":{"u":1}}',
                "1723161254087896570 {truncated",
                f"1723161254087896571 {wrap({**SPOT_TRADE, 'p': '-1'})}",
                "no json at all",
                f"{trade}",
            ]
        )
    )
    records = list(read_recorded(path))
    assert [("tick" if r.tick else "err" if r.error else "skip") for r in records] == [
        "tick",
        "skip",
        "err",
        "err",
        "err",
        "tick",
    ]
    assert records[0].tick.ingest_time_ms == 1723161254087
    assert records[-1].tick.ingest_time_ms == records[-1].tick.event_time_ms  # no receive time recorded


def test_unknown_format_and_missing_file(tmp_path):
    path = tmp_path / "bars.csv"
    path.write_text("open_time_ms,open,high,low,close\n1,2,3,4,5\n")
    with pytest.raises(ValueError, match="unrecognised"):
        read_recorded(path)
    with pytest.raises(ValueError, match="unknown recorded format"):
        read_recorded(path, fmt="parquet")
    with pytest.raises(OSError):
        read_recorded(tmp_path / "missing.csv")


def test_exchange_from_name():
    assert exchange_from_name(USDM_CSV) == "binance-usdm"
    assert exchange_from_name(BTC_SPOT_CSV) == "binance"
    assert exchange_from_name(KRAKEN_CSV) == "kraken"
    assert exchange_from_name("whatever.csv") == "binance"
