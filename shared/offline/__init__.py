"""Offline: research and evaluation code that the function app never runs.

The backtest (:mod:`.backtest`), forecast evaluation statistics (:mod:`.evaluation`) and
OHLCV file readers (:mod:`.ohlcv`), used by the ``tickcast`` CLI, the local stack and the
benchmarks. May import :mod:`shared.forecast`, :mod:`shared.stream` and :mod:`shared.contracts`;
``.funcignore`` leaves it out of the published function package.
"""
