"""Serving: what the functions and the local stack call, and the composition root.

The per-symbol engine (:mod:`.engine`: ticks -> bars -> features -> the prequential stepper),
the predict service (:mod:`.predicting`), the SignalR broadcast (:mod:`.broadcast`), the HTTP
API queries (:mod:`.api`), the dashboard's assets (:mod:`.webassets`), and the wiring that
builds every service from settings, once per worker (:mod:`.wiring`). The top layer: it may
import every other layer but :mod:`shared.offline`; nothing in ``shared`` imports it.
"""
