"""tickcast command line: ``python -m tickcast backtest PATH`` (logic lives in :mod:`shared`)."""
