"""Contracts: the events that cross a process boundary, their JSON codecs, and batch results.

What lives here: tick, bar, prediction and model_change events with their wire format
(:mod:`.events`; their msgspec fast paths in :mod:`.wire`), and the result of handling one batch
(:mod:`.batches`). This is the
bottom layer: it imports nothing of tickcast (not even :mod:`shared.settings`), so the
ingestor, the functions, the local stack and any consumer of the hubs can share it.
"""
