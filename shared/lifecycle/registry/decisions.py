"""The decision log: one create-only JSON blob per promotion decision, under ``<key>/decisions/``.

Names are ``<key>/decisions/<YYYYMMDDTHHMMSSmmmZ>-<nn>-<version>.json``, so listing them in
name order lists the decisions in the order they were recorded.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from azure.core.exceptions import ResourceExistsError

from shared.lifecycle.registry.blobs import OnBlobs
from shared.lifecycle.registry.layout import (
    RegistryError,
    decisions_prefix,
    json_bytes,
    now_ms,
    time_stamp,
    validate_version,
)


class DecisionLog(OnBlobs):
    """Append and read promotion decisions."""

    def record_decision(self, key: str, version: str, decision: Mapping[str, Any]) -> str:
        """Append one promotion decision about ``version`` to ``<key>/decisions/``; return the blob name.

        ``decision`` must be a JSON object (no NaN); it is stored with ``key`` and
        ``version`` and a ``recorded_at_ms`` time (ms since epoch, UTC), under a
        create-only name that sorts by time.

        Raises
        ------
        ValueError
            Invalid key/version, or ``decision`` is not strict JSON.
        RegistryError
            The container does not exist, or 100 names of the same millisecond are taken.
        """
        prefix = decisions_prefix(key)
        validate_version(version)
        now = now_ms()
        body = json_bytes({**decision, "key": key, "version": version, "recorded_at_ms": now}, "decision")
        stamp = time_stamp(now)
        for attempt in range(100):
            name = f"{prefix}{stamp}-{attempt:02d}-{version}.json"
            try:
                self.blobs.put(name, body, overwrite=False)
                return name
            except ResourceExistsError:
                continue
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
        out = []
        for name in sorted(self.blobs.names(decisions_prefix(key))):
            raw, _ = self.blobs.get(name, f"decision {name} vanished")
            try:
                out.append(json.loads(raw))
            except ValueError as exc:
                raise RegistryError(f"malformed decision {name}: {exc}") from None
        return out
