"""Candidate model versions: write-once, listed and loaded only once their metadata exists.

:meth:`Candidates.save` pickles the model, names the version after its creation time and
sha256, and writes ``model.pkl`` then ``metadata.json``, both create-only, through the one
verified put (:meth:`~shared.lifecycle.registry.blobs.Blobs.put_verified`). A version exists
(is listed, loadable, can be made current) only once its ``metadata.json`` exists, so a save
that died half-way is invisible. The metadata carries the model's MAC (:mod:`.signing`, kind
``candidate``); :meth:`Candidates.load` goes through the one verified get, which checks it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from shared.lifecycle.registry.blobs import Digest, OnBlobs, dumps_model
from shared.lifecycle.registry.signing import ModelIdentity
from shared.lifecycle.registry.layout import (
    METADATA_BLOB,
    MODEL_BLOB,
    ModelMetadata,
    RegistryError,
    candidate_blob,
    candidates_prefix,
    int_ms,
    json_bytes,
    library_versions,
    now_ms,
    time_stamp,
    validate_key,
)


class Candidates(OnBlobs):
    """The immutable candidate versions of every key."""

    def save(
        self,
        key: str,
        model: object,
        *,
        training_start_ms: int,
        training_end_ms: int,
        feature_names: Sequence[str],
        created_at_ms: int | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> ModelMetadata:
        """Store ``model`` as a new candidate version of ``key``.

        Parameters
        ----------
        key : str
            Model key, see :func:`~shared.lifecycle.registry.layout.validate_key`.
        model : object
            Any picklable object (typically a River pipeline).
        training_start_ms, training_end_ms : int
            Range of the training data, ms since epoch, UTC; start <= end.
        feature_names : sequence of str
            Feature names in model input order (a bare ``str`` is rejected).
        created_at_ms : int, optional
            Creation time, ms since epoch, UTC; default now. Determines the version.
        extra : mapping, optional
            JSON-serialisable data stored verbatim in the metadata (no NaN/inf).

        Returns
        -------
        ModelMetadata
            What was written; ``.version`` names the new candidate.

        Raises
        ------
        ValueError
            Invalid key, times, feature names, or ``extra`` not strict JSON.
        pickle.PicklingError, TypeError, AttributeError
            ``model`` cannot be pickled (nothing is written).
        SignatureError
            No signing key is configured (nothing is written).
        VersionExistsError
            The same bytes were already saved under ``key`` in the same millisecond.
        RegistryError
            The container does not exist.
        """
        validate_key(key)
        start = int_ms(training_start_ms, "training_start_ms")
        end = int_ms(training_end_ms, "training_end_ms")
        if start > end:
            raise ValueError(f"training_start_ms {start} is after training_end_ms {end}")
        created = now_ms() if created_at_ms is None else int_ms(created_at_ms, "created_at_ms")
        if isinstance(feature_names, str) or not all(isinstance(f, str) for f in feature_names):
            raise ValueError("feature_names must be a sequence of strings")

        data, digest = dumps_model(model)
        version = f"{time_stamp(created)}-{digest.sha256[:8]}"
        mac = self.blobs.sign(ModelIdentity("candidate", key, version), data)
        meta = ModelMetadata(
            key=key,
            version=version,
            created_at_ms=created,
            training_start_ms=start,
            training_end_ms=end,
            feature_names=tuple(feature_names),
            sha256=digest.sha256,
            size_bytes=digest.size_bytes,
            library_versions=library_versions(),
            extra=dict(extra or {}),
            mac=mac,
        )
        record = json_bytes(meta.to_dict(), "extra", indent=2)
        self.blobs.put_verified(
            candidate_blob(key, meta.version, MODEL_BLOB),
            data,
            candidate_blob(key, meta.version, METADATA_BLOB),
            record,
            overwrite=False,
            what=f"{key}/{meta.version}",
        )
        return meta

    def list_versions(self, key: str) -> list[str]:
        """Versions of ``key`` that have metadata, oldest first (empty if none).

        Raises
        ------
        ValueError
            Invalid key.
        RegistryError
            The container does not exist.
        """
        prefix = candidates_prefix(key)
        suffix = f"/{METADATA_BLOB}"
        versions = []
        for name in self.blobs.names(prefix):
            version = name[len(prefix) :]
            if version.endswith(suffix):
                version = version[: -len(suffix)]
                if "/" not in version:
                    versions.append(version)
        return sorted(versions)

    def metadata(self, key: str, version: str) -> ModelMetadata:
        """Metadata of one version.

        Raises
        ------
        ValueError
            Invalid key or version string.
        ModelNotFoundError
            No such version.
        RegistryError
            The metadata blob is malformed or names another key/version; or no container.
        """
        name = candidate_blob(key, version, METADATA_BLOB)
        raw, _ = self.blobs.get(name, f"model {key}/{version} not found")
        try:
            meta = ModelMetadata.from_dict(json.loads(raw))
        except (ValueError, AttributeError) as exc:  # AttributeError: JSON that is not an object
            raise RegistryError(f"malformed metadata {name}: {exc}") from None
        if (meta.key, meta.version) != (key, version):
            raise RegistryError(f"{name} describes {meta.key}/{meta.version}")
        return meta

    def load(self, key: str, version: str) -> tuple[object, ModelMetadata]:
        """Download, verify and unpickle one version.

        The bytes are checked against ``size_bytes``, ``sha256`` and ``mac`` of the metadata
        before they are unpickled (:meth:`~shared.lifecycle.registry.blobs.Blobs.get_verified`).

        Returns
        -------
        (model, ModelMetadata)

        Raises
        ------
        ValueError
            Invalid key or version string.
        ModelNotFoundError
            No such version, or its model blob is missing.
        DigestMismatchError
            The model bytes differ from the metadata (nothing was unpickled).
        SignatureError
            Unsigned, mis-signed, or no key configured (nothing was unpickled).
        RegistryError
            Malformed metadata, or no container.
        """
        meta = self.metadata(key, version)
        model = self.blobs.get_verified(
            candidate_blob(key, version, MODEL_BLOB),
            Digest(meta.sha256, meta.size_bytes),
            ModelIdentity("candidate", key, version),
            meta.mac,
            f"{key}/{version}",
            "metadata",
        )
        return model, meta
