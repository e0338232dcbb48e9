"""Where tests find the real market data files (``../shared/data`` beside the repository).

CI clones the repository with ``shared/`` as its sibling, so the data directory is
``<repo>/../shared/data``; ``TICKCAST_DATA_DIR`` overrides it, and the few files
copied into ``<repo>/samples`` are the last resort. A test whose file is nowhere
to be found is skipped (with the directories searched in the reason).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
DATA_DIRS = [os.environ.get("TICKCAST_DATA_DIR", ""), str(SHARED_DATA), str(REPO / "samples")]

BTC_SPOT_CSV = "binance_spot_BTCUSDT_trades_20240808T2354Z-20240809T0005Z.csv.gz"
ETH_SPOT_CSV = "binance_spot_ETHUSDT_trades_20240808T2354Z-20240809T0005Z.csv.gz"
KRAKEN_CSV = "kraken_XBTUSD_trades_20190701T00Z-01Z.csv.gz"
FTX_1M = "ftx_BTC-PERP_1m_20211231-20220201.csv.gz"
BINANCE_1M = "binance_BTCUSDT_1m_20190908-20190919.csv.gz"


def data_file(name: str) -> Path:
    """Path of a data file; skips the calling test when it is not available."""
    for directory in DATA_DIRS:
        if directory and (Path(directory) / name).is_file():
            return Path(directory) / name
    pytest.skip(f"data file {name} not found in {[d for d in DATA_DIRS if d]}")
