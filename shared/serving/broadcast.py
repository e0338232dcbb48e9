"""Messages for the SignalR hub: what the ``broadcast`` function sends to dashboards and other SignalR clients.

``broadcast`` reads the ``predictions`` hub with its own consumer group and turns its
events into SignalR messages; nothing on the prediction path waits for SignalR (see
:mod:`functions.broadcast`). Each message has the shape of the Azure SignalR Service
output binding, ``{"target": <client method>, "arguments": [<one JSON object>]}``, and
is sent to every client of the hub (``SIGNALR_HUB_NAME``). Targets are named for what
they carry:

==================  ==========================================================
target              argument
==================  ==========================================================
``prediction``      a prediction event (wire form of :class:`~shared.contracts.events.Prediction`)
``bar``             a closed one-minute bar (wire form of :class:`~shared.contracts.events.Bar`)
``latestPrice``     the newest trade price of one symbol (wire form of
                    :class:`~shared.contracts.events.PriceUpdate`), which ``predict``
                    emits at most once per symbol every ``PRICE_UPDATE_MS``
``modelChanged``    a champion change (wire form of :class:`~shared.contracts.events.ModelChange`)
==================  ==========================================================

Units as in the events: prices in the quote currency of the symbol, times in
integer ms since the Unix epoch, UTC. The binding accepts one message or a JSON
array of messages per invocation (the Functions host splits a JSON array into
messages), so :func:`encode_messages` returns one JSON array as text.

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
import logging
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from shared.contracts.batches import RawEvent
from shared.contracts.events import (
    Bar,
    MalformedEventError,
    ModelChange,
    Prediction,
    PriceUpdate,
    decode_output,
    to_dict,
)

__all__ = [
    "BAR_TARGET", "MODEL_CHANGE_TARGET", "PREDICTION_TARGET", "PRICE_TARGET", "TARGETS", "Broadcast",
    "PriceUpdate", "encode_messages", "message_for_event", "messages_for_batch", "signalr_message",
]

log = logging.getLogger(__name__)

PREDICTION_TARGET = "prediction"
"""Client method receiving each prediction event."""
BAR_TARGET = "bar"
"""Client method receiving each closed one-minute bar."""
PRICE_TARGET = "latestPrice"
"""Client method receiving throttled latest-price updates (:class:`~shared.contracts.events.PriceUpdate`)."""
MODEL_CHANGE_TARGET = "modelChanged"
"""Client method receiving champion changes (:class:`~shared.contracts.events.ModelChange`)."""

TARGETS: dict[str, str] = {
    Prediction.type: PREDICTION_TARGET,
    Bar.type: BAR_TARGET,
    PriceUpdate.type: PRICE_TARGET,
    ModelChange.type: MODEL_CHANGE_TARGET,
}
"""Event ``type`` -> SignalR target, for every event of the ``predictions`` hub."""


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


def message_for_event(event: Prediction | Bar | ModelChange | PriceUpdate | Mapping[str, Any]) -> dict[str, Any]:
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


@dataclass
class Broadcast:
    """The SignalR messages of one batch of the ``predictions`` hub.

    Attributes
    ----------
    messages : ``{"target", "arguments"}`` dicts: bars, predictions and model changes in
        hub order, then the newest price update of each symbol in the batch.
    counts : per event type sent, ``superseded_prices`` (older price updates of a symbol
        dropped for a newer one in the same batch) and ``malformed`` (skipped, logged).
    """

    messages: list[dict[str, Any]] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)


def messages_for_batch(batch: Iterable[RawEvent]) -> Broadcast:
    """Decode a batch of ``predictions`` hub events into SignalR messages.

    A malformed event is logged with its position, counted and skipped: the archive
    function sets such events aside, and a dashboard message is not worth failing for.
    When a batch holds several price updates of one symbol (``broadcast`` catching up
    on a backlog), only the one with the newest ``event_time_ms`` is sent.
    """
    out = Broadcast()
    prices: dict[tuple[str, str], PriceUpdate] = {}
    for raw in batch:
        try:
            event = decode_output(raw.body)
        except MalformedEventError as exc:
            out.counts["malformed"] += 1
            log.warning("not broadcast: predictions event at %s: %s", raw.position, exc)
            continue
        if isinstance(event, PriceUpdate):
            key = (event.exchange, event.symbol)
            known = prices.get(key)
            if known is not None:
                out.counts["superseded_prices"] += 1
            if known is None or event.event_time_ms >= known.event_time_ms:
                prices[key] = event
            continue
        out.messages.append(message_for_event(event))
        out.counts[event.type] += 1
    for update in prices.values():
        out.messages.append(message_for_event(update))
        out.counts[update.type] += 1
    return out


def encode_messages(messages: list[dict[str, Any]]) -> str | None:
    """``messages`` as one JSON array (the output binding's value), or ``None`` if there are none."""
    return json.dumps(messages, separators=(",", ":"), allow_nan=False) if messages else None
