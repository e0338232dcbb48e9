"""Hostile messages for the ticks and predictions hubs: bounded, deterministic (seeded).

:func:`fuzz_ticks` and :func:`fuzz_outputs` return :class:`FuzzMessage` lists; each message says
whether the functions **must** refuse it (dead-letter it) whatever their state, or **may** accept
it (a valid event of a fuzz symbol: the new-symbol rate, the time gate or the bar builder decide).
The suite checks every must-refuse message is dead-lettered, that a duplicate is refused when its
original was accepted, and that the valid replay is untouched.

What is sent (ticks hub; predictions hub alike with bars and predictions):

* not JSON (truncated objects, text), random binary, JSON that is not an object;
* wrong types: strings for numbers, lists for strings, ``true`` for the schema version;
* numbers: ``1e400`` (parses as infinity), ``1.7e308``, ``NaN``, ``Infinity``, zero and negative
  prices, trade ids ``2**63`` and ``2**64``;
* strings: 300-character symbols, exchange names over 32 characters;
* times: far future (ten years after ingest: refused as ``future``) and far past;
* unknown schema versions (``v`` 0, 2, "1");
* huge bodies, at most :data:`MAX_BODY` bytes (the Event Hubs event size limit is 1 MB);
* valid ticks of up to :data:`FUZZ_SYMBOLS` invented symbols (more than the engine's
  ``NEW_SYMBOL_BURST`` of 64: those beyond the rate must be refused), and duplicates of them;
* bad ticks of the *valid* symbol, sent only after its first valid tick (``after_start``): far
  future (``future``), far past (``late``), and ahead of its clock by years with *decreasing*
  event times, so no three of them agree (the gate accepts a jump that three consecutive ticks
  confirm, by design: ``shared.stream.sanity``, ``CONFIRM``).

Examples
--------
>>> msgs = fuzz_ticks(200, seed=1, exchange="kraken", symbol="BTC/USD", start_ms=1_561_939_200_000,
...                   ingest_ms=1_700_000_000_000)
>>> len(msgs), msgs == fuzz_ticks(200, seed=1, exchange="kraken", symbol="BTC/USD",
...                               start_ms=1_561_939_200_000, ingest_ms=1_700_000_000_000)
(200, True)
>>> max(len(m.value) for m in msgs) <= MAX_BODY
True
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass

__all__ = ["FUZZ_EXCHANGE", "FUZZ_SYMBOLS", "FuzzMessage", "MAX_BODY", "fuzz_outputs", "fuzz_ticks"]

MAX_BODY = 900_000
"""Largest fuzzed body, bytes: under the 1 MB event size of Event Hubs and librdkafka's
``message.max.bytes`` (1,000,000)."""
FUZZ_EXCHANGE = "fuzzx"
"""Exchange of the invented symbols (never the replay's)."""
FUZZ_SYMBOLS = 100
"""Invented symbols, more than the 64 the new-symbol token bucket lets through at once."""
YEAR_MS = 365 * 86_400_000


@dataclass(frozen=True, slots=True)
class FuzzMessage:
    """One fuzzed message: Kafka ``key`` and ``value``, what it is (``kind``), and what must happen.

    ``must_refuse``: the functions must dead-letter it. ``dup_of``: index of the message it
    duplicates (refused when the original was accepted). ``after_start``: send it only once the
    valid symbol has started (a bad tick of the valid symbol).
    """

    key: bytes | None
    value: bytes
    kind: str
    must_refuse: bool
    dup_of: int | None = None
    after_start: bool = False


def _dumps(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _tick(exchange, symbol, trade_id, price, event_ms, ingest_ms, side="buy", qty=0.5) -> dict:
    return {"v": 1, "type": "tick", "exchange": exchange, "symbol": symbol, "trade_id": trade_id, "price": price,
            "quantity": qty, "side": side, "event_time_ms": event_ms, "ingest_time_ms": ingest_ms}


def _mutations(rng: random.Random, base: dict, numeric: tuple[str, ...], strings: tuple[str, ...]) -> list[tuple[str, bytes]]:
    """Invalid variants of the valid object ``base``: ``(kind, body)``; every one must be refused.

    ``numeric`` are required number fields (never an optional one: ``null`` must be refused),
    ``strings`` required string fields.
    """
    num, text = rng.choice(numeric), rng.choice(strings)
    raw = _dumps(base).decode()
    out = [
        ("not_json", raw[: rng.randrange(1, len(raw) - 1)].encode()),
        ("not_json", b"tick " + raw.encode()),
        ("binary", rng.randbytes(rng.randrange(1, 200))),
        ("not_object", _dumps([base])),
        ("not_object", b"42"),
        ("wrong_type", _dumps({**base, num: str(base[num])})),
        ("wrong_type", _dumps({**base, num: None})),
        ("list_for_string", _dumps({**base, text: [base[text]]})),
        ("version_true", _dumps({**base, "v": True})),
        ("unknown_version", _dumps({**base, "v": rng.choice([0, 2, 99])})),
        ("unknown_version", _dumps({**base, "v": "1"})),
        ("number_1e400", raw.replace(f'"{num}":{json.dumps(base[num])}', f'"{num}":1e400').encode()),
        ("number_1.7e308", _dumps({**base, num: 1.7e308})),
        ("nan", raw.replace(f'"{num}":{json.dumps(base[num])}', f'"{num}":NaN').encode()),
        ("infinity", raw.replace(f'"{num}":{json.dumps(base[num])}', f'"{num}":-Infinity').encode()),
        ("long_symbol", _dumps({**base, "symbol": "S" * 300})),
        ("long_exchange", _dumps({**base, "exchange": "x" * rng.randrange(33, 60)})),
        ("missing_field", _dumps({k: v for k, v in base.items() if k != num})),
    ]
    if rng.random() < 0.005:  # rare: about ten megabytes per 10,000 messages in all
        out = [("huge_body", _dumps({**base, "symbol": "H" * rng.randrange(100_000, MAX_BODY - 1_000)}))]
    return out


def fuzz_ticks(n: int, *, seed: int, exchange: str, symbol: str, start_ms: int, ingest_ms: int) -> list[FuzzMessage]:
    """``n`` hostile messages for the ticks hub (deterministic for a given seed and times).

    Parameters
    ----------
    n : int
        How many (>= 0).
    seed : int
        Seed of the generator.
    exchange, symbol : str
        The valid replay's symbol: only bad-time ticks of it are sent (``after_start``).
    start_ms : int
        Event time near the replay's first trade, ms since epoch UTC.
    ingest_ms : int
        Ingest time stamped on the fuzzed ticks, ms since epoch UTC (about now).
    """
    rng = random.Random(seed)
    out: list[FuzzMessage] = []
    ids = {s: 1_000 for s in range(FUZZ_SYMBOLS)}
    valid: list[int] = []
    back = 0
    while len(out) < n:
        roll = rng.random()
        s = rng.randrange(FUZZ_SYMBOLS)
        fsym = f"FZ{s:04d}/USD"
        event = start_ms + rng.randrange(0, 3_600_000)
        if roll < 0.30:  # a valid tick of an invented symbol
            ids[s] += rng.randrange(1, 50)
            body = _tick(FUZZ_EXCHANGE, fsym, ids[s], round(rng.uniform(1, 1e5), 4), event, ingest_ms,
                         rng.choice(["buy", "sell"]), round(rng.uniform(0, 10), 6))
            if rng.random() < 0.002:
                body["padding"] = "p" * rng.randrange(10_000, MAX_BODY - 1_000)
            valid.append(len(out))
            out.append(FuzzMessage(fsym.encode(), _dumps(body), "valid_new_symbol", False))
        elif roll < 0.40 and valid:  # a duplicate of an earlier valid tick
            i = rng.choice(valid[-200:])
            out.append(FuzzMessage(out[i].key, out[i].value, "duplicate", False, dup_of=i))
        elif roll < 0.47:  # bad time or id of the valid symbol
            kind = rng.choice(["future", "past", "jump"])
            back += rng.randrange(1, 1_000)
            if kind == "future":
                t = ingest_ms + rng.randrange(1, 10) * YEAR_MS
            elif kind == "past":
                t = start_ms - rng.randrange(1, 1_000) * 60_000
            else:  # years ahead of the 2019 clock, never ahead of ingest, decreasing: no three agree
                t = ingest_ms - 3_600_000 - back
            tid = rng.choice([None, 2**63 - 1, rng.randrange(1, 2**62)])
            out.append(FuzzMessage(symbol.encode(), _dumps(_tick(exchange, symbol, tid, 10_000.0, t, ingest_ms)),
                                   f"valid_symbol_{kind}", True, after_start=True))
        else:  # malformed or out of bounds
            base = _tick(FUZZ_EXCHANGE, fsym, ids[s] + 1, 100.0, event, ingest_ms)
            numeric = ("price", "quantity", "event_time_ms", "ingest_time_ms")  # trade_id is optional
            kind, body = rng.choice(_mutations(rng, base, numeric, ("exchange", "symbol", "side")))
            out.append(FuzzMessage(rng.choice([fsym.encode(), None, rng.randbytes(8)]), body, kind, True))
            special = rng.random()
            if special < 0.1:
                bad = {**base, "price": rng.choice([0, -1, -1e-9, 1e13])}
                out.append(FuzzMessage(fsym.encode(), _dumps(bad), "bad_price", True))
            elif special < 0.2:
                bad = {**base, "trade_id": rng.choice([2**63, 2**64, -5])}
                out.append(FuzzMessage(fsym.encode(), _dumps(bad), "bad_trade_id", True))
            elif special < 0.25:
                bad = {**base, "event_time_ms": ingest_ms + rng.randrange(2, 100) * YEAR_MS}
                out.append(FuzzMessage(fsym.encode(), _dumps(bad), "far_future", True))
    return out[:n]


def fuzz_outputs(n: int, *, seed: int, exchange: str, symbol: str, start_ms: int, now_ms: int) -> list[FuzzMessage]:
    """``n`` hostile messages for the predictions hub (deterministic for a given seed and times).

    Valid bars and predictions are only of invented symbols (they would overwrite the valid
    symbol's rows); invalid ones may name the valid symbol (``exchange``, ``symbol``).
    """
    rng = random.Random(seed)
    out: list[FuzzMessage] = []
    while len(out) < n:
        s = rng.randrange(FUZZ_SYMBOLS)
        minute = (start_ms - start_ms % 60_000) + 60_000 * rng.randrange(0, 600)
        price = round(rng.uniform(1, 1e5), 2)
        bar = {"v": 1, "type": "bar", "exchange": FUZZ_EXCHANGE, "symbol": f"FZ{s:04d}/USD", "open_time_ms": minute,
               "open": price, "high": price * 1.01, "low": price * 0.99, "close": price, "volume": 1.5,
               "trade_count": rng.randrange(1, 100)}
        pred = {"v": 1, "type": "prediction", "exchange": FUZZ_EXCHANGE, "symbol": f"FZ{s:04d}/USD",
                "target_time_ms": minute, "made_at_ms": now_ms, "last_close": price, "predicted_close": price,
                "lower": price * 0.99, "upper": price * 1.01, "interval_level": 0.9, "model_version": "fuzz",
                "latency_ms": 5, "drift_alarms": 0}
        roll = rng.random()
        key = f"FZ{s:04d}/USD".encode()
        if roll < 0.25:
            out.append(FuzzMessage(key, _dumps(rng.choice([bar, pred])), "valid_output", False))
        elif roll < 0.30:
            price_event = {"v": 1, "type": "price", "exchange": FUZZ_EXCHANGE, "symbol": f"FZ{s:04d}/USD",
                           "price": price, "event_time_ms": minute, "sent_at_ms": now_ms}
            out.append(FuzzMessage(key, _dumps(price_event), "valid_price", False))
        else:
            base = dict(rng.choice([bar, pred]))
            if rng.random() < 0.3:  # bad events may name the valid symbol: they must not touch it
                base.update(exchange=exchange, symbol=symbol)
                key = symbol.encode()
            # not predicted_close, lower or upper: any finite positive forecast is valid (1.7e308 too)
            numeric = ("open", "close", "volume", "open_time_ms") if base["type"] == "bar" else (
                "last_close", "target_time_ms", "interval_level", "made_at_ms")
            kind, body = rng.choice(_mutations(rng, base, numeric, ("exchange", "symbol", "type")))
            if rng.random() < 0.1:
                kind, body = "wrong_event_type", _dumps({**base, "type": rng.choice(["tick", "deadletter", "BAR", 7])})
            elif rng.random() < 0.1 and base["type"] == "prediction":
                kind, body = "bad_interval_level", _dumps({**base, "interval_level": rng.choice([0, 1, 1.5, -0.1])})
            elif rng.random() < 0.05:
                kind, body = "long_model_version", _dumps({**pred, "model_version": "m" * 200})
            out.append(FuzzMessage(key, body, kind, True))
    return out[:n]
