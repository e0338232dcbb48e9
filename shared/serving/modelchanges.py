"""``GET /api/model-changes/{symbol}``: the champion history of one symbol, from the registry's decision log.

A symbol is served by the champion of its own key (:func:`shared.lifecycle.registry.symbol_key`,
e.g. ``binance.BTCUSDT``) when that key has one, else by the champion of the fallback key
(``MODEL_KEY``, default ``default``; :mod:`shared.lifecycle.champions`). Its model changes are
therefore the promotion decisions recorded under both keys (``<key>/decisions/``, written by
``promote_model``, :mod:`shared.lifecycle.promotion`), newest first. They survive restarts and
reloads because they are blobs, unlike the ``modelChanged`` SignalR messages, which reach only
the pages open at the time.

Reads are bounded: per key at most :data:`MAX_READS` decision blobs (the newest) are read.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from azure.core.exceptions import AzureError

from shared.lifecycle.registry import ModelRegistry, RegistryError, symbol_key
from shared.lifecycle.registry.layout import decisions_prefix
from shared.serving.params import ApiError, SymbolIndex, check_known, parse_bool, parse_int, url_id

log = logging.getLogger(__name__)

LIMIT = (20, 1, 200)
"""``limit`` of ``/model-changes``: (default, least, most)."""
MAX_READS = 400
"""Decision blobs read per key and request, at most (the newest ones)."""
QUERY = ("limit", "refused")
"""Query parameters of the route."""


def change_json(record: Mapping[str, Any], scope: str) -> dict[str, Any]:
    """One decision record as the API shows it; ``scope`` is ``"own"`` or ``"fallback"``.

    MAEs are holdout mean absolute errors in the quote currency of the symbol (the records name
    them ``*_mae_usd`` from the first, USD-quoted, pairs).

    Examples
    --------
    >>> change_json({"key": "default", "version": "v2", "promoted": True, "reason": "r",
    ...              "decided_at_ms": 5, "champion_version": "v1"}, "fallback")["previous_version"]
    'v1'
    """
    number = lambda name: record.get(name) if isinstance(record.get(name), (int, float)) else None  # noqa: E731
    return {
        "key": record.get("key"), "scope": scope, "version": record.get("version"),
        "previous_version": record.get("champion_version"), "promoted": bool(record.get("promoted")),
        "reason": record.get("reason"), "decided_at_ms": number("decided_at_ms") or number("recorded_at_ms"),
        "challenger_mae": number("challenger_mae_usd"), "champion_mae": number("champion_mae_usd"),
        "persistence_mae": number("persistence_mae_usd"),
    }


class ModelChangesApi:
    """Answers ``/api/model-changes/{symbol}`` from the model registry.

    Parameters
    ----------
    open_registry : callable returning a ModelRegistry or None
        Opens the registry on first use (``None``: no Blob Storage configured -> 503).
    symbols : sequence of (exchange, SYMBOL)
        The served pairs.
    fallback_key : str
        ``MODEL_KEY``, whose champion serves symbols without one of their own.
    """

    def __init__(self, open_registry: Callable[[], ModelRegistry | None], symbols: Sequence[tuple[str, str]],
                 fallback_key: str = "default") -> None:
        self.index = SymbolIndex(symbols)
        self.fallback_key = fallback_key
        self._open = open_registry
        self._registry: ModelRegistry | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Any) -> ModelChangesApi:
        """Over the registry of ``MODEL_STORAGE`` (or ``MODEL_STORAGE__blobServiceUri``), serving ``SYMBOLS``."""
        from shared.serving.wiring import SERVING_BLOB_CLIENT, make_registry

        # no retries, short timeouts: an API answer should be a quick 503 rather than a long wait
        return cls(lambda: make_registry(settings, **SERVING_BLOB_CLIENT), settings.symbols, settings.model_key)

    def close(self) -> None:
        """Forget the registry client."""
        self._registry = None

    def _registry_or_503(self) -> ModelRegistry:
        with self._lock:
            if self._registry is None:
                self._registry = self._open()
            if self._registry is None:
                raise ApiError("no model registry configured (MODEL_STORAGE is not set)", status=503)
            return self._registry

    def _decisions(self, registry: ModelRegistry, key: str, want: int, refused: bool) -> list[dict[str, Any]]:
        names = sorted(registry.blobs.names(decisions_prefix(key)), reverse=True)[:MAX_READS]
        out = []
        for name in names:
            try:
                raw, _ = registry.blobs.get(name, f"decision {name} vanished")
                record = json.loads(raw)
            except (RegistryError, ValueError) as exc:
                log.warning("skipping decision %s: %s", name, exc)
                continue
            if isinstance(record, dict) and (refused or record.get("promoted")):
                out.append(record)
                if len(out) >= want:
                    break
        return out

    def changes(self, symbol: str | None, params: Mapping[str, str]) -> tuple[int, dict[str, Any]]:
        """``(status, JSON body)`` of ``GET /api/model-changes/{symbol}?limit=&refused=``.

        The body has ``keys`` (``own``, ``fallback``), ``serving`` (the key and version of the
        champion serving the symbol now, or ``null``), and ``changes``: promotions (with
        ``refused=true`` also refused candidates), newest first, each from :func:`change_json`.
        Never raises: bad input is 400, an unreachable registry 503.
        """
        try:
            exchange, sym = self.index.resolve(symbol)
            check_known(params, QUERY)
            limit = parse_int(params, "limit", LIMIT)
            refused = parse_bool(params, "refused")
            registry = self._registry_or_503()
            own = symbol_key(exchange, sym)
            keys = {"own": own, "fallback": self.fallback_key}
            changes = []
            for scope, key in keys.items():
                changes += [change_json(r, scope) for r in self._decisions(registry, key, limit, refused)]
            changes.sort(key=lambda c: c["decided_at_ms"] or 0, reverse=True)
            serving = None
            for key in (own, self.fallback_key):
                current = registry.current(key)
                if current is not None:
                    serving = {"key": key, "version": current[0]}
                    break
        except ApiError as err:
            return err.status, {"error": {"status": err.status, "parameter": err.parameter, "message": err.message}}
        except RegistryError as exc:  # e.g. the models container does not exist yet
            log.error("model registry error: %s", exc)
            message = f"model registry unavailable: {str(exc)[:200]}"
            return 503, {"error": {"status": 503, "parameter": None, "message": message}}
        except (AzureError, OSError) as exc:
            log.error("model registry unavailable: %s", exc)
            message = f"model registry unavailable ({type(exc).__name__})"
            return 503, {"error": {"status": 503, "parameter": None, "message": message}}
        return 200, {
            "id": url_id(exchange, sym), "exchange": exchange, "symbol": sym, "keys": keys, "serving": serving,
            "limit": limit, "refused": refused, "count": len(changes[:limit]), "changes": changes[:limit],
            "units": {"times": "ms since the Unix epoch, UTC", "mae": "quote currency of the symbol"},
        }
