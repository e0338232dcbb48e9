"""Checkpoints: the latest online-updated state of a version while it serves a key.

``<key>/checkpoints/<version>/model.pkl`` and its ``checkpoint.json`` (sha256, size, MAC, save
time) are overwritten by each save, through the same verified put/get as candidates
(:class:`~shared.lifecycle.registry.blobs.Blobs`), so a half-written, tampered or planted
checkpoint is refused rather than loaded. Its MAC (:mod:`.signing`) is of kind ``checkpoint``
for this key and version: a checkpoint cannot pass as a candidate, nor move to another key.
"""

from __future__ import annotations

import json
from typing import Any

from shared.lifecycle.registry.blobs import Digest, OnBlobs, dumps_model
from shared.lifecycle.registry.signing import ModelIdentity
from shared.lifecycle.registry.layout import (
    CHECKPOINT_BLOB,
    MODEL_BLOB,
    ModelNotFoundError,
    RegistryError,
    checkpoint_blob,
    int_ms,
    json_bytes,
    now_ms,
)


class Checkpoints(OnBlobs):
    """Save and load checkpoints of serving models."""

    def save_checkpoint(
        self, key: str, version: str, model: object, *, saved_at_ms: int | None = None
    ) -> str:
        """Store the online-updated state of ``version`` serving ``key`` (overwrites the last one).

        ``model.pkl`` is written before ``checkpoint.json``; :meth:`load_checkpoint`
        checks the bytes against the latter, so a half-written checkpoint is refused
        rather than loaded.

        Parameters
        ----------
        key, version : str
            The key served and the version whose state this is.
        model : object
            Any picklable object.
        saved_at_ms : int, optional
            Save time, ms since epoch, UTC; default now.

        Returns
        -------
        str
            sha256 (hex) of the pickled bytes.

        Raises
        ------
        ValueError
            Invalid key, version or ``saved_at_ms``.
        pickle.PicklingError, TypeError, AttributeError
            ``model`` cannot be pickled (nothing is written).
        SignatureError
            No signing key is configured (nothing is written).
        RegistryError
            The container does not exist.
        """
        model_name = checkpoint_blob(key, version, MODEL_BLOB)
        data, digest = dumps_model(model)
        info = {
            "key": key,
            "version": version,
            "sha256": digest.sha256,
            "size_bytes": digest.size_bytes,
            "mac": self.blobs.sign(ModelIdentity("checkpoint", key, version), data),
            "saved_at_ms": now_ms() if saved_at_ms is None else int_ms(saved_at_ms, "saved_at_ms"),
        }
        self.blobs.put_verified(
            model_name,
            data,
            checkpoint_blob(key, version, CHECKPOINT_BLOB),
            json_bytes(info, "checkpoint"),
            overwrite=True,
            what=f"checkpoint {key}/{version}",
        )
        return digest.sha256

    def load_checkpoint(self, key: str, version: str) -> tuple[object, dict[str, Any]] | None:
        """The last checkpoint of ``version`` serving ``key`` as ``(model, info)``; ``None`` if none.

        ``info`` is the content of ``checkpoint.json``: ``key``, ``version``, ``sha256``,
        ``size_bytes``, ``mac`` and ``saved_at_ms`` (ms since epoch, UTC).

        Raises
        ------
        ValueError
            Invalid key or version.
        DigestMismatchError
            The bytes differ from ``checkpoint.json`` (nothing was unpickled).
        SignatureError
            Unsigned (written before signing), mis-signed, or no key configured (nothing was unpickled).
        RegistryError
            Malformed ``checkpoint.json``, or no container.
        """
        record_name = checkpoint_blob(key, version, CHECKPOINT_BLOB)
        try:
            raw, _ = self.blobs.get(record_name, "")
        except ModelNotFoundError:
            return None
        try:
            info = json.loads(raw)
            expected = Digest(str(info["sha256"]), int(info["size_bytes"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise RegistryError(f"malformed checkpoint {record_name}: {exc!r}") from None
        try:
            model = self.blobs.get_verified(
                checkpoint_blob(key, version, MODEL_BLOB),
                expected,
                ModelIdentity("checkpoint", key, version),
                info.get("mac"),
                f"checkpoint {key}/{version}",
                CHECKPOINT_BLOB,
            )
        except ModelNotFoundError:
            return None
        return model, info
