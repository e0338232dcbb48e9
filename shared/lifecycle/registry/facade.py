"""``ModelRegistry``: the registry's one entry point, composing its parts over one container.

Each method delegates to the part that owns it; the parameters, returns and errors are
documented there: :class:`~.candidates.Candidates` (``save``, ``list_versions``, ``metadata``,
``load``), :class:`~.pointer.ChampionPointer` (``set_current``, ``current``,
``current_if_changed``), :class:`~.checkpoints.Checkpoints` and :class:`~.decisions.DecisionLog`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from azure.storage.blob import ContainerClient

from shared.lifecycle.registry.blobs import Blobs
from shared.lifecycle.registry.candidates import Candidates
from shared.lifecycle.registry.checkpoints import Checkpoints
from shared.lifecycle.registry.decisions import DecisionLog
from shared.lifecycle.registry.layout import ModelMetadata
from shared.lifecycle.registry.pointer import ChampionPointer
from shared.lifecycle.registry.signing import ModelSigner
from shared.settings import SettingsError

if TYPE_CHECKING:
    from shared.settings import Settings


class ModelRegistry:
    """Versioned model store over one blob container (layout: :mod:`shared.lifecycle.registry.layout`).

    Parameters
    ----------
    container : azure.storage.blob.ContainerClient
        Client of the models container; the registry does not close it.
    signing_key : str or bytes, optional
        Key of the models' MACs (:mod:`~shared.lifecycle.registry.signing`); default
        ``MODEL_SIGNING_KEY`` of the process environment (where the Functions host puts app
        settings, resolved from Key Vault). Without one, saves and loads of models raise
        :class:`~shared.lifecycle.registry.layout.SignatureError`; metadata, pointers and
        decisions still work.

    Attributes
    ----------
    container : azure.storage.blob.ContainerClient
    blobs : Blobs
        The one verified put/get every part uses.
    candidates : Candidates
    pointer : ChampionPointer
    checkpoints : Checkpoints
    decision_log : DecisionLog

    Notes
    -----
    Every method does blocking network I/O. Errors of the storage service other than the ones
    documented (authentication, throttling, network) propagate as ``azure.core`` exceptions.
    A missing container is reported as :class:`RegistryError`; see :meth:`ensure_container`.
    """

    def __init__(self, container: ContainerClient, signing_key: str | bytes | None = None) -> None:
        self.container = container
        signer = ModelSigner.from_env() if signing_key is None else ModelSigner(signing_key)
        self.blobs = Blobs(container, signer)
        self.candidates = Candidates(self.blobs)
        self.pointer = ChampionPointer(self.blobs, self.candidates.metadata)
        self.checkpoints = Checkpoints(self.blobs)
        self.decision_log = DecisionLog(self.blobs)

    @classmethod
    def from_settings(
        cls, settings: Settings, signing_key: str | bytes | None = None, credential: Any = None,
        **client_kwargs: Any,
    ) -> ModelRegistry:
        """Registry on ``settings.models_container``, authenticated as configured.

        Uses the connection string ``settings.model_storage_connection`` (``MODEL_STORAGE``,
        locally Azurite's) if set, else the account URL ``settings.model_storage_url``
        (``MODEL_STORAGE__blobServiceUri``) with ``credential`` (default
        ``azure.identity.DefaultAzureCredential``).

        Parameters
        ----------
        settings : shared.settings.Settings
        signing_key : str or bytes, optional
            As in :class:`ModelRegistry` (default ``MODEL_SIGNING_KEY`` of the environment).
        credential : azure.core.credentials.TokenCredential, optional
            For the account-URL form only, e.g. a ``ManagedIdentityCredential`` of one workload's
            identity; a connection string carries its own.
        **client_kwargs
            Passed to the ``ContainerClient`` (e.g. ``api_version``, ``retry_total``).

        Raises
        ------
        shared.settings.SettingsError
            Neither setting is present.
        ValueError
            A signing key shorter than 32 bytes.
        """
        if settings.model_storage_connection:
            client = ContainerClient.from_connection_string(
                settings.model_storage_connection, settings.models_container, **client_kwargs
            )
        elif settings.model_storage_url:
            if credential is None:
                from azure.identity import DefaultAzureCredential

                credential = DefaultAzureCredential()
            client = ContainerClient(
                settings.model_storage_url, settings.models_container, credential=credential, **client_kwargs
            )
        else:
            raise SettingsError("set MODEL_STORAGE (connection string) or MODEL_STORAGE__blobServiceUri")
        return cls(client, signing_key)

    def ensure_container(self) -> bool:
        """Create the container if it does not exist; return whether it was created."""
        return self.blobs.ensure_container()

    def keys(self) -> list[str]:
        """Model keys that have at least one candidate, pointer, checkpoint or decision, sorted.

        Raises
        ------
        RegistryError
            The container does not exist.
        """
        return self.blobs.top_folders()

    # -- candidates ----------------------------------------------------------------------

    def save(self, key: str, model: object, **fields: Any) -> ModelMetadata:
        """Store ``model`` as a new candidate version of ``key``: see :meth:`Candidates.save`.

        ``fields`` are its keyword-only ``training_start_ms``, ``training_end_ms``,
        ``feature_names``, ``created_at_ms`` and ``extra``.
        """
        return self.candidates.save(key, model, **fields)

    def list_versions(self, key: str) -> list[str]:
        """Versions of ``key`` that have metadata, oldest first: see :meth:`Candidates.list_versions`."""
        return self.candidates.list_versions(key)

    def metadata(self, key: str, version: str) -> ModelMetadata:
        """Metadata of one version: see :meth:`Candidates.metadata`."""
        return self.candidates.metadata(key, version)

    def load(self, key: str, version: str) -> tuple[object, ModelMetadata]:
        """``(model, metadata)`` of one version, verified before unpickling: see :meth:`Candidates.load`."""
        return self.candidates.load(key, version)

    # -- champion pointer ----------------------------------------------------------------

    def set_current(
        self, key: str, version: str, *, if_match_etag: str | None = None, force: bool = False
    ) -> str:
        """Compare-and-swap the champion pointer; return its ETag: see :meth:`ChampionPointer.set_current`."""
        return self.pointer.set_current(key, version, if_match_etag=if_match_etag, force=force)

    def current(self, key: str) -> tuple[str, str] | None:
        """The champion as ``(version, etag)`` or ``None``: see :meth:`ChampionPointer.current`."""
        return self.pointer.current(key)

    def current_if_changed(self, key: str, etag: str | None) -> tuple[str, str] | None | str:
        """Conditional :meth:`current`, or ``UNCHANGED``: see :meth:`ChampionPointer.current_if_changed`."""
        return self.pointer.current_if_changed(key, etag)

    def load_current(self, key: str) -> tuple[object, ModelMetadata] | None:
        """:meth:`load` the champion of ``key``; ``None`` if no pointer is set.

        Raises
        ------
        Same as :meth:`load` and :meth:`current`.
        """
        cur = self.pointer.current(key)
        return None if cur is None else self.candidates.load(key, cur[0])

    # -- checkpoints and decisions -------------------------------------------------------

    def save_checkpoint(
        self, key: str, version: str, model: object, *, saved_at_ms: int | None = None
    ) -> str:
        """Overwrite the checkpoint of ``version`` serving ``key``: :meth:`Checkpoints.save_checkpoint`."""
        return self.checkpoints.save_checkpoint(key, version, model, saved_at_ms=saved_at_ms)

    def load_checkpoint(self, key: str, version: str) -> tuple[object, dict[str, Any]] | None:
        """``(model, info)`` of the last checkpoint, or ``None``: see :meth:`Checkpoints.load_checkpoint`."""
        return self.checkpoints.load_checkpoint(key, version)

    def record_decision(self, key: str, version: str, decision: Mapping[str, Any]) -> str:
        """Append one promotion decision; return its blob name: see :meth:`DecisionLog.record_decision`."""
        return self.decision_log.record_decision(key, version, decision)

    def decisions(self, key: str) -> list[dict[str, Any]]:
        """Every recorded decision of ``key``, oldest first: see :meth:`DecisionLog.decisions`."""
        return self.decision_log.decisions(key)
