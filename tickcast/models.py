"""``python -m tickcast models [KEY]``: what the model registry holds, and every promotion decision.

Reads the registry named by the app settings (``MODEL_STORAGE`` or
``MODEL_STORAGE__blobServiceUri``, ``MODELS_CONTAINER``). Without ``KEY`` it lists
the model keys with their champion; with ``KEY`` it lists the candidate versions
with their holdout MAE (USD) and the decisions of ``promote_model`` — promoted or
refused, when, and why.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from shared.lifecycle.registry import ModelRegistry

# The registry's client is made with shared.serving.wiring.SERVING_BLOB_CLIENT: no retries, 2 s to
# connect, 10 s between reads. With azure-storage-blob's defaults (retry_total=3, initial_backoff=15 s,
# 300 s timeouts; learn.microsoft.com, "Implement a retry policy with Python") an unreachable
# account kept this command silent for 80 s. Imports are lazy: --help answers at once.


class RegistryUnavailable(Exception):
    """The registry cannot be read; the text is the one line printed."""


class UnknownKey(Exception):
    """The registry holds no such model key."""


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``models`` subcommand on ``sub``."""
    m = sub.add_parser("models", help="list model keys, versions and promotion decisions of the registry")
    m.add_argument("key", nargs="?", help="a model key (e.g. binance.BTCUSDT); omit to list the keys")


def _time(ms: int | None) -> str:
    if not isinstance(ms, int):
        return "?"
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def _mae(block: object) -> str:
    value = block.get("mae_usd") if isinstance(block, dict) else None
    return f"{value:.4f}" if isinstance(value, (int, float)) else "—"


def report(registry: ModelRegistry, key: str | None, out: TextIO) -> None:
    """Print the keys (``key`` None) or one key's versions and decisions to ``out``.

    Raises
    ------
    RegistryError, azure.core.exceptions.AzureError
        The registry cannot be read.
    """
    if key is None:
        for k in registry.keys():
            current = registry.current(k)
            print(f"{k:<32} champion {current[0] if current else '(none)'}", file=out)
        return
    current = registry.current(key)
    print(f"{key}: champion {current[0] if current else '(none)'}", file=out)
    print(f"{'version':<32} {'created (UTC)':<21} {'challenger':>10} {'champion':>10} {'persist.':>10}"
          "   holdout MAE (USD)", file=out)
    for version in registry.list_versions(key):
        meta = registry.metadata(key, version)
        holdout = meta.extra.get("holdout") or {}
        mark = " *" if current and current[0] == version else ""
        print(f"{version:<32} {_time(meta.created_at_ms):<21} {_mae(holdout.get('challenger')):>10}"
              f" {_mae(holdout.get('champion')):>10} {_mae(holdout.get('persistence')):>10}{mark}", file=out)
    print("decisions:", file=out)
    for d in registry.decisions(key):
        verdict = "promoted" if d.get("promoted") else "refused "
        print(f"  {_time(d.get('decided_at_ms'))}  {verdict}  {d.get('version')}: {d.get('reason')}", file=out)


def main(args: argparse.Namespace, out: TextIO) -> int:
    """Run ``models`` with parsed ``args``; returns the exit status (1: the registry has no such key).

    Raises
    ------
    shared.settings.SettingsError
        No registry configured.
    RegistryUnavailable
        The storage account cannot be reached or read (bounded: no retries, 2 s connect timeout).
    """
    from azure.core.exceptions import AzureError

    from shared.lifecycle.registry import RegistryError
    from shared.serving.wiring import SERVING_BLOB_CLIENT, make_registry
    from shared.settings import Settings, SettingsError

    registry = make_registry(Settings.from_env(), **SERVING_BLOB_CLIENT)
    if registry is None:
        raise SettingsError("no model registry configured: set MODEL_STORAGE (a connection string) or"
                            " MODEL_STORAGE__blobServiceUri")
    try:
        if args.key is not None and args.key not in (keys := registry.keys()):
            known = ", ".join(keys) if keys else "none yet"
            print(f"{args.key}: no such model key in the registry (keys: {known})", file=sys.stderr)
            return 1
        report(registry, args.key, out)
    except (AzureError, RegistryError) as exc:
        reason = (str(getattr(exc, "message", "") or exc).strip().splitlines() or [type(exc).__name__])[0]
        raise RegistryUnavailable(
            f"cannot read the model registry at {registry.container.url}: {reason[:300]}; check MODEL_STORAGE"
            " (or MODEL_STORAGE__blobServiceUri) and that the storage account is reachable"
        ) from None
    return 0
