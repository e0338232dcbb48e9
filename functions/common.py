"""Helpers shared by the blueprints: turning trigger events into ``shared`` inputs."""

from __future__ import annotations

import azure.functions as func

from shared.batches import RawEvent


def raw_events(hub: str, events: list[func.EventHubEvent]) -> list[RawEvent]:
    """Wrap Event Hub events as :class:`RawEvent` with a position: hub, partition key, sequence, offset."""
    return [
        RawEvent(
            e.get_body(),
            f"{hub}[{i}] key={e.partition_key} seq={e.sequence_number} offset={e.offset}",
        )
        for i, e in enumerate(events)
    ]


def as_text(events: list[bytes]) -> list[str]:
    """Encoded JSON events as strings, the form an Event Hub output binding sends one by one."""
    return [e.decode("utf-8") for e in events]
