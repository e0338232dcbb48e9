"""``tickcast models`` against a real registry (Azurite): an unknown key exits non-zero with one line
naming the known keys; a known registry lists its keys (issue 17, item 4)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent


def _models(args, azurite, container, tmp_path):
    env = {**os.environ, "MODEL_STORAGE": azurite.connection_string, "MODELS_CONTAINER": container}
    return subprocess.run([str(BIN / "tickcast"), "models", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)


def test_unknown_model_key_exits_non_zero_with_one_line(azurite, blob_container, tmp_path):
    blob_container.upload_blob("binance.BTCUSDT/candidates/v1/metadata.json", b"{}")  # a key's folder
    listed = _models([], azurite, blob_container.container_name, tmp_path)
    assert listed.returncode == 0 and listed.stdout.startswith("binance.BTCUSDT"), listed.stderr
    proc = _models(["binance.NOPE"], azurite, blob_container.container_name, tmp_path)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [
        "binance.NOPE: no such model key in the registry (keys: binance.BTCUSDT)"
    ]
    assert "Traceback" not in proc.stderr
