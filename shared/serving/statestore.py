"""Where ``predict`` keeps each partition's state between workers: one signed blob per partition.

A partition's state (:class:`shared.serving.partitions.PartitionSnapshot`: bars in progress,
features, online models, pending forecasts, the tick gate's marks and the outputs of the newest
batch) is written after each batch, before the invocation returns, and read when a worker starts
on a partition (:mod:`shared.serving.partitions` says when and why). Blob
``<STATE_CONTAINER>/<hub>/<consumer group>/<partition>.state``, one put: a single Put Blob
replaces a blob whole or not at all ("Put Blob", Azure Storage REST reference: "Updating an
existing block blob overwrites any existing metadata on the blob"; the SDK's single-shot upload
up to ``max_single_put_size``, 64 MiB, is one Put Blob), so a worker killed while saving leaves
the previous state, never half of one.

Format (:data:`MAGIC`): ``b"tickcast-partition-state-v1\\n"``, one JSON header line
(``hub``, ``group``, ``partition``, ``seq``, ``saved_at_ms``, ``size_bytes``, ``mac``), then the
pickled snapshot. The state is unpickled, i.e. it is code to whoever can write it, so it carries
an HMAC-SHA256 (:mod:`shared.lifecycle.registry.signing`, kind ``partition-state``, bound to hub,
group, partition and the header's sequence number) checked before unpickling: a planted or
copied state blob is refused (:class:`StateRefusedError`) and never executed.

Fencing: each save replaces only the version of the blob this store last read or wrote (an
``If-Match`` on its ETag, or ``If-None-Match: *`` when it read none: "Managing concurrency in Blob
storage", learn.microsoft.com/azure/storage/blobs/concurrency-manage, optimistic concurrency). A
worker that lost the partition to another instance — the Event Hubs extension moves partitions
while an invocation may still run — or whose background upload is late cannot overwrite the
newer state: the save fails with 412 (or 409), is counted (:attr:`PartitionStateStore.conflicts`)
and marks the partition :attr:`~PartitionStateStore.superseded`, and the tracker reloads it
before its next batch. A store that could not read the blob (an outage) writes unconditionally.

Storage calls run in the batch path, so the client is built without retries and with short
timeouts (:data:`shared.serving.wiring.SERVING_BLOB_CLIENT`), and a :class:`Backoff` breaker
skips saves after a failure instead of waiting on every batch (outages degrade, never stall).
"""

from __future__ import annotations

import json
import logging
import pickle
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import AzureError, ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.storage.blob import ContainerClient, ContentSettings

from shared.lifecycle.champions import Backoff
from shared.lifecycle.registry.blobs import loads_model
from shared.lifecycle.registry.layout import PICKLE_PROTOCOL, SignatureError
from shared.lifecycle.registry.signing import ModelIdentity, ModelSigner

log = logging.getLogger(__name__)

MAGIC = b"tickcast-partition-state-v1\n"
"""First bytes of every state blob (format version 1)."""

MAX_HEADER_BYTES = 4096
"""Longest header line accepted when reading (the header is ~300 bytes)."""

BINARY = ContentSettings(content_type="application/octet-stream")


class StateRefusedError(Exception):
    """A state blob exists but is not one this deployment wrote for this partition
    (bad magic or header, wrong size, or a MAC that does not verify); nothing was unpickled."""


