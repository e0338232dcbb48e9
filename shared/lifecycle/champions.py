"""Which model serves a symbol: champion lookup, hot reload by pointer ETag, and checkpoints.

A symbol ``(exchange, symbol)`` is served by the champion of its own model key
(:func:`shared.lifecycle.registry.symbol_key`, e.g. ``binance.BTCUSDT``) when that key has a
``current.json``, else by the champion of the fallback key (``MODEL_KEY``, default
``default``), else by a cold-start forecaster (the engine's concern).

:class:`ChampionSource` implements the three hooks :class:`shared.serving.engine.ForecastEngine`
calls:

``initial(exchange, symbol)``
    When a symbol is first seen: the champion, restored from its newest checkpoint
    for this symbol when one exists (so a restarted worker keeps its online updates).
``refresh(exchange, symbol, serving_version)``
    At every bar close (the minute boundary): re-reads the pointers at most every
    ``poll_seconds`` with a conditional GET on the cached ETag (an unchanged pointer
    costs one 304 response, no body), and returns a freshly loaded model when the
    champion differs from ``serving_version``. The engine swaps it in before it
    predicts; feature state is kept, because it lives in the engine, not the model.
``checkpoint(exchange, symbol, forecaster, version)``
    After each learn: saves the online-updated model to
    ``<symbol key>/checkpoints/<version>/`` at most every ``checkpoint_seconds``.

What happens to the old champion's online updates at a swap: they are discarded on
purpose. The new champion was trained by ``retrain`` on the same history those
updates came from (every bar is archived to MySQL), and its holdout score — the
reason it was promoted — describes the model as stored, not a blend. The old
version's last periodic checkpoint stays in Blob Storage, so a manual rollback
(``set_current(..., force=True)`` to the old version) resumes from there.

Every registry or storage error is logged and answered with "no change" (or a cold
start on first sight): a storage outage never stops the stream.

Outages degrade, never stall. These hooks run inside the bar-close path, so a storage call
must never wait long: the serving client is built with no retries and short socket
timeouts (:data:`shared.serving.wiring.SERVING_BLOB_CLIENT`), and a :class:`Backoff` (a
circuit breaker) skips every storage call for a back-off period after one fails with an
``azure.core`` error (1 s, doubling to 30 s while it keeps failing). While it is open,
pointers are answered from their cached values, models from the in-memory cache of the
newest loaded version of each key (so a symbol first seen during an outage is served by its
key's, or the fallback key's, last loaded champion), and checkpoints are postponed to the
first bar close after storage answers again. Recovery is automatic: the first call after the
back-off is a probe; when it succeeds the breaker closes.

Polls off the bar-close path (:meth:`ChampionSource.start_polling`, what ``predict`` uses): a
pointer read is a Blob round trip (~5-10 ms), and every symbol's pointer came due in the same
``poll_seconds``, so one invocation in five seconds paid them all in a row — the p99 of tick ->
prediction (``bench/pipeline.py --diagnose``: 74 ms invocations, 2.4 ms without the polls). With
polling started, a daemon thread re-reads every known pointer each ``poll_seconds`` and loads a
changed champion *before* publishing its version, so :meth:`~ChampionSource.refresh` answers from
memory and swaps at the first bar close after the change was seen, as before, with no storage call.
The thread only replaces cache entries; the engine never gets an object the thread mutates (it
swaps in its own copy). Checkpoints go the same way: :meth:`~ChampionSource.checkpoint` hands the
thread a copy of the model (a pickling round trip, ~0.2 ms, every ``checkpoint_seconds`` per
symbol) and returns; the thread uploads it within :data:`CHECKPOINT_WAKE_SECONDS`. A symbol's
first sight (:meth:`~ChampionSource.initial`) stays in the caller's thread.
"""

from __future__ import annotations

import logging
import pickle
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from azure.core.exceptions import AzureError

from shared.lifecycle.registry import UNCHANGED, ModelRegistry, RegistryError, symbol_key

log = logging.getLogger(__name__)

CHECKPOINT_WAKE_SECONDS = 0.5
"""How often the polling thread looks for checkpoints handed over by :meth:`ChampionSource.checkpoint`, s."""


