"""The history store on MariaDB: every store test of ``tests/unit/test_history.py`` (run there on SQLite)
runs here again on a real MariaDB, plus the settings that select MariaDB.

The tests are imported, not copied, so both databases are held to the same assertions; this module's
``history_store`` fixture hands them a fresh MariaDB database (``mysql_url``) instead of an SQLite file.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator

import pytest

from shared.settings import Settings
from shared.storage.history import HistoryStore
from tests.unit import test_history as on_sqlite
from tests.unit.test_history import bar

STORE_TESTS = [name for name, fn in vars(on_sqlite).items()
               if name.startswith("test_") and "history_store" in inspect.signature(fn).parameters]
globals().update({name: getattr(on_sqlite, name) for name in STORE_TESTS})


@pytest.fixture
def history_store(mysql_url: str) -> Iterator[HistoryStore]:
    """A fresh, empty history store on this test's own MariaDB database."""
    with HistoryStore.from_url(mysql_url) as store:
        yield store


def test_every_store_test_runs_on_mariadb() -> None:
    assert len(STORE_TESTS) >= 20 and all(globals()[name] is getattr(on_sqlite, name) for name in STORE_TESTS)


def test_from_settings_uses_mysql_url(mysql_url: str, tmp_path) -> None:
    settings = Settings.from_env(
        {
            "MYSQL_URL": mysql_url.replace("mysql+pymysql://", "mysql://"),
            "HISTORY_SQLITE_PATH": str(tmp_path / "unused.sqlite3"),
        }
    )
    with HistoryStore.from_settings(settings) as store:
        assert store.dialect == "mysql"
        store.upsert_bars([bar(0, 61837.63)])
        assert store.count_bars() == 1
    assert not (tmp_path / "unused.sqlite3").exists()
