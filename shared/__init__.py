"""tickcast's core library: the same code behind the Azure Functions, the local stack and the CLI.

Layers, each a package that imports only the ones below it (enforced by import-linter, see
``[tool.importlinter]`` in ``pyproject.toml``)::

    serving     engine, predict service, broadcast, HTTP API queries, web assets, wiring
    lifecycle   model registry, champions (hot reload), retrain, promotion
    storage     history store (MySQL/SQLite), archiving        forecast  forecaster, guard,
    stream      minute bars, incremental features                        interval, families,
    contracts   events and codecs, batch results                         prequential stepper

``offline`` (backtest, evaluation, OHLCV readers) sits beside ``serving`` and may use
``forecast``, ``stream`` and ``contracts`` only. :mod:`shared.settings` is the one place
configuration is read. Nothing here imports ``azure.functions``, ``functions``,
``local_stack`` or ``ingestor``.
"""
