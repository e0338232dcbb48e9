"""The one verified put/get of model bytes, over the models container.

Every model blob the registry writes (a candidate's ``model.pkl``, a checkpoint's ``model.pkl``)
goes through :meth:`Blobs.put_verified`: the model is pickled once, its sha256 and size go into a
JSON record written *after* the bytes, so a record only exists for bytes that were written in
full. Every model blob the registry reads goes through :meth:`Blobs.get_verified`: the bytes are
checked against the record's :class:`Digest` and MAC *before* :func:`loads_model` sees them, which
catches corruption, truncation, partial overwrites and planted bytes.

Integrity and authenticity: the record also carries the blob's HMAC-SHA256 over its bytes and
identity (:mod:`.signing`), which :meth:`Blobs.get_verified` checks after the digest and before
unpickling, so bytes planted by someone who can write the container (and rewrite the record)
are refused with :class:`~.layout.SignatureError` instead of executed.

Examples
--------
>>> data, digest = dumps_model({"w": 1.5})
>>> digest.size_bytes == len(data), len(digest.sha256)
(True, 64)
>>> verify(data, digest, "example", "metadata") == data
True
>>> verify(data[:-1], digest, "example", "metadata")
Traceback (most recent call last):
...
shared.lifecycle.registry.layout.DigestMismatchError: example: model blob has ... bytes, metadata says ...
"""

from __future__ import annotations

import hashlib
import io
import pickle
from dataclasses import dataclass
from typing import Any

from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import ContainerClient, ContentSettings

from shared.lifecycle.registry.layout import (
    PICKLE_PROTOCOL,
    DigestMismatchError,
    ModelNotFoundError,
    RegistryError,
    VersionExistsError,
)
from shared.lifecycle.registry.signing import ModelIdentity, ModelSigner

JSON = ContentSettings(content_type="application/json")
"""Content settings of every JSON blob (records, pointer, decisions)."""

BINARY = ContentSettings(content_type="application/octet-stream")
"""Content settings of every model blob."""

RENAMED_MODULES: dict[str, str] = {
    "shared.forecaster": "shared.forecast.forecaster",
    "shared.models": "shared.forecast.families",
    "shared.models.linear": "shared.forecast.families.linear",
    "shared.models.tree": "shared.forecast.families.tree",
    "shared.models.guard": "shared.forecast.guard",
    "shared.models.conformal": "shared.forecast.conformal",
    "shared.features": "shared.stream.features",
}
"""Module paths of pickled model classes before the layered layout -> where they live now, so that
blobs written by earlier versions still load."""


class _ModelUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):  # noqa: D102 - pickle's hook
        return super().find_class(RENAMED_MODULES.get(module, module), name)


def loads_model(data: bytes) -> object:
    """Unpickle a model blob, mapping the module paths of :data:`RENAMED_MODULES` to today's.

    Unchecked: call it only on bytes that passed :func:`verify` and their MAC (see :meth:`Blobs.get_verified`).

    Raises
    ------
    pickle.UnpicklingError, ModuleNotFoundError, AttributeError, EOFError
        Whatever :func:`pickle.loads` raises on bad bytes or a class that no longer exists.
    """
    return _ModelUnpickler(io.BytesIO(data)).load()


@dataclass(frozen=True)
class Digest:
    """What a record says of a model blob.

    Attributes
    ----------
    sha256 : str
        Lower-case hex SHA-256 of the bytes.
    size_bytes : int
        Their length in bytes.
    """

    sha256: str
    size_bytes: int

    @classmethod
    def of(cls, data: bytes) -> Digest:
        """The digest of ``data``."""
        return cls(hashlib.sha256(data).hexdigest(), len(data))


def dumps_model(model: object) -> tuple[bytes, Digest]:
    """Pickle ``model`` (protocol :data:`~.layout.PICKLE_PROTOCOL`) and digest the bytes.

    Raises
    ------
    pickle.PicklingError, TypeError, AttributeError
        ``model`` cannot be pickled.
    """
    data = pickle.dumps(model, protocol=PICKLE_PROTOCOL)
    return data, Digest.of(data)


def verify(data: bytes, expected: Digest, what: str, record: str) -> bytes:
    """Return ``data`` if its size and sha256 are ``expected``.

    Parameters
    ----------
    data : bytes
        The downloaded model blob.
    expected : Digest
        What the record vouching for the blob says.
    what, record : str
        Names of the model (e.g. ``key/version``) and of the record (e.g. ``metadata``) for messages.

    Raises
    ------
    DigestMismatchError
        Size or sha256 differ (the size is checked first).
    """
    if len(data) != expected.size_bytes:
        raise DigestMismatchError(
            f"{what}: model blob has {len(data)} bytes, {record} says {expected.size_bytes}"
        )
    digest = hashlib.sha256(data).hexdigest()
    if digest != expected.sha256:
        raise DigestMismatchError(f"{what}: model blob sha256 {digest} != {record} sha256 {expected.sha256}")
    return data


