"""Stream: incremental computations on the tick and bar streams, with no model in them.

Ticks become one-minute OHLCV bars (:mod:`.bars`), bars become the forecaster's features
(:mod:`.features`, completed bars only, O(1) per bar). May import :mod:`shared.contracts`
only.
"""
