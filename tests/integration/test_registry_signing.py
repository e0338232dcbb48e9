"""Model blobs are authenticated: planted candidates, checkpoints and pointers never execute.

Against a real Azurite (tests/servers/azurite.py). The attacker here can write the models
container (and so rewrite any record with a matching sha256) but does not hold
``MODEL_SIGNING_KEY``. The payload is a pickle whose ``__reduce__`` creates a marker file, so
"never executed" is checked on the file system; a control shows the same payload does run when
it is signed with the deployment's key.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import secrets
from pathlib import Path

import pytest
from azure.storage.blob import ContainerClient
from river import linear_model

from shared.lifecycle.champions import ChampionSource
from shared.lifecycle.promotion import PromotionService
from shared.lifecycle.registry import (
    ModelIdentity,
    ModelMetadata,
    ModelRegistry,
    ModelSigner,
    SignatureError,
    symbol_key,
)
from shared.lifecycle.registry.layout import PICKLE_PROTOCOL, time_stamp

T0 = 1_763_845_560_123  # 2025-11-22T21:06:00.123Z
FEATURES = ("ret_1", "ret_5")
EXCHANGE, SYMBOL = "binance", "BTCUSDT"
KEY = symbol_key(EXCHANGE, SYMBOL)


class Bomb:
    """Unpickling it creates ``path`` (stands for arbitrary code execution)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def trained_model() -> linear_model.LinearRegression:
    model = linear_model.LinearRegression()
    for i in range(20):
        model.learn_one({"ret_1": i / 10, "ret_5": -i / 20}, i / 5)
    return model


def save(registry: ModelRegistry, key: str, model: object, created_at_ms: int = T0) -> ModelMetadata:
    return registry.save(key, model, training_start_ms=0, training_end_ms=60_000, feature_names=FEATURES,
                         created_at_ms=created_at_ms)


def plant_candidate(container: ContainerClient, key: str, data: bytes, mac: str | None, created_ms: int) -> str:
    """Write ``data`` as a candidate with a valid sha256 and size beside it, and ``mac``; return its version."""
    sha = hashlib.sha256(data).hexdigest()
    version = f"{time_stamp(created_ms)}-{sha[:8]}"
    meta = ModelMetadata(key, version, created_ms, 0, 60_000, FEATURES, sha, len(data), mac=mac or "").to_dict()
    if mac is None:
        del meta["mac"]  # exactly what metadata written before signing looks like
    container.upload_blob(f"{key}/candidates/{version}/model.pkl", data)
    container.upload_blob(f"{key}/candidates/{version}/metadata.json", json.dumps(meta).encode())
    return version


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    return tmp_path / "executed"


@pytest.fixture
def bomb(marker: Path) -> bytes:
    return pickle.dumps(Bomb(marker), protocol=PICKLE_PROTOCOL)


def forged_macs(bomb: bytes, key: str, model_signing_key: str, version_of) -> dict[str, str | None]:
    """The MACs an attacker may try: none, garbage, another key's, and ours for another version/kind."""
    other_key = ModelSigner(secrets.token_hex(32))
    ours = ModelSigner(model_signing_key)
    version = version_of(bomb)
    return {
        "unsigned": None,
        "garbage": "0" * 64,
        "another key": other_key.mac(ModelIdentity("candidate", key, version), bomb),
        "another version": ours.mac(ModelIdentity("candidate", key, "20200101T000000000Z-00000000"), bomb),
        "another model key": ours.mac(ModelIdentity("candidate", "default", version), bomb),
        "a checkpoint's": ours.mac(ModelIdentity("checkpoint", key, version), bomb),
    }


def _version_at(ms: int):
    return lambda data: f"{time_stamp(ms)}-{hashlib.sha256(data).hexdigest()[:8]}"


def test_signed_model_loads_and_the_payload_would_run(model_registry: ModelRegistry, marker: Path) -> None:
    model = trained_model()
    meta = save(model_registry, KEY, model)
    assert len(meta.mac) == 64
    loaded, _ = model_registry.load(KEY, meta.version)
    x = {"ret_1": 0.3, "ret_5": 0.2}
    assert loaded.predict_one(x) == model.predict_one(x)
    # control: the bomb, signed with our key, is loaded, so the refusals below are the MAC's doing
    signed_bomb = save(model_registry, KEY, Bomb(marker), created_at_ms=T0 + 1)
    assert not marker.exists()
    model_registry.load(KEY, signed_bomb.version)
    assert marker.exists()


