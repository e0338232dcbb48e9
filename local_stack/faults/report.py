"""Compare what a scenario produced with what the valid trades must give; the suite's table.

:func:`compare` takes the expected events (:mod:`local_stack.faults.expected`), the predictions
and dead-letter hubs read whole, the history store's rows and the fuzzed messages sent, and
returns one flat dict of figures per scenario; :func:`markdown_table` lays them out.

Definitions (per kind, bars and predictions, of the valid symbols only; fuzzed events excluded):

* ``expected``: keys the valid trades must give; ``got``: distinct keys on the predictions hub;
* ``missing``: expected keys never on the hub; ``extra``: keys on the hub that were not expected;
* ``redelivered``: identical copies beyond the first (Event Hubs outputs are at least once);
* ``conflicting``: keys seen with more than one content; ``wrong``: keys with a copy whose
  compared fields differ from the expected (:data:`~local_stack.faults.expected.BAR_FIELDS`,
  :data:`~local_stack.faults.expected.PREDICTION_FIELDS`; floats to 1e-9 relative);
* ``store_missing`` / ``store_wrong``: the same against the history store's rows.

Dead letters are grouped by reason (:func:`reason_class`). A fuzzed message that must be refused
and has no dead letter at its hub position is ``fuzz_unaccounted``; so is a duplicate tick accepted
when its original was accepted too (``fuzz_accepted_twice``). Valid replay ticks with a dead
letter are ``valid_deadlettered``.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping

from local_stack.faults.expected import BAR_FIELDS, PREDICTION_FIELDS, Expected
from local_stack.faults.fuzz import FuzzMessage
from local_stack.faults.readback import Record

__all__ = ["COLUMNS", "compare", "markdown_table", "reason_class"]

_REASONS = [
    ("not_json", r"^not JSON"), ("not_object", r"^not a JSON object"), ("schema_version", r"^unsupported schema"),
    ("event_type", r"^expected type"), ("too_long", r"longer than \d+ characters"),
    ("out_of_range", r"must (be in|fit in 64 bits|lie)|out of range|must be > 0|must be >= 0"),
    ("not_finite", r"must be finite"), ("wrong_type", r"must be (a number|an integer|a non-empty string|one of)"),
    ("future", r"ms after its ingest time"), ("time_jump", r"ahead of its symbol's clock"),
    ("stale", r"lags the feed"), ("id_jump", r"jumps \d+ above"), ("new_symbol_rate", r"new symbols, then one per"),
    ("late", r"^late tick"), ("out_of_sequence", r"not above the last seen"), ("engine_error", r"^engine error"),
    ("store_refused", r"^store refused"), ("batch_failed", r"^batch failed after"),
    ("undecodable", r"^undecodable"), ("interval_level", r"interval_level"),
]


def reason_class(reason: str) -> str:
    """A short class of a dead letter's reason, e.g. ``not_json``, ``future``, ``late``.

    Examples
    --------
    >>> reason_class("price must be finite, got inf"), reason_class("late tick: its minute closed before ...")
    ('not_finite', 'late')
    >>> reason_class("something new")
    'other: something new'
    """
    for name, pattern in _REASONS:
        if re.search(pattern, reason):
            return name
    return "other: " + re.sub(r"\d+", "N", reason)[:40]


_POSITION = re.compile(r"^(\w+)\[\d+\].* offset=(\d+):(\d+)$", re.DOTALL)  # a fuzzed key may hold newlines


def _hub_position(letter: Mapping) -> tuple[str, int, int] | None:
    """``(hub, partition, offset)`` of a dead letter from a function (``ticks``/``predictions``), else None."""
    m = _POSITION.match(str(letter.get("position", "")))
    return (m.group(1), int(m.group(2)), int(m.group(3))) if m else None


def _close(a, b) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, (int, float)) and isinstance(b, (int, float)) and math.isclose(a, b, rel_tol=1e-9)
    return a == b


def _side(expected: Mapping, got: Mapping[tuple, list[dict]], fields: tuple[str, ...], name: str) -> dict:
    out = Counter(extra=0, redelivered=0, conflicting=0, wrong=0)
    examples: list[dict] = []
    for key, copies in sorted(got.items()):
        contents = {json.dumps({f: c.get(f) for f in fields}, sort_keys=True) for c in copies}
        exp = expected.get(key)
        out["extra"] += exp is None
        out["redelivered"] += len(copies) - len(contents)
        out["conflicting"] += len(contents) > 1
        if exp is not None and any(not all(_close(c.get(f), getattr(exp, f)) for f in fields) for c in copies):
            out["wrong"] += 1
            if len(examples) < 3:
                examples.append({"key": key, "expected": {f: getattr(exp, f) for f in fields},
                                 "got": [json.loads(c) for c in sorted(contents)]})
    missing = sorted(k for k in expected if k not in got)
    out["missing"] = len(missing)
    return {**{f"{name}_{k}": v for k, v in {"expected": len(expected), "got": len(got), **out}.items()},
            f"{name}_examples": {"missing": missing[:5], "wrong": examples}}


def _store(expected: Mapping, rows: Iterable, key, fields: tuple[str, ...], name: str) -> dict:
    by_key = defaultdict(list)
    for row in rows:
        by_key[key(row)].append(row)
    wrong = sum(1 for k, exp in expected.items() if k in by_key
                and (len(by_key[k]) != 1 or not all(_close(getattr(by_key[k][0], f), getattr(exp, f)) for f in fields)))
    return {f"store_{name}_missing": sum(1 for k in expected if k not in by_key), f"store_{name}_wrong": wrong,
            f"store_{name}_extra": sum(1 for k in by_key if k not in expected)}


def compare(expected: Expected, outputs: list[Record], deadletters: list[Record], *, fuzz: Mapping[tuple[str, int, int], FuzzMessage] | None = None,
            store_bars: Iterable = (), store_predictions: Iterable = (), valid_symbols: set[tuple[str, str]]) -> dict:
    """The figures of one scenario (see the module docstring).

    Parameters
    ----------
    expected : what the valid trades must give.
    outputs, deadletters : the predictions and dead-letter hubs, read whole.
    fuzz : fuzzed messages delivered, by ``(hub, partition, offset)`` with hub ``ticks`` or ``predictions``.
    store_bars, store_predictions : the history store's rows of the valid symbols.
    valid_symbols : ``(exchange, symbol)`` pairs of the valid replay.
    """
    fuzz = fuzz or {}
    fuzz_outputs = {(p, o) for (hub, p, o) in fuzz if hub == "predictions"}
    bars, preds = defaultdict(list), defaultdict(list)
    first_made: dict[tuple, int] = {}
    latencies: list[int] = []
    for r in outputs:
        if (r.partition, r.offset) in fuzz_outputs:
            continue
        try:
            e = json.loads(r.value)
        except ValueError:
            continue
        if not isinstance(e, dict) or (e.get("exchange"), e.get("symbol")) not in valid_symbols:
            continue
        if e.get("type") == "bar":
            bars[(e["exchange"], e["symbol"], e["open_time_ms"])].append(e)
        elif e.get("type") == "prediction":
            key = (e["exchange"], e["symbol"], e["target_time_ms"])
            preds[key].append(e)
            first_made.setdefault(key, e["made_at_ms"])
            latencies.append(e["latency_ms"])
    made = sorted(first_made.values())
    result = {**_side(expected.bars, bars, BAR_FIELDS, "bars"),
              **_side(expected.predictions, preds, PREDICTION_FIELDS, "predictions"),
              **_store(expected.bars, store_bars, lambda b: (b.exchange, b.symbol, b.open_time_ms), BAR_FIELDS, "bars"),
              **_store(expected.predictions, store_predictions, lambda p: (p.exchange, p.symbol, p.target_time_ms),
                       PREDICTION_FIELDS, "predictions"),
              "latency_max_ms": max(latencies, default=0),
              "latency_p50_ms": sorted(latencies)[len(latencies) // 2] if latencies else 0,
              "max_gap_s": round(max((b - a for a, b in zip(made, made[1:])), default=0) / 1000, 1)}
    result.update(_deadletters(deadletters, fuzz))
    return result


def _deadletters(deadletters: list[Record], fuzz: Mapping[tuple[str, int, int], FuzzMessage]) -> dict:
    reasons: Counter = Counter()
    refused: set[tuple[str, int, int]] = set()
    valid_dead = 0
    for r in deadletters:
        try:
            letter = json.loads(r.value)
        except ValueError:
            reasons["unreadable dead letter"] += 1
            continue
        where = _hub_position(letter)
        if where is not None and where in refused:
            continue  # the same event dead-lettered again (a redelivered batch)
        reasons[f"{where[0] if where else letter.get('source', '?')}: {reason_class(str(letter.get('reason', '')))}"] += 1
        if where is None:
            continue
        refused.add(where)
        if where[0] == "ticks" and where not in fuzz:
            valid_dead += 1
    must = [pos for pos, m in fuzz.items() if m.must_refuse]
    accepted = {pos for pos, m in fuzz.items() if not m.must_refuse and pos not in refused}
    copies = Counter((m.key, m.value) for pos, m in fuzz.items() if pos in accepted and pos[0] == "ticks")
    twice = sum(n - 1 for n in copies.values() if n > 1)  # identical messages (a duplicate and its original)
    examples = [{"at": pos, "kind": m.kind, "value": m.value[:160].decode("utf-8", "replace")}
                for pos, m in fuzz.items() if m.must_refuse and pos not in refused][:5]
    return {"deadletters": sum(reasons.values()), "deadletter_reasons": dict(sorted(reasons.items())),
            "fuzz_unaccounted_examples": examples,
            "valid_deadlettered": valid_dead, "fuzz_sent": len(fuzz), "fuzz_must_refuse": len(must),
            "fuzz_accepted": len(accepted), "fuzz_accepted_twice": twice,
            "fuzz_unaccounted": sum(1 for pos in must if pos not in refused) + twice}


COLUMNS = [
    ("scenario", "scenario"), ("bars exp/got", None), ("bars missing", "bars_missing"),
    ("bars dup (conflicting/redelivered)", None), ("bars wrong", "bars_wrong"), ("preds exp/got", None),
    ("preds missing", "predictions_missing"), ("preds dup (conflicting/redelivered)", None),
    ("preds wrong", "predictions_wrong"), ("store missing/wrong (bars, preds)", None),
    ("dead letters", "deadletters"), ("fuzz unaccounted", "fuzz_unaccounted"),
    ("valid ticks dead-lettered", "valid_deadlettered"), ("lost by driver", "lost"),
    ("restores replayed (events)", None),
    ("worst latency s", None), ("longest gap s (outage s)", None), ("wall s", "wall_s"),
]
"""Columns of the table: header and the figure shown (``None``: composed in :func:`_cell`)."""


def _cell(row: Mapping, header: str, name: str | None) -> str:
    if name is not None:
        return str(row.get(name, ""))
    if header.startswith("bars exp"):
        return f"{row['bars_expected']}/{row['bars_got']}"
    if header.startswith("preds exp"):
        return f"{row['predictions_expected']}/{row['predictions_got']}"
    if header.startswith("bars dup"):
        return f"{row['bars_conflicting']}/{row['bars_redelivered']}"
    if header.startswith("preds dup"):
        return f"{row['predictions_conflicting']}/{row['predictions_redelivered']}"
    if header.startswith("restores replayed"):
        return f"{row.get('hub_replays', 0)} ({row.get('hub_replayed_events', 0)})"
    if header.startswith("store"):
        return (f"{row['store_bars_missing']}/{row['store_bars_wrong']}, "
                f"{row['store_predictions_missing']}/{row['store_predictions_wrong']}")
    if header.startswith("worst latency"):
        return f"{row['latency_max_ms'] / 1000:.1f}"
    if header.startswith("longest gap"):
        return f"{row['max_gap_s']:.1f} ({row.get('outage_s', 0):g})"
    return ""


def markdown_table(rows: list[Mapping]) -> str:
    """The suite's table (one row per scenario), then the dead letters by reason, as markdown."""
    lines = ["| " + " | ".join(h for h, _ in COLUMNS) + " |", "|" + " --- |" * len(COLUMNS)]
    lines += ["| " + " | ".join(_cell(r, h, n) for h, n in COLUMNS) + " |" if "error" not in r else
              f"| {r['scenario']} | failed: {r['error'].splitlines()[0][:200]} |" + " |" * (len(COLUMNS) - 2)
              for r in rows]
    rows = [r for r in rows if "error" not in r]
    reasons = sorted({k for r in rows for k in r.get("deadletter_reasons", {})})
    if reasons:
        lines += ["", "Dead letters by hub and reason (each event once):", "",
                  "| reason | " + " | ".join(r["scenario"] for r in rows) + " |", "|" + " --- |" * (len(rows) + 1)]
        lines += [f"| {k} | " + " | ".join(str(r.get("deadletter_reasons", {}).get(k, 0)) for r in rows) + " |"
                  for k in reasons]
    return "\n".join(lines)
