"""``predict`` under redelivery: a retried or redelivered batch never feeds a tick to the engine twice,
and re-sends the outputs the failed invocation should have sent.

The host re-invokes a function with a retry policy with the same batch ("Azure Functions error
handling and retries", learn.microsoft.com/azure/azure-functions/functions-bindings-error-pages,
"Retries"); an output binding's failure fails the invocation after the function returned, so the
engine had already applied the batch. Events are named by (partition, sequence number).
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import azure.functions as func
import pytest

from functions.common import event_ids
from ingestor.parsers.recorded import read_recorded
from shared.contracts.batches import RawEvent
from shared.contracts.events import Tick, encode
from shared.serving.predicting import REPLAY_WINDOW, AppliedEvents, PredictService, build_predict_service

REPO = Path(__file__).resolve().parents[2]
KRAKEN = REPO / "samples" / "kraken_XBTUSD_trades_20190701T00Z-01Z.csv.gz"
TICKS = [r.tick for r in read_recorded(KRAKEN) if r.tick is not None][:1500]


def _service(window: int = REPLAY_WINDOW) -> PredictService:
    """No registry (cold models), a fixed clock, a price event at every batch."""
    service = build_predict_service(None, "default", 0.9, 10.0, clock=lambda: 1_700_000_000_000,
                                    price_update_ms=0)
    service.applied = AppliedEvents(window)
    return service


def _batch(ticks: list[Tick], start: int, extra: list[tuple[int, bytes]] = ()):
    bodies = [encode(t) for t in ticks]
    for at, body in extra:
        bodies.insert(at, body)
    raws = [RawEvent(b, f"ticks[{i}] seq={start + i}") for i, b in enumerate(bodies)]
    return raws, [("key BTC/USD", start + i) for i in range(len(bodies))]


def _state(service: PredictService) -> bytes:
    return pickle.dumps((service.engine.symbols, service.engine.stats))


def _sent(result) -> tuple[list[bytes], list[bytes]]:
    return result.outputs, result.deadletters


def test_a_batch_handled_twice_sends_the_same_and_leaves_the_state_as_once():
    late = Tick("kraken", "BTC/USD", None, 1.0, 0.1, "buy", TICKS[0].event_time_ms - 3_600_000, 0)
    raws, ids = _batch(TICKS[:700], 0, [(5, b"{not json"), (650, encode(late))])
    once, twice = _service(), _service()
    first = once.handle(raws, ids)
    assert {"bars", "predictions", "prices", "malformed", "late"} <= set(first.counts)
    twice.handle(raws, ids)
    again = twice.handle(raws, ids)  # the retry of a failed invocation
    assert _sent(again) == _sent(first)
    assert again.counts["replayed"] == len(raws) and again.counts["ticks"] == 0
    assert _state(twice) == _state(once)
    following, following_ids = _batch(TICKS[700:], 702)
    assert _sent(twice.handle(following, following_ids)) == _sent(once.handle(following, following_ids))


def test_a_redelivered_batch_whose_output_failed_yields_what_an_uninterrupted_run_would():
    """The host redelivers from the last checkpoint: the failed batch, and more events after it."""
    b1, ids1 = _batch(TICKS[:600], 0)
    b2, ids2 = _batch(TICKS[600:], 600)
    uninterrupted = _service()
    expected = [uninterrupted.handle(b1, ids1), uninterrupted.handle(b2, ids2)]

    failed = _service()
    failed.handle(b1, ids1)  # its outputs were never acknowledged
    redelivered = failed.handle(b1 + b2, ids1 + ids2)
    events = lambda outs: [x for x in outs if json.loads(x)["type"] != "price"]
    assert events(redelivered.outputs) == events(expected[0].outputs) + events(expected[1].outputs)
    prices = lambda outs: [x for x in outs if json.loads(x)["type"] == "price"]
    assert prices(redelivered.outputs) == prices(expected[0].outputs) + prices(expected[1].outputs)
    assert redelivered.counts["replayed"] == len(b1) and redelivered.counts["ticks"] == len(b2)
    assert _state(failed) == _state(uninterrupted)


def test_events_older_than_the_cache_are_skipped_not_applied_again():
    raws, ids = _batch(TICKS[:300], 0)
    service = _service(window=50)
    service.handle(raws, ids)
    before = _state(service)
    again = service.handle(raws, ids)
    assert again.counts["redelivered_uncached"] == 250 and again.counts["replayed"] == 50
    assert again.counts["ticks"] == 0 and _state(service) == before


def test_events_without_a_position_are_always_applied():
    raws, _ = _batch(TICKS[:300], 0)
    service = _service()
    first = service.handle(raws)
    assert service.handle(raws).counts["ticks"] == first.counts["ticks"] == 300


def test_the_cache_holds_a_whole_host_batch():
    host = json.loads((REPO / "host.json").read_text())
    assert REPLAY_WINDOW >= host["extensions"]["eventHubs"]["maxEventBatchSize"]
    with pytest.raises(ValueError):
        AppliedEvents(0)


def test_event_ids_name_the_partition_from_the_trigger_metadata_else_the_partition_key():
    from azure.functions.meta import Datum

    metadata = {"PartitionContext": Datum(json.dumps({"PartitionId": "3", "ConsumerGroup": "predict"}), "json")}
    hosted = [func.EventHubEvent(body=b"{}", trigger_metadata=metadata, partition_key="BTC/USD", sequence_number=s)
              for s in (41, 42)]
    assert event_ids(hosted) == [("partition 3", 41), ("partition 3", 42)]
    local = [func.EventHubEvent(body=b"{}", partition_key="BTC/USD", sequence_number=7),
             func.EventHubEvent(body=b"{}", sequence_number=8), func.EventHubEvent(body=b"{}", partition_key="x")]
    assert event_ids(local) == [("key BTC/USD", 7), None, None]
    assert event_ids([]) == []


# --------------------------------------------------------------------- the results kept per partition
def test_only_events_that_produced_something_are_stored_and_the_rest_replay_as_nothing():
    from shared.serving.redelivery import EVICTED, Applied

    seen = AppliedEvents(window=5)
    bar = Applied([b"bar"])
    seen.remember_batch("p", 10, 13, [(10, Applied()), (12, bar)])  # 10 carries nothing: not stored
    assert seen.since("p", 0) == [(12, bar)]
    assert seen.lookup(("p", 12)) is bar
    assert seen.lookup(("p", 11)) == Applied() and seen.lookup(("p", 14)) is None
    seen.remember_batch("p", 14, 16, [])  # the window (5) now starts at 12
    assert seen.lookup(("p", 11)) is EVICTED and seen.lookup(("p", 12)) is bar
    seen.remember_batch("p", 17, 17, [])  # 12 leaves the window, and its stored result with it
    assert seen.lookup(("p", 12)) is EVICTED and seen.since("p", 0) == []
    seen.remember_batch("p", 30, 31, [(31, bar)])  # a gap: what came before is unknown
    assert seen.lookup(("p", 20)) is EVICTED and seen.lookup(("p", 30)) == Applied()
    assert seen.highest("p") == 31


def test_a_state_saved_before_results_were_sparse_restores_the_same():
    """States written before ``applied_from`` list every event of the newest batch."""
    from shared.serving.redelivery import EVICTED, Applied

    old, new = AppliedEvents(), AppliedEvents()
    bar = Applied([b"bar"])
    old.restore("p", 7, [(5, Applied()), (6, bar), (7, Applied())])
    new.restore("p", 7, [(6, bar)], 5)
    for seen in (old, new):
        assert seen.lookup(("p", 4)) is EVICTED and seen.lookup(("p", 6)) is bar
        assert seen.lookup(("p", 5)) == Applied() and seen.lookup(("p", 8)) is None


@pytest.mark.parametrize("where", ["lane", "event_by_event"])
def test_a_batch_retried_after_a_failure_mid_batch_applies_nothing_twice(monkeypatch, where):
    """Something unforeseen raising mid-batch, in the lane for the common tick or on the event-by-event
    path: the events applied before it are remembered, so the retry re-emits their outputs and applies
    only the rest (``handle``'s ``finally``, the lane's position)."""
    raws, ids = _batch(TICKS[:700], 0)
    reference = _service().handle(raws, ids)
    service = _service()
    failed_at: dict[str, int] = {}
    if where == "lane":  # the lane reading a common tick's body (a tick it takes, mid-batch)
        first = 399

        class FailingOnce(RawEvent):
            __slots__ = ()

            @property
            def body(self) -> bytes:
                if not failed_at:
                    failed_at["index"] = first
                    raise MemoryError("unforeseen")
                return RawEvent.body.__get__(self)

            @body.setter
            def body(self, value: bytes) -> None:
                RawEvent.body.__set__(self, value)

        raws[first] = FailingOnce(raws[first].body, raws[first].position)
    else:  # the third event that takes the event-by-event path (a new symbol, then bar closes)
        real_apply, calls = service._apply, []

        def failing(raw, *rest):
            calls.append(raw)
            if len(calls) == 3:
                failed_at["index"] = raws.index(raw)
                raise MemoryError("unforeseen")
            return real_apply(raw, *rest)

        monkeypatch.setattr(service, "_apply", failing)
    with pytest.raises(MemoryError):
        service.handle(raws, ids)
    monkeypatch.undo()
    assert failed_at["index"] > 0
    retried = service.handle(raws, ids)
    assert retried.counts["replayed"] == failed_at["index"]
    assert [o for o in retried.outputs if b'"price"' not in o] == [o for o in reference.outputs if b'"price"' not in o]
