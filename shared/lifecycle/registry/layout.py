"""Names and records of the model registry: keys, versions, blob paths, metadata and errors.

Blob layout inside the models container (``MODELS_CONTAINER``, default ``models``)::

    <key>/candidates/<version>/model.pkl      pickle of the model object (protocol 5)
    <key>/candidates/<version>/metadata.json  ModelMetadata as JSON, incl. the model's sha256 and MAC
    <key>/current.json                        champion pointer {"version": ..., "updated_at_ms": ...}
    <key>/checkpoints/<version>/model.pkl     latest online-updated state of <version> serving <key>
    <key>/checkpoints/<version>/checkpoint.json  its sha256, size, MAC and save time
    <key>/decisions/<time>-<version>.json     one promotion decision (promoted or refused, and why)

* ``key`` names a model line: ``default`` (the fallback), or one per symbol, see
  :func:`symbol_key`; ``[A-Za-z0-9._-]+``, see :func:`validate_key`.
* ``version`` is ``YYYYMMDDTHHMMSSmmmZ-<first 8 hex of sha256>`` of the creation time (UTC),
  so lexical order is time order (see :func:`time_stamp`).

This module does no I/O; it only says what things are called and how records are checked.

Examples
--------
>>> validate_key("BTCUSDT.binance_v2")
'BTCUSDT.binance_v2'
>>> validate_key("../etc")
Traceback (most recent call last):
...
ValueError: invalid model key '../etc': use 1-200 characters from A-Z a-z 0-9 . _ - (not only dots)
>>> candidate_blob("default", "20251122T210600123Z-1a2b3c4d", MODEL_BLOB)
'default/candidates/20251122T210600123Z-1a2b3c4d/model.pkl'
"""

from __future__ import annotations

import json
import platform
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata as _importlib_metadata
from typing import Any

from shared.contracts.events import SCHEMA_VERSION

PICKLE_PROTOCOL = 5
"""Pickle protocol used for model blobs (readable by Python >= 3.8)."""

METADATA_FORMAT = 1
"""Version of the ``metadata.json`` layout written by the registry."""

MODEL_BLOB = "model.pkl"
METADATA_BLOB = "metadata.json"
CURRENT_BLOB = "current.json"
CHECKPOINT_BLOB = "checkpoint.json"

_NAME = re.compile(r"[A-Za-z0-9._-]{1,200}", re.ASCII)
_SHA256 = re.compile(r"[0-9a-f]{64}")
_VERSION_TIME = "%Y%m%dT%H%M%S"


class RegistryError(Exception):
    """Base class of every error the registry raises about stored state; ``str()`` says why."""


class ModelNotFoundError(RegistryError, LookupError):
    """The requested key/version (its metadata or its model blob) does not exist."""


class DigestMismatchError(RegistryError):
    """A model blob's size or sha256 differs from its record; nothing was unpickled."""


class SignatureError(RegistryError):
    """A model blob is unsigned, or its MAC does not verify, or no signing key is configured;
    nothing was unpickled (see :mod:`shared.lifecycle.registry.signing`)."""


class VersionExistsError(RegistryError):
    """A create-only save computed a version that is already stored (same ms, same bytes)."""


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


def validate_version(version: str) -> str:
    """:func:`validate_key` for a model version (the same rule, another noun in the message)."""
    return validate_key(version, "model version")


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


def candidate_blob(key: str, version: str, leaf: str) -> str:
    """``<key>/candidates/<version>/<leaf>`` after validating key and version (``ValueError``)."""
    return f"{validate_key(key)}/candidates/{validate_version(version)}/{leaf}"


def candidates_prefix(key: str) -> str:
    """``<key>/candidates/`` after validating the key (``ValueError``)."""
    return f"{validate_key(key)}/candidates/"


def checkpoint_blob(key: str, version: str, leaf: str) -> str:
    """``<key>/checkpoints/<version>/<leaf>`` after validating key and version (``ValueError``)."""
    return f"{validate_key(key)}/checkpoints/{validate_version(version)}/{leaf}"


def current_blob(key: str) -> str:
    """``<key>/current.json`` after validating the key (``ValueError``)."""
    return f"{validate_key(key)}/{CURRENT_BLOB}"


def decisions_prefix(key: str) -> str:
    """``<key>/decisions/`` after validating the key (``ValueError``)."""
    return f"{validate_key(key)}/decisions/"


def time_stamp(ms: int) -> str:
    """``YYYYMMDDTHHMMSSmmmZ`` of ``ms`` (ms since epoch, UTC); sorts as the times do.

    Examples
    --------
    >>> time_stamp(1_763_845_560_123)
    '20251122T210600123Z'
    """
    seconds, millis = divmod(ms, 1000)
    return f"{datetime.fromtimestamp(seconds, UTC).strftime(_VERSION_TIME)}{millis:03d}Z"


def now_ms() -> int:
    """Wall-clock time, ms since epoch, UTC."""
    return time.time_ns() // 1_000_000


def int_ms(value: Any, name: str, unit: str = "ms since epoch, UTC") -> int:
    """``value`` if it is a non-negative ``int`` (not ``bool``), else ``ValueError`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a non-negative int ({unit}), got {value!r}")
    return value


def json_bytes(obj: Any, what: str, *, indent: int | None = None) -> bytes:
    """Strict JSON (sorted keys, no NaN/inf) of ``obj`` as UTF-8.

    Raises
    ------
    ValueError
        ``obj`` is not strict JSON; the message names ``what``.
    """
    try:
        return json.dumps(obj, indent=indent, sort_keys=True, allow_nan=False).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} is not JSON-serialisable: {exc}") from None


def library_versions() -> dict[str, str | None]:
    """``python``, ``river``, ``numpy`` and ``tickcast_schema`` of this process (``None``: not installed)."""

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


def check_sha256(value: str) -> str:
    """``value`` if it is 64 lower-case hex digits, else ``ValueError``."""
    if not _SHA256.fullmatch(value):
        raise ValueError(f"sha256 {value!r} is not 64 lower-case hex digits")
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
    mac : str
        Hex HMAC-SHA256 of ``model.pkl`` as this key/version (:mod:`.signing`); ``""`` in
        metadata written before signing (such versions are refused at load).

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
    mac: str = ""

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
            "mac": self.mac,
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
                version=validate_version(obj["version"]),
                created_at_ms=int_ms(obj["created_at_ms"], "created_at_ms"),
                training_start_ms=int_ms(obj["training_start_ms"], "training_start_ms"),
                training_end_ms=int_ms(obj["training_end_ms"], "training_end_ms"),
                feature_names=tuple(feature_names),
                sha256=str(obj["sha256"]),
                size_bytes=int_ms(obj["size_bytes"], "size_bytes", "bytes"),
                library_versions=dict(obj.get("library_versions") or {}),
                extra=dict(obj.get("extra") or {}),
                pickle_protocol=int(obj.get("pickle_protocol", PICKLE_PROTOCOL)),
                mac=str(obj.get("mac") or ""),
            )
        except KeyError as exc:
            raise ValueError(f"model metadata lacks field {exc.args[0]!r}") from None
        except TypeError as exc:
            raise ValueError(f"model metadata has a field of the wrong type: {exc}") from None
        check_sha256(meta.sha256)
        return meta
