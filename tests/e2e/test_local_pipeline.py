"""The whole local pipeline (the main job) against the session's real Tansu, Azurite and MariaDB.

Recorded trades are replayed by the ingestor (a child process) into Tansu; ``predict``
and ``archive`` are driven from Kafka consumers; bars and predictions land in
MariaDB. Checked: one prediction per closed minute that had a previous bar, every
output archived with realised prices filled, and bad input counted and set aside
without losing any valid trade.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer

from local_stack.run import DEFAULT_HISTORY, run
from local_stack.tansu import consumer_config, producer_config
from shared.storage.history import HistoryStore

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
ETH_CSV = DATA / "binance_spot_ETHUSDT_trades_20240808T2354Z-20240809T0005Z.csv.gz"
BTC_WS = DATA / "binance_spot_BTCUSDT_ws_raw_20240808T2354Z-20240809T0005Z.txt.gz"
pytestmark = pytest.mark.slow


def _rows(path: Path) -> tuple[list[str], list[list[str]]]:
    with gzip.open(path, "rt", newline="") as fh:
        reader = csv.reader(fh)
        return next(reader), list(reader)


def _expected_predictions(minutes: set[int]) -> int:
    # bars close when a later minute starts (the last stays open); the first closed bar has no previous bar
    return len(minutes) - 2


@pytest.fixture
def eth_with_bad_rows(tmp_path: Path) -> tuple[Path, set[int], int]:
    """The ETH trade file with bad rows mixed in; returns (path, valid minutes, bad rows the ingestor rejects)."""
    header, rows = _rows(ETH_CSV)
    minutes = {int(r[0]) // 60_000 for r in rows}
    bad_rows = [
        "not,a,trade",  # wrong column count
        f"{rows[100][0]},{rows[100][1]},{rows[100][2]},99,0,1.0,true,ETHUSDT",  # zero price
        f"{rows[200][0]},{rows[200][1]},{rows[200][2]},98,NaN,1.0,true,ETHUSDT",  # NaN price
        f"{rows[300][0]},{rows[300][1]},{rows[300][2]},97,-5,1.0,false,ETHUSDT",  # negative price
    ]
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(header)
    for i, row in enumerate(rows):
        w.writerow(row)
        if i in (150, 250, 350, 450):
            out.write(bad_rows.pop() + "\n")
        if i == 500:
            w.writerow(row)  # duplicate trade: same trade id again
        if i == 600:
            w.writerow(rows[590])  # out of order: an earlier trade id
    path = tmp_path / "binance_spot_ETHUSDT_trades_with_bad_rows.csv.gz"
    path.write_bytes(gzip.compress(out.getvalue().encode()))
    return path, minutes, 4


def test_local_pipeline_on_recorded_trades(kafka_broker, azurite, mysql_url, eth_with_bad_rows, tmp_path):
    eth_path, eth_minutes, rejected_by_ingestor = eth_with_bad_rows
    tag = uuid.uuid4().hex[:8]
    env = {
        "TICKS_HUB_NAME": f"ticks-{tag}",
        "PREDICTIONS_HUB_NAME": f"predictions-{tag}",
        "DEADLETTER_HUB_NAME": f"deadletter-{tag}",
        "PREDICT_CONSUMER_GROUP": f"predict-{tag}",
        "ARCHIVE_CONSUMER_GROUP": f"archive-{tag}",
        "MODELS_CONTAINER": f"models-{tag}",
        "MYSQL_URL": mysql_url,
    }
    # Events that never went through the ingestor's validation: predict must set them aside.
    kafka_broker.create_topics([env["TICKS_HUB_NAME"]])
    producer = Producer(producer_config(kafka_broker.bootstrap_servers))
    for raw in (b"garbage", b'{"v":1,"type":"tick"}', b'{"v":2,"type":"tick"}'):
        producer.produce(env["TICKS_HUB_NAME"], value=raw, key=b"ETHUSDT")
    assert producer.flush(10) == 0

    out = io.StringIO()
    result = run([BTC_WS, eth_path], DEFAULT_HISTORY, speed=0, workdir=tmp_path, env=env, out=out,
                 broker=kafka_broker, azurite=azurite, timeout_s=150)
    printed = out.getvalue()

    btc_minutes = set()
    with gzip.open(BTC_WS, "rt") as fh:
        for line in fh:
            if "@trade" in line:
                btc_minutes.add(json.loads(line.split(" ", 1)[1])["data"]["T"] // 60_000)
    expected = {"binance:BTCUSDT": _expected_predictions(btc_minutes),
                "binance:ETHUSDT": _expected_predictions(eth_minutes)}
    assert {k: v["predictions"] for k, v in result["symbols"].items()} == expected
    assert result["replay"]["malformed"] == rejected_by_ingestor
    assert result["printed"] == sum(expected.values())
    assert printed.count(" ETHUSDT ") >= expected["binance:ETHUSDT"]
    assert "Summary" in printed and "MAE persist." in printed

    with HistoryStore.from_url(mysql_url) as store:
        for key, n in expected.items():
            exchange, symbol = key.split(":")
            rows = store.predictions(exchange, symbol)
            assert len(rows) == n
            assert sum(r.realised_close is not None for r in rows) == n - 1  # the last target is still open
            bars = store.bars(exchange, symbol)
            assert len(bars) == n + 1
            # no forecast far from its last close, interval around it
            assert all(abs(r.predicted_close / r.last_close - 1) < 0.01 for r in rows)
            assert all(r.lower <= r.predicted_close <= r.upper for r in rows)
        eth_bars = store.bars("binance", "ETHUSDT")
        # the duplicate and the out-of-order trade were not merged into any bar
        header, rows = _rows(ETH_CSV)
        per_minute: dict[int, int] = {}
        for r in rows:
            per_minute[int(r[0]) // 60_000] = per_minute.get(int(r[0]) // 60_000, 0) + 1
        assert [b.trade_count for b in eth_bars] == [per_minute[b.open_time_ms // 60_000] for b in eth_bars]

    letters = _consume_all(kafka_broker, env["DEADLETTER_HUB_NAME"])
    reasons = [json.loads(x)["reason"] for x in letters]
    assert len(letters) == rejected_by_ingestor + 3 + 2
    assert sum("not above the last seen" in r for r in reasons) == 2  # duplicate + out of order
    assert sum("not JSON" in r for r in reasons) == 1
    assert sum("unsupported schema version" in r for r in reasons) == 1


def _consume_all(broker, topic: str) -> list[bytes]:
    c = Consumer(consumer_config(broker.bootstrap_servers, f"check-{uuid.uuid4().hex[:6]}", session_timeout_ms=2000))
    c.subscribe([topic])
    got, idle = [], 0
    while idle < 3:
        batch = [m for m in c.consume(100, 1.0) if m.error() is None]
        got += [m.value() for m in batch]
        idle = 0 if batch else idle + 1
    c.close()
    return got
