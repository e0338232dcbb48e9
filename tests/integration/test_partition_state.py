"""Exact restarts of ``predict`` against a real Azurite: partition state saved with the position.

The Functions host redelivers from its checkpoint after a worker dies, to this or another instance
(host.json ``batchCheckpointFrequency`` 1: the checkpoint is written after each invocation returned;
"Azure Event Hubs trigger for Azure Functions", host.json settings). These tests play the host:
they deliver batches of real Kraken trades from the checkpoint, kill the worker at each point an
invocation can die (before its state was saved; after the save but before its outputs were sent;
after the outputs but before the checkpoint), start a new worker, and compare what reached the hub
with an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import json
import pickle
import random
import threading
from types import SimpleNamespace
from pathlib import Path

import pytest
from azure.storage.blob import ContainerClient
from confluent_kafka import Producer

from ingestor.parsers.recorded import read_recorded
from shared.contracts.batches import RawEvent
from shared.contracts.events import encode
from shared.lifecycle.champions import Backoff
from shared.lifecycle.registry.signing import ModelSigner
from local_stack.tansu import producer_config
from shared.serving.engine import new_forecaster
from shared.serving.hubreplay import KafkaHubReplay, replay_config
from shared.serving import predicting
from shared.serving.predicting import PredictService, build_predict_service
from shared.serving.statestore import PartitionStateStore

REPO = Path(__file__).resolve().parents[2]
KRAKEN = REPO / "samples" / "kraken_XBTUSD_trades_20190701T00Z-01Z.csv.gz"
TICKS = [r.tick for r in read_recorded(KRAKEN) if r.tick is not None]  # the hour: 2,672 trades
BODIES = [encode(t) for t in TICKS]
PARTITION = "partition 0"


def _store(container: ContainerClient, key: str) -> PartitionStateStore:
    return PartitionStateStore(container, ModelSigner(key), "ticks", "predict")


def _worker(store: PartitionStateStore | None, tick_features: bool = False, snapshot_seconds: float = 0.0,
            replay=None) -> PredictService:
    """A fresh worker process: cold models, a fixed clock (price events are wall-clock throttled).

    With ``snapshot_seconds``, its monotonic clock advances one second per batch, so that the
    state is saved every ``snapshot_seconds`` batches (and whenever a save is forced)."""
    worker = build_predict_service(None, "default", 0.9, 10.0, clock=lambda: 1_700_000_000_000, state_store=store,
                                   snapshot_seconds=snapshot_seconds, replay=replay)
    worker.engine.tick_features = tick_features
    batches = iter(range(10**9))
    worker.partitions.monotonic = lambda: float(next(batches))
    return worker


@pytest.fixture
def ticks_hub(kafka_broker, topic_factory):
    """The hour of Kraken trades on partition 0 of a fresh Tansu topic (offset i = sequence number i),
    and a :class:`KafkaHubReplay` of it: what a worker re-reads after restoring an older state."""
    topic = topic_factory(partitions=1)
    producer = Producer(producer_config(kafka_broker.bootstrap_servers))
    for body in BODIES:
        producer.produce(topic, body, key=b"BTC/USD", partition=0)
    assert producer.flush(30) == 0
    readers = []

    def reader(**kwargs) -> KafkaHubReplay:
        readers.append(KafkaHubReplay(replay_config(kafka_broker.bootstrap_servers, None, None), topic, **kwargs))
        return readers[-1]

    yield reader
    for r in readers:
        r.close()


def _deliver(worker: PredictService, start: int, end: int):
    raws = [RawEvent(BODIES[i], f"ticks seq={i}") for i in range(start, end)]
    return worker.handle(raws, [(PARTITION, i) for i in range(start, end)])


def _events(outputs: list[bytes]) -> list[tuple]:
    """Bars and predictions keyed by (type, exchange, symbol, minute), without wall-clock fields."""
    keyed = []
    for raw in outputs:
        event = json.loads(raw)
        if event["type"] == "price":
            continue
        minute = event.get("open_time_ms", event.get("target_time_ms"))
        for wall in ("made_at_ms", "latency_ms"):
            event.pop(wall, None)
        keyed.append(((event["type"], event["exchange"], event["symbol"], minute), json.dumps(event, sort_keys=True)))
    return keyed


def _reference(tick_features: bool = False) -> list[tuple]:
    worker, out, pos = _worker(None, tick_features), [], 0
    while pos < len(BODIES):
        end = min(len(BODIES), pos + 300)
        out += _events(_deliver(worker, pos, end).outputs)
        pos = end
    return out


REFERENCES: dict[bool, list[tuple]] = {}


def reference(tick_features: bool = False) -> list[tuple]:
    if tick_features not in REFERENCES:
        REFERENCES[tick_features] = _reference(tick_features)
    return REFERENCES[tick_features]


def _compare(got: list[tuple], tick_features: bool = False) -> dict[str, int]:
    expected = dict(reference(tick_features))
    seen: dict[tuple, set[str]] = {}
    for key, body in got:
        seen.setdefault(key, set()).add(body)
    return {
        "expected": len(expected),
        "missing": sum(key not in seen for key in expected),
        "conflicting": sum(len(bodies) > 1 for bodies in seen.values()),
        "wrong": sum(key in expected and expected[key] not in bodies for key, bodies in seen.items()),
        "unexpected": sum(key not in expected for key in seen),
        "redelivered": len(got) - len(seen),
    }


def _only_valid_bars(hub: list[tuple]) -> None:
    """Every bar published equals the uninterrupted run's, and predictions go on (they differ from it:
    the dropped partial minute was not learned from)."""
    expected = dict(reference())
    bars = [(k, body) for k, body in hub if k[0] == "bar"]
    assert len(bars) > 30 and all(expected[k] == body for k, body in bars)
    assert sum(k[0] == "prediction" for k, _ in hub) > 30


def _run_with_kills(new_worker, rng: random.Random, largest: int, ok_weight: int):
    """Play the host over the hour: batches of 20 to ``largest`` events from the checkpoint, each
    invocation either fine or killed before its state was saved (it died while applying: nothing
    sent, nothing saved, memory gone), before its outputs were sent, or before the checkpoint, each
    kill followed by a new worker from ``new_worker()``. Returns what reached the hub, the kills per
    point, and every worker used."""
    workers, checkpoint, hub = [new_worker()], 0, []
    kills = {"before_save": 0, "before_send": 0, "before_checkpoint": 0}
    while checkpoint < len(BODIES):
        end = min(len(BODIES), checkpoint + rng.randint(20, largest))  # batches form anew after each restart
        fate = rng.choices(["ok", "before_save", "before_send", "before_checkpoint"], [ok_weight, 1, 1, 1])[0]
        if fate == "before_save":
            _deliver(_worker(None), checkpoint, end)
        else:
            result = _deliver(workers[-1], checkpoint, end)
            if fate != "before_send":
                hub += _events(result.outputs)
            if fate == "ok":
                checkpoint = end
                continue
        kills[fate] += 1
        workers.append(new_worker())
    return hub, kills, workers


def _exact(hub: list[tuple], kills: dict[str, int], tick_features: bool) -> None:
    report = _compare(hub, tick_features)
    assert min(kills.values()) >= 2, kills
    assert report | {"redelivered": 0} == {"expected": report["expected"], "missing": 0, "conflicting": 0,
                                          "wrong": 0, "unexpected": 0, "redelivered": 0}, (report, kills)
    assert report["expected"] > 100  # ~59 bars and 58 predictions


@pytest.mark.parametrize(("seed", "tick_features"), [(1, False), (2, False), (3, False), (4, True)])
def test_kills_at_every_point_of_an_invocation_change_nothing_downstream(blob_container, model_signing_key, seed,
                                                                         tick_features):
    """State saved every batch; with tick features on, the order flow (per tick) is restored too."""
    hub, kills, _ = _run_with_kills(lambda: _worker(_store(blob_container, model_signing_key), tick_features),
                                    random.Random(seed), 300, 3)
    _exact(hub, kills, tick_features)


@pytest.mark.parametrize(("seed", "tick_features", "chunk"), [(5, False, None), (6, True, None), (7, False, 7)])
def test_kills_with_snapshots_every_few_batches_and_a_replay_of_the_hub_change_nothing(
        blob_container, model_signing_key, ticks_hub, monkeypatch, seed, tick_features, chunk):
    """State saved every 4th batch (``STATE_SNAPSHOT_SECONDS``): a restarted worker restores an older
    state and re-reads the ticks since from the broker (Flink's snapshot and source replay); what
    reaches the hub is the uninterrupted run's, with kills at every point of an invocation. With
    ``chunk``, the replay reads and applies that many events at a time."""
    if chunk is not None:
        monkeypatch.setattr(predicting, "REPLAY_CHUNK", chunk)
    hub, kills, workers = _run_with_kills(
        lambda: _worker(_store(blob_container, model_signing_key), tick_features, snapshot_seconds=4,
                        replay=ticks_hub()),
        random.Random(seed), 200, 6)
    replayed = sum(w.partitions.counts["replayed_events"] for w in workers)
    deferred = sum(w.partitions.counts["save_deferred"] for w in workers)
    assert replayed > 200 and deferred > 10, (replayed, deferred)  # restores did replay; saves were deferred
    _exact(hub, kills, tick_features)


def test_saves_are_deferred_but_never_past_a_new_symbol_or_a_model_swap(blob_container, model_signing_key):
    """What a replay cannot redo (a new symbol's warm-up and initial model, a swap) is saved at once."""
    worker = _worker(_store(blob_container, model_signing_key), snapshot_seconds=10**6)
    counts = worker.partitions.counts
    _deliver(worker, 0, 100)  # the partition's first batch on this worker: saved
    _deliver(worker, 100, 200)
    assert (counts["saved"], counts["save_deferred"]) == (1, 1)
    eth = dataclasses.replace(TICKS[200], symbol="ETH/USD", trade_id=None)
    worker.handle([RawEvent(encode(eth), "ticks seq=200")], [(PARTITION, 200)])
    assert (counts["saved"], counts["save_deferred"]) == (2, 1)
    swaps = iter([SimpleNamespace(forecaster=new_forecaster(), version="v2")])
    worker.engine.provider.refresh = lambda exchange, symbol, version: next(swaps, None)
    at = 201
    while worker.engine.stats.model_swaps == 0:  # batches until a bar closes and the swap happens
        saved = counts["saved"]
        _deliver_from(worker, at, at + 20)
        at += 20
    assert counts["saved"] == saved + 1 and counts["save_deferred"] > 1


def test_a_replay_swaps_no_model(blob_container, model_signing_key, ticks_hub):
    """The champion may have changed since the replayed ticks were first applied: a swap waits for the
    first bar the replay does not cover, or the replayed bars would train another model than they did."""
    first = _worker(_store(blob_container, model_signing_key), snapshot_seconds=10**6)
    _deliver(first, 0, 300)
    _deliver(first, 300, 900)  # deferred: the state stays at 299
    second = _worker(_store(blob_container, model_signing_key), replay=ticks_hub())
    asked = []
    second.engine.provider.refresh = lambda exchange, symbol, version: asked.append(second.engine.replaying)
    _deliver(second, 900, 1500)
    assert second.partitions.counts["replayed_events"] == 600
    assert asked and not any(asked)


def _deliver_from(worker: PredictService, start: int, end: int):
    """Kraken ticks ``start - 1 .. end - 2`` at sequence numbers ``start .. end - 1`` (one was taken above)."""
    raws = [RawEvent(BODIES[i - 1], f"ticks seq={i}") for i in range(start, end)]
    return worker.handle(raws, [(PARTITION, i) for i in range(start, end)])


def test_a_replay_that_cannot_be_read_marks_the_minute_partial_instead_of_publishing_it(
        blob_container, model_signing_key, ticks_hub):
    """The hub no longer holds the span (retention passed, here: a reader capped below its length)."""
    first = _worker(_store(blob_container, model_signing_key), snapshot_seconds=10**6)
    hub = _events(_deliver(first, 0, 1000).outputs)  # saved after its first batch only (at 999)
    hub += _events(_deliver(first, 1000, 1200).outputs)  # deferred; the worker dies after the checkpoint
    second = _worker(_store(blob_container, model_signing_key), replay=ticks_hub(max_events=100))
    hub_after = _events(_deliver(second, 1200, len(BODIES)).outputs)
    counts = second.partitions.counts
    assert (counts["replay_failed"], counts["state_gap"], counts["replays"]) == (1, 1, 0)
    assert second.engine.stats.partial_bars == 2
    expected = dict(reference())
    assert all(expected[k] == body for k, body in hub + hub_after if k[0] == "bar")
    skipped_minute = json.loads(BODIES[1200])["event_time_ms"] // 60_000 * 60_000
    assert ("bar", "kraken", "BTC/USD", skipped_minute) not in dict(hub_after)


def test_a_worker_that_lost_its_partition_cannot_overwrite_the_new_owners_state(blob_container, model_signing_key):
    """The Event Hubs extension moves a partition while an invocation of the old owner may still run:
    the old owner's save is fenced off by the ETag it read (412), and it reloads before its next batch."""
    store_a, store_b = _store(blob_container, model_signing_key), _store(blob_container, model_signing_key)
    a, b = _worker(store_a), _worker(store_b)
    hub = _events(_deliver(a, 0, 600).outputs)
    hub += _events(_deliver(b, 600, 1200).outputs)  # b takes the partition over
    hub += _events(_deliver(a, 600, 700).outputs)  # a's invocation in flight when it moved: its save is refused
    assert store_a.conflicts == 1 and a.partitions.counts["save_failed"] == 1
    assert store_b.load(PARTITION)[0] == 1199  # b's state stands
    hub += _events(_deliver(a, 1200, len(BODIES)).outputs)  # a gets it back: reloads b's state, not its own
    assert a.partitions.counts["superseded"] == 1 and a.partitions.counts["state_gap"] == 0
    assert _compare(hub) | {"expected": 0, "redelivered": 0} == {"expected": 0, "missing": 0, "conflicting": 0,
                                                                  "wrong": 0, "unexpected": 0, "redelivered": 0}


def test_background_uploads_skip_while_in_flight_and_never_land_after_a_waited_save(blob_container,
                                                                                   model_signing_key):
    store = _store(blob_container, model_signing_key)
    gate = threading.Event()
    upload = store._upload_logged

    def held(partition, blob):  # Blob Storage slow: a background upload waits until the test lets it go
        gate.wait(10)
        return upload(partition, blob)

    store._upload_logged = held
    assert store.save(PARTITION, 1, {"n": 1}, wait=False)  # queued, held in flight
    assert not store.save(PARTITION, 2, {"n": 2}, wait=False) and store.skipped == 1  # one in flight at a time
    threading.Timer(0.3, gate.set).start()
    assert store.load(PARTITION) == (1, {"n": 1})  # a read waits for the store's own upload in flight
    gate.clear()
    assert store.save(PARTITION, 3, {"n": 3}, wait=False)
    threading.Timer(0.3, gate.set).start()
    assert store.save(PARTITION, 4, {"n": 4})  # waits for 3, then writes: 3 cannot land after it
    store.flush()
    assert store.load(PARTITION) == (4, {"n": 4}) and store.saved == 3
    store.close()


def test_a_partition_moving_between_workers_and_back_resumes_from_the_newer_state(blob_container, model_signing_key):
    a, b = _worker(_store(blob_container, model_signing_key)), _worker(_store(blob_container, model_signing_key))
    hub, cuts = [], [0, 600, 1300, 2000, len(BODIES)]
    for i, (start, end) in enumerate(zip(cuts, cuts[1:])):
        owner = a if i % 2 == 0 else b  # a, b, a (which must drop what it held and load b's), b
        hub += _events(_deliver(owner, start, end).outputs)
    assert a.partitions.counts["moved"] == 1 and b.partitions.counts["moved"] == 1
    assert _compare(hub) | {"expected": 0} == {"expected": 0, "missing": 0, "conflicting": 0, "wrong": 0,
                                               "unexpected": 0, "redelivered": 0}


def test_state_behind_the_stream_drops_the_partial_minute_instead_of_publishing_it(blob_container, model_signing_key):
    first = _worker(_store(blob_container, model_signing_key))
    hub = _events(_deliver(first, 0, 1000).outputs)
    # ticks 1000..1199 were applied by a worker whose save failed, and it died after the checkpoint
    second = _worker(_store(blob_container, model_signing_key))
    hub_after = _events(_deliver(second, 1200, len(BODIES)).outputs)
    # two minutes may lack ticks: the one in progress at the save, and the one the stream resumes in
    assert second.partitions.counts["state_gap"] == 1 and second.engine.stats.partial_bars == 2
    saved_minute = json.loads(BODIES[999])["event_time_ms"] // 60_000 * 60_000
    assert ("bar", "kraken", "BTC/USD", saved_minute) not in dict(hub_after)
    expected = dict(reference())
    bars_after = [(k, body) for k, body in hub_after if k[0] == "bar"]
    assert bars_after and all(expected[k] == body for k, body in bars_after)  # no wrong bar, ever
    skipped_minute = json.loads(BODIES[1200])["event_time_ms"] // 60_000 * 60_000
    assert ("bar", "kraken", "BTC/USD", skipped_minute) not in dict(hub_after)
    assert all(expected[k] == body for k, body in hub)


def test_a_planted_state_blob_is_refused_and_never_unpickled(blob_container, model_signing_key, tmp_path):
    marker = tmp_path / "executed"

    class Exploit:
        def __reduce__(self):
            return (Path.touch, (marker,))

    store = _store(blob_container, model_signing_key)
    forged = PartitionStateStore.encode(ModelSigner("x" * 32), "ticks", "predict", PARTITION, 10**9, Exploit(), 0)
    blob_container.upload_blob(store.blob_name(PARTITION), forged, overwrite=True)
    worker = _worker(store)
    hub = _events(_deliver(worker, 0, len(BODIES)).outputs)
    assert not marker.exists()
    assert worker.partitions.counts["state_refused"] == 1 and worker.engine.stats.partial_bars == 1
    _only_valid_bars(hub)
    raw_pickle = PartitionStateStore.encode(ModelSigner(model_signing_key), "ticks", "predict", PARTITION, 5, {}, 0)
    assert pickle.loads(raw_pickle.split(b"\n", 2)[2]) == {}  # the format is what the docs say


def test_storage_down_costs_no_batch_and_no_valid_bar():
    closed = ContainerClient.from_connection_string(
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
        "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UU/mBcs7GRmdFw7iqZFqYm0k9+eR42CUpOQ==;"
        "BlobEndpoint=http://127.0.0.1:9/devstoreaccount1;", "predict-state", retry_total=0, connection_timeout=2)
    store = PartitionStateStore(closed, ModelSigner("k" * 32), "ticks", "predict", backoff=Backoff(first_seconds=60))
    worker = _worker(store)
    hub = []
    for start in range(0, len(BODIES), 200):
        hub += _events(_deliver(worker, start, min(len(BODIES), start + 200)).outputs)
    assert worker.partitions.counts["state_unavailable"] == 1
    assert store.failed <= 1 and store.saved == 0  # one failed call opens the breaker; the rest are skipped
    _only_valid_bars(hub)
