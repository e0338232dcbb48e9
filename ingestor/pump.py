"""Move ticks and dead letters from the buffers to the publisher, retrying failures in order.

The pump takes up to ``batch_size`` ticks at a time, publishes them and waits for the
acknowledgement before taking more; unacknowledged ticks go back to the front of the
buffer and are retried after a backoff delay (so per-symbol order is kept and nothing
valid is lost while the process runs). It ends when the tick buffer is closed and
both buffers are empty.
"""

from __future__ import annotations

import asyncio
import logging
import time

from ingestor.backoff import Backoff
from ingestor.buffer import BoundedBuffer
from ingestor.metrics import Metrics
from ingestor.publishers.base import TickPublisher
from shared.contracts.events import DeadLetter, Tick, encode

log = logging.getLogger(__name__)

__all__ = ["Pump"]


class Pump:
    """The publish loop (one task).

    Parameters
    ----------
    ticks, letters : BoundedBuffer
        Tick buffer (closed at shutdown) and dead-letter buffer.
    publisher : TickPublisher
        Where batches go.
    metrics : Metrics
        ``published``, ``deadlettered``, ``publish_failures``, ``deadletters_dropped`` are counted here.
    batch_size : int, default 2000
        Most ticks per publish call.
    backoff : Backoff, optional
        Delay before retrying a failed batch; default ``Backoff(0.2, 5)``.

    Attributes
    ----------
    inflight : int
        Ticks handed to the publisher and not yet acknowledged or returned.
    """

    def __init__(
        self,
        ticks: BoundedBuffer[Tick],
        letters: BoundedBuffer[DeadLetter],
        publisher: TickPublisher,
        metrics: Metrics,
        *,
        batch_size: int = 2000,
        backoff: Backoff | None = None,
    ) -> None:
        self.ticks = ticks
        self.letters = letters
        self.publisher = publisher
        self.metrics = metrics
        self.batch_size = batch_size
        self.backoff = backoff or Backoff(0.2, 5.0)
        self.inflight = 0
        self._inflight_since: float | None = None

    def lag_seconds(self, now: float | None = None) -> float:
        """Age of the oldest tick not yet published (buffered or in flight), seconds; 0 when none."""
        now = time.monotonic() if now is None else now
        oldest = [t for t in (self.ticks.oldest_put_monotonic, self._inflight_since) if t is not None]
        return max(0.0, now - min(oldest)) if oldest else 0.0

    async def run(self) -> None:
        """Publish until the tick buffer is closed and both buffers are drained."""
        while True:
            batch = await self.ticks.get_batch(self.batch_size, timeout=0.2)
            letters = self.letters.get_nowait(self.batch_size)
            if letters:
                await self._publish_letters(letters)
            if batch:
                await self._publish_ticks(batch)
            elif self.ticks.closed and not len(self.ticks) and not len(self.letters):
                return

    async def _publish_ticks(self, batch: list[Tick]) -> None:
        self.inflight = len(batch)
        self._inflight_since = time.monotonic()
        try:
            result = await self.publisher.publish(batch)
        except Exception as exc:  # a publisher bug or an unexpected SDK error: retry, do not die
            log.exception("publish raised; will retry")
            result = None
            error = f"{type(exc).__name__}: {exc}"
        finally:
            self.inflight = 0
            self._inflight_since = None
        if result is None:
            failed, rejected = batch, []
        else:
            failed, rejected, error = result.failed, result.rejected, result.error or ""
            self.metrics.inc("published", result.delivered)
            if result.delivered:
                self.metrics.last_publish_monotonic = time.monotonic()
        for tick, reason in rejected:
            self.letters.put_nowait(DeadLetter("ingestor", "publish", reason, encode(tick).decode()))
        if failed:
            self.metrics.inc("publish_failures")
            self.ticks.requeue(failed)
            delay = self.backoff.next_delay()
            log.warning(
                "publish failed; retrying",
                extra={"fields": {"failed": len(failed), "delay_s": round(delay, 3), "error": error[:300]}},
            )
            await asyncio.sleep(delay)
        else:
            self.backoff.reset()

    async def _publish_letters(self, letters: list[DeadLetter]) -> None:
        try:
            result = await self.publisher.publish_deadletters(letters)
        except Exception:
            log.exception("publishing dead letters raised")
            self.metrics.inc("deadletters_dropped", len(letters))
            return
        self.metrics.inc("deadlettered", result.delivered)
        if result.failed:
            if self.ticks.closed:
                self.metrics.inc("deadletters_dropped", len(result.failed))
            else:
                self.letters.requeue(result.failed)
        self.metrics.inc("deadletters_dropped", len(result.rejected))
