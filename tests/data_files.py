"""Where tests find the real market data files (``../shared/data`` beside the repository).

CI clones the repository with ``shared/`` as its sibling, so the data directory is
``<repo>/../shared/data``; ``TICKCAST_DATA_DIR`` overrides it, and the few files
copied into ``<repo>/samples`` are the last resort. A test whose file is nowhere
to be found fails (with the directories searched in the reason): a missing data
set is a broken checkout, not a reason to test less.
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
USDM_CSV = "binance_usdm_BTCUSDT_trades_20240808T2354Z-20240809T0000Z.csv.gz"
USDM_0718_CSV = "binance_usdm_BTCUSDT_trades_20240718T2357Z-20240719T0005Z.csv.gz"
BTC_WS_RAW = "binance_spot_BTCUSDT_ws_raw_20240808T2354Z-20240809T0005Z.txt.gz"
WS_SAMPLES = "ws_message_samples.txt"


def data_file(name: str) -> Path:
    """Path of a data file; fails the calling test when it is not available."""
    for directory in DATA_DIRS:
        if directory and (Path(directory) / name).is_file():
            return Path(directory) / name
    pytest.fail(f"data file {name} not found in {[d for d in DATA_DIRS if d]}")
