"""Messages for the SignalR hub: what ``predict`` broadcasts to dashboards and other SignalR clients.

Each message has the shape of the Azure SignalR Service output binding,
``{"target": <client method>, "arguments": [<one JSON object>]}``, and is sent
to every client of the hub (``SIGNALR_HUB_NAME``). Targets are named for what
they carry:

==================  ==========================================================
target              argument
==================  ==========================================================
``prediction``      a prediction event (wire form of :class:`~shared.contracts.events.Prediction`)
``bar``             a closed one-minute bar (wire form of :class:`~shared.contracts.events.Bar`)
``latestPrice``     the newest trade price of one symbol (:class:`PriceUpdate`),
                    at most one per symbol every ``PRICE_UPDATE_MS``
``modelChanged``    a champion change (wire form of :class:`~shared.contracts.events.ModelChange`)
==================  ==========================================================

Units as in the events: prices in the quote currency of the symbol, times in
integer ms since the Unix epoch, UTC. The binding accepts one message or a JSON
array of messages per invocation (the Functions host splits a JSON array into
messages), so :meth:`Broadcaster.encode` returns one JSON array as text.

Examples
--------
>>> from shared.contracts.events import ModelChange
>>> signalr_message("modelChanged", {"key": "default"})
{'target': 'modelChanged', 'arguments': [{'key': 'default'}]}
>>> message_for_event(ModelChange("default", "v2", "v1", 1_700_000_000_000, "better"))["target"]
'modelChanged'
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from shared.contracts.events import SCHEMA_VERSION, Bar, ModelChange, Prediction, to_dict
from shared.settings import Settings

PREDICTION_TARGET = "prediction"
"""Client method receiving each prediction event."""
BAR_TARGET = "bar"
"""Client method receiving each closed one-minute bar."""
PRICE_TARGET = "latestPrice"
"""Client method receiving throttled latest-price updates (:class:`PriceUpdate`)."""
MODEL_CHANGE_TARGET = "modelChanged"
"""Client method receiving champion changes (:class:`~shared.contracts.events.ModelChange`)."""

TARGETS: dict[str, str] = {
    Prediction.type: PREDICTION_TARGET,
    Bar.type: BAR_TARGET,
    ModelChange.type: MODEL_CHANGE_TARGET,
}
"""Event ``type`` -> SignalR target for the events ``predict`` emits."""


def wall_clock_ms() -> int:
    """Wall-clock time in ms since the Unix epoch, UTC."""
    return time.time_ns() // 1_000_000


def signalr_message(target: str, *arguments: Any) -> dict[str, Any]:
    """One SignalR output-binding message: ``{"target": target, "arguments": [*arguments]}``.

    Raises
    ------
    ValueError
        ``target`` is empty.
    """
    if not target:
        raise ValueError("a SignalR message needs a non-empty target")
    return {"target": target, "arguments": list(arguments)}


def message_for_event(event: Prediction | Bar | ModelChange | Mapping[str, Any]) -> dict[str, Any]:
    """The SignalR message carrying ``event`` (an event object or its wire dict) to clients.

    Raises
    ------
    ValueError
        The event type has no SignalR target (ticks, dead letters).
    """
    wire = dict(event) if isinstance(event, Mapping) else to_dict(event)
    target = TARGETS.get(wire.get("type"))  # type: ignore[arg-type]
    if target is None:
        raise ValueError(f"no SignalR target for event type {wire.get('type')!r}")
    return signalr_message(target, wire)


@dataclass(frozen=True, slots=True)
class PriceUpdate:
    """The newest trade price of one symbol, as broadcast on :data:`PRICE_TARGET`.

    Attributes
    ----------
    exchange, symbol : as in the tick events (``kraken``, ``BTC/USD``).
    price : price of the newest trade in the batch, quote currency.
    event_time_ms : exchange time of that trade, ms since epoch UTC.
    sent_at_ms : when the update was made, ms since epoch UTC.
    """

    exchange: str
    symbol: str
    price: float
    event_time_ms: int
    sent_at_ms: int

    type = "price"

    def to_dict(self) -> dict[str, Any]:
        """Wire form: ``v``, ``type`` (``price``) and the fields."""
        return {"v": SCHEMA_VERSION, "type": self.type, **{f: getattr(self, f) for f in self.__slots__}}


class PriceThrottle:
    """Lets at most one price update per symbol through every ``min_interval_ms``.

    Parameters
    ----------
    min_interval_ms : int
        Least time between two admitted updates of one (exchange, symbol), ms (>= 0).

    Raises
    ------
    ValueError
        A negative ``min_interval_ms``.

    Examples
    --------
    >>> t = PriceThrottle(1000)
    >>> [t.admit("kraken", "BTC/USD", now) for now in (0, 999, 1000, 1500, 2000)]
    [True, False, True, False, True]
    """

    def __init__(self, min_interval_ms: int) -> None:
        if min_interval_ms < 0:
            raise ValueError(f"min_interval_ms must be >= 0, got {min_interval_ms}")
        self.min_interval_ms = min_interval_ms
        self._last: dict[tuple[str, str], int] = {}

    def admit(self, exchange: str, symbol: str, now_ms: int) -> bool:
        """True (and remember ``now_ms``) if the symbol's last admitted update is old enough."""
        key = (exchange, symbol)
        last = self._last.get(key)
        if last is not None and now_ms - last < self.min_interval_ms:
            return False
        self._last[key] = now_ms
        return True