class Blobs:
    """Blob I/O of the registry over one container, with its errors mapped to :class:`RegistryError`.

    Parameters
    ----------
    container : azure.storage.blob.ContainerClient
        Client of the models container; not closed here.
    signer : ModelSigner
        Signs model blobs (callers put :meth:`sign`'s MAC in the record) and checks them in
        :meth:`get_verified`.

    Notes
    -----
    Every method does blocking network I/O. A missing container is reported as
    :class:`RegistryError` (saying to call :meth:`ensure_container`); other storage errors
    (authentication, throttling, network) propagate as ``azure.core`` exceptions.
    """

    def __init__(self, container: ContainerClient, signer: ModelSigner) -> None:
        self.container = container
        self.signer = signer

    def sign(self, identity: ModelIdentity, data: bytes) -> str:
        """The MAC of model bytes ``data`` as ``identity``, for their record (:meth:`ModelSigner.mac`).

        Raises
        ------
        SignatureError
            No signing key is configured (nothing should then be written).
        """
        return self.signer.mac(identity, data)

    def ensure_container(self) -> bool:
        """Create the container if it does not exist; return whether it was created."""
        try:
            self.container.create_container()
        except ResourceExistsError:
            return False
        return True

    def not_found(self, exc: HttpResponseError, missing: str) -> RegistryError:
        """The error to raise for a 404: no container, else ``ModelNotFoundError(missing)``."""
        if exc.error_code == "ContainerNotFound":
            return RegistryError(
                f"container {self.container.container_name!r} does not exist (call ensure_container())"
            )
        return ModelNotFoundError(missing)

    def get(self, name: str, missing: str, **conditions: Any) -> tuple[bytes, str]:
        """``(content, etag)`` of blob ``name``.

        Parameters
        ----------
        name : str
            Blob name.
        missing : str
            Message of the :class:`ModelNotFoundError` raised if the blob does not exist.
        **conditions
            ``etag``/``match_condition`` of a conditional read; its other failures propagate.

        Raises
        ------
        ModelNotFoundError
            No such blob.
        RegistryError
            No container.
        """
        try:
            downloader = self.container.download_blob(name, **conditions)
            return downloader.readall(), downloader.properties.etag
        except ResourceNotFoundError as exc:
            raise self.not_found(exc, missing) from None

    def put(
        self, name: str, data: bytes, *, overwrite: bool, content: ContentSettings = JSON, **conditions: Any
    ) -> dict[str, Any]:
        """Upload ``data`` as blob ``name``; return its properties (``etag``, ...).

        Raises
        ------
        RegistryError
            No container.
        azure.core.exceptions.ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
            ``overwrite=False`` and the blob exists, or a condition failed.
        """
        try:
            return self.container.get_blob_client(name).upload_blob(
                data, overwrite=overwrite, content_settings=content, **conditions
            )
        except ResourceNotFoundError as exc:
            if exc.error_code == "ContainerNotFound":
                raise self.not_found(exc, name) from None
            raise

    def names(self, prefix: str) -> list[str]:
        """Names of the blobs under ``prefix``; :class:`RegistryError` if the container is missing."""
        try:
            return list(self.container.list_blob_names(name_starts_with=prefix))
        except ResourceNotFoundError as exc:
            raise self.not_found(exc, prefix) from None

    def top_folders(self) -> list[str]:
        """Sorted names of the top-level folders (``<key>``) of the container.

        Raises
        ------
        RegistryError
            The container does not exist.
        """
        try:
            names = self.container.walk_blobs(delimiter="/")
            return sorted(p.name.rstrip("/") for p in names if p.name.endswith("/"))
        except ResourceNotFoundError as exc:
            raise self.not_found(exc, "") from None

    def put_verified(
        self, model_name: str, data: bytes, record_name: str, record: bytes, *, overwrite: bool, what: str
    ) -> None:
        """Write model bytes, then the JSON ``record`` that vouches for them (their :class:`Digest`).

        The record goes last, so a write that dies half-way leaves bytes without a record, which
        :meth:`get_verified`'s callers never read.

        Parameters
        ----------
        model_name, record_name : str
            Blob names of the pickled model and of its record.
        data : bytes
            The pickled model, as from :func:`dumps_model`.
        record : bytes
            JSON that holds the digest of ``data`` (written with ``application/json``).
        overwrite : bool
            ``False``: both blobs are create-only.
        what : str
            Name of the model (e.g. ``key/version``) for messages.

        Raises
        ------
        VersionExistsError
            ``overwrite=False`` and a blob already exists.
        RegistryError
            No container.
        """
        for name, payload, content in ((model_name, data, BINARY), (record_name, record, JSON)):
            try:
                self.put(name, payload, overwrite=overwrite, content=content)
            except ResourceExistsError:
                raise VersionExistsError(f"{what} already exists") from None

    def get_verified(
        self, model_name: str, expected: Digest, identity: ModelIdentity, mac: object, what: str, record: str
    ) -> object:
        """Download a model blob, check it against ``expected`` and its MAC, and only then unpickle it.

        Parameters
        ----------
        model_name : str
            Blob name of the pickled model.
        expected : Digest
            Size and sha256 from the model's record.
        identity : ModelIdentity
            What the blob must be (kind, key, version): part of the MAC.
        mac : object
            The ``mac`` field of the record (a missing or non-string one is refused).
        what, record : str
            Names of the model and of its record, for messages.

        Raises
        ------
        ModelNotFoundError
            The model blob is missing.
        DigestMismatchError
            The bytes differ from ``expected`` (nothing was unpickled).
        SignatureError
            No MAC, a MAC that does not verify, or no key configured (nothing was unpickled).
        RegistryError
            No container.
        """
        data, _ = self.get(model_name, f"model blob of {what} not found")
        self.signer.check(identity, verify(data, expected, what, record), mac, what)
        return loads_model(data)


class OnBlobs:
    """Base of the registry's parts (candidates, pointer, checkpoints, decisions), each one job over blobs.

    Parameters
    ----------
    blobs : Blobs
        Blob I/O of the models container, shared by every part of one registry.
    """

    def __init__(self, blobs: Blobs) -> None:
        self.blobs = blobs
