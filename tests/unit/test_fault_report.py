"""The fault suite's checker (``local_stack/faults/report.py``) and fuzz generator, without servers.

The comparison must see every kind of damage it reports, or the suite could not fail: a missing,
an extra, a wrong, a conflicting and a redelivered bar; a must-refuse fuzzed message without a dead
letter; a duplicate tick accepted twice; a valid tick dead-lettered.
"""

from __future__ import annotations

import json

from local_stack.faults.expected import Expected, expected_events
from local_stack.faults.fuzz import FuzzMessage, fuzz_outputs, fuzz_ticks
from local_stack.faults.readback import Record
from local_stack.faults.report import compare, markdown_table, reason_class
from shared.contracts.events import Bar, DeadLetter, MalformedEventError, Tick, decode_output, encode
from shared.serving.engine import new_forecaster

M = 60_000


def bar(minute: int, close: float = 100.0) -> Bar:
    return Bar("kraken", "BTC/USD", minute * M, 100.0, 101.0, 99.0, close, 1.5, 3)


def rec(offset: int, value: bytes, partition: int = 0) -> Record:
    return Record(partition, offset, b"BTC/USD", value, 0)


def letter(hub: str, partition: int, offset: int, reason: str) -> bytes:
    return encode(DeadLetter(hub, f"{hub}[0] key=k seq={offset} offset={partition}:{offset}", reason, "x"))


def test_compare_counts_missing_extra_wrong_conflicting_and_redelivered_bars():
    expected = Expected({("kraken", "BTC/USD", m * M): bar(m) for m in range(5)}, {}, 10, 0, 5 * M)
    outputs = [rec(0, encode(bar(0))), rec(1, encode(bar(0))),  # redelivered identically
               rec(2, encode(bar(1, close=99.5))),  # wrong
               rec(3, encode(bar(2))), rec(4, encode(bar(2, close=100.5))),  # conflicting, and wrong
               rec(5, encode(bar(9)))]  # extra; minutes 3 and 4 missing
    row = compare(expected, outputs, [], valid_symbols={("kraken", "BTC/USD")})
    assert {k: row[f"bars_{k}"] for k in ("expected", "got", "missing", "extra", "wrong", "conflicting",
                                          "redelivered")} == {
        "expected": 5, "got": 4, "missing": 2, "extra": 1, "wrong": 2, "conflicting": 1, "redelivered": 1}
    assert row["store_bars_missing"] == 5  # nothing stored


def test_compare_accounts_for_fuzz_and_valid_dead_letters():
    expected = Expected({}, {}, 1, 0, M)
    refused = FuzzMessage(b"k", b"not json", "not_json", True)
    unrefused = FuzzMessage(b"k", b"[1]", "not_object", True)
    dup = b'{"v":1}'
    fuzz = {("ticks", 0, 10): refused, ("ticks", 0, 11): unrefused,
            ("ticks", 0, 12): FuzzMessage(b"s", dup, "valid_new_symbol", False),
            ("ticks", 0, 13): FuzzMessage(b"s", dup, "duplicate", False, dup_of=2)}
    deadletters = [rec(0, letter("ticks", 0, 10, "not JSON: JSONDecodeError")),
                   rec(1, letter("ticks", 0, 10, "not JSON: JSONDecodeError")),  # redelivered: counted once
                   rec(2, letter("ticks", 0, 3, "late tick: its minute closed before minute 0 opened"))]
    row = compare(expected, [], deadletters, fuzz=fuzz, valid_symbols=set())
    assert row["deadletter_reasons"] == {"ticks: late": 1, "ticks: not_json": 1}
    assert row["valid_deadlettered"] == 1  # offset 3 is not a fuzzed message
    assert row["fuzz_accepted_twice"] == 1 and row["fuzz_unaccounted"] == 2
    assert "| reason |" in markdown_table([{**row, "scenario": "x", "outage_s": 0}])


def test_reason_classes_of_the_services_reasons():
    assert reason_class("event time 5 is more than 60000 ms after its ingest time 1") == "future"
    assert reason_class("trade id 9 not above the last seen") == "out_of_sequence"
    assert reason_class("more than 64 new symbols, then one per 60000 ms") == "new_symbol_rate"
    assert reason_class("batch failed after 4 tries: OSError: x") == "batch_failed"


def test_fuzz_is_deterministic_and_its_classes_hold():
    kw = dict(seed=5, exchange="kraken", symbol="BTC/USD", start_ms=1_561_939_200_000)
    ticks = fuzz_ticks(3_000, ingest_ms=1_800_000_000_000, **kw)
    assert ticks == fuzz_ticks(3_000, ingest_ms=1_800_000_000_000, **kw)
    assert all(m.key == b"BTC/USD" for m in ticks if m.after_start)  # only bad ticks name the valid symbol
    assert not any(b'"exchange":"kraken"' in m.value for m in ticks if not m.must_refuse)
    outputs = fuzz_outputs(3_000, now_ms=1_800_000_000_000, **kw)
    for m in outputs:  # the classification agrees with the decoder (the archive's first gate)
        try:
            event = decode_output(m.value)
            assert not m.must_refuse, m
            assert (event.exchange, event.symbol) != ("kraken", "BTC/USD")
        except MalformedEventError:
            assert m.must_refuse, m


def test_expected_bars_close_on_a_later_minute_and_predictions_follow_the_model():
    ticks = [Tick("kraken", "BTC/USD", None, 100.0 + i % 7, 0.1, "buy", 1_000 + i * 20_000, 0) for i in range(200)]
    exp = expected_events(ticks, new_forecaster(), "v1", 0.9)
    assert len(exp.bars) == 66 and all(b.trade_count == 3 for b in exp.bars.values())  # the last minute stays open
    assert exp.predictions and {p.model_version for p in exp.predictions.values()} == {"v1"}
    json.dumps([k for k in exp.bars])  # keys are plain JSON