class Broadcaster:
    """Turns one ``predict`` batch into the SignalR messages for the hub.

    Keeps the per-symbol price throttle across batches, so build it once per
    worker process (like the predict service).

    Parameters
    ----------
    price_update_ms : int
        ``PRICE_UPDATE_MS``: least time between two latest-price updates of one symbol, ms.
    clock : callable, optional
        Returns the time in ms since epoch UTC (default: the wall clock); the
        throttle runs on it, since it bounds the message rate to clients.
    """

    def __init__(self, price_update_ms: int, clock: Callable[[], int] = wall_clock_ms) -> None:
        self.throttle = PriceThrottle(price_update_ms)
        self.clock = clock

    @classmethod
    def from_settings(cls, settings: Settings) -> Broadcaster:
        """A broadcaster throttling price updates to one per ``PRICE_UPDATE_MS`` per symbol."""
        return cls(settings.price_update_ms)

    def messages(
        self,
        outputs: Iterable[bytes | str | Mapping[str, Any]],
        latest_prices: Mapping[tuple[str, str], tuple[float, int]],
    ) -> list[dict[str, Any]]:
        """The messages for one batch, in order: events first, then admitted price updates.

        Parameters
        ----------
        outputs : iterable of encoded events (JSON bytes/str) or wire dicts
            What predict sends to the predictions hub; bars, predictions and model
            changes get a message each, any other type is skipped.
        latest_prices : mapping (exchange, symbol) -> (price, event_time_ms)
            Newest accepted trade per symbol in the batch (price in quote
            currency, time in ms since epoch UTC).

        Returns
        -------
        list of dict
            SignalR messages (``target``, ``arguments``).
        """
        messages = []
        for output in outputs:
            wire = output if isinstance(output, Mapping) else json.loads(output)
            if wire.get("type") in TARGETS:
                messages.append(message_for_event(wire))
        now = self.clock()
        for (exchange, symbol), (price, event_time_ms) in latest_prices.items():
            if self.throttle.admit(exchange, symbol, now):
                update = PriceUpdate(exchange, symbol, price, event_time_ms, now)
                messages.append(signalr_message(PRICE_TARGET, update.to_dict()))
        return messages

    def encode(
        self,
        outputs: Iterable[bytes | str | Mapping[str, Any]],
        latest_prices: Mapping[tuple[str, str], tuple[float, int]],
    ) -> str | None:
        """:meth:`messages` as one JSON array (the output binding's value), or ``None`` if there are none."""
        messages = self.messages(outputs, latest_prices)
        return json.dumps(messages, separators=(",", ":"), allow_nan=False) if messages else None
