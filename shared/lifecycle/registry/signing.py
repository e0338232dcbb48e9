"""Authenticity of model blobs: an HMAC-SHA256 over each model's bytes and identity.

A sha256 beside a blob only proves integrity: whoever can write the container can rewrite the
record too, and unpickling is code execution. So every model blob the registry writes (a
candidate's or a checkpoint's ``model.pkl``) carries, in its record (``metadata.json`` /
``checkpoint.json``, field ``mac``), an HMAC-SHA256 (RFC 2104, :mod:`hmac`) computed with the
key ``MODEL_SIGNING_KEY`` over::

    b"tickcast-model-mac-v1\\n" + {"key", "kind", "size_bytes", "version"} as sorted JSON + b"\\n" + bytes

``kind`` is ``candidate`` or ``checkpoint``, so a MAC cannot be moved from one model to another,
from one key or version to another, nor from a checkpoint to a candidate (keys and versions are
``[A-Za-z0-9._-]`` only, :func:`~.layout.validate_key`, so the JSON header is unambiguous).
:meth:`~.blobs.Blobs.get_verified` checks it, in constant time (:func:`hmac.compare_digest`),
*before* unpickling, and raises :class:`~.layout.SignatureError` for a record without a MAC or
with a wrong one.

The champion pointer ``current.json`` is not signed itself: every load through it
(:meth:`~.facade.ModelRegistry.load_current`, ``predict``'s champions) loads the version it
names through the same check, and the MAC binds key and version, so an overwritten pointer can
only name a version that this deployment signed for that key (an earlier candidate), never
planted bytes. Who may write pointers at all is the identity half (infra/tickcast_infra/identity.py:
only the promote identity writes ``*/current.json``).

Why a MAC and not a public-key signature: all signers and verifiers (retrain, promote_model,
predict) are functions of one Function App, which reads one Key Vault secret through a Key Vault
reference; App Service gives every function of an app the same app settings, so separate
private keys per function would not keep any function from the others' keys. Asymmetric
signatures would help only if verifiers ran where the signing key must not be; they do not.
What a MAC holder could forge, its storage identity must still be allowed to write (predict:
checkpoints only), and the ``kind`` in the MAC keeps a checkpoint from passing as a candidate.

Key: the UTF-8 bytes of ``MODEL_SIGNING_KEY``, at least :data:`MIN_KEY_BYTES` (32) bytes:
RFC 2104 section 3 strongly discourages keys shorter than the hash output (32 bytes for SHA-256).
Without a key nothing is signed or loaded (:class:`~.layout.SignatureError` on save and load):
there is no unsigned development mode, the local stack and the tests set a random key per run.
Blobs written before signing carry no MAC and are refused: re-run retrain (and promotion).

Examples
--------
>>> signer = ModelSigner("k" * 32)
>>> who = ModelIdentity("candidate", "default", "20251122T210600123Z-1a2b3c4d")
>>> mac = signer.mac(who, b"bytes")
>>> signer.check(who, b"bytes", mac, "default/v")
>>> signer.check(who._replace(version="20251122T210600124Z-1a2b3c4d"), b"bytes", mac, "default/w")
Traceback (most recent call last):
...
shared.lifecycle.registry.layout.SignatureError: default/w: model blob's MAC does not verify ...
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import NamedTuple

from shared.lifecycle.registry.layout import SignatureError
from shared.settings import SettingsReader

SIGNING_KEY_SETTING = "MODEL_SIGNING_KEY"
"""The app setting (a Key Vault reference in Azure) holding the signing key."""

MIN_KEY_BYTES = 32
"""Shortest key accepted: the SHA-256 output length, below which RFC 2104 (section 3) says
"strongly discouraged"."""

_DOMAIN = b"tickcast-model-mac-v1\n"


class ModelIdentity(NamedTuple):
    """What a model blob is: ``kind`` (``candidate`` or ``checkpoint``), registry ``key``, ``version``."""

    kind: str
    key: str
    version: str


class ModelSigner:
    """Computes and checks the MACs of model blobs with one key.

    Parameters
    ----------
    key : str or bytes or None
        The signing key (a ``str`` is UTF-8 encoded); ``None`` or empty: no key, so every
        :meth:`mac` and :meth:`check` raises :class:`SignatureError`.

    Raises
    ------
    ValueError
        A key shorter than :data:`MIN_KEY_BYTES` bytes.
    """

    def __init__(self, key: str | bytes | None) -> None:
        raw = key.encode("utf-8") if isinstance(key, str) else key
        if raw and len(raw) < MIN_KEY_BYTES:
            raise ValueError(f"{SIGNING_KEY_SETTING} has {len(raw)} bytes; use at least {MIN_KEY_BYTES}")
        self._key = raw or None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ModelSigner:
        """The signer of ``MODEL_SIGNING_KEY`` in ``environ`` (default ``os.environ``; unset: no key)."""
        return cls(SettingsReader(environ).text(SIGNING_KEY_SETTING))

    @property
    def has_key(self) -> bool:
        """Whether a key is configured."""
        return self._key is not None

    def mac(self, identity: ModelIdentity, data: bytes) -> str:
        """Hex HMAC-SHA256 of ``data`` as the model ``identity`` (64 lower-case hex digits).

        Raises
        ------
        SignatureError
            No key is configured.
        """
        if self._key is None:
            raise SignatureError(f"no {SIGNING_KEY_SETTING} configured: model blobs cannot be signed or loaded")
        header = json.dumps({**identity._asdict(), "size_bytes": len(data)}, sort_keys=True).encode("ascii")
        digest = hmac.new(self._key, _DOMAIN + header + b"\n", hashlib.sha256)
        digest.update(data)
        return digest.hexdigest()

    def check(self, identity: ModelIdentity, data: bytes, mac: object, what: str) -> None:
        """Return if ``mac`` is the MAC of ``data`` as ``identity`` (constant-time compare).

        Raises
        ------
        SignatureError
            No key configured, no MAC in the record (written before signing: re-run retrain),
            or a MAC that does not verify (another key, identity or bytes).
        """
        expected = self.mac(identity, data)
        if not isinstance(mac, str) or not mac:
            raise SignatureError(f"{what}: model blob is unsigned (written before model signing? re-run retrain)")
        if not hmac.compare_digest(expected.encode("ascii"), mac.encode("utf-8", "replace")):
            raise SignatureError(
                f"{what}: model blob's MAC does not verify (another key, key/version/kind, or planted bytes)"
            )
