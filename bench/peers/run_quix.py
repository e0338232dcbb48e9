"""Run ``bench/peers/quix_job.py`` (Quix Streams) on the benchmark's broker, from tickcast's venv.

The peer gets its own virtual environment, ``.venv-peers`` at the repository root, made here with
``python -m venv`` + ``pip install -r bench/peers/requirements.txt`` and reused while that file is
unchanged (its hash is in ``.venv-peers/.requirements-sha256``), so its pins never meet tickcast's.
Quix Streams reads ``retention.ms`` and ``retention.bytes`` from the configs of the topics it
consumes; Tansu reports none unless a topic was created with them (``KeyError: 'retention.ms'``
otherwise), so every topic here is created with both.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
VENV = REPO / ".venv-peers"
REQUIREMENTS = HERE / "requirements.txt"
TOPIC_CONFIG = {"retention.ms": "604800000", "retention.bytes": "-1"}


def peer_python() -> Path:
    """The peer venv's interpreter, (re)made when ``requirements.txt`` changed.

    Raises
    ------
    subprocess.CalledProcessError
        ``venv`` or ``pip`` failed (e.g. no access to PyPI).
    """
    sha = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    stamp = VENV / ".requirements-sha256"
    python = VENV / "bin" / "python"
    if not (stamp.exists() and stamp.read_text() == sha and python.exists()):
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "-r", str(REQUIREMENTS)], check=True)
        stamp.write_text(sha)
    return python


def create_topics(broker, names: list[str], partitions: int) -> None:
    """Create ``names`` with :data:`TOPIC_CONFIG` (what Quix needs from Tansu)."""
    from confluent_kafka.admin import NewTopic

    admin = broker.admin()  # kept alive until the futures resolve
    futures = admin.create_topics(
        [NewTopic(n, num_partitions=partitions, replication_factor=1, config=TOPIC_CONFIG) for n in names])
    for future in futures.values():
        future.result(15)


def _job(python: Path, broker, src: str, dst: str, state: str, expect: int = 0) -> subprocess.Popen:
    cmd = [str(python), str(HERE / "quix_job.py"), broker.bootstrap_servers, src, dst,
           f"quix-{uuid.uuid4().hex[:8]}", state] + (["--expect", str(expect)] if expect else [])
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def run_quix(broker, args, bare) -> list[tuple[str, str, str]]:
    """Latency and drain of the Quix job on ``broker`` with the ticks tickcast gets; table rows."""
    from confluent_kafka import Producer

    from local_stack.tansu import producer_config
    from pipeline import load_and_measure
    from pipeline_local import make_ticks
    from shared.contracts.events import encode

    try:
        python = peer_python()
    except (subprocess.CalledProcessError, OSError) as exc:
        return [("Quix Streams", "not run", f"its venv could not be built: {exc}")]
    rows = []
    tag = uuid.uuid4().hex[:8]
    src, dst, drain_src, drain_dst = (f"quix-{n}-{tag}" for n in ("ticks", "pred", "dticks", "dpred"))
    create_topics(broker, [src, dst, drain_src, drain_dst], args.partitions)
    with tempfile.TemporaryDirectory() as state:
        job = _job(python, broker, src, dst, state + "/lat")
        producer = Producer(producer_config(broker.bootstrap_servers))
        deadline = time.monotonic() + 60
        ready = threading.Event()
        threading.Thread(target=lambda: job.stdout.readline() and ready.set(), daemon=True).start()
        while not ready.is_set() and time.monotonic() < deadline and job.poll() is None:
            producer.produce(src, value=json.dumps({"probe": 1}).encode(), key=b"probe")
            producer.flush(1)
            ready.wait(0.2)
        if not ready.is_set():
            job.kill()
            return [("Quix Streams", "not run", f"job did not start: {job.stderr.read()[-400:]}")]
        lat = load_and_measure(broker.bootstrap_servers, src, dst, args)
        job.terminate()
        job.wait(30)
        rows.append(("Quix Streams 3.28: tick -> prediction, p50 / p99", f"{lat.p50:.1f} / {lat.p99:.1f} ms (n={lat.n})",
                     f"p99 {lat.p99 / bare.p99:.2f}x floor"))
        for _, tick in make_ticks(args.symbols, args.drain, ingest_ms=int(time.time() * 1000)):
            producer.produce(drain_src, value=encode(tick), key=tick.symbol.encode())
            producer.poll(0)
        producer.flush(60)
        job = _job(python, broker, drain_src, drain_dst, state + "/drain", expect=args.drain)
        try:
            out, err = job.communicate(timeout=600)
            result = json.loads(out.strip().splitlines()[-1])
            rate = (result["messages"] - 1) / result["seconds"]
            rows.append((f"Quix Streams 3.28: drain ({args.drain:,} ticks)", f"{rate:,.0f} ticks/s", ""))
        except (subprocess.TimeoutExpired, ValueError, IndexError, KeyError) as exc:
            job.kill()
            rows.append(("Quix Streams 3.28: drain", "failed", f"{exc!r} {job.stderr.read()[-300:] if job.stderr else ''}"))
    return rows
