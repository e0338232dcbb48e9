"""Model registry on Azure Blob Storage: immutable candidate versions and a champion pointer.

Blob layout inside the models container (``MODELS_CONTAINER``, default ``models``)::

    <key>/candidates/<version>/model.pkl      pickle of the model object (protocol 5)
    <key>/candidates/<version>/metadata.json  ModelMetadata as JSON, incl. the model's sha256
    <key>/current.json                        champion pointer {"version": ..., "updated_at_ms": ...}
    <key>/checkpoints/<version>/model.pkl     latest online-updated state of <version> serving <key>
    <key>/checkpoints/<version>/checkpoint.json  its sha256, size and save time
    <key>/decisions/<time>-<version>.json     one promotion decision (promoted or refused, and why)

* ``key`` names a model line: ``default`` (the fallback), or one per symbol, see
  :func:`symbol_key`; ``[A-Za-z0-9._-]+``, see :func:`validate_key`.
* ``version`` is ``YYYYMMDDTHHMMSSmmmZ-<first 8 hex of sha256>`` of the creation time (UTC),
  so lexical order is time order.
* Candidates are write-once: :meth:`ModelRegistry.save` writes ``model.pkl`` first and
  ``metadata.json`` last, both create-only. A version exists (is listed, loadable, can be made
  current) only once its ``metadata.json`` exists, so a save that died half-way is invisible.
* The pointer is changed with optimistic concurrency: every :meth:`ModelRegistry.set_current`
  states the ETag it expects to replace (or that there is no pointer yet), so two promoters
  racing on the same key cannot silently overwrite each other.

Integrity, not authenticity: :meth:`ModelRegistry.load` refuses bytes whose size or sha256
differs from the metadata *before* unpickling them, which catches corruption, truncation and
partial overwrites. Unpickling is code execution, and whoever can write the container can
also rewrite the metadata, so only point the registry at a container you trust.

Examples
--------
>>> validate_key("BTCUSDT.binance_v2")
'BTCUSDT.binance_v2'
>>> validate_key("../etc")
Traceback (most recent call last):
...
ValueError: invalid model key '../etc': use 1-200 characters from A-Z a-z 0-9 . _ - (not only dots)
"""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import platform
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata as _importlib_metadata
from typing import TYPE_CHECKING, Any

from azure.core import MatchConditions
from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ResourceNotModifiedError,
)
from azure.storage.blob import ContainerClient, ContentSettings

from shared.contracts.events import SCHEMA_VERSION
from shared.settings import SettingsError

if TYPE_CHECKING:
    from shared.settings import Settings

PICKLE_PROTOCOL = 5
"""Pickle protocol used for model blobs (readable by Python >= 3.8)."""

METADATA_FORMAT = 1
"""Version of the ``metadata.json`` layout written by this module."""

_NAME = re.compile(r"[A-Za-z0-9._-]{1,200}", re.ASCII)
_VERSION_TIME = "%Y%m%dT%H%M%S"
_MODEL_BLOB = "model.pkl"
_METADATA_BLOB = "metadata.json"
_CURRENT_BLOB = "current.json"
_CHECKPOINT_BLOB = "checkpoint.json"
_JSON = ContentSettings(content_type="application/json")
_BINARY = ContentSettings(content_type="application/octet-stream")



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

    Raises whatever :func:`pickle.loads` raises on bad bytes (``pickle.UnpicklingError`` and others).
    """
    return _ModelUnpickler(io.BytesIO(data)).load()

class RegistryError(Exception):
    """Base class of every error the registry raises about stored state; ``str()`` says why."""


class ModelNotFoundError(RegistryError, LookupError):
    """The requested key/version (its metadata or its model blob) does not exist."""


class DigestMismatchError(RegistryError):
    """A model blob's size or sha256 differs from its metadata; nothing was unpickled."""