class Backoff:
    """A circuit breaker: after a failure, calls are skipped until a back-off period has passed.

    The period starts at ``first_seconds`` and doubles at every consecutive failure up to
    ``max_seconds``; a success resets it. The first call allowed after a period is the probe
    that finds the service back.

    Parameters
    ----------
    first_seconds : back-off after the first failure, s (default 1: a blip costs one skipped
        poll; the pointer poll itself runs at most every ``MODEL_POLL_SECONDS``, default 5).
    max_seconds : longest back-off, s (default 30: a service back after an outage is found
        within 30 s, and a dead one is probed at most twice a minute, i.e. once per bar).
    clock : monotonic seconds (injectable for tests).
    """

    def __init__(self, first_seconds: float = 1.0, max_seconds: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.first_seconds = first_seconds
        self.max_seconds = max_seconds
        self.clock = clock
        self.failures = 0
        """Consecutive failures (0: closed, calls go through)."""
        self.skipped = 0
        """Calls skipped since the breaker was built."""
        self._until = 0.0

    def ready(self) -> bool:
        """Whether a call may go out now; counts a skip when not."""
        if self.clock() >= self._until:
            return True
        self.skipped += 1
        return False

    def failed(self) -> float:
        """Record a failure; return the back-off now in force, s."""
        self.failures += 1
        delay = min(self.max_seconds, self.first_seconds * 2 ** (self.failures - 1))
        self._until = self.clock() + delay
        return delay

    def succeeded(self) -> None:
        """Record a success: close the breaker."""
        if self.failures:
            log.info("service answers again after %d failed call(s)", self.failures)
        self.failures = 0
        self._until = 0.0


class _Skipped(Exception):
    """A storage call was not made (breaker open) or failed (breaker now open)."""


@dataclass(frozen=True)
class ServingModel:
    """A model ready to serve a symbol.

    Attributes
    ----------
    forecaster : the unpickled model (a private copy for this symbol).
    version : registry version, stamped on every prediction it makes.
    key : registry key the version belongs to (the symbol's own key or the fallback).
    restored : True when loaded from a checkpoint of this symbol rather than the champion blob.
    """

    forecaster: object
    version: str
    key: str
    restored: bool = False


@dataclass
class _Pointer:
    checked_at: float
    etag: str | None
    version: str | None


class ChampionSource:
    """Champion lookup, ETag-cached pointer polling and periodic checkpoints over a registry.

    Parameters
    ----------
    registry : the model registry.
    fallback_key : key whose champion serves symbols without a champion of their own.
    poll_seconds : least time between two reads of the same pointer (``MODEL_POLL_SECONDS``).
    checkpoint_seconds : least time between two checkpoints of one symbol
        (``MODEL_CHECKPOINT_SECONDS``); 0 disables checkpoints.
    clock : monotonic seconds (injectable for tests).
    backoff : the breaker guarding every storage call; default a :class:`Backoff` on ``clock``.
    """

    def __init__(
        self,
        registry: ModelRegistry,
        fallback_key: str,
        poll_seconds: float = 5.0,
        checkpoint_seconds: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        backoff: Backoff | None = None,
    ) -> None:
        self.registry = registry
        self.fallback_key = fallback_key
        self.poll_seconds = poll_seconds
        self.checkpoint_seconds = checkpoint_seconds
        self.clock = clock
        self._pointers: dict[str, _Pointer] = {}
        self._last_checkpoint: dict[tuple[str, str], float] = {}
        self._models: dict[str, tuple[str, object]] = {}  # key -> newest loaded (version, model)
        self.backoff = backoff if backoff is not None else Backoff(clock=clock)
        self.checkpoints_saved = 0
        self.errors = 0
        self._lock = threading.Lock()  # pointer and model cache updates (never held during I/O)
        self._pending: dict[tuple[str, str], tuple[str, object]] = {}  # checkpoints for the polling thread
        self._stop: threading.Event | None = None
        self._poller: threading.Thread | None = None

    # ------------------------------------------------------------------ background polling

    def start_polling(self) -> None:
        """Re-read the known pointers every ``poll_seconds`` on a daemon thread (see the module
        docstring); :meth:`refresh` then makes no storage call. Idempotent."""
        if self._poller is not None:
            return
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll_loop, args=(self._stop,), name="champion-poller",
                                        daemon=True)
        self._poller.start()

    def close(self) -> None:
        """Stop the polling thread, if any (waits at most one storage call)."""
        if self._stop is not None:
            self._stop.set()
        if self._poller is not None:
            self._poller.join(timeout=15)
        self._poller = self._stop = None

    def _poll_loop(self, stop: threading.Event) -> None:
        next_poll = time.monotonic() + self.poll_seconds
        while not stop.wait(min(CHECKPOINT_WAKE_SECONDS, self.poll_seconds)):
            try:
                self.save_pending_checkpoints()
                if time.monotonic() >= next_poll:
                    next_poll = time.monotonic() + self.poll_seconds
                    self.poll_once()
            except Exception:  # never let the poller die: log and poll again next period
                self.errors += 1
                log.exception("champion poll failed")
        self.save_pending_checkpoints()  # what was handed over before the stop is still written

    def save_pending_checkpoints(self) -> int:
        """Write the checkpoints :meth:`checkpoint` handed to the polling thread; return how many."""
        with self._lock:
            pending, self._pending = self._pending, {}
        saved = 0
        for (exchange, symbol), (version, model) in pending.items():
            saved += self._save_checkpoint(exchange, symbol, model, version)
        return saved

    def poll_once(self) -> None:
        """Re-read every known pointer now; load a changed champion before publishing its version."""
        with self._lock:
            keys = list(self._pointers)
        for key in keys:
            cached = self._pointers.get(key)
            try:
                found = self._call("pointer", self.registry.current_if_changed, key, cached.etag if cached else None)
            except _Skipped:
                return  # storage down: the breaker paces the retries
            except (RegistryError, AzureError, ValueError) as exc:
                self.errors += 1
                log.error("cannot read the champion pointer of %s: %s", key, exc)
                continue
            now = self.clock()
            if found == UNCHANGED:
                if cached is not None:
                    cached.checked_at = now
                continue
            version, etag = found if found is not None else (None, None)  # type: ignore[misc]
            if version is not None:
                try:
                    self._load(key, version)  # the model is in the cache before anyone sees the version
                except (_Skipped, RegistryError, AzureError) as exc:
                    log.error("champion %s of %s seen but not loaded (%s); retried next poll", version, key, exc)
                    continue
            with self._lock:
                self._pointers[key] = _Pointer(now, etag, version)

    def _call(self, what: str, fn: Callable[..., object], *args: object) -> object:
        """``fn(*args)`` unless the breaker is open; an ``AzureError`` opens it.

        Raises
        ------
        _Skipped
            The call was skipped, or failed with an ``azure.core`` error.
        RegistryError
            Whatever ``fn`` raises (a bad blob is not an outage).
        """
        if not self.backoff.ready():
            raise _Skipped(what)
        try:
            found = fn(*args)
        except AzureError as exc:
            self.errors += 1
            delay = self.backoff.failed()
            log.error("model storage failed (%s: %s); skipping storage calls for %.0f s",
                      what, type(exc).__name__, delay)
            raise _Skipped(what) from exc
        self.backoff.succeeded()
        return found

    def _load(self, key: str, version: str) -> tuple[str, object]:
        """``(version, model)`` of ``key``: the cached one if it is ``version``, else loaded.

        With storage unreachable, the newest cached version of ``key`` (possibly older).

        Raises
        ------
        _Skipped
            Storage unreachable and nothing of ``key`` cached.
        RegistryError
            The blob is refused (e.g. digest mismatch).
        """
        cached = self._models.get(key)
        if cached is not None and cached[0] == version:
            return cached
        try:
            model, _meta = self._call("load", self.registry.load, key, version)  # type: ignore[misc]
        except _Skipped:
            if cached is None:
                raise
            return cached
        with self._lock:
            self._models[key] = (version, model)
        return version, model

    # ------------------------------------------------------------------ pointers

    def _pointer(self, key: str, *, force: bool = False) -> str | None:
        """Champion version of ``key`` (``None`` if none), re-read at most every poll_seconds."""
        now = self.clock()
        cached = self._pointers.get(key)
        if cached is not None and not force and (self._poller is not None or now - cached.checked_at < self.poll_seconds):
            return cached.version  # with polling started, the thread keeps it current
        try:
            found = self._call("pointer", self.registry.current_if_changed, key, cached.etag if cached else None)
        except _Skipped:  # storage down: the last known champion (None if never read)
            return cached.version if cached is not None else None
        if found == UNCHANGED:
            cached.checked_at = now  # type: ignore[union-attr]
            return cached.version  # type: ignore[union-attr]
        version, etag = found if found is not None else (None, None)  # type: ignore[misc]
        with self._lock:
            self._pointers[key] = _Pointer(now, etag, version)
        return version

    def champion(self, exchange: str, symbol: str, *, force: bool = False) -> tuple[str, str] | None:
        """``(key, version)`` of the champion serving the symbol now, or ``None``.

        While storage is unreachable (breaker open) the pointers' last read values answer.

        Raises
        ------
        RegistryError
            The registry refuses the read (e.g. no container).
        """
        own = symbol_key(exchange, symbol)
        version = self._pointer(own, force=force)
        if version is not None:
            return own, version
        version = self._pointer(self.fallback_key, force=force)
        return None if version is None else (self.fallback_key, version)

    # ------------------------------------------------------------------ engine hooks

    def initial(self, exchange: str, symbol: str) -> ServingModel | None:
        """The model to start serving a newly seen symbol with, or ``None`` (start cold)."""
        try:
            found = self.champion(exchange, symbol, force=True)
            if found is None:
                return None
            key, version = found
            own = symbol_key(exchange, symbol)
            try:
                restored = self._call("checkpoint load", self.registry.load_checkpoint, own, version)
            except RegistryError as exc:  # a bad checkpoint is skipped, not fatal
                log.error("checkpoint of %s/%s refused, loading the champion blob: %s", own, version, exc)
                restored = None
            except _Skipped:  # storage down: serve the cached champion without its checkpoint
                restored = None
            if restored is not None:
                log.info("%s %s: resuming %s from its checkpoint of %s", exchange, symbol, version,
                         restored[1].get("saved_at_ms"))  # type: ignore[index]
                return ServingModel(restored[0], version, key, restored=True)  # type: ignore[index]
            version, model = self._load(key, version)
            return ServingModel(model, version, key)
        except _Skipped:
            log.error("model storage unreachable and no model of %s %s cached: starting cold", exchange, symbol)
            return None
        except (RegistryError, AzureError) as exc:  # e.g. digest mismatch, storage unreachable
            self.errors += 1
            log.error("cannot load a model for %s %s: %s", exchange, symbol, exc)
            return None

    def refresh(self, exchange: str, symbol: str, serving_version: str) -> ServingModel | None:
        """A new champion to swap in for the symbol, or ``None`` when ``serving_version`` is current."""
        try:
            found = self.champion(exchange, symbol)
            if found is None or found[1] == serving_version:
                return None
            key, version = found
            version, model = self._load(key, version)
            if version == serving_version:  # storage down: only the serving version is cached
                return None
        except _Skipped:  # storage down: keep serving; retried at a later bar close
            return None
        except (RegistryError, AzureError) as exc:
            self.errors += 1
            log.error("cannot reload the champion of %s %s (keeping %s): %s", exchange, symbol,
                      serving_version, exc)
            return None
        log.info("%s %s: champion changed %s -> %s (%s)", exchange, symbol, serving_version, version, key)
        return ServingModel(model, version, key)

    def checkpoint(self, exchange: str, symbol: str, forecaster: object, version: str) -> bool:
        """Save the symbol's online-updated model if ``checkpoint_seconds`` passed; return whether saved
        (with polling started: whether a copy was handed to the polling thread, which writes it)."""
        if self.checkpoint_seconds <= 0:
            return False
        now = self.clock()
        last = self._last_checkpoint.setdefault((exchange, symbol), now)  # first call starts the interval
        if now - last < self.checkpoint_seconds:
            return False
        if not self.backoff.ready():  # storage down: try again at the first bar close after the back-off
            return False
        self._last_checkpoint[(exchange, symbol)] = now
        if self._poller is not None:  # the polling thread writes it: the bar close pays a copy only
            copy = pickle.loads(pickle.dumps(forecaster, protocol=pickle.HIGHEST_PROTOCOL))
            with self._lock:
                self._pending[(exchange, symbol)] = (version, copy)
            return True
        return self._save_checkpoint(exchange, symbol, forecaster, version)

    def _save_checkpoint(self, exchange: str, symbol: str, forecaster: object, version: str) -> bool:
        try:
            self._call("checkpoint save", self.registry.save_checkpoint, symbol_key(exchange, symbol),
                       version, forecaster)
        except _Skipped:
            return False
        except (RegistryError, AzureError, ValueError) as exc:
            self.errors += 1
            log.error("checkpoint of %s %s (%s) failed: %s", exchange, symbol, version, exc)
            return False
        self.checkpoints_saved += 1
        return True
