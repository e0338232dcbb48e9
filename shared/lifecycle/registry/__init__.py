"""Model registry on Azure Blob Storage: immutable candidate versions and a champion pointer.

Split around one verified put/get; each module has one job:

* :mod:`.layout` — keys, versions and blob names (the layout itself is drawn there), the
  :class:`ModelMetadata` record and the errors; no I/O.
* :mod:`.blobs` — blob I/O and the one verified put/get of model bytes: bytes first, then the
  record with their sha256 and size; bytes checked against it before :func:`loads_model`
  (which maps :data:`RENAMED_MODULES`) unpickles them.
* :mod:`.signing` — the HMAC of model blobs (why a MAC suffices, the key, what is refused).
* :mod:`.candidates` — write-once candidate versions (``save``, ``list_versions``, ``metadata``, ``load``).
* :mod:`.pointer` — the champion pointer ``current.json`` with ETag If-Match / If-None-Match.
* :mod:`.checkpoints` — the online-updated state of a serving version.
* :mod:`.decisions` — the promotion decision log.
* :mod:`.facade` — :class:`ModelRegistry`, the entry point that composes them.

Integrity and authenticity: :meth:`ModelRegistry.load` (and every checkpoint load) refuses
bytes whose size or sha256 differs from the metadata, or whose HMAC-SHA256 over bytes, key,
version and kind does not verify with ``MODEL_SIGNING_KEY`` (:mod:`.signing`), *before*
unpickling them. So corruption, truncation, partial overwrites and blobs planted by anyone who
can write the container but does not hold the key never execute.

Examples
--------
>>> validate_key("BTCUSDT.binance_v2")
'BTCUSDT.binance_v2'
>>> symbol_key("kraken", "BTC/USD")
'kraken.BTC_USD'
"""

from shared.lifecycle.registry.blobs import RENAMED_MODULES, Blobs, Digest, loads_model
from shared.lifecycle.registry.candidates import Candidates
from shared.lifecycle.registry.checkpoints import Checkpoints
from shared.lifecycle.registry.decisions import DecisionLog
from shared.lifecycle.registry.facade import ModelRegistry
from shared.lifecycle.registry.layout import (
    METADATA_FORMAT,
    PICKLE_PROTOCOL,
    DigestMismatchError,
    ModelMetadata,
    ModelNotFoundError,
    PointerConflictError,
    RegistryError,
    SignatureError,
    VersionExistsError,
    symbol_key,
    validate_key,
)
from shared.lifecycle.registry.pointer import UNCHANGED, ChampionPointer
from shared.lifecycle.registry.signing import ModelIdentity, ModelSigner

__all__ = [
    "METADATA_FORMAT",
    "PICKLE_PROTOCOL",
    "RENAMED_MODULES",
    "UNCHANGED",
    "Blobs",
    "Candidates",
    "ChampionPointer",
    "Checkpoints",
    "DecisionLog",
    "Digest",
    "DigestMismatchError",
    "ModelIdentity",
    "ModelMetadata",
    "ModelNotFoundError",
    "ModelRegistry",
    "ModelSigner",
    "PointerConflictError",
    "RegistryError",
    "SignatureError",
    "VersionExistsError",
    "loads_model",
    "symbol_key",
    "validate_key",
]
