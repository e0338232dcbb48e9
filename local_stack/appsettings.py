"""The app settings of a local function app, and the ``local.settings.json`` file that carries them.

:func:`local_app_settings` builds what the functions read (every documented default of
:data:`shared.settings.SETTINGS` that is not the local stack's own, the hub names, consumer groups,
``MODEL_STORAGE``, a random ``MODEL_SIGNING_KEY`` and ``STATE_CONTAINER``, the history store), as ``local_stack.run`` does
for ``make run``. :func:`write_local_settings` writes them in the form Azure Functions Core Tools'
``func start`` reads (``{"IsEncrypted": false, "Values": {...}}``; "Develop Azure Functions locally
using Core Tools", section "Local settings file", learn.microsoft.com/azure/azure-functions/
functions-develop-local#local-settings-file), and :func:`read_local_settings` reads them back for
``python -m local_stack functions``. The Kafka endpoint of the hubs is ``KAFKA_BOOTSTRAP_SERVERS``.

Examples
--------
>>> values = local_app_settings("UseDevelopmentStorage=true", signing_key="00" * 32)
>>> values["TICKS_HUB_NAME"], values["PREDICT_CONSUMER_GROUP"], values["MODEL_SIGNING_KEY"][:4]
('ticks', 'predict', '0000')
>>> "REPLAY_SPEED" in values  # the local stack's own knobs are not app settings
False
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

__all__ = ["local_app_settings", "read_local_settings", "write_local_settings"]


def local_app_settings(
    model_storage: str,
    *,
    bootstrap_servers: str | None = None,
    history_sqlite_path: str | os.PathLike[str] | None = None,
    mysql_url: str = "",
    signing_key: str | None = None,
    overrides: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The app settings of the function app run locally.

    Parameters
    ----------
    model_storage : str
        Blob Storage connection string (``MODEL_STORAGE``, Azurite's locally).
    bootstrap_servers : str, optional
        Kafka ``host:port`` of the hubs (``KAFKA_BOOTSTRAP_SERVERS``), for the local function driver.
    history_sqlite_path : path, optional
        SQLite history file (``HISTORY_SQLITE_PATH``), used when ``mysql_url`` is empty.
    mysql_url : str
        ``MYSQL_URL``; empty = not set here (the SQLite file, unless the environment sets it).
    signing_key : str, optional
        ``MODEL_SIGNING_KEY`` (64 hex digits); default: 32 random bytes, one per call.
    overrides : mapping, optional
        Further settings, applied last (hub names, consumer groups, ...).

    Returns
    -------
    dict of str to str
        Every value a string, as app settings are.
    """
    from shared.settings import LOCAL, SETTINGS

    values = {name: s.default for name, s in SETTINGS.items() if s.default and s.used_by != (LOCAL,)}
    values.update({
        "TICKS_HUB_NAME": "ticks",
        "PREDICTIONS_HUB_NAME": "predictions",
        "DEADLETTER_HUB_NAME": "deadletter",
        "PREDICT_CONSUMER_GROUP": "predict",
        "ARCHIVE_CONSUMER_GROUP": "archive",
        "BROADCAST_CONSUMER_GROUP": "broadcast",
        "MODEL_STORAGE": model_storage,
        "MODEL_SIGNING_KEY": signing_key or os.urandom(32).hex(),
        # predict's partition state: one container per call, like the key (a shared Azurite keeps
        # the state of earlier runs, signed with their keys)
        "STATE_CONTAINER": f"predict-state-{os.urandom(4).hex()}",
    })
    if mysql_url:
        values["MYSQL_URL"] = mysql_url
    if history_sqlite_path is not None:
        values["HISTORY_SQLITE_PATH"] = str(history_sqlite_path)
    if bootstrap_servers is not None:
        values["KAFKA_BOOTSTRAP_SERVERS"] = bootstrap_servers
        values["STATE_REPLAY_BOOTSTRAP_SERVERS"] = bootstrap_servers  # predict re-reads the ticks hub there
    values.update(overrides or {})
    return {k: str(v) for k, v in values.items()}


def write_local_settings(path: str | os.PathLike[str], values: Mapping[str, str]) -> Path:
    """Write ``values`` as a ``local.settings.json`` (``{"IsEncrypted": false, "Values": ...}``), mode 0600.

    It holds secrets (the signing key, the database password): readable by the owner only.
    Returns the path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"IsEncrypted": False, "Values": dict(values)}, f, indent=2, sort_keys=True)
        f.write("\n")
    return path


def read_local_settings(path: str | os.PathLike[str]) -> dict[str, str]:
    """The ``Values`` of a ``local.settings.json``, as strings.

    Raises
    ------
    ValueError
        The file is not JSON, is encrypted (``IsEncrypted`` true: only Core Tools can decrypt it),
        or has no ``Values`` object.
    OSError
        The file cannot be read.
    """
    try:
        data = json.loads(Path(path).read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("Values"), dict):
        raise ValueError(f"{path}: no \"Values\" object")
    if data.get("IsEncrypted"):
        raise ValueError(f"{path}: encrypted settings (IsEncrypted: true) cannot be read here")
    return {str(k): "" if v is None else str(v) for k, v in data["Values"].items()}
