"""The champion pointer ``<key>/current.json``, changed only by compare-and-swap on its ETag.

Every :meth:`ChampionPointer.set_current` states the ETag it expects to replace (If-Match), or
that there is no pointer yet (If-None-Match: ``*``), so two promoters racing on the same key
cannot silently overwrite each other. :meth:`ChampionPointer.current_if_changed` is the
conditional read (If-None-Match on the ETag last seen) that lets servers poll cheaply.

The pointer is not signed itself: it only names a version, and every load of what it names
checks that version's MAC, which binds key and version (:mod:`.signing`). An overwritten
``current.json`` therefore leads at worst to a version this deployment signed for this key; one
that names planted bytes is refused with ``SignatureError`` before anything is unpickled.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ResourceNotModifiedError,
)

from shared.lifecycle.registry.blobs import Blobs, OnBlobs
from shared.lifecycle.registry.layout import (
    ModelNotFoundError,
    PointerConflictError,
    RegistryError,
    current_blob,
    now_ms,
    validate_version,
)

UNCHANGED = "unchanged"
"""Returned by :meth:`ChampionPointer.current_if_changed` when the pointer still has the given ETag."""


class ChampionPointer(OnBlobs):
    """Reads and compare-and-swap writes of ``<key>/current.json``.

    Parameters
    ----------
    blobs : Blobs
        Blob I/O of the models container, see :class:`~shared.lifecycle.registry.blobs.OnBlobs`.
    check_version : callable (key, version) -> object
        Raises :class:`~shared.lifecycle.registry.layout.ModelNotFoundError` if ``version`` of
        ``key`` does not exist (e.g. :meth:`Candidates.metadata`); the pointer never names one.
    """

    def __init__(self, blobs: Blobs, check_version: Callable[[str, str], object]) -> None:
        super().__init__(blobs)
        self._check_version = check_version

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
        RegistryError
            The container does not exist.
        """
        if force and if_match_etag is not None:
            raise ValueError("pass either force=True or if_match_etag, not both")
        self._check_version(key, version)  # never point at a version that does not exist
        body = json.dumps({"version": version, "updated_at_ms": now_ms()}).encode("utf-8")
        if force:
            conditions: dict[str, Any] = {}
        elif if_match_etag is None:
            conditions = {"match_condition": MatchConditions.IfMissing}
        else:
            conditions = {"etag": if_match_etag, "match_condition": MatchConditions.IfNotModified}
        try:
            props = self.blobs.put(current_blob(key), body, overwrite=True, **conditions)
        except (ResourceModifiedError, ResourceExistsError) as exc:
            raise PointerConflictError(
                f"{key}/current.json changed (expected "
                f"{'no pointer' if if_match_etag is None else 'ETag ' + if_match_etag}): {exc.error_code}"
            ) from None
        except ResourceNotFoundError:  # If-Match on a pointer that was deleted
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
            raw, etag = self.blobs.get(current_blob(key), "")
        except ModelNotFoundError:
            return None
        return _parse(key, raw), etag

    def current_if_changed(self, key: str, etag: str | None) -> tuple[str, str] | None | str:
        """Like :meth:`current`, but a conditional read (If-None-Match) against ``etag``.

        Returns :data:`UNCHANGED` when the pointer still has ``etag`` (no body is
        transferred), else what :meth:`current` returns. ``etag=None`` always reads.

        Raises
        ------
        ValueError, RegistryError
            As :meth:`current`.
        """
        if etag is None:
            return self.current(key)
        try:
            raw, new_etag = self.blobs.get(
                current_blob(key), "", etag=etag, match_condition=MatchConditions.IfModified
            )
        except ResourceNotModifiedError:
            return UNCHANGED
        except ModelNotFoundError:
            return None
        except HttpResponseError as exc:  # some SDK versions report 304 as a plain HttpResponseError
            if exc.status_code == 304:
                return UNCHANGED
            raise
        return _parse(key, raw), new_etag


def _parse(key: str, raw: bytes) -> str:
    """The version named by the body of ``<key>/current.json``; RegistryError if malformed."""
    try:
        return validate_version(json.loads(raw)["version"])
    except (ValueError, KeyError, TypeError) as exc:
        raise RegistryError(f"malformed {key}/current.json: {exc!r}") from None