class StorageUnavailableError(Exception):
    """The state could not be read (Blob Storage failed, or the breaker is open after a failure)."""


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class PartitionStateStore:
    """Save and load one partition's state blob, signed, with short timeouts and a breaker.

    Parameters
    ----------
    container : the ``STATE_CONTAINER`` client (built without retries, short timeouts).
    signer : the :class:`ModelSigner` of ``MODEL_SIGNING_KEY``.
    hub, group : the trigger's Event Hub and consumer group (part of the blob name and the MAC).
    backoff : breaker guarding every call (default :class:`Backoff`: 1 s doubling to 30 s).
    clock : wall clock in ms since epoch UTC (``saved_at_ms``).

    Examples
    --------
    A blob written by one signer is refused by another key (no Azure call is needed to see it):

    >>> blob = PartitionStateStore.encode(ModelSigner("k" * 32), "ticks", "predict", "0", 41, {"x": 1}, 0)
    >>> PartitionStateStore.decode(ModelSigner("k" * 32), "ticks", "predict", "0", blob)
    (41, {'x': 1})
    >>> PartitionStateStore.decode(ModelSigner("j" * 32), "ticks", "predict", "0", blob)
    Traceback (most recent call last):
    ...
    shared.serving.statestore.StateRefusedError: ticks/predict/0.state: ...
    """

    def __init__(self, container: ContainerClient, signer: ModelSigner, hub: str, group: str,
                 backoff: Backoff | None = None, clock: Callable[[], int] = _now_ms) -> None:
        self.container = container
        self.signer = signer
        self.hub = hub
        self.group = group
        self.backoff = backoff if backoff is not None else Backoff()
        self.clock = clock
        self.saved = 0
        self.failed = 0
        self.skipped = 0
        self._blobs: dict[str, Any] = {}  # partition -> its BlobClient, built once (not per save)
        self._etags: dict[str, str | None] = {}  # partition -> ETag of the version last read or written
        # (None: read as absent); a save replaces only that version (fencing off a worker that lost the partition)
        self.superseded: set[str] = set()
        """Partitions whose save found a version written by another worker (cleared by :meth:`load`)."""
        self.conflicts = 0
        self._pending: dict[str, Future] = {}  # partition -> its newest upload queued by save(wait=False)
        self._uploader: ThreadPoolExecutor | None = None  # the background thread, started on first use

    def blob_name(self, partition: str) -> str:
        """``<hub>/<group>/<partition>.state`` (characters outside ``[A-Za-z0-9._-]`` become ``_``)."""
        safe = "".join(c if c.isascii() and (c.isalnum() or c in "._-") else "_" for c in partition)
        return f"{self.hub}/{self.group}/{safe}.state"

    def ensure_container(self) -> bool:
        """Create the container if it does not exist; return whether it was created."""
        try:
            self.container.create_container()
            return True
        except ResourceExistsError:
            return False

    @staticmethod
    def encode(signer: ModelSigner, hub: str, group: str, partition: str, seq: int, snapshot: object,
               saved_at_ms: int) -> bytes:
        """The blob bytes of ``snapshot`` taken after the event at sequence number ``seq``.

        Raises
        ------
        SignatureError
            No signing key configured.
        pickle.PicklingError, TypeError, AttributeError
            The snapshot cannot be pickled.
        """
        payload = pickle.dumps(snapshot, protocol=PICKLE_PROTOCOL)
        mac = signer.mac(ModelIdentity("partition-state", f"{hub}/{group}/{partition}", str(seq)), payload)
        header = {"hub": hub, "group": group, "partition": partition, "seq": seq, "saved_at_ms": saved_at_ms,
                  "size_bytes": len(payload), "mac": mac}
        return MAGIC + json.dumps(header, sort_keys=True).encode("utf-8") + b"\n" + payload

    @staticmethod
    def decode(signer: ModelSigner, hub: str, group: str, partition: str, blob: bytes) -> tuple[int, object]:
        """``(seq, snapshot)`` from blob bytes, checked before unpickling.

        Raises
        ------
        StateRefusedError
            Bad magic or header, wrong size, another hub/group/partition, or a MAC that does not verify.
        """
        what = f"{hub}/{group}/{partition}.state"
        if not blob.startswith(MAGIC):
            raise StateRefusedError(f"{what}: not a tickcast partition state (bad magic)")
        end = blob.find(b"\n", len(MAGIC), len(MAGIC) + MAX_HEADER_BYTES)
        try:
            header = json.loads(blob[len(MAGIC):end]) if end > 0 else None
            seq, size = header["seq"], header["size_bytes"]
            if type(seq) is not int or type(size) is not int or seq < 0:
                raise ValueError("seq and size_bytes must be non-negative integers")
            if (header["hub"], header["group"], header["partition"]) != (hub, group, partition):
                raise ValueError("written for another hub, group or partition")
        except (ValueError, KeyError, TypeError) as exc:
            raise StateRefusedError(f"{what}: malformed header: {exc}") from None
        payload = blob[end + 1:]
        if len(payload) != size:
            raise StateRefusedError(f"{what}: {len(payload)} bytes of state, header says {size}")
        try:
            signer.check(ModelIdentity("partition-state", f"{hub}/{group}/{partition}", str(seq)), payload,
                         header.get("mac"), what)
        except SignatureError as exc:
            raise StateRefusedError(str(exc)) from None
        return seq, loads_model(payload)

    def save(self, partition: str, seq: int, snapshot: object, *, wait: bool = True) -> bool:
        """Write the state of ``partition`` after sequence number ``seq``; return whether it was written
        (``wait``) or queued (not ``wait``).

        The blob is encoded here in both cases: ``snapshot`` refers to live state that the next
        batch changes. Not ``wait``: it is uploaded on the store's one background thread, so the
        invocation does not wait for Blob Storage; a partition whose previous upload is still in
        flight is skipped (:attr:`skipped`, nothing encoded). ``wait``: uploaded now, after any
        upload of the partition still in flight, so an older state never lands after it.

        Never raises for storage: a failure is logged and counted (:attr:`failed`) and opens the
        breaker, during which saves are skipped (:attr:`skipped`); the next successful save
        replaces the stale state.

        Raises
        ------
        SignatureError
            No signing key configured (a deployment error, not an outage).
        pickle.PicklingError, TypeError, AttributeError
            The snapshot cannot be pickled.
        """
        if not self.backoff.ready():  # checked first: no pickling on the batch path while storage is down
            self.skipped += 1
            return False
        pending = self._pending.get(partition)
        if pending is not None and not pending.done():
            if not wait:
                self.skipped += 1
                return False
            wait_for([pending])
        blob = self.encode(self.signer, self.hub, self.group, partition, seq, snapshot, self.clock())
        if wait:
            return self._upload(partition, blob)
        if self._uploader is None:
            self._uploader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="state-upload")
        self._pending[partition] = self._uploader.submit(self._upload_logged, partition, blob)
        return True

    def flush(self, timeout_s: float | None = None) -> None:
        """Wait until the uploads queued by :meth:`save` are done (at most ``timeout_s`` seconds)."""
        wait_for(list(self._pending.values()), timeout=timeout_s)

    def close(self) -> None:
        """Finish the queued uploads and stop the background thread (a later save starts a new one)."""
        uploader, self._uploader = self._uploader, None
        if uploader is not None:
            uploader.shutdown(wait=True)

    def _upload_logged(self, partition: str, blob: bytes) -> bool:
        """:meth:`_upload` on the background thread: what it raises beyond storage errors is logged."""
        try:
            return self._upload(partition, blob)
        except Exception:
            self.failed += 1
            log.exception("partition state of %s not saved", partition)
            return False

    def _upload(self, partition: str, blob: bytes) -> bool:
        """One Put Blob of ``blob`` as ``partition``'s state; counts and the breaker as in :meth:`save`."""
        client = self._blobs.get(partition)
        if client is None:
            client = self._blobs[partition] = self.container.get_blob_client(self.blob_name(partition))
        condition: dict[str, Any] = {}
        if partition in self._etags:  # replace only the version this store read or wrote last
            etag = self._etags[partition]
            condition = ({"match_condition": MatchConditions.IfMissing} if etag is None else
                         {"etag": etag, "match_condition": MatchConditions.IfNotModified})
        try:
            try:
                written = client.upload_blob(blob, overwrite=True, content_settings=BINARY, **condition)
            except ResourceNotFoundError:  # ContainerNotFound: a deployment that predates the container
                self.ensure_container()
                written = client.upload_blob(blob, overwrite=True, content_settings=BINARY, **condition)
        except (ResourceModifiedError, ResourceExistsError) as exc:  # 412 / 409: another worker wrote it
            self.conflicts += 1
            self.superseded.add(partition)
            self.backoff.succeeded()
            log.warning("partition state of %s not saved: another worker saved it since this one read it "
                        "(%s); reloading before the next batch", partition, type(exc).__name__)
            return False
        except AzureError as exc:
            self.failed += 1
            delay = self.backoff.failed()
            log.error("partition state of %s not saved (%s: %s); skipping saves for %.0f s",
                      partition, type(exc).__name__, exc, delay)
            return False
        self.backoff.succeeded()
        etag = written.get("etag") if isinstance(written, dict) else None
        if etag:
            self._etags[partition] = etag
        else:  # no ETag answered: unconditional from now on
            self._etags.pop(partition, None)
        self.saved += 1
        return True

    def load(self, partition: str) -> tuple[int, Any] | None:
        """``(seq, snapshot)`` of ``partition``'s last saved state, or ``None`` if none was ever saved.

        Raises
        ------
        StorageUnavailableError
            Blob Storage failed or the breaker is open: whether a state exists is unknown.
        StateRefusedError
            A state blob exists but fails its checks (nothing was unpickled).
        """
        if not self.backoff.ready():
            raise StorageUnavailableError(f"state of {partition}: storage calls skipped after a failure")
        pending = self._pending.get(partition)
        if pending is not None:  # this store's own upload lands first, so the read sees the newest state
            wait_for([pending])
        self._etags.pop(partition, None)  # unknown until read: a failed read leaves saves unconditional
        self.superseded.discard(partition)
        try:
            downloader = self.container.download_blob(self.blob_name(partition))
            blob = downloader.readall()
        except ResourceNotFoundError:
            self.backoff.succeeded()
            self._etags[partition] = None
            return None
        except AzureError as exc:
            delay = self.backoff.failed()
            raise StorageUnavailableError(
                f"state of {partition}: {type(exc).__name__}: {exc} (storage calls skipped for {delay:.0f} s)"
            ) from exc
        self.backoff.succeeded()
        self._etags[partition] = downloader.properties.etag  # the next save replaces this version only
        return self.decode(self.signer, self.hub, self.group, partition, blob)

    def take_superseded(self, partition: str) -> bool:
        """Whether a save of ``partition`` found a state this store had not read (another worker
        wrote it since); the mark is cleared. The caller reloads before applying more."""
        if partition in self.superseded:
            self.superseded.discard(partition)
            return True
        return False
