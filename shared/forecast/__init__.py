"""Forecast: the online model that turns features into a next-minute forecast with an interval.

The forecaster (:mod:`.forecaster`) with its bounds (:mod:`.limits`), the zero-return guard
(:mod:`.guard`), the conformal interval (:mod:`.conformal`), the model families
(:mod:`.families`), and the one prequential stepper (:mod:`.prequential`: predict, then learn
when the label is realised) that every caller uses -- the engine, retrain, initial training,
the backtest and promotion. May import :mod:`shared.stream` and :mod:`shared.contracts`.
"""
