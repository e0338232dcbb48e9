"""Taker-side order flow from ticks: what trades carry and one-minute OHLCV files do not.

A trade's taker side (:attr:`shared.contracts.events.Tick.side`) says who crossed the spread.
:class:`OrderFlow` sums, per minute, the base-currency quantity bought and sold by takers, and
at the minute's bar close gives two features, both *odd* under a mirrored market (buys and
sells swapped, prices reflected), so they can enter the sign-free model of
:mod:`shared.forecast.inputs` without giving it a standing bet on one direction:

============  ============================================================================
``ofi_1``     taker order-flow imbalance of the minute, ``(B - S) / (B + S)`` in [-1, 1]
              (0 when nothing traded); B, S = quantity bought, sold by takers
``flow_1``    net taker quantity of the minute in units of the mean minute quantity over
              the last ``INTENSITY_WINDOW`` minutes (this one included): the imbalance times
              the minute's relative trading intensity
============  ============================================================================

Sources: order imbalance as the signed sum of taker-initiated volume and its short-horizon
relation to returns, T. Chordia and A. Subrahmanyam, "Order imbalance and individual stock
returns: theory and evidence", Journal of Financial Economics 72 (2004), and T. Chordia,
R. Roll, A. Subrahmanyam, "Evidence on the speed of convergence to market efficiency",
Journal of Financial Economics 76 (2005) (imbalances over 5 minutes predicted the next
5 minutes' returns, less so as markets became faster); the imbalance's contemporaneous link
to price changes, R. Cont, A. Kukanov, S. Stoikov, "The price impact of order book events",
Journal of Financial Econometrics 12 (2014), and for crypto trade flow J. Silantyev, "Order
flow analysis of cryptocurrency markets", Digital Finance 1 (2019). Trade intensity on its
own (trades or volume per minute) is *even* under the mirror: it forecasts volatility
(C. Jones, G. Kaul, M. Lipson, "Transactions, volume, and volatility", Review of Financial
Studies 7, 1994), not direction, so it enters only through ``flow_1``.

A minute whose ticks were not all seen (the state started inside it) gives no features
(``{}``), so a model reads them as absent rather than as a balanced minute.

Examples
--------
>>> from shared.contracts.events import Tick
>>> f = OrderFlow()
>>> f.add(Tick("x", "S", None, 100.0, 1.0, "buy", 30_000, 30_000))  # started inside minute 0
>>> f.features(0)
{}
>>> for q, side in ((2.0, "buy"), (1.0, "sell"), (1.0, "buy")):  # minute 1, seen whole
...     f.add(Tick("x", "S", None, 100.0, q, side, 60_000, 60_000))
>>> f.features(60_000)  # at its bar close: B = 3, S = 1; mean minute quantity (1 + 4) / 2
{'ofi_1': 0.5, 'flow_1': 0.8}
"""

from __future__ import annotations

from collections import deque

from shared.contracts.events import Tick

MINUTE_MS = 60_000
INTENSITY_WINDOW = 60
"""Minutes in the mean minute quantity that ``flow_1`` is measured in (one hour, the longest
window of :mod:`shared.stream.features`)."""
FLOW_FEATURES = ("ofi_1", "flow_1")
"""Names of the features :meth:`OrderFlow.features` returns."""


class OrderFlow:
    """Per-minute taker buy and sell quantity of one symbol; feed it accepted ticks in time order.

    Small and picklable: the current minute's two sums and the last ``INTENSITY_WINDOW``
    minute quantities.

    Attributes
    ----------
    minute : open time of the minute being summed (ms since epoch UTC), or ``None`` before the first tick.
    complete : whether every tick of that minute was seen (``False`` for the first minute seen:
        the state may have started inside it).
    """

    __slots__ = ("minute", "complete", "buy", "sell", "_volumes", "_volume_sum")

    def __init__(self) -> None:
        self.minute: int | None = None
        self.complete = False
        self.buy = 0.0
        self.sell = 0.0
        self._volumes: deque[float] = deque(maxlen=INTENSITY_WINDOW)
        self._volume_sum = 0.0

    def __getstate__(self) -> dict:
        return {name: getattr(self, name) for name in self.__slots__}

    def __setstate__(self, state: dict) -> None:
        for name, value in state.items():
            setattr(self, name, value)

    def add(self, tick: Tick) -> None:
        """Add an accepted tick (quantity in base currency, ``side`` the taker's)."""
        minute = tick.event_time_ms - tick.event_time_ms % MINUTE_MS
        if minute != self.minute:
            if self.minute is not None:
                self._close_minute()
                self.complete = True
            self.minute, self.buy, self.sell = minute, 0.0, 0.0
        if tick.side == "buy":
            self.buy += tick.quantity
        else:
            self.sell += tick.quantity

    def _close_minute(self) -> None:
        volumes = self._volumes
        if len(volumes) == INTENSITY_WINDOW:
            self._volume_sum -= volumes[0]
        total = self.buy + self.sell
        volumes.append(total)
        self._volume_sum += total
        if len(volumes) == INTENSITY_WINDOW and self._volume_sum < 0.0:  # rounding after many updates
            self._volume_sum = sum(volumes)

    def features(self, open_time_ms: int) -> dict[str, float]:
        """The flow features of the minute opening at ``open_time_ms`` (the bar just closed).

        Returns ``{}`` when that minute is not the one being summed or was not seen whole.
        """
        if open_time_ms != self.minute or not self.complete:
            return {}
        buy, sell = self.buy, self.sell
        total = buy + sell
        if total <= 0.0:
            return {"ofi_1": 0.0, "flow_1": 0.0}
        n = len(self._volumes) + 1
        mean = (self._volume_sum + total) / n
        return {"ofi_1": (buy - sell) / total, "flow_1": (buy - sell) / mean}