class VersionExistsError(RegistryError):
    """:meth:`ModelRegistry.save` computed a version that is already stored (same ms, same bytes)."""


class PointerConflictError(RegistryError):
    """``current.json`` is not in the state the caller expected (stale ETag, or already exists)."""


def validate_key(name: str, what: str = "model key") -> str:
    """Return ``name`` if it is a safe blob-path segment, else raise ``ValueError``.

    Parameters
    ----------
    name : str
        1-200 ASCII letters, digits, ``.``, ``_`` or ``-``; not made only of dots (``.``/``..``
        would be rewritten by URL normalisation).
    what : str
        Noun used in the error message.

    Raises
    ------
    ValueError
        ``name`` is not a string or breaks the rule above.
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name) or not name.strip("."):
        raise ValueError(
            f"invalid {what} {name!r}: use 1-200 characters from A-Z a-z 0-9 . _ - (not only dots)"
        )
    return name


def symbol_key(exchange: str, symbol: str) -> str:
    """The registry key of one symbol's own model line: ``<exchange>.<SYMBOL>``.

    Characters outside ``[A-Za-z0-9._-]`` (e.g. the ``/`` of Kraken's ``BTC/USD``)
    become ``_``.

    Raises
    ------
    ValueError
        The result is not a valid key (e.g. empty parts).

    Examples
    --------
    >>> symbol_key("binance", "BTCUSDT")
    'binance.BTCUSDT'
    >>> symbol_key("kraken", "BTC/USD")
    'kraken.BTC_USD'
    """
    if not exchange or not symbol:
        raise ValueError(f"exchange and symbol must be non-empty, got {exchange!r}, {symbol!r}")
    return validate_key(re.sub(r"[^A-Za-z0-9._-]", "_", f"{exchange}.{symbol}"))


UNCHANGED = "unchanged"
"""Returned by :meth:`ModelRegistry.current_if_changed` when the pointer still has the given ETag."""


def _library_versions() -> dict[str, str | None]:
    def dist(name: str) -> str | None:
        try:
            return _importlib_metadata.version(name)
        except _importlib_metadata.PackageNotFoundError:
            return None

    return {
        "python": platform.python_version(),
        "river": dist("river"),
        "numpy": dist("numpy"),
        "tickcast_schema": str(SCHEMA_VERSION),
    }


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _int_ms(value: Any, name: str, unit: str = "ms since epoch, UTC") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a non-negative int ({unit}), got {value!r}")
    return value


@dataclass(frozen=True)
class ModelMetadata:
    """Description of one stored model version (the content of its ``metadata.json``).

    Attributes
    ----------
    key : str
        Registry key (model line) the version belongs to.
    version : str
        ``YYYYMMDDTHHMMSSmmmZ-<sha256[:8]>``; sorts by creation time.
    created_at_ms : int
        Creation time, ms since epoch, UTC.
    training_start_ms, training_end_ms : int
        Time range of the training data (e.g. first and last bar open time), ms since epoch, UTC;
        ``training_start_ms <= training_end_ms``.
    feature_names : tuple of str
        Names of the input features, in the order the model expects them.
    sha256 : str
        Lower-case hex SHA-256 of the pickled bytes in ``model.pkl``.
    size_bytes : int
        Length of ``model.pkl`` in bytes.
    library_versions : dict of str to str or None
        ``python``, ``river``, ``numpy`` and ``tickcast_schema`` (event schema version) of the
        process that saved the model; ``None`` for a library that was not installed.
    extra : dict
        Caller-supplied JSON object (e.g. validation scores); not interpreted by the registry.
    pickle_protocol : int
        Pickle protocol of ``model.pkl``.

    The dict-valued fields take no part in ``hash()``; treat them as read-only.
    """

    key: str
    version: str
    created_at_ms: int
    training_start_ms: int
    training_end_ms: int
    feature_names: tuple[str, ...]
    sha256: str
    size_bytes: int
    library_versions: dict[str, str | None] = field(default_factory=dict, hash=False)
    extra: dict[str, Any] = field(default_factory=dict, hash=False)
    pickle_protocol: int = PICKLE_PROTOCOL

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (``feature_names`` as a list, plus ``format`` = :data:`METADATA_FORMAT`)."""
        return {
            "format": METADATA_FORMAT,
            "key": self.key,
            "version": self.version,
            "created_at_ms": self.created_at_ms,
            "training_start_ms": self.training_start_ms,
            "training_end_ms": self.training_end_ms,
            "feature_names": list(self.feature_names),
            "sha256": self.sha256,
            "size_bytes": self.size_bytes,
            "library_versions": dict(self.library_versions),
            "extra": dict(self.extra),
            "pickle_protocol": self.pickle_protocol,
        }

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> ModelMetadata:
        """Build from a dict as written by :meth:`to_dict`; unknown fields are ignored.

        Raises
        ------
        ValueError
            A required field is missing or has the wrong type.
        """
        try:
            feature_names = obj["feature_names"]
            if isinstance(feature_names, str) or not all(isinstance(f, str) for f in feature_names):
                raise ValueError("feature_names must be a list of strings")
            meta = cls(
                key=validate_key(obj["key"]),
                version=validate_key(obj["version"], "model version"),
                created_at_ms=_int_ms(obj["created_at_ms"], "created_at_ms"),
                training_start_ms=_int_ms(obj["training_start_ms"], "training_start_ms"),
                training_end_ms=_int_ms(obj["training_end_ms"], "training_end_ms"),
                feature_names=tuple(feature_names),
                sha256=str(obj["sha256"]),
                size_bytes=_int_ms(obj["size_bytes"], "size_bytes", "bytes"),
                library_versions=dict(obj.get("library_versions") or {}),
                extra=dict(obj.get("extra") or {}),
                pickle_protocol=int(obj.get("pickle_protocol", PICKLE_PROTOCOL)),
            )
        except KeyError as exc:
            raise ValueError(f"model metadata lacks field {exc.args[0]!r}") from None
        except TypeError as exc:
            raise ValueError(f"model metadata has a field of the wrong type: {exc}") from None
        if not re.fullmatch(r"[0-9a-f]{64}", meta.sha256):
            raise ValueError(f"sha256 {meta.sha256!r} is not 64 lower-case hex digits")
        return meta


class ModelRegistry:
    """Versioned model store over one blob container (see the module docstring for the layout).

    Parameters
    ----------
    container : azure.storage.blob.ContainerClient
        Client of the models container; the registry does not close it.

    Notes
    -----
    Every method does blocking network I/O. Errors of the storage service other than the ones
    documented (authentication, throttling, network) propagate as ``azure.core`` exceptions.
    A missing container is reported as :class:`RegistryError`; see :meth:`ensure_container`.
    """

    def __init__(self, container: ContainerClient) -> None:
        self.container = container

    @classmethod
    def from_settings(cls, settings: Settings, **client_kwargs: Any) -> ModelRegistry:
        """Registry on ``settings.models_container``, authenticated as configured.

        Uses the connection string ``settings.model_storage_connection`` (``MODEL_STORAGE``,
        locally Azurite's) if set, else the account URL ``settings.model_storage_url``
        (``MODEL_STORAGE__blobServiceUri``) with ``azure.identity.DefaultAzureCredential``.

        Parameters
        ----------
        settings : shared.settings.Settings
        **client_kwargs
            Passed to the ``ContainerClient`` (e.g. ``api_version``, ``retry_total``).

        Raises
        ------
        shared.settings.SettingsError
            Neither setting is present.
        """
        if settings.model_storage_connection:
            client = ContainerClient.from_connection_string(
                settings.model_storage_connection, settings.models_container, **client_kwargs
            )
        elif settings.model_storage_url:
            from azure.identity import DefaultAzureCredential

            client = ContainerClient(
                settings.model_storage_url,
                settings.models_container,
                credential=DefaultAzureCredential(),
                **client_kwargs,
            )
        else:
            raise SettingsError("set MODEL_STORAGE (connection string) or MODEL_STORAGE__blobServiceUri")
        return cls(client)

    def ensure_container(self) -> bool:
        """Create the container if it does not exist; return whether it was created."""
        try:
            self.container.create_container()
        except ResourceExistsError:
            return False
        return True

    # ------------------------------------------------------------------ blob names

    @staticmethod
    def _candidate(key: str, version: str, leaf: str) -> str:
        validate_key(key)
        validate_key(version, "model version")
        return f"{key}/candidates/{version}/{leaf}"

    @staticmethod
    def _current(key: str) -> str:
        return f"{validate_key(key)}/{_CURRENT_BLOB}"

    def _download(self, name: str, missing: str) -> tuple[bytes, str]:
        """(content, etag) of blob ``name``; ModelNotFoundError(missing) if absent."""
        try:
            downloader = self.container.download_blob(name)
            return downloader.readall(), downloader.properties.etag
        except ResourceNotFoundError as exc:
            raise self._not_found(exc, missing) from None

    def _names(self, key: str, prefix: str) -> list[str]:
        """Names of the blobs under ``prefix``; RegistryError if the container is missing."""
        try:
            return list(self.container.list_blob_names(name_starts_with=prefix))
        except ResourceNotFoundError as exc:
            raise self._not_found(exc, key) from None

    def _not_found(self, exc: HttpResponseError, missing: str) -> RegistryError:
        if exc.error_code == "ContainerNotFound":
            return RegistryError(
                f"container {self.container.container_name!r} does not exist (call ensure_container())"
            )
        return ModelNotFoundError(missing)

    # ------------------------------------------------------------------ candidates

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
            Model key, see :func:`validate_key`.
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
        VersionExistsError
            The same bytes were already saved under ``key`` in the same millisecond.
        RegistryError
            The container does not exist.
        """
        validate_key(key)
        start = _int_ms(training_start_ms, "training_start_ms")
        end = _int_ms(training_end_ms, "training_end_ms")
        if start > end:
            raise ValueError(f"training_start_ms {start} is after training_end_ms {end}")
        created = _now_ms() if created_at_ms is None else _int_ms(created_at_ms, "created_at_ms")
        if isinstance(feature_names, str) or not all(isinstance(f, str) for f in feature_names):
            raise ValueError("feature_names must be a sequence of strings")

        data = pickle.dumps(model, protocol=PICKLE_PROTOCOL)
        digest = hashlib.sha256(data).hexdigest()
        seconds, millis = divmod(created, 1000)
        stamp = datetime.fromtimestamp(seconds, UTC).strftime(_VERSION_TIME)
        meta = ModelMetadata(
            key=key,
            version=f"{stamp}{millis:03d}Z-{digest[:8]}",
            created_at_ms=created,
            training_start_ms=start,
            training_end_ms=end,
            feature_names=tuple(feature_names),
            sha256=digest,
            size_bytes=len(data),
            library_versions=_library_versions(),
            extra=dict(extra or {}),
        )
        try:
            meta_json = json.dumps(meta.to_dict(), indent=2, sort_keys=True, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"extra is not JSON-serialisable: {exc}") from None

        for leaf, payload, content in (
            (_MODEL_BLOB, data, _BINARY),
            (_METADATA_BLOB, meta_json.encode("utf-8"), _JSON),
        ):
            try:
                self.container.upload_blob(
                    self._candidate(key, meta.version, leaf),
                    payload,
                    overwrite=False,
                    content_settings=content,
                )
            except ResourceExistsError:
                raise VersionExistsError(f"{key}/{meta.version} already exists") from None
            except ResourceNotFoundError as exc:
                raise self._not_found(exc, f"{key}/{meta.version}") from None
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
        prefix = f"{validate_key(key)}/candidates/"
        suffix = f"/{_METADATA_BLOB}"
        names = self._names(key, prefix)
        versions = []
        for name in names:
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
        name = self._candidate(key, version, _METADATA_BLOB)
        raw, _ = self._download(name, f"model {key}/{version} not found")
        try:
            meta = ModelMetadata.from_dict(json.loads(raw))
        except (ValueError, AttributeError) as exc:  # AttributeError: JSON that is not an object
            raise RegistryError(f"malformed metadata {name}: {exc}") from None
        if (meta.key, meta.version) != (key, version):
            raise RegistryError(f"{name} describes {meta.key}/{meta.version}")
        return meta

    def load(self, key: str, version: str) -> tuple[object, ModelMetadata]:
        """Download, verify and unpickle one version.

        The bytes are checked against ``size_bytes`` and ``sha256`` of the metadata before
        ``pickle.loads`` sees them.

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
        RegistryError
            Malformed metadata, or no container.
        """
        meta = self.metadata(key, version)
        data, _ = self._download(
            self._candidate(key, version, _MODEL_BLOB), f"model blob of {key}/{version} not found"
        )
        if len(data) != meta.size_bytes:
            raise DigestMismatchError(
                f"{key}/{version}: model blob has {len(data)} bytes, metadata says {meta.size_bytes}"
            )
        digest = hashlib.sha256(data).hexdigest()
        if digest != meta.sha256:
            raise DigestMismatchError(
                f"{key}/{version}: model blob sha256 {digest} != metadata sha256 {meta.sha256}"
            )
        return loads_model(data), meta

    # ------------------------------------------------------------------ champion pointer

    def set_current(
        self, key: str, version: str, *, if_match_etag: str | None = None, force: bool = False
    ) -> str:
        """Point ``<key>/current.json`` at ``version`` (compare-and-swap); return the new ETag.

        Parameters
        ----------
        key, version : str
            The version must exist (have metadata).
        if_match_etag : str or None
            ETag of the pointer the caller read with :meth:`current` and means to replace.
            ``None`` means "there is no pointer yet": the write then only succeeds if
            ``current.json`` does not exist (If-None-Match: *). So the promotion pattern
            ``cur = current(key); set_current(key, v, if_match_etag=cur and cur[1])`` is safe
            for the first promotion and for every later one.
        force : bool
            Overwrite unconditionally (last writer wins; for manual rollback). Cannot be
            combined with ``if_match_etag``.

        Returns
        -------
        str
            ETag of the written ``current.json``.

        Raises
        ------
        ValueError
            Invalid key/version, or both ``force`` and ``if_match_etag``.
        ModelNotFoundError
            ``version`` does not exist.
        PointerConflictError
            The pointer changed since ``if_match_etag`` was read (or was deleted), or a pointer
            exists although ``if_match_etag`` is ``None``.
        """
        if force and if_match_etag is not None:
            raise ValueError("pass either force=True or if_match_etag, not both")
        self.metadata(key, version)  # never point at a version that does not exist
        body = json.dumps({"version": version, "updated_at_ms": _now_ms()}).encode("utf-8")
        if force:
            conditions: dict[str, Any] = {}
        elif if_match_etag is None:
            conditions = {"match_condition": MatchConditions.IfMissing}
        else:
            conditions = {"etag": if_match_etag, "match_condition": MatchConditions.IfNotModified}
        try:
            props = self.container.get_blob_client(self._current(key)).upload_blob(
                body, overwrite=True, content_settings=_JSON, **conditions
            )
        except (ResourceModifiedError, ResourceExistsError) as exc:
            raise PointerConflictError(
                f"{key}/current.json changed (expected "
                f"{'no pointer' if if_match_etag is None else 'ETag ' + if_match_etag}): {exc.error_code}"
            ) from None
        except ResourceNotFoundError as exc:  # If-Match on a pointer that was deleted
            if exc.error_code == "ContainerNotFound":
                raise self._not_found(exc, key) from None
            raise PointerConflictError(f"{key}/current.json no longer exists") from None
        return props["etag"]

    def current(self, key: str) -> tuple[str, str] | None:
        """The champion of ``key`` as ``(version, etag)``, or ``None`` if none was set.

        Raises
        ------
        ValueError
            Invalid key.
        RegistryError
            ``current.json`` is malformed, or no container.
        """
        try:
            raw, etag = self._download(self._current(key), "")
        except ModelNotFoundError:
            return None
        try:
            version = json.loads(raw)["version"]
            validate_key(version, "model version")
        except (ValueError, KeyError, TypeError) as exc:
            raise RegistryError(f"malformed {key}/current.json: {exc!r}") from None
        return version, etag

    def current_if_changed(self, key: str, etag: str | None) -> tuple[str, str] | None | str:
        """Like :meth:`current`, but a conditional read (If-None-Match) against ``etag``.

        Returns :data:`UNCHANGED` when the pointer still has ``etag`` (no body is
        transferred), else what :meth:`current` returns. ``etag=None`` always reads.

        Raises
        ------
        Same as :meth:`current`.
        """
        if etag is None:
            return self.current(key)
        try:
            downloader = self.container.download_blob(
                self._current(key), etag=etag, match_condition=MatchConditions.IfModified
            )
            raw, new_etag = downloader.readall(), downloader.properties.etag
        except ResourceNotModifiedError:
            return UNCHANGED
        except ResourceNotFoundError as exc:
            if exc.error_code == "ContainerNotFound":
                raise self._not_found(exc, key) from None
            return None
        except HttpResponseError as exc:  # some SDK versions report 304 as a plain HttpResponseError
            if exc.status_code == 304:
                return UNCHANGED
            raise
        try:
            version = json.loads(raw)["version"]
            validate_key(version, "model version")
        except (ValueError, KeyError, TypeError) as exc:
            raise RegistryError(f"malformed {key}/current.json: {exc!r}") from None
        return version, new_etag

    def load_current(self, key: str) -> tuple[object, ModelMetadata] | None:
        """:meth:`load` the champion of ``key``; ``None`` if no pointer is set.

        Raises
        ------
        Same as :meth:`load` and :meth:`current`.
        """
        cur = self.current(key)
        return None if cur is None else self.load(key, cur[0])

    # ------------------------------------------------------------------ checkpoints

    def save_checkpoint(self, key: str, version: str, model: object, *, saved_at_ms: int | None = None) -> str:
        """Store the online-updated state of ``version`` serving ``key`` (overwrites the last one).

        ``model.pkl`` is written before ``checkpoint.json``; :meth:`load_checkpoint`
        checks the bytes against the latter, so a half-written checkpoint is refused
        rather than loaded.

        Returns
        -------
        str
            sha256 (hex) of the pickled bytes.

        Raises
        ------
        ValueError
            Invalid key or version.
        pickle.PicklingError, TypeError, AttributeError
            ``model`` cannot be pickled (nothing is written).
        RegistryError
            The container does not exist.
        """
        validate_key(key)
        validate_key(version, "model version")
        data = pickle.dumps(model, protocol=PICKLE_PROTOCOL)
        digest = hashlib.sha256(data).hexdigest()
        info = {
            "key": key,
            "version": version,
            "sha256": digest,
            "size_bytes": len(data),
            "saved_at_ms": _now_ms() if saved_at_ms is None else _int_ms(saved_at_ms, "saved_at_ms"),
        }
        base = f"{key}/checkpoints/{version}/"
        try:
            self.container.upload_blob(base + _MODEL_BLOB, data, overwrite=True, content_settings=_BINARY)
            self.container.upload_blob(
                base + _CHECKPOINT_BLOB, json.dumps(info).encode("utf-8"), overwrite=True, content_settings=_JSON
            )
        except ResourceNotFoundError as exc:
            raise self._not_found(exc, key) from None
        return digest

    def load_checkpoint(self, key: str, version: str) -> tuple[object, dict[str, Any]] | None:
        """The last checkpoint of ``version`` serving ``key`` as ``(model, info)``; ``None`` if none.

        Raises
        ------
        DigestMismatchError
            The bytes differ from ``checkpoint.json`` (nothing was unpickled).
        RegistryError
            Malformed ``checkpoint.json``, or no container.
        """
        validate_key(key)
        validate_key(version, "model version")
        base = f"{key}/checkpoints/{version}/"
        try:
            raw, _ = self._download(base + _CHECKPOINT_BLOB, "")
            data, _ = self._download(base + _MODEL_BLOB, "")
        except ModelNotFoundError:
            return None
        try:
            info = json.loads(raw)
            expected, size = str(info["sha256"]), int(info["size_bytes"])
        except (ValueError, KeyError, TypeError) as exc:
            raise RegistryError(f"malformed checkpoint {base}{_CHECKPOINT_BLOB}: {exc!r}") from None
        if len(data) != size or hashlib.sha256(data).hexdigest() != expected:
            raise DigestMismatchError(f"checkpoint {base}{_MODEL_BLOB} differs from its checkpoint.json")
        return loads_model(data), info

    # ------------------------------------------------------------------ decision log

    def record_decision(self, key: str, version: str, decision: Mapping[str, Any]) -> str:
        """Append one promotion decision about ``version`` to ``<key>/decisions/``; return the blob name.

        ``decision`` must be a JSON object (no NaN); it is stored with ``key`` and
        ``version`` and a ``recorded_at_ms`` time, under a create-only name that
        sorts by time.

        Raises
        ------
        ValueError
            Invalid key/version, or ``decision`` is not strict JSON.
        RegistryError
            The container does not exist.
        """
        validate_key(key)
        validate_key(version, "model version")
        now = _now_ms()
        body = {**decision, "key": key, "version": version, "recorded_at_ms": now}
        try:
            text = json.dumps(body, sort_keys=True, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"decision is not JSON-serialisable: {exc}") from None
        seconds, millis = divmod(now, 1000)
        stamp = datetime.fromtimestamp(seconds, UTC).strftime(_VERSION_TIME)
        for attempt in range(100):
            name = f"{key}/decisions/{stamp}{millis:03d}Z-{attempt:02d}-{version}.json"
            try:
                self.container.upload_blob(name, text.encode("utf-8"), overwrite=False, content_settings=_JSON)
                return name
            except ResourceExistsError:
                continue
            except ResourceNotFoundError as exc:
                raise self._not_found(exc, key) from None
        raise RegistryError(f"could not find a free decision name for {key}/{version}")

    def decisions(self, key: str) -> list[dict[str, Any]]:
        """Every recorded decision of ``key``, oldest first (see :meth:`record_decision`).

        Raises
        ------
        ValueError
            Invalid key.
        RegistryError
            The container does not exist, or a decision blob is not JSON.
        """
        names = sorted(self._names(key, f"{validate_key(key)}/decisions/"))
        out = []
        for name in names:
            raw, _ = self._download(name, f"decision {name} vanished")
            try:
                out.append(json.loads(raw))
            except ValueError as exc:
                raise RegistryError(f"malformed decision {name}: {exc}") from None
        return out

    def keys(self) -> list[str]:
        """Model keys that have at least one candidate or a pointer, sorted.

        Raises
        ------
        RegistryError
            The container does not exist.
        """
        try:
            names = self.container.walk_blobs(delimiter="/")
            return sorted(p.name.rstrip("/") for p in names if p.name.endswith("/"))
        except ResourceNotFoundError as exc:
            raise self._not_found(exc, "") from None
