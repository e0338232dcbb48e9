"""Model registry errors that need no blob store (the registry itself is tested on Azurite in
tests/integration/test_registry.py)."""

from __future__ import annotations

from shared.lifecycle.registry import (
    DigestMismatchError,
    ModelNotFoundError,
    PointerConflictError,
    RegistryError,
)


def test_digest_mismatch_is_a_registry_error() -> None:
    assert issubclass(DigestMismatchError, RegistryError)
    assert issubclass(ModelNotFoundError, RegistryError)
    assert issubclass(PointerConflictError, RegistryError)
