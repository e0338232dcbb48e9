"""Pytest plugin: one real Azurite blob server per test session, a fresh container per test.

Fixtures
--------
azurite : local_stack.azurite.AzuriteServer (session)
    Started once, in memory, on a free loopback port; stopped at the end of the session.
model_signing_key : str (function)
    A random ``MODEL_SIGNING_KEY`` (64 hex digits), also set in ``os.environ`` for the test, as
    the local stack does: registries built from the environment sign and verify with it.
blob_container : azure.storage.blob.ContainerClient (function)
    A new, uniquely named, empty container on ``azurite``; deleted after the test. Uses
    ``model_signing_key``, so every test with a container has a signing key.
model_registry : shared.lifecycle.registry.ModelRegistry (function)
    ``ModelRegistry(blob_container, model_signing_key)``.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobServiceClient, ContainerClient

from local_stack.azurite import AzuriteServer
from shared.lifecycle.registry import ModelRegistry


@pytest.fixture(scope="session")
def azurite() -> Iterator[AzuriteServer]:
    """A running Azurite blob server shared by the whole session."""
    server = AzuriteServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def model_signing_key(monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh random signing key, set as ``MODEL_SIGNING_KEY`` for this test."""
    key = secrets.token_hex(32)
    monkeypatch.setenv("MODEL_SIGNING_KEY", key)
    return key


@pytest.fixture
def blob_container(azurite: AzuriteServer, model_signing_key: str) -> Iterator[ContainerClient]:
    """A fresh container (``test-<32 hex>``) on the session's Azurite, deleted afterwards."""
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    container = service.create_container(f"test-{uuid.uuid4().hex}")
    try:
        yield container
    finally:
        try:
            container.delete_container()
        except ResourceNotFoundError:
            pass  # the test deleted it itself
        container.close()
        service.close()


@pytest.fixture
def model_registry(blob_container: ContainerClient, model_signing_key: str) -> ModelRegistry:
    """A :class:`~shared.lifecycle.registry.ModelRegistry` on this test's own container, signing with its key."""
    return ModelRegistry(blob_container, model_signing_key)
