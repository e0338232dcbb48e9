"""History store of closed bars and predictions, on MySQL/MariaDB or an embedded SQLite file.

One SQLAlchemy Core schema serves both databases: MySQL or MariaDB through the PyMySQL driver
in Azure and in the integration tests, and an SQLite file as the embedded default when
``MYSQL_URL`` is empty (see :mod:`shared.settings`). Writers are the archive function and the
local stack; readers are the retrain function, reports and the dashboard.

* :mod:`.schema` — the tables (:data:`metadata`, :data:`bars_table`, :data:`predictions_table`)
  and the :class:`PredictionRecord` row;
* :mod:`.connection` — which database is opened and how (:func:`normalise_url`);
* :mod:`.store` — :class:`HistoryStore`: idempotent upserts, bars, predictions, symbols;
* :mod:`.upserts` — the SQL of those upserts and of the realised-close refresh;
* :mod:`.accuracy` — accuracy queries over realised predictions (:class:`VersionAccuracy`).

Units: prices in the quote currency of the symbol, volumes in the base asset,
times in integer milliseconds since the Unix epoch, UTC.

Examples
--------
>>> from shared.contracts.events import Bar
>>> with HistoryStore.from_url("sqlite://") as store:
...     store.upsert_bars([Bar("binance", "BTCUSDT", 1723161240000,
...                            61830.0, 61850.5, 61801.2, 61837.63, 12.5, 420)])
...     store.latest_bars("binance", "BTCUSDT", 1)[0].close
1
61837.63
"""

from shared.storage.history.accuracy import VersionAccuracy
from shared.storage.history.connection import normalise_url
from shared.storage.history.schema import PredictionRecord, bars_table, metadata, predictions_table
from shared.storage.history.store import HistoryStore

__all__ = [
    "HistoryStore",
    "PredictionRecord",
    "VersionAccuracy",
    "bars_table",
    "metadata",
    "normalise_url",
    "predictions_table",
]
