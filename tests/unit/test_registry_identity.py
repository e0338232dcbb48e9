"""The registry client of each lifecycle function authenticates as that function's identity.

infra/ gives retrain, promote_model and predict separate user-assigned identities whose blob writes
are limited to their own registry paths (infra/tickcast_infra/identity.py); the code must use the
right one: ``MODEL_STORAGE_RETRAIN_CLIENT_ID`` / ``MODEL_STORAGE_PROMOTE_CLIENT_ID`` select a
``ManagedIdentityCredential`` by client id ("ManagedIdentityCredential", azure-identity: a
user-assigned identity is chosen with ``client_id``), and without them ``DefaultAzureCredential``
(``AZURE_CLIENT_ID``) is kept.
"""

from __future__ import annotations

import azure.identity
import pytest
from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

from shared.serving import wiring
from shared.settings import Settings

URL = "https://tcxstm0000.blob.core.windows.net/"


def settings(**env: str) -> Settings:
    return Settings.from_env({"MODEL_STORAGE__blobServiceUri": URL, **env})


def credential_of(registry) -> object:
    return registry.container.credential


class RecordingCredential:
    """Stands in for ``ManagedIdentityCredential``: records the client id it was built with."""

    def __init__(self, *, client_id: str | None = None) -> None:
        self.client_id = client_id

    def get_token(self, *scopes, **kwargs):  # pragma: no cover - no request is made
        raise AssertionError("no token is requested when a client is built")


@pytest.mark.parametrize("name", ["MODEL_STORAGE_RETRAIN_CLIENT_ID", "MODEL_STORAGE_PROMOTE_CLIENT_ID"])
def test_writers_authenticate_with_their_own_identity(monkeypatch, name):
    monkeypatch.setattr(azure.identity, "ManagedIdentityCredential", RecordingCredential)
    s = settings(**{name: "writer-client-id", "AZURE_CLIENT_ID": "predict-client-id"})
    registry = wiring.require_registry(s, "test", getattr(s, name.lower()))
    assert registry.container.url.startswith(URL + "models")
    assert credential_of(registry).client_id == "writer-client-id"


def test_promote_model_uses_the_promote_identity(monkeypatch):
    seen = []
    monkeypatch.setattr(wiring, "require_registry", lambda s, who, client_id=None: seen.append((who, client_id)))
    wiring.make_promotion_service(settings(MODEL_STORAGE_PROMOTE_CLIENT_ID="promote-id",
                                           MODEL_STORAGE_RETRAIN_CLIENT_ID="retrain-id"))
    assert seen == [("promote_model", "promote-id")]


def test_without_a_client_id_the_default_credential_is_kept():
    registry = wiring.make_registry(settings(AZURE_CLIENT_ID="predict-client-id"))
    assert isinstance(credential_of(registry), DefaultAzureCredential)


def test_a_connection_string_ignores_the_client_id():
    conn = ("DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
            "BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;")
    registry = wiring.make_registry(Settings.from_env({"MODEL_STORAGE": conn}), "writer-client-id")
    assert not isinstance(credential_of(registry), (ManagedIdentityCredential, DefaultAzureCredential))
