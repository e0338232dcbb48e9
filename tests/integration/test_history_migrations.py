"""Schema upgrades of the history store on MariaDB: every test of ``tests/unit/test_history_migrations.py``
(run there on SQLite) runs here again, with ``store_url`` a fresh MariaDB database (``mysql_url``).

The tests are imported, not copied, so both databases are held to the same assertions.
"""

from __future__ import annotations

import pytest

from tests.unit import test_history_migrations as on_sqlite

TESTS = [name for name in vars(on_sqlite) if name.startswith("test_")]
globals().update({name: getattr(on_sqlite, name) for name in TESTS})
engine = on_sqlite.engine


@pytest.fixture
def store_url(mysql_url: str) -> str:
    """URL of this test's own new, empty MariaDB database."""
    return mysql_url


def test_every_migration_test_runs_on_mariadb() -> None:
    assert len(TESTS) >= 4 and all(globals()[name] is getattr(on_sqlite, name) for name in TESTS)