def test_planted_candidates_never_execute_in_load_or_promotion(
    model_registry: ModelRegistry, blob_container: ContainerClient, model_signing_key: str, bomb: bytes,
    marker: Path,
) -> None:
    for i, how in enumerate(forged_macs(bomb, KEY, model_signing_key, _version_at(T0))):
        created = T0 + 1000 * i  # one version per forgery
        mac = forged_macs(bomb, KEY, model_signing_key, _version_at(created))[how]
        version = plant_candidate(blob_container, KEY, bomb, mac, created)
        refusal = "unsigned" if mac is None else "does not verify"
        with pytest.raises(SignatureError, match=refusal):
            model_registry.load(KEY, version)
        decision = PromotionService(model_registry).handle(KEY, version)
        assert not decision.promoted, how
        assert decision.reason.startswith("refused before unpickling") and refusal in decision.reason, how
        assert model_registry.current(KEY) is None, how
        assert not marker.exists(), how


def test_overwritten_pointer_to_a_planted_version_never_executes(
    model_registry: ModelRegistry, blob_container: ContainerClient, bomb: bytes, marker: Path
) -> None:
    good = save(model_registry, KEY, trained_model())
    model_registry.set_current(KEY, good.version)
    planted = plant_candidate(blob_container, KEY, bomb, "f" * 64, T0 + 5)
    blob_container.upload_blob(f"{KEY}/current.json", json.dumps({"version": planted}).encode(), overwrite=True)

    with pytest.raises(SignatureError):
        model_registry.load_current(KEY)
    champions = ChampionSource(model_registry, "default", checkpoint_seconds=0)
    assert champions.initial(EXCHANGE, SYMBOL) is None  # starts cold rather than run the planted blob
    assert champions.errors == 1
    # a pointer back to the signed version serves it again
    blob_container.upload_blob(f"{KEY}/current.json", json.dumps({"version": good.version}).encode(),
                               overwrite=True)
    serving = ChampionSource(model_registry, "default", checkpoint_seconds=0).initial(EXCHANGE, SYMBOL)
    assert serving is not None and serving.version == good.version
    assert not marker.exists()


def test_planted_checkpoint_never_executes_and_the_champion_serves(
    model_registry: ModelRegistry, blob_container: ContainerClient, model_signing_key: str, bomb: bytes,
    marker: Path,
) -> None:
    good = save(model_registry, KEY, trained_model())
    model_registry.set_current(KEY, good.version)
    # a genuine checkpoint first: it is what predict resumes from
    model_registry.save_checkpoint(KEY, good.version, trained_model())
    restored = ChampionSource(model_registry, "default", checkpoint_seconds=0).initial(EXCHANGE, SYMBOL)
    assert restored is not None and restored.restored

    ours = ModelSigner(model_signing_key)
    candidate_mac = ours.mac(ModelIdentity("candidate", KEY, good.version), bomb)
    for how, mac in {"unsigned": None, "garbage": "1" * 64, "a candidate's MAC": candidate_mac,
                     "another key": ModelSigner("x" * 32).mac(ModelIdentity("checkpoint", KEY, good.version), bomb)}.items():
        info = {"key": KEY, "version": good.version, "sha256": hashlib.sha256(bomb).hexdigest(),
                "size_bytes": len(bomb), "saved_at_ms": T0}
        if mac is not None:
            info["mac"] = mac
        blob_container.upload_blob(f"{KEY}/checkpoints/{good.version}/model.pkl", bomb, overwrite=True)
        blob_container.upload_blob(f"{KEY}/checkpoints/{good.version}/checkpoint.json",
                                   json.dumps(info).encode(), overwrite=True)
        with pytest.raises(SignatureError):
            model_registry.load_checkpoint(KEY, good.version)
        serving = ChampionSource(model_registry, "default", checkpoint_seconds=0).initial(EXCHANGE, SYMBOL)
        assert serving is not None and not serving.restored and serving.version == good.version, how
        assert not marker.exists(), how


def test_without_a_key_nothing_is_saved_or_loaded(
    model_registry: ModelRegistry, blob_container: ContainerClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    meta = save(model_registry, KEY, trained_model())
    monkeypatch.delenv("MODEL_SIGNING_KEY")
    keyless = ModelRegistry(blob_container)
    with pytest.raises(SignatureError, match="no MODEL_SIGNING_KEY"):
        keyless.load(KEY, meta.version)
    with pytest.raises(SignatureError, match="no MODEL_SIGNING_KEY"):
        save(keyless, KEY, trained_model(), created_at_ms=T0 + 1)
    with pytest.raises(SignatureError):
        keyless.save_checkpoint(KEY, meta.version, trained_model())
    assert keyless.list_versions(KEY) == [meta.version]  # nothing was written
    assert keyless.metadata(KEY, meta.version) == meta  # records stay readable
    # another deployment's key does not verify ours
    with pytest.raises(SignatureError, match="does not verify"):
        ModelRegistry(blob_container, secrets.token_hex(32)).load(KEY, meta.version)
    with pytest.raises(ValueError, match="at least 32"):
        ModelRegistry(blob_container, "short")
