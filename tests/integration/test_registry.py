"""Model registry (shared/lifecycle/registry.py) and the Azurite process manager, against a real Azurite."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy
import pytest
import river
from azure.storage.blob import ContainerClient
from river import linear_model

from local_stack.azurite import AzuriteServer
from shared.contracts.events import SCHEMA_VERSION
from shared.lifecycle.registry import (
    DigestMismatchError,
    ModelMetadata,
    ModelNotFoundError,
    ModelRegistry,
    PointerConflictError,
    RegistryError,
    VersionExistsError,
)
from shared.settings import Settings, SettingsError

REPO_ROOT = Path(__file__).resolve().parents[2]
T0 = 1_763_845_560_123  # 2025-11-22T21:06:00.123Z
FEATURES = ("ret_1", "ret_5")
VERSION_RE = re.compile(r"\d{8}T\d{9}Z-[0-9a-f]{8}")


def trained_model() -> linear_model.LinearRegression:
    model = linear_model.LinearRegression()
    for i in range(20):
        x = {"ret_1": (i % 5) / 10, "ret_5": (i % 3) / 7}
        model.learn_one(x, 2 * x["ret_1"] - x["ret_5"] + 0.1)
    return model


def save(registry: ModelRegistry, key: str, model: object, created_at_ms: int = T0, **kw) -> ModelMetadata:
    return registry.save(
        key,
        model,
        training_start_ms=created_at_ms - 3_600_000,
        training_end_ms=created_at_ms - 60_000,
        feature_names=FEATURES,
        created_at_ms=created_at_ms,
        **kw,
    )


# --------------------------------------------------------------------------- tripwire

UNPICKLED: list[str] = []


def _tripwire(payload: str) -> Tripwire:
    UNPICKLED.append(payload)  # runs only when the bytes are unpickled
    return Tripwire(payload)


class Tripwire:
    """Records in UNPICKLED whenever an instance is unpickled."""

    def __init__(self, payload: str) -> None:
        self.payload = payload

    def __reduce__(self):
        return _tripwire, (self.payload,)


@pytest.fixture
def tripwire_version(model_registry: ModelRegistry) -> ModelMetadata:
    UNPICKLED.clear()
    meta = save(model_registry, "trip", Tripwire("A" * 64))
    assert UNPICKLED == []
    return meta


def model_blob(meta: ModelMetadata) -> str:
    return f"{meta.key}/candidates/{meta.version}/model.pkl"


# --------------------------------------------------------------------------- round trip


def test_save_list_load_round_trip_of_a_river_model(model_registry: ModelRegistry) -> None:
    model = trained_model()
    x = {"ret_1": 0.25, "ret_5": -0.1}
    meta = save(model_registry, "BTCUSDT", model, extra={"mae": 1.5, "bars": 60})

    assert model_registry.list_versions("BTCUSDT") == [meta.version]
    loaded, loaded_meta = model_registry.load("BTCUSDT", meta.version)
    assert isinstance(loaded, linear_model.LinearRegression)
    assert loaded is not model
    assert loaded.predict_one(x) == model.predict_one(x)
    assert loaded.weights == model.weights
    assert loaded_meta == meta
    # the loaded model keeps learning like the original
    loaded.learn_one(x, 1.0)
    model.learn_one(x, 1.0)
    assert loaded.predict_one(x) == model.predict_one(x)


def test_metadata_fields_and_sha256(model_registry: ModelRegistry, blob_container: ContainerClient) -> None:
    meta = save(model_registry, "default", trained_model(), extra={"note": "first"})
    raw = blob_container.download_blob(model_blob(meta)).readall()

    assert meta.key == "default"
    assert VERSION_RE.fullmatch(meta.version), meta.version
    assert meta.version.startswith("20251122T210600123Z-")
    assert meta.version.endswith(hashlib.sha256(raw).hexdigest()[:8])
    assert meta.created_at_ms == T0
    assert (meta.training_start_ms, meta.training_end_ms) == (T0 - 3_600_000, T0 - 60_000)
    assert meta.feature_names == FEATURES
    assert meta.sha256 == hashlib.sha256(raw).hexdigest()
    assert meta.size_bytes == len(raw)
    assert meta.library_versions == {
        "python": ".".join(map(str, sys.version_info[:3])),
        "river": river.__version__,
        "numpy": numpy.__version__,
        "tickcast_schema": str(SCHEMA_VERSION),
    }
    assert meta.extra == {"note": "first"}
    assert model_registry.metadata("default", meta.version) == meta

    stored = json.loads(blob_container.download_blob(f"default/candidates/{meta.version}/metadata.json").readall())
    assert stored["sha256"] == meta.sha256 and stored["feature_names"] == list(FEATURES)
    assert ModelMetadata.from_dict(stored) == meta
    assert ModelMetadata.from_dict({**stored, "unknown_future_field": 1}) == meta
    hash(meta)  # frozen and hashable despite its dict fields
    with pytest.raises(AttributeError):
        meta.version = "x"  # type: ignore[misc]


def test_versions_sort_by_time_and_default_creation_time(model_registry: ModelRegistry) -> None:
    later = save(model_registry, "k", trained_model(), created_at_ms=T0 + 1)
    earlier = save(model_registry, "k", trained_model(), created_at_ms=T0 - 86_400_000)
    before = time.time_ns() // 1_000_000
    now = model_registry.save(
        "k", {"any": "picklable"}, training_start_ms=0, training_end_ms=0, feature_names=[]
    )
    assert before <= now.created_at_ms <= time.time_ns() // 1_000_000
    assert model_registry.list_versions("k") == [earlier.version, later.version, now.version]
    assert model_registry.list_versions("other") == []
    assert model_registry.list_versions("k.") == []  # no prefix confusion between keys


def test_same_bytes_same_millisecond_is_refused(model_registry: ModelRegistry) -> None:
    save(model_registry, "k", {"w": 1})
    with pytest.raises(VersionExistsError):
        save(model_registry, "k", {"w": 1})
    save(model_registry, "k", {"w": 2})  # other bytes, other version
    assert len(model_registry.list_versions("k")) == 2


def test_half_written_version_is_invisible(model_registry: ModelRegistry, blob_container: ContainerClient) -> None:
    blob_container.upload_blob("k/candidates/20250101T000000000Z-00000000/model.pkl", pickle.dumps(1))
    assert model_registry.list_versions("k") == []
    with pytest.raises(ModelNotFoundError):
        model_registry.load("k", "20250101T000000000Z-00000000")


def test_bad_inputs_write_nothing(model_registry: ModelRegistry) -> None:
    with pytest.raises(ValueError, match="JSON"):
        save(model_registry, "k", {"w": 1}, extra={"score": float("nan")})
    with pytest.raises(ValueError, match="JSON"):
        save(model_registry, "k", {"w": 1}, extra={"when": object()})
    with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
        save(model_registry, "k", lambda x: x)
    with pytest.raises(ValueError, match="feature_names"):
        model_registry.save("k", 1, training_start_ms=0, training_end_ms=1, feature_names="ret_1")
    with pytest.raises(ValueError, match="after"):
        model_registry.save("k", 1, training_start_ms=2, training_end_ms=1, feature_names=[])
    with pytest.raises(ValueError, match="non-negative int"):
        model_registry.save("k", 1, training_start_ms=1.5, training_end_ms=2, feature_names=[])
    assert model_registry.list_versions("k") == []


# --------------------------------------------------------------------------- integrity


def test_tampered_model_blob_is_refused_before_unpickling(
    model_registry: ModelRegistry, blob_container: ContainerClient, tripwire_version: ModelMetadata
) -> None:
    meta = tripwire_version
    raw = blob_container.download_blob(model_blob(meta)).readall()
    i = raw.index(b"A" * 64) + 10
    tampered = raw[:i] + b"B" + raw[i + 1 :]
    assert len(tampered) == len(raw)
    blob_container.upload_blob(model_blob(meta), tampered, overwrite=True)

    with pytest.raises(DigestMismatchError, match="sha256"):
        model_registry.load("trip", meta.version)
    with pytest.raises(DigestMismatchError):
        model_registry.set_current("trip", meta.version)
        model_registry.load_current("trip")
    assert UNPICKLED == []
    # control: the tampered bytes are a valid pickle that *would* have run the tripwire
    pickle.loads(tampered)
    assert UNPICKLED == ["A" * 10 + "B" + "A" * 53]


def test_truncated_model_blob_is_refused_before_unpickling(
    model_registry: ModelRegistry, blob_container: ContainerClient, tripwire_version: ModelMetadata
) -> None:
    meta = tripwire_version
    raw = blob_container.download_blob(model_blob(meta)).readall()
    blob_container.upload_blob(model_blob(meta), raw[:-1], overwrite=True)
    with pytest.raises(DigestMismatchError, match="bytes"):
        model_registry.load("trip", meta.version)
    blob_container.upload_blob(model_blob(meta), b"", overwrite=True)
    with pytest.raises(DigestMismatchError):
        model_registry.load("trip", meta.version)
    assert UNPICKLED == []
    # the untampered bytes do load (and run the tripwire, as unpickling should)
    blob_container.upload_blob(model_blob(meta), raw, overwrite=True)
    loaded, _ = model_registry.load("trip", meta.version)
    assert isinstance(loaded, Tripwire) and UNPICKLED == ["A" * 64]


# --------------------------------------------------------------------------- missing things


def test_missing_version_raises_model_not_found(model_registry: ModelRegistry, blob_container: ContainerClient) -> None:
    meta = save(model_registry, "k", {"w": 1})
    for key, version in [("k", "20990101T000000000Z-deadbeef"), ("nokey", meta.version)]:
        with pytest.raises(ModelNotFoundError):
            model_registry.load(key, version)
        with pytest.raises(ModelNotFoundError):
            model_registry.metadata(key, version)
        with pytest.raises(ModelNotFoundError):
            model_registry.set_current(key, version)
    blob_container.delete_blob(model_blob(meta))  # metadata without its model blob
    with pytest.raises(ModelNotFoundError, match="model blob"):
        model_registry.load("k", meta.version)


def test_missing_container_is_reported_as_such(azurite: AzuriteServer, model_signing_key: str) -> None:
    client = ContainerClient.from_connection_string(azurite.connection_string, f"absent-{uuid.uuid4().hex}")
    registry = ModelRegistry(client)
    with pytest.raises(RegistryError, match="ensure_container") as info:
        registry.list_versions("k")
    assert not isinstance(info.value, ModelNotFoundError)
    with pytest.raises(RegistryError, match="ensure_container"):
        save(registry, "k", {"w": 1})
    with pytest.raises(RegistryError, match="ensure_container"):
        registry.current("k")
    assert registry.ensure_container() is True
    assert registry.ensure_container() is False
    try:
        assert registry.current("k") is None
        save(registry, "k", {"w": 1})
        assert len(registry.list_versions("k")) == 1
    finally:
        client.delete_container()


def test_corrupt_metadata_and_pointer_are_registry_errors(
    model_registry: ModelRegistry, blob_container: ContainerClient
) -> None:
    meta = save(model_registry, "k", {"w": 1})
    name = f"k/candidates/{meta.version}/metadata.json"
    for body in (b"not json", b"[1, 2]", json.dumps({**meta.to_dict(), "sha256": "xyz"}).encode()):
        blob_container.upload_blob(name, body, overwrite=True)
        with pytest.raises(RegistryError, match="malformed"):
            model_registry.load("k", meta.version)
    blob_container.upload_blob("k/current.json", b'{"version": "../../x"}')
    with pytest.raises(RegistryError, match="malformed"):
        model_registry.current("k")


# --------------------------------------------------------------------------- champion pointer


def test_current_pointer_set_get_and_load(model_registry: ModelRegistry, blob_container: ContainerClient) -> None:
    assert model_registry.current("BTCUSDT") is None
    assert model_registry.load_current("BTCUSDT") is None
    m1, m2 = trained_model(), trained_model()
    m2.learn_one({"ret_1": 5.0, "ret_5": 5.0}, -3.0)
    v1 = save(model_registry, "BTCUSDT", m1).version
    v2 = save(model_registry, "BTCUSDT", m2, created_at_ms=T0 + 60_000).version

    before = time.time_ns() // 1_000_000
    etag1 = model_registry.set_current("BTCUSDT", v1)
    assert model_registry.current("BTCUSDT") == (v1, etag1)
    pointer = json.loads(blob_container.download_blob("BTCUSDT/current.json").readall())
    assert pointer["version"] == v1
    assert before <= pointer["updated_at_ms"] <= time.time_ns() // 1_000_000
    loaded = model_registry.load_current("BTCUSDT")
    assert loaded is not None
    x = {"ret_1": 0.3, "ret_5": 0.2}
    assert loaded[0].predict_one(x) == m1.predict_one(x) and loaded[1].version == v1

    etag2 = model_registry.set_current("BTCUSDT", v2, if_match_etag=etag1)
    assert etag2 != etag1
    assert model_registry.current("BTCUSDT") == (v2, etag2)
    model, meta = model_registry.load_current("BTCUSDT")  # type: ignore[misc]
    assert meta.version == v2 and model.predict_one(x) == m2.predict_one(x)


def test_conditional_pointer_writes(model_registry: ModelRegistry) -> None:
    v1 = save(model_registry, "k", {"w": 1}).version
    v2 = save(model_registry, "k", {"w": 2}).version
    etag1 = model_registry.set_current("k", v1)  # None: create only if absent
    with pytest.raises(PointerConflictError):
        model_registry.set_current("k", v2)  # a pointer exists already
    etag2 = model_registry.set_current("k", v2, if_match_etag=etag1)
    with pytest.raises(PointerConflictError):
        model_registry.set_current("k", v1, if_match_etag=etag1)  # stale etag
    assert model_registry.current("k") == (v2, etag2)
    etag3 = model_registry.set_current("k", v1, force=True)  # unconditional rollback
    assert model_registry.current("k") == (v1, etag3)
    with pytest.raises(ValueError):
        model_registry.set_current("k", v1, if_match_etag=etag3, force=True)


def test_pointer_deleted_under_a_conditional_write(
    model_registry: ModelRegistry, blob_container: ContainerClient
) -> None:
    v1 = save(model_registry, "k", {"w": 1}).version
    etag = model_registry.set_current("k", v1)
    blob_container.delete_blob("k/current.json")
    with pytest.raises(PointerConflictError):
        model_registry.set_current("k", v1, if_match_etag=etag)


def test_promotion_race_has_one_winner(model_registry: ModelRegistry) -> None:
    v1 = save(model_registry, "k", {"w": 1}).version
    v2 = save(model_registry, "k", {"w": 2}).version
    seen = model_registry.current("k")  # both promoters read "no pointer"
    model_registry.set_current("k", v1, if_match_etag=seen and seen[1])
    with pytest.raises(PointerConflictError):
        model_registry.set_current("k", v2, if_match_etag=seen and seen[1])
    assert model_registry.current("k")[0] == v1  # type: ignore[index]


# --------------------------------------------------------------------------- keys and settings


@pytest.mark.parametrize(
    "key", ["", ".", "..", "a/b", "../x", "a b", "ä", "a\n", "a\\b", "k?x", "x" * 201, None, 7]
)
def test_invalid_keys_are_rejected(model_registry: ModelRegistry, key: object) -> None:
    with pytest.raises(ValueError):
        save(model_registry, key, {"w": 1})  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        model_registry.list_versions(key)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        model_registry.current(key)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        model_registry.load("k", key)  # type: ignore[arg-type]  # versions obey the same rule


@pytest.mark.parametrize("key", ["default", "BTCUSDT", "BTC-USD.coinbase_v2", ".hidden", "x" * 200, "0"])
def test_valid_keys_round_trip(model_registry: ModelRegistry, key: str) -> None:
    meta = save(model_registry, key, [key])
    assert model_registry.list_versions(key) == [meta.version]
    assert model_registry.load(key, meta.version)[0] == [key]


def test_from_settings(azurite: AzuriteServer, blob_container: ContainerClient) -> None:
    settings = Settings.from_env(
        {"MODEL_STORAGE": azurite.connection_string, "MODELS_CONTAINER": blob_container.container_name}
    )
    registry = ModelRegistry.from_settings(settings)
    assert registry.ensure_container() is False
    meta = save(registry, "default", {"w": 1})
    assert ModelRegistry(blob_container).list_versions("default") == [meta.version]
    with pytest.raises(SettingsError):
        ModelRegistry.from_settings(Settings.from_env({}))
    url = "https://tickcastmodels.blob.core.windows.net"  # identity needs HTTPS; no request is made
    by_url = ModelRegistry.from_settings(Settings.from_env({"MODEL_STORAGE__blobServiceUri": url}))
    assert by_url.container.url == url + "/models"
    assert type(by_url.container.credential).__name__ == "DefaultAzureCredential"


# --------------------------------------------------------------------------- Azurite process


def _process_gone(pid: int) -> bool:
    """True when ``pid`` no longer runs (absent, or a zombie left for a non-reaping init)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def test_session_server_properties(azurite: AzuriteServer) -> None:
    assert azurite.running and azurite.port > 0
    assert azurite.blob_endpoint == f"http://127.0.0.1:{azurite.port}/devstoreaccount1"
    assert f"BlobEndpoint={azurite.blob_endpoint};" in azurite.connection_string
    assert "AccountName=devstoreaccount1;" in azurite.connection_string
    assert azurite.startup_seconds is not None and azurite.startup_seconds < 30


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_stop_leaves_no_process(tmp_path: Path) -> None:
    with AzuriteServer(location=tmp_path / "data") as server:
        pid, port = server.pid, server.port
        assert pid is not None and not _process_gone(pid) and _accepts(port)
        ModelRegistry(ContainerClient.from_connection_string(server.connection_string, "models")).ensure_container()
    assert not server.running and server.pid is None
    assert _process_gone(pid)
    assert not _accepts(port)
    assert (tmp_path / "data").is_dir()  # a given location is kept
    server.stop()  # idempotent
    with pytest.raises(RuntimeError):
        server.port


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_azurite_exits_when_its_python_parent_is_killed() -> None:
    code = (
        "import os, sys\n"
        "from local_stack.azurite import AzuriteServer\n"
        "s = AzuriteServer().start()\n"
        "print(s.pid, s.log_path.parent, flush=True)\n"
        "os.kill(os.getpid(), 9)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == -9, out.stderr
    pid, workdir = int(out.stdout.split()[0]), Path(out.stdout.split()[1])
    deadline = time.monotonic() + 10
    while (not _process_gone(pid) or workdir.exists()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _process_gone(pid)
    assert not workdir.exists()  # Azurite removed the work directory its dead parent left


def test_start_failures_are_clear_runtime_errors(azurite: AzuriteServer, tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="node"):
        AzuriteServer(node=str(tmp_path / "no-node")).start()
    with pytest.raises(RuntimeError, match="npm ci"):
        AzuriteServer(azurite_main=tmp_path / "main.js").start()
    busy = AzuriteServer(port=azurite.port, startup_timeout=10)
    with pytest.raises(RuntimeError, match="EADDRINUSE"):
        busy.start()
    assert not busy.running and busy.pid is None
    with pytest.raises(ValueError):
        AzuriteServer(location=tmp_path, in_memory=True)
    assert os.listdir(tmp_path) == []
