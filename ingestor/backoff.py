"""Capped exponential backoff with jitter for reconnecting websockets.

Delay of attempt ``n`` (0-based): a uniform random value in ``[d/2, d]`` with
``d = min(maximum, initial * factor**n)`` -- the "equal jitter" variant of AWS
Architecture Blog, "Exponential Backoff And Jitter" (Marc Brooker, 2015): never more
than the cap, never a thundering herd of clients reconnecting in step, never zero.
:meth:`Backoff.reset` starts over once a connection has proved healthy.

:meth:`Backoff.delays` is a generator factory with the signature websockets expects
for ``connect(..., reconnect_delays=...)``, so the library's own reconnect loop and
the ingestor's reconnect-after-drop share one sequence.

Examples
--------
>>> import random
>>> b = Backoff(initial=1.0, maximum=8.0, rng=random.Random(1))
>>> [round(b.next_delay(), 2) for _ in range(6)]
[0.57, 1.85, 3.53, 5.02, 5.98, 5.8]
>>> all(d <= 8.0 for d in (b.next_delay() for _ in range(100)))
True
"""

from __future__ import annotations

import random
from collections.abc import Iterator

__all__ = ["Backoff"]


class Backoff:
    """Capped exponential backoff with equal jitter.

    Parameters
    ----------
    initial : float, default 0.5
        Upper end of the first delay, seconds (``INGESTOR_BACKOFF_INITIAL_SECONDS``).
    maximum : float, default 30
        Cap of every delay, seconds (``INGESTOR_BACKOFF_MAX_SECONDS``).
    factor : float, default 2
        Growth per attempt.
    rng : random.Random, optional
        Source of jitter (seed it in tests).

    Raises
    ------
    ValueError
        A negative ``initial``, ``maximum < initial`` or ``factor < 1``.
    """

    def __init__(
        self,
        initial: float = 0.5,
        maximum: float = 30.0,
        factor: float = 2.0,
        rng: random.Random | None = None,
    ) -> None:
        if not initial >= 0 or not maximum >= initial or not factor >= 1:
            raise ValueError(
                f"need 0 <= initial <= maximum and factor >= 1, got {initial}, {maximum}, {factor}"
            )
        self.initial = float(initial)
        self.maximum = float(maximum)
        self.factor = float(factor)
        self.rng = rng or random.Random()
        self.attempt = 0

    def bound(self, attempt: int | None = None) -> float:
        """The largest delay attempt ``attempt`` (default: the next one) can get, seconds."""
        n = self.attempt if attempt is None else attempt
        try:
            return min(self.maximum, self.initial * self.factor**n)
        except OverflowError:
            return self.maximum

    def next_delay(self) -> float:
        """The delay before the next attempt, seconds; advances the attempt counter."""
        ceiling = self.bound()
        self.attempt += 1
        return self.rng.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        """Start again from ``initial`` (call it when a connection proved healthy)."""
        self.attempt = 0

    def delays(self) -> Iterator[float]:
        """Endless delays drawn from this object's state (for websockets' ``reconnect_delays``)."""
        while True:
            yield self.next_delay()
