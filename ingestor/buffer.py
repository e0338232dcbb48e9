"""A bounded asyncio buffer between the websocket connections and the publisher.

Back-pressure first, dropping last: :meth:`BoundedBuffer.put` waits up to
``wait_seconds`` for room when the buffer is full -- while it waits the connection
stops reading, so the websocket library's own receive queue fills and TCP flow
control slows the exchange down -- and only when the bound is still reached after
that wait is the item dropped (counted in :attr:`BoundedBuffer.dropped`). Items that
failed to publish go back to the front (:meth:`requeue`) so per-symbol order is kept.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Iterable
from typing import Generic, TypeVar

__all__ = ["BoundedBuffer"]

T = TypeVar("T")


class BoundedBuffer(Generic[T]):
    """FIFO of at most ``capacity`` items for one asyncio loop.

    Parameters
    ----------
    capacity : int
        The bound (``INGESTOR_BUFFER_EVENTS`` for ticks); must be >= 1.
    wait_seconds : float, default 1
        How long :meth:`put` waits for room before dropping (``INGESTOR_BUFFER_WAIT_SECONDS``);
        0 = drop at once when full.

    Attributes
    ----------
    dropped : int
        Items refused because the buffer stayed full.
    oldest_put_monotonic : float or None
        :func:`time.monotonic` of when the oldest buffered item was put (publish lag).

    Raises
    ------
    ValueError
        ``capacity < 1`` or a negative ``wait_seconds``.

    Examples
    --------
    >>> import asyncio
    >>> async def demo():
    ...     b = BoundedBuffer(2, wait_seconds=0)
    ...     accepted = [await b.put(i) for i in range(3)]
    ...     return accepted, await b.get_batch(10), b.dropped
    >>> asyncio.run(demo())
    ([True, True, False], [0, 1], 1)
    """

    def __init__(self, capacity: int, wait_seconds: float = 1.0) -> None:
        if capacity < 1 or not wait_seconds >= 0:
            raise ValueError(f"need capacity >= 1 and wait_seconds >= 0, got {capacity}, {wait_seconds}")
        self.capacity = capacity
        self.wait_seconds = wait_seconds
        self.dropped = 0
        self._items: collections.deque[tuple[float, T]] = collections.deque()
        self._not_empty = asyncio.Event()
        self._not_full = asyncio.Event()
        self._not_full.set()
        self._closed = False

    def __len__(self) -> int:
        return len(self._items)

    @property
    def closed(self) -> bool:
        """True after :meth:`close`: no more puts; gets drain what is left."""
        return self._closed

    @property
    def oldest_put_monotonic(self) -> float | None:
        return self._items[0][0] if self._items else None

    def _update(self) -> None:
        if self._items or self._closed:
            self._not_empty.set()
        else:
            self._not_empty.clear()
        if len(self._items) < self.capacity:
            self._not_full.set()
        else:
            self._not_full.clear()

    def put_nowait(self, item: T) -> bool:
        """Append ``item`` if there is room; else count it as dropped. Returns whether it was kept.

        Raises
        ------
        RuntimeError
            The buffer is closed.
        """
        if self._closed:
            raise RuntimeError("buffer is closed")
        if len(self._items) >= self.capacity:
            self.dropped += 1
            return False
        self._items.append((time.monotonic(), item))
        self._update()
        return True

    async def put(self, item: T) -> bool:
        """Append ``item``, waiting up to ``wait_seconds`` for room; drop (and count) it if none came.

        Returns
        -------
        bool
            True if the item was buffered, False if it was dropped.
        """
        if len(self._items) >= self.capacity and self.wait_seconds > 0 and not self._closed:
            try:
                async with asyncio.timeout(self.wait_seconds):
                    while len(self._items) >= self.capacity and not self._closed:
                        await self._not_full.wait()
            except TimeoutError:
                pass
        return self.put_nowait(item)

    def requeue(self, items: Iterable[T]) -> None:
        """Put ``items`` back at the front, in their order (may exceed the bound briefly: they were admitted once)."""
        now = time.monotonic()
        for item in reversed(list(items)):
            self._items.appendleft((now, item))
        self._update()

    def get_nowait(self, max_items: int) -> list[T]:
        """Take up to ``max_items`` from the front without waiting."""
        n = min(max_items, len(self._items))
        batch = [self._items.popleft()[1] for _ in range(n)]
        self._update()
        return batch

    async def get_batch(self, max_items: int, timeout: float | None = None) -> list[T]:
        """Take up to ``max_items``, waiting up to ``timeout`` seconds for the first one.

        Returns an empty list on timeout, or at once when the buffer is closed and empty.
        """
        if not self._items and not self._closed:
            try:
                async with asyncio.timeout(timeout):
                    await self._not_empty.wait()
            except TimeoutError:
                return []
        return self.get_nowait(max_items)

    def close(self) -> None:
        """Refuse further puts and wake every waiter; what is buffered can still be taken."""
        self._closed = True
        self._not_full.set()
        self._not_empty.set()
